"""Precision: speed of float32, bfloat16 and float16 per backend, and the
held-out accuracy of every preset under ``precision="auto"`` against float32
(the table of docs/performance.md, "Precision", and the evidence for
``keras_rmz.backend.precision``'s decision table).

Speed, per backend (one subprocess each) and precision, interleaved so that
the machine's load hits all precisions alike:
- ``reconstruct``: ms per output plane, the ``recurrent_mz_nuclei_m2`` preset
  (M = 2) and the paper's ``RecurrentMZ()`` (M = 3, random weights) on
  512 x 512 planes, 4 planes per call;
- ``train``: ms per training step of the preset's network (8 patches of
  64 x 64, Adam, the paper's loss), as ``keras-rmz finetune`` trains.

Accuracy (``--tasks accuracy``): every shipped preset on its own held-out
evaluation (the card's: ``examples/presets/publish_preset.py``'s
``nuclei_metrics`` for the nuclei presets, ``examples/reproduce_paper.py``'s
``compare_methods`` for the bead presets, seeds from 900000), once in
float32 and once in each reduced precision; the PSNR difference per preset.

Engines (``--tasks engines``): ms per 512² output plane of the preset's
network through ``reconstruct`` with Keras (float32 and auto), ONNX Runtime
and OpenVINO (``keras_rmz.export``), interleaved.

Usage:
    python benchmarks/precision.py                                  # speed, three backends
    python benchmarks/precision.py --tasks engines --backends tensorflow
    python benchmarks/precision.py --tasks accuracy --backends tensorflow,torch
    python benchmarks/precision.py --quick                          # tiny sizes: a smoke run
Prints markdown tables and writes ``benchmarks/results/precision[_TAG].{json,md,png}``.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
PRECISIONS = ("float32", "bfloat16", "float16")
PRESETS = ("recurrent_mz_nuclei_m2", "recurrent_mz_plus_nuclei_m3", "recurrent_mz_beads_m3", "deep_z_beads",
           "unet3d_beads")


def _example(name):
    path = ROOT / "examples" / (f"presets/{name}.py" if name == "publish_preset" else f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_precision_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------
# Inside one backend's process.
# --------------------------------------------------------------------------


def _reconstruct_case(model, num_inputs, size, planes=4):
    import numpy as np

    rng = np.random.default_rng(0)
    images = (100 + 50 * rng.random((num_inputs, size, size))).astype(np.float32)
    input_z = np.arange(num_inputs, dtype=np.float32) * 3.0
    output_z = np.linspace(0.5, 2.5, planes).astype(np.float32)

    def run(precision):
        model.reconstruct(images, input_z, output_z, batch_size=planes, verbose=False, precision=precision,
                          normalize=None)
        return planes

    return run


def _train_case(config, size, batch):
    import keras
    import numpy as np

    from keras_rmz.losses import RecurrentMZLoss
    from keras_rmz.models import RecurrentMZ
    from keras_rmz.precision import policy_name

    rng = np.random.default_rng(0)
    data = {"images": rng.random((batch, 2, size, size, 1)).astype(np.float32),
            "input_z": np.tile(np.float32([0.0, 6.0]), (batch, 1)),
            "output_z": rng.uniform(0, 6, batch).astype(np.float32)}
    target = rng.random((batch, size, size, 1)).astype(np.float32)
    models = {}

    def run(precision):
        if precision not in models:
            model = RecurrentMZ(**config, dtype=policy_name(precision))
            model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=RecurrentMZLoss(ms_ssim_weight=0.0))
            model.train_on_batch(data, target)  # builds and compiles
            models[precision] = model
        models[precision].train_on_batch(data, target)
        return 1

    return run


def _nuclei_network():
    """(the nuclei preset's network with its weights but without its
    metadata, so random planes meet no pixel-size guard; its config)."""
    import keras_rmz

    preset = keras_rmz.RecurrentMZ.from_preset("recurrent_mz_nuclei_m2")
    config = {k: preset.get_config()[k] for k in ("base_filters", "depth", "use_batch_norm", "activation")}
    model = keras_rmz.RecurrentMZ(**config)
    model.build_from_config(preset.get_build_config() or {"input_shape": None})
    model.set_weights(preset.get_weights())
    return model, config


def worker_speed(args):
    import keras

    import keras_rmz
    from keras_rmz.backend.precision import cpu_flags
    from keras_rmz.precision import resolve_precision

    size = 64 if args.quick else 512
    nuclei, preset_config = _nuclei_network()
    paper = keras_rmz.RecurrentMZ(**({"base_filters": 4, "depth": 2} if args.quick else {}))
    cases = {
        "reconstruct recurrent_mz_nuclei_m2, M = 2": (_reconstruct_case(nuclei, 2, size), "plane"),
        "reconstruct RecurrentMZ() (paper), M = 3": (_reconstruct_case(paper, 3, size), "plane"),
        "train step, nuclei_m2 network, 8 x 64²": (_train_case(preset_config, 16 if args.quick else 64, 8), "step"),
    }
    results = {}
    for name, (run, unit) in cases.items():
        times = {p: [] for p in args.precisions}
        for precision in args.precisions:  # warm-up: builds, traces, compiles
            run(precision)
        for _ in range(args.repeats):
            for precision in args.precisions:
                start = time.perf_counter()
                count = run(precision)
                times[precision].append((time.perf_counter() - start) * 1000 / count)
        results[name] = {"unit": unit, "ms": {p: sorted(t) for p, t in times.items()}}
        print(f"[{keras.backend.backend()}] {name}: " + ", ".join(
            f"{p} {min(t):.0f} ms/{unit}" for p, t in times.items()), file=sys.stderr, flush=True)
    return {"backend": keras.backend.backend(), "auto": resolve_precision("auto"),
            "amx_bf16": "amx_bf16" in cpu_flags(), "avx512_bf16": "avx512_bf16" in cpu_flags(),
            "size": size, "cases": results}


BEAD_ROWS = {"recurrent_mz_beads_m3": "Recurrent-MZ", "deep_z_beads": "Deep-Z (nearest input)",
             "unet3d_beads": "3D U-Net"}


def worker_engines(args):
    """ms per output plane of the nuclei preset's network through
    ``reconstruct`` with each engine (Keras float32 and auto, ONNX Runtime,
    OpenVINO), interleaved."""
    import tempfile

    import keras

    from keras_rmz import export
    from keras_rmz.precision import resolve_precision

    size = 64 if args.quick else 512
    model, _ = _nuclei_network()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        dynamic = export.export_onnx(model, pathlib.Path(folder) / "nuclei.onnx")
        fixed = export.export_onnx(model, pathlib.Path(folder) / "nuclei_m2.onnx", num_inputs=2)
        runners = {"keras float32": (model, "float32"), f"keras auto ({resolve_precision('auto')})": (model, "auto"),
                   "onnxruntime, M dynamic": (export.OnnxModel(dynamic, "onnxruntime"), "float32"),
                   "onnxruntime, M = 2": (export.OnnxModel(fixed, "onnxruntime"), "float32"),
                   "openvino, M = 2": (export.OnnxModel(fixed, "openvino"), "float32")}
        cases = {name: _reconstruct_case(runner, 2, size) for name, (runner, _) in runners.items()}
        times = {name: [] for name in runners}
        for name, run in cases.items():
            run(runners[name][1])
        for _ in range(args.repeats):
            for name, run in cases.items():
                start = time.perf_counter()
                count = run(runners[name][1])
                times[name].append((time.perf_counter() - start) * 1000 / count)
    for name, values in times.items():
        results[name] = sorted(values)
    print(f"[{keras.backend.backend()}] engines: " + ", ".join(f"{k} {min(v):.0f} ms/plane" for k, v in results.items()),
          file=sys.stderr, flush=True)
    return {"backend": keras.backend.backend(), "size": size, "engines": results}


def _preset_scores(names, volumes):
    """{preset: PSNR between the inputs (dB)} on the presets' held-out
    evaluations (as their cards were scored), in the precision that
    KERAS_RMZ_PRECISION names."""
    from keras_rmz.presets import load_preset

    scores = {}
    for name in [n for n in names if n not in BEAD_ROWS]:
        model = load_preset(name)
        table = _example("publish_preset").nuclei_metrics(model, model.preset_metadata, volumes=volumes)["table"]
        scores[name] = table["model"]["psnr_between_db"]
    beads = [n for n in names if n in BEAD_ROWS]
    if beads:
        # One comparison for the three bead presets, on the same volumes.
        models = {name: load_preset(name) for name in BEAD_ROWS}
        result = _example("reproduce_paper").compare_methods(
            models["recurrent_mz_beads_m3"], deep_z=models["deep_z_beads"], unet3d=models["unet3d_beads"],
            volumes=volumes, measure_fwhm=False)
        for name in beads:
            scores[name] = result["table"][BEAD_ROWS[name]]["psnr_between_db"]
    return scores


def worker_accuracy(args):
    import keras

    from keras_rmz.backend.precision import ENVIRONMENT_VARIABLE

    results = {name: {} for name in args.presets}
    for precision in args.precisions:
        os.environ[ENVIRONMENT_VARIABLE] = precision
        start = time.perf_counter()
        for name, value in _preset_scores(args.presets, args.volumes).items():
            results[name][precision] = value
        print(f"[{keras.backend.backend()}] {precision}: " + ", ".join(
            f"{name} {row[precision]:.4f} dB" for name, row in results.items())
            + f" ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return {"backend": keras.backend.backend(), "presets": results, "volumes": args.volumes}


# --------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------


def _tables(records):
    lines = []
    speed = [r for r in records if r["task"] == "speed"]
    if speed:
        lines += ["| backend | case | " + " | ".join(f"{p}" for p in PRECISIONS) + " | bfloat16 speed-up | auto |",
                  "| --- | --- |" + " ---: |" * len(PRECISIONS) + " ---: | --- |"]
        for record in speed:
            for name, case in record["cases"].items():
                best = {p: min(t) for p, t in case["ms"].items()}
                cells = [f"{best[p]:.0f} ms" if p in best else "–" for p in PRECISIONS]
                gain = f"{best['float32'] / best['bfloat16']:.2f}x" if {"float32", "bfloat16"} <= set(best) else "–"
                lines.append(f"| {record['backend']} | {name} (per {case['unit']}) | " + " | ".join(cells)
                             + f" | {gain} | {record['auto']} |")
        lines.append("")
    engines = [r for r in records if r["task"] == "engines"]
    if engines:
        lines += ["| Keras backend | engine | ms per 512² plane (best) | median |", "| --- | --- | ---: | ---: |"]
        for record in engines:
            for name, values in record["engines"].items():
                lines.append(f"| {record['backend']} | {name} | {min(values):.0f} | {values[len(values) // 2]:.0f} |")
        lines.append("")
    accuracy = [r for r in records if r["task"] == "accuracy"]
    if accuracy:
        lines += ["| backend | preset | float32 | " + " | ".join(p for p in PRECISIONS[1:]) + " | largest difference |",
                  "| --- | --- | ---: |" + " ---: |" * len(PRECISIONS[1:]) + " ---: |"]
        for record in accuracy:
            for name, row in record["presets"].items():
                diffs = [row[p] - row["float32"] for p in PRECISIONS[1:] if p in row]
                cells = [f"{row[p]:.3f} dB ({row[p] - row['float32']:+.3f})" if p in row else "–"
                         for p in PRECISIONS[1:]]
                lines.append(f"| {record['backend']} | {name} | {row['float32']:.3f} dB | " + " | ".join(cells)
                             + f" | {max(abs(d) for d in diffs):.3f} dB |")
    return "\n".join(lines)


def _figure(records, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speed = [r for r in records if r["task"] == "speed"]
    if not speed:
        return None
    cases = list(speed[0]["cases"])
    fig, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 3.6), squeeze=False)
    for ax, case in zip(axes[0], cases):
        backends = [r["backend"] for r in speed]
        for k, precision in enumerate(PRECISIONS):
            values = [min(r["cases"][case]["ms"].get(precision, [float("nan")])) for r in speed]
            ax.bar([i + (k - 1) * 0.27 for i in range(len(backends))], values, width=0.27, label=precision)
        ax.set_xticks(range(len(backends)), backends)
        ax.set_yscale("log")  # float16 training steps are 60-70x slower on CPUs: linear axes hide the rest
        ax.set_ylabel(f"ms per {speed[0]['cases'][case]['unit']} (best of the repeats)")
        ax.set_title(case, fontsize=9)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,torch,jax")
    parser.add_argument("--tasks", default="speed", help="speed, accuracy, engines, or several: speed,engines")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--presets", default=",".join(PRESETS), help="accuracy: the presets")
    parser.add_argument("--volumes", type=int, default=3, help="accuracy: held-out volumes per preset (the cards: 3)")
    parser.add_argument("--repeats", type=int, default=5, help="speed: timed calls per precision after a warm-up")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and models: a smoke run")
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--worker", choices=("speed", "accuracy", "engines"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.precisions = [p for p in args.precisions.split(",") if p]
    args.presets = [p for p in args.presets.split(",") if p]
    if args.worker:
        result = {"speed": worker_speed, "accuracy": worker_accuracy, "engines": worker_engines}[args.worker](args)
        print(json.dumps(result))
        return 0

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ("precision" + (f"_{args.tag}" if args.tag else ""))
    records = []
    for task in [t for t in args.tasks.split(",") if t]:
        for backend in [b for b in args.backends.split(",") if b]:
            command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", task,
                       "--precisions", ",".join(args.precisions), "--presets", ",".join(args.presets),
                       "--volumes", str(args.volumes), "--repeats", str(args.repeats)] + (["--quick"] * args.quick)
            environment = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": os.pathsep.join(
                [str(ROOT), os.environ.get("PYTHONPATH", "")])}
            done = subprocess.run(command, env=environment, stdout=subprocess.PIPE, text=True)
            if done.returncode != 0:
                print(f"{task} on {backend} failed (exit {done.returncode}); see above", file=sys.stderr)
                continue
            records.append({"task": task, **json.loads(done.stdout.strip().splitlines()[-1])})
            # Saved after every record: a later failure keeps what was measured.
            stem.with_suffix(".json").write_text(
                json.dumps({"load_average": os.getloadavg(), "records": records}, indent=1))
    text = _tables(records)
    print(text)
    stem.with_suffix(".md").write_text(text + "\n")
    figure = _figure(records, stem.with_suffix(".png"))
    print(f"wrote {stem}.json, .md" + (", .png" if figure else ""))
    return 0 if len(records) == len([t for t in args.tasks.split(",") if t]) * len(
        [b for b in args.backends.split(",") if b]) else 1


if __name__ == "__main__":
    sys.exit(main())
