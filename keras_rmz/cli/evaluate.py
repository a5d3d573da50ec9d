"""``keras-rmz evaluate``: score a reconstruction against a ground-truth stack,
plane by plane.

Example:

```
keras-rmz evaluate recon.ome.tif truth.ome.tif --csv scores.csv --figure psnr.png
```
"""

import argparse
import csv
import io
import math
import pathlib
import sys

import numpy as np

from keras_rmz.cli.common import check_output_path, read_input_stack
from keras_rmz.io import nearest_planes
from keras_rmz.cli.arguments import positive_float as _positive_float

HELP = "score a reconstructed stack against a ground-truth stack (PSNR, NRMSE, SSIM per plane)"

DESCRIPTION = """\
Reads PREDICTION and TRUTH (OME-TIFF, ImageJ or plain TIFF), pairs their
planes by z, and prints PSNR, NRMSE and SSIM for every pair, then the mean,
min and max of each. Planes of PREDICTION without a TRUTH plane within the
tolerance are left out (and counted); no pair at all is an error."""

EPILOG = """\
metrics (keras_rmz.metrics, ground truth first):
  PSNR (dB)  10 log10(R^2 / MSE), R = --data-range, by default the
             peak-to-peak span of the matched TRUTH planes (one R for every
             plane, so planes are comparable); identical planes give inf
  NRMSE      ||pred - truth|| / ||truth|| per plane (a fraction)
  SSIM       mean SSIM, 7x7 uniform window (scikit-image defaults), same R

example:
  keras-rmz evaluate recon.ome.tif truth.ome.tif --csv scores.csv --figure psnr.png"""

COLUMNS = ("z_um", "truth_z_um", "psnr_db", "nrmse", "ssim")
METRIC_COLUMNS = ("psnr_db", "nrmse", "ssim")
# A truth plane matches a prediction plane within this fraction of the
# truth's z step, unless --z-tolerance is given.
DEFAULT_TOLERANCE_STEPS = 0.1
# Tolerance for stacks of one plane (no step to scale by).
DEFAULT_TOLERANCE_UM = 1e-3


def match_planes(prediction_z, truth_z, tolerance_um):
    """Pairs of (prediction plane, truth plane) whose z differ by at most
    ``tolerance_um``; each truth plane is paired at most once (with the
    nearest prediction plane). Pairs are sorted by prediction z.

    Returns:
        (prediction indices, truth indices), two int arrays of equal length.
    """
    truth_index, distance = nearest_planes(truth_z, prediction_z, tolerance_um)
    best = {}
    for p_index, (t_index, gap) in enumerate(zip(truth_index, distance)):
        if t_index >= 0 and (t_index not in best or gap < best[t_index][1]):
            best[int(t_index)] = (p_index, gap)
    pairs = sorted(((p, t) for t, (p, _) in best.items()), key=lambda pair: prediction_z[pair[0]])
    return (np.array([p for p, _ in pairs], dtype=int), np.array([t for _, t in pairs], dtype=int))


def summarize(values):
    """(mean, min, max) over the finite values (inf counts for min/max)."""
    values = np.asarray(values, dtype=np.float64)
    kept = values[~np.isnan(values)]
    if kept.size == 0:
        return (float("nan"),) * 3
    with np.errstate(invalid="ignore"):
        return float(np.mean(kept)), float(np.min(kept)), float(np.max(kept))


def _format(value, digits):
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def format_table(rows):
    """The per-plane table and the summary as text."""
    header = f"{'z (µm)':>10} {'truth z':>10} {'PSNR (dB)':>10} {'NRMSE':>8} {'SSIM':>7}"
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['z_um']:>10.4g} {row['truth_z_um']:>10.4g} {_format(row['psnr_db'], 2):>10} "
            f"{_format(row['nrmse'], 4):>8} {_format(row['ssim'], 4):>7}"
        )
    lines.append("")
    lines.append(f"{'':>10} {'':>10} {'PSNR (dB)':>10} {'NRMSE':>8} {'SSIM':>7}")
    stats = {name: summarize([row[name] for row in rows]) for name in METRIC_COLUMNS}
    for position, label in enumerate(("mean", "min", "max")):
        lines.append(
            f"{label:>21} {_format(stats['psnr_db'][position], 2):>10} "
            f"{_format(stats['nrmse'][position], 4):>8} {_format(stats['ssim'][position], 4):>7}"
        )
    return "\n".join(lines)


def write_csv(path, rows):
    """Writes the per-plane rows as CSV (``COLUMNS``), atomically."""
    from keras_rmz.io.atomic import write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        # repr() of a float reads back exactly; inf and nan as "inf" / "nan".
        writer.writerow([repr(float(row[name])) for name in COLUMNS])
    write_text(path, buffer.getvalue())
    return path


