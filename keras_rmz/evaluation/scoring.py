"""Scoring a reconstruction plane by plane: PSNR, NRMSE and SSIM of each
plane against its ground truth, with one data range for all planes."""

import numpy as np

from keras_rmz import metrics


def score_planes(truth, prediction, data_range=None):
    """PSNR (dB), NRMSE and SSIM of each plane (``keras_rmz.metrics``).

    Args:
        truth: (K, H, W) ground-truth planes.
        prediction: (K, H, W) planes under test, in the same order.
        data_range: intensity span R for PSNR and SSIM, shared by all
            planes; None uses the peak-to-peak span of ``truth`` (all K
            planes together), so a dim plane is not flattered by its own
            small range.

    Returns:
        dict: ``"psnr_db"``, ``"nrmse"`` (Euclidean; NaN for an all-zero
        truth plane, which has no normalizer) and ``"ssim"``, each a float64
        array (K,), and ``"data_range"``: the R used.

    Raises:
        ValueError: non-finite planes, or a constant truth without a
            ``data_range``.

    Example:

    ```python
    scores = score_planes(truth_volume, reconstruction)
    scores["psnr_db"].mean()
    ```
    """
    truth = np.asarray(truth, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    if truth.shape != prediction.shape or truth.ndim != 3:
        raise ValueError(
            f"truth and prediction must be stacks of planes (K, H, W) of one shape; got {truth.shape} and "
            f"{prediction.shape}"
        )
    for name, volume in (("the prediction", prediction), ("the truth", truth)):
        bad = np.count_nonzero(~np.isfinite(volume))
        if bad:
            raise ValueError(f"{name} holds {bad} NaN or inf values; the metrics need finite values")
    if data_range is None:
        data_range = float(truth.max() - truth.min())
        if not data_range > 0:
            raise ValueError("the truth planes are constant, so no data range follows from them; give data_range "
                "(--data-range at the command line)")
    return {
        "psnr_db": metrics.per_plane("psnr", truth, prediction, data_range=data_range),
        "nrmse": metrics.per_plane(lambda t, p: metrics.nrmse(t, p) if np.any(t) else np.nan, truth, prediction),
        "ssim": metrics.per_plane("ssim", truth, prediction, data_range=data_range),
        "data_range": data_range,
    }
