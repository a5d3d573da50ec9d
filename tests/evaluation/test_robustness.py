"""The paper's robustness tests, driven by numpy stand-in models whose outputs
are known, and checked against the equations computed here independently."""

import itertools
import math

import numpy as np
import pytest

from keras_rmz import evaluation
from keras_rmz import metrics
from tests.evaluation.fake_models import DPMEchoModel
from tests.evaluation.fake_models import InterpolationModel
from tests.evaluation.fake_models import OrderDependentModel
from tests.evaluation.fake_models import WrongShapeModel


@pytest.fixture
def scene():
    """A smooth volume (z-quadratic mixture of two patterns): interpolation
    between inputs has a known, non-zero error between them."""
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 16, 12))
    z_um = np.round(np.arange(0.0, 6.01, 0.5), 6)
    t = (z_um / 6.0)[:, None, None]
    volume = (1 - t) * a + t * b + 0.5 * t * (1 - t) * (a * b)
    input_idx = [1, 6, 10]  # z = 0.5, 3.0, 5.0 µm
    # Given deliberately out of z order.
    order = [2, 0, 1]
    images = volume[input_idx][order]
    input_z = z_um[input_idx][order]
    return dict(volume=volume, z_um=z_um, images=images, input_z=input_z)


def _rmse_planes(x, y):
    return np.sqrt(((x - y) ** 2).reshape(len(x), -1).mean(axis=1))


# -------------------------------------------------------------- permutation


def test_permutation_order_dependent_model_matches_eq_12_13(scene):
    model = OrderDependentModel()
    images, input_z = scene["images"], scene["input_z"]
    output_z, truth = scene["z_um"], scene["volume"]
    result = evaluation.permutation_test(model, images, input_z, output_z, truth)

    assert isinstance(result, evaluation.PermutationResult)
    assert result.permutations.shape == (6, 3)
    assert len(model.calls) == 6
    # Independent computation over S_3 (Eq. 12, 13).
    expected_model = OrderDependentModel()
    rmses, volumes = [], []
    for perm in itertools.permutations(range(3)):
        v = expected_model.reconstruct(images[list(perm)], input_z[list(perm)], output_z)
        volumes.append(v)
        rmses.append(_rmse_planes(v, truth))
    rmses = np.array(rmses)
    mu = rmses.sum(axis=0) / 6
    sigma = np.sqrt(((rmses - mu) ** 2).sum(axis=0) / 6)
    np.testing.assert_allclose(result.rmse, rmses, rtol=1e-12)
    np.testing.assert_allclose(result.mu_rmse, mu, rtol=1e-12)
    np.testing.assert_allclose(result.sigma_rmse, sigma, rtol=1e-9, atol=1e-15)
    assert np.all(result.sigma_rmse > 0)
    np.testing.assert_allclose(result.pixel_std, np.std(volumes, axis=0), atol=1e-9)
    # The sorted order is the one feeding z ascending.
    sorted_perm = result.permutations[result.sorted_index]
    assert np.all(np.diff(input_z[sorted_perm]) > 0)
    np.testing.assert_allclose(result.sorted_rmse, rmses[result.sorted_index])
    # Images travel with their own z (DPMs follow their images).
    for (imgs, zs, _), perm in zip(model.calls, result.permutations):
        np.testing.assert_array_equal(imgs, images[perm])
        np.testing.assert_array_equal(zs, input_z[perm])


def test_permutation_invariant_model_has_zero_sigma_and_nearest_baseline(scene):
    result = evaluation.permutation_test(
        InterpolationModel(), scene["images"], scene["input_z"], scene["z_um"],
        scene["volume"],
    )
    np.testing.assert_allclose(result.sigma_rmse, 0.0, atol=1e-12)
    np.testing.assert_allclose(result.mu_rmse, result.sorted_rmse, atol=1e-12)
    np.testing.assert_allclose(result.pixel_std, 0.0, atol=1e-12)
    # Interpolation is exact at the inputs.
    at_inputs = np.isin(scene["z_um"], scene["input_z"])
    np.testing.assert_allclose(result.mu_rmse[at_inputs], 0.0, atol=1e-12)
    # Nearest-input baseline, computed here.
    z, zin = scene["z_um"], scene["input_z"]
    nearest = scene["images"][np.argmin(np.abs(z[:, None] - zin[None]), axis=1)]
    np.testing.assert_allclose(result.nearest_rmse, _rmse_planes(nearest, scene["volume"]))
    # Between inputs, interpolation beats the nearest plane somewhere.
    assert np.any(result.mu_rmse < result.nearest_rmse - 1e-6)


