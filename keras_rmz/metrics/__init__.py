"""Evaluation metrics of the paper, on numpy arrays.

- Image quality (`keras_rmz.metrics.image`): `rmse`, `psnr`, `nrmse`, `ssim`,
  `ms_ssim`, and `per_plane` to score a stack plane by plane.
- Bead resolution (`keras_rmz.metrics.beads`): `bead_fwhm` (per-bead lateral
  FWHM from 2D Gaussian fits, Fig. 3b) and `kl_divergence` between two FWHM
  histograms.
- Robustness (`keras_rmz.metrics.robustness`): `permutation_test`,
  `repetition_test`, `dpm_noise_test`, `nonuniform_spacing_test` (Fig. 4-7).

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
from keras_rmz.metrics.robustness import DPMNoiseResult
from keras_rmz.metrics.robustness import NonuniformSpacingResult
from keras_rmz.metrics.robustness import PermutationResult
from keras_rmz.metrics.robustness import RepetitionResult
from keras_rmz.metrics.robustness import dpm_noise_test
from keras_rmz.metrics.robustness import nonuniform_spacing_test
from keras_rmz.metrics.robustness import permutation_test
from keras_rmz.metrics.robustness import repetition_test

__all__ = [
    "BeadFWHM",
    "DPMNoiseResult",
    "FWHM_PER_SIGMA",
    "NonuniformSpacingResult",
    "PermutationResult",
    "RepetitionResult",
    "bead_fwhm",
    "dpm_noise_test",
    "histogram_edges",
    "kl_divergence",
    "ms_ssim",
    "nonuniform_spacing_test",
    "nrmse",
    "per_plane",
    "permutation_test",
    "psnr",
    "repetition_test",
    "rmse",
    "ssim",
]
