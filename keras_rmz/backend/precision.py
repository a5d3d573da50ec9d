"""Which floating-point precision is fast on the hardware and backend in use
(``precision="auto"`` of ``reconstruct``, ``finetune`` and ``keras-rmz``).

The decision table, from measurements recorded in docs/performance.md
(``benchmarks/precision.py``):

- CPU with Intel AMX (``amx_bf16``), TensorFlow: bfloat16. oneDNN runs
  bfloat16 convolutions on the AMX tiles (1.9-2.4x faster per plane, 1.5x
  per training step) and every preset's held-out PSNR moved by 0.012 dB or
  less. float16 has no such path on these CPUs and is slower than float32.
- CPU with AMX, PyTorch: float32. bfloat16 is 1.8-2.2x faster there too,
  but it moved the nuclei preset's held-out PSNR by 0.032 dB, more than the
  0.02 dB "auto" may cost; ``precision="bfloat16"`` is one argument away.
- CPU, JAX: float32. XLA's CPU compiler computes bfloat16 convolutions in
  float32: no faster (0.8-1.2x), only casts added.
- CPU without AMX: float32 (reduced precision is emulated or converted).
- GPU or TPU: float32, until measured. Their tensor cores make bfloat16 or
  float16 faster, but "auto" takes a reduced precision only where it was
  measured to keep every preset within 0.02 dB of float32, and PyTorch's
  bfloat16 on a CPU did not; no GPU has been available to measure. Pass
  ``precision="bfloat16"`` there, and check with
  ``python benchmarks/precision.py --tasks speed,accuracy``.

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


def auto_precision(backend=None, flags=None, accelerator=None):
    """The precision ``"auto"`` stands for here: ``KERAS_RMZ_PRECISION`` when
    set, else the decision table of this module's docstring.

    Args:
        backend: the Keras backend (default: the running one).
        flags: CPU flags (default: ``cpu_flags()``).
        accelerator: whether the backend computes on a GPU or TPU
            (default: ``keras_rmz.backend.device.has_accelerator()``).
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
    if accelerator is None:
        from keras_rmz.backend.device import has_accelerator

        accelerator = has_accelerator()
    if accelerator:
        return "float32"
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
