"""argparse ``type=`` converters shared by the subcommands: each refuses a
bad value with a message that says what is accepted, which argparse turns
into the one-line error ``keras-rmz COMMAND: error: argument --x: ...``."""

import argparse
import math


def _number(text, *, convert, accepted, is_valid):
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {accepted}; got {text!r}") from None
    if not is_valid(value):
        raise argparse.ArgumentTypeError(f"must be {accepted}; got {text!r}")
    return value


def positive_int(text):
    return _number(text, convert=int, accepted="a positive integer", is_valid=lambda v: v >= 1)


def batch_size(text):
    """``auto`` or a positive integer (output planes per model call)."""
    if text == "auto":
        return text
    return _number(text, convert=int, accepted="'auto' or a positive integer", is_valid=lambda v: v >= 1)


def add_batch_size_argument(parser):
    """``--batch-size N|auto``, as ``reconstruct(batch_size=...)`` takes it."""
    parser.add_argument(
        "--batch-size",
        type=batch_size,
        default="auto",
        metavar="N",
        help="output planes per model call, or 'auto' (default: about 256x256 output pixels per call on a CPU "
        "with TensorFlow, 256x256x4 with JAX or PyTorch, 1024x1024x4 on a GPU; 1 to 8 planes)",
    )


def non_negative_int(text):
    return _number(text, convert=int, accepted="an integer >= 0", is_valid=lambda v: v >= 0)


def positive_float(text):
    return _number(text, convert=float, accepted="a number > 0", is_valid=lambda v: math.isfinite(v) and v > 0)


def positive_um(text):
    """A length in µm, > 0."""
    return _number(text, convert=float, accepted="a number > 0 (µm)", is_valid=lambda v: math.isfinite(v) and v > 0)


def finite_um(text):
    """A position in µm (any finite number)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (µm); got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite; got {text!r}")
    return value
