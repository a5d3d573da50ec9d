"""Camera model: photon shot noise, read noise, offset, a 12-bit converter."""

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Camera:
    """A scientific camera turning expected photons per pixel into counts.

    counts = offset + gain · Poisson(photons + background) + Normal(0, read_noise),
    rounded and clipped to ``0 .. 2**bit_depth - 1`` (uint16). Quantum
    efficiency is folded into the photon numbers (they are detected photons).
    The defaults are those of a 12-bit sCMOS such as the paper's Leica
    DFC9000 (offset ~100 counts, ~1.6 e⁻ read noise); the paper's confocal
    stacks came from a PMT, which this model treats the same way (its excess
    gain noise is left out).

    Args:
        offset_counts: the camera's bias, added to every pixel (counts).
        gain_counts_per_photon: counts per detected photon.
        read_noise_counts: standard deviation of the Gaussian read noise (counts).
        background_photons: uniform background (autofluorescence, stray light)
            in photons per pixel, added before the shot noise.
        bit_depth: bits of the analogue-to-digital converter (1..16).

    Example:

    ```python
    camera = Camera()
    counts = camera.acquire(photons, np.random.default_rng(0))   # uint16
    mean = camera.expected_counts(photons)                        # float32
    ```
    """

    offset_counts: float = 100.0
    gain_counts_per_photon: float = 1.0
    read_noise_counts: float = 1.6
    background_photons: float = 10.0
    bit_depth: int = 12

    def __post_init__(self):
        for name in ("offset_counts", "gain_counts_per_photon", "read_noise_counts", "background_photons"):
            value = getattr(self, name)
            positive = name == "gain_counts_per_photon"
            if not _finite(value) or value < 0 or (positive and value == 0):
                raise ValueError(
                    f"Camera {name} must be a finite number (gain > 0, others >= 0); got {value!r}"
                )
        bit_depth = self.bit_depth
        if not isinstance(bit_depth, (int, np.integer)) or isinstance(bit_depth, bool) or not 1 <= bit_depth <= 16:
            raise ValueError(f"Camera bit_depth must be an integer in 1..16; got {self.bit_depth!r}")

    @property
    def max_counts(self):
        return 2 ** int(self.bit_depth) - 1

    def expected_counts(self, photons):
        """Noise-free mean counts, float32 (not clipped: the expectation itself)."""
        photons = np.asarray(photons, dtype=np.float32)
        counts = self.offset_counts + self.gain_counts_per_photon * (photons + self.background_photons)
        return counts.astype(np.float32)

    def acquire(self, photons, rng):
        """One noisy exposure: uint16 counts, clipped to the converter's range.

        Args:
            photons: expected detected photons per pixel (>= 0), any shape.
            rng: ``numpy.random.Generator`` for the noise.
        """
        photons = np.asarray(photons, dtype=np.float64)
        if np.any(photons < 0) or not np.all(np.isfinite(photons)):
            raise ValueError("photons must be finite and >= 0 (expected photons per pixel)")
        electrons = rng.poisson(photons + self.background_photons).astype(np.float32)
        counts = self.offset_counts + self.gain_counts_per_photon * electrons
        if self.read_noise_counts > 0:
            counts += rng.normal(0.0, self.read_noise_counts, size=counts.shape).astype(np.float32)
        return np.clip(np.rint(counts), 0, self.max_counts).astype(np.uint16)

    def to_dict(self):
        return {"type": "poisson+gaussian", **dataclasses.asdict(self)}


def _finite(value):
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return number and math.isfinite(value)
