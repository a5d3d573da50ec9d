"""``keras-rmz reconstruct``: infer a volume from a few planes of a stack.

Example:

```
keras-rmz reconstruct beads.ome.tif --input-z 3 6 9 --output-z 0:10:0.1 \\
    --preset recurrent_mz_beads_m3 -o recon.ome.tif --figure recon.png
```

"""

import argparse
import pathlib
import sys

import numpy as np

from keras_rmz.cli.arguments import (add_batch_size_argument, add_precision_argument, finite_um, parse_output_z,
                                     plane_index, positive_int, positive_um, select_input_planes)
from keras_rmz.cli.common import STACK_SUFFIXES, check_output_path, check_preset_request, read_input_stack

HELP = "infer a volume at any z from a few planes of a stack (Recurrent-MZ)"

DESCRIPTION = """\
Reads STACK (OME-TIFF, ImageJ or plain TIFF), takes the input planes chosen by
--input-z or --input-planes, runs the model of --preset at every --output-z
and writes the volume as OME-TIFF (z = the output positions, the stack's pixel
size, metadata recording the inputs, the preset and the keras_rmz version).
Intensities are normalized as the paper does and mapped back to the stack's
units (--no-normalize to skip).

Before the model is loaded, the request is checked against the preset's
metadata: planes at another pixel size than the preset's are resampled to it
(and the volume back to the stack's pixel size), output planes beyond the
range the preset was trained for are refused (--extrapolate to reconstruct
them anyway), and any other mismatch (input spacing, number of inputs,
modality, emission wavelength, NA) is reported in one warning."""

