"""Domain randomization: the named distribution, its draws, and the stacks made from them."""

import numpy as np
import pytest

from keras_rmz.simulate import (DISTRIBUTIONS, Camera, describe_distribution, draw_parameters, randomized_pair,
                                randomized_stack, simulate_stack)
from keras_rmz.simulate.randomize import _IMMERSIONS

SMALL = dict(shape=(9, 40, 40), z_step_um=0.4, pixel_um=0.1)


def _within(value, spec):
    if isinstance(spec, str):
        return value == spec
    if isinstance(spec, list):
        return value in spec
    low, high = spec[-2:]
    return low <= value <= high


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_draws_stay_in_the_documented_ranges_and_cover_every_kind(name):
    spec = DISTRIBUTIONS[name]
    kinds, immersions = set(), set()
    for seed in range(300):
        p = draw_parameters(name, seed)
        kinds.add(p["sample"])
        immersions.add(p["immersion"])
        sample = spec["samples"][p["sample"]]
        assert p["sample_kind"] == sample["sample"]
        assert _within(p["density_per_um3"], sample["density_per_um3"])
        for key, value in p["sample_options"].items():
            assert _within(value, sample["options"][key]), key
        medium = _IMMERSIONS[p["immersion"]]
        assert p["n_immersion"] == medium["n_immersion"] and p["na"] < p["n_immersion"]
        assert _within(p["na"], medium["na"]) and _within(p["n_sample"], medium["n_sample"])
        for key in ("emission_wavelength_um", "depth_um", "pixel_um", "haze_fraction", "illumination", "bleaching",
                    "brightness", "axial_margin_um", "pinhole_au"):
            assert _within(p[key], spec[key]), key
        assert 0.015 <= p["emission_wavelength_um"] - p["excitation_wavelength_um"] <= 0.045
        for key in ("offset_counts", "gain_counts_per_photon", "read_noise_counts", "background_photons"):
            assert _within(p["camera"][key], spec[key]), key
    assert kinds == set(spec["samples"]) and immersions == {"oil", "water", "silicone"}
    # The ranges: NA 1.1-1.49, emission 450-680 nm, pixels 0.05-0.25 µm.
    nas = [draw_parameters(name, s)["na"] for s in range(300)]
    assert 1.1 <= min(nas) < 1.15 and 1.45 < max(nas) <= 1.49


def test_the_bead_distribution_is_widefield_v1_with_only_its_beads():
    wide, beads = DISTRIBUTIONS["widefield-v1"], DISTRIBUTIONS["beads-v1"]
    assert {k: v for k, v in beads.items() if k not in ("samples", "description")} == \
        {k: v for k, v in wide.items() if k not in ("samples", "description")}
    assert set(beads["samples"]) == {"beads/sparse", "beads/dense"}
    for kind, sample in beads["samples"].items():
        assert {**sample, "weight": None} == {**wide["samples"][kind], "weight": None}


def test_the_same_seed_draws_the_same_microscope_and_another_seed_another():
    assert draw_parameters("widefield-v1", 7) == draw_parameters("widefield-v1", 7)
    assert draw_parameters("widefield-v1", 7) != draw_parameters("widefield-v1", 8)


def test_the_stack_records_its_draw_and_has_the_requested_grid():
    stack = randomized_stack("widefield-v1", seed=5, **SMALL)
    assert stack.data.shape == (9, 40, 40) and stack.data.dtype == np.float32
    assert stack.pixel_um == 0.1
    np.testing.assert_allclose(stack.z, np.arange(9) * 0.4)
    record = stack.metadata["randomization"]
    assert record["distribution"] == "widefield-v1" and record["seed"] == 5
    assert record["parameters"] == draw_parameters("widefield-v1", 5)
    assert stack.metadata["simulated_pixel_um"] == record["parameters"]["pixel_um"]
    assert stack.metadata["optics"]["na"] == pytest.approx(record["parameters"]["na"])


