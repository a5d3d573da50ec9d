"""``keras-rmz demo``: a bead volume from three planes, offline, in minutes.

Simulates a stack of 50 nm beads as a wide-field microscope records it
(101 × 256 × 256 at 0.1 µm steps, like the paper's Fig. 3), takes M = 3
planes Δz = 3 µm apart, reconstructs the whole volume with a preset and
compares it with the truth (noise-free and as measured) and with linear
interpolation between the input planes.

Example:

```
keras-rmz demo                                  # preset recurrent_mz_beads_m3
keras-rmz demo --preset runs/recurrent_mz_beads_m3/preset --out demo --seed 3
```

It writes, in ``--out``: ``reconstruction.ome.tif`` (the volume),
``measured.ome.tif`` (the simulated stack, to try ``keras-rmz reconstruct``
on), ``metrics.csv`` (PSNR and SSIM per plane), ``mip.png`` (MIP side views
of the inputs, the interpolation, the reconstruction and the truth) and
``psnr_vs_z.png`` (PSNR against z, input planes marked).
"""

import argparse
import csv
import os
import pathlib
import time

import numpy as np

from keras_rmz.cli.arguments import add_batch_size_argument
from keras_rmz.cli.arguments import finite_um as _float
from keras_rmz.cli.arguments import non_negative_int as _seed
from keras_rmz.cli.arguments import positive_float as _positive_float
from keras_rmz.cli.arguments import positive_int as _positive_int
from keras_rmz.evaluation.baselines import linear_interpolation

HELP = "reconstruct a simulated bead volume from 3 planes and score it (offline, a few minutes)"

DESCRIPTION = """\
Simulates 50 nm beads in a wide-field microscope (63x/1.4 NA, 615 nm; by
default 101 x 256 x 256 voxels at 0.1 µm steps, the paper's Fig. 3), takes
M planes Δz apart (M and Δz from the preset, else 3 and 3 µm), reconstructs
every plane with the preset, and prints PSNR and SSIM for the planes between
the inputs against the noise-free truth and the measured stack, beside
linear interpolation between the input planes. Intensities are scored after
the paper's normalization of the noise-free volume (background 0, foreground
~1), with data range 1."""

EPILOG = """\
examples:
  keras-rmz demo
  keras-rmz demo --preset runs/recurrent_mz_beads_m3/preset --out demo --seed 3
  keras-rmz demo --shape 51 128 128 --z-step 0.2        # a smaller, faster volume"""

DEFAULT_PRESET = "recurrent_mz_beads_m3"
# Presets the project trains (examples/presets/<name>.yaml): a missing one is
# "not trained yet", not "unknown".
PLANNED_PRESETS = (
    "recurrent_mz_beads_m3",
    "recurrent_mz_nuclei_m2",
    "recurrent_mz_plus_nuclei_m3",
    "deep_z_beads",
    "unet3d_beads",
)
DEFAULT_SHAPE = (101, 256, 256)
DEFAULT_Z_STEP_UM = 0.1
DEFAULT_NUM_INPUTS = 3
DEFAULT_INPUT_SPACING_UM = 3.0
DEFAULT_PIXEL_UM = 0.1
METHOD_INTERPOLATION = "linear interpolation"
CSV_COLUMNS = (
    "z_um",
    "input_plane",
    "between_inputs",
    "model_psnr_noise_free_db",
    "model_psnr_measured_db",
    "model_ssim_noise_free",
    "model_ssim_measured",
    "interpolation_psnr_noise_free_db",
    "interpolation_psnr_measured_db",
    "interpolation_ssim_noise_free",
    "interpolation_ssim_measured",
)