EPILOG = """\
--output-z takes START:STOP:STEP ranges and single values, in µm, e.g.
"0:10:0.1" (101 planes: STOP is included when it lies on the grid) or
"1.5 2 2.5". A range's last plane is the grid point START + k*STEP nearest
to STOP, so it may end up to half a step before or after STOP. Write a range
that starts below zero with "=", e.g. --output-z=-2:2:0.1 (argparse would
take "-2:2:0.1" for an option).

examples:
  keras-rmz reconstruct beads.ome.tif --input-z 3 6 9 --output-z 0:10:0.1 \\
      --preset recurrent_mz_beads_m3 -o recon.ome.tif
  keras-rmz reconstruct raw.tif --z-step 0.2 --pixel-um 0.065 \\
      --input-planes 10 45 80 --output-z 0:18:0.2 --preset ./my_preset \\
      -o recon.ome.tif --figure recon.png"""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "reconstruct",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    source = parser.add_argument_group("input")
    source.add_argument("stack", metavar="STACK",
                        help="TIFF / OME-TIFF z-stack or OME-Zarr image (.zarr) holding the input planes")
    planes = source.add_mutually_exclusive_group(required=True)
    planes.add_argument(
        "--input-z",
        nargs="+",
        type=finite_um,
        metavar="Z",
        help="z (µm) of each input plane; the nearest plane within half a z step is used",
    )
    planes.add_argument(
        "--input-planes", nargs="+", type=plane_index, metavar="I", help="0-based index of each input plane"
    )
    source.add_argument(
        "--z-step", type=positive_um, metavar="UM", help="z spacing (µm), used if STACK does not record it"
    )
    source.add_argument(
        "--pixel-um",
        "--pixel-size",
        dest="pixel_um",
        type=positive_um,
        metavar="UM",
        help="pixel size (µm), used if STACK does not record it (--pixel-size is an alias). Planes whose pixel "
        "size differs from the preset's by more than 2%% are resampled to it, and the volume back",
    )
    source.add_argument("--channel", type=int, metavar="C", help="channel to read from a multi-channel file")
    source.add_argument(
        "--time", metavar="T|START:STOP[:STEP]",
        help="time point (0-based) to read from a time series; a range (STOP included, e.g. 0:99) reconstructs "
        "every time point from the same input planes into one OME-Zarr store (-o NAME.ome.zarr), chunk by chunk "
        "with Dask (see --scheduler)")

    model = parser.add_argument_group("model")
    model.add_argument(
        "--preset",
        required=True,
        metavar="NAME|DIR|hf://OWNER/REPO[@REV]",
        help="model to use: a built-in preset name (keras-rmz presets), a preset folder, or a Hub repository",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--output-z",
        required=True,
        nargs="+",
        metavar="Z",
        help="z (µm) of the planes to infer: START:STOP:STEP (STOP included) and/or single values",
    )
    output.add_argument("-o", "--output", required=True, metavar="OUT.ome.tif",
                        help="reconstructed volume: OME-TIFF (.tif, .tiff) or OME-Zarr with a pyramid (.zarr)")
    output.add_argument(
        "--figure", metavar="OUT.png", help="also write maximum-intensity-projection side views (x-z, y-z) as PNG"
    )
    output.add_argument("--overwrite", action="store_true", help="replace --output and --figure if they exist")

    inference = parser.add_argument_group("inference")
    inference.add_argument(
        "--tile-size",
        type=positive_int,
        metavar="N",
        help="infer in overlapping N x N tiles, blended (default: whole planes up to 1024x1024, else 512); "
        "halved automatically on out-of-memory errors",
    )
    add_batch_size_argument(inference)
    add_precision_argument(inference)
    inference.add_argument(
        "--halo", type=int, metavar="N",
        help="with a --time range or --scheduler: pixels read around each tile, a multiple of 32 (default 64, more "
        "than the receptive field of every built-in Recurrent-MZ preset)")
    inference.add_argument(
        "--scheduler", metavar="threads|local:N|tcp://HOST:PORT",
        help="run as a Dask graph of tiles written straight to an OME-Zarr store: on Dask's local threads, a "
        "LocalCluster of N worker processes, or a running dask.distributed scheduler (needs pip install "
        "'keras-rmz[distributed]'). Running the same command again resumes an interrupted run. Default with a "
        "--time range: threads")
    inference.add_argument(
        "--engine",
        choices=("keras", "onnxruntime", "openvino"),
        default="keras",
        help="run the preset's network with Keras (default), or exported to ONNX and run by ONNX Runtime or "
        "OpenVINO (float32; needs pip install 'keras-rmz[onnx]' or '[openvino]'); tiling, normalization and "
        "guards are the same",
    )
    normalization = inference.add_mutually_exclusive_group()
    normalization.add_argument(
        "--no-normalize",
        action="store_true",
        help="feed the intensities as they are (default: the paper's normalization, undone on the output)",
    )
    normalization.add_argument(
        "--normalize-from-stack",
        action="store_true",
        help="compute the normalization from every plane of STACK, as the paper's training data were, "
        "instead of from the input planes only",
    )
    inference.add_argument(
        "--extrapolate",
        action="store_true",
        help="reconstruct output planes whose distance to the input planes lies beyond the range the preset "
        "was trained for (its output_range_um, widened by 10%% of its width), with a warning, instead of "
        "refusing them",
    )
    inference.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(func=run)
    return parser


