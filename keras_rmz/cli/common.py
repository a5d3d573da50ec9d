"""Helpers the ``keras-rmz`` subcommands share: reading a stack with sizes
given at the command line, and output paths."""

import pathlib


def read_input_stack(
    path, *, z_step_um=None, pixel_um=None, channel=None, channel_option="--channel", pixel_option="--pixel-size"
):
    """``read_stack(path)``, with ``z_step_um`` / ``pixel_um`` used only when
    the file does not record them: a file that records its physical sizes is
    read as it is (non-uniform z positions included). Errors name the
    command-line options that fix them (``pixel_option`` for the pixel
    size)."""
    from keras_rmz.io import read_stack_with_defaults

    try:
        return read_stack_with_defaults(path, z_step_um=z_step_um, pixel_um=pixel_um, channel=channel)
    except ValueError as error:
        message = str(error)
        if "does not record" in message:
            message += f" Pass --z-step and/or {pixel_option} (µm)."
        elif "channel=" in message and channel_option:
            message += f" Pass {channel_option}."
        raise ValueError(message) from error


def check_output_path(path, suffixes, what):
    path = pathlib.Path(path)
    if not path.name.lower().endswith(suffixes):
        raise ValueError(f"{what} must end in {' or '.join(suffixes)}; got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder; give a file name")
    return path
