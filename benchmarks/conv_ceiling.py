"""How fast a network could run if everything but its convolutions were free.

Issue 7 asks RecurrentMZ (M = 3, 1024²) to reach 70 % of the measured float32
matmul rate on every backend. This script asks what the backends' own
convolution kernels allow at the network's shapes: it records every
convolution the network runs for one output plane (input and kernel shape,
strides, padding: through ``keras_rmz.backend.layout.conv``, which all the
package's layers call, on an eager PyTorch run where the ConvGRU's time loop
is a Python loop), then, in one process per backend, times each distinct
convolution alone (compiled the way the backend runs the model:
``jax.jit``, ``tf.function``, eager PyTorch), and the whole network through
``predict_on_batch`` (what ``reconstruct`` calls), beside a matmul measured
in the same process.

- ``convolutions only``: the sum of the convolutions' times (each distinct
  shape times its count), i.e. the network's time if bias, batch norm,
  activations, gates, pooling, up-sampling, concatenation and copies took no
  time. Its fraction of the matmul rate is the ceiling for the network on
  that backend's convolution kernels.
- ``network``: the measured time per plane; ``network ÷ convolutions`` is
  what everything else adds.

The recorded FLOPs are checked against ``benchmarks/flops.py`` (they must
be equal).

Usage:
    python benchmarks/conv_ceiling.py                        # RecurrentMZ M=3, 1024², 3 backends
    python benchmarks/conv_ceiling.py --size 256 --backends jax --repeats 2
Prints a table and writes ``benchmarks/results/conv_ceiling[_TAG].{json,md,png}``.
"""

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
RECORD_SIZE = 64  # the convolutions are recorded on 64² inputs and scaled


def _load(name):
    import importlib.util

    key = f"_rmz_benchmark_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[key] = module
    return sys.modules[key]


def record_convolutions(model, batch):
    """Every ``layout.conv`` call of one ``model(batch)``: a list of dicts with
    input/kernel/output shapes, strides, padding and dilation."""
    from keras_rmz.backend import layout

    calls = []
    original = layout.conv

    def recording(inputs, kernel, strides=1, padding="valid", dilation_rate=1):
        outputs = original(inputs, kernel, strides, padding, dilation_rate)
        calls.append(
            {
                "input": [int(d) for d in inputs.shape],
                "kernel": [int(d) for d in kernel.shape],
                "output": [int(d) for d in outputs.shape],
                "strides": strides,
                "padding": padding,
                "dilation_rate": dilation_rate,
            }
        )
        return outputs

    layout.conv = recording
    try:
        model(batch, training=False)
    finally:
        layout.conv = original
    if not calls:
        raise RuntimeError("no convolution went through keras_rmz.backend.layout.conv")
    return calls


def conv_flops(call):
    """2 · k… · C_in · C_out per output pixel, times N · spatial output pixels."""
    return 2 * math.prod(call["kernel"]) * math.prod(call["output"][:-1])


def scaled(call, factor):
    """The call at ``factor`` times the recorded spatial size."""
    out = dict(call)
    for key in ("input", "output"):
        shape = list(call[key])
        out[key] = [shape[0]] + [d * factor for d in shape[1:-1]] + [shape[-1]]
    return out


def distinct(calls):
    """[(call, count)] in first-seen order."""
    keys, counts = {}, {}
    for call in calls:
        key = json.dumps({k: call[k] for k in ("input", "kernel", "strides", "padding", "dilation_rate")})
        keys.setdefault(key, call)
        counts[key] = counts.get(key, 0) + 1
    return [(keys[k], counts[k]) for k in keys]


def _compiled(fn):
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    return fn


