"""What a preset was trained for, against what it is asked to do.

A preset's ``metadata.json`` records the pixel size, the input spacing, the
number of inputs M, the range of ``output_z - input_z`` and the optics of
its training stacks. ``reconstruct`` (and ``keras-rmz reconstruct``) read it
before any compute:

- the input pixel size must be known when the preset records one (the input
  is resampled to the preset's pixel size when they differ by more than
  ``PIXEL_SIZE_TOLERANCE``), else ``ValueError``;
- every ``output_z - input_z`` must lie in the trained ``output_range_um``
  widened by ``OUTPUT_RANGE_MARGIN`` of its width on each side, else
  ``ValueError`` (``extrapolate=True`` turns it into a warning);
- everything else that differs (input spacing outside
  ``[1 / INPUT_SPACING_FACTOR, INPUT_SPACING_FACTOR]`` x the trained one,
  another M, another input modality, emission wavelength or NA where a
  ``Stack``'s metadata records them) gives ONE ``OutOfDistributionWarning``
  that lists every mismatch and how to fine-tune.

This module needs numpy only (no deep-learning backend), so the command
line checks a request before it loads a model.
"""

import math
import re
import sys

import numpy as np

# Input pixel sizes within 2 % of the preset's are used as they are.
PIXEL_SIZE_TOLERANCE = 0.02
# output_z - input_z may exceed the trained range by 10 % of its width on each
# side ([-7.5, 7.5] µm accepts [-9, 9] µm).
OUTPUT_RANGE_MARGIN = 0.10
# Input spacing (each gap between neighbouring input planes) outside
# [0.5, 2] x the trained input_spacing_um is a mismatch.
INPUT_SPACING_FACTOR = 2.0
# Emission wavelengths more than 5 % apart (31 nm at 615 nm) are a mismatch.
WAVELENGTH_TOLERANCE = 0.05
# Numerical apertures more than 0.05 apart are a mismatch.
NA_TOLERANCE = 0.05
# Rounding slack (µm) of the range check, so that a plane on the edge passes.
_RANGE_SLACK_UM = 1e-6

FINETUNE_HINT = (
    "fine-tune on your own stack: `keras-rmz finetune STACK --preset {preset} -o my_preset/` (docs/finetuning.md)"
)

# How the options are spelled in Python and on the command line.
PYTHON_OPTIONS = {"pixel_um": "pixel_um=", "extrapolate": "extrapolate=True"}
CLI_OPTIONS = {"pixel_um": "--pixel-um", "extrapolate": "--extrapolate"}


class OutOfDistributionWarning(UserWarning):
    """A preset is asked to reconstruct data unlike its training data
    (another input spacing, number of inputs, modality, wavelength or NA, or
    output planes beyond the trained range with ``extrapolate=True``).

    The message lists every mismatch and how to fine-tune the preset on your
    own stack. Silence it with
    ``warnings.simplefilter("ignore", keras_rmz.OutOfDistributionWarning)``,
    or make it an error with ``"error"`` instead of ``"ignore"``.
    """


def _number(value):
    """``float(value)`` when it is a finite number, else None."""
    if isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def preset_pixel_um(metadata):
    """The preset's pixel size (µm), or None when it records none."""
    value = _number((metadata or {}).get("pixel_um"))
    return value if value is not None and value > 0 else None


def needs_resampling(pixel_um, preset_pixel):
    """True when ``pixel_um`` differs from ``preset_pixel`` by more than
    ``PIXEL_SIZE_TOLERANCE`` (relative)."""
    if pixel_um is None or preset_pixel is None:
        return False
    return abs(float(pixel_um) / float(preset_pixel) - 1.0) > PIXEL_SIZE_TOLERANCE


def resampled_shape(shape, pixel_um, preset_pixel):
    """(h, w) of planes of ``shape`` (H, W) at ``pixel_um`` resampled to
    ``preset_pixel``: the same field of view in µm, rounded to whole pixels."""
    factor = float(pixel_um) / float(preset_pixel)
    return tuple(max(1, int(round(n * factor))) for n in shape)


