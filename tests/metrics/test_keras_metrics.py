import keras
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from keras_rmz.metrics.keras_metrics import PSNR, SSIM, psnr, ssim
from tests.helpers import assert_config_roundtrip, to_numpy
from tests.training.training_testing import numpy_psnr


def _pair(shape=(3, 24, 24, 1), seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.random(shape).astype("float32")
    # Values beyond [0, 1] are kept: normalized microscopy exceeds 1.
    pred = (truth + 0.1 * rng.standard_normal(shape)).astype("float32")
    return truth, pred


def test_psnr_matches_numpy_per_image():
    truth, pred = _pair()
    actual = to_numpy(psnr(truth, pred))
    assert actual.shape == (3,)
    np.testing.assert_allclose(actual, numpy_psnr(truth, pred), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(psnr(truth, pred, data_range=2.0)), numpy_psnr(truth, pred, 2.0), rtol=1e-5)


def test_psnr_hand_value_and_perfect_reconstruction():
    # MSE = 0.01 -> 20 dB; a perfect image is capped at 100 dB, not inf.
    truth = np.zeros((2, 4, 4, 1), "float32")
    pred = np.stack([np.full((4, 4, 1), 0.1), np.zeros((4, 4, 1))]).astype("float32")
    np.testing.assert_allclose(to_numpy(psnr(truth, pred)), [20.0, 100.0], rtol=1e-5)


def test_ssim_matches_scikit_image():
    truth, pred = _pair()
    actual = to_numpy(ssim(truth, pred))
    expected = [
        structural_similarity(
            t[..., 0].astype(np.float64),
            p[..., 0].astype(np.float64),
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for t, p in zip(truth, pred)
    ]
    np.testing.assert_allclose(actual, expected, atol=2e-4)


def test_ssim_small_images_use_a_smaller_window():
    truth, pred = _pair(shape=(2, 7, 9, 1))
    actual = to_numpy(ssim(truth, pred))
    assert actual.shape == (2,) and np.all(np.isfinite(actual))
    np.testing.assert_allclose(to_numpy(ssim(truth, truth)), [1.0, 1.0], atol=1e-5)


def test_metric_classes_average_over_images():
    truth, pred = _pair()
    metric = PSNR()
    metric.update_state(truth[:2], pred[:2])
    metric.update_state(truth[2:], pred[2:])
    np.testing.assert_allclose(float(metric.result()), numpy_psnr(truth, pred).mean(), rtol=1e-5)
    metric = SSIM()
    metric.update_state(truth, pred)
    np.testing.assert_allclose(float(metric.result()), to_numpy(ssim(truth, pred)).mean(), rtol=1e-5)


@pytest.mark.parametrize("cls", [PSNR, SSIM])
def test_config_roundtrip_and_direction(cls):
    clone = assert_config_roundtrip(cls(data_range=2.0, name="m"))
    assert clone.data_range == 2.0 and clone.name == "m"
    assert clone._direction == "up"  # what keras callbacks read for mode="auto"
    restored = keras.metrics.deserialize(keras.metrics.serialize(cls()))
    assert isinstance(restored, cls)


@pytest.mark.parametrize("kwargs", [{"data_range": 0}, {"data_range": -1.0}, {"data_range": True}])
def test_bad_data_range(kwargs):
    for cls in (PSNR, SSIM):
        with pytest.raises(ValueError, match="data_range must be a number > 0"):
            cls(**kwargs)


def test_bad_filter_size_and_shapes():
    with pytest.raises(ValueError, match="filter_size must be an odd integer"):
        SSIM(filter_size=4)
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        ssim(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4)))
