"""``Stack``: a fluorescence z-stack with its physical coordinates."""

import copy
import dataclasses
import math

import numpy as np

# dtype kinds a microscope image can have: bool, signed/unsigned integer, float.
_NUMERIC_KINDS = "biuf"


def is_lazy(array):
    """Whether ``array`` is a Dask array (read only when computed)."""
    return hasattr(array, "__dask_graph__")


@dataclasses.dataclass(eq=False, repr=False)
class Stack:
    """A z-stack: planes ``(Z, Y, X)``, the z position of each plane, the pixel size.

    The object every reader returns and every writer takes. It is validated
    when made (``__post_init__``), so code that receives a ``Stack`` can trust
    its shape and coordinates.

    Args:
        data: array ``(Z, Y, X)`` with ``Z, Y, X >= 1``, any numeric dtype
            (bool, integer or float; kept as given, not copied). NaN and inf are
            allowed in float data and stored as they are: a reconstruction or a
            masked volume may hold them. Functions that cannot work with them
            (e.g. ``keras_rmz.data.compute_normalization``) say so when called.
            A Dask array (an OME-Zarr store from ``read_stack``) is kept lazy:
            taking planes (``data[[3, 6]]``, ``select``) reads only those
            planes; ``np.asarray(stack.data)`` reads them all.
        z: z position of each plane in µm, shape ``(Z,)``, stored as float64.
            Finite and unique; not necessarily increasing or evenly spaced
            (Recurrent-MZ takes inputs at any positions, in any order). A scalar
            is accepted for a one-plane stack.
        pixel_um: lateral pixel size in µm (the same in x and y), finite, > 0.
        metadata: free-form dict, e.g. ``{"modality": "widefield",
            "wavelength_um": 0.615, "normalization": {"shift": ..., "scale": ...}}``.
            ``None`` means ``{}``. Stored as a shallow copy. ``write_stack``
            stores it as JSON, so keep it JSON-serialisable if it is to be saved.

    Example:

    ```python
    stack = Stack(np.zeros((5, 64, 64), np.uint16), z=np.arange(5) * 0.2, pixel_um=0.1)
    stack.shape          # (5, 64, 64)
    stack.z_step_um      # 0.2
    stack.select([0, 2, 4]).z   # array([0. , 0.4, 0.8])
    ```
    """

    data: np.ndarray
    z: np.ndarray
    pixel_um: float
    metadata: dict = None

    def __post_init__(self):
        data = self.data if is_lazy(self.data) else np.asarray(self.data)
        if data.ndim != 3 or min(data.shape, default=0) < 1:
            raise ValueError(
                "Stack data must have shape (Z, Y, X) with Z, Y, X >= 1; "
                f"got shape {data.shape}. For one 2D image use image[None]."
            )
        if data.dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(
                "Stack data must be numeric (bool, integer or float); "
                f"got dtype {data.dtype}."
            )
        self.data = data

        try:
            z = np.asarray(self.z, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Stack z must be numbers (µm), one per plane; got {self.z!r}.") from exc
        if z.ndim == 0 and data.shape[0] == 1:
            z = z.reshape(1)
        if z.ndim != 1 or z.shape[0] != data.shape[0]:
            raise ValueError(
                f"Stack z must have shape (Z,) = ({data.shape[0]},), one position in µm "
                f"per plane of data {data.shape}; got shape {z.shape}."
            )
        if not np.all(np.isfinite(z)):
            raise ValueError(f"Stack z must be finite (µm); got {z.tolist()}.")
        if np.unique(z).size != z.size:
            values, counts = np.unique(z, return_counts=True)
            raise ValueError(
                "Stack z positions must be unique (one plane per position); "
                f"repeated: {values[counts > 1].tolist()}."
            )
        self.z = z

        if isinstance(self.pixel_um, (bool, np.bool_)) or not isinstance(
            self.pixel_um, (int, float, np.integer, np.floating)
        ):
            raise TypeError(f"Stack pixel_um must be a number (µm per pixel); got {self.pixel_um!r}.")
        pixel_um = float(self.pixel_um)
        if not (math.isfinite(pixel_um) and pixel_um > 0):
            raise ValueError(f"Stack pixel_um must be finite and > 0 (µm per pixel); got {pixel_um}.")
        self.pixel_um = pixel_um

        if self.metadata is None:
            self.metadata = {}
        elif isinstance(self.metadata, dict):
            self.metadata = dict(self.metadata)
        else:
            raise TypeError(f"Stack metadata must be a dict or None; got {type(self.metadata).__name__}.")

    @property
    def shape(self):
        """``(Z, Y, X)``."""
        return self.data.shape

    @property
    def z_step_um(self):
        """Median spacing of the sorted z positions in µm; ``None`` for one plane.

        For an evenly spaced stack this is the z step; for non-uniform z it is
        a typical spacing (``z`` itself is the truth).
        """
        if self.z.size < 2:
            return None
        return float(np.median(np.diff(np.sort(self.z))))

    def select(self, indices):
        """A new ``Stack`` of the planes ``indices`` (int, slice, list/array of
        ints, or a boolean mask over Z); pixel size and metadata (deep-copied)
        carry over. Plane order follows ``indices``.
        """
        if isinstance(indices, (int, np.integer)):
            indices = [int(indices)]
        data = self.data[indices]
        z = self.z[indices]
        if data.ndim != 3 or data.shape[0] == 0:
            raise ValueError(
                "select needs a non-empty selection of planes (an int, a slice, a list "
                f"of ints or a boolean mask over Z={self.shape[0]}); got {indices!r}."
            )
        return Stack(data, z, self.pixel_um, copy.deepcopy(self.metadata))

    def __repr__(self):
        z = self.z
        return (
            f"Stack(shape={self.shape}, dtype={self.data.dtype}, "
            f"z={z.min():.6g}..{z.max():.6g} µm ({z.size} planes), "
            f"pixel_um={self.pixel_um:.6g}, metadata keys={sorted(self.metadata)})"
        )


def nearest_planes(stack_z, wanted_z, tolerance):
    """Index of the plane of ``stack_z`` nearest each of ``wanted_z``, and the
    distances; -1 where the nearest plane is farther than ``tolerance``."""
    stack_z = np.asarray(stack_z, dtype=np.float64)
    wanted_z = np.asarray(wanted_z, dtype=np.float64)
    distance = np.abs(wanted_z[:, None] - stack_z[None, :])
    index = np.argmin(distance, axis=1)
    nearest = distance[np.arange(wanted_z.size), index]
    return np.where(nearest <= tolerance, index, -1), nearest