def test_the_stack_is_simulate_stack_at_the_drawn_settings_resampled():
    """randomized_stack is simulate_stack with the drawn microscope, at the
    drawn pixel size, resampled to the requested one: same field of view."""
    from skimage.transform import resize

    seed = next(s for s in range(50) if draw_parameters("widefield-v1", s)["sample_kind"] == "beads")
    p = draw_parameters("widefield-v1", seed)
    stack = randomized_stack("widefield-v1", seed=seed, noise=False, **SMALL)
    grid = tuple(int(round(40 * 0.1 / p["pixel_um"])) for _ in range(2))
    raw = simulate_stack(
        "beads", shape=(9, *grid), z_step_um=0.4, pixel_um=p["pixel_um"], density_per_um3=p["density_per_um3"],
        noise=False, seed=seed, camera=Camera(**p["camera"]), margin_um=(p["axial_margin_um"], 3.2),
        brightness=p["brightness"],
        # Haze relative to beads' mean density: 30 photons/µm³ at 0.005 beads/µm³.
        haze_photons_per_um3=p["haze_fraction"] * 30.0 * p["density_per_um3"] / 0.005 * p["brightness"],
        illumination=p["illumination"], bleaching=p["bleaching"], na=p["na"], n_immersion=p["n_immersion"],
        n_sample=p["n_sample"], depth_um=p["depth_um"], emission_wavelength_um=p["emission_wavelength_um"],
        excitation_wavelength_um=p["excitation_wavelength_um"],
    )
    expected = resize(raw.data, (9, 40, 40), order=1, mode="reflect",
                      anti_aliasing=grid[0] > 40, preserve_range=True)
    np.testing.assert_allclose(stack.data, expected, rtol=1e-5, atol=1e-3)


def test_a_pair_is_a_noisy_stack_over_its_noise_free_twin():
    """Noise-free twin = randomized_stack(noise=False); the noisy one has the
    camera's statistics around it: the photon transfer curve, mean offset +
    gain·photons and variance gain²·photons + read noise² (+1/12 for the
    rounding to counts)."""
    seed = 3
    noisy, clean = randomized_pair("widefield-v1", seed=seed, **SMALL)
    np.testing.assert_array_equal(clean.data, randomized_stack("widefield-v1", seed=seed, noise=False, **SMALL).data)
    assert noisy.metadata["noise"] is True and clean.metadata["noise"] is False
    assert noisy.data.shape == clean.data.shape == (9, 40, 40)
    # At the drawn pixel size nothing is resampled, so the noise is exactly the camera's.
    p = draw_parameters("widefield-v1", seed)
    camera = p["camera"]
    noisy, clean = randomized_pair("widefield-v1", seed=seed, shape=(9, 40, 40), z_step_um=0.4, pixel_um=p["pixel_um"])
    residual = noisy.data.astype(np.float64) - clean.data
    photons = (clean.data - camera["offset_counts"]) / camera["gain_counts_per_photon"]
    variance = camera["gain_counts_per_photon"] ** 2 * photons + camera["read_noise_counts"] ** 2 + 1 / 12
    assert abs(residual.mean()) < 4 * np.sqrt(variance.mean() / residual.size)
    np.testing.assert_allclose(residual.var(), variance.mean(), rtol=0.05)


def test_pairs_for_recurrent_mz_plus_image_the_same_object():
    wide = randomized_stack("widefield-v1", "widefield", seed=4, noise=False, **SMALL)
    conf = randomized_stack("widefield-v1", "confocal", seed=4, noise=False, **SMALL)
    assert wide.metadata["randomization"] == conf.metadata["randomization"]
    assert conf.metadata["modality"] == "confocal"
    # The same object: the two stacks' in-focus structure is correlated.
    a, b = wide.data - wide.data.mean(), conf.data - conf.data.mean()
    assert float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())) > 0.3


def test_describe_distribution_gives_the_card_its_ranges():
    record = describe_distribution("widefield-v1")
    assert record["name"] == "widefield-v1" and "filaments" in record["description"]
    assert record["immersion"]["oil"]["na"] == (1.3, 1.49) and record["immersion"]["oil"]["weight"] == 0.6
    record["samples"]["spots"]["weight"] = 0  # a copy: the distribution itself is unchanged
    assert DISTRIBUTIONS["widefield-v1"]["samples"]["spots"]["weight"] == 0.22


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: draw_parameters("confocal-v9", 0), "unknown distribution 'confocal-v9'; known: \\['beads-v1', 'widefield-v1'\\]"),
        (lambda: draw_parameters("widefield-v1", -1), "seed must be a non-negative integer"),
        (lambda: randomized_stack(shape=(9, 40)), "shape must be three positive integers"),
        (lambda: randomized_stack(pixel_um=0), "pixel_um must be a finite number > 0"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