def modality_key(text):
    """The imaging modality a text names, for comparison: "widefield",
    "confocal", or the text lower-cased without punctuation. Reads the input
    side of a preset's ``"widefield -> confocal"`` and OME's
    ``AcquisitionMode`` values (``WideField``, ``SpinningDiskConfocal``...)."""
    if not isinstance(text, str) or not text.strip():
        return None
    text = text.split("->", 1)[0]
    text = re.sub(r"\(.*?\)", "", text)
    key = re.sub(r"[^a-z0-9]", "", text.lower())
    if "widefield" in key or key == "epifluorescence":
        return "widefield"
    if "confocal" in key:
        return "confocal"
    return key or None


def _optics(metadata, *names, ranges=False):
    """The first finite number found under ``names`` in ``metadata['optics']``
    or ``metadata`` itself; with ``ranges``, a preset trained on a range
    (``[low, high]``, a domain-randomized preset) gives ``(low, high)`` and a
    single value ``(value, value)``."""
    metadata = metadata or {}
    optics = metadata.get("optics")
    for source in (optics if isinstance(optics, dict) else {}, metadata):
        for name in names:
            value = source.get(name)
            if ranges and isinstance(value, (list, tuple)) and len(value) == 2:
                low, high = (_number(v) for v in value)
                if low is not None and high is not None and 0 < low <= high:
                    return (low, high)
            value = _number(value)
            if value is not None and value > 0:
                return (value, value) if ranges else value
    return None


def emission_wavelength_um(metadata, ranges=False):
    """The emission wavelength (µm) a preset's or a stack's metadata records
    (with ``ranges``: the trained ``(low, high)``)."""
    return _optics(metadata, "emission_wavelength_um", "wavelength_um", ranges=ranges)


def numerical_aperture(metadata, ranges=False):
    """The numerical aperture a preset's or a stack's metadata records (with
    ``ranges``: the trained ``(low, high)``)."""
    return _optics(metadata, "na", "numerical_aperture", ranges=ranges)


def _trained(low, high, unit_format):
    return unit_format(low) if low == high else f"{unit_format(low)} to {unit_format(high)}"


def _format_z(values):
    values = [f"{v:g}" for v in values]
    return ", ".join(values[:6]) + (f", ... ({len(values)} planes)" if len(values) > 6 else "")


