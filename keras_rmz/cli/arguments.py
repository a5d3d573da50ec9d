"""argparse ``type=`` converters shared by the subcommands: each refuses a
bad value with a message that says what is accepted, which argparse turns
into the one-line error ``keras-rmz COMMAND: error: argument --x: ...``;
and the grammar of ``--output-z`` ranges and of input-plane choices."""

import argparse
import math
import re

import numpy as np

from keras_rmz.io import nearest_planes


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


def add_precision_argument(parser, what="the network computes"):
    """``--precision auto|float32|bfloat16|float16``, as the Python API takes it."""
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16", "float16"),
        default="auto",
        help=f"the floating-point type {what} in; weights stay float32 (default: auto, the fastest that keeps "
        "accuracy here, as measured: bfloat16 on TensorFlow on CPUs with Intel AMX, float32 elsewhere, "
        "GPUs included; the environment variable KERAS_RMZ_PRECISION overrides auto)",
    )


def plane_index(text):
    """A 0-based plane index (the range is checked against the stack)."""
    return _number(text, convert=int, accepted="a plane index (an integer)", is_valid=lambda v: True)


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


# --------------------------------------------------------------------------
# The output planes and the input planes.
# --------------------------------------------------------------------------


def _um_value(text, what):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number (µm); got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite; got {text!r}")
    return value


def parse_output_z(tokens):
    """Output plane positions (µm) from command-line tokens.

    Each token is a number (``"2.5"``) or an inclusive range
    ``"START:STOP:STEP"``: ``START + k*STEP`` for ``k = 0 .. n`` where
    ``START + n*STEP`` is the grid point nearest STOP (of two equally near,
    the one before STOP), within half a step of it. STOP is therefore included
    whenever the range is a whole number of steps, whatever the floating-point
    rounding (``0:10:0.1`` gives 101 planes). A negative STEP counts down.
    Values are rounded to 1e-9 µm so that 0.1 * 3 prints as 0.3. Tokens may
    also be separated by commas.

    Returns:
        float64 array (K,), in the order given.

    Raises:
        ValueError: a token is neither a number nor a range, STEP is 0 or
            points away from STOP, or a position repeats.
    """
    if isinstance(tokens, str):
        tokens = [tokens]
    pieces = [piece for token in tokens for piece in re.split(r"[,\s]+", str(token).strip()) if piece]
    if not pieces:
        raise ValueError("--output-z needs at least one position (µm) or START:STOP:STEP range")
    values = []
    for piece in pieces:
        if ":" not in piece:
            values.append(_um_value(piece, "--output-z value"))
            continue
        parts = piece.split(":")
        if len(parts) != 3:
            raise ValueError(f"--output-z range must be START:STOP:STEP (µm), e.g. 0:10:0.1; got {piece!r}")
        start, stop, step = (
            _um_value(part, f"--output-z {name} in {piece!r}") for part, name in zip(parts, ("START", "STOP", "STEP"))
        )
        if step == 0:
            raise ValueError(f"--output-z STEP must be non-zero; got {piece!r}")
        # The grid point nearest STOP; of two equally near, the one before it.
        count = math.ceil((stop - start) / step - 0.5 - 1e-9)
        if count < 0:
            raise ValueError(
                f"--output-z STEP must go from START towards STOP (use a negative STEP to count down); got {piece!r}"
            )
        if count > 100_000:
            raise ValueError(f"--output-z range {piece!r} gives {count + 1} planes; at most 100001 are accepted")
        values.extend(start + step * np.arange(count + 1))
    output_z = np.round(np.asarray(values, dtype=np.float64), 9) + 0.0  # + 0.0 turns -0.0 into 0.0
    unique, counts = np.unique(output_z, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(
            "--output-z positions must be distinct (one output plane per z); repeated: "
            + ", ".join(f"{z:g}" for z in unique[counts > 1][:5])
        )
    return output_z


def select_input_planes(stack, input_z=None, input_planes=None):
    """Indices of the input planes of ``stack``, in the order given.

    Args:
        stack: the ``Stack`` the planes come from.
        input_z: z positions (µm); each picks the nearest plane, which must lie
            within half the stack's z step (its median spacing) of it.
        input_planes: plane indices (0-based; negative counts from the end).

    Returns:
        list of int.

    Raises:
        ValueError: neither or both given, an index out of range, a z with no
            plane within half a step, or two inputs that pick the same plane.
    """
    if (input_z is None) == (input_planes is None):
        raise ValueError("give the input planes either by z (--input-z) or by index (--input-planes), not both")
    num_planes = stack.shape[0]
    if input_planes is not None:
        indices = []
        for value in input_planes:
            if not -num_planes <= value < num_planes:
                raise ValueError(
                    f"--input-planes index {value} is out of range: the stack has {num_planes} planes "
                    f"(indices 0..{num_planes - 1}, or negative from the end)"
                )
            indices.append(int(value) % num_planes)
        labels = [str(value) for value in input_planes]
    else:
        step = stack.z_step_um
        # One plane has no step: accept only its own position (up to rounding).
        tolerance = 0.5 * step if step is not None else 1e-6
        indices, distance = nearest_planes(stack.z, input_z, tolerance * (1 + 1e-9))
        for z, index, gap in zip(input_z, indices, distance):
            if index < 0:
                raise ValueError(
                    f"--input-z {z:g}: no plane of the stack within half a z step ({tolerance:g} µm); the nearest "
                    f"is {gap:g} µm away. The stack covers z = {stack.z.min():g}..{stack.z.max():g} µm"
                    + (f" in steps of {step:g} µm" if step is not None else "")
                )
        indices = [int(i) for i in indices]
        labels = [f"{z:g}" for z in input_z]
    seen = {}
    for label, index in zip(labels, indices):
        if index in seen:
            option = "--input-planes" if input_planes is not None else "--input-z"
            raise ValueError(
                f"{option} {seen[index]} and {label} both select plane {index} (z = {stack.z[index]:g} µm); "
                "give distinct planes"
            )
        seen[index] = label
    return indices
