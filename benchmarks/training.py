"""Train-step throughput of Recurrent-MZ per Keras backend.

The paper's network (``RecurrentMZ()``, 20 base filters, depth 4) and
discriminator (``Discriminator()``), M = 3 inputs of 256 x 256, batch 2, the
paper's recipe (``AdversarialTrainer.compile()``: Adam 1e-5, 3 BerHu +
1 (1 - MS-SSIM) + 0.5 adversarial). Each backend runs in its own process
(KERAS_BACKEND is read at import), twice: with the adversarial term
(generator + discriminator, `AdversarialTrainer`) and without it (the
generator alone, ``generator.compile(loss=RecurrentMZLoss())``).

Throughput is samples per second over the timed steps, after ``--warmup``
steps that include compilation (reported separately as ``first_step_s``).
Every step's logs are read back to the host, so asynchronous dispatch does
not hide work.

Usage:
    python benchmarks/training.py                      # all backends
    python benchmarks/training.py --backends jax --steps 5
Prints a table and writes ``benchmarks/results/training.json``.
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "torch")
MODES = ("adversarial", "generator_only")

LAYOUTS = ("package", "keras", "keras_loop")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--size", type=int, default=256, help="patch height and width (pixels)")
    parser.add_argument("--num-inputs", type=int, default=3, help="M, input planes per sample")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps (compilation)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "benchmarks" / "results" / "training.json")
    parser.add_argument(
        "--layouts", nargs="+", default=["package"], choices=LAYOUTS,
        help="'package': keras_rmz's copy-free convolutions (the default); 'keras': Keras's own channels-last "
        "ops, which copy on torch (timed on torch only; on the other backends they are the same); 'keras_loop': "
        "the package's layers with ConvGRU2D's time loop not unrolled (Keras's loop, before session 8)",
    )
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--layout", choices=LAYOUTS, default="package", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def synthetic_data(num_samples, num_inputs, size, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.random((num_samples, num_inputs, size, size, 1), dtype=np.float32)
    input_z = np.tile(np.linspace(0.0, 6.0, num_inputs, dtype=np.float32), (num_samples, 1))
    output_z = rng.uniform(0.0, 6.0, num_samples).astype(np.float32)
    target = images.mean(axis=1)
    return {"images": images, "input_z": input_z, "output_z": output_z}, target


def run_mode(mode, args):
    import keras

    from keras_rmz.losses import RecurrentMZLoss
    from keras_rmz.models.discriminator import Discriminator
    from keras_rmz.models.recurrent_mz import RecurrentMZ
    from keras_rmz.training import AdversarialTrainer

    keras.utils.set_random_seed(0)
    generator = RecurrentMZ()
    if mode == "adversarial":
        model = AdversarialTrainer(generator, Discriminator())
        model.compile()
    else:
        model = generator
        model.compile(optimizer=keras.optimizers.Adam(1e-5), loss=RecurrentMZLoss())

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends = []

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # wait for the step's result
            self.ends.append(time.perf_counter())

    total_steps = args.warmup + args.steps
    inputs, target = synthetic_data(total_steps * args.batch_size, args.num_inputs, args.size)
    timer = StepTimer()
    history = model.fit(inputs, target, batch_size=args.batch_size, epochs=1, shuffle=False, callbacks=[timer], verbose=0)
    timed = timer.ends[-1] - timer.ends[args.warmup - 1] if args.warmup else timer.ends[-1] - timer.start
    step_seconds = [b - a for a, b in zip(timer.ends[max(args.warmup - 1, 0) :], timer.ends[args.warmup :])]
    return {
        "mode": mode,
        "samples_per_s": args.steps * args.batch_size / timed,
        "step_s": timed / args.steps,
        "step_s_min": min(step_seconds) if step_seconds else None,
        "first_step_s": timer.ends[0] - timer.start,
        "generator_params": int(generator.count_params()),
        "discriminator_params": int(model.discriminator.count_params()) if mode == "adversarial" else 0,
        "final_loss": float(history.history["loss"][-1]),
    }


def worker(args):
    import keras

    if args.layout == "keras":
        from keras_rmz.backend import layout

        layout._views_channels_first = lambda: False
    elif args.layout == "keras_loop":
        from keras_rmz.layers import ConvGRU2D

        ConvGRU2D.unrolls = lambda self, steps: bool(self.unroll)

    backend = keras.backend.backend()
    versions = {"keras": keras.__version__}
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    versions[module] = __import__(module).__version__
    results = []
    for mode in args.modes:
        results.append({"backend": backend, "layout": args.layout, **run_mode(mode, args)})
    print("RESULT " + json.dumps({"versions": versions, "results": results}), flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        sys.path.insert(0, str(ROOT))
        return worker(args)
    if args.warmup < 1 or args.steps < 1:
        raise SystemExit("--warmup and --steps must be >= 1")
    report = {
        "benchmark": "training step throughput",
        "config": {
            "model": "RecurrentMZ() + Discriminator() (paper defaults)",
            "size": args.size,
            "num_inputs": args.num_inputs,
            "batch_size": args.batch_size,
            "warmup_steps": args.warmup,
            "timed_steps": args.steps,
        },
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        },
        "versions": {},
        "results": [],
        "errors": {},
    }
    forwarded = [
        "--modes", *args.modes, "--size", str(args.size), "--num-inputs", str(args.num_inputs),
        "--batch-size", str(args.batch_size), "--warmup", str(args.warmup), "--steps", str(args.steps),
    ]  # fmt: skip
    runs = [(b, lay) for b in args.backends for lay in args.layouts if lay != "keras" or b == "torch"]
    for backend, layout in runs:
        env = dict(os.environ, KERAS_BACKEND=backend)
        started = time.perf_counter()
        process = subprocess.run(
            [sys.executable, __file__, "--worker", backend, "--layout", layout, *forwarded],
            env=env, capture_output=True, text=True,
        )
        lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
        if process.returncode != 0 or not lines:
            report["errors"][backend if layout == "package" else f"{backend} ({layout} layout)"] = process.stderr[-2000:]
            print(f"{backend}: failed (exit {process.returncode})", file=sys.stderr)
            continue
        payload = json.loads(lines[-1][len("RESULT ") :])
        report["versions"][backend] = payload["versions"]
        for result in payload["results"]:
            result["process_s"] = time.perf_counter() - started
            report["results"].append(result)
    report["machine"]["load_average_at_end"] = os.getloadavg()

    header = (f"{'backend':<11} {'layout':<10} {'mode':<15} {'samples/s':>10} {'s/step':>8} {'min s/step':>10} "
              f"{'first step s':>12}")
    print(header)
    print("-" * len(header))
    for r in report["results"]:
        print(
            f"{r['backend']:<11} {r['layout']:<10} {r['mode']:<15} {r['samples_per_s']:>10.3f} {r['step_s']:>8.2f} "
            f"{r['step_s_min']:>10.2f} {r['first_step_s']:>12.1f}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.output}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
