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
import os
import pathlib

from keras_rmz.cli.arguments import add_batch_size_argument, add_precision_argument
from keras_rmz.cli.arguments import finite_um as _float
from keras_rmz.cli.arguments import non_negative_int as _seed
from keras_rmz.cli.arguments import positive_float as _positive_float
from keras_rmz.cli.arguments import positive_int as _positive_int
from keras_rmz.evaluation import demo

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


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
        help=f"simulated stack shape (default {' '.join(map(str, demo.DEFAULT_SHAPE))})",
    )
    volume.add_argument(
        "--z-step", type=_positive_float, metavar="UM", help=f"axial step in µm (default {demo.DEFAULT_Z_STEP_UM})"
    )
    volume.add_argument(
        "--input-z",
        type=_float,
        nargs="+",
        metavar="Z",
        help="z (µm) of the input planes (default: M planes Δz apart, centred in the stack)",
    )
    add_batch_size_argument(parser)
    add_precision_argument(parser)
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
    """``(model, metadata)`` of a preset, its verified metadata.json read
    first, so that an unknown or missing preset is reported before a
    deep-learning backend starts.

    Raises:
        FileNotFoundError: a built-in name without weights on this machine,
            naming the preset and how to get it.
    """
    from keras_rmz.presets import load_preset, read_preset_metadata, registry

    known = handle in registry.PRESETS
    try:
        metadata = read_preset_metadata(handle)
    except ValueError:
        if _is_name(handle) and not known and handle in PLANNED_PRESETS:
            raise _unavailable(handle, "no trained weights for it are published in this keras_rmz yet") from None
        raise
    except FileNotFoundError as error:
        if known:
            raise _unavailable(handle, f"it is not on this machine and cannot be downloaded ({error})") from None
        raise
    return load_preset(handle), metadata


# --------------------------------------------------------------------------
# Numbers.
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# The subcommand.
# --------------------------------------------------------------------------


def run(args):
    # The model first: a missing preset is reported before minutes of work.
    model, preset_metadata = load_demo_model(args.preset)
    lines = demo.bead_demo(
        model,
        args.out,
        preset_metadata=preset_metadata,
        preset=args.preset,
        shape=args.shape or demo.DEFAULT_SHAPE,
        z_step_um=args.z_step or demo.DEFAULT_Z_STEP_UM,
        input_z=args.input_z,
        seed=args.seed,
        batch_size=args.batch_size,
        precision=args.precision,
        verbose=not args.quiet,
    )
    print("\n".join(lines))
    return 0
