"""Multi-scale structural similarity (MS-SSIM) and the ``MSSSIM`` loss."""

import functools
import numbers

import keras
import numpy as np
from keras import ops

from keras_rmz.losses._shapes import match_rank

MS_SSIM_POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check_positive_int(value, name):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < 1
    ):
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return int(value)


def ms_ssim_num_scales(height, width, filter_size=11, max_scales=5):
    """Number of scales `ms_ssim` uses on an image of `height` x `width`.

    Scale 1 is the image itself; each further scale halves it (2x2 average
    pooling, an odd size first padded by repeating its last row or column,
    so a size `s` becomes `ceil(s / 2)`), as `tf.image.ssim_multiscale` does.
    The rule: use the largest `n <= max_scales` for which the smallest of
    the `n` scales is still at least `filter_size` pixels in both
    directions. With the defaults (11-px window, 5 factors) that is 5 scales
    from 161 x 161 up (the same computation as TensorFlow), 4 from 81, 3 from
    41 (so 3 on 64 x 64 training patches), 2 from 21, and 1 (plain SSIM)
    below that. An image
    smaller than the window in either direction still gets 1 scale, with
    the window shrunk (see `ms_ssim_window_size`).

    Args:
        height: image height in pixels, >= 1.
        width: image width in pixels, >= 1.
        filter_size: side of the Gaussian window, >= 1. Defaults to 11.
        max_scales: number of power factors available, >= 1. Defaults to 5.

    Returns:
        An int in `[1, max_scales]`.

    Example:

    >>> ms_ssim_num_scales(192, 192), ms_ssim_num_scales(64, 64)
    (5, 3)
    """
    height = _check_positive_int(height, "height")
    width = _check_positive_int(width, "width")
    filter_size = _check_positive_int(filter_size, "filter_size")
    max_scales = _check_positive_int(max_scales, "max_scales")
    num_scales = 0
    while num_scales < max_scales and min(height, width) >= filter_size:
        num_scales += 1
        height, width = (height + 1) // 2, (width + 1) // 2
    return max(num_scales, 1)


def ms_ssim_window_size(height, width, filter_size=11):
    """Side of the Gaussian window `ms_ssim` uses on `height` x `width`.

    `filter_size` when the image is at least that large in both directions;
    otherwise the largest odd number <= `min(height, width)`, so that an
    image smaller than the window (e.g. 8 x 8) is still scored, on one
    scale, instead of failing. The Gaussian keeps its `filter_sigma` and is
    renormalized over the smaller window.

    Args:
        height: image height in pixels, >= 1.
        width: image width in pixels, >= 1.
        filter_size: requested window side, >= 1. Defaults to 11.

    Returns:
        An int in `[1, filter_size]`.

    Example:

    >>> ms_ssim_window_size(64, 64), ms_ssim_window_size(8, 8)
    (11, 7)
    """
    height = _check_positive_int(height, "height")
    width = _check_positive_int(width, "width")
    filter_size = _check_positive_int(filter_size, "filter_size")
    smallest = min(height, width)
    if smallest >= filter_size:
        return filter_size
    return smallest if smallest % 2 == 1 else smallest - 1


def _check_ms_ssim_args(max_val, filter_size, filter_sigma, power_factors):
    filter_size = _check_positive_int(filter_size, "filter_size")
    if not (isinstance(filter_sigma, numbers.Real) and filter_sigma > 0):
        raise ValueError(
            f"filter_sigma must be a number > 0; got {filter_sigma!r}"
        )
    power_factors = tuple(power_factors)
    if not power_factors or not all(
        isinstance(p, numbers.Real) and p >= 0 for p in power_factors
    ):
        raise ValueError(
            "power_factors must be a non-empty sequence of numbers >= 0; "
            f"got {power_factors!r}"
        )
    if isinstance(max_val, numbers.Real) and not max_val > 0:
        raise ValueError(f"max_val must be > 0; got {max_val!r}")
    return filter_size, power_factors


def _scale_power_factors(power_factors, num_scales):
    """The first `num_scales` factors, renormalized to sum to 1 when some
    scales are dropped (all of them, unchanged, when none are)."""
    factors = [float(p) for p in power_factors]
    if num_scales == len(factors):
        return factors
    factors = factors[:num_scales]
    total = sum(factors)
    if total > 0:
        factors = [p / total for p in factors]
    return factors


