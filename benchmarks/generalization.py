"""Presets on data they were not trained on: PSNR against linear interpolation.

Each preset reconstructs, without fine-tuning, every plane strictly between
M inputs Δz apart (the preset's M and Δz) in up to three windows spread over
the depth of each stack, and is scored as ``keras-rmz finetune`` scores its
held-out part (``keras_rmz.training.fine_tuning.HeldOutScorer``: PSNR with
the truth's peak-to-peak range, the mean over windows), beside linear
interpolation and the nearest input plane:

- real stacks (``../shared/data``: the two C. elegans wide-field channels,
  whole fields; the truth is the measured plane);
- simulated stacks no preset was trained on: ``randomized_pair`` from the
  ``widefield-v1`` distribution with seeds from 900000 (training used
  0-47 and validation 100000-100005), and the paper-like nuclei simulator
  (``simulate_stack("nuclei")``, seeds from 900000); the truth is the
  noise-free stack.

Usage:
    python benchmarks/generalization.py                                    # the presets below, 8 + 4 simulated stacks
    python benchmarks/generalization.py --presets recurrent_mz_nuclei_m2 runs/x/preset --randomized 4 --nuclei 2
    python benchmarks/generalization.py --no-real --randomized 1 --nuclei 1 --shape 61 64 64   # a smoke run
Prints a markdown table and writes ``benchmarks/results/generalization[_TAG].{json,md,png}``.
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
REAL = ("celegans_cy3_widefield_crop.tif", "celegans_fitc_widefield_crop.tif")
BASELINES = ("linear interpolation", "nearest plane")
SEED = 900_000


def _sets(args):
    """[(name, [regions])]: each set's stacks as held-out regions (input stack, truth or None)."""
    from keras_rmz.io import read_stack
    from keras_rmz.simulate import randomized_pair, simulate_stack
    from keras_rmz.training.fine_tuning import _Region

    sets = []
    for name in REAL if args.real else ():
        path = SHARED / name
        if path.exists():
            sets.append((f"real: {name.split('_widefield')[0]}", [_Region(name, read_stack(path), None)]))
    if args.randomized:
        regions = []
        for i in range(args.randomized):
            noisy, clean = randomized_pair("widefield-v1", seed=SEED + i, shape=args.shape)
            regions.append(_Region(noisy.metadata["randomization"]["parameters"]["sample"], noisy, clean))
        sets.append((f"simulated: widefield-v1 ({args.randomized} stacks)", regions))
    if args.nuclei:
        regions = []
        for i in range(args.nuclei):
            noisy = simulate_stack("nuclei", seed=SEED + i, shape=args.shape)
            clean = simulate_stack("nuclei", seed=SEED + i, shape=args.shape, noise=False)
            regions.append(_Region("nuclei", noisy, clean))
        sets.append((f"simulated: nuclei, one microscope ({args.nuclei} stacks)", regions))
    return sets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["recurrent_mz_nuclei_m2", "recurrent_mz_widefield_m2"])
    parser.add_argument("--randomized", type=int, default=8, help="randomized simulated stacks (default 8)")
    parser.add_argument("--nuclei", type=int, default=4, help="paper-like nuclei stacks (default 4)")
    parser.add_argument("--shape", type=int, nargs=3, default=[91, 256, 256], metavar=("Z", "Y", "X"),
                        help="simulated stacks' shape at 0.2 µm steps, 0.1 µm pixels (default 91 256 256)")
    parser.add_argument("--no-real", dest="real", action="store_false", help="skip the real stacks")
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)

    import keras

    from keras_rmz.presets import load_preset
    from keras_rmz.training.fine_tuning import HeldOutScorer, scoring_windows

    models = {name: load_preset(name) for name in args.presets}
    geometry = {(m.preset_metadata["num_inputs"], m.preset_metadata["input_spacing_um"]) for m in models.values()}
    if len(geometry) != 1:
        raise SystemExit(f"the presets must share M and Δz to be scored on the same windows; got {sorted(geometry)}")
    (num_inputs, spacing), = geometry
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "generalization" + (f"_{args.tag}" if args.tag else "")
    rows = []
    start = time.monotonic()
    for set_name, regions in _sets(args):
        windows = scoring_windows(regions, num_inputs, spacing)
        pixels = {region.stack.pixel_um for region in regions}
        assert len(pixels) == 1, "one pixel size per set"
        scorer = HeldOutScorer(regions, windows, pixels.pop())
        scores = {}
        for method in (*models, *BASELINES):
            result = scorer.score(models.get(method, method))
            scores[method] = {"psnr_db": result["psnr_db"], "per_window_db": result["psnr_per_window_db"]}
        row = {"set": set_name, "stacks": [region.name for region in regions], "windows": len(windows),
               "scores": scores}
        rows.append(row)
        line = ", ".join(f"{m}: {s['psnr_db']:.2f} dB" for m, s in scores.items())
        print(f"{set_name}: {line}", flush=True)

    methods = [*models, *BASELINES]
    lines = [f"M = {num_inputs}, Δz = {spacing:g} µm, backend {keras.backend.backend()}; PSNR of the planes between "
             "the inputs (mean over windows); in brackets: minus linear interpolation", "",
             "| data | " + " | ".join(f"`{m}`" if m in models else m for m in methods) + " |",
             "| --- |" + " ---: |" * len(methods)]
    for row in rows:
        linear = row["scores"]["linear interpolation"]["psnr_db"]
        cells = []
        for m in methods:
            value = row["scores"][m]["psnr_db"]
            cells.append(f"{value:.2f} dB" + ("" if m == "linear interpolation" else f" ({value - linear:+.2f})"))
        lines.append(f"| {row['set']} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    (out / f"{stem}.md").write_text(text + "\n")
    record = {"presets": args.presets, "backend": keras.backend.backend(), "rows": rows,
              "seconds": time.monotonic() - start, "python": sys.version.split()[0], "keras": keras.__version__}
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    _figure(rows, methods, out / f"{stem}.png")
    return 0


def _figure(rows, methods, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(rows), 3.6))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        gains = [row["scores"][method]["psnr_db"] - row["scores"]["linear interpolation"]["psnr_db"] for row in rows]
        ax.bar(np.arange(len(rows)) + (i - (len(methods) - 1) / 2) * width, gains, width, label=method)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(rows)), [row["set"].replace(": ", ":\n", 1) for row in rows], fontsize=7)
    ax.set_ylabel("PSNR minus linear interpolation (dB)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
