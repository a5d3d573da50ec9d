"""Where a Keras convolution's time goes on the PyTorch backend (CPU).

RecurrentMZ on torch reaches about a fifth of this machine's matmul rate,
TensorFlow about two thirds (docs/performance.md). This script takes one of
the network's full-resolution convolutions (3 x 3, C -> C channels, 1024²,
channels-last like every keras_rmz layer) and times, in one process:

- ``torch, NCHW contiguous``: ``torch.nn.functional.conv2d`` on a
  channels-first tensor in channels-first memory;
- ``torch, channels-last memory``: the same call on the channels-last
  tensor viewed as NCHW (no copy: PyTorch's channels-last memory format);
- ``keras.ops.conv``: what Keras 3 does with a channels-last input (a
  transposing copy to channels-first memory, then a copy back to
  channels-last memory for oneDNN, then the convolution);
- ``keras Conv2D + bias + leaky ReLU``: the layer as keras_rmz's blocks run
  it (bias add and activation are separate passes in eager PyTorch);
- the same layer with Keras's input copy skipped (what Keras fix #23199
  does; a patch for this script only);
- ``keras_rmz.layers.layout.Conv2D``, the subclass that keras_rmz's networks
  use: the convolution runs channels-first on a transposed *view* of the
  channels-last tensor, so no copy is made with Keras as it is.

It also profiles the Keras layer (``torch.profiler``: self CPU time per
operator) and measures the float32 matmul rate in the same process.

Usage:
    python benchmarks/torch_conv_layout.py                  # C = 20 and 40, 1024²
    python benchmarks/torch_conv_layout.py --size 256 --channels 20
Prints a table and writes ``benchmarks/results/torch_conv_layout.{json,md,png}``.
"""

import argparse
import json
import os
import pathlib
import platform
import time

os.environ["KERAS_BACKEND"] = "torch"

ROOT = pathlib.Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="image height and width")
    parser.add_argument("--channels", type=int, nargs="+", default=[20, 40], help="C in and out")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (best is reported)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    return parser.parse_args(argv)


def best_time(fn, repeats):
    fn()  # first call: allocations, oneDNN primitive creation
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(torch, repeats, n=2048):
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_time(lambda: a @ b, repeats) / 1e9


def measure(channels, size, repeats):
    import keras
    import torch
    import torch.nn.functional as F
    from keras.src.backend.torch import nn as keras_torch_nn

    torch.manual_seed(0)
    flops = 2 * 9 * channels * channels * size * size
    from keras_rmz.layers import layout

    layer = keras.layers.Conv2D(channels, 3, padding="same", activation="leaky_relu")
    x = keras.random.normal((1, size, size, channels), seed=0)
    layer(x)
    package_layer = layout.Conv2D(channels, 3, padding="same", activation="leaky_relu")
    package_layer(x)
    package_layer.set_weights(layer.get_weights())
    kernel = layer.kernel.value.detach()
    bias = layer.bias.value.detach()
    kernel_oihw = kernel.permute(3, 2, 0, 1)
    x_nchw = x.permute(0, 3, 1, 2).contiguous()
    x_channels_last = x.permute(0, 3, 1, 2)  # NCHW view of channels-last memory
    kernel_channels_last = kernel_oihw.contiguous(memory_format=torch.channels_last)

    original = keras_torch_nn._transpose_spatial_inputs

    def without_copy(inputs):  # Keras fix #23199: no .contiguous() after the permute
        return inputs.permute(0, 3, 1, 2) if inputs.ndim == 4 else original(inputs)

    def keras_layer_no_copy():
        keras_torch_nn._transpose_spatial_inputs = without_copy
        try:
            return layer(x)
        finally:
            keras_torch_nn._transpose_spatial_inputs = original

    settings = {
        "torch, NCHW contiguous": lambda: F.conv2d(x_nchw, kernel_oihw.contiguous(), padding=1),
        "torch, channels-last memory": lambda: F.conv2d(x_channels_last, kernel_channels_last, padding=1),
        "keras.ops.conv": lambda: keras.ops.conv(x, kernel, padding="same"),
        "keras Conv2D + bias + leaky ReLU": lambda: layer(x),
        "keras Conv2D + bias + leaky ReLU, no input copy (fix #23199)": keras_layer_no_copy,
        "keras_rmz layout.Conv2D + bias + leaky ReLU (the package's layers)": lambda: package_layer(x),
    }
    rows = []
    with torch.no_grad():
        reference = keras.ops.convert_to_numpy(layer(x))
        patched = keras.ops.convert_to_numpy(keras_layer_no_copy())
        assert abs(reference - patched).max() < 1e-4, "the no-copy patch changed the result"
        ours = keras.ops.convert_to_numpy(package_layer(x))
        assert abs(reference - ours).max() < 1e-4, "layout.Conv2D changed the result"
        for name, fn in settings.items():
            seconds = best_time(fn, repeats)
            rows.append({"setting": name, "channels": channels, "size": size, "ms": round(1000 * seconds, 2),
                         "gflops_per_s": round(flops / seconds / 1e9, 2)})
        with torch.profiler.profile() as prof:
            layer(x)
    by_op = {}
    for event in prof.key_averages():
        if event.self_cpu_time_total > 0:
            by_op[event.key] = by_op.get(event.key, 0.0) + event.self_cpu_time_total / 1000
    total = sum(by_op.values())
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:6]
    profile = [{"op": op, "ms": round(ms, 2), "share": round(ms / total, 3)} for op, ms in top]
    return rows, profile


