"""Bead FWHM on synthetic beads of known width, and the histogram KL divergence."""

import numpy as np
import pytest
import scipy.special
import scipy.stats

from keras_rmz import metrics

FWHM_FACTOR = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _gaussian_beads(shape, centres, sigma_y, sigma_x, amplitudes, offset=0.05):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    image = np.full(shape, offset)
    for (cy, cx), a in zip(centres, amplitudes):
        image += a * np.exp(
            -((yy - cy) ** 2) / (2 * sigma_y**2) - (xx - cx) ** 2 / (2 * sigma_x**2)
        )
    return image


def _grid_centres(rng, rows, cols, step, start):
    return [
        (start + i * step + rng.uniform(-0.5, 0.5), start + j * step + rng.uniform(-0.5, 0.5))
        for i in range(rows)
        for j in range(cols)
    ]


def test_recovers_known_fwhm_and_rejects_close_pairs_and_border():
    rng = np.random.default_rng(0)
    pixel_um, sigma_px = 0.08, 2.4  # FWHM = 0.452 µm, like the paper's beads
    shape = (200, 200)
    centres = _grid_centres(rng, 4, 4, step=40, start=30)
    amplitudes = list(rng.uniform(0.5, 1.0, len(centres)))
    # A close pair (0.48 µm apart, closer than min_distance) and a bead cut by
    # the border.
    extra = [(185.0, 60.0), (185.0, 66.0), (2.0, 190.0)]
    image = _gaussian_beads(
        shape, centres + extra, sigma_px, sigma_px, amplitudes + [0.9, 0.9, 0.9]
    )
    image += rng.normal(0.0, 0.01, shape)

    result = metrics.bead_fwhm(image, pixel_um, min_distance_um=1.5)

    assert isinstance(result, metrics.BeadFWHM)
    assert len(result) == len(centres)
    assert result.rejected["neighbour"] == 2
    assert result.rejected["border"] == 1
    expected_um = FWHM_FACTOR * sigma_px * pixel_um
    np.testing.assert_allclose(result.fwhm_um, expected_um, rtol=0.03)
    assert result.mean_fwhm_um == pytest.approx(expected_um, rel=0.01)
    # Every true centre found to sub-pixel accuracy.
    found = result.positions_px
    for cy, cx in centres:
        assert np.min(np.hypot(found[:, 0] - cy, found[:, 1] - cx)) < 0.2
    np.testing.assert_allclose(result.offset, 0.05, atol=0.01)
    assert result.fwhm_um.shape == result.amplitude.shape == (len(centres),)


def test_elliptical_beads_report_x_and_y_separately():
    rng = np.random.default_rng(1)
    centres = _grid_centres(rng, 3, 3, step=30, start=20)
    image = _gaussian_beads((100, 100), centres, 3.0, 2.0, [1.0] * 9)
    image += rng.normal(0.0, 0.005, image.shape)
    result = metrics.bead_fwhm(image, 0.1, min_distance_um=2.5)
    assert len(result) == 9
    np.testing.assert_allclose(result.fwhm_y_um, FWHM_FACTOR * 0.3, rtol=0.03)
    np.testing.assert_allclose(result.fwhm_x_um, FWHM_FACTOR * 0.2, rtol=0.03)
    np.testing.assert_allclose(result.fwhm_um, FWHM_FACTOR * 0.25, rtol=0.03)


def test_pixel_integrated_beads_within_documented_bias():
    # Beads rendered as the integral of the Gaussian over each pixel (what a
    # camera records): σ² grows by 1/12 px², ~0.5 % at σ = 3 px.
    rng = np.random.default_rng(2)
    sigma = 3.0
    centres = _grid_centres(rng, 3, 3, step=30, start=30)
    edges = np.arange(121, dtype=np.float64)
    image = np.zeros((120, 120))
    for cy, cx in centres:
        fy = np.diff(scipy.special.ndtr((edges - cy) / sigma))
        fx = np.diff(scipy.special.ndtr((edges - cx) / sigma))
        image += np.outer(fy, fx) * 2 * np.pi * sigma**2
    result = metrics.bead_fwhm(image + rng.normal(0, 0.005, image.shape), 0.1,
                               min_distance_um=2.5)
    assert len(result) == 9
    expected = FWHM_FACTOR * np.sqrt(sigma**2 + 1 / 12) * 0.1
    np.testing.assert_allclose(result.fwhm_um, expected, rtol=0.02)