def run(args):
    from keras_rmz.io import write_stack
    from keras_rmz.io.omezarr import is_zarr, require_zarr
    from keras_rmz.io.stack import is_lazy
    from keras_rmz.presets import load_preset

    # Everything that can be checked cheaply is checked before the model runs.
    stack_path, output_path = pathlib.Path(args.stack), pathlib.Path(args.output)
    if stack_path.exists() and output_path.exists() and output_path.resolve() == stack_path.resolve():
        raise ValueError(f"--output {str(output_path)!r} would overwrite the input stack; choose another file")
    time_range = args.time is not None and ":" in args.time
    if not time_range and args.time is not None:
        try:
            args.time = int(args.time)
        except ValueError:
            raise ValueError(f"--time takes a time point T or a range START:STOP[:STEP]; got {args.time!r}") from None
    if time_range or args.scheduler:
        from keras_rmz.cli.timelapse import run_timelapse

        return run_timelapse(args, output_path)
    if args.halo is not None:
        raise ValueError("--halo applies to a --time range or --scheduler only")
    output_path = check_output_path(args.output, STACK_SUFFIXES, "--output", args.overwrite)
    if is_zarr(output_path):
        require_zarr()
    figure_path = check_output_path(args.figure, (".png",), "--figure", args.overwrite) if args.figure else None
    if figure_path is not None and figure_path.resolve() == output_path.resolve():
        raise ValueError("--figure and --output name the same file")
    output_z = parse_output_z(args.output_z)
    stack = read_input_stack(args.stack, z_step_um=args.z_step, pixel_um=args.pixel_um, channel=args.channel,
                             time=args.time, pixel_option="--pixel-um (or --pixel-size)")
    indices = select_input_planes(stack, input_z=args.input_z, input_planes=args.input_planes)
    input_z = stack.z[indices]
    if not np.all(np.isfinite(np.asarray(stack.data[indices]))):
        raise ValueError(f"the input planes {indices} hold NaN or inf values; the model needs finite intensities")
    # A lazily read (OME-Zarr) stack is read only where it is used: its
    # other planes are not scanned (--normalize-from-stack checks them).
    bad = 0 if is_lazy(stack.data) else int(stack.data.size - np.count_nonzero(np.isfinite(stack.data)))
    if bad and args.normalize_from_stack:
        raise ValueError(f"STACK holds {bad} NaN or inf values; --normalize-from-stack needs finite intensities in "
                         "every plane")
    if bad:
        print(f"keras-rmz reconstruct: warning: STACK holds {bad} NaN or inf values outside the input planes; they "
              "are not used (a --figure draws the measured planes without them)", file=sys.stderr)

    mismatches = check_preset_request(args, stack, input_z, output_z)

    # Imported only now: a mistake in the arguments is reported before a
    # deep-learning backend is started.
    import warnings

    from keras_rmz.export import check_engine_precision, engine_model, require
    from keras_rmz.inference import reconstruct_stack
    from keras_rmz.out_of_distribution import OutOfDistributionWarning

    if args.engine != "keras":  # before the model is loaded
        check_engine_precision(args.engine, args.precision)
        require(args.engine)
        require("export")
    model = engine_model(load_preset(args.preset), args.engine, num_inputs=len(indices))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDistributionWarning)  # reported above
        result = reconstruct_stack(
            model, stack, indices, output_z,
            normalize=None if args.no_normalize else "stack" if args.normalize_from_stack else "inputs",
            batch_size=args.batch_size, tile_size=args.tile_size, extrapolate=args.extrapolate,
            verbose=not args.quiet, precision=args.precision if args.engine == "keras" else "float32",
            record={"source": str(stack_path), "preset": str(args.preset), "out_of_distribution": mismatches,
                    "engine": args.engine},
        )
    resampled_to = result.metadata["reconstruction"]["resampled_to_pixel_um"]
    write_stack(output_path, result)
    if figure_path is not None:
        from keras_rmz.plot import reconstruction_side_views

        reconstruction_side_views(stack, result, figure_path)
    if not args.quiet:
        resampled = (f" (resampled from {stack.pixel_um:g} to the preset's {resampled_to:g} µm pixels and back)"
                     if resampled_to else "")
        print(f"wrote {output_path}: {result.data.shape[0]} planes of {result.data.shape[1]}x{result.data.shape[2]} "
              f"px, z = {output_z.min():g}..{output_z.max():g} µm, from {len(indices)} input planes at z = "
              + ", ".join(f"{z:g}" for z in input_z) + f" µm{resampled}"
              + (f"; figure {figure_path}" if figure_path is not None else ""))
    return 0

