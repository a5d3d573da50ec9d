"""Read and write z-stacks as OME-Zarr (NGFF), with ``ome-zarr`` and ``zarr``.

The ``ome-zarr`` package parses and writes the NGFF metadata (axes, units,
scale and translation of each pyramid level) and computes the pyramid;
``zarr`` stores the chunks; Dask holds what is read. This module only maps
NGFF's axes onto a ``Stack`` and keeps what NGFF cannot say in its own
attributes, ``keras_rmz`` beside NGFF's ``ome`` (or ``multiscales``):

- ``z_um``: the z of every plane in µm. NGFF's scale and translation give
  evenly spaced planes only; a stack of planes at any positions (the inputs
  of Recurrent-MZ) round-trips through this list.
- ``metadata``: ``Stack.metadata`` as JSON values.

Reading is lazy: ``Stack.data`` is a Dask array of the full-resolution
level, and only the planes a caller takes are read. Writing stores planes
as chunks of one plane and at most 512 × 512 pixels, and a pyramid halving
x and y while the smaller side stays at least 64 pixels, so viewers
(napari with napari-ome-zarr, the OME-NGFF validator, Fiji's MoBIE) open a
large volume at once. Needs ``pip install 'keras-rmz[zarr]'``.
"""

import importlib.util
import json
import math
import pathlib

import numpy as np

from keras_rmz.io.atomic import atomic_directory
from keras_rmz.io.stack import Stack
from keras_rmz.io.units import unit_to_um

# Our attributes in the image group, beside NGFF's.
ATTRIBUTE = "keras_rmz"
# x and y are halved per pyramid level while the smaller side stays at least this.
PYRAMID_MIN_SIZE = 64
PYRAMID_MAX_LEVELS = 6
CHUNK_PIXELS = 512
_AXES = "tczyx"


def is_zarr(path):
    """Whether ``path`` names a Zarr store (``.zarr``, ``.ome.zarr``)."""
    return str(path).rstrip("/\\").lower().endswith(".zarr")


def require_zarr():
    """Raises an ``ImportError`` that names the extra when the OME-Zarr
    packages are not installed."""
    missing = [name for name in ("zarr", "ome_zarr", "dask") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"reading and writing OME-Zarr needs the zarr extra ({', '.join(missing)} not installed): "
            "pip install 'keras-rmz[zarr]'")