def test_permutation_roi_box_and_mask_agree(scene):
    args = (OrderDependentModel(), scene["images"], scene["input_z"], scene["z_um"],
            scene["volume"])
    box = evaluation.permutation_test(*args, roi=(2, 10, 3, 9))
    mask = np.zeros((16, 12), dtype=bool)
    mask[2:10, 3:9] = True
    masked = evaluation.permutation_test(*args, roi=mask)
    slices = evaluation.permutation_test(*args, roi=(slice(2, 10), slice(3, 9)))
    np.testing.assert_allclose(box.rmse, masked.rmse)
    np.testing.assert_allclose(box.rmse, slices.rmse)
    whole = evaluation.permutation_test(*args)
    assert not np.allclose(box.rmse, whole.rmse)
    # The ROI RMSE equals the RMSE of the cropped arrays.
    volume = OrderDependentModel().reconstruct(
        scene["images"][box.permutations[0]], scene["input_z"][box.permutations[0]],
        scene["z_um"],
    )
    np.testing.assert_allclose(
        box.rmse[0], _rmse_planes(volume[:, 2:10, 3:9], scene["volume"][:, 2:10, 3:9])
    )


def test_permutation_single_input_and_errors(scene):
    one = evaluation.permutation_test(
        InterpolationModel(), scene["images"][:1], scene["input_z"][:1],
        scene["z_um"], scene["volume"],
    )
    assert one.permutations.shape == (1, 1) and np.all(one.sigma_rmse == 0)
    model = InterpolationModel()
    with pytest.raises(ValueError, match="M <= 7"):
        evaluation.permutation_test(
            model, np.zeros((8, 4, 4)), np.arange(8.0), [0.0], np.zeros((1, 4, 4))
        )
    assert math.factorial(8) > 5040 and not model.calls  # refused before any call
    with pytest.raises(TypeError, match="reconstruct"):
        evaluation.permutation_test(object(), scene["images"], scene["input_z"],
                                 scene["z_um"], scene["volume"])
    with pytest.raises(ValueError, match="truth must have shape"):
        evaluation.permutation_test(InterpolationModel(), scene["images"],
                                 scene["input_z"], scene["z_um"], scene["volume"][:-1])
    with pytest.raises(ValueError, match="one entry per image"):
        evaluation.permutation_test(InterpolationModel(), scene["images"],
                                 scene["input_z"][:2], scene["z_um"], scene["volume"])
    with pytest.raises(ValueError, match="model.reconstruct must return"):
        evaluation.permutation_test(WrongShapeModel(), scene["images"],
                                 scene["input_z"], scene["z_um"], scene["volume"])
    with pytest.raises(ValueError, match="roi"):
        evaluation.permutation_test(InterpolationModel(), scene["images"],
                                 scene["input_z"], scene["z_um"], scene["volume"],
                                 roi=(5, 2, 0, 4))


# -------------------------------------------------------------- repetition


def test_repetition_defaults_follow_fig7(scene):
    images, input_z = scene["images"][:2], scene["input_z"][:2]
    model = InterpolationModel()
    result = evaluation.repetition_test(model, images, input_z, scene["z_um"], scene["volume"])
    assert result.labels == [
        "V(I1)", "V(I1, I1)", "V(I1, I1, I1, I1)", "V(I1, I1, I1, I1, I1, I1)",
        "V(I1, I2)", "V(I2, I1)",
    ]
    assert [len(imgs) for imgs, _, _ in model.calls] == [1, 2, 4, 6, 2, 2]
    # A repetition-invariant model gives I1 everywhere for any repeat count.
    expected_single = _rmse_planes(
        np.broadcast_to(images[0], scene["volume"].shape), scene["volume"]
    )
    for row in range(4):
        np.testing.assert_allclose(result.rmse[row], expected_single, rtol=1e-12)
    np.testing.assert_allclose(result.rmse[4], result.rmse[5])
    assert result.rmse[4].mean() < result.rmse[0].mean()  # a second plane helps


