"""``PSNR``: peak signal-to-noise ratio per image, as a Keras metric."""

import keras
from keras import ops

# PSNR of a perfect reconstruction is infinite; the MSE is floored so that
# a mean over images stays finite (1e-10 -> 100 dB at max_val = 1).
_MIN_MSE = 1e-10


@keras.saving.register_keras_serializable(package="keras_rmz")
def psnr(y_true, y_pred, max_val=1.0):
    """PSNR of each image in a batch, in dB, with `keras.ops`.

    ``10 log10(max_val^2 / MSE)`` with the MSE over the pixels and channels
    of each image (floored at 1e-10). Values are not clipped to
    ``[0, max_val]``: normalized microscopy images (background 0, 99th
    percentile of the foreground 1) legitimately exceed 1.

    Args:
        y_true: ground truth, `(B, H, W, C)` (any rank >= 2 with the batch
            first).
        y_pred: prediction, same shape.
        max_val: the data range, 1.0 for the paper's normalized intensities.

    Returns:
        `(B,)` float32.

    Example:

    >>> psnr(np.zeros((1, 4, 4, 1)), np.full((1, 4, 4, 1), 0.1))   # 20 dB
    """
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
    if len(y_pred.shape) < 2 or len(y_true.shape) != len(y_pred.shape):
        raise ValueError(
            "y_true and y_pred must be batches of images of the same shape (B, H, W, C); "
            f"got shapes {tuple(y_true.shape)} and {tuple(y_pred.shape)}"
        )
    axes = list(range(1, len(y_pred.shape)))
    mse = ops.mean(ops.square(y_pred - y_true), axis=axes)
    mse = ops.maximum(mse, _MIN_MSE)
    return 10.0 * ops.log10(float(max_val) ** 2 / mse)


@keras.saving.register_keras_serializable(package="keras_rmz")
class PSNR(keras.metrics.MeanMetricWrapper):
    """Mean over images of the per-image PSNR (dB), for `compile(metrics=...)`.

    `AdversarialTrainer.compile()` adds it by default, so ``fit`` with
    ``validation_data`` reports ``val_psnr``. The data range is ``max_val``
    (1.0: the paper's normalization maps background to 0 and the 99th
    percentile of the foreground to 1); images are not clipped.

    Args:
        max_val: the data range used for the peak, > 0. Defaults to 1.0.
        name: metric name. Defaults to ``"psnr"``.
        dtype: dtype of the metric state.

    Example:

    ```python
    model.compile(optimizer="adam", loss=keras_rmz.losses.RecurrentMZLoss(),
                  metrics=[keras_rmz.training.PSNR(), keras_rmz.training.SSIM()])
    ```
    """

    def __init__(self, max_val=1.0, name="psnr", dtype=None):
        if isinstance(max_val, bool) or not isinstance(max_val, (int, float)) or not max_val > 0:
            raise ValueError(f"max_val must be a number > 0 (the data range); got {max_val!r}")
        super().__init__(fn=psnr, name=name, dtype=dtype, max_val=float(max_val))
        self.max_val = float(max_val)
        # Higher is better: lets keras.callbacks infer mode="max".
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "max_val": self.max_val}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
