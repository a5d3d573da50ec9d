"""Inference speed and memory of the keras_rmz networks on each Keras backend.

For every backend (one subprocess each, so that each has its own peak RSS):

- ms per output plane of RecurrentMZ (paper config) with M = 2 and 3, DeepZ
  and UNet3D (default configs) at each ``--sizes`` (256 and 1024 by default),
  through ``model.predict_on_batch`` (what ``reconstruct`` calls), one output
  plane per call, compiled as Keras (and ``reconstruct``) compiles it by
  default: ``jax.jit`` on JAX, XLA on TensorFlow only with a GPU, eager
  PyTorch (variants may set ``jit_compile``); the first call (tracing /
  compilation) is reported apart;
- FLOPs per output plane, counted analytically from the layer configs
  (``benchmarks/flops.py``) and, on the JAX backend, cross-checked once
  against the convolutions in the traced program and XLA's cost model;
- this machine's float32 matrix-multiply rate, measured in the same process
  before and after (numpy and the backend's own matmul, best of several), and
  the achieved GFLOP/s as a fraction of it;
- ``model.reconstruct`` over several output planes with the default
  ``batch_size="auto"`` and with 8 planes per call against one plane at a
  time, and a whole volume (101 planes of 1024 x 1024 from M = 3) when it
  fits the time budget (else measured on fewer planes and extrapolated,
  marked so);
- peak RSS: of each subprocess (``getrusage`` through ``os.wait4``) and of
  single steps (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``);
- tiled inference of a 4096 x 4096 image with ``tile_size=512``: its peak RSS
  beside the untiled estimate (peak RSS measured untiled at two smaller sizes,
  extrapolated linearly in pixels).

Results: ``<out>/inference[_quick|_gpu].json`` and ``.md`` (the tables), and
``.png`` (achieved fraction of the matmul rate), also printed. Run:

    python benchmarks/inference.py                 # CPU, all backends
    python benchmarks/inference.py --quick         # tiny models and sizes, seconds
    python benchmarks/inference.py --backends tensorflow --sizes 256 --repeats 3
    python benchmarks/inference.py --variants all  # also candidate settings
    python benchmarks/inference.py --gpu           # mixed precision, XLA / torch.compile

On a CPU, steps whose estimated time exceeds ``--max-seconds`` are skipped
(or, for the volume, measured on fewer planes) and reported with their
estimate. The machine's load average is recorded: on a shared machine
wall-clock times move a lot, so compare ratios measured in one run.
"""

import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
BACKENDS = ("tensorflow", "jax", "torch")

# name -> (model class, extra config, M)
MODELS = {
    "rmz_m2": ("RecurrentMZ", {}, 2),
    "rmz_m3": ("RecurrentMZ", {}, 3),
    "deepz": ("DeepZ", {}, 1),
    "unet3d": ("UNet3D", {}, 3),
}
# --quick: the same networks, narrow and shallow, so every step takes seconds.
QUICK_CONFIGS = {
    "RecurrentMZ": {"base_filters": 4, "depth": 2},
    "DeepZ": {"base_filters": 4, "depth": 2},
    "UNet3D": {"base_filters": 4, "depth": 2},
}
# The paper's times on an RTX 2080 Ti (Xeon W-2195 host), 1024 x 1024 output.
PAPER_SECONDS = {
    "rmz_m2": (0.18, "Results: M = 2, one 1024x1024 output plane"),
    "rmz_m3": (0.28, "Results: M = 3, one plane (0.15 s in Methods 'after optimization for mixed precision')"),
    "deepz": (0.12, "Methods: Deep-Z, one 1024x1024 plane"),
    "unet3d": (0.2, "Methods: 3D U-Net, M = 3, one 1024x1024 plane"),
    "volume": (3.42, "Methods: M = 3, 101 x 1024 x 1024 volume"),
}
AUTO_MATMUL_SIZE = 2048

# Candidate settings timed with --variants on RecurrentMZ M = 3 at the first
# size: name -> (backends it applies to, environment, model overrides,
# planes per call, patches applied in the worker).
VARIANTS = {
    "batch4": (BACKENDS, {}, {}, 4, ()),
    "tf_xla": (("tensorflow",), {}, {"jit_compile": True}, 1, ()),
    "torch_threads1": (("torch",), {"OMP_NUM_THREADS": "1"}, {}, 1, ()),
    "torch_omp_passive": (("torch",), {"OMP_WAIT_POLICY": "PASSIVE"}, {}, 1, ()),
    # Keras's own channels-last convolutions and poolings instead of the
    # package's copy-free views (keras_rmz.layers.layout): the torch default
    # before session 7, and the same with Keras fix #23199 applied.
    "torch_keras_layout": (("torch",), {}, {}, 1, ("keras_layout",)),
    "torch_pr23199": (("torch",), {}, {}, 1, ("keras_layout", "keras_pr23199")),
    # Every ConvGRU step through the loop, the first on the zero state (as
    # before the zero-state start): what skipping its recurrent convs saves.
    "convgru_full_loop": (BACKENDS, {}, {}, 1, ("convgru_full_loop",)),
    # Session 8's two changes undone, one at a time and together: the
    # ConvGRU's time loop as a Keras loop (not unrolled), batch norm as a
    # separate pass after each convolution (not folded into it in inference).
    "convgru_keras_loop": (BACKENDS, {}, {}, 1, ("convgru_keras_loop",)),
    "bn_unfolded": (BACKENDS, {}, {}, 1, ("bn_unfolded",)),
    "session7": (BACKENDS, {}, {}, 1, ("convgru_keras_loop", "bn_unfolded")),
    # Session 9: the ConvGRU update as (1 - f) * h + f * h_hat, four
    # element-wise passes (the package now takes three: h + f * (h_hat - h)).
    "gru_update_4pass": (BACKENDS, {}, {}, 1, ("gru_update_4pass",)),
    # glibc malloc kept off mmap for large blocks, freed memory kept: each
    # new tensor reuses pages instead of faulting in fresh zeroed ones (what
    # jemalloc / tcmalloc give PyTorch on a CPU), for the whole process from
    # its start: what keras_rmz.backend.memory does around reconstruct on PyTorch
    # when KERAS_RMZ_REUSE_MEMORY=1.
    "malloc_heap": (BACKENDS, {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}, {}, 1, ()),
    # The package's own setting (keras_rmz.backend.memory, opt-in around
    # reconstruct on PyTorch) switched on; off, every large tensor is a fresh mmap.
    "reuse_memory_on": (("torch",), {"KERAS_RMZ_REUSE_MEMORY": "1"}, {}, 1, ()),
    # torch.compile: minutes of compilation on a small CPU; opt in by name.
    "torch_compile": (("torch",), {}, {"jit_compile": True}, 1, ()),
}
DEFAULT_VARIANTS = ("batch4", "tf_xla", "torch_threads1", "torch_omp_passive", "torch_keras_layout", "torch_pr23199")