def test_threshold_and_window_controls():
    rng = np.random.default_rng(3)
    centres = [(30.0, 30.0), (30.0, 80.0), (80.0, 30.0), (80.0, 80.0)]
    image = _gaussian_beads((110, 110), centres, 2.0, 2.0, [1.0, 1.0, 0.2, 0.2])
    image += rng.normal(0, 0.005, image.shape)
    assert len(metrics.bead_fwhm(image, 0.1)) == 4
    bright_only = metrics.bead_fwhm(image, 0.1, threshold=0.5)
    assert len(bright_only) == 2
    np.testing.assert_allclose(np.sort(bright_only.positions_px[:, 1]), [30, 80], atol=0.2)
    # A window of ±2 px cannot hold a σ = 2 px bead: rejected, and said why.
    narrow = metrics.bead_fwhm(image, 0.1, fit_window_px=5)
    assert len(narrow) == 0
    assert narrow.rejected["window"] + narrow.rejected["fit"] == 4
    assert np.isnan(narrow.mean_fwhm_um)


def test_no_beads_gives_empty_result():
    rng = np.random.default_rng(4)
    result = metrics.bead_fwhm(rng.normal(0, 1, (64, 64)), 0.1, threshold=100.0)
    assert len(result) == 0
    assert result.fwhm_um.shape == (0,) and result.positions_px.shape == (0, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image=np.zeros((3, 8, 8)), pixel_um=0.1), "2D array"),
        (dict(image=np.zeros((8, 8)), pixel_um=0.0), "pixel_um"),
        (dict(image=np.zeros((8, 8)), pixel_um=0.1, min_distance_um=-1), "min_distance_um"),
        (dict(image=np.zeros((8, 8)), pixel_um=0.1, fit_window_px=6), "odd integer"),
        (dict(image=np.full((8, 8), np.nan), pixel_um=0.1), "finite"),
    ],
)
def test_bead_fwhm_rejects_bad_input(kwargs, match):
    image = kwargs.pop("image")
    pixel_um = kwargs.pop("pixel_um")
    with pytest.raises(ValueError, match=match):
        metrics.bead_fwhm(image, pixel_um, **kwargs)


def test_real_confocal_beads(shared_data):
    tifffile = pytest.importorskip("tifffile")
    stack = tifffile.imread(shared_data / "beads_confocal_imagej.tif")
    # Brightest plane = focal plane of the beads; 0.0225 µm pixels (README).
    plane = stack[np.argmax(stack.reshape(stack.shape[0], -1).sum(1))]
    result = metrics.bead_fwhm(plane, 0.0225, min_distance_um=0.5)
    assert len(result) == 4
    # Confocal, high-NA: lateral FWHM of sub-resolution beads ~0.2 µm, and
    # the same for every bead of one image.
    assert np.all((result.fwhm_um > 0.12) & (result.fwhm_um < 0.35))
    assert result.fwhm_um.std() / result.fwhm_um.mean() < 0.1


# ---------------------------------------------------------------- KL divergence


def test_kl_matches_scipy_entropy():
    rng = np.random.default_rng(5)
    a = rng.normal(0.44, 0.03, 88)
    b = rng.normal(0.42, 0.05, 80)
    edges = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), 16)
    eps = 1e-6
    p = np.histogram(a, edges)[0] / a.size + eps
    q = np.histogram(b, edges)[0] / b.size + eps
    expected = scipy.stats.entropy(p, q)  # normalizes p and q itself
    assert metrics.kl_divergence(a, b, bins=15, epsilon=eps) == pytest.approx(expected)
    assert metrics.kl_divergence(a, b, bins=edges, epsilon=eps) == pytest.approx(expected)
    # Explicit formula, smoothed probabilities.
    ps = (np.histogram(a, edges)[0] / a.size + eps) / (1 + 15 * eps)
    qs = (np.histogram(b, edges)[0] / b.size + eps) / (1 + 15 * eps)
    assert metrics.kl_divergence(a, b, bins=15) == pytest.approx(np.sum(ps * np.log(ps / qs)))


