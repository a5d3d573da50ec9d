"""Evaluation: what a reconstruction is compared with, and how it is scored.

- Baselines (`keras_rmz.evaluation.baselines`): `linear_interpolation`
  between the input planes and the `nearest_plane`.
- Scoring (`keras_rmz.evaluation.scoring`): `score_planes`, PSNR, NRMSE and
  SSIM of each plane with one data range (``keras-rmz evaluate``).
- Robustness (`keras_rmz.evaluation.robustness`): the paper's
  `permutation_test`, `repetition_test`, `dpm_noise_test` and
  `nonuniform_spacing_test` (Fig. 4-7); `keras_rmz.plot` draws their results.
- Adaptive acquisition (`keras_rmz.evaluation.acquisition`):
  `adaptive_acquisition` adds input planes one at a time until the volume
  stops changing (paper, Discussion).
- The bead demo (`keras_rmz.evaluation.demo`): `bead_demo`, a simulated bead
  stack reconstructed from a few planes and scored (``keras-rmz demo``).

The metrics themselves are in `keras_rmz.metrics`.
"""

from keras_rmz.evaluation.acquisition import AcquisitionStep
from keras_rmz.evaluation.acquisition import adaptive_acquisition
from keras_rmz.evaluation.baselines import linear_interpolation
from keras_rmz.evaluation.baselines import nearest_plane
from keras_rmz.evaluation.robustness import DPMNoiseResult
from keras_rmz.evaluation.robustness import NonuniformSpacingResult
from keras_rmz.evaluation.robustness import PermutationResult
from keras_rmz.evaluation.robustness import RepetitionResult
from keras_rmz.evaluation.robustness import dpm_noise_test
from keras_rmz.evaluation.robustness import nonuniform_spacing_test
from keras_rmz.evaluation.robustness import permutation_test
from keras_rmz.evaluation.robustness import repetition_test
from keras_rmz.evaluation.scoring import score_planes

__all__ = [
    "AcquisitionStep",
    "adaptive_acquisition",
    "DPMNoiseResult",
    "NonuniformSpacingResult",
    "PermutationResult",
    "RepetitionResult",
    "dpm_noise_test",
    "linear_interpolation",
    "nearest_plane",
    "nonuniform_spacing_test",
    "permutation_test",
    "repetition_test",
    "score_planes",
]