def _sig(value, digits=4):
    """value rounded to `digits` significant figures (keeps small numbers exact enough to recompute ratios)."""
    return float(f"{value:.{digits}g}")

def apply_patch(name):
    """Benchmark-only patches that preview an upstream fix or undo one of
    the package's own (never used by the package)."""
    if name == "convgru_full_loop":
        # ConvGRU2D without its zero-state start: the first step's recurrent
        # convolutions run on zeros. The FLOP count stays the package's, so
        # compare this variant by its time per plane.
        from keras_rmz.layers import ConvGRU2D

        def call_from_zero_state(self, sequences, training):
            return ConvGRU2D.call(self, sequences, initial_state=self._zero_state(sequences), training=training)

        ConvGRU2D._call_from_zero_state = call_from_zero_state
    elif name == "convgru_keras_loop":
        # ConvGRU2D(unroll=None) as unroll=False: Keras's symbolic time loop
        # (on PyTorch it runs the first step twice to learn the output shape).
        from keras_rmz.layers import ConvGRU2D

        ConvGRU2D.unrolls = lambda self, steps: bool(self.unroll)
    elif name == "bn_unfolded":
        # Batch norm as its own layer after the convolution in inference too.
        from keras_rmz.layers import fused

        def unfolded(conv, bn, inputs, training=None):
            outputs = conv(inputs)
            return outputs if bn is None else bn(outputs, training=training)

        fused.conv_batch_norm = unfolded
    elif name == "gru_update_4pass":
        # The minimal (paper) gate with the update written as in Eq. 6.
        from keras import ops

        from keras_rmz.layers.conv_gru import ConvGRUCell

        package_call = ConvGRUCell.call

        def call(self, inputs, states):
            if self.gate != "minimal":
                return package_call(self, inputs, states)
            h_prev = states[0] if isinstance(states, (list, tuple)) else states
            n = self.filters
            x = self._input_terms(inputs)
            recurrent_kernel = ops.convert_to_tensor(self.recurrent_kernel)
            f = self.recurrent_activation(x[..., :n] + self._recurrent_conv(h_prev, recurrent_kernel[..., :n]))
            h_hat = self.activation(x[..., n:] + self._recurrent_conv(f * h_prev, recurrent_kernel[..., n:]))
            h = (1.0 - f) * h_prev + f * h_hat
            return h, [h]

        ConvGRUCell.call = call
    elif name == "keras_layout":
        # keras_rmz.layers.layout off: Keras's channels-last ops on every
        # backend (on torch, a copy to channels-first memory per call).
        from keras_rmz.backend import layout

        layout._views_channels_first = lambda: False
    elif name == "keras_pr23199":
        # keras-team/keras#23199 (issue #23279): the torch backend's conv
        # copies every channels-last input twice (a .contiguous() NCHW copy,
        # then a channels_last copy of that); one direct channels_last copy
        # gives the same tensor. Keras 3.15.1 predates the fix.
        import torch
        from keras.src.backend.torch import nn as torch_nn

        def transpose_spatial_inputs(inputs):
            perm = {3: (0, 2, 1), 4: (0, 3, 1, 2), 5: (0, 4, 1, 2, 3)}[inputs.ndim]
            layout = {4: torch.channels_last, 5: torch.channels_last_3d}.get(inputs.ndim, torch.contiguous_format)
            return torch.permute(inputs, perm).contiguous(memory_format=layout)

        torch_nn._transpose_spatial_inputs = transpose_spatial_inputs
    else:
        raise ValueError(f"unknown patch {name!r}")


# --- Memory -----------------------------------------------------------------


def _status_kb(field):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb():
    """Current resident set size (MB), or None where /proc is missing."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def peak_rss_mb():
    """Peak RSS (MB) since the process started or ``reset_peak_rss``."""
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    return kb / 1024


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


# --- Machine ----------------------------------------------------------------


def machine_info():
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
        flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
        info["cpu_model"] = models[0] if models else platform.processor()
        info["cpu_flags"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags.split()]
    except OSError:
        info["cpu_model"] = platform.processor()
    try:
        meminfo = pathlib.Path("/proc/meminfo").read_text().splitlines()
        fields = {line.split(":")[0]: int(line.split()[1]) for line in meminfo}
        info["memory_gb"] = round(fields["MemTotal"] / 2**20, 1)
        info["memory_available_gb"] = round(fields["MemAvailable"] / 2**20, 1)
    except (OSError, KeyError, ValueError):
        pass
    versions = {}
    for module in ("keras", "numpy", "tensorflow", "jax", "jaxlib", "torch"):
        try:
            from importlib.metadata import version

            versions[module] = version(module if module != "tensorflow" else "tensorflow-cpu")
        except Exception:  # noqa: BLE001 - a missing package is just absent
            try:
                versions[module] = version(module)
            except Exception:  # noqa: BLE001
                pass
    info["versions"] = versions
    return info


def _sync(value):
    """Block until ``value`` is computed (GPU backends run asynchronously)."""
    if hasattr(value, "block_until_ready"):
        value.block_until_ready()
    elif hasattr(value, "numpy"):
        value.numpy()
    elif type(value).__module__.startswith("torch"):
        import torch

        if value.is_cuda:
            torch.cuda.synchronize()
    return value


def matmul_rates(n=AUTO_MATMUL_SIZE, repeats=5, dtype="float32"):
    """GFLOP/s of an n x n x n matrix product, best of ``repeats``: numpy's
    (float32 only) and the backend's (jit-compiled where the backend has it)."""
    import keras

    rates = {}
    flops = 2.0 * n**3
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)

    def best_of(fn):
        _sync(fn())
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            _sync(fn())
            best = min(best, time.perf_counter() - start)
        return round(flops / best / 1e9, 2)

    if dtype == "float32":
        rates["numpy"] = best_of(lambda: a @ b)
    backend = keras.backend.backend()
    ta = keras.ops.convert_to_tensor(a, dtype=dtype)
    tb = keras.ops.convert_to_tensor(b, dtype=dtype)
    if backend == "jax":
        import jax

        product = jax.jit(lambda x, y: x @ y)
        rates["backend"] = best_of(lambda: product(ta, tb))
    elif backend == "tensorflow":
        import tensorflow as tf

        product = tf.function(lambda x, y: tf.matmul(x, y))
        rates["backend"] = best_of(lambda: product(ta, tb))
    elif backend == "torch":
        import torch

        with torch.no_grad():
            rates["backend"] = best_of(lambda: torch.mm(ta, tb))
    else:
        rates["backend"] = best_of(lambda: keras.ops.matmul(ta, tb))
    return rates