def check_request(
    metadata,
    *,
    input_z,
    output_z,
    pixel_um=None,
    stack_metadata=None,
    extrapolate=False,
    options=None,
):
    """Checks a reconstruction request against a preset's metadata, before
    any compute.

    Args:
        metadata: the preset's metadata (``model.preset_metadata``), or None
            (nothing is checked).
        input_z: (M,) z of the input planes (µm).
        output_z: (K,) z of the planes to infer (µm).
        pixel_um: the input's pixel size (µm), or None when unknown.
        stack_metadata: the input ``Stack``'s metadata (modality, optics),
            or None.
        extrapolate: bool; output planes beyond the trained range are
            reported as a mismatch instead of an error.
        options: how to name the options in messages: ``PYTHON_OPTIONS``
            (default) or ``CLI_OPTIONS``.

    Returns:
        list of str: the mismatches to warn about (empty when none); see
        ``warning_message``.

    Raises:
        ValueError: the preset records a pixel size and ``pixel_um`` is
            None; an ``output_z - input_z`` beyond the trained range (widened
            by ``OUTPUT_RANGE_MARGIN``) without ``extrapolate``.
    """
    if not metadata:
        return []
    options = options or PYTHON_OPTIONS
    input_z = np.asarray(input_z, dtype=np.float64).reshape(-1)
    output_z = np.asarray(output_z, dtype=np.float64).reshape(-1)
    stack_metadata = stack_metadata or {}
    mismatches = []

    preset_pixel = preset_pixel_um(metadata)
    if preset_pixel is not None and pixel_um is None:
        raise ValueError(
            f"the input's pixel size is unknown: this preset was trained on {preset_pixel:g} µm pixels and "
            f"resamples other pixel sizes to them; pass {options['pixel_um']} (µm per pixel of the input planes)"
            + (", or a keras_rmz.io.Stack, which carries it" if options is PYTHON_OPTIONS else "")
        )

    trained_range = metadata.get("output_range_um")
    if isinstance(trained_range, (list, tuple)) and len(trained_range) == 2:
        low, high = (_number(v) for v in trained_range)
        if low is not None and high is not None and high >= low:
            margin = OUTPUT_RANGE_MARGIN * (high - low)
            allowed = (low - margin, high + margin)
            offsets = output_z[:, None] - input_z[None, :]
            beyond = np.maximum(allowed[0] - offsets.min(axis=1), offsets.max(axis=1) - allowed[1])
            outside = beyond > _RANGE_SLACK_UM
            if np.any(outside):
                distance = float(beyond.max())
                text = (
                    f"{int(outside.sum())} output plane(s) (output_z = {_format_z(output_z[outside])} µm) lie up "
                    f"to {distance:.3g} µm outside the trained range of output_z - input_z: the preset was "
                    f"trained on [{low:g}, {high:g}] µm, accepted with a {OUTPUT_RANGE_MARGIN:.0%} margin as "
                    f"[{allowed[0]:g}, {allowed[1]:g}] µm; here output_z - input_z reaches "
                    f"{offsets.min():g}..{offsets.max():g} µm"
                )
                if not extrapolate:
                    raise ValueError(
                        f"{text}. Keep output_z within {allowed[0]:g}..{allowed[1]:g} µm of every input plane, "
                        f"or pass {options['extrapolate']} to extrapolate anyway (with a warning)"
                    )
                mismatches.append(f"extrapolation ({options['extrapolate']}): {text}")

    trained_spacing = _number(metadata.get("input_spacing_um"))
    gaps = np.diff(np.unique(input_z))
    if trained_spacing is not None and trained_spacing > 0 and gaps.size:
        low, high = trained_spacing / INPUT_SPACING_FACTOR, trained_spacing * INPUT_SPACING_FACTOR
        if gaps.min() < low or gaps.max() > high:
            mismatches.append(
                f"input spacing: the input planes are {_format_z(gaps)} µm apart; the preset was trained with "
                f"{trained_spacing:g} µm (accepted without warning: {low:g} to {high:g} µm)"
            )

    trained_m = metadata.get("num_inputs")
    if isinstance(trained_m, int) and not isinstance(trained_m, bool) and trained_m != input_z.size:
        mismatches.append(f"number of inputs: M = {input_z.size}; the preset was trained with M = {trained_m}")

    preset_modality, modality = metadata.get("modality"), stack_metadata.get("modality")
    trained_key, key = modality_key(preset_modality), modality_key(modality)
    if trained_key and key and trained_key != key:
        mismatches.append(
            f"modality: the stack is {modality!r}; the preset was trained on {preset_modality!r} "
            f"(input -> target)"
        )

    trained, wavelength = emission_wavelength_um(metadata, ranges=True), emission_wavelength_um(stack_metadata)
    if trained and wavelength and not (
            trained[0] * (1 - WAVELENGTH_TOLERANCE) <= wavelength <= trained[1] * (1 + WAVELENGTH_TOLERANCE)):
        mismatches.append(
            f"emission wavelength: {wavelength * 1000:.0f} nm; the preset was trained at "
            f"{_trained(*trained, lambda v: f'{v * 1000:.0f} nm')} (accepted: within {WAVELENGTH_TOLERANCE:.0%})"
        )

    trained, na = numerical_aperture(metadata, ranges=True), numerical_aperture(stack_metadata)
    if trained and na and not trained[0] - NA_TOLERANCE <= na <= trained[1] + NA_TOLERANCE:
        mismatches.append(
            f"numerical aperture: NA {na:g}; the preset was trained at NA {_trained(*trained, lambda v: f'{v:g}')} "
            f"(accepted: within {NA_TOLERANCE:g})"
        )
    return mismatches


def warning_message(mismatches, preset=None):
    """The text of the one ``OutOfDistributionWarning`` for ``mismatches``."""
    name = preset or "NAME"
    lines = [f"the input differs from what preset {preset!r} was trained on:" if preset
             else "the input differs from what this preset was trained on:"]
    lines += [f"  - {item}" for item in mismatches]
    lines.append("The reconstruction may be unreliable. To adapt the model, " + FINETUNE_HINT.format(preset=name) + ".")
    return "\n".join(lines)


def external_stacklevel():
    """``stacklevel`` for ``warnings.warn`` called by the caller of this
    function that points at the first frame outside keras_rmz (the user's
    line), however deep inside keras_rmz the warning is raised."""
    frame = sys._getframe(2)
    level = 2
    while frame is not None and frame.f_globals.get("__name__", "").split(".", 1)[0] == "keras_rmz":
        frame = frame.f_back
        level += 1
    return level
