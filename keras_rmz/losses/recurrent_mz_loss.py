"""The content loss of Recurrent-MZ: 3 BerHu + 1 (1 - MS-SSIM)."""

import numbers

import keras

from keras_rmz.losses._shapes import match_rank
from keras_rmz.losses.berhu import _check_c
from keras_rmz.losses.berhu import berhu
from keras_rmz.losses.ms_ssim import ms_ssim


@keras.saving.register_keras_serializable(package="keras_rmz")
class RecurrentMZLoss(keras.losses.Loss):
    """Paper content loss `alpha * BerHu + beta * (1 - MS-SSIM)` per image.

    The pixel and structure terms of the Recurrent-MZ generator loss
    (paper Eq. 7 with alpha = 3, beta = 1); the adversarial term
    `gamma (D(y_hat) - 1)^2` needs a discriminator and is added by the GAN
    trainer (`generator_adversarial_loss`). Alone it trains the generator
    with `model.compile(loss=RecurrentMZLoss())`. MS-SSIM uses its default
    window and weights, and fewer scales on small patches (3 on 64 x 64,
    see `ms_ssim_num_scales`).

    Args:
        berhu_weight: alpha, weight of the BerHu term. Defaults to 3.0.
        ms_ssim_weight: beta, weight of `1 - MS-SSIM`. Defaults to 1.0. At 0
            the MS-SSIM term is not computed.
        c: BerHu threshold, > 0. Defaults to 0.1.
        adaptive: BerHu with `c = 0.2 * max|d|` per sample (authors' code).
            Defaults to False.
        max_val: dynamic range for MS-SSIM (normalized images: 1.0).
        reduction: as in `keras.losses.Loss`.
        name: name of the loss. Defaults to `"recurrent_mz_loss"`.
        dtype: dtype of the loss computation, as in `keras.losses.Loss`.

    Example:

    ```python
    model.compile(optimizer=keras.optimizers.Adam(1e-5),
                  loss=keras_rmz.losses.RecurrentMZLoss())
    ```

    Reference:
        Huang et al., "Recurrent neural network-based volumetric
        fluorescence microscopy", Light: Science & Applications 10, 62
        (2021), Methods.
    """

    def __init__(
        self,
        berhu_weight=3.0,
        ms_ssim_weight=1.0,
        c=0.1,
        adaptive=False,
        max_val=1.0,
        reduction="sum_over_batch_size",
        name="recurrent_mz_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        for arg, value in (
            ("berhu_weight", berhu_weight),
            ("ms_ssim_weight", ms_ssim_weight),
        ):
            if isinstance(value, bool) or not (
                isinstance(value, numbers.Real) and value >= 0
            ):
                raise ValueError(f"{arg} must be a number >= 0; got {value!r}")
        if not adaptive:
            _check_c(c)
        if not (isinstance(max_val, numbers.Real) and max_val > 0):
            raise ValueError(f"max_val must be a number > 0; got {max_val!r}")
        self.berhu_weight = berhu_weight
        self.ms_ssim_weight = ms_ssim_weight
        self.c = c
        self.adaptive = adaptive
        self.max_val = max_val

    def call(self, y_true, y_pred):
        y_true, y_pred = match_rank(y_true, y_pred)
        pixel = berhu(y_true, y_pred, c=self.c, adaptive=self.adaptive)
        if self.ms_ssim_weight == 0:
            # A weight of zero drops the term: MS-SSIM (five Gaussian
            # filterings per scale) is a large share of a small model's
            # training step, and its gradient would be multiplied by 0.
            return self.berhu_weight * pixel
        structure = 1.0 - ms_ssim(y_true, y_pred, max_val=self.max_val)
        structure = keras.ops.cast(structure, pixel.dtype)
        return self.berhu_weight * pixel + self.ms_ssim_weight * structure

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "berhu_weight": self.berhu_weight,
                "ms_ssim_weight": self.ms_ssim_weight,
                "c": self.c,
                "adaptive": self.adaptive,
                "max_val": self.max_val,
            }
        )
        return config