def markdown(report):
    lines = [f"Keras {report['keras']}, torch {report['torch']}, {report['threads']} threads, "
             f"load average {report['load_average']}; float32 matmul {report['matmul_gflops']:.1f} GFLOP/s.", "",
             "| C | setting | ms | GFLOP/s | % of matmul |", "|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['channels']} | {row['setting']} | {row['ms']:.1f} | {row['gflops_per_s']:.1f} | "
                     f"{100 * row['gflops_per_s'] / report['matmul_gflops']:.0f} |")
    for channels, profile in report["profiles"].items():
        lines += ["", f"Keras Conv2D + bias + leaky ReLU, C = {channels}: self CPU time per operator", "",
                  "| operator | ms | share |", "|---|---|---|"]
        lines += [f"| {p['op']} | {p['ms']:.1f} | {100 * p['share']:.0f}% |" for p in profile]
    return "\n".join(lines) + "\n"


def figure(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(row["setting"] for row in report["rows"]))
    channels = list(dict.fromkeys(row["channels"] for row in report["rows"]))
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.6 * len(settings) * len(channels)))
    labels, values = [], []
    for c in channels:
        for s in settings:
            row = next(r for r in report["rows"] if r["channels"] == c and r["setting"] == s)
            labels.append(f"C={c}: {s}")
            values.append(100 * row["gflops_per_s"] / report["matmul_gflops"])
    ax.barh(range(len(values))[::-1], values, color="tab:blue")
    ax.set_yticks(range(len(values))[::-1], labels, fontsize=7)
    ax.set_xlabel("% of the float32 matmul rate")
    ax.set_title(f"3x3 convolution, {report['size']}², torch backend (CPU)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    import keras
    import torch

    report = {"keras": keras.__version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "size": args.size,
              "load_average": [round(v, 2) for v in os.getloadavg()], "rows": [], "profiles": {}}
    before = matmul_gflops(torch, args.repeats)
    for channels in args.channels:
        rows, profile = measure(channels, args.size, args.repeats)
        report["rows"] += rows
        report["profiles"][str(channels)] = profile
    report["matmul_gflops"] = round(max(before, matmul_gflops(torch, args.repeats)), 2)
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "torch_conv_layout"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    text = markdown(report)
    stem.with_suffix(".md").write_text(text)
    figure(report, stem.with_suffix(".png"))
    print(text)
    print(f"wrote {stem}.json, .md, .png")
    return report


if __name__ == "__main__":
    main()