def add_parser(subparsers):
    from keras_rmz.cli.main import one_line_errors

    parser = subparsers.add_parser(
        "demo",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    one_line_errors(parser)
    parser.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        metavar="NAME|DIR|hf://OWNER/REPO[@REV]",
        help=f"model to use (default {DEFAULT_PRESET}): a built-in name, a preset folder or a Hub repository",
    )
    parser.add_argument("--out", default="keras_rmz_demo", metavar="DIR", help="output folder (default keras_rmz_demo)")
    parser.add_argument("--seed", type=_seed, default=0, metavar="S", help="seed of the simulated beads (default 0)")
    volume = parser.add_argument_group("volume")
    volume.add_argument(
        "--shape",
        type=_positive_int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help=f"simulated stack shape (default {' '.join(map(str, DEFAULT_SHAPE))})",
    )
    volume.add_argument(
        "--z-step", type=_positive_float, metavar="UM", help=f"axial step in µm (default {DEFAULT_Z_STEP_UM})"
    )
    volume.add_argument(
        "--input-z",
        type=_float,
        nargs="+",
        metavar="Z",
        help="z (µm) of the input planes (default: M planes Δz apart, centred in the stack)",
    )
    add_batch_size_argument(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


# --------------------------------------------------------------------------
# The preset.
# --------------------------------------------------------------------------


def _is_name(handle):
    return not handle.startswith("hf://") and "/" not in handle and os.sep not in handle and not os.path.isdir(handle)


def _unavailable(name, reason):
    config = pathlib.Path("examples") / "presets" / f"{name}.yaml"
    return FileNotFoundError(
        f"preset {name!r} is not available: {reason}. Train it with `keras-rmz train {config}` and run "
        f"`keras-rmz demo --preset runs/{name}/preset`, or copy a preset folder to $KERAS_RMZ_WEIGHTS_DIR/{name}"
    )


def load_demo_model(handle):
    """``(model, metadata)`` of a preset; metadata as far as it is known
    without downloading more (a folder's metadata.json, a built-in entry's
    summary), else {}.

    Raises:
        FileNotFoundError: a built-in name without weights on this machine,
            naming the preset and how to get it.
    """
    from keras_rmz.presets import load_preset, registry, verify_preset

    known = handle in registry.PRESETS
    try:
        model = load_preset(handle)
    except ValueError:
        if _is_name(handle) and not known and handle in PLANNED_PRESETS:
            raise _unavailable(handle, "no trained weights for it are published in this keras_rmz yet") from None
        raise
    except FileNotFoundError as error:
        if known:
            raise _unavailable(handle, f"it is not on this machine and cannot be downloaded ({error})") from None
        raise
    metadata = {}
    if known:
        metadata = dict(registry.get_preset(handle).metadata)
    elif os.path.isdir(os.path.expanduser(handle)):
        metadata = verify_preset(os.path.expanduser(handle))
    return model, metadata


# --------------------------------------------------------------------------
# Numbers.
# --------------------------------------------------------------------------


def default_input_z(z, num_inputs, spacing_um):
    """``num_inputs`` positions ``spacing_um`` apart, centred in ``z`` and on
    its planes."""
    extent = z[-1] - z[0]
    span = (num_inputs - 1) * spacing_um
    if span > extent + 1e-9:
        raise ValueError(
            f"{num_inputs} input planes {spacing_um:g} µm apart span {span:g} µm, more than the stack's "
            f"{extent:g} µm; use a taller --shape or a larger --z-step"
        )
    start = z[0] + (extent - span) / 2
    wanted = start + spacing_um * np.arange(num_inputs)
    return z[np.argmin(np.abs(z[None, :] - wanted[:, None]), axis=1)]


# --------------------------------------------------------------------------
# The subcommand.
# --------------------------------------------------------------------------


def _write_csv(path, rows):
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()})
    os.replace(temporary, path)


