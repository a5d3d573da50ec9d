"""Time-lapses: z-stacks over time, ``(T, Z, Y, X)``, in OME-TIFF or OME-Zarr.

Recurrent-MZ images 2-3 planes per time point instead of a full stack, so
its users have time-lapses. A ``TimeLapse`` holds the time points read from
one file, all with the same z positions and pixel size; ``stack(i)`` is one
time point as a ``Stack``. OME-Zarr is read lazily (a Dask array, only the
planes used are read); a TIFF time-lapse is read into memory, one time
point after the other (use OME-Zarr for data larger than memory).

Example:

```python
from keras_rmz.io import read_timelapse, write_timelapse

movie = read_timelapse("embryo_timelapse.ome.zarr", times=range(0, 8))
first = movie.stack(0)           # a Stack: (Z, Y, X), z, pixel size
write_timelapse("copy.ome.zarr", movie)
```
"""

import dataclasses

import numpy as np

from keras_rmz.io.omezarr import is_zarr
from keras_rmz.io.stack import Stack, is_lazy


@dataclasses.dataclass(eq=False)
class TimeLapse:
    """Time points of a z-stack: ``data`` ``(T, Z, Y, X)`` (numpy or Dask),
    ``z`` (µm, one per plane, the same at every time point), ``pixel_um``,
    ``times`` (the index of each time point in its file), ``metadata`` and
    ``source`` (the file it was read from, or None)."""

    data: object
    z: np.ndarray
    pixel_um: float
    times: list
    metadata: dict = None
    source: str = None

    def __post_init__(self):
        if not is_lazy(self.data):
            self.data = np.asarray(self.data)
        if self.data.ndim != 4:
            raise ValueError(f"a time-lapse is (T, Z, Y, X); got shape {self.data.shape}")
        self.times = [int(t) for t in self.times]
        if len(self.times) != self.data.shape[0]:
            raise ValueError(f"times lists {len(self.times)} time points for data of {self.data.shape[0]}")
        # The Stack of the first time point checks z, pixel size and metadata.
        first = Stack(self.data[0], self.z, self.pixel_um, self.metadata)
        self.z, self.pixel_um, self.metadata = first.z, first.pixel_um, first.metadata

    @property
    def shape(self):
        return self.data.shape

    def stack(self, index):
        """Time point ``index`` (0-based, in ``times`` order) as a ``Stack``
        (lazy for OME-Zarr); its metadata records ``time_index``."""
        return Stack(self.data[index], self.z, self.pixel_um, {**self.metadata, "time_index": self.times[index]})


def count_time_points(path):
    """Time points in a file: the length of its time axis (1 without one)."""
    if is_zarr(path):
        from keras_rmz.io.omezarr import image_node, require_zarr

        require_zarr()
        node = image_node(path)
        names = [a if isinstance(a, str) else a["name"] for a in node.metadata["axes"]]
        return int(node.data[0].shape[names.index("t")]) if "t" in names else 1
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError) as error:
        raise ValueError(f"{path} is not a readable TIFF file ({error}).") from None
    with tif:
        if not tif.series:
            raise ValueError(f"{path} holds no image.")
        series = tif.series[0]
        axes, shape = series.get_axes(False), series.get_shape(False)
        return int(shape[axes.index("T")]) if "T" in axes else 1


def parse_times(text, count):
    """Time indices from ``"T"``, ``"A:B"`` (B included) or ``"A:B:STEP"``;
    ``None`` is every time point. Raises ValueError naming the valid range."""
    if text is None:
        return list(range(count))
    if isinstance(text, (range, list, tuple)):
        times = [int(t) for t in text]
    else:
        parts = str(text).split(":")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"a time is T or START:STOP[:STEP] (0-based, STOP included); got {text!r}") from None
        if len(numbers) == 1:
            times = numbers
        elif len(numbers) in (2, 3) and (len(numbers) == 2 or numbers[2] > 0):
            times = list(range(numbers[0], numbers[1] + 1, numbers[2] if len(numbers) == 3 else 1))
        else:
            raise ValueError(f"a time is T or START:STOP[:STEP] with STEP > 0; got {text!r}")
    bad = [t for t in times if not 0 <= t < count]
    if not times or bad:
        raise ValueError(f"time points must lie in 0..{count - 1} (the file holds {count}); got {text!r}")
    return times


def read_timelapse(path, *, times=None, channel=None, z_um=None, z_step_um=None, pixel_um=None):
    """Time points ``times`` (indices, a range or ``"A:B"``; default all) of
    a time-lapse file as a ``TimeLapse``. Physical sizes as in
    ``read_stack``. A file without a time axis is one time point."""
    from keras_rmz.io.files import read_stack

    count = count_time_points(path)
    times = parse_times(times, count)
    sizes = {"channel": channel, "z_um": z_um, "z_step_um": z_step_um, "pixel_um": pixel_um}
    first = read_stack(path, time=times[0] if count > 1 else None, **sizes)
    if is_lazy(first.data):
        from keras_rmz.io.omezarr import read_zarr_array

        data = read_zarr_array(path, channel=channel)[times]
    else:
        planes = [first.data] + [read_stack(path, time=t, **sizes).data for t in times[1:]]
        data = np.stack(planes)
    metadata = {key: value for key, value in first.metadata.items() if key != "time_index"}
    return TimeLapse(data, first.z, first.pixel_um, times, metadata, source=str(path))


def write_timelapse(path, timelapse):
    """Write a ``TimeLapse`` as OME-Zarr (``.zarr``: axes ``tzyx``, a
    pyramid) or OME-TIFF (axes ``TZYX``), atomically, with the z of every
    plane, the time indices and the metadata; ``read_timelapse`` reads it
    back."""
    from keras_rmz.io.files import metadata_to_json
    from keras_rmz.io.omezarr import write_zarr
    from keras_rmz.io.tiff import write_tiff

    metadata_json = metadata_to_json({**timelapse.metadata, "source_time_indices": timelapse.times})
    writer = write_zarr if is_zarr(path) else write_tiff
    return writer(path, timelapse, metadata_json)