def _best(fn, repeats):
    bench = _load("inference")
    bench._sync(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        bench._sync(fn())
        best = min(best, time.perf_counter() - start)
    return best


def run_worker(options):
    """One backend: time each distinct convolution and the whole network."""
    import keras
    import numpy as np

    from keras_rmz.backend import layout

    bench = _load("inference")
    backend = keras.backend.backend()
    size, repeats = options["size"], options["repeats"]
    factor = size // RECORD_SIZE
    result = {"backend": backend, "size": size, "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    result["matmul_before"] = bench.matmul_rates()
    torch_context = None
    if backend == "torch":
        import torch

        torch_context = torch.no_grad()
        torch_context.__enter__()
    rng = np.random.default_rng(0)
    rows = []
    for call, count in options["convolutions"]:
        big = scaled(call, factor)
        x = keras.ops.convert_to_tensor(rng.random(big["input"], dtype=np.float32))
        kernel = keras.ops.convert_to_tensor((rng.random(big["kernel"], dtype=np.float32) - 0.5) * 0.1)
        fn = _compiled(
            lambda x, k, s=big["strides"], p=big["padding"], d=big["dilation_rate"]: layout.conv(x, k, s, p, d)
        )
        seconds = _best(lambda: fn(x, kernel), repeats)
        flops = conv_flops(big)
        rows.append({"input": big["input"], "kernel": big["kernel"], "count": count, "ms": round(1000 * seconds, 3),
                     "gflop": round(flops / 1e9, 4), "gflops_per_s": round(flops / seconds / 1e9, 2)})
    model, _, num_inputs = bench.build_model("rmz_m3", quick=False)
    batch = bench.make_inputs(1, num_inputs, size)
    first, walls, _ = bench.time_predict(model, batch, repeats)
    if torch_context is not None:
        torch_context.__exit__(None, None, None)
    result["matmul_after"] = bench.matmul_rates()
    result["matmul_gflops"] = max(result["matmul_before"]["backend"], result["matmul_after"]["backend"])
    conv_seconds = sum(r["ms"] / 1000 * r["count"] for r in rows)
    conv_gflop = sum(r["gflop"] * r["count"] for r in rows)
    network_seconds = min(walls)
    result.update(
        rows=rows,
        conv_gflop=round(conv_gflop, 3),
        conv_seconds=round(conv_seconds, 4),
        conv_gflops_per_s=round(conv_gflop / conv_seconds, 2),
        network_seconds=round(network_seconds, 4),
        network_first_call_seconds=round(first, 2),
        network_gflops_per_s=round(conv_gflop / network_seconds, 2),
        load_average_end=[round(x, 2) for x in os.getloadavg()],
    )
    return result


def record(options):
    """The network's convolutions at RECORD_SIZE (PyTorch backend process)."""
    bench = _load("inference")
    model, _, num_inputs = bench.build_model("rmz_m3", quick=False)
    batch = bench.make_inputs(1, num_inputs, RECORD_SIZE)
    calls = record_convolutions(model, batch)
    flops = _load("flops").analytic_flops("RecurrentMZ", model.get_config(), RECORD_SIZE, RECORD_SIZE, num_inputs)
    return {"calls": calls, "analytic_flops": flops["flops"]}


def _subprocess(mode, backend, options):
    env = dict(os.environ, KERAS_BACKEND=backend)
    proc = subprocess.run(
        [sys.executable, __file__, f"--{mode}", json.dumps(options)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    marker = "@@RESULT@@"
    lines = [line for line in proc.stdout.splitlines() if line.startswith(marker)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} on {backend} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(marker):])


def markdown(report):
    lines = [
        f"RecurrentMZ M = 3 at {report['size']}², one output plane; "
        f"{report['num_convolutions']} convolutions ({report['num_distinct']} distinct), "
        f"{report['conv_gflop']:.1f} GFLOP (benchmarks/flops.py: {report['analytic_gflop']:.1f}).",
        "",
        "| backend | matmul GFLOP/s | convolutions only: s | GFLOP/s | % of matmul | network: s / plane | GFLOP/s "
        "| % of matmul | network ÷ convolutions | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        mm = run["matmul_gflops"]
        lines.append(
            f"| {run['backend']} | {mm:.0f} | {run['conv_seconds']:.2f} | {run['conv_gflops_per_s']:.0f} "
            f"| {100 * run['conv_gflops_per_s'] / mm:.0f} | {run['network_seconds']:.2f} "
            f"| {run['network_gflops_per_s']:.0f} | {100 * run['network_gflops_per_s'] / mm:.0f} "
            f"| {run['network_seconds'] / run['conv_seconds']:.2f} "
            f"| {run['load_average_start'][0]:.1f}–{run['load_average_end'][0]:.1f} |"
        )
    lines += ["", "Each distinct convolution (input → kernel, count per plane): % of matmul", "",
              "| input | kernel | count | share of FLOPs | " + " | ".join(r["backend"] for r in report["runs"]) + " |",
              "|---|---|---|---|" + "---|" * len(report["runs"])]
    for i, row in enumerate(report["runs"][0]["rows"]):
        cells = [f"{100 * run['rows'][i]['gflops_per_s'] / run['matmul_gflops']:.0f}" for run in report["runs"]]
        share = row["gflop"] * row["count"] / report["conv_gflop"]
        lines.append(f"| {'×'.join(map(str, row['input']))} | {'×'.join(map(str, row['kernel']))} | {row['count']} "
                     f"| {100 * share:.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    names = [run["backend"] for run in report["runs"]]
    conv = [100 * run["conv_gflops_per_s"] / run["matmul_gflops"] for run in report["runs"]]
    net = [100 * run["network_gflops_per_s"] / run["matmul_gflops"] for run in report["runs"]]
    ys = range(len(names))
    ax.barh([y + 0.2 for y in ys], conv, height=0.4, label="convolutions only (ceiling)")
    ax.barh([y - 0.2 for y in ys], net, height=0.4, label="network (predict_on_batch)")
    ax.axvline(70, color="k", lw=0.8, ls="--")
    ax.set_yticks(list(ys), names)
    ax.set_xlabel("% of the float32 matmul rate measured in the same process")
    ax.set_title(f"RecurrentMZ M=3, {report['size']}², CPU", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--size", type=int, default=1024, help=f"a multiple of {RECORD_SIZE}")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after a first one (best is reported)")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker or args.record:
        result = run_worker(json.loads(args.worker)) if args.worker else record(json.loads(args.record))
        print("@@RESULT@@" + json.dumps(result), flush=True)
        return result
    if args.size % RECORD_SIZE:
        parser.error(f"--size must be a multiple of {RECORD_SIZE}; got {args.size}")
    recorded = _subprocess("record", "torch", {})
    factor2 = (args.size // RECORD_SIZE) ** 2
    convolutions = distinct(recorded["calls"])
    report = {
        "size": args.size,
        "machine": _load("inference").machine_info(),
        "num_convolutions": len(recorded["calls"]),
        "num_distinct": len(convolutions),
        "conv_gflop": sum(conv_flops(c) for c in recorded["calls"]) * factor2 / 1e9,
        "analytic_gflop": recorded["analytic_flops"] * factor2 / 1e9,
        "runs": [],
    }
    for backend in args.backends.split(","):
        print(f"[{backend}] timing {len(convolutions)} distinct convolutions and the network at {args.size}²",
              flush=True)
        options = {"size": args.size, "repeats": args.repeats, "convolutions": convolutions}
        report["runs"].append(_subprocess("worker", backend, options))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / ("conv_ceiling" + (f"_{args.tag}" if args.tag else ""))
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    text = markdown(report)
    stem.with_suffix(".md").write_text(text)
    figure(report, stem.with_suffix(".png"))
    print(text)
    print(f"wrote {stem}.json, .md, .png")
    return report


if __name__ == "__main__":
    main()