def test_repetition_explicit_sequences_and_order_dependence(scene):
    result = evaluation.repetition_test(
        OrderDependentModel(), scene["images"], scene["input_z"], scene["z_um"],
        scene["volume"], sequences=[(0, 0, 1), (0, 1, 1)], roi=(0, 8, 0, 8),
    )
    assert result.labels == ["V(I1, I1, I2)", "V(I1, I2, I2)"]
    assert result.sequences == [(0, 0, 1), (0, 1, 1)]
    v = OrderDependentModel().reconstruct(
        scene["images"][[0, 0, 1]], scene["input_z"][[0, 0, 1]], scene["z_um"]
    )
    np.testing.assert_allclose(
        result.rmse[0], _rmse_planes(v[:, :8, :8], scene["volume"][:, :8, :8])
    )
    with pytest.raises(ValueError, match="sequences"):
        evaluation.repetition_test(InterpolationModel(), scene["images"], scene["input_z"],
                                scene["z_um"], scene["volume"], sequences=[(0, 3)])
    with pytest.raises(ValueError, match="repeats"):
        evaluation.repetition_test(InterpolationModel(), scene["images"], scene["input_z"],
                                scene["z_um"], scene["volume"], repeats=(0,))
    with pytest.raises(ValueError, match="index"):
        evaluation.repetition_test(InterpolationModel(), scene["images"], scene["input_z"],
                                scene["z_um"], scene["volume"], index=3)


# ---------------------------------------------------------------- DPM noise


def test_dpm_noise_follows_eq_11():
    images = np.ones((2, 4, 4))
    input_z = np.array([1.0, 4.0])
    output_z = np.array([0.0, 2.5, 5.0])
    truth = np.ones((3, 4, 4))
    result = evaluation.dpm_noise_test(
        DPMEchoModel(), images, input_z, output_z, truth,
        sigmas_um=[0.0, 0.5], repeats=3, seed=1, normalization="mean",
    )
    assert result.nrmse.shape == (2, 3, 3)
    assert result.z_noise_um.shape == (2, 3, 2)
    np.testing.assert_array_equal(result.z_noise_um[0], 0.0)
    # The echo model outputs the first input's DPM; with truth = 1 and the
    # mean normalization, NRMSE = |DPM - 1|. Eq. 11: DPM_noised = DPM + z_d.
    for r in range(3):
        dpm = output_z - input_z[0] + result.z_noise_um[1, r, 0]
        np.testing.assert_allclose(result.nrmse[1, r], np.abs(dpm - 1.0), rtol=1e-12)
    np.testing.assert_allclose(
        result.nrmse[0], np.broadcast_to(np.abs(output_z - input_z[0] - 1.0), (3, 3))
    )
    # The offsets are the documented generator's draws.
    expected = np.random.default_rng(1).normal(0.0, 0.5, size=(3, 2))
    np.testing.assert_allclose(result.z_noise_um[1], expected)


def test_dpm_noise_statistics_and_degradation(scene):
    model = InterpolationModel()
    kwargs = dict(sigmas_um=(0.0, 0.2, 1.0), repeats=40, seed=3)
    result = evaluation.dpm_noise_test(
        model, scene["images"], scene["input_z"], scene["z_um"], scene["volume"], **kwargs
    )
    # σ = 0 is reconstructed once, then 40 noisy trials per σ > 0.
    assert len(model.calls) == 1 + 2 * 40
    # Each trial's inputs are the nominal positions minus the drawn offsets.
    noisy_calls = model.calls[1:]
    offsets = result.z_noise_um[1:].reshape(-1, 3)
    for (_, z_fed, _), z_d in zip(noisy_calls, offsets):
        np.testing.assert_allclose(z_fed, scene["input_z"] - z_d)
    # Offsets have the requested spread (120 draws each: ±25 % is > 3 s.e.).
    for s, sigma in enumerate(kwargs["sigmas_um"][1:], start=1):
        assert np.std(result.z_noise_um[s]) == pytest.approx(sigma, rel=0.25)
    # The σ = 0 NRMSE is the clean reconstruction's, and noise hurts on average.
    clean = InterpolationModel().reconstruct(scene["images"], scene["input_z"], scene["z_um"])
    expected_clean = [metrics.nrmse(scene["volume"][k], clean[k]) for k in range(13)]
    np.testing.assert_allclose(result.nrmse[0, 0], expected_clean, rtol=1e-12)
    assert result.nrmse[2].mean() > result.nrmse[1].mean() > result.nrmse[0].mean()
    # Reproducible with a seed, different without the same one.
    again = evaluation.dpm_noise_test(
        InterpolationModel(), scene["images"], scene["input_z"], scene["z_um"],
        scene["volume"], **kwargs,
    )
    np.testing.assert_array_equal(again.nrmse, result.nrmse)
    other = evaluation.dpm_noise_test(
        InterpolationModel(), scene["images"], scene["input_z"], scene["z_um"],
        scene["volume"], **{**kwargs, "seed": 4},
    )
    assert not np.array_equal(other.z_noise_um, result.z_noise_um)


