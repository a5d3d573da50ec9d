"""Helpers the ``keras-rmz`` subcommands share: reading a stack with sizes
given at the command line, output paths, and the preset's guards."""

import pathlib
import sys

# What keras-rmz reconstruct reads and writes: TIFF / OME-TIFF, OME-Zarr.
STACK_SUFFIXES = (".tif", ".tiff", ".zarr")


def read_input_stack(
    path, *, z_step_um=None, pixel_um=None, channel=None, time=None, channel_option="--channel",
    pixel_option="--pixel-size", time_option="--time",
):
    """``read_stack(path)``, with ``z_step_um`` / ``pixel_um`` used only when
    the file does not record them: a file that records its physical sizes is
    read as it is (non-uniform z positions included). Errors name the
    command-line options that fix them (``pixel_option`` for the pixel
    size)."""
    from keras_rmz.io import read_stack_with_defaults

    try:
        stack = read_stack_with_defaults(path, z_step_um=z_step_um, pixel_um=pixel_um, channel=channel, time=time)
    except ValueError as error:
        message = str(error)
        if "does not record" in message:
            message += f" Pass --z-step and/or {pixel_option} (µm)."
        elif "is a 2D image" in message:
            message = (f"{path} is one 2D image without a z position; the commands read z-stacks (Z, Y, X). Save "
                       "the plane as an OME-TIFF that records its z, e.g. keras_rmz.io.write_stack(path, "
                       "Stack(image[None], z=[z], pixel_um=...)).")
        elif "channel=" in message and channel_option:
            message += f" Pass {channel_option}."
        elif time_option:  # read_stack's time= is the command's time_option
            message = message.replace("pass time=", f"pass {time_option} T").replace("time must", f"{time_option} must")
        raise ValueError(message) from error
    kind = stack.data.dtype.kind
    if kind not in "uif":
        raise ValueError(f"{path} holds {stack.data.dtype} values; intensities must be integers or floats")
    return stack


def check_output_path(path, suffixes, what, overwrite=False):
    """The output file ``path`` of option ``what``, checked before any work:
    its suffix, not a folder, not an existing file unless ``overwrite``
    (``--overwrite``, the policy of every command that writes files), and a
    folder that can be written."""
    from keras_rmz.io.atomic import check_writable

    path = pathlib.Path(path)
    if not path.name.lower().endswith(suffixes):
        raise ValueError(f"{what} must end in {' or '.join(suffixes)}; got {str(path)!r}")
    if path.is_dir() and not path.name.lower().endswith(".zarr"):  # a Zarr store is a folder
        raise ValueError(f"{what} {str(path)!r} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{what} {str(path)!r} exists; pass --overwrite to replace it")
    check_writable(path, what)
    return path


def check_preset_request(args, stack, input_z, output_z):
    """The preset's guards, from its verified metadata.json, before the model
    is loaded (an unknown name, a missing folder or a damaged file is
    reported before a backend starts): refuses output planes beyond its
    trained range without --extrapolate, prints one warning naming every
    other mismatch, and returns the mismatches."""
    from keras_rmz import out_of_distribution as ood
    from keras_rmz.presets import read_preset_metadata

    mismatches = ood.check_request(
        read_preset_metadata(args.preset), input_z=input_z, output_z=output_z, pixel_um=stack.pixel_um,
        stack_metadata=stack.metadata, extrapolate=args.extrapolate, options=ood.CLI_OPTIONS,
    )
    if mismatches:
        print(f"keras-rmz reconstruct: warning: {ood.warning_message(mismatches, str(args.preset))}", file=sys.stderr)
    return mismatches
