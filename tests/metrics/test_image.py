"""Image metrics against scikit-image and against their equations."""

import numpy as np
import pytest
import skimage.metrics
from numpy.lib.stride_tricks import sliding_window_view

from keras_rmz import metrics


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    truth = rng.random((48, 40)) ** 3  # sparse-ish bright structure
    pred = truth + rng.normal(0.0, 0.05, truth.shape)
    return truth, pred


# ----------------------------------------------------------------- RMSE/PSNR


def test_rmse_equation(pair):
    truth, pred = pair
    expected = np.sqrt(np.sum((truth - pred) ** 2) / truth.size)
    assert metrics.rmse(truth, pred) == pytest.approx(expected, rel=1e-12)
    assert metrics.rmse(np.zeros(4), np.full(4, 2.0)) == 2.0


@pytest.mark.parametrize("data_range", [1.0, 0.37, 255.0])
def test_psnr_matches_skimage_and_equation(pair, data_range):
    truth, pred = pair
    ours = metrics.psnr(truth, pred, data_range=data_range)
    reference = skimage.metrics.peak_signal_noise_ratio(
        truth, pred, data_range=data_range
    )
    assert ours == pytest.approx(reference, rel=1e-12)
    mse = np.mean((truth - pred) ** 2)
    assert ours == pytest.approx(20 * np.log10(data_range) - 10 * np.log10(mse))


def test_psnr_default_data_range_is_truth_span(pair):
    truth, pred = pair
    truth = truth * 3.0 + 2.0  # floats outside [0, 1]: skimage would refuse
    pred = pred * 3.0 + 2.0
    span = truth.max() - truth.min()
    assert metrics.psnr(truth, pred) == pytest.approx(
        skimage.metrics.peak_signal_noise_ratio(truth, pred, data_range=span)
    )
    with pytest.raises(ValueError):
        skimage.metrics.peak_signal_noise_ratio(truth, pred)


def test_psnr_integer_camera_counts_use_truth_span_not_dtype():
    # 12-bit counts in uint16: the dtype range (65535) would inflate PSNR by
    # 20·log10(65535 / 4000) ≈ 24 dB.
    rng = np.random.default_rng(1)
    truth = rng.integers(100, 4100, size=(32, 32)).astype(np.uint16)
    pred = np.clip(truth.astype(int) + rng.integers(-50, 50, truth.shape), 0, None)
    pred = pred.astype(np.uint16)
    span = float(truth.max()) - float(truth.min())
    mse = np.mean((truth.astype(float) - pred.astype(float)) ** 2)
    assert metrics.psnr(truth, pred) == pytest.approx(10 * np.log10(span**2 / mse))
    dtype_based = skimage.metrics.peak_signal_noise_ratio(truth, pred)
    assert dtype_based - metrics.psnr(truth, pred) > 20.0


def test_psnr_identical_is_inf_and_errors():
    x = np.linspace(0, 1, 16).reshape(4, 4)
    assert metrics.psnr(x, x) == float("inf")
    with pytest.raises(ValueError, match="constant truth"):
        metrics.psnr(np.ones((4, 4)), np.zeros((4, 4)))
    assert metrics.psnr(np.ones((4, 4)), np.zeros((4, 4)), data_range=1.0) == 0.0
    with pytest.raises(ValueError, match="data_range"):
        metrics.psnr(x, x, data_range=0.0)
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(x, x[:3])
    with pytest.raises(ValueError, match="finite"):
        metrics.psnr(x, np.where(x > 0.5, np.nan, x))
    with pytest.raises(TypeError):
        metrics.psnr(x.astype(complex), x)


# --------------------------------------------------------------------- NRMSE


@pytest.mark.parametrize("normalization", ["euclidean", "mean", "min-max"])
def test_nrmse_matches_skimage(pair, normalization):
    truth, pred = pair
    assert metrics.nrmse(truth, pred, normalization=normalization) == pytest.approx(
        skimage.metrics.normalized_root_mse(truth, pred, normalization=normalization),
        rel=1e-12,
    )


