"""Session 8's two speed-ups, A/B in one process with the calls interleaved.

Across processes a backend's time per plane moves by 10-15 % on this shared
machine, as much as the changes are worth on TensorFlow and JAX. This
script builds RecurrentMZ (M = 3, the paper's configuration) four times in
one process, with equal weights:

- ``default``: the package as it is;
- ``loop``: every ``ConvGRU2D`` with ``unroll=False`` (Keras's time loop);
- ``unfolded``: batch norm as a separate layer after each convolution in
  inference, instead of folded into it (``keras_rmz.layers.fused``);
- ``both``: both undone (what session 7 ran),

then calls them in turn, ``--repeats`` rounds (after a first call each that
traces/compiles), and reports the best time per plane of each, its ratio to
the default, and the largest output difference from the default.

Usage:
    python benchmarks/interleaved.py                       # 1024², the three backends
    python benchmarks/interleaved.py --size 512 --backends torch --repeats 3
Prints a table and writes ``benchmarks/results/interleaved[_TAG].{json,md}``.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
SETTINGS = ("default", "loop", "unfolded", "both")


def randomize_batch_norm_statistics(model, rng):
    """Moving means near 0 and variances near 1 that differ per channel, so
    that folding them changes the arithmetic but the signal survives the
    network's ReLUs."""
    import numpy as np

    for variable in model.non_trainable_variables:
        if variable.path.endswith("moving_mean"):
            variable.assign(rng.normal(0.0, 0.1, variable.shape).astype(np.float32))
        elif variable.path.endswith("moving_variance"):
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))


def run_worker(size, repeats):
    import keras
    import numpy as np

    from keras_rmz.layers import ConvGRU2D
    from keras_rmz.layers import fused
    from keras_rmz.models import RecurrentMZ

    fold = {"on": True}
    folded = fused.conv_batch_norm

    def switch(conv, bn, inputs, training=None):
        # Read when a call runs eagerly (torch) or is traced (TF, JAX: the
        # first call of each model fixes its setting).
        if fold["on"]:
            return folded(conv, bn, inputs, training)
        outputs = conv(inputs)
        return outputs if bn is None else bn(outputs, training=training)

    fused.conv_batch_norm = switch
    rng = np.random.default_rng(0)
    batch = {
        "images": rng.random((1, 3, size, size, 1), dtype=np.float32),
        "input_z": np.array([[0.0, 3.0, 6.0]], np.float32),
        "output_z": np.array([1.5], np.float32),
    }
    models = {}
    for name in SETTINGS:
        model = RecurrentMZ()
        model(batch)
        if models:
            model.set_weights(models["default"].get_weights())
        else:  # batch-norm statistics that make the fold show
            randomize_batch_norm_statistics(model, rng)
        if name in ("loop", "both"):
            for layer in model._flatten_layers(include_self=False, recursive=True):
                if isinstance(layer, ConvGRU2D):
                    layer.unroll = False
        fold["on"] = name not in ("unfolded", "both")
        model.predict_on_batch(batch)
        models[name] = model
    times = {name: [] for name in SETTINGS}
    outputs = {}
    for _ in range(repeats):
        for name, model in models.items():
            fold["on"] = name not in ("unfolded", "both")
            start = time.perf_counter()
            outputs[name] = np.asarray(model.predict_on_batch(batch))
            times[name].append(time.perf_counter() - start)
    best = {name: min(values) for name, values in times.items()}
    return {
        "backend": keras.backend.backend(),
        "size": size,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "seconds": {name: round(value, 4) for name, value in best.items()},
        "all_seconds": {name: [round(v, 4) for v in values] for name, values in times.items()},
        "ratio_to_default": {name: round(best[name] / best["default"], 3) for name in SETTINGS},
        "max_abs_difference": max(float(np.abs(outputs[n] - outputs["default"]).max()) for n in SETTINGS),
        "output_std": float(outputs["default"].std()),
    }


def markdown(report):
    lines = [
        f"RecurrentMZ M = 3 at {report['size']}², one process per backend, calls interleaved, "
        f"best of {report['repeats']} (s per plane)",
        "",
        "| backend | default | loop not unrolled | bn not folded | both undone | both ÷ default | max abs diff | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        s = run["seconds"]
        lines.append(
            f"| {run['backend']} | {s['default']:.2f} | {s['loop']:.2f} | {s['unfolded']:.2f} | {s['both']:.2f} "
            f"| {run['ratio_to_default']['both']:.2f}× | {run['max_abs_difference']:.1e} | {run['load_average'][0]:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("@@RESULT@@" + json.dumps(run_worker(args.size, args.repeats)), flush=True)
        return None
    report = {"size": args.size, "repeats": args.repeats, "runs": []}
    for backend in args.backends.split(","):
        print(f"[{backend}] {len(SETTINGS)} models at {args.size}², {args.repeats} rounds", flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", "--size", str(args.size), "--repeats", str(args.repeats)],
            env=dict(os.environ, KERAS_BACKEND=backend), capture_output=True, text=True, check=False,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("@@RESULT@@")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"{backend} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        report["runs"].append(json.loads(lines[-1][len("@@RESULT@@"):]))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / ("interleaved" + (f"_{args.tag}" if args.tag else ""))
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    text = markdown(report)
    stem.with_suffix(".md").write_text(text)
    print(text)
    print(f"wrote {stem}.json, .md")
    return report


if __name__ == "__main__":
    main()
