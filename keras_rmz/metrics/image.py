"""Image-quality metrics on numpy arrays: RMSE, PSNR, NRMSE, SSIM, MS-SSIM.

Every function takes the ground truth first and the image under test second
(scikit-image's order), accepts numpy arrays of any real dtype, computes in
float64 and returns a Python ``float``.

``data_range`` (the peak-to-peak intensity span used by PSNR, SSIM and
MS-SSIM) is the one place where microscopy floats differ from photographs:
scikit-image falls back to the *dtype* range (1.0 for floats, 65535 for
uint16), which is meaningless for normalized fluorescence or for 12-bit camera
counts stored as uint16. Here ``data_range=None`` always means
``truth.max() - truth.min()`` of the truth image passed in. For a stack
evaluated plane by plane use `per_plane`, which derives one ``data_range``
from the whole truth volume so that every plane is scored on the same scale
(the way the paper's PSNR-versus-z curves compare planes).
"""

import inspect

import numpy as np
import skimage.metrics

_NRMSE_NORMALIZATIONS = ("euclidean", "mean", "min-max")


def _as_float_pair(truth, pred, min_ndim=1, max_ndim=None):
    """Validates a truth/prediction pair and returns float64 copies."""
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    for name, array in (("truth", truth), ("pred", pred)):
        if not (
            np.issubdtype(array.dtype, np.number) or array.dtype == bool
        ) or np.issubdtype(array.dtype, np.complexfloating):
            raise TypeError(
                f"{name} must be a real-valued numeric array; got dtype "
                f"{array.dtype}"
            )
    if truth.shape != pred.shape:
        raise ValueError(
            "truth and pred must have the same shape; got "
            f"{truth.shape} and {pred.shape}"
        )
    if truth.ndim < min_ndim or (max_ndim is not None and truth.ndim > max_ndim):
        accepted = (
            f"{min_ndim} to {max_ndim} dimensions"
            if max_ndim is not None
            else f"at least {min_ndim} dimension(s)"
        )
        raise ValueError(
            f"truth and pred must have {accepted}; got shape {truth.shape}"
        )
    if truth.size == 0:
        raise ValueError(f"truth and pred must not be empty; got shape {truth.shape}")
    truth = truth.astype(np.float64)
    pred = pred.astype(np.float64)
    for name, array in (("truth", truth), ("pred", pred)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must contain only finite values (no NaN or inf)")
    return truth, pred


def _resolve_data_range(truth, data_range):
    """``data_range`` if given, else the peak-to-peak span of ``truth``."""
    if data_range is None:
        data_range = float(np.max(truth) - np.min(truth))
        if data_range <= 0:
            raise ValueError(
                "data_range cannot be derived from a constant truth image "
                "(max == min); pass data_range explicitly, e.g. data_range=1.0 "
                "for normalized intensities"
            )
        return data_range
    data_range = float(data_range)
    if not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(
            f"data_range must be a finite number > 0 or None; got {data_range}"
        )
    return data_range


def rmse(truth, pred):
    """Root-mean-square error, in the images' own intensity units.

    ``RMSE = sqrt(mean((truth - pred)**2))``. This is the "RMSE" of the
    paper's permutation and repetition figures (Fig. 6, 7).

    Args:
        truth: ground-truth array, any shape.
        pred: array of the same shape.

    Returns:
        float.

    Example:

    >>> rmse(np.zeros((4, 4)), np.full((4, 4), 2.0))
    2.0
    """
    truth, pred = _as_float_pair(truth, pred)
    return float(np.sqrt(np.mean((truth - pred) ** 2)))


def psnr(truth, pred, data_range=None):
    """Peak signal-to-noise ratio in dB.

    ``PSNR = 10·log10(data_range² / MSE)``, equal to
    ``skimage.metrics.peak_signal_noise_ratio(truth, pred, data_range=...)``
    for the same ``data_range``. Identical images give ``inf``.

    Args:
        truth: ground-truth array, any shape.
        pred: array of the same shape.
        data_range: peak-to-peak intensity span. ``None`` (default) uses
            ``truth.max() - truth.min()`` — not the dtype range as
            scikit-image does (see the module docstring). For normalized
            intensities (background 0, foreground ≈ 1) pass ``1.0`` to get
            numbers comparable across images.

    Returns:
        float (dB).

    Example:

    >>> round(psnr(np.array([0.0, 1.0]), np.array([0.0, 0.9])), 3)
    23.01
    """
    truth, pred = _as_float_pair(truth, pred)
    data_range = _resolve_data_range(truth, data_range)
    mse = float(np.mean((truth - pred) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def nrmse(truth, pred, normalization="euclidean"):
    """Normalized root-mean-square error (a fraction; ×100 for percent).

    The paper reports NRMSE (6.45 for Recurrent-MZ and 8.02 for Deep-Z at
    z = 11.4 µm, Fig. 2/S3, next to PSNR 33.96 and 32.08 dB) but gives no
    formula in the main text. Both pairs satisfy
    ``NRMSE·10^(PSNR/20) ≈ 322`` (321.8 and 322.2). With NRMSE = RMSE/N
    and PSNR = 20·log10(R/RMSE) that product is R/N, so both metrics use
    one RMSE, a fixed normalizer N and a fixed peak R of the same truth
    plane, with R/N ≈ 3.22 if NRMSE is in percent. If PSNR was taken on
    the 0-255 display range the paper mentions, RMSE ≈ 5.1 and 6.3 grey
    levels and NRMSE is a percentage of ≈ 79 grey levels (≈ 31 % of 255) —
    the size of a mean or RMS intensity of the truth, not of its range. The
    exact normalizer cannot be recovered, so we follow scikit-image
    (``skimage.metrics.normalized_root_mse``): same names, same default,
    returned as a fraction (×100 to compare with the paper's numbers):

    - ``"euclidean"`` (default): ``||truth - pred|| / ||truth||`` =
      RMSE / RMS(truth). Scale-invariant and independent of any data range,
      which suits float microscopy; an all-zero truth is rejected.
    - ``"mean"``: RMSE / mean(truth).
    - ``"min-max"``: RMSE / (max(truth) - min(truth)); then
      ``nrmse = 10^(-PSNR/20)`` for PSNR with the default ``data_range``.

    Args:
        truth: ground-truth array, any shape.
        pred: array of the same shape.
        normalization: ``"euclidean"``, ``"mean"`` or ``"min-max"``.

    Returns:
        float.

    Example:

    >>> nrmse(np.array([3.0, 4.0]), np.array([3.0, 4.0]))
    0.0
    """
    if not isinstance(normalization, str) or (
        normalization.lower() not in _NRMSE_NORMALIZATIONS
    ):
        raise ValueError(
            f"normalization must be one of {_NRMSE_NORMALIZATIONS}; got "
            f"{normalization!r}"
        )
    normalization = normalization.lower()
    truth, pred = _as_float_pair(truth, pred)
    if normalization == "euclidean":
        denom = float(np.sqrt(np.mean(truth**2)))
    elif normalization == "mean":
        denom = float(np.mean(truth))
    else:
        denom = float(np.max(truth) - np.min(truth))
    if denom == 0.0:
        raise ValueError(
            f"nrmse with normalization={normalization!r} is undefined: the "
            "truth's normalizer is 0 (all-zero or constant truth); use "
            "another normalization or `rmse`"
        )
    return float(np.sqrt(np.mean((truth - pred) ** 2)) / denom)


def ssim(
    truth,
    pred,
    data_range=None,
    *,
    win_size=None,
    gaussian_weights=False,
    sigma=1.5,
    use_sample_covariance=True,
    k1=0.01,
    k2=0.03,
):
    """Structural similarity (mean SSIM) of two 2D images (or 3D volumes).

    A thin wrapper of ``skimage.metrics.structural_similarity`` with the same
    defaults (7×7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03);
    the only difference is ``data_range=None``, which here means the truth's
    peak-to-peak span instead of an error for floats. Pass
    ``gaussian_weights=True, use_sample_covariance=False`` for Wang et al.'s
    11-tap σ = 1.5 Gaussian window (the setting ``tf.image.ssim`` and the
    first scale of `ms_ssim` use). A 3D input is scored with 3D windows;
    for plane-by-plane scores of a stack use ``per_plane(ssim, ...)``.

    Args:
        truth: ground truth, (H, W) or (Z, H, W); every side ≥ the window.
        pred: array of the same shape.
        data_range: intensity span for the constants C1 = (k1·L)², C2 =
            (k2·L)²; ``None`` uses ``truth.max() - truth.min()``.
        win_size: odd window side; ``None`` gives 7 (uniform) or 11
            (Gaussian, σ = 1.5).
        gaussian_weights: Gaussian instead of uniform window.
        sigma: Gaussian window σ in pixels.
        use_sample_covariance: normalize local (co)variances by N − 1.
        k1, k2: SSIM stabilizing constants.

    Returns:
        float in [-1, 1].

    Reference:
        Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from
        error visibility to structural similarity", IEEE TIP 13 (2004).
    """
    truth, pred = _as_float_pair(truth, pred, min_ndim=2, max_ndim=3)
    data_range = _resolve_data_range(truth, data_range)
    side = win_size if win_size is not None else (
        2 * int(3.5 * sigma + 0.5) + 1 if gaussian_weights else 7
    )
    if min(truth.shape) < side:
        raise ValueError(
            f"ssim needs every side of the image to be >= the window size "
            f"{side}; got shape {truth.shape} (pass a smaller odd win_size)"
        )
    return float(
        skimage.metrics.structural_similarity(
            truth,
            pred,
            data_range=data_range,
            win_size=win_size,
            gaussian_weights=gaussian_weights,
            sigma=sigma,
            use_sample_covariance=use_sample_covariance,
            K1=k1,
            K2=k2,
        )
    )


def ms_ssim(truth, pred, data_range=None, **kwargs):
    """Multi-scale SSIM of two 2D images, the quality term of the paper's loss.

    Computed by `keras_rmz.losses.ms_ssim` (which matches
    ``tf.image.ssim_multiscale``: 11-tap Gaussian window σ = 1.5, K1 = 0.01,
    K2 = 0.03, five scales weighted 0.0448, 0.2856, 0.3001, 0.2363, 0.1333;
    images too small for five scales use fewer, as documented there), on the
    active Keras backend. Intensities are used as they are (no shift); the
    constants use ``max_val = data_range``.

    Args:
        truth: ground truth (H, W).
        pred: image of the same shape.
        data_range: intensity span (``max_val`` of the loss); ``None`` uses
            ``truth.max() - truth.min()``.
        **kwargs: passed to `keras_rmz.losses.ms_ssim` (``filter_size``,
            ``filter_sigma``, ``k1``, ``k2``, ``power_factors``).

    Returns:
        float.

    Reference:
        Wang, Simoncelli, Bovik, "Multiscale structural similarity for image
        quality assessment", Asilomar 2003.
    """
    truth, pred = _as_float_pair(truth, pred, min_ndim=2, max_ndim=2)
    data_range = _resolve_data_range(truth, data_range)
    # Imported here: keeps `keras_rmz.metrics` (and its numpy metrics) free of
    # a deep-learning backend until MS-SSIM is actually asked for.
    import keras

    from keras_rmz.losses.ms_ssim import ms_ssim as _ms_ssim_loss

    value = _ms_ssim_loss(
        keras.ops.convert_to_tensor(truth[None, :, :, None], dtype="float32"),
        keras.ops.convert_to_tensor(pred[None, :, :, None], dtype="float32"),
        max_val=data_range,
        **kwargs,
    )
    return float(np.asarray(keras.ops.convert_to_numpy(value)).reshape(-1)[0])


_METRICS_BY_NAME = {
    "rmse": rmse,
    "psnr": psnr,
    "nrmse": nrmse,
    "ssim": ssim,
    "ms_ssim": ms_ssim,
}


def per_plane(metric, truth, pred, **kwargs):
    """Scores a stack plane by plane: ``metric(truth[z], pred[z])`` for each z.

    For metrics that take ``data_range`` (psnr, ssim, ms_ssim) and when none
    is given, one ``data_range`` is derived from the *whole* truth stack, so
    all planes share one scale and a dim out-of-focus plane is not flattered
    by its own small range.

    Args:
        metric: a callable ``metric(truth_2d, pred_2d, **kwargs) -> float``,
            or one of ``"rmse"``, ``"psnr"``, ``"nrmse"``, ``"ssim"``,
            ``"ms_ssim"``.
        truth: ground-truth stack (Z, H, W).
        pred: stack of the same shape.
        **kwargs: passed to the metric.

    Returns:
        np.ndarray (Z,) float64.

    Example:

    >>> per_plane("psnr", truth_stack, recon_stack)   # doctest: +SKIP
    """
    if isinstance(metric, str):
        if metric not in _METRICS_BY_NAME:
            raise ValueError(
                f"metric must be a callable or one of {sorted(_METRICS_BY_NAME)}; "
                f"got {metric!r}"
            )
        metric = _METRICS_BY_NAME[metric]
    elif not callable(metric):
        raise TypeError(
            f"metric must be a callable or a metric name; got {type(metric).__name__}"
        )
    truth, pred = _as_float_pair(truth, pred, min_ndim=3, max_ndim=3)
    try:
        takes_range = "data_range" in inspect.signature(metric).parameters
    except (TypeError, ValueError):
        takes_range = False
    if takes_range and kwargs.get("data_range") is None:
        kwargs["data_range"] = _resolve_data_range(truth, None)
    return np.array(
        [metric(truth[z], pred[z], **kwargs) for z in range(truth.shape[0])],
        dtype=np.float64,
    )