def test_nrmse_equations(pair):
    truth, pred = pair
    diff_norm = np.sqrt(np.sum((truth - pred) ** 2))
    assert metrics.nrmse(truth, pred) == pytest.approx(
        diff_norm / np.sqrt(np.sum(truth**2))
    )
    rmse = diff_norm / np.sqrt(truth.size)
    assert metrics.nrmse(truth, pred, "mean") == pytest.approx(rmse / truth.mean())
    assert metrics.nrmse(truth, pred, "Min-Max") == pytest.approx(
        rmse / (truth.max() - truth.min())
    )
    # min-max NRMSE and PSNR with the default data range carry the same
    # information: nrmse = 10^(-PSNR/20).
    assert metrics.nrmse(truth, pred, "min-max") == pytest.approx(
        10 ** (-metrics.psnr(truth, pred) / 20)
    )
    # euclidean is scale-invariant.
    assert metrics.nrmse(7 * truth, 7 * pred) == pytest.approx(
        metrics.nrmse(truth, pred)
    )


def test_nrmse_errors():
    with pytest.raises(ValueError, match="normalization must be one of"):
        metrics.nrmse(np.ones(3), np.ones(3), normalization="range")
    with pytest.raises(ValueError, match="undefined"):
        metrics.nrmse(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="undefined"):
        metrics.nrmse(np.ones(3), np.zeros(3), normalization="min-max")


# ---------------------------------------------------------------------- SSIM


def _ssim_uniform_reference(x, y, data_range, win=7, k1=0.01, k2=0.03):
    """SSIM from its definition: every full 7×7 window, sample statistics."""
    wx = sliding_window_view(x, (win, win)).reshape(-1, win * win)
    wy = sliding_window_view(y, (win, win)).reshape(-1, win * win)
    mx, my = wx.mean(1), wy.mean(1)
    vx, vy = wx.var(1, ddof=1), wy.var(1, ddof=1)
    cov = ((wx - mx[:, None]) * (wy - my[:, None])).sum(1) / (win * win - 1)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean()


def test_ssim_matches_equation_and_skimage(pair):
    truth, pred = pair
    ours = metrics.ssim(truth, pred, data_range=1.0)
    assert ours == pytest.approx(_ssim_uniform_reference(truth, pred, 1.0), abs=1e-10)
    assert ours == pytest.approx(
        skimage.metrics.structural_similarity(truth, pred, data_range=1.0), abs=1e-12
    )
    gaussian = metrics.ssim(
        truth, pred, data_range=1.0, gaussian_weights=True, use_sample_covariance=False
    )
    assert gaussian == pytest.approx(
        skimage.metrics.structural_similarity(
            truth, pred, data_range=1.0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False,
        ),
        abs=1e-12,
    )
    assert gaussian != pytest.approx(ours, abs=1e-4)


def test_ssim_default_range_volume_and_errors(pair):
    truth, pred = pair
    span = truth.max() - truth.min()
    assert metrics.ssim(truth, pred) == pytest.approx(
        _ssim_uniform_reference(truth, pred, span), abs=1e-10
    )
    assert metrics.ssim(truth, truth) == pytest.approx(1.0)
    volume_t = np.stack([truth[:, :40]] * 8)
    volume_p = np.stack([pred[:, :40]] * 8)
    assert metrics.ssim(volume_t, volume_p, data_range=1.0) == pytest.approx(
        skimage.metrics.structural_similarity(volume_t, volume_p, data_range=1.0)
    )
    with pytest.raises(ValueError, match="window size 7"):
        metrics.ssim(truth[:5, :5], pred[:5, :5])
    assert np.isfinite(metrics.ssim(truth[:5, :5], pred[:5, :5], win_size=5))
    with pytest.raises(ValueError, match="dimensions"):
        metrics.ssim(truth.ravel(), pred.ravel())


# ----------------------------------------------------------------- per_plane