def image_node(path):
    """The first ome-zarr ``Node`` of ``path`` that holds an image."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    location = parse_url(str(path), mode="r")
    if location is None:
        raise ValueError(f"{path} is not a Zarr store that ome-zarr can open")
    for node in Reader(location)():
        if node.load(Multiscales) is not None and node.data:
            return node
    raise ValueError(f"{path} holds no OME-Zarr image (no NGFF 'multiscales' metadata)")


def _select(data, names, axis, index, count_word, argument, path):
    """Takes ``index`` along ``axis`` (a name in ``names``) or explains."""
    if axis not in names:
        if index not in (None, 0):
            raise ValueError(f"{path} has no {axis!r} axis (axes {''.join(names)!r}); {argument} must be None or 0, "
                             f"got {index!r}")
        return data, names
    position = names.index(axis)
    count = data.shape[position]
    if index is None and count == 1:
        index = 0
    if index is None:
        raise ValueError(f"{path} holds {count} {count_word} (axes {''.join(names)!r}); pass {argument}= (an int in "
                         f"0..{count - 1}) to choose one")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < count:
        raise ValueError(f"{path}: {argument} must be an int in 0..{count - 1}; got {index!r}")
    taken = data[(slice(None),) * position + (int(index),)]
    return taken, names[:position] + names[position + 1:]


def _open(path):
    """(full-resolution Dask array, axis names, size and offset of each
    axis in µm or None, our attributes) of the image at ``path``."""
    require_zarr()
    import zarr

    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such OME-Zarr store: {path}")
    node = image_node(path)
    names = [axis if isinstance(axis, str) else axis["name"] for axis in node.metadata["axes"]]
    units = [None if isinstance(axis, str) else axis.get("unit") for axis in node.metadata["axes"]]
    unknown = [name for name in names if name not in _AXES]
    if unknown or "y" not in names or "x" not in names:
        raise ValueError(f"{path} has axes {names}; keras_rmz reads images with axes among t, c, z, y, x "
                         "(y and x required)")
    scale, translation = [1.0] * len(names), [0.0] * len(names)
    for transform in (node.metadata.get("coordinateTransformations") or [[]])[0] or []:
        if transform.get("type") == "scale" and "scale" in transform:
            scale = [float(v) for v in transform["scale"]]
        elif transform.get("type") == "translation" and "translation" in transform:
            translation = [float(v) for v in transform["translation"]]
    um = {name: (unit_to_um(unit) if unit else None) for name, unit in zip(names, units)}
    sizes = {name: (s * um[name] if um[name] else None) for name, s in zip(names, scale)}
    offsets = {name: (t * um[name] if um[name] else None) for name, t in zip(names, translation)}
    attributes = zarr.open_group(str(path), mode="r").attrs.asdict().get(ATTRIBUTE) or {}
    return node.data[0], names, sizes, offsets, attributes


def read_zarr_array(path, *, channel=None):
    """The full-resolution image at ``path`` as a Dask array ``(T, Z, Y, X)``
    (a missing t or z axis is one of length 1), the channel chosen."""
    data, names, _, _, _ = _open(path)
    data, names = _select(data, names, "c", channel, "channels", "channel", path)
    for position, axis in enumerate("tz"):
        if axis not in names:
            data = data[(slice(None),) * position + (None,)]
            names = names[:position] + [axis] + names[position:]
    return data


def read_zarr(path, *, z_um=None, z_step_um=None, pixel_um=None, channel=None, time=None):
    """Read a z-stack from an OME-Zarr image, lazily (see the module).

    Physical sizes come from the full-resolution level's scale and
    translation with each axis's unit, the z of every plane from our own
    ``z_um`` attribute when present; explicit arguments override them, as in
    ``read_stack``. An axis without a length unit gives no size (NGFF's
    default scale of 1 is not a calibration). A ``t`` or ``c`` axis longer
    than one needs ``time=`` / ``channel=``.

    Returns:
        ``Stack`` whose ``data`` is a Dask array ``(Z, Y, X)``.
    """
    data, names, sizes, offsets, attributes = _open(path)
    data, names = _select(data, names, "t", time, "time points", "time", path)
    data, names = _select(data, names, "c", channel, "channels", "channel", path)
    if "z" not in names:
        data = data[None]
    planes = data.shape[0]

    if pixel_um is None:
        pixel_um = sizes.get("x")
        if pixel_um is None:
            raise ValueError(f"{path} does not record the pixel size (its x axis has no length unit); pass "
                             "pixel_um= (µm)")
        if sizes.get("y") is not None and not math.isclose(sizes["y"], pixel_um, rel_tol=1e-3):
            raise ValueError(f"{path} has pixels of {sizes['y']:g} × {pixel_um:g} µm (y × x); keras_rmz needs square "
                             "pixels: resample the image or pass pixel_um=")
    if z_um is None and z_step_um is None:
        recorded = attributes.get("z_um")
        if isinstance(recorded, list) and len(recorded) == planes:
            z_um = recorded
        elif planes == 1:
            z_um = [offsets.get("z") or 0.0]
        elif sizes.get("z") is None:
            raise ValueError(f"{path} does not record the z step (its z axis has no length unit); pass z_step_um= "
                             "(µm) or z_um= (µm, one per plane)")
        else:
            z_um = (offsets.get("z") or 0.0) + sizes["z"] * np.arange(planes)
    elif z_um is None:
        z_um = np.arange(planes) * float(z_step_um)
    metadata = attributes.get("metadata") if isinstance(attributes.get("metadata"), dict) else {}
    return Stack(data, z_um, pixel_um, metadata)


def pyramid_factors(shape):
    """Downsampling factors (2, 4, ...) of x and y for the pyramid of an
    image of ``shape`` (``(..., Y, X)``)."""
    smallest = min(shape[-2:])
    factors, factor = [], 2
    while smallest // factor >= PYRAMID_MIN_SIZE and len(factors) < PYRAMID_MAX_LEVELS - 1:
        factors.append(factor)
        factor *= 2
    return tuple(factors)


def write_zarr(path, stack, metadata_json):
    """Write ``stack`` (a checked ``Stack``, or a ``TimeLapse`` for axes
    ``tzyx``; its data numpy or Dask) as an OME-Zarr image with a pyramid,
    atomically (a folder beside ``path`` takes its place when complete)."""
    require_zarr()
    import zarr

    path = pathlib.Path(path)
    with atomic_directory(path) as temporary:
        root = zarr.open_group(str(temporary), mode="w")
        write_image_levels(root, stack.data, stack.z, stack.pixel_um, name=path.name.split(".")[0])
        root.attrs[ATTRIBUTE] = {"z_um": [float(z) for z in stack.z], "metadata": json.loads(metadata_json)}
    return path


def write_image_levels(root, data, z_um, pixel_um, name="image"):
    """The NGFF image of ``data`` (``(Z, Y, X)`` or ``(T, Z, Y, X)``, numpy
    or Dask) in group ``root``, with ome-zarr: axes, units, scale, the first
    plane's z as translation, the pyramid and chunks of one plane."""
    import dask.array as da
    from ome_zarr.writer import write_image

    data = data if isinstance(data, da.Array) else np.ascontiguousarray(data)
    axes = "zyx" if data.ndim == 3 else "tzyx"
    z_um = np.asarray(z_um, np.float64)
    steps = np.diff(np.sort(z_um))
    scale = {"z": float(np.median(steps)) if steps.size else 1.0, "y": pixel_um, "x": pixel_um}
    units = {axis: "micrometer" for axis in "zyx"}
    if data.ndim == 4:
        scale["t"] = 1.0
    chunks = (1,) * (data.ndim - 2) + (min(CHUNK_PIXELS, data.shape[-2]), min(CHUNK_PIXELS, data.shape[-1]))
    write_image(data, root, scale_factors=pyramid_factors(data.shape), axes=axes, scale=scale, axes_units=units,
                storage_options={"chunks": chunks}, name=name)
    # NGFF's translation places the first plane at its z (ome-zarr writes 0).
    attributes = root.attrs.asdict()
    key = "ome" if "ome" in attributes else "multiscales"
    ngff = attributes[key]
    multiscales = ngff["multiscales"] if key == "ome" else ngff
    for dataset in multiscales[0]["datasets"]:
        for transform in dataset["coordinateTransformations"]:
            if transform["type"] == "translation":
                transform["translation"][axes.index("z")] = float(z_um.min())
    root.attrs[key] = ngff
