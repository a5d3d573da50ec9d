"""PSNR and SSIM as Keras metrics (``keras.ops``, any backend), for
``compile(metrics=...)`` and the ``val_psnr`` / ``val_ssim`` of ``fit``.

Same convention as the numpy metrics of ``keras_rmz.metrics.image``: the
ground truth first, the image under test second, the intensity span as
``data_range``. Here it defaults to 1.0, the span of the paper's
normalized intensities (background 0, 99th percentile of the foreground 1),
because a training batch holds normalized patches; the numpy functions
default to the truth's own span.
"""

import keras
from keras import ops

# PSNR of a perfect reconstruction is infinite; the MSE is floored so that
# a mean over images stays finite (1e-10 -> 100 dB at data_range = 1).
_MIN_MSE = 1e-10


@keras.saving.register_keras_serializable(package="keras_rmz")
def psnr(y_true, y_pred, data_range=1.0):
    """PSNR of each image in a batch, in dB, with `keras.ops`.

    ``10 log10(data_range^2 / MSE)`` with the MSE over the pixels and channels
    of each image (floored at 1e-10). Values are not clipped to
    ``[0, data_range]``: normalized microscopy images (background 0, 99th
    percentile of the foreground 1) legitimately exceed 1.

    Args:
        y_true: ground truth, `(B, H, W, C)` (any rank >= 2 with the batch
            first).
        y_pred: prediction, same shape.
        data_range: the data range, 1.0 for the paper's normalized intensities.

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
    return 10.0 * ops.log10(float(data_range) ** 2 / mse)


@keras.saving.register_keras_serializable(package="keras_rmz")
class PSNR(keras.metrics.MeanMetricWrapper):
    """Mean over images of the per-image PSNR (dB), for `compile(metrics=...)`.

    Every model's ``compile()`` and ``AdversarialTrainer.compile()`` add it
    by default, so ``fit`` with ``validation_data`` reports ``val_psnr``.
    The peak is ``data_range`` (1.0: the paper's normalization maps
    background to 0 and the 99th percentile of the foreground to 1); images
    are not clipped.

    Args:
        data_range: the intensity span used for the peak, > 0. Defaults to 1.0.
        name: metric name. Defaults to ``"psnr"``.
        dtype: dtype of the metric state.

    Example:

    ```python
    model.compile(optimizer="adam", loss=keras_rmz.losses.RecurrentMZLoss(),
                  metrics=[keras_rmz.metrics.PSNR(), keras_rmz.metrics.SSIM()])
    ```
    """

    def __init__(self, data_range=1.0, name="psnr", dtype=None):
        if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not data_range > 0:
            raise ValueError(f"data_range must be a number > 0 (the intensity span); got {data_range!r}")
        super().__init__(fn=psnr, name=name, dtype=dtype, data_range=float(data_range))
        self.data_range = float(data_range)
        # Higher is better: lets keras.callbacks infer mode="max".
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "data_range": self.data_range}

    @classmethod
    def from_config(cls, config):
        return cls(**config)



@keras.saving.register_keras_serializable(package="keras_rmz")
def ssim(y_true, y_pred, data_range=1.0, filter_size=11, filter_sigma=1.5):
    """SSIM of each image in a batch (`keras.ops.image.ssim`).

    Gaussian window (11 px, sigma 1.5), k1 = 0.01, k2 = 0.03, averaged over
    the "valid" window positions, as `tf.image.ssim` and scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``. Images smaller than the window use a
    window of the largest odd size that fits. Values are not clipped.

    Args:
        y_true: ground truth `(B, H, W, C)`.
        y_pred: prediction, same shape.
        data_range: the data range (1.0 for normalized intensities).
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
        max_val=float(data_range),
        filter_size=int(filter_size),
        filter_sigma=float(filter_sigma),
        data_format="channels_last",
    )


@keras.saving.register_keras_serializable(package="keras_rmz")
class SSIM(keras.metrics.MeanMetricWrapper):
    """Mean over images of the per-image SSIM, for `compile(metrics=...)`.

    Every model's ``compile()`` and ``AdversarialTrainer.compile()`` add it
    by default, so ``fit`` with ``validation_data`` reports ``val_ssim``.
    Data range 1.0 by default (the paper's normalized intensities), images
    not clipped.

    Args:
        data_range: the data range, > 0. Defaults to 1.0.
        filter_size: Gaussian window size (odd). Defaults to 11.
        filter_sigma: Gaussian window sigma. Defaults to 1.5.
        name: metric name. Defaults to ``"ssim"``.
        dtype: dtype of the metric state.

    Example:

    ```python
    model.compile(optimizer="adam", loss="mae", metrics=[keras_rmz.metrics.SSIM()])
    ```
    """

    def __init__(self, data_range=1.0, filter_size=11, filter_sigma=1.5, name="ssim", dtype=None):
        if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not data_range > 0:
            raise ValueError(f"data_range must be a number > 0 (the intensity span); got {data_range!r}")
        if isinstance(filter_size, bool) or not isinstance(filter_size, int) or filter_size < 1 or filter_size % 2 == 0:
            raise ValueError(f"filter_size must be an odd integer >= 1; got {filter_size!r}")
        super().__init__(
            fn=ssim,
            name=name,
            dtype=dtype,
            data_range=float(data_range),
            filter_size=filter_size,
            filter_sigma=float(filter_sigma),
        )
        self.data_range = float(data_range)
        self.filter_size = filter_size
        self.filter_sigma = float(filter_sigma)
        self._direction = "up"

    def get_config(self):
        return {
            "name": self.name,
            "dtype": self.dtype,
            "data_range": self.data_range,
            "filter_size": self.filter_size,
            "filter_sigma": self.filter_sigma,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