def test_kl_properties():
    rng = np.random.default_rng(6)
    a = rng.normal(0.44, 0.03, 200)
    b = rng.normal(0.40, 0.03, 200)
    assert metrics.kl_divergence(a, a) == pytest.approx(0.0, abs=1e-12)
    assert metrics.kl_divergence(a, b) > 0
    assert metrics.kl_divergence(a, b) != pytest.approx(metrics.kl_divergence(b, a))
    # Disjoint supports: infinite without smoothing, large but finite with it.
    assert metrics.kl_divergence([1.0, 1.1], [2.0, 2.1], bins=4, epsilon=0.0) == np.inf
    finite = metrics.kl_divergence([1.0, 1.1], [2.0, 2.1], bins=4)
    assert np.isfinite(finite) and finite > 5
    # A closer sample scores lower against the reference.
    near = rng.normal(0.44, 0.03, 200)
    assert metrics.kl_divergence(a, near, bins=10) < metrics.kl_divergence(a, b, bins=10)


def test_kl_range_and_errors():
    a = np.array([0.3, 0.4, 0.5, 0.9])
    b = np.array([0.3, 0.45, 0.5])
    # Values outside an explicit range are dropped (0.9 here).
    assert metrics.kl_divergence(a, b, bins=2, range=(0.25, 0.55)) == pytest.approx(
        metrics.kl_divergence(a[:3], b, bins=2, range=(0.25, 0.55))
    )
    with pytest.raises(ValueError, match="falls inside"):
        metrics.kl_divergence(a, b, bins=2, range=(2.0, 3.0))
    with pytest.raises(ValueError, match="1D"):
        metrics.kl_divergence([], b)
    with pytest.raises(ValueError, match="bins"):
        metrics.kl_divergence(a, b, bins=0)
    with pytest.raises(ValueError, match="epsilon"):
        metrics.kl_divergence(a, b, epsilon=-1.0)
    with pytest.raises(ValueError, match="increasing"):
        metrics.kl_divergence(a, b, bins=[0.5, 0.4, 0.6])


def test_kl_bandwidth_matches_gaussian_kl():
    # Two tight samples d apart, each value spread by a Gaussian of σ = h:
    # the densities are N(0.30, h²) and N(0.36, h²), whose KL divergence is
    # d² / (2 h²) (the closed form for equal variances).
    h, d = 0.02, 0.06
    a = np.full(40, 0.30)
    b = np.full(25, 0.30 + d)
    edges = np.linspace(0.0, 0.7, 3501)  # fine bins: the sum approaches the integral
    expected = d**2 / (2 * h**2)
    assert metrics.kl_divergence(a, b, bins=edges, bandwidth=h) == pytest.approx(expected, rel=1e-3)
    # Samples with a spread: the kernels add their variance to the sample's.
    rng = np.random.default_rng(11)
    a = 0.30 + 0.01 * rng.standard_normal(20000)
    b = 0.33 + 0.01 * rng.standard_normal(20000)
    var = 0.01**2 + h**2
    assert metrics.kl_divergence(a, b, bins=edges, bandwidth=h) == pytest.approx(0.03**2 / (2 * var), rel=0.03)


def test_kl_bandwidth_ranks_methods_where_plain_bins_saturate():
    # The reference sits in one 0.02-wide bin; both methods miss it. Plain
    # histograms give both the same ~ln(1/ε); the kernel version grows with
    # the shift.
    edges = np.arange(0.15, 0.9501, 0.02)
    truth = np.full(30, 0.231)
    closer = np.full(30, 0.341)
    farther = np.full(30, 0.374)
    plain_close = metrics.kl_divergence(truth, closer, bins=edges)
    plain_far = metrics.kl_divergence(truth, farther, bins=edges)
    assert plain_close == pytest.approx(plain_far)
    soft_close = metrics.kl_divergence(truth, closer, bins=edges, bandwidth=0.02)
    soft_far = metrics.kl_divergence(truth, farther, bins=edges, bandwidth=0.02)
    assert np.isfinite(soft_far) and soft_far > soft_close > 0
    assert metrics.kl_divergence(truth, truth, bins=edges, bandwidth=0.02) == pytest.approx(0.0, abs=1e-12)
    for bad in (0.0, -0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="bandwidth"):
            metrics.kl_divergence(truth, closer, bandwidth=bad)