# --- Models -----------------------------------------------------------------


def model_class(class_name):
    """The keras_rmz class, or None where its module is not there (yet)."""
    import importlib

    modules = {
        "RecurrentMZ": "keras_rmz.models",
        "DeepZ": "keras_rmz.models.deep_z",
        "UNet3D": "keras_rmz.models.unet3d",
    }
    try:
        return getattr(importlib.import_module(modules[class_name]), class_name)
    except (ImportError, AttributeError):
        return None


def model_config(name, quick):
    class_name, extra, num_inputs = MODELS[name]
    config = dict(QUICK_CONFIGS[class_name]) if quick else {}
    config.update(extra)
    if class_name == "UNet3D":
        config["num_inputs"] = num_inputs
    return class_name, config, num_inputs


def build_model(name, quick, overrides=None):
    """(model, class name, num_inputs) or (None, class name, reason)."""
    class_name, config, num_inputs = model_config(name, quick)
    cls = model_class(class_name)
    if cls is None:
        return None, class_name, f"keras_rmz has no {class_name} yet (module missing): skipped"
    model = cls(**config)
    for key, value in (overrides or {}).items():
        setattr(model, key, value)
    return model, class_name, num_inputs


def make_inputs(num_planes, num_inputs, size, seed=0):
    """A predict_on_batch batch: ``num_planes`` output planes, M inputs."""
    rng = np.random.default_rng(seed)
    images = rng.random((num_inputs, size, size), dtype=np.float32)
    input_z = np.linspace(0.0, 6.0, num_inputs, dtype=np.float32)
    output_z = np.linspace(0.0, 6.0, num_planes, dtype=np.float32)
    return {
        "images": np.broadcast_to(images[None, ..., None], (num_planes, num_inputs, size, size, 1)).copy(),
        "input_z": np.broadcast_to(input_z[None], (num_planes, num_inputs)).copy(),
        "output_z": output_z,
    }


