"""Read and write z-stacks as TIFF: OME-TIFF, ImageJ hyperstacks, plain TIFF.

All TIFF encoding and decoding is done by ``tifffile``; this module only
decides which axis is z, which metadata gives the physical sizes, and how a
file is replaced safely.
"""

import json
import math
import pathlib
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import tifffile

from keras_rmz.io.atomic import atomic_write
from keras_rmz.io.stack import Stack
from keras_rmz.io.units import unit_to_um

# OME CommentAnnotation namespace under which ``Stack.metadata`` is stored as JSON.
METADATA_NAMESPACE = "keras_rmz/stack-metadata/json/v1"

# TIFF ResolutionUnit (tifffile.RESUNIT values) → µm per unit.
_UM_PER_RESUNIT = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}
# Plain TIFF resolution tags are trusted only up to this pixel size: coarser
# values are almost always a 72–1200 dpi default written by non-microscopy
# software (tifffile itself writes 1 pixel/inch), not a calibration.
_PLAIN_TIFF_MAX_PIXEL_UM = 20.0
# Axes tifffile uses for a plain sequence of planes: Z (depth), Q (unknown,
# e.g. tifffile's "shaped" files), I (a bare sequence of pages).
_PLANE_AXES = "ZQI"
_CHANNEL_AXES = "CS"
# dtypes OME-TIFF can hold (tifffile's OmeXml); others must be cast by the caller.
_OME_DTYPES = ("bool", "int8", "int16", "int32", "uint8", "uint16", "uint32", "float32", "float64")


