"""The paper's intensity normalization and the extended-depth-of-field image it uses.

Reference: Huang, L. et al. "Recurrent neural network-based volumetric
fluorescence microscopy", Light: Science & Applications 10, 62 (2021),
Methods, "Sample preparation, image acquisition and dataset preparation".
"""

import dataclasses
import math

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_triangle

from keras_rmz.io.stack import Stack


def _as_volume(volume, name="volume"):
    """(Z, Y, X) float64 from a Stack, an (M, H, W) array or one (H, W) image."""
    if isinstance(volume, Stack):
        volume = volume.data
    volume = np.asarray(volume)
    if volume.ndim == 2:
        volume = volume[None]
    if volume.ndim != 3 or volume.size == 0:
        raise ValueError(
            f"{name} must be a Stack, an array (Z, Y, X) / (M, H, W) or one image (H, W), "
            f"non-empty; got shape {volume.shape}."
        )
    if volume.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers (bool, integer or float); got dtype {volume.dtype}.")
    volume = volume.astype(np.float64, copy=False)
    bad = np.count_nonzero(~np.isfinite(volume))
    if bad:
        raise ValueError(
            f"{name} contains {bad} NaN or inf values; the normalization needs finite "
            "intensities (fill or crop them first)."
        )
    return volume


def extended_depth_of_field(volume, *, sigma=1.0, window_sigma=2.0, return_index=False):
    """Extended-depth-of-field (EDF) image of a stack: each pixel from its sharpest plane.

    A focus-measure EDF, the method of ImageJ's "Extended Depth of Field"
    plugin in its fast ("easy") mode: for every plane a local sharpness map
    is computed, and every output pixel is taken from the plane where that
    map is largest. Sharpness here is the squared Laplacian-of-Gaussian of
    the plane (scale ``sigma`` px, which keeps pixel noise from looking
    sharp), averaged over a Gaussian window (``window_sigma`` px) so the
    choice of plane is made per neighbourhood, not per noisy pixel. Ties
    (e.g. a flat region) go to the first plane. Pixel values are copied, not
    blended, so the EDF keeps the stack's intensity scale.

    Args:
        volume: a ``Stack``, an array ``(Z, Y, X)``, ``M`` input images
            ``(M, H, W)`` (the same thing: planes at some z), or one image
            ``(H, W)``. Finite values.
        sigma: scale in pixels of the Laplacian-of-Gaussian.
        window_sigma: Gaussian window in pixels over which sharpness is averaged.
        return_index: also return the chosen plane per pixel (the height map).

    Returns:
        The EDF image ``(Y, X)`` float64, or ``(edf, index)`` with ``index``
        ``(Y, X)`` int.

    Example:

    ```python
    edf = extended_depth_of_field(stack.data)
    ```

    Reference:
        Forster, B. et al. "Complex wavelets for extended depth-of-field: a
        new method for the fusion of multichannel microscopy images",
        Microscopy Research and Technique 65, 33-42 (2004) (the ImageJ plugin
        the paper used); Pertuz, S. et al. "Analysis of focus measure
        operators for shape-from-focus", Pattern Recognition 46 (2013).
    """
    volume = _as_volume(volume)
    best = np.full(volume.shape[1:], -np.inf)
    index = np.zeros(volume.shape[1:], dtype=np.int64)
    edf = volume[0].copy()
    # One plane at a time: memory stays at a few planes, whatever Z is.
    for k, plane in enumerate(volume):
        log = ndimage.gaussian_laplace(plane, sigma=sigma, mode="reflect")
        focus = ndimage.gaussian_filter(log * log, sigma=window_sigma, mode="reflect")
        sharper = focus > best
        best[sharper] = focus[sharper]
        index[sharper] = k
        edf[sharper] = plane[sharper]
    return (edf, index) if return_index else edf