def _gaussian_1d(size, sigma):
    # The 2D window of tf.image.ssim (softmax of -(i^2 + j^2) / 2 sigma^2)
    # is the outer product of this normalized 1D Gaussian, so two 1D
    # passes give the same local statistics at a fraction of the cost.
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * np.square(coords) / float(sigma) ** 2)
    return g / g.sum()


def _downsample(pair):
    # tf.image.ssim_multiscale pads an odd size by one SYMMETRIC row/column
    # (= the edge repeated) and then average-pools 2x2 VALID. Always
    # appending the edge row/column and pooling VALID gives exactly that for
    # odd and even sizes alike, without a shape-dependent branch (shapes may
    # be unknown while TensorFlow traces a graph).
    pair = ops.concatenate([pair, pair[:, -1:, :, :]], axis=1)
    pair = ops.concatenate([pair, pair[:, :, -1:, :]], axis=2)
    return ops.average_pool(
        pair, 2, strides=2, padding="valid", data_format="channels_last"
    )


def _safe_power(x, exponent):
    # x ** w with 0 < w < 1 has an infinite derivative at x = 0 (and
    # pow(0, w) can give NaN gradients through log(0)); x is >= 0 here (after
    # relu). The double `where` keeps the value exact (0 at 0) and the
    # gradient finite; the floor only matters for x < 1e-30.
    positive = x > 0
    safe = ops.where(positive, ops.maximum(x, 1e-30), ops.ones_like(x))
    return ops.where(positive, ops.power(safe, exponent), ops.zeros_like(x))


def _ssim_and_cs(pair, window, sigma, c1, c2):
    """Mean SSIM and mean contrast-structure of one scale.

    `pair` is (N, H, W, 2): image 1 and image 2 stacked on the last axis.
    Returns two (N,) tensors.
    """
    dtype = pair.dtype
    x = pair[..., 0:1]
    y = pair[..., 1:2]
    stats = ops.concatenate([x, y, x * y, ops.square(x) + ops.square(y)], -1)
    g = _gaussian_1d(window, sigma)
    # Separable: two 1D passes (window + window taps per pixel, not
    # window^2). Depthwise convolutions accept unknown H and W.
    kernel_h = np.tile(g.reshape(window, 1, 1, 1), (1, 1, 4, 1))
    kernel_w = np.tile(g.reshape(1, window, 1, 1), (1, 1, 4, 1))
    for kernel in (kernel_h, kernel_w):
        stats = ops.depthwise_conv(
            stats,
            ops.convert_to_tensor(kernel, dtype=dtype),
            strides=1,
            padding="valid",
            data_format="channels_last",
        )
    mean_x = stats[..., 0]
    mean_y = stats[..., 1]
    mean_xy = stats[..., 2]
    mean_xx_yy = stats[..., 3]
    # Same algebra as tf.image.ssim (luminance * contrast-structure, biased
    # covariance, no compensation), so values match it closely.
    num0 = mean_x * mean_y * 2.0
    den0 = ops.square(mean_x) + ops.square(mean_y)
    luminance = (num0 + c1) / (den0 + c1)
    cs = (mean_xy * 2.0 - num0 + c2) / (mean_xx_yy - den0 + c2)
    ssim = ops.mean(luminance * cs, axis=(1, 2))
    cs = ops.mean(cs, axis=(1, 2))
    return ssim, cs


def _ms_ssim_fixed(pair, num_scales, window, sigma, c1, c2, power_factors):
    """MS-SSIM of (N, H, W, 2) image pairs for a fixed scale plan -> (N,)."""
    factors = _scale_power_factors(power_factors, num_scales)
    result = None
    for scale in range(num_scales):
        if scale > 0:
            pair = _downsample(pair)
        ssim, cs = _ssim_and_cs(pair, window, sigma, c1, c2)
        # Like TensorFlow: contrast-structure of every scale but the last,
        # SSIM of the last, each clipped at 0 before the power.
        value = ssim if scale == num_scales - 1 else cs
        term = _safe_power(ops.relu(value), factors[scale])
        # An explicit product: reduce_prod's gradient divides by the factors
        # on some backends and turns a 0 into NaN.
        result = term if result is None else result * term
    return result


def _dynamic_plan_index(height, width, filter_size, max_scales, windows):
    """Index of the `ms_ssim` branch (scale plan) for sizes only known at run
    time (TensorFlow graphs traced with `None` height or width)."""
    height = ops.cast(height, "int32")
    width = ops.cast(width, "int32")
    num_scales = ops.zeros((), "int32")
    for scale in range(max_scales):
        step = 2**scale
        smallest = ops.minimum(
            (height + step - 1) // step, (width + step - 1) // step
        )
        num_scales = num_scales + ops.cast(smallest >= filter_size, "int32")
    index = num_scales - 1
    if windows:
        smallest = ops.minimum(height, width)
        window = smallest - (1 - smallest % 2)
        window_index = max_scales + (windows[0] - window) // 2
        index = ops.where(num_scales > 0, index, window_index)
    return index


