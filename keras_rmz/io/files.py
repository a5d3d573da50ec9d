"""The readers and writers of z-stacks, chosen by the path: OME-Zarr
(``.zarr``, ``.ome.zarr``; `keras_rmz.io.omezarr`) or TIFF (every other
path: OME-TIFF, ImageJ hyperstacks, plain TIFF; `keras_rmz.io.tiff`)."""

import json
import pathlib

import numpy as np

from keras_rmz.io.omezarr import is_zarr, read_zarr, write_zarr
from keras_rmz.io.stack import Stack, is_lazy
from keras_rmz.io.tiff import read_tiff, write_tiff


def read_stack(path, *, z_um=None, z_step_um=None, pixel_um=None, channel=None, time=None):
    """Read a z-stack: an OME-Zarr image (a ``.zarr`` path, read lazily:
    ``Stack.data`` is a Dask array, `keras_rmz.io.omezarr.read_zarr`) or a
    TIFF (`keras_rmz.io.tiff.read_tiff`: OME-TIFF, ImageJ hyperstack, plain
    TIFF).

    Physical sizes come from the file; explicit arguments override them.

    Args:
        path: the file or store.
        z_um: z position of every plane in µm (overrides the file).
        z_step_um: z spacing in µm, > 0; z = arange(Z) · z_step_um (overrides
            the file). Give at most one of ``z_um`` and ``z_step_um``.
        pixel_um: lateral pixel size in µm (overrides the file).
        channel: which channel to read from a multi-channel file.
        time: which time point to read from a time series (0-based).

    Returns:
        A ``Stack``; its ``metadata`` is what ``write_stack`` stored, or
        ``{}`` (for OME-TIFF completed from the acquisition record).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: not a readable file; more than one channel or time point
            and no ``channel=`` / ``time=``; z spacing or pixel size neither
            in the file nor given.

    Example:

    ```python
    stack = read_stack("beads.tif")                        # sizes from the file
    stack = read_stack("raw.tif", z_step_um=0.1, pixel_um=0.1)
    stack = read_stack("embryo.ome.zarr", time=0)          # lazy: planes are read when taken
    ```
    """
    reader = read_zarr if is_zarr(path) else read_tiff
    return reader(path, z_um=z_um, z_step_um=z_step_um, pixel_um=pixel_um, channel=channel, time=time)


def read_stack_with_defaults(path, *, z_step_um=None, pixel_um=None, channel=None, time=None):
    """``read_stack(path)``, with ``z_step_um`` / ``pixel_um`` used only when
    the file does not record them: a file that records its physical sizes is
    read as it is (non-uniform z positions included).

    Raises:
        ValueError: as ``read_stack``; a missing size names the argument
            (callers add their own option's name).

    Example:

    ```python
    stack = read_stack_with_defaults("any.tif", z_step_um=0.2, pixel_um=0.1)
    ```
    """
    attempts = [{}]
    if pixel_um is not None:
        attempts.append({"pixel_um": pixel_um})
    if z_step_um is not None:
        attempts.append({"z_step_um": z_step_um})
    if pixel_um is not None and z_step_um is not None:
        attempts.append({"z_step_um": z_step_um, "pixel_um": pixel_um})
    for fills in attempts:
        try:
            return read_stack(path, channel=channel, time=time, **fills)
        except ValueError as error:
            last_error = error
    raise last_error


def write_stack(path, stack_or_array, *, z_um=None, pixel_um=None, metadata=None):
    """Write a z-stack as OME-TIFF, or as OME-Zarr for a ``.zarr`` path, atomically.

    The file holds the planes in their dtype (axes ``ZYX``), ``PhysicalSizeX``
    / ``Y`` (the pixel size) and ``PhysicalSizeZ`` (the median z spacing) in
    µm, and ``PositionZ`` (µm) on every ``Plane``, so non-uniform z reads back
    exactly. ``metadata`` is stored as JSON in an OME ``CommentAnnotation``
    (namespace ``keras_rmz/stack-metadata/json/v1``) and reads back as the
    same dict (tuples become lists, numpy scalars/arrays become numbers/lists).

    An OME-Zarr store (`keras_rmz.io.omezarr`) holds the same: NGFF axes
    ``zyx`` in micrometers with the scale and the first plane's z as
    translation, a pyramid of halved x and y for viewers, the z of every
    plane and ``metadata`` in its ``keras_rmz`` attributes. A Dask array
    (a lazily read stack) is written chunk by chunk.

    The data goes to a temporary file (or folder) in the destination folder,
    which then replaces ``path``: readers never see a half-written file, and
    if writing fails the temporary is removed and any existing file at
    ``path`` is untouched. Missing parent folders are created.

    Args:
        path: destination, ``*.ome.tif`` (or any TIFF name), or ``*.ome.zarr``.
        stack_or_array: a ``Stack``, or an array ``(Z, Y, X)`` (a 2D array is
            one plane). dtype bool, (u)int8/16/32, float32 or float64 (OME-TIFF;
            OME-Zarr takes any numeric dtype).
        z_um: z of every plane in µm; required with an array, overrides a
            Stack's ``z``.
        pixel_um: pixel size in µm; required with an array, overrides a
            Stack's ``pixel_um``.
        metadata: JSON-serialisable dict; with a Stack it updates (shallowly)
            the Stack's metadata.

    Returns:
        ``pathlib.Path`` of the written file.

    Example:

    ```python
    write_stack("recon.ome.tif", volume, z_um=output_z, pixel_um=stack.pixel_um)
    write_stack("copy.ome.tif", stack)
    write_stack("recon.ome.zarr", volume, z_um=output_z, pixel_um=stack.pixel_um)
    ```
    """
    path = pathlib.Path(path)
    if isinstance(stack_or_array, Stack):
        stack = Stack(
            stack_or_array.data,
            stack_or_array.z if z_um is None else z_um,
            stack_or_array.pixel_um if pixel_um is None else pixel_um,
            {**stack_or_array.metadata, **(metadata or {})},
        )
    else:
        data = stack_or_array if is_lazy(stack_or_array) else np.asarray(stack_or_array)
        if data.ndim == 2:
            data = data[None]
        if z_um is None or pixel_um is None:
            raise ValueError(
                "write_stack of an array needs z_um= (µm, one per plane) and pixel_um= (µm); "
                "or pass a Stack, which carries both."
            )
        stack = Stack(data, z_um, pixel_um, metadata)

    writer = write_zarr if is_zarr(path) else write_tiff
    return writer(path, stack, metadata_to_json(stack.metadata))


def metadata_to_json(metadata):
    """``metadata`` as JSON text, or a ValueError saying what JSON holds."""
    try:
        return json.dumps(metadata, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "Stack metadata must be JSON-serialisable (a dict of str keys with str, int, finite "
            f"float, bool, None, list or dict values; numpy scalars/arrays are converted): {exc}."
        ) from exc


def _json_default(value):
    # numpy scalars and arrays become plain numbers and lists.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
