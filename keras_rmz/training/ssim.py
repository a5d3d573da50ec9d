"""``SSIM``: single-scale structural similarity per image, as a Keras metric."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_rmz")
def ssim(y_true, y_pred, max_val=1.0, filter_size=11, filter_sigma=1.5):
    """SSIM of each image in a batch (`keras.ops.image.ssim`).

    Gaussian window (11 px, sigma 1.5), k1 = 0.01, k2 = 0.03, averaged over
    the "valid" window positions, as `tf.image.ssim` and scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``. Images smaller than the window use a
    window of the largest odd size that fits. Values are not clipped.

    Args:
        y_true: ground truth `(B, H, W, C)`.
        y_pred: prediction, same shape.
        max_val: the data range (1.0 for normalized intensities).
        filter_size: window size in pixels (odd).
        filter_sigma: standard deviation of the Gaussian window.

    Returns:
        `(B,)` float32 (mean over channels).
    """
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
    if len(y_pred.shape) != 4 or len(y_true.shape) != 4:
        raise ValueError(
            "y_true and y_pred must be image batches of shape (B, H, W, C); "
            f"got shapes {tuple(y_true.shape)} and {tuple(y_pred.shape)}"
        )
    height, width = y_pred.shape[1], y_pred.shape[2]
    if height is not None and width is not None:
        fitting = min(int(filter_size), int(height), int(width))
        filter_size = fitting if fitting % 2 == 1 else fitting - 1
    return ops.image.ssim(
        y_true,
        y_pred,
        max_val=float(max_val),
        filter_size=int(filter_size),
        filter_sigma=float(filter_sigma),
        data_format="channels_last",
    )


@keras.saving.register_keras_serializable(package="keras_rmz")
class SSIM(keras.metrics.MeanMetricWrapper):
    """Mean over images of the per-image SSIM, for `compile(metrics=...)`.

    `AdversarialTrainer.compile()` adds it by default, so ``fit`` with
    ``validation_data`` reports ``val_ssim``. Data range ``max_val`` = 1.0
    (the paper's normalized intensities), images not clipped.

    Args:
        max_val: the data range, > 0. Defaults to 1.0.
        filter_size: Gaussian window size (odd). Defaults to 11.
        filter_sigma: Gaussian window sigma. Defaults to 1.5.
        name: metric name. Defaults to ``"ssim"``.
        dtype: dtype of the metric state.

    Example:

    ```python
    model.compile(optimizer="adam", loss="mae", metrics=[keras_rmz.training.SSIM()])
    ```
    """

    def __init__(self, max_val=1.0, filter_size=11, filter_sigma=1.5, name="ssim", dtype=None):
        if isinstance(max_val, bool) or not isinstance(max_val, (int, float)) or not max_val > 0:
            raise ValueError(f"max_val must be a number > 0 (the data range); got {max_val!r}")
        if isinstance(filter_size, bool) or not isinstance(filter_size, int) or filter_size < 1 or filter_size % 2 == 0:
            raise ValueError(f"filter_size must be an odd integer >= 1; got {filter_size!r}")
        super().__init__(
            fn=ssim,
            name=name,
            dtype=dtype,
            max_val=float(max_val),
            filter_size=filter_size,
            filter_sigma=float(filter_sigma),
        )
        self.max_val = float(max_val)
        self.filter_size = filter_size
        self.filter_sigma = float(filter_sigma)
        self._direction = "up"

    def get_config(self):
        return {
            "name": self.name,
            "dtype": self.dtype,
            "max_val": self.max_val,
            "filter_size": self.filter_size,
            "filter_sigma": self.filter_sigma,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