@keras.saving.register_keras_serializable(package="keras_rmz")
def ms_ssim(
    y_true,
    y_pred,
    max_val=1.0,
    filter_size=11,
    filter_sigma=1.5,
    k1=0.01,
    k2=0.03,
    power_factors=MS_SSIM_POWER_FACTORS,
):
    """Multi-scale structural similarity of two image batches.

    Per scale j the local statistics come from a Gaussian window
    (`filter_size` pixels, `filter_sigma`) over the VALID region;
    luminance `l = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)` and
    contrast-structure `cs = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2)`
    with `C1 = (k1 max_val)^2`, `C2 = (k2 max_val)^2`, each averaged over the
    image. Then

        MS-SSIM = relu(mean l*cs at scale n)^w_n
                  * prod_{j<n} relu(mean cs_j)^w_j

    per channel, averaged over channels (the MS-SSIM equation of the
    paper's Methods in TensorFlow's form, with C3 = C2 / 2). Scale j + 1 is
    scale j average-pooled 2x2. On images of at least 161 x 161 (defaults)
    this is `tf.image.ssim_multiscale` computed with `keras.ops`, so it runs
    and differentiates on TensorFlow, JAX and PyTorch.

    Small patches: with fewer pixels than 5 scales need, the largest number
    of scales `n` whose smallest scale is still `>= filter_size` is used
    (`ms_ssim_num_scales`) with the first `n` power factors renormalized to
    sum to 1; an image smaller than the window gets one scale with the
    window shrunk to the largest odd size that fits
    (`ms_ssim_window_size`). Identical images give 1.0; the value and its
    gradient stay finite for constant and identical images.

    Args:
        y_true: images `(B, H, W, C)` (or `(..., H, W, C)`), intensities on
            the scale given by `max_val`.
        y_pred: images of the same shape.
        max_val: dynamic range of the intensities. Defaults to 1.0.
        filter_size: Gaussian window side in pixels. Defaults to 11.
        filter_sigma: Gaussian window sigma in pixels. Defaults to 1.5.
        k1: luminance stabilizer. Defaults to 0.01.
        k2: contrast stabilizer. Defaults to 0.03.
        power_factors: weight of each scale, finest first. Defaults to
            `(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)` (Wang et al. 2003).

    Returns:
        MS-SSIM per image, shape `(B,)` (the leading dimensions), float32
        (float64 for float64 inputs); 1 means identical.

    Example:

    >>> x = np.random.rand(2, 64, 64, 1).astype("float32")
    >>> keras_rmz.losses.ms_ssim(x, x)          # [1., 1.]

    Reference:
        Wang, Simoncelli & Bovik, "Multiscale structural similarity for
        image quality assessment", Asilomar 2003; `tf.image.ssim_multiscale`.
    """
    filter_size, power_factors = _check_ms_ssim_args(
        max_val, filter_size, filter_sigma, power_factors
    )

    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    dtype = keras.backend.standardize_dtype(y_pred.dtype)
    dtype = "float64" if dtype == "float64" else "float32"
    y_pred = ops.cast(y_pred, dtype)
    y_true = ops.cast(y_true, dtype)

    static_true, static_pred = tuple(y_true.shape), tuple(y_pred.shape)
    if len(static_pred) < 3 or len(static_true) != len(static_pred):
        raise ValueError(
            "y_true and y_pred must be image batches of the same shape "
            "(B, H, W, C) (or (..., H, W, C)); got shapes "
            f"{static_true} and {static_pred}"
        )
    for a, b in zip(static_true, static_pred):
        if a is not None and b is not None and a != b:
            raise ValueError(
                "y_true and y_pred must have the same shape (B, H, W, C); "
                f"got {static_true} and {static_pred}"
            )
    for size in static_pred[-3:-1]:
        if size is not None and size < 1:
            raise ValueError(
                "images must have height and width >= 1; got shape "
                f"{static_pred}"
            )

    dynamic_shape = ops.shape(y_pred)
    batch_shape = dynamic_shape[:-3]
    height, width, channels = dynamic_shape[-3:]
    # A size known statically on either input fixes the scale plan now.
    static_height = static_pred[-3] or static_true[-3]
    static_width = static_pred[-2] or static_true[-2]
    if static_height is not None:
        height = static_height
    if static_width is not None:
        width = static_width

    # One grey image per row: (..., H, W, C) -> (N*C, H, W, 2), the pair
    # stacked last so both images are filtered and pooled in one op each.
    pair = ops.stack([y_true, y_pred], axis=-1)
    pair = ops.reshape(pair, (-1, height, width, channels, 2))
    pair = ops.transpose(pair, (0, 3, 1, 2, 4))
    pair = ops.reshape(pair, (-1, height, width, 2))

    c1 = (k1 * max_val) ** 2
    c2 = (k2 * max_val) ** 2
    c1 = ops.cast(c1, dtype)
    c2 = ops.cast(c2, dtype)

    max_scales = len(power_factors)
    core = functools.partial(
        _ms_ssim_fixed,
        sigma=filter_sigma,
        c1=c1,
        c2=c2,
        power_factors=power_factors,
    )
    if isinstance(height, int) and isinstance(width, int):
        value = core(
            pair,
            num_scales=ms_ssim_num_scales(
                height, width, filter_size, max_scales
            ),
            window=ms_ssim_window_size(height, width, filter_size),
        )
    else:
        # Height or width unknown while TensorFlow traces (e.g. `fit` on
        # patches of changing size): one branch per possible plan, picked
        # at run time by the same rule as the static helpers.
        windows = list(range(filter_size - 1 - (filter_size % 2), 0, -2))
        branches = [
            functools.partial(core, num_scales=n, window=filter_size)
            for n in range(1, max_scales + 1)
        ] + [functools.partial(core, num_scales=1, window=w) for w in windows]
        index = _dynamic_plan_index(
            height, width, filter_size, max_scales, windows
        )
        value = ops.switch(index, branches, pair)

    value = ops.mean(ops.reshape(value, (-1, channels)), axis=-1)
    return ops.reshape(value, batch_shape)


