"""Losses of Recurrent-MZ (paper Methods, Eq. 7-10), in `keras.ops` only.

Each loss is a pure function returning one value per sample plus a thin
registered `keras.losses.Loss` class, as Keras does for `huber`/`Huber`.
"""

from keras_rmz.losses.adversarial import discriminator_loss
from keras_rmz.losses.adversarial import generator_adversarial_loss
from keras_rmz.losses.berhu import BerHu
from keras_rmz.losses.berhu import berhu
from keras_rmz.losses.ms_ssim import MS_SSIM_POWER_FACTORS
from keras_rmz.losses.ms_ssim import MSSSIM
from keras_rmz.losses.ms_ssim import ms_ssim
from keras_rmz.losses.ms_ssim import ms_ssim_num_scales
from keras_rmz.losses.ms_ssim import ms_ssim_window_size
from keras_rmz.losses.recurrent_mz_loss import RecurrentMZLoss

__all__ = [
    "BerHu",
    "MSSSIM",
    "MS_SSIM_POWER_FACTORS",
    "RecurrentMZLoss",
    "berhu",
    "discriminator_loss",
    "generator_adversarial_loss",
    "ms_ssim",
    "ms_ssim_num_scales",
    "ms_ssim_window_size",
]
