"""Camera model: photon statistics, read noise, offset, 12-bit clipping."""

import numpy as np
import pytest

from keras_rmz.simulate import Camera


def test_shot_noise_mean_equals_variance_after_offset_and_read_noise():
    camera = Camera(offset_counts=100.0, gain_counts_per_photon=1.0, read_noise_counts=2.0, background_photons=0.0)
    photons = np.full((400, 500), 300.0)  # flat field, 200k pixels
    counts = camera.acquire(photons, np.random.default_rng(0)).astype(np.float64)
    signal = counts - 100.0
    # Rounding to integer counts adds 1/12 to the variance.
    shot_variance = signal.var() - 2.0**2 - 1.0 / 12.0
    assert signal.mean() == pytest.approx(300.0, rel=0.002)
    assert shot_variance == pytest.approx(signal.mean(), rel=0.02)  # Poisson: variance = mean


def test_gain_scales_mean_by_gain_and_variance_by_gain_squared():
    camera = Camera(offset_counts=50.0, gain_counts_per_photon=2.5, read_noise_counts=3.0, background_photons=20.0)
    photons = np.full(200_000, 80.0)
    counts = camera.acquire(photons, np.random.default_rng(1)).astype(np.float64)
    detected = 80.0 + 20.0
    assert (counts.mean() - 50.0) / 2.5 == pytest.approx(detected, rel=0.003)
    assert (counts.var() - 9.0 - 1.0 / 12.0) / 2.5**2 == pytest.approx(detected, rel=0.03)


def test_counts_are_12_bit_uint16_and_clipped():
    camera = Camera()
    photons = np.array([0.0, 1e3, 1e6, 1e9])
    counts = camera.acquire(photons, np.random.default_rng(2))
    assert counts.dtype == np.uint16
    assert counts.max() == 4095 and counts[2] == 4095 and counts[3] == 4095
    assert 90 <= counts[0] <= 130  # offset 100 + 10 background photons
    dark_camera = Camera(offset_counts=0.0, read_noise_counts=5.0, background_photons=0.0)
    dark = dark_camera.acquire(np.zeros(10_000), np.random.default_rng(3))
    assert dark.min() == 0  # negative read noise clipped at 0, not wrapped around
    assert dark.max() < 40


def test_expected_counts_are_noise_free_float32():
    camera = Camera(offset_counts=100.0, gain_counts_per_photon=2.0, background_photons=10.0)
    expected = camera.expected_counts(np.array([[0.0, 5.0], [100.0, 1e5]]))
    assert expected.dtype == np.float32
    np.testing.assert_allclose(expected, [[120.0, 130.0], [320.0, 200120.0]])


def test_same_rng_seed_same_counts():
    photons = np.random.default_rng(9).uniform(0, 1000, size=(32, 32))
    a = Camera().acquire(photons, np.random.default_rng(5))
    b = Camera().acquire(photons, np.random.default_rng(5))
    c = Camera().acquire(photons, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(offset_counts=-1.0),
        dict(gain_counts_per_photon=0.0),
        dict(read_noise_counts=float("nan")),
        dict(background_photons=-2.0),
        dict(bit_depth=17),
        dict(bit_depth=12.0),
    ],
)
def test_bad_camera_parameters_raise(kwargs):
    with pytest.raises(ValueError, match="Camera"):
        Camera(**kwargs)


def test_negative_photons_raise():
    with pytest.raises(ValueError, match="photons must be finite and >= 0"):
        Camera().acquire(np.array([-1.0]), np.random.default_rng(0))


def test_to_dict_records_the_noise_model():
    record = Camera(read_noise_counts=2.0).to_dict()
    assert record["type"] == "poisson+gaussian"
    assert record["read_noise_counts"] == 2.0 and record["bit_depth"] == 12 and record["offset_counts"] == 100.0
