"""The napari widget's work on plain numpy data: no Qt, no viewer.

``reconstruct_layer`` takes an image layer's data and physical scale, the
input planes, a preset and the output z range, and returns napari's
``LayerDataTuple``: the volume, with the scale and translation that put it
where it belongs in µm. ``reconstruction_steps`` is the same as a generator
that yields progress, for the widget's worker thread.
"""

import numpy as np

from keras_rmz.cli.arguments import parse_output_z

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
# Output planes per model call between two progress updates.
PLANES_PER_STEP = 8
_MODELS = {}


def plane_z(num_planes, z_scale_um, z_origin_um=0.0):
    """z (µm) of each plane of a layer: ``origin + index · scale``."""
    return float(z_origin_um) + float(z_scale_um) * np.arange(int(num_planes))


def parse_planes(text, num_planes):
    """Plane indices from ``"20, 50, 80"`` (0-based, negative from the end)."""
    pieces = [piece for piece in str(text).replace(",", " ").split() if piece]
    if not pieces:
        raise ValueError("give the input planes: their indices in the layer, e.g. 20, 50, 80")
    indices = []
    for piece in pieces:
        try:
            value = int(piece)
        except ValueError:
            raise ValueError(f"input planes are integer indices, e.g. 20, 50, 80; got {piece!r}") from None
        if not -num_planes <= value < num_planes:
            raise ValueError(f"input plane {value} is out of range: the layer has {num_planes} planes "
                             f"(0..{num_planes - 1})")
        indices.append(value % num_planes)
    if len(set(indices)) != len(indices):
        raise ValueError(f"the input planes must be distinct; got {pieces}")
    return indices


def _model(preset):
    from keras_rmz.presets import load_preset

    key = str(preset)
    if key not in _MODELS:
        _MODELS.clear()  # one model held at a time
        _MODELS[key] = load_preset(preset)
    return _MODELS[key]


def _check(data, scale, input_planes, output_z, precision):
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"the layer must be a z-stack (Z, Y, X) or a few planes (M, Y, X); got shape {data.shape}")
    scale = [float(s) for s in scale][-3:]
    if len(scale) != 3 or not all(np.isfinite(scale)) or min(scale) <= 0:
        raise ValueError(f"the layer's scale must be three positive sizes (z, y, x) in µm; got {scale}")
    if abs(scale[1] - scale[2]) > 1e-6 * scale[2]:
        raise ValueError(f"the layer's pixels must be square; got y {scale[1]:g} µm and x {scale[2]:g} µm")
    planes = parse_planes(input_planes, data.shape[0]) if isinstance(input_planes, str) else [
        int(i) % data.shape[0] for i in input_planes]
    output = parse_output_z(output_z) if isinstance(output_z, str) else np.asarray(output_z, dtype=np.float64)
    if output.size > 1:
        steps = np.diff(output)
        if not np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9) or steps[0] <= 0:
            raise ValueError("the output z must rise in equal steps (a layer has one z scale), e.g. 0:10:0.2")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return data, scale, planes, output


def reconstruction_steps(data, scale, input_planes, preset, output_z, *, translate=(0.0, 0.0, 0.0),
                         input_z=None, precision="auto", name=None):
    """Generator: yields ``(planes done, planes in all)`` after each model
    call, and returns the ``LayerDataTuple`` (see `reconstruct_layer`)."""
    data, scale, planes, output = _check(data, scale, input_planes, output_z, precision)
    translate = [float(t) for t in translate][-3:]
    z = plane_z(data.shape[0], scale[0], translate[0])
    input_z = z[planes] if input_z is None else np.asarray(input_z, dtype=np.float64)
    if input_z.shape != (len(planes),):
        raise ValueError(f"give one z per input plane: {len(planes)} planes, {input_z.size} z values")
    model = _model(preset)
    images = data[planes].astype(np.float32)
    parts = []
    yield 0, output.size
    for start in range(0, output.size, PLANES_PER_STEP):
        chunk = output[start:start + PLANES_PER_STEP]
        parts.append(model.reconstruct(images, input_z, chunk, pixel_um=scale[2], precision=precision,
                                       verbose=False))
        yield start + chunk.size, output.size
    volume = np.concatenate(parts).astype(np.float32)
    z_step = float(output[1] - output[0]) if output.size > 1 else scale[0]
    label = name or f"Recurrent-MZ ({_short_name(preset)})"
    metadata = {"keras_rmz": {"preset": str(preset), "input_planes": planes, "input_z_um": input_z.tolist(),
                              "output_z_um": output.tolist(), "pixel_um": scale[2], "precision": precision}}
    return volume, {"name": label, "scale": (z_step, scale[1], scale[2]),
                    "translate": (float(output[0]), translate[1], translate[2]), "units": "micrometer",
                    "metadata": metadata}, "image"


def _short_name(preset):
    """A preset's short name: a built-in name, or a folder's last part."""
    return str(preset).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


def reconstruct_layer(data, scale, input_planes, preset, output_z, **kwargs):
    """The volume at ``output_z`` from planes of a layer, as a napari layer.

    Args:
        data: the layer's data, (Z, Y, X): a z-stack, or just the M planes.
        scale: the layer's scale (z, y, x) in µm (y and x: the pixel size).
        input_planes: indices of the input planes (``[20, 50, 80]`` or
            ``"20, 50, 80"``), in acquisition order.
        preset: a built-in name, a preset folder or ``hf://`` handle.
        output_z: z of the output planes in µm, rising in equal steps
            (``"0:10:0.2"`` as on the command line, or numbers).
        **kwargs: ``translate`` (the layer's, µm), ``input_z`` (instead of
            the planes' own z), ``precision``, ``name``.

    Returns:
        ``(volume (K, Y, X) float32, {"name", "scale", "translate",
        "metadata"}, "image")``: napari's ``LayerDataTuple``.
    """
    steps = reconstruction_steps(data, scale, input_planes, preset, output_z, **kwargs)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