def _positive(value):
    """``float(value)`` if it is a finite positive number, else ``None``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _ome_length_um(element, name, default_unit="µm"):
    """A length attribute of an OME element in µm, or ``None``."""
    value = element.get(name)
    if value is None:
        return None
    try:
        value = float(value)
    except ValueError:
        return None
    unit = element.get(name + "Unit", default_unit)
    # PositionZ defaults to the "reference frame" (stage coordinates); stage
    # z readouts are in µm in every writer we know, so read them as µm.
    factor = 1.0 if unit == "reference frame" else unit_to_um(unit)
    if factor is None or not math.isfinite(value):
        return None
    return value * factor


def _local(tag):
    return tag.rsplit("}", 1)[-1]


def _read_ome(xml, series_index, channel, time=None):
    """Pixel size, z step, per-plane z and stored metadata from OME-XML."""
    out = {"pixel_um": None, "pixel_y_um": None, "z_step_um": None, "plane_z_um": {}, "metadata": None}
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return out
    images = [el for el in root if _local(el.tag) == "Image"]
    if not images:
        return out
    image = images[min(series_index, len(images) - 1)]
    pixels = next((el for el in image if _local(el.tag) == "Pixels"), None)
    if pixels is not None:
        out["pixel_um"] = _positive(_ome_length_um(pixels, "PhysicalSizeX"))
        out["pixel_y_um"] = _positive(_ome_length_um(pixels, "PhysicalSizeY"))
        out["z_step_um"] = _positive(_ome_length_um(pixels, "PhysicalSizeZ"))
        # A size that is written but is no length (0, negative, not a number).
        out["invalid"] = {key: f"{name} = {pixels.get(name)!r}" for key, name in
                          (("pixel_um", "PhysicalSizeX"), ("z_step_um", "PhysicalSizeZ"))
                          if pixels.get(name) is not None and out[key] is None}
        try:
            size_c = max(int(pixels.get("SizeC", 1)), 1)
            the_c = 0 if channel is None else int(channel) % size_c
        except (TypeError, ValueError):
            the_c = 0  # a bad channel= is reported when the data is sliced
        for plane in pixels:
            if _local(plane.tag) != "Plane":
                continue
            try:
                c, z, t = (int(plane.get(k, 0)) for k in ("TheC", "TheZ", "TheT"))
            except ValueError:
                continue
            if c != the_c or t != (time or 0):
                continue
            position = _ome_length_um(plane, "PositionZ", default_unit="reference frame")
            if position is not None:
                out["plane_z_um"].setdefault(z, position)
    out["acquisition"] = _read_ome_acquisition(root, image, pixels, channel)
    refs = {el.get("ID") for el in image if _local(el.tag) == "AnnotationRef"}
    for el in root.iter():
        if (
            _local(el.tag) == "CommentAnnotation"
            and el.get("Namespace") == METADATA_NAMESPACE
            and el.get("ID") in refs
        ):
            value = next((v.text for v in el if _local(v.tag) == "Value"), None)
            try:
                metadata = json.loads(value or "")
            except ValueError:
                warnings.warn("ignoring unreadable keras_rmz metadata in the OME-XML", stacklevel=3)
                continue
            if isinstance(metadata, dict):
                out["metadata"] = metadata
    return out


def _read_ome_acquisition(root, image, pixels, channel):
    """What OME-XML records of the acquisition, for ``Stack.metadata``:
    ``modality`` (``Channel@AcquisitionMode``, e.g. "WideField"),
    ``optics.emission_wavelength_um`` (``Channel@EmissionWavelength``) and
    ``optics.na`` (the image's ``Objective@LensNA``); only those present."""
    found, optics = {}, {}
    channels = [el for el in (pixels if pixels is not None else []) if _local(el.tag) == "Channel"]
    if channels:
        try:
            the_c = 0 if channel is None else int(channel) % len(channels)
        except (TypeError, ValueError):
            the_c = 0
        chosen = channels[the_c]
        if chosen.get("AcquisitionMode"):
            found["modality"] = chosen.get("AcquisitionMode")
        wavelength = _positive(_ome_length_um(chosen, "EmissionWavelength", default_unit="nm"))
        if wavelength is not None:
            optics["emission_wavelength_um"] = wavelength
    objectives = {el.get("ID"): el for el in root.iter() if _local(el.tag) == "Objective"}
    settings = next((el for el in image if _local(el.tag) == "ObjectiveSettings"), None)
    objective = objectives.get(settings.get("ID")) if settings is not None else None
    if objective is None and len(objectives) == 1:
        objective = next(iter(objectives.values()))
    if objective is not None and _positive(objective.get("LensNA")) is not None:
        optics["na"] = _positive(objective.get("LensNA"))
    if optics:
        found["optics"] = optics
    return found


def _read_imagej(ij, page):
    """Pixel size and z step of an ImageJ hyperstack (``spacing``, ``unit``,
    resolution tags)."""
    out = {"pixel_um": None, "pixel_y_um": None, "z_step_um": None}
    unit = ij.get("unit")
    resunit = int(page.resolutionunit)
    if resunit in _UM_PER_RESUNIT:  # ImageJ writes INCH / CENTIMETER for those units
        xfactor = yfactor = _UM_PER_RESUNIT[resunit]
    else:  # ResolutionUnit NONE: pixels per ImageJ `unit` ("pixel" = uncalibrated)
        xfactor = unit_to_um(unit)
        yfactor = unit_to_um(ij.get("yunit", unit))
    zfactor = unit_to_um(ij.get("zunit", unit))
    xres, yres = page.resolution
    if xfactor is not None and _positive(xres):
        out["pixel_um"] = _positive(xfactor / xres)
    if yfactor is not None and _positive(yres):
        out["pixel_y_um"] = _positive(yfactor / yres)
    if zfactor is not None and _positive(ij.get("spacing")):
        out["z_step_um"] = _positive(float(ij["spacing"]) * zfactor)
    return out


def _read_resolution_tags(page):
    """Pixel size from a plain TIFF's resolution tags, when they look like a
    calibration (a length unit and a pixel of at most 20 µm)."""
    out = {"pixel_um": None, "pixel_y_um": None}
    factor = _UM_PER_RESUNIT.get(int(page.resolutionunit))
    xres, yres = page.resolution
    if factor is None or not _positive(xres) or not _positive(yres):
        return out
    pixel_um, pixel_y_um = factor / xres, factor / yres
    if pixel_um <= _PLAIN_TIFF_MAX_PIXEL_UM:
        out["pixel_um"], out["pixel_y_um"] = pixel_um, pixel_y_um
    return out


def _to_zyx(data, axes, channel, path, time=None):
    """Reduce tifffile's (unsqueezed) series array to (Z, Y, X) and tell
    whether the file had a plane axis."""
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"{path}: expected an image with Y and X axes; tifffile reports axes {axes!r}.")
    # Drop singleton axes (T, C, S, ... of size 1), keep Y and X.
    keep = [i for i, ax in enumerate(axes) if ax in "YX" or data.shape[i] > 1]
    data = data.reshape([data.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)

    channel_axes = [ax for ax in axes if ax in _CHANNEL_AXES]
    if len(channel_axes) > 1:
        raise ValueError(
            f"{path}: the file has both channel and sample axes ({axes!r}); keras_rmz reads one "
            "channel of a z-stack. Split the channels first."
        )
    if channel_axes:
        ax = axes.index(channel_axes[0])
        count = data.shape[ax]
        if channel is None:
            raise ValueError(
                f"{path} has {count} channels (axes {axes!r}); pass channel= (an int in "
                f"0..{count - 1}) to choose the one to read."
            )
        if not isinstance(channel, (int, np.integer)) or not -count <= channel < count:
            raise ValueError(f"{path}: channel must be an int in 0..{count - 1}; got {channel!r}.")
        data = np.take(data, int(channel), axis=ax)
        axes = axes[:ax] + axes[ax + 1 :]
    elif channel not in (None, 0, -1):
        raise ValueError(f"{path} has one channel; channel must be None or 0, got {channel!r}.")

    others = [ax for ax in axes if ax not in "YX"]
    if "T" in others:
        ax = axes.index("T")
        count = data.shape[ax]
        if time is None:
            raise ValueError(
                f"{path} holds a time series ({count} frames, axes {axes!r}); keras_rmz reads one z-stack: pass "
                f"time= (an int in 0..{count - 1}) to choose the time point, or, if the frames are really "
                "z-slices, relabel them (ImageJ: Image > Properties, swap slices and frames)."
            )
        if not isinstance(time, (int, np.integer)) or isinstance(time, bool) or not 0 <= time < count:
            raise ValueError(f"{path}: time must be an int in 0..{count - 1}; got {time!r}.")
        data = np.take(data, int(time), axis=ax)
        axes = axes[:ax] + axes[ax + 1 :]
        others = [a for a in axes if a not in "YX"]
    elif time not in (None, 0):
        raise ValueError(f"{path} holds one time point; time must be None or 0, got {time!r}.")
    unknown = [ax for ax in others if ax not in _PLANE_AXES]
    if unknown or len(others) > 1:
        raise ValueError(
            f"{path} has axes {axes!r} with shape {data.shape}; keras_rmz reads a (Z, Y, X) "
            "stack (singleton T and C axes are dropped, channels chosen with channel=)."
        )
    # (.., Y, X) order: tifffile always puts Y, X last (S is handled above).
    if axes[-2:] != "YX":
        raise ValueError(f"{path}: unsupported axis order {axes!r}; expected Y and X last.")
    if others:
        return data, True
    return data[None], False


def read_tiff(path, *, z_um=None, z_step_um=None, pixel_um=None, channel=None, time=None):
    """Read a z-stack from an OME-TIFF, an ImageJ hyperstack or a plain TIFF
    (``read_stack`` for TIFF paths).

    Physical sizes come from the file, and explicit arguments override them:

    - OME-TIFF: ``PhysicalSizeX`` (pixel) and ``PhysicalSizeZ`` (z step), with
      their units; per-plane ``Plane/@PositionZ`` when every plane has one (so
      non-uniform z is read exactly); metadata written by ``write_stack``.
    - ImageJ hyperstack: the resolution tags with ImageJ's ``unit`` (micron,
      µm, um, ``\\u00B5m``, nm, mm, ... converted to µm) for the pixel size,
      and ``spacing`` for the z step.
    - Plain TIFF: the resolution tags, if their unit is a length and they give
      a pixel of at most 20 µm (coarser values are print/screen dpi defaults).

    Singleton T and C axes are dropped; a multi-channel file needs
    ``channel=``. z from a z step starts at 0.

    Args: as ``keras_rmz.io.read_stack``; ``z_um`` is required for a 2D
    file that does not record its z position.

    Returns:
        A ``Stack`` with the file's dtype; ``metadata`` is what ``write_stack``
        stored, or ``{}``, completed from an OME-TIFF's acquisition record:
        ``modality`` (``Channel@AcquisitionMode``), ``optics`` with
        ``emission_wavelength_um`` (``Channel@EmissionWavelength``) and ``na``
        (``Objective@LensNA``), where the file has them (``reconstruct``
        compares them with a preset's).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a readable TIFF; more than one channel and no
            ``channel=``; a time series; z spacing or pixel size neither in
            the file nor given.

    Example:

    ```python
    stack = read_tiff("beads.tif")                        # sizes from the file
    stack = read_tiff("raw.tif", z_step_um=0.1, pixel_um=0.1)
    ```
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; read_stack reads one TIFF / OME-TIFF file")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if z_um is not None and z_step_um is not None:
        raise ValueError("pass either z_um= (every plane's position) or z_step_um= (even spacing), not both.")
    if z_step_um is not None and _positive(z_step_um) is None:
        raise ValueError(f"z_step_um must be a finite number > 0 (µm); got {z_step_um!r}.")
    if pixel_um is not None and _positive(pixel_um) is None:
        raise ValueError(f"pixel_um must be a finite number > 0 (µm); got {pixel_um!r}.")

    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable TIFF file ({exc}).") from exc
    with tif:
        if not tif.series:
            raise ValueError(f"{path} holds no image.")
        series = tif.series[0]
        axes = series.get_axes(False)
        data = series.asarray().reshape(series.get_shape(False))
        page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
        info = {"pixel_um": None, "pixel_y_um": None, "z_step_um": None, "plane_z_um": {}, "metadata": None}
        if tif.is_ome and tif.ome_metadata:
            info.update(_read_ome(tif.ome_metadata, 0, channel, time))
        elif tif.is_imagej and tif.imagej_metadata is not None:
            info.update(_read_imagej(tif.imagej_metadata, page))
        if info["pixel_um"] is None:
            info.update(_read_resolution_tags(page))

    data, has_plane_axis = _to_zyx(data, axes, channel, path, time)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    num_planes = data.shape[0]

    # z: explicit z_um > explicit z_step_um > per-plane positions > file z step.
    missing = []
    if z_um is not None:
        z = np.atleast_1d(np.asarray(z_um, dtype=np.float64))
        if z.shape != (num_planes,):
            raise ValueError(f"z_um must have one position per plane, shape ({num_planes},); got shape {z.shape}.")
    elif not has_plane_axis:
        if list(info["plane_z_um"]) != [0]:
            raise ValueError(
                f"{path} is a 2D image; a one-plane stack needs its z position: pass z_um=[z] (µm)."
            )
        z = np.array([info["plane_z_um"][0]], dtype=np.float64)
    elif z_step_um is not None:
        z = np.arange(num_planes, dtype=np.float64) * float(z_step_um)
    elif sorted(info["plane_z_um"]) == list(range(num_planes)):
        z = np.array([info["plane_z_um"][i] for i in range(num_planes)], dtype=np.float64)
    elif info["z_step_um"] is not None:
        z = np.arange(num_planes, dtype=np.float64) * info["z_step_um"]
    else:
        z = None
        missing.append(_missing(info, "z_step_um", "the z spacing", "pass z_step_um= for evenly spaced planes, or "
                                "z_um= for every plane's position"))

    if pixel_um is None:
        pixel_um = info["pixel_um"]
        if pixel_um is None:
            missing.append(_missing(info, "pixel_um", "the pixel size", "pass pixel_um="))
        elif info["pixel_y_um"] is not None and not math.isclose(pixel_um, info["pixel_y_um"], rel_tol=1e-3):
            warnings.warn(
                f"{path} has non-square pixels (x {pixel_um:.6g} µm, y {info['pixel_y_um']:.6g} µm); "
                "using the x size. Pass pixel_um= to choose.",
                stacklevel=2,
            )
    if missing:
        raise ValueError(f"{path} does not record " + " or ".join(missing) + ".")

    metadata = dict(info["metadata"] or {})
    # What the OME-XML records of the acquisition fills what keras_rmz's own
    # metadata (written by write_stack) leaves out.
    acquisition = info.get("acquisition") or {}
    if "modality" in acquisition:
        metadata.setdefault("modality", acquisition["modality"])
    if acquisition.get("optics"):
        optics = metadata.get("optics") if isinstance(metadata.get("optics"), dict) else {}
        metadata["optics"] = {**acquisition["optics"], **optics}
    return Stack(data, z, pixel_um, metadata)


def _missing(info, key, what, remedy):
    """What a file lacks, for the error: absent, or written but invalid."""
    invalid = (info.get("invalid") or {}).get(key)
    if invalid:
        return f"a valid {what[4:]} (it records {invalid}, which is not a length > 0; {remedy})"
    return f"{what} ({remedy})"


def write_tiff(path, stack, metadata_json):
    """Write ``stack`` (a checked ``Stack``, or a ``TimeLapse`` for axes
    ``TZYX``) as OME-TIFF, atomically, with ``metadata_json`` in its
    annotation: ``write_stack`` and ``write_timelapse`` for TIFF paths."""
    data = np.asarray(stack.data)
    time_points = data.shape[0] if data.ndim == 4 else 1
    if data.dtype.name not in _OME_DTYPES:
        raise ValueError(
            f"OME-TIFF cannot hold dtype {data.dtype}; accepted: {', '.join(_OME_DTYPES)}. "
            "Cast first, e.g. data.astype(np.float32)."
        )
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    ome = {
        "axes": "TZYX" if data.ndim == 4 else "ZYX",
        "PhysicalSizeX": stack.pixel_um,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": stack.pixel_um,
        "PhysicalSizeYUnit": "µm",
        # Python floats are written with repr(), which reads back exactly.
        "Plane": {
            "PositionZ": [float(z) for z in stack.z] * time_points,
            "PositionZUnit": ["µm"] * (stack.z.size * time_points),
        },
        "CommentAnnotation": {"Namespace": METADATA_NAMESPACE, "Value": metadata_json},
    }
    steps = np.diff(np.sort(stack.z))
    if steps.size:  # the median spacing, Stack.z_step_um
        ome["PhysicalSizeZ"] = float(np.median(steps))
        ome["PhysicalSizeZUnit"] = "µm"

    with atomic_write(path) as temporary:
        tifffile.imwrite(
            temporary,
            data,
            ome=True,
            photometric="minisblack",  # never guess RGB from a 3- or 4-plane stack
            metadata=ome,
            bigtiff=data.nbytes > 2**32 - 2**25,
        )
    return path
