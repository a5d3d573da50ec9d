"""Fine-tuning on real stacks: the gain of ``keras-rmz finetune`` over linear
interpolation on the held-out part (the table of ``docs/finetuning.md``).

For each stack it runs ``keras_rmz.training.finetune`` with the default
recipe and budget (one stack: its right half held out, inputs Δz apart as
the preset was trained, all planes between two inputs scored), one run at a
time so that the runs do not share the CPU, and records the held-out table
(starting preset, fine-tuned, linear interpolation, nearest plane), the
held-out PSNR at each checkpoint, the steps and the wall time. Extra
``finetune`` arguments (``key=value``, Python literals) change the recipe,
to compare settings in one run.

Usage:
    python benchmarks/finetune_real.py                         # the stacks of ../shared/data, 7 min each
    python benchmarks/finetune_real.py A.tif B.tif --minutes 3 --preset recurrent_mz_nuclei_m2
    python benchmarks/finetune_real.py --set learning_rate=1e-4 --set ema=None --tag lr1e-4
Prints a markdown table and writes ``benchmarks/results/finetune_real[_TAG].{json,md}``
and each run's figures (``..._<stack>_psnr_vs_z.png``, ``..._<stack>_mip_comparison.png``).
"""

import argparse
import ast
import json
import pathlib
import shutil
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_STACKS = ("celegans_cy3_widefield_crop.tif", "celegans_fitc_widefield_crop.tif")
METHODS = ("starting preset", "fine-tuned", "linear interpolation", "nearest plane")


def _parse_settings(items):
    settings = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key or not _:
            raise SystemExit(f"--set takes key=value (a finetune argument); got {item!r}")
        try:
            settings[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            settings[key] = value
    return settings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", nargs="*", help=f"z-stacks (default: {', '.join(DEFAULT_STACKS)} in {SHARED})")
    parser.add_argument("--preset", default="recurrent_mz_nuclei_m2")
    parser.add_argument("--minutes", type=float, default=None, help="training budget (default: finetune's, 7)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a finetune argument")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)

    stacks = [pathlib.Path(s) for s in args.stacks] or [SHARED / name for name in DEFAULT_STACKS]
    missing = [str(s) for s in stacks if not s.exists()]
    if missing:
        raise SystemExit(f"no such stack: {', '.join(missing)}")
    settings = _parse_settings(args.set)
    if args.minutes is not None:
        settings["minutes"] = args.minutes

    import keras

    from keras_rmz.training import finetune

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "finetune_real" + (f"_{args.tag}" if args.tag else "")
    rows = []
    for path in stacks:
        with tempfile.TemporaryDirectory() as work:
            start = time.monotonic()
            result = finetune([path], args.preset, pathlib.Path(work) / "preset", verbose=1, **settings)
            wall = time.monotonic() - start
            name = path.name.split(".")[0]
            for figure in sorted((result.folder / "figures").glob("*.png")):
                shutil.copyfile(figure, out / f"{stem}_{name}_{figure.name}")
        table = {method: result.table[method] for method in METHODS}
        rows.append({
            "stack": path.name, "kept": result.kept, "gain_over_interpolation_db": result.gain_over_interpolation_db,
            "table": table, "steps": result.steps, "training_seconds": result.seconds, "wall_seconds": wall,
            "history": result.history,
        })
        print(f"{path.name}: {result.gain_over_interpolation_db:+.2f} dB over interpolation "
              f"({result.steps} steps, {wall / 60:.1f} min)", flush=True)

    lines = [
        f"preset `{args.preset}`, backend {keras.backend.backend()}, settings {settings or 'default'}",
        "",
        "| stack | starting preset | fine-tuned | linear interpolation | nearest plane | gain over interpolation "
        "| steps | wall |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        psnr = [f"{row['table'][m]['psnr_db']:.2f} dB" for m in METHODS]
        lines.append(f"| {row['stack']} | " + " | ".join(psnr)
                     + f" | **{row['gain_over_interpolation_db']:+.2f} dB** | {row['steps']} "
                     f"| {row['wall_seconds'] / 60:.1f} min |")
    text = "\n".join(lines)
    print(text)
    (out / f"{stem}.md").write_text(text + "\n")
    record = {"preset": args.preset, "backend": keras.backend.backend(), "settings": settings, "rows": rows,
              "python": sys.version.split()[0], "keras": keras.__version__}
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
