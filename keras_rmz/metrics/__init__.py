"""Evaluation metrics of the paper: on numpy arrays, and as Keras metrics.

- Image quality (`keras_rmz.metrics.image`): `rmse`, `psnr`, `nrmse`, `ssim`,
  `ms_ssim`, and `per_plane` to score a stack plane by plane.
- Keras metrics (`keras_rmz.metrics.keras_metrics`): `PSNR` and `SSIM` for
  ``compile(metrics=...)``, on ``keras.ops`` (any backend), same argument
  order and ``data_range`` as the numpy functions.
- Bead resolution (`keras_rmz.metrics.beads`): `bead_fwhm` (per-bead lateral
  FWHM from 2D Gaussian fits, Fig. 3b) and `kl_divergence` between two FWHM
  histograms.

The experiments built on them (the paper's robustness tests, the baselines,
scoring a reconstruction plane by plane) are in `keras_rmz.evaluation`.

The Keras metrics are imported on first use, so the numpy metrics do not
import a deep-learning backend.

Conventions (data_range, NRMSE normalization, KL smoothing) are documented on
each function and in ``docs/metrics.md``.
"""

from keras_rmz.metrics.beads import BeadFWHM
from keras_rmz.metrics.beads import FWHM_PER_SIGMA
from keras_rmz.metrics.beads import bead_fwhm
from keras_rmz.metrics.beads import histogram_edges
from keras_rmz.metrics.beads import kl_divergence
from keras_rmz.metrics.image import ms_ssim
from keras_rmz.metrics.image import nrmse
from keras_rmz.metrics.image import per_plane
from keras_rmz.metrics.image import psnr
from keras_rmz.metrics.image import rmse
from keras_rmz.metrics.image import ssim

__all__ = [
    "BeadFWHM",
    "FWHM_PER_SIGMA",
    "PSNR",
    "SSIM",
    "bead_fwhm",
    "histogram_edges",
    "kl_divergence",
    "ms_ssim",
    "nrmse",
    "per_plane",
    "psnr",
    "rmse",
    "ssim",
]


def __getattr__(name):
    if name in ("PSNR", "SSIM"):
        from keras_rmz.metrics import keras_metrics

        return getattr(keras_metrics, name)
    raise AttributeError(f"module 'keras_rmz.metrics' has no attribute {name!r}")