def _recorded_input_z(metadata):
    """The input z that ``keras-rmz reconstruct`` recorded, or None."""
    record = metadata.get("reconstruction")
    values = record.get("input_z_um") if isinstance(record, dict) else None
    try:
        values = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    return values if values.size and np.all(np.isfinite(values)) else None


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    stacks = parser.add_argument_group("input")
    stacks.add_argument(
        "prediction", metavar="PREDICTION", help="stack under test, e.g. the output of keras-rmz reconstruct"
    )
    stacks.add_argument("truth", metavar="TRUTH", help="ground-truth stack")
    stacks.add_argument(
        "--z-step", type=_positive_float, metavar="UM", help="z spacing (µm) for a file that does not record it"
    )
    stacks.add_argument(
        "--pixel-size", type=_positive_float, metavar="UM", help="pixel size (µm) for a file that does not record it"
    )

    scoring = parser.add_argument_group("scoring")
    scoring.add_argument(
        "--data-range",
        type=_positive_float,
        metavar="R",
        help="intensity span for PSNR and SSIM (default: max - min of the matched truth planes)",
    )
    scoring.add_argument(
        "--z-tolerance",
        type=_positive_float,
        metavar="UM",
        help="planes pair when their z differ by at most this "
        f"(default: {DEFAULT_TOLERANCE_STEPS:g} x the truth's z step)",
    )

    output = parser.add_argument_group("output")
    output.add_argument("--csv", metavar="OUT.csv", help="write the per-plane table as CSV")
    output.add_argument("--figure", metavar="OUT.png", help="plot PSNR against z (PNG)")
    output.add_argument("--overwrite", action="store_true", help="replace --csv and --figure if they exist")
    parser.set_defaults(func=run)
    return parser


def run(args):
    csv_path = check_output_path(args.csv, (".csv",), "--csv", args.overwrite) if args.csv else None
    figure_path = check_output_path(args.figure, (".png",), "--figure", args.overwrite) if args.figure else None
    prediction = read_input_stack(
        args.prediction, z_step_um=args.z_step, pixel_um=args.pixel_size, channel_option=None
    )
    truth = read_input_stack(args.truth, z_step_um=args.z_step, pixel_um=args.pixel_size, channel_option=None)
    if prediction.shape[1:] != truth.shape[1:]:
        raise ValueError(
            f"PREDICTION and TRUTH planes must have the same size (Y, X); got {prediction.shape[1:]} "
            f"and {truth.shape[1:]}"
        )
    if not math.isclose(prediction.pixel_um, truth.pixel_um, rel_tol=1e-3):
        print(
            f"keras-rmz evaluate: warning: pixel sizes differ (PREDICTION {prediction.pixel_um:g} µm, "
            f"TRUTH {truth.pixel_um:g} µm)",
            file=sys.stderr,
        )
    if args.z_tolerance is not None:
        tolerance = args.z_tolerance
    elif truth.z_step_um is not None:
        tolerance = DEFAULT_TOLERANCE_STEPS * truth.z_step_um
    else:
        tolerance = DEFAULT_TOLERANCE_UM
    p_index, t_index = match_planes(prediction.z, truth.z, tolerance)
    if p_index.size == 0:
        raise ValueError(
            f"no plane of PREDICTION (z = {prediction.z.min():g}..{prediction.z.max():g} µm) has a TRUTH plane "
            f"(z = {truth.z.min():g}..{truth.z.max():g} µm) within {tolerance:g} µm; check the z of both files "
            "or pass --z-tolerance"
        )
    from keras_rmz.evaluation.scoring import score_planes

    scores = score_planes(truth.data[t_index], prediction.data[p_index], data_range=args.data_range)
    rows = [
        {
            "z_um": float(prediction.z[p]),
            "truth_z_um": float(truth.z[t]),
            **{name: float(scores[name][i]) for name in METRIC_COLUMNS},
        }
        for i, (p, t) in enumerate(zip(p_index, t_index))
    ]

    print(format_table(rows))
    unmatched = prediction.shape[0] - p_index.size
    print(
        f"\n{p_index.size} of {prediction.shape[0]} PREDICTION planes scored against TRUTH (z within "
        f"{tolerance:g} µm; data range {scores['data_range']:g})"
        + (f"; {unmatched} without a TRUTH plane left out" if unmatched else "")
    )
    if csv_path is not None:
        write_csv(csv_path, rows)
        print(f"wrote {csv_path}")
    if figure_path is not None:
        from keras_rmz import plot

        input_z = _recorded_input_z(prediction.metadata)
        z = np.array([row["z_um"] for row in rows])
        plot.metric_vs_z(
            z,
            {pathlib.Path(args.prediction).name: np.array([row["psnr_db"] for row in rows])},
            input_z=input_z,
            metric="PSNR (dB)",
            path=figure_path,
        )
        print(f"wrote {figure_path}")
    return 0