@dataclasses.dataclass(frozen=True)
class Normalization:
    """The paper's intensity normalization, ``(x - shift) / scale``.

    Made by ``compute_normalization``; stored as a plain dict (``to_dict``)
    in a preset's metadata or in ``Stack.metadata["normalization"]``.

    Note the formula is the paper's, verbatim: the background mean maps to 0,
    but the foreground's 99th percentile maps to ``1 - shift / scale``, not
    exactly 1 (close to 1 when the background is dark relative to the beads).

    Args:
        shift: background level (mean of the EDF's background pixels), finite.
        scale: divisor (99th percentile of the EDF's foreground pixels),
            finite and > 0.

    Example:

    ```python
    norm = compute_normalization(stack)
    x = norm.apply(stack.data)          # float32 for integer input
    raw = norm.invert(x)
    Normalization.from_dict(norm.to_dict()) == norm   # True
    ```

    Reference:
        Huang, L. et al., Light Sci. Appl. 10, 62 (2021), Methods.
    """

    shift: float
    scale: float

    def __post_init__(self):
        for name in ("shift", "scale"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"Normalization {name} must be a number; got {value!r}.")
            object.__setattr__(self, name, float(value))
        if not math.isfinite(self.shift):
            raise ValueError(f"Normalization shift must be finite; got {self.shift}.")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Normalization scale must be finite and > 0; got {self.scale}.")

    @staticmethod
    def _float(x, dtype):
        x = np.asarray(x)
        if dtype is None:
            dtype = x.dtype if x.dtype.kind == "f" else np.float32
        return x.astype(dtype, copy=False)

    def apply(self, x, dtype=None):
        """``(x - shift) / scale``.

        Args:
            x: an array, or a ``Stack`` (then a new Stack is returned with
                ``metadata["normalization"] = self.to_dict()``).
            dtype: output dtype; default: float input keeps its dtype, other
                input becomes float32 (what the models take).
        """
        if isinstance(x, Stack):
            data = self.apply(x.data, dtype)
            return Stack(data, x.z, x.pixel_um, {**x.metadata, "normalization": self.to_dict()})
        x = self._float(x, dtype)
        return ((x - x.dtype.type(self.shift)) / x.dtype.type(self.scale)).astype(x.dtype, copy=False)

    def invert(self, y, dtype=None):
        """``y * scale + shift``: back to the input's intensity units.

        Args:
            y: an array, or a ``Stack`` (its ``metadata["normalization"]`` is
                dropped in the returned Stack).
            dtype: as in ``apply``.
        """
        if isinstance(y, Stack):
            data = self.invert(y.data, dtype)
            metadata = {k: v for k, v in y.metadata.items() if k != "normalization"}
            return Stack(data, y.z, y.pixel_um, metadata)
        y = self._float(y, dtype)
        return (y * y.dtype.type(self.scale) + y.dtype.type(self.shift)).astype(y.dtype, copy=False)

    def to_dict(self):
        """``{"shift": float, "scale": float}`` (JSON-ready)."""
        return {"shift": self.shift, "scale": self.scale}

    @classmethod
    def from_dict(cls, d):
        """The inverse of ``to_dict``; the keys must be exactly shift and scale."""
        if not isinstance(d, dict) or set(d) != {"shift", "scale"}:
            keys = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f'Normalization.from_dict needs a dict with keys "shift" and "scale"; got {keys}.')
        return cls(shift=d["shift"], scale=d["scale"])


def compute_normalization(volume_or_stack, *, percentile=99.0):
    """The paper's normalization of a volume: shift and scale from its EDF image.

    Steps (paper, Methods): (1) the extended-depth-of-field image of the
    volume (``extended_depth_of_field``); (2) its triangle threshold
    (``skimage.filters.threshold_triangle``): pixels above it are foreground,
    the rest background; (3) shift = mean of the background pixels of the EDF,
    scale = 99th percentile of its foreground pixels. Normalize with
    ``Normalization.apply``: ``(x - shift) / scale``.

    Args:
        volume_or_stack: a ``Stack``, a volume ``(Z, Y, X)``, ``M`` input
            images ``(M, H, W)`` (treated the same way) or one image
            ``(H, W)``; finite values.
        percentile: of the foreground, for the scale (the paper: 99).

    Returns:
        ``Normalization(shift, scale)``.

    Raises:
        ValueError: non-finite values; a constant EDF image (e.g. all zeros)
            or one with no foreground or background; scale <= 0.

    Example:

    ```python
    norm = compute_normalization(stack)
    normalized = norm.apply(stack)      # records metadata["normalization"]
    ```

    Reference:
        Huang, L. et al., Light Sci. Appl. 10, 62 (2021), Methods; Zack, G. W.
        et al., "Automatic measurement of sister chromatid exchange
        frequency", J. Histochem. Cytochem. 25, 741 (1977) (triangle method).
    """
    if not 0 < float(percentile) <= 100:
        raise ValueError(f"percentile must be in (0, 100]; got {percentile!r}.")
    edf = extended_depth_of_field(_as_volume(volume_or_stack, "volume_or_stack"))
    low, high = edf.min(), edf.max()
    if low == high:
        raise ValueError(
            f"the EDF image is constant (every pixel = {low:g}); the normalization needs "
            "background and foreground (e.g. beads above a background). Is the volume empty?"
        )
    threshold = threshold_triangle(edf)
    foreground = edf > threshold
    background = ~foreground
    if not foreground.any() or not background.any():
        raise ValueError(
            f"the triangle threshold ({threshold:g}) of the EDF image leaves no "
            f"{'foreground' if not foreground.any() else 'background'} pixels; cannot normalize."
        )
    shift = float(edf[background].mean())
    scale = float(np.percentile(edf[foreground], percentile))
    if not scale > 0:
        raise ValueError(
            f"the {percentile:g}th percentile of the foreground is {scale:g} <= 0; the paper's "
            "normalization divides by it, so it needs positive intensities (e.g. raw counts)."
        )
    return Normalization(shift=shift, scale=scale)
