"""The baselines and per-plane scoring, against independent computations
(numpy's interp, scikit-image's metrics)."""

import numpy as np
import pytest
import skimage.metrics

from keras_rmz.evaluation import linear_interpolation, nearest_plane, score_planes


def test_linear_interpolation_matches_numpy_interp_pixel_by_pixel():
    rng = np.random.default_rng(0)
    images = rng.random((3, 4, 5)).astype(np.float32)
    input_z = np.array([3.0, 0.0, 1.0])
    output_z = np.array([-1.0, 0.0, 0.25, 1.0, 2.0, 2.9, 3.0, 5.0])
    out = linear_interpolation(images, input_z, output_z)
    assert out.shape == (8, 4, 5) and out.dtype == np.float32
    order = np.argsort(input_z)
    for y in range(4):
        for x in range(5):
            # np.interp clamps to the end values outside the range, as the baseline does.
            expected = np.interp(output_z, input_z[order], images[order, y, x].astype(np.float64))
            np.testing.assert_allclose(out[:, y, x], expected, rtol=1e-6, atol=1e-6)


def test_nearest_plane_takes_the_closest_input_and_the_first_on_a_tie():
    images = np.stack([np.full((2, 2), v) for v in (0.0, 10.0, 4.0)])
    out = nearest_plane(images, [3.0, 0.0, 1.0], [-1.0, 0.4, 0.5, 2.0, 2.6])
    # Ties go to the first of the two in the given order: 0.5 (z = 0 and 1) to z = 0 (value 10),
    # 2.0 (z = 1 and 3) to z = 3 (value 0).
    np.testing.assert_array_equal(out[:, 0, 0], [10.0, 10.0, 10.0, 0.0, 0.0])
    assert nearest_plane(images.astype(np.uint16), [0, 1, 2], [1]).dtype == np.float32
    assert nearest_plane(images.astype(np.float64), [0, 1, 2], [1]).dtype == np.float64


def test_score_planes_matches_scikit_image_with_one_data_range():
    rng = np.random.default_rng(1)
    truth = rng.random((3, 32, 32)) * np.array([1.0, 5.0, 2.0])[:, None, None]
    prediction = truth + 0.1 * rng.standard_normal(truth.shape)
    scores = score_planes(truth, prediction)
    data_range = truth.max() - truth.min()
    assert scores["data_range"] == pytest.approx(data_range)
    for k in range(3):
        assert scores["psnr_db"][k] == pytest.approx(
            skimage.metrics.peak_signal_noise_ratio(truth[k], prediction[k], data_range=data_range), abs=1e-9)
        assert scores["nrmse"][k] == pytest.approx(
            skimage.metrics.normalized_root_mse(truth[k], prediction[k], normalization="euclidean"), rel=1e-9)
    # SSIM with scikit-image's defaults (7 x 7 uniform window) and the shared data range.
    expected_ssim = skimage.metrics.structural_similarity(truth[1], prediction[1], data_range=data_range)
    assert scores["ssim"][1] == pytest.approx(expected_ssim, abs=1e-6)


def test_score_planes_errors_and_all_zero_planes():
    truth = np.zeros((2, 8, 8))
    truth[1] = 1.0
    scores = score_planes(truth, truth + 0.5)
    assert np.isnan(scores["nrmse"][0]) and np.isfinite(scores["nrmse"][1])
    with pytest.raises(ValueError, match="constant.*data_range.*--data-range"):
        score_planes(np.ones((2, 8, 8)), np.ones((2, 8, 8)))
    bad = np.ones((2, 8, 8))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="the prediction holds 1 NaN"):
        score_planes(truth, bad)
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        score_planes(truth, truth[0])