@keras.saving.register_keras_serializable(package="keras_rmz")
class MSSSIM(keras.losses.Loss):
    """MS-SSIM loss: `1 - ms_ssim(y_true, y_pred)` per image.

    Works on any image size, including 64 x 64 training patches (3 scales
    there; see `ms_ssim_num_scales`). On images of 161 x 161 and larger it
    is `1 - tf.image.ssim_multiscale`.

    Args:
        max_val: dynamic range of the intensities. Defaults to 1.0.
        filter_size: Gaussian window side in pixels. Defaults to 11.
        filter_sigma: Gaussian window sigma in pixels. Defaults to 1.5.
        k1: luminance stabilizer. Defaults to 0.01.
        k2: contrast stabilizer. Defaults to 0.03.
        power_factors: weight of each scale, finest first. Defaults to
            `(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)`.
        reduction: how per-image losses are combined, as in
            `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: name of the loss. Defaults to `"ms_ssim_loss"`.
        dtype: dtype of the loss computation, as in `keras.losses.Loss`.

    Example:

    ```python
    model.compile(optimizer="adam", loss=keras_rmz.losses.MSSSIM())
    ```

    Reference:
        Wang, Simoncelli & Bovik, "Multiscale structural similarity for
        image quality assessment", Asilomar 2003.
    """

    def __init__(
        self,
        max_val=1.0,
        filter_size=11,
        filter_sigma=1.5,
        k1=0.01,
        k2=0.03,
        power_factors=MS_SSIM_POWER_FACTORS,
        reduction="sum_over_batch_size",
        name="ms_ssim_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(max_val, numbers.Real):
            raise ValueError(f"max_val must be a number > 0; got {max_val!r}")
        _check_ms_ssim_args(max_val, filter_size, filter_sigma, power_factors)
        self.max_val = max_val
        self.filter_size = filter_size
        self.filter_sigma = filter_sigma
        self.k1 = k1
        self.k2 = k2
        self.power_factors = tuple(power_factors)

    def call(self, y_true, y_pred):
        y_true, y_pred = match_rank(y_true, y_pred)
        return 1.0 - ms_ssim(
            y_true,
            y_pred,
            max_val=self.max_val,
            filter_size=self.filter_size,
            filter_sigma=self.filter_sigma,
            k1=self.k1,
            k2=self.k2,
            power_factors=self.power_factors,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_val": self.max_val,
                "filter_size": self.filter_size,
                "filter_sigma": self.filter_sigma,
                "k1": self.k1,
                "k2": self.k2,
                "power_factors": list(self.power_factors),
            }
        )
        return config