def test_dpm_noise_errors(scene):
    args = (InterpolationModel(), scene["images"], scene["input_z"], scene["z_um"],
            scene["volume"])
    with pytest.raises(ValueError, match="sigmas_um"):
        evaluation.dpm_noise_test(*args, sigmas_um=[-0.1])
    with pytest.raises(ValueError, match="repeats"):
        evaluation.dpm_noise_test(*args, repeats=0)
    with pytest.raises(ValueError, match="normalization"):
        evaluation.dpm_noise_test(*args, normalization="max")
    assert not args[0].calls


# ------------------------------------------------------- non-uniform spacing


def test_nonuniform_spacing_scores_both_input_sets(scene):
    volume, z_um = scene["volume"], scene["z_um"]
    model = InterpolationModel()
    result = evaluation.nonuniform_spacing_test(
        model, volume, z_um, uniform_z=[0.0, 3.0, 6.0], nonuniform_z=[0.0, 1.5, 4.5]
    )
    assert set(result.psnr) == {"uniform", "non-uniform"}
    np.testing.assert_allclose(result.output_z, z_um)
    np.testing.assert_allclose(result.input_z["non-uniform"], [0.0, 1.5, 4.5])
    span = volume.max() - volume.min()
    assert result.data_range == pytest.approx(span)
    for label, zs in (("uniform", [0.0, 3.0, 6.0]), ("non-uniform", [0.0, 1.5, 4.5])):
        idx = [int(np.argmin(np.abs(z_um - z))) for z in zs]
        recon = InterpolationModel().reconstruct(volume[idx], z_um[idx], z_um)
        mse = ((recon - volume) ** 2).reshape(len(z_um), -1).mean(axis=1)
        exact = mse == 0
        np.testing.assert_allclose(
            result.psnr[label][~exact], 10 * np.log10(span**2 / mse[~exact])
        )
        assert np.all(np.isinf(result.psnr[label][exact]))
        assert np.all(np.isin(z_um[exact], zs))
        np.testing.assert_allclose(
            result.nrmse[label],
            [metrics.nrmse(volume[k], recon[k]) for k in range(len(z_um))],
        )
    # The model was fed the planes of the volume at those positions.
    np.testing.assert_array_equal(model.calls[1][0], volume[[0, 3, 9]])


def test_nonuniform_spacing_subset_and_errors(scene):
    volume, z_um = scene["volume"], scene["z_um"]
    result = evaluation.nonuniform_spacing_test(
        InterpolationModel(), volume, z_um, [0.0, 3.0, 6.0], [0.0, 1.5, 4.5],
        output_z=[1.0, 2.0], roi=(0, 8, 0, 8), data_range=1.0,
    )
    assert result.psnr["uniform"].shape == (2,)
    assert result.data_range == 1.0
    with pytest.raises(ValueError, match="planes of the volume"):
        evaluation.nonuniform_spacing_test(
            InterpolationModel(), volume, z_um, [0.0, 3.0], [0.0, 1.25]
        )
    with pytest.raises(ValueError, match="one entry per image"):
        evaluation.nonuniform_spacing_test(
            InterpolationModel(), volume, z_um[:-1], [0.0, 3.0], [0.0, 1.5]
        )
