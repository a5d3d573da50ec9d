"""Which floating-point precision is fast on the hardware and backend in use
(``precision="auto"`` of ``reconstruct``, ``finetune`` and ``keras-rmz``).

The decision table, from measurements recorded in docs/performance.md
(``benchmarks/precision.py``):

- CPU with Intel AMX (``amx_bf16``), TensorFlow: bfloat16. oneDNN runs
  bfloat16 convolutions on the AMX tiles (2.0-2.4x faster per plane, 1.4x
  per training step) and every preset's held-out PSNR moved by 0.012 dB or
  less. float16 has no such path on these CPUs and is slower than float32.
- CPU with AMX, PyTorch: float32. bfloat16 is 1.7-2.1x faster there too,
  but it moved the nuclei preset's held-out PSNR by 0.032 dB, more than the
  0.02 dB "auto" may cost; ``precision="bfloat16"`` is one argument away.
- CPU, JAX: float32. XLA's CPU compiler computes bfloat16 convolutions in
  float32: no faster (0.8-1.2x), only casts added.
- CPU without AMX: float32 (reduced precision is emulated or converted).
- NVIDIA GPU of compute capability 8.0 or more (A100, H100, RTX 30xx and
  later): bfloat16 (tensor cores, float32's exponent range). 7.x (V100, T4,
  RTX 20xx): float16. Older: float32. TPU: bfloat16.
  (Chosen from the hardware's documented tensor-core types: no GPU has
  measured these here yet.)

``KERAS_RMZ_PRECISION`` (``float32``, ``bfloat16`` or ``float16``), when set,
is what ``"auto"`` means: one setting for a whole cluster job or test run.
"""

import functools
import os

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
# The Keras dtype policy of each precision: variables stay float32 (presets
# keep float32 weights; optimizer updates are exact), layers compute in the
# reduced type.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
ENVIRONMENT_VARIABLE = "KERAS_RMZ_PRECISION"


def check_precision(precision, allow_auto=True):
    """``precision`` if it is one of ``PRECISIONS`` (``"auto"`` only with
    ``allow_auto``); ValueError naming the accepted values otherwise."""
    accepted = PRECISIONS if allow_auto else PRECISIONS[1:]
    if not isinstance(precision, str) or precision not in accepted:
        raise ValueError(f"precision must be one of {', '.join(repr(p) for p in accepted)}; got {precision!r}")
    return precision


@functools.lru_cache(maxsize=1)
def cpu_flags():
    """The instruction-set flags of the first CPU in /proc/cpuinfo (Linux),
    an empty set elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            for line in file:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _gpu_compute_capability(backend):
    """(major, minor) of the first NVIDIA GPU the backend uses, "tpu" for a
    TPU, None for none (or an accelerator without tensor-core types we know)."""
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_logical_devices("TPU"):
                return "tpu"
            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
                return tuple(capability) if capability else None
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "tpu":
                return "tpu"
            if device.platform == "gpu" and getattr(device, "compute_capability", None):
                return tuple(int(part) for part in str(device.compute_capability).split(".")[:2])
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return tuple(torch.cuda.get_device_capability(0))
    except Exception:  # noqa: BLE001 - a failed probe means "no known accelerator"
        return None
    return None


def auto_precision(backend=None, flags=None, capability="probe"):
    """The precision ``"auto"`` stands for here: ``KERAS_RMZ_PRECISION`` when
    set, else the decision table of this module's docstring.

    Args:
        backend: the Keras backend (default: the running one).
        flags: CPU flags (default: ``cpu_flags()``).
        capability: the accelerator, as ``_gpu_compute_capability`` gives
            it (default: probe the backend's devices).
    """
    chosen = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if chosen:
        try:
            return check_precision(chosen, allow_auto=False)
        except ValueError:
            raise ValueError(
                f"{ENVIRONMENT_VARIABLE}={chosen!r} is not a precision; set it to float32, bfloat16 or float16, "
                "or unset it to let 'auto' decide"
            ) from None
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if capability == "probe":
        capability = _gpu_compute_capability(backend)
    if capability == "tpu":
        return "bfloat16"
    if capability is not None:
        if capability >= (8, 0):
            return "bfloat16"
        return "float16" if capability >= (7, 0) else "float32"
    flags = cpu_flags() if flags is None else flags
    if backend == "tensorflow" and "amx_bf16" in flags:
        return "bfloat16"
    return "float32"


def resolve_precision(precision="auto"):
    """``"float32"``, ``"bfloat16"`` or ``"float16"``: ``precision``
    itself, or for ``"auto"`` the fastest that keeps accuracy here."""
    check_precision(precision)
    return auto_precision() if precision == "auto" else precision


def precision_of_policy(policy):
    """The precision a Keras dtype policy (or its name) computes in."""
    name = getattr(policy, "name", policy)
    for precision, policy_name in POLICIES.items():
        if name == policy_name:
            return precision
    compute = getattr(policy, "compute_dtype", None)
    return compute if compute in POLICIES else str(name)