def test_per_plane_uses_one_data_range_for_the_stack():
    rng = np.random.default_rng(3)
    truth = rng.random((5, 24, 24)) * np.array([1.0, 0.5, 0.2, 0.1, 0.05])[:, None, None]
    pred = truth + rng.normal(0, 0.01, truth.shape)
    span = truth.max() - truth.min()
    got = metrics.per_plane("psnr", truth, pred)
    expected = [
        10 * np.log10(span**2 / np.mean((truth[z] - pred[z]) ** 2)) for z in range(5)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # The dim planes would look better on their own range; shared is lower.
    own = [metrics.psnr(truth[z], pred[z]) for z in range(5)]
    assert np.all(got[1:] > np.array(own[1:]))
    np.testing.assert_allclose(
        metrics.per_plane(metrics.nrmse, truth, pred, normalization="mean"),
        [metrics.nrmse(truth[z], pred[z], "mean") for z in range(5)],
    )
    np.testing.assert_allclose(
        metrics.per_plane("ssim", truth, pred, data_range=2.0),
        [metrics.ssim(truth[z], pred[z], data_range=2.0) for z in range(5)],
    )
    with pytest.raises(ValueError, match="one of"):
        metrics.per_plane("mse", truth, pred)
    with pytest.raises(ValueError, match="dimensions"):
        metrics.per_plane("psnr", truth[0], pred[0])


# ------------------------------------------------------------------- MS-SSIM


def _ms_ssim_reference(x, y, max_val, weights=(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)):
    """MS-SSIM written out in numpy the way tf.image.ssim_multiscale does it:
    11-tap Gaussian σ 1.5, VALID windows, biased statistics, 2×2 average
    pooling (odd sizes padded by the edge), cs of the first scales and SSIM
    of the last, each clipped at 0 and raised to its weight."""
    g = np.exp(-0.5 * (np.arange(11) - 5.0) ** 2 / 1.5**2)
    window = np.outer(g, g) / np.outer(g, g).sum()

    def filt(a):
        return np.einsum("ijkl,kl->ij", sliding_window_view(a, (11, 11)), window)

    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    value = 1.0
    for scale, weight in enumerate(weights):
        if scale:
            x = np.pad(x, ((0, x.shape[0] % 2), (0, x.shape[1] % 2)), mode="edge")
            y = np.pad(y, ((0, y.shape[0] % 2), (0, y.shape[1] % 2)), mode="edge")
            x = x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean((1, 3))
            y = y.reshape(y.shape[0] // 2, 2, y.shape[1] // 2, 2).mean((1, 3))
        mx, my = filt(x), filt(y)
        sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
        term = (lum * cs).mean() if scale == len(weights) - 1 else cs.mean()
        value *= max(term, 0.0) ** weight
    return value


def test_ms_ssim_matches_numpy_reference():
    pytest.importorskip("keras")
    rng = np.random.default_rng(5)
    truth = rng.random((192, 192))
    truth = (truth + np.roll(truth, 1, 0) + np.roll(truth, 1, 1)) / 3.0
    pred = truth + rng.normal(0.0, 0.1, truth.shape)
    ours = metrics.ms_ssim(truth, pred, data_range=1.0)
    assert isinstance(ours, float)
    assert ours == pytest.approx(_ms_ssim_reference(truth, pred, 1.0), abs=2e-4)
    # Default data_range: the truth's span.
    span = truth.max() - truth.min()
    assert metrics.ms_ssim(truth, pred) == pytest.approx(
        _ms_ssim_reference(truth, pred, span), abs=2e-4
    )
    assert metrics.ms_ssim(truth, truth, data_range=1.0) == pytest.approx(1.0, abs=1e-5)


def test_ms_ssim_small_patch_uses_three_scales():
    pytest.importorskip("keras")
    rng = np.random.default_rng(6)
    truth = rng.random((64, 64))
    pred = 0.8 * truth + 0.1 * rng.random((64, 64))
    weights = np.array([0.0448, 0.2856, 0.3001])
    expected = _ms_ssim_reference(truth, pred, 1.0, tuple(weights / weights.sum()))
    value = metrics.ms_ssim(truth, pred, data_range=1.0)
    assert np.isfinite(value)
    assert value == pytest.approx(expected, abs=2e-4)
    with pytest.raises(ValueError, match="dimensions"):
        metrics.ms_ssim(truth[None], pred[None])


def test_ms_ssim_matches_tensorflow(backend):
    if backend != "tensorflow":
        pytest.skip("tf.image.ssim_multiscale is compared on the TensorFlow backend")
    import tensorflow as tf

    rng = np.random.default_rng(7)
    truth = rng.random((200, 190)).astype(np.float32)
    pred = np.clip(truth + rng.normal(0, 0.2, truth.shape), 0, 1).astype(np.float32)
    expected = float(
        tf.image.ssim_multiscale(truth[None, ..., None], pred[None, ..., None], 1.0)[0]
    )
    assert metrics.ms_ssim(truth, pred, data_range=1.0) == pytest.approx(expected, abs=1e-4)


def test_numpy_metrics_and_plots_do_not_import_a_backend():
    # `keras-rmz evaluate` and plotting scripts should not pay for keras
    # until MS-SSIM is asked for; the command line checks its arguments first.
    import subprocess
    import sys

    code = (
        "import sys, keras_rmz.metrics, keras_rmz.plot, keras_rmz.evaluation, keras_rmz.cli.main\n"
        "keras_rmz.cli.main.build_parser()\n"
        "assert 'keras' not in sys.modules, 'keras imported'\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
