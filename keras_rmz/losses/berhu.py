"""Reversed Huber (BerHu) loss of the paper's Methods."""

import numbers

import keras
from keras import ops

from keras_rmz.losses._shapes import match_rank


def _check_c(c):
    if isinstance(c, bool) or (isinstance(c, numbers.Real) and not c > 0):
        raise ValueError(f"c must be a number > 0; got {c!r}")


@keras.saving.register_keras_serializable(package="keras_rmz")
def berhu(y_true, y_pred, c=0.1, adaptive=False):
    """Reversed Huber (BerHu) loss per sample.

    With `d = y_pred - y_true` at every pixel (the BerHu equation of the
    paper's Methods):

        berhu(d) = |d|                    if |d| <= c
                   (d^2 + c^2) / (2 c)    if |d| >  c

    averaged over all pixels (and channels) of each sample. The paper sums over
    pixels; the mean differs only by the constant factor 1 / (H W C), which
    keeps the loss independent of the patch size and comparable with
    MS-SSIM in `RecurrentMZLoss`. The two branches meet with equal value
    and slope at `|d| = c`.

    Args:
        y_true: targets, `(B, ...)`, e.g. `(B, H, W, C)`.
        y_pred: predictions of the same shape.
        c: threshold between the L1 and the L2 branch, > 0. Defaults to 0.1
            (paper). Ignored when `adaptive=True`.
        adaptive: if True, `c = 0.2 * max|d|` over each sample, held
            constant for the gradient (`stop_gradient`), as in the authors'
            public code.

    Returns:
        Loss per sample, shape `(B,)` (a rank-1 input gives the loss per
        element).

    Example:

    >>> y_true = np.zeros((1, 2, 2, 1)); y_pred = np.full((1, 2, 2, 1), 0.3)
    >>> keras_rmz.losses.berhu(y_true, y_pred)   # (0.09 + 0.01) / 0.2 = 0.5

    Reference:
        Owen, "A robust hybrid of lasso and ridge regression", 2007;
        Laina et al., "Deeper depth prediction with fully convolutional
        residual networks", 3DV 2016.
    """
    if not adaptive:
        _check_c(c)
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true, dtype=y_pred.dtype)
    if len(y_pred.shape) < 1 or len(y_true.shape) != len(y_pred.shape):
        raise ValueError(
            "y_true and y_pred must be batches of the same shape (B, ...); "
            f"got shapes {tuple(y_true.shape)} and {tuple(y_pred.shape)}"
        )
    diff = y_pred - y_true
    abs_diff = ops.abs(diff)
    axes = tuple(range(1, len(y_pred.shape)))
    if adaptive:
        c = 0.2 * ops.stop_gradient(
            ops.max(abs_diff, axis=axes, keepdims=True) if axes else abs_diff
        )
    else:
        c = ops.convert_to_tensor(c, dtype=y_pred.dtype)
    # An adaptive c is 0 when prediction and target are equal; every pixel
    # then takes the L1 branch, but the unused L2 branch must not divide by
    # 0 (its NaN would leak into the gradient through `where`).
    safe_c = ops.where(c > 0, c, ops.ones_like(c))
    quadratic = (ops.square(diff) + ops.square(c)) / (2.0 * safe_c)
    loss = ops.where(abs_diff <= c, abs_diff, quadratic)
    return ops.mean(loss, axis=axes) if axes else loss


@keras.saving.register_keras_serializable(package="keras_rmz")
class BerHu(keras.losses.Loss):
    """Reversed Huber (BerHu) loss of the paper (mean over pixels).

    L1 for errors up to `c`, `(d^2 + c^2) / (2 c)` above it. See `berhu`.

    Args:
        c: threshold between the L1 and the L2 branch, > 0. Defaults to 0.1
            (paper).
        adaptive: if True, `c = 0.2 * max|d|` per sample (stop-gradient),
            as in the authors' public code. Defaults to False.
        reduction: how per-sample losses are combined, as in
            `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: name of the loss. Defaults to `"berhu_loss"`.
        dtype: dtype of the loss computation, as in `keras.losses.Loss`.

    Example:

    ```python
    model.compile(optimizer="adam", loss=keras_rmz.losses.BerHu(c=0.1))
    ```

    Reference:
        Owen, "A robust hybrid of lasso and ridge regression", 2007.
    """

    def __init__(
        self,
        c=0.1,
        adaptive=False,
        reduction="sum_over_batch_size",
        name="berhu_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not adaptive:
            _check_c(c)
        self.c = c
        self.adaptive = adaptive

    def call(self, y_true, y_pred):
        y_true, y_pred = match_rank(y_true, y_pred)
        return berhu(y_true, y_pred, c=self.c, adaptive=self.adaptive)

    def get_config(self):
        config = super().get_config()
        config.update({"c": self.c, "adaptive": self.adaptive})
        return config