def run(args):
    from keras_rmz import plot
    from keras_rmz.data import compute_normalization
    from keras_rmz.evaluation.scoring import score_planes
    from keras_rmz.io import Stack, write_stack
    from keras_rmz.simulate import simulate_stack
    from keras_rmz.version import __version__

    started = time.monotonic()
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    shape = tuple(args.shape) if args.shape else DEFAULT_SHAPE
    z_step = args.z_step or DEFAULT_Z_STEP_UM
    if shape[0] < 2:
        raise ValueError(f"--shape needs at least 2 planes (Z >= 2); got {shape[0]}")

    # The model first: a missing preset is reported before minutes of work.
    model, preset_metadata = load_demo_model(args.preset)
    num_inputs = int(preset_metadata.get("num_inputs") or DEFAULT_NUM_INPUTS)
    spacing = float(preset_metadata.get("input_spacing_um") or DEFAULT_INPUT_SPACING_UM)
    pixel_um = float(preset_metadata.get("pixel_um") or DEFAULT_PIXEL_UM)
    z = np.arange(shape[0]) * z_step
    if args.input_z is not None:
        input_z = np.asarray(args.input_z, np.float64)
        from keras_rmz.cli.common import nearest_planes

        index, gap = nearest_planes(z, input_z, 0.5 * z_step * (1 + 1e-9))
        if np.any(index < 0):
            raise ValueError(
                f"--input-z must lie on the simulated stack, z = 0..{z[-1]:g} µm; got {input_z[index < 0][0]:g}"
            )
        if len(set(index.tolist())) != len(index):
            raise ValueError("--input-z positions must pick distinct planes")
        input_z = z[index]
    else:
        input_z = default_input_z(z, num_inputs, spacing)
    input_index = [int(np.argmin(np.abs(z - value))) for value in input_z]
    if hasattr(model, "check_num_inputs"):
        model.check_num_inputs(len(input_index))

    say = (lambda text: None) if args.quiet else (lambda text: print(text, flush=True))
    say(
        f"keras-rmz demo: simulating {shape[0]}x{shape[1]}x{shape[2]} beads ({z_step:g} µm steps, {pixel_um:g} µm "
        f"pixels, seed {args.seed}); inputs at z = {', '.join(f'{v:g}' for v in input_z)} µm"
    )
    measured = simulate_stack("beads", "widefield", shape=shape, z_step_um=z_step, pixel_um=pixel_um, seed=args.seed)
    noise_free = simulate_stack(
        "beads", "widefield", shape=shape, z_step_um=z_step, pixel_um=pixel_um, seed=args.seed, noise=False
    )
    images = measured.data[input_index]

    say(f"keras-rmz demo: reconstructing {shape[0]} planes with {type(model).__name__} ({args.preset})")
    volume = model.reconstruct(
        images, input_z, z, batch_size=args.batch_size, verbose=False if args.quiet else "auto", pixel_um=pixel_um
    )

    # Scores in the units of a training target: the paper's normalization
    # of the noise-free volume (background 0, foreground ~1), data range 1.
    # The same linear map for every volume, so it ranks methods as raw
    # counts would.
    norm = compute_normalization(noise_free)
    normalized = {
        "model": norm.apply(volume.astype(np.float32)),
        "interpolation": norm.apply(linear_interpolation(images.astype(np.float32), input_z, z)),
    }
    truths = {"noise_free": norm.apply(noise_free.data.astype(np.float32)),
              "measured": norm.apply(measured.data.astype(np.float32))}
    is_input = np.zeros(shape[0], bool)
    is_input[input_index] = True
    between = (z > input_z.min()) & (z < input_z.max()) & ~is_input
    planes = np.flatnonzero(between)
    if planes.size == 0:
        raise ValueError("no planes lie between the input planes; give inputs further apart (--input-z)")
    scores = {}
    for method, recon in normalized.items():
        for truth_name, truth in truths.items():
            # Normalized intensities: data range 1 (the paper's convention).
            per_plane = score_planes(truth, recon, data_range=1.0)
            scores[method, truth_name] = (per_plane["psnr_db"], per_plane["ssim"])

    # --- Report ---
    label = "Recurrent-MZ" if type(model).__name__ == "RecurrentMZ" else type(model).__name__
    lines = [
        f"planes between the inputs: {planes.size} (z = {z[planes[0]]:g}..{z[planes[-1]]:g} µm), mean per plane",
        f"{'':24s}{'PSNR noise-free':>17s}{'PSNR measured':>15s}{'SSIM noise-free':>17s}{'SSIM measured':>15s}",
    ]
    for method, name in (("model", label), ("interpolation", METHOD_INTERPOLATION)):
        p_free, s_free = scores[method, "noise_free"]
        p_meas, s_meas = scores[method, "measured"]
        lines.append(
            f"{name:24s}{np.mean(p_free[planes]):>14.2f} dB{np.mean(p_meas[planes]):>12.2f} dB"
            f"{np.mean(s_free[planes]):>17.3f}{np.mean(s_meas[planes]):>15.3f}"
        )
    print("\n".join(lines))

    out.mkdir(parents=True, exist_ok=True)
    recon_path = out / "reconstruction.ome.tif"
    write_stack(
        recon_path,
        Stack(
            volume.astype(np.float32),
            z,
            pixel_um,
            {
                "keras_rmz_version": __version__,
                "reconstruction": {
                    "demo": True,
                    "preset": str(args.preset),
                    "model": type(model).__name__,
                    "input_planes": input_index,
                    "input_z_um": [float(v) for v in input_z],
                    "source": "measured.ome.tif",
                },
            },
        ),
    )
    write_stack(out / "measured.ome.tif", measured)
    rows = []
    for k in range(shape[0]):
        row = {"z_um": float(z[k]), "input_plane": int(is_input[k]), "between_inputs": int(between[k])}
        for method, prefix in (("model", "model"), ("interpolation", "interpolation")):
            for truth_name in ("noise_free", "measured"):
                p, s = scores[method, truth_name]
                row[f"{prefix}_psnr_{truth_name}_db"] = float(p[k])
                row[f"{prefix}_ssim_{truth_name}"] = float(s[k])
        rows.append(row)
    _write_csv(out / "metrics.csv", rows)

    nearest = np.argmin(np.abs(z[:, None] - input_z[None, :]), axis=1)
    plot.mip_side_views(
        {
            "inputs (nearest input plane)": truths["measured"][input_index][nearest],
            METHOD_INTERPOLATION: normalized["interpolation"],
            label: normalized["model"],
            "truth (noise-free)": truths["noise_free"],
        },
        z,
        pixel_um,
        out / "mip.png",
        input_z=input_z,
        normalize="shared",
    )
    plot.metric_vs_z(
        z,
        {
            f"{label} vs noise-free": scores["model", "noise_free"][0],
            f"{label} vs measured": scores["model", "measured"][0],
            f"{METHOD_INTERPOLATION} vs noise-free": scores["interpolation", "noise_free"][0],
            f"{METHOD_INTERPOLATION} vs measured": scores["interpolation", "measured"][0],
        },
        input_z=input_z,
        metric="PSNR (dB, normalized, range 1)",
        path=out / "psnr_vs_z.png",
        title=f"{label} from {len(input_index)} planes vs linear interpolation",
    )
    say(
        f"keras-rmz demo: wrote {recon_path}, {out / 'measured.ome.tif'}, {out / 'metrics.csv'}, "
        f"{out / 'mip.png'}, {out / 'psnr_vs_z.png'} in {time.monotonic() - started:.0f} s"
    )
    return 0