def flops_module():
    """benchmarks/flops.py, loaded by path (benchmarks/ is no package)."""
    import importlib.util

    if "_rmz_benchmark_flops" not in sys.modules:
        spec = importlib.util.spec_from_file_location("_rmz_benchmark_flops", HERE / "flops.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["_rmz_benchmark_flops"] = module
    return sys.modules["_rmz_benchmark_flops"]


def analytic(model, class_name, size, num_inputs):
    return flops_module().analytic_flops(class_name, model.get_config(), size, size, num_inputs)


def time_predict(model, batch, repeats):
    """First-call and steady-state seconds of ``model.predict_on_batch``,
    with the allocator setting ``reconstruct`` runs it under
    (``keras_rmz.backend.memory.reuse_freed_memory``: on PyTorch with
    ``KERAS_RMZ_REUSE_MEMORY=1``)."""
    from keras_rmz.backend.memory import reuse_freed_memory

    with reuse_freed_memory():
        start = time.perf_counter()
        model.predict_on_batch(batch)
        first = time.perf_counter() - start
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            model.predict_on_batch(batch)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return first, walls, cpus


def _rate(flops, seconds):
    return flops / seconds / 1e9 if seconds > 0 else float("nan")


# --- Worker (one backend, one process) ---------------------------------------


def _gpu_memory():
    """Peak accelerator memory (MB) since the last reset, per backend, or None."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.max_memory_allocated() / 2**20
        elif backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                return (device.memory_stats() or {}).get("peak_bytes_in_use", 0) / 2**20
    except Exception:  # noqa: BLE001 - memory stats are best effort
        return None
    return None


def _reset_gpu_memory():
    import keras

    try:
        if keras.backend.backend() == "torch":
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        elif keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                tf.config.experimental.reset_memory_stats("GPU:0")
    except Exception:  # noqa: BLE001
        pass


def _log(options, message):
    if options.get("verbose", True):
        print(f"[{options['backend']}{'/' + options['variant'] if options.get('variant') else ''}] {message}", flush=True)


def measure_models(options, reference_gflops):
    """Per model and size: ms per output plane, FLOPs, fraction of matmul."""
    rows = []
    achieved = {}  # model name -> GFLOP/s at the last size, for budgets
    planes = int(options.get("planes_per_call", 1))
    for name in options["models"]:
        for size in sorted(options["sizes"]):
            model, class_name, num_inputs = build_model(name, options["quick"], options.get("overrides"))
            row = {"model": name, "class": class_name, "size": size, "planes_per_call": planes}
            if model is None:
                rows.append({**row, "skipped": num_inputs})
                _log(options, f"{name}: {num_inputs}")
                break
            count = analytic(model, class_name, size, num_inputs)
            row.update(
                num_inputs=num_inputs,
                config=model.get_config(),
                gflop_per_plane=_sig(count["flops"] / 1e9),
                flops_by_part_g={k: _sig(v / 1e9) for k, v in count["parts"].items()},
            )
            rate_guess = achieved.get(name, 0.25 * reference_gflops)
            call_s = planes * count["flops"] / 1e9 / rate_guess
            repeats = options["repeats"]
            if options["max_seconds"]:
                # A warm-up and at least one timed call must fit the budget.
                if 2 * call_s > options["max_seconds"]:
                    row.update(skipped=f"estimated 2 x {call_s:.0f} s > --max-seconds {options['max_seconds']:.0f}",
                               estimated_ms_per_plane=round(1000 * call_s / planes))
                    rows.append(row)
                    _log(options, f"{name} {size}: skipped ({row['skipped']})")
                    del model
                    continue
                repeats = max(1, min(repeats, int(options["max_seconds"] / call_s) - 1))
            batch = make_inputs(planes, num_inputs, size)
            reset_peak_rss()
            _reset_gpu_memory()
            load = os.getloadavg()[0]
            first, walls, cpus = time_predict(model, batch, repeats)
            best = min(walls)
            rate = _rate(planes * count["flops"], best)
            achieved[name] = rate
            row.update(
                repeats=repeats,
                first_call_s=round(first, 3),
                ms_per_plane=_sig(1000 * best / planes),
                ms_per_plane_median=_sig(1000 * statistics.median(walls) / planes),
                cpu_ms_per_plane=_sig(1000 * min(cpus) / planes),
                gflops_per_s=_sig(rate),
                fraction_of_matmul=_sig(rate / reference_gflops),
                peak_rss_mb=round(peak_rss_mb(), 1),
                peak_gpu_mb=_gpu_memory(),
                load_average=round(load, 2),
            )
            if name in PAPER_SECONDS and size == 1024:
                row["paper_ms_per_plane"] = 1000 * PAPER_SECONDS[name][0]
            rows.append(row)
            _log(options, f"{name} {size}x{size}: {row['ms_per_plane']:.1f} ms/plane, {rate:.1f} GFLOP/s "
                 f"({100 * row['fraction_of_matmul']:.0f}% of matmul), first call {first:.1f} s")
            del model
    return rows


def measure_batching(options, reference_gflops):
    """reconstruct over K planes: the default batch_size="auto", 8 planes per
    call and one plane per call."""
    name = "rmz_m3"
    size = options["batching_size"]
    planes = options["batching_planes"]
    model, class_name, num_inputs = build_model(name, options["quick"], options.get("overrides"))
    if model is None:
        return {"skipped": num_inputs}
    count = analytic(model, class_name, size, num_inputs)
    images = make_inputs(1, num_inputs, size)["images"][0, ..., 0]
    input_z = np.linspace(0.0, 6.0, num_inputs)
    output_z = np.linspace(0.0, 6.0, planes)
    result = {"model": name, "size": size, "planes": planes, "gflop_per_plane": _sig(count["flops"] / 1e9)}
    estimate = 2 * 2 * planes * count["flops"] / 1e9 / (0.25 * reference_gflops)
    if options["max_seconds"] and estimate > 2 * options["max_seconds"]:
        return {**result, "skipped": f"estimated {estimate:.0f} s > 2 x --max-seconds"}
    from keras_rmz.backend.device import auto_batch_size

    for batch_size in ("auto", 8, 1):
        per_call = auto_batch_size(size, size, planes) if batch_size == "auto" else batch_size
        # The first call traces / compiles for this batch shape.
        start = time.perf_counter()
        model.reconstruct(images, input_z, output_z[: min(per_call, planes)], batch_size=batch_size, verbose=False)
        warm = time.perf_counter() - start
        reset_peak_rss()
        start = time.perf_counter()
        model.reconstruct(images, input_z, output_z, batch_size=batch_size, verbose=False)
        seconds = time.perf_counter() - start
        result[f"batch_size_{batch_size}"] = {
            "planes_per_call": min(per_call, planes),
            "first_call_s": round(warm, 3),
            "seconds": round(seconds, 3),
            "ms_per_plane": _sig(1000 * seconds / planes),
            "gflops_per_s": _sig(_rate(planes * count["flops"], seconds)),
            "fraction_of_matmul": _sig(_rate(planes * count["flops"], seconds) / reference_gflops),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
        _log(options, f"reconstruct {planes} planes {size}x{size}, batch_size={batch_size}: {1000 * seconds / planes:.1f} ms/plane")
    result["speedup_batched"] = round(result["batch_size_1"]["seconds"] / result["batch_size_8"]["seconds"], 3)
    result["speedup_auto"] = round(result["batch_size_1"]["seconds"] / result["batch_size_auto"]["seconds"], 3)
    return result


def available_memory_mb():
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def measure_volume(options, reference_gflops, per_plane_ms, per_plane_mb=None):
    """A whole volume (``volume_planes`` x size^2 from M = 3) through
    ``model.reconstruct`` with its defaults; fewer planes when over budget."""
    name, size, planes = "rmz_m3", options["volume_size"], options["volume_planes"]
    model, class_name, num_inputs = build_model(name, options["quick"], options.get("overrides"))
    if model is None:
        return {"skipped": num_inputs}
    count = analytic(model, class_name, size, num_inputs)
    result = {"model": name, "size": size, "planes": planes, "gflop_per_plane": _sig(count["flops"] / 1e9)}
    measured = planes
    if options["max_seconds"]:
        ms = per_plane_ms or 1000 * count["flops"] / 1e9 / (0.25 * reference_gflops)
        affordable = int(options["max_seconds"] * 1000 / ms)
        if affordable < planes:
            measured = max(1, min(planes, affordable))
            result["note"] = (f"{planes} planes estimated at {planes * ms / 1000:.0f} s > --max-seconds "
                              f"{options['max_seconds']:.0f}: {measured} planes measured, time extrapolated")
        # reconstruct batches up to 8 planes per call, and memory grows with
        # the batch: keep the batch within half the memory available now.
        available = available_memory_mb()
        if per_plane_mb and available:
            safe = max(1, int(0.5 * available / per_plane_mb))
            if safe < min(measured, 8):
                measured = safe
                result["note"] = (result.get("note", "") + f"; memory: ~{per_plane_mb:.0f} MB per plane in a batch, "
                                  f"{available:.0f} MB available: {measured} planes measured, time extrapolated").lstrip("; ")
    images = make_inputs(1, num_inputs, size)["images"][0, ..., 0]
    input_z = np.linspace(0.0, 6.0, num_inputs)
    output_z = np.linspace(0.0, 10.0, planes)[:measured]
    reset_peak_rss()
    _reset_gpu_memory()
    start = time.perf_counter()
    model.reconstruct(images, input_z, output_z, verbose=False)  # the package defaults (batch_size="auto")
    seconds = time.perf_counter() - start
    # The measured call includes tracing / compiling, paid once per volume:
    # the planes not measured are added at the steady per-plane time.
    steady_s = min(seconds / measured, per_plane_ms / 1000) if per_plane_ms else seconds / measured
    result.update(
        measured_planes=measured,
        seconds_measured=round(seconds, 2),
        seconds_for_volume=round(seconds + (planes - measured) * steady_s, 2),
        extrapolated=measured < planes,
        ms_per_plane=round(1000 * seconds / measured, 2),
        gflops_per_s=round(_rate(measured * count["flops"], seconds), 2),
        fraction_of_matmul=round(_rate(measured * count["flops"], seconds) / reference_gflops, 3),
        peak_rss_mb=round(peak_rss_mb(), 1),
        peak_gpu_mb=_gpu_memory(),
        includes_first_call=True,
    )
    if size == 1024 and planes == 101:
        result["paper_seconds"] = PAPER_SECONDS["volume"][0]
    _log(options, f"volume {measured}/{planes} planes {size}x{size}: {seconds:.1f} s "
         f"({'extrapolated ' if measured < planes else ''}{result['seconds_for_volume']:.1f} s for {planes})")
    return result


def flop_cross_check(options):
    """Analytic count against the JAX trace and XLA's cost model, once."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    flop_counts = flops_module()
    size = options["cross_check_size"]
    checks = []
    for name in options["models"]:
        model, class_name, num_inputs = build_model(name, options["quick"])
        if model is None:
            continue
        batch = make_inputs(1, num_inputs, size)
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def forward(trainable, non_trainable, batch, model=model):
            return model.stateless_call(trainable, non_trainable, batch, training=False)[0]

        count = analytic(model, class_name, size, num_inputs)
        traced = flop_counts.traced_conv_flops_jax(forward, trainable, non_trainable, batch)
        check = {"model": name, "size": size, "analytic_gflop": round(count["flops"] / 1e9, 4),
                 "elementwise_estimate_gflop": round(count["elementwise_estimate"] / 1e9, 4),
                 "traced_conv_gflop": round(traced / 1e9, 4), "traced_over_analytic": round(traced / count["flops"], 5)}
        if name == "rmz_m3" or options["quick"]:
            # One XLA compile; XLA counts loop (ConvGRU scan) bodies once and
            # skips the taps that fall on "same" padding.
            xla = flop_counts.xla_cost_analysis(forward, trainable, non_trainable, batch)
            if "flops" in xla:
                check["xla_cost_analysis_gflop"] = round(xla["flops"] / 1e9, 4)
                check["xla_over_analytic"] = round(xla["flops"] / count["flops"], 4)
        checks.append(check)
        _log(options, f"FLOPs {name} {size}x{size}: analytic {check['analytic_gflop']} G, traced {check['traced_conv_gflop']} G"
             + (f", XLA {check['xla_cost_analysis_gflop']} G" if "xla_cost_analysis_gflop" in check else ""))
    return checks


def measure_tiling(options):
    """Peak RSS of tiled inference on a large image against the untiled
    estimate (peak RSS above the warm baseline at two sizes, linear in pixels)."""
    config = {"base_filters": options["tiling_base_filters"]} if options["tiling_base_filters"] else {}
    if options["quick"]:
        config = dict(QUICK_CONFIGS["RecurrentMZ"])
    cls = model_class("RecurrentMZ")
    model = cls(**config)
    tile, big = options["tile_size"], options["tiling_image"]
    num_inputs = 3
    input_z = np.linspace(0.0, 6.0, num_inputs)
    output_z = np.array([3.0])
    rng = np.random.default_rng(0)

    def run(size, tile_size):
        images = rng.random((num_inputs, size, size), dtype=np.float32)
        kwargs = {"tile_size": tile_size, "tile_overlap": options["tile_overlap"], "verbose": False}
        # Warm-up on one tile's shape (tracing / compiling), then measure.
        model.reconstruct(images[:, :tile_size, :tile_size], input_z, output_z, **kwargs)
        # The baseline is read after the reset: memory freed in between
        # would otherwise leave the peak below the baseline.
        reset_peak_rss()
        before = rss_mb()
        start = time.perf_counter()
        model.reconstruct(images, input_z, output_z, **kwargs)
        seconds = time.perf_counter() - start
        # The kernel updates VmRSS and VmHWM from per-thread counters that
        # are folded in lazily, so VmHWM can read a few pages under an RSS
        # seen a moment before; a peak is never below any RSS observed.
        peak = max(peak_rss_mb(), before, rss_mb())
        return {"size": size, "tile_size": tile_size, "rss_before_mb": round(before, 1),
                "peak_rss_mb": round(peak, 1), "seconds": round(seconds, 2)}

    small = [run(s, s) for s in (tile, 2 * tile)]
    (p1, r1), (p2, r2) = [(r["size"] ** 2, r["peak_rss_mb"] - r["rss_before_mb"]) for r in small]
    slope = (r2 - r1) / (p2 - p1)  # MB per pixel of a plane
    untiled_extra = r1 + slope * (big**2 - p1)
    tiled = run(big, tile)
    # What a tiled run pays for the image's size outside the network: the
    # normalization of the M input planes (measured: it runs numpy/scipy on
    # whole planes) and the float64 accumulator and weight planes plus the
    # float32 output of reconstruct (counted).
    from keras_rmz.data import compute_normalization

    images = rng.random((num_inputs, big, big), dtype=np.float32)
    reset_peak_rss()
    before = rss_mb()
    normalized = compute_normalization(images).apply(images).astype(np.float32)
    normalization_mb = peak_rss_mb() - before
    del normalized, images
    arrays_mb = normalization_mb + ((len(output_z) + 1) * big**2 * 8 + 2 * len(output_z) * big**2 * 4) / 2**20
    result = {
        "config": model.get_config(),
        "tile_overlap": options["tile_overlap"],
        "num_inputs": num_inputs,
        "output_planes": len(output_z),
        "untiled_measured": small,
        "untiled_extra_mb_per_megapixel": round(slope * 2**20, 1),
        "untiled_estimate_peak_rss_mb": round(tiled["rss_before_mb"] + untiled_extra, 1),
        "tiled": tiled,
        "tiled_peak_over_baseline_mb": round(tiled["peak_rss_mb"] - tiled["rss_before_mb"], 1),
        "tiled_numpy_arrays_mb": round(arrays_mb, 1),
        "normalization_peak_mb": round(normalization_mb, 1),
    }
    # Bounded: the tiled run's peak above baseline is no more than the
    # image-sized numpy work (normalization, accumulators) plus one tile's
    # untiled peak (x2, plus 256 MB for allocator slack); it does not grow
    # with the network's activations over the whole image.
    result["bounded"] = bool(result["tiled_peak_over_baseline_mb"] <= arrays_mb + 2 * r1 + 256)
    _log(options, f"tiling {big}x{big} tile {tile}: peak {tiled['peak_rss_mb']:.0f} MB "
         f"(+{result['tiled_peak_over_baseline_mb']:.0f} MB) vs untiled estimate "
         f"{result['untiled_estimate_peak_rss_mb']:.0f} MB")
    return result


def run_worker(options):
    """All measurements for the current Keras backend; returns a dict."""
    import keras

    if options.get("gpu"):
        keras.mixed_precision.set_global_policy(options.get("precision", "mixed_float16"))
    backend = keras.backend.backend()
    for patch in options.get("patches", ()):
        apply_patch(patch)
    options = {**options, "backend": backend}
    result = {"backend": backend, "variant": options.get("variant"), "load_average_start": [round(x, 2) for x in os.getloadavg()],
              "rss_after_import_mb": round(rss_mb() or 0, 1)}
    if backend == "torch":
        import torch

        result["torch_threads"] = torch.get_num_threads()
    tasks = options["tasks"]
    matmul_dtype = "float32" if not options.get("gpu") else {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}.get(
        options.get("precision"), "float32")
    result["matmul_start"] = matmul_rates(options["matmul_size"], options["matmul_repeats"], matmul_dtype)
    reference = max(result["matmul_start"].values())
    if "models" in tasks:
        result["models"] = measure_models(options, reference)
    if "batching" in tasks:
        result["batching"] = measure_batching(options, reference)
    if "volume" in tasks:
        row = next((r for r in result.get("models", [])
                    if r["model"] == "rmz_m3" and r["size"] == options["volume_size"] and "ms_per_plane" in r), {})
        per_plane_mb = row["peak_rss_mb"] - result["rss_after_import_mb"] if row else None
        result["volume"] = measure_volume(options, reference, row.get("ms_per_plane"), per_plane_mb)
    if "tiling" in tasks:
        result["tiling"] = measure_tiling(options)
    if "flops" in tasks:
        result["flop_cross_check"] = flop_cross_check(options)
    result["matmul_end"] = matmul_rates(options["matmul_size"], options["matmul_repeats"], matmul_dtype)
    # The reference: the faster of numpy and the backend, before or after.
    result["matmul_reference_gflops"] = max(reference, *result["matmul_end"].values())
    for row in result.get("models", []):
        if "gflops_per_s" in row:
            row["fraction_of_matmul"] = round(row["gflops_per_s"] / result["matmul_reference_gflops"], 3)
    for key in ("volume",):
        if isinstance(result.get(key), dict) and "gflops_per_s" in result[key]:
            result[key]["fraction_of_matmul"] = round(result[key]["gflops_per_s"] / result["matmul_reference_gflops"], 3)
    if isinstance(result.get("batching"), dict):
        for sub in ("batch_size_auto", "batch_size_8", "batch_size_1"):
            if sub in result["batching"]:
                entry = result["batching"][sub]
                entry["fraction_of_matmul"] = round(entry["gflops_per_s"] / result["matmul_reference_gflops"], 3)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["peak_rss_mb_process"] = round(peak_rss_mb(), 1)
    return result


# --- Driver -----------------------------------------------------------------


def _spawn(options, env_extra):
    """Runs one worker in a subprocess; returns its result with its peak RSS
    from the kernel's accounting (``os.wait4``)."""
    with tempfile.TemporaryDirectory() as tmp:
        config_path = pathlib.Path(tmp) / "options.json"
        out_path = pathlib.Path(tmp) / "result.json"
        config_path.write_text(json.dumps({**options, "result_path": str(out_path)}))
        env = {**os.environ, "KERAS_BACKEND": options["backend"], **env_extra}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", str(config_path)], env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not out_path.exists():
            return {"backend": options["backend"], "variant": options.get("variant"),
                    "error": f"worker exited with code {proc.returncode}", "wall_s": round(wall, 1)}
        result = json.loads(out_path.read_text())
    result["subprocess_max_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # KB on Linux
    result["subprocess_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    result["wall_s"] = round(wall, 1)
    return result


def _fmt(value, digits=1):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_report(report):
    """The tables of a report (the dict that ``main`` saves) as markdown."""
    lines = []
    machine = report["machine"]
    lines.append(f"Machine: {machine.get('cpu_model')} ({machine.get('cpu_count')} logical cores, "
                 f"{machine.get('memory_gb')} GB), load average at start {machine.get('load_average')}; "
                 + ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items()) + ".")
    lines.append("")
    lines.append("| backend | model | M | size | ms / plane | GFLOP / plane | GFLOP/s | % of matmul | matmul GFLOP/s | first call s | peak RSS MB | paper ms (2080 Ti) |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in report["runs"]:
        if "error" in run:
            lines.append(f"| {run['backend']} | {run['error']} |||||||||||")
            continue
        label = run["backend"] + (f" ({run['variant']})" if run.get("variant") else "")
        for row in run.get("models", []):
            paper = 1000 * PAPER_SECONDS[row["model"]][0] if row["size"] == 1024 and row["model"] in PAPER_SECONDS else None
            if "ms_per_plane" not in row:
                est = row.get("estimated_ms_per_plane")
                why = f"skipped (est. {est:,} ms)" if est else f"skipped: {row.get('skipped', '')}"
                lines.append(f"| {label} | {row['model']} | {row.get('num_inputs', '')} | {row['size']} | {why} | "
                             f"{_fmt(row.get('gflop_per_plane'), 2)} |  |  |  |  |  | {_fmt(paper, 0)} |")
                continue
            lines.append(
                f"| {label} | {row['model']}{' x' + str(row['planes_per_call']) if row['planes_per_call'] > 1 else ''} | {row['num_inputs']} | {row['size']} | "
                f"{_fmt(row['ms_per_plane'])} | {_fmt(row['gflop_per_plane'], 2)} | {_fmt(row['gflops_per_s'])} | "
                f"{_fmt(100 * row['fraction_of_matmul'], 0)} | {_fmt(run['matmul_reference_gflops'])} | "
                f"{_fmt(row['first_call_s'])} | {_fmt(row['peak_rss_mb'], 0)} | {_fmt(paper, 0)} |")
    batching = [(r["backend"], r["batching"]) for r in report["runs"] if isinstance(r.get("batching"), dict) and "batch_size_8" in r["batching"]]
    if batching:
        lines += ["", "`model.reconstruct`, RecurrentMZ M = 3, output planes batched (the default batch_size=\"auto\", "
                  "or 8) or one at a time; speed-up against one at a time:", "",
                  "| backend | planes | size | auto: planes per call | auto ms / plane | batch_size=8 ms / plane | "
                  "batch_size=1 ms / plane | speed-up auto | speed-up 8 | peak RSS MB (auto / 8 / 1) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for backend, b in batching:
            auto = b.get("batch_size_auto", {})
            lines.append(f"| {backend} | {b['planes']} | {b['size']} | {auto.get('planes_per_call', '')} | "
                         f"{_fmt(auto.get('ms_per_plane'))} | {_fmt(b['batch_size_8']['ms_per_plane'])} | "
                         f"{_fmt(b['batch_size_1']['ms_per_plane'])} | {_fmt(b.get('speedup_auto'), 2)}x | "
                         f"{_fmt(b['speedup_batched'], 2)}x | {_fmt(auto.get('peak_rss_mb'), 0)} / "
                         f"{_fmt(b['batch_size_8']['peak_rss_mb'], 0)} / {_fmt(b['batch_size_1']['peak_rss_mb'], 0)} |")
    volumes = [(r["backend"], r["volume"]) for r in report["runs"] if isinstance(r.get("volume"), dict) and "seconds_measured" in r["volume"]]
    if volumes:
        lines += ["", "Whole volume through `model.reconstruct` (package defaults, first call included):", "",
                  "| backend | volume | planes measured | seconds | seconds for the volume | % of matmul | peak RSS MB | paper s (2080 Ti) |",
                  "|---|---|---|---|---|---|---|---|"]
        for backend, v in volumes:
            lines.append(f"| {backend} | {v['planes']} x {v['size']}² | {v['measured_planes']} | {_fmt(v['seconds_measured'])} | "
                         f"{_fmt(v['seconds_for_volume'])}{' (extrapolated)' if v['extrapolated'] else ''} | "
                         f"{_fmt(100 * v['fraction_of_matmul'], 0)} | {_fmt(v['peak_rss_mb'], 0)} | {_fmt(v.get('paper_seconds'), 2)} |")
    tilings = [(r["backend"], r["tiling"]) for r in report["runs"] if isinstance(r.get("tiling"), dict) and "tiled" in r["tiling"]]
    if tilings:
        lines += ["", "Tiled inference (RecurrentMZ "
                  f"base_filters={tilings[0][1]['config']['base_filters']}, M = 3, one output plane): peak RSS", "",
                  "| backend | image | tile | seconds | RSS before MB | peak RSS MB | normalization of the inputs alone, above baseline MB | one tile untiled, above baseline MB | untiled estimate MB | bounded |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for backend, t in tilings:
            lines.append(f"| {backend} | {t['tiled']['size']}² | {t['tiled']['tile_size']} | {_fmt(t['tiled']['seconds'])} | "
                         f"{_fmt(t['tiled']['rss_before_mb'], 0)} | {_fmt(t['tiled']['peak_rss_mb'], 0)} | "
                         f"{_fmt(t.get('normalization_peak_mb'), 0)} | "
                         f"{_fmt(t['untiled_measured'][0]['peak_rss_mb'] - t['untiled_measured'][0]['rss_before_mb'], 0)} | "
                         f"{_fmt(t['untiled_estimate_peak_rss_mb'], 0)} | {'yes' if t['bounded'] else 'no'} |")
    checks = [c for r in report["runs"] for c in (r.get("flop_cross_check") or [])]
    if checks:
        lines += ["", "FLOPs per output plane: analytic (layer configs) against the convolutions in the JAX trace and XLA's cost model:", "",
                  "| model | size | analytic GFLOP | traced GFLOP | traced / analytic | XLA GFLOP | XLA / analytic |", "|---|---|---|---|---|---|---|"]
        for c in checks:
            lines.append(f"| {c['model']} | {c['size']} | {c['analytic_gflop']} | {c['traced_conv_gflop']} | {c['traced_over_analytic']} | "
                         f"{c.get('xla_cost_analysis_gflop', '–')} | {c.get('xla_over_analytic', '–')} |")
    return "\n".join(lines) + "\n"


def save_figure(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(f"{r['backend']}{'/' + r['variant'] if r.get('variant') else ''}\n{row['model']} {row['size']}", row["fraction_of_matmul"])
            for r in report["runs"] for row in r.get("models", []) if "fraction_of_matmul" in row]
    if not bars:
        return False
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(bars)), 4.5))
    ax.bar(range(len(bars)), [100 * b[1] for b in bars], color="tab:blue")
    ax.axhline(70, color="tab:orange", ls="--", lw=1, label="70 % target (every backend)")
    ax.axhline(85, color="tab:green", ls="--", lw=1, label="85 % target (fastest)")
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=90, fontsize=7)
    ax.set_ylabel("achieved GFLOP/s, % of matmul rate")
    ax.set_title("Inference throughput relative to this machine's float32 matmul")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def build_options(args):
    quick = args.quick
    sizes = args.sizes or ([32, 64] if quick else [256, 1024])
    tasks = set(args.tasks.split(",")) if args.tasks else {"models", "batching", "volume", "tiling", "flops"}
    return {
        "quick": quick,
        "gpu": args.gpu,
        "precision": args.precision,
        "sizes": sizes,
        "models": args.models.split(",") if args.models else list(MODELS),
        "repeats": args.repeats if args.repeats is not None else (1 if quick else 2),
        "max_seconds": None if args.gpu or args.max_seconds <= 0 else args.max_seconds,
        "matmul_size": 256 if quick else AUTO_MATMUL_SIZE,
        "matmul_repeats": 2 if quick else 5,
        "batching_size": 32 if quick else 256,
        "batching_planes": 8,
        "volume_size": max(sizes) if quick else 1024,
        "volume_planes": 5 if quick else args.volume_planes,
        "tiling_image": 128 if quick else args.tiling_image,
        "tile_size": 32 if quick else args.tile_size,
        "tile_overlap": 8 if quick else args.tile_overlap,
        "tiling_base_filters": args.tiling_base_filters if args.tiling_base_filters is not None else (20 if args.gpu else 4),
        "cross_check_size": min(sizes) if quick else 256,
        "overrides": {"jit_compile": True} if args.gpu else {},
        "tasks": sorted(tasks),
        "verbose": True,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default: all three)")
    parser.add_argument("--sizes", type=int, nargs="+", help="image sizes (default 256 1024; --quick 32 64)")
    parser.add_argument("--models", help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--quick", action="store_true", help="tiny models and sizes: a smoke run in seconds")
    parser.add_argument("--repeats", type=int, help="timed calls after the first (default 2; --quick 1)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--gpu", action="store_true", help="mixed precision, jit_compile=True (XLA / torch.compile), no time budget")
    parser.add_argument("--precision", default="mixed_float16", help="dtype policy with --gpu (mixed_float16, mixed_bfloat16, float32)")
    parser.add_argument("--tasks", help="comma-separated subset of models,batching,volume,tiling,flops")
    parser.add_argument("--variants", help=f"'all' or comma-separated of {','.join(VARIANTS)}: candidate settings, "
                        f"RecurrentMZ M = 3 at the first size (default none; 'default' = {','.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="CPU: skip steps estimated longer (0: no limit)")
    parser.add_argument("--volume-planes", type=int, default=101)
    parser.add_argument("--tiling-image", type=int, default=4096)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--tile-overlap", type=int, default=48, help="reconstruct's default")
    parser.add_argument("--tiling-base-filters", type=int, help="RecurrentMZ width for the tiling run (default 4 on CPU, 20 with --gpu)")
    parser.add_argument("--tag", help="appended to the output file names (inference[_mode][_tag].*)")
    parser.add_argument("--worker", type=pathlib.Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        options = json.loads(args.worker.read_text())
        result = run_worker(options)
        pathlib.Path(options["result_path"]).write_text(json.dumps(result))
        return result

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"--backends accepts {', '.join(BACKENDS)}; got {', '.join(unknown)}")
    options = build_options(args)
    unknown = sorted(set(options["models"]) - set(MODELS))
    if unknown:
        parser.error(f"--models accepts {', '.join(MODELS)}; got {', '.join(unknown)}")
    variant_names = []
    if args.variants:
        variant_names = list(VARIANTS) if args.variants == "all" else (
            list(DEFAULT_VARIANTS) if args.variants == "default" else args.variants.split(","))
        unknown = sorted(set(variant_names) - set(VARIANTS))
        if unknown:
            parser.error(f"--variants accepts all, default or {', '.join(VARIANTS)}; got {', '.join(unknown)}")

    report = {"benchmark": "inference", "mode": "gpu" if args.gpu else ("quick" if args.quick else "cpu"),
              "options": {k: v for k, v in options.items() if k != "verbose"}, "machine": machine_info(), "runs": []}
    for backend in backends:
        report["runs"].append(_spawn({**options, "backend": backend}, {}))
    for name in variant_names:
        applies, env, overrides, planes, patches = VARIANTS[name]
        for backend in backends:
            if backend not in applies:
                continue
            variant_options = {**options, "backend": backend, "variant": name, "models": ["rmz_m3"],
                               "sizes": [options["sizes"][0]], "tasks": ["models"],
                               "overrides": {**options["overrides"], **overrides}, "planes_per_call": planes,
                               "patches": list(patches), "variant_env": env}
            report["runs"].append(_spawn(variant_options, env))
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

    args.out.mkdir(parents=True, exist_ok=True)
    stem = "inference" + {"quick": "_quick", "gpu": "_gpu"}.get(report["mode"], "") + (f"_{args.tag}" if args.tag else "")
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_report(report)
    (args.out / f"{stem}.md").write_text(table)
    save_figure(report, args.out / f"{stem}.png")
    print(table)
    return report


if __name__ == "__main__":
    main()
