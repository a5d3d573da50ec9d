"""simulate_stack end to end: imaging physics, haze, pairing, noise, metadata.

Expected FWHMs come from tests/simulate/reference_optics.py (closed forms,
independent of keras_rmz): wide-field lateral 0.5145 λ/NA = 0.2260 µm and
axial 0.6057 µm (closed-form on-axis integral) at 615 nm, NA 1.4, n 1.515;
tolerance 1 %.
"""

import numpy as np
import pytest
import scipy.signal

from keras_rmz.io import Stack
from keras_rmz.simulate import Camera, confocal_psf, sample_object, simulate_stack, widefield_psf
from keras_rmz.simulate.samples import BEAD_PHOTONS
from tests.simulate import reference_optics as ref

DARK = Camera(offset_counts=0.0, background_photons=0.0)


def _bead_stack(modality, **kwargs):
    # One bead on a voxel centre of a fine grid (0.01 µm pixels, 0.02 µm steps).
    args = dict(
        shape=(81, 3, 121),
        z_step_um=0.02,
        pixel_um=0.01,
        noise=False,
        seed=0,
        camera=DARK,
        margin_um=(0.0, 0.0),
        positions_um=[[0.8, 0.01, 0.6]],
    )
    args.update(kwargs)
    return simulate_stack("beads", modality, **args)


def test_isolated_bead_has_the_expected_lateral_and_axial_fwhm():
    stack = _bead_stack("widefield")
    data = stack.data
    assert data.dtype == np.float32
    assert np.unravel_index(np.argmax(data), data.shape) == (40, 1, 60)
    lateral = ref.fwhm(data[40, 1, :], 0.01)
    axial = ref.fwhm(data[:, 1, 60], 0.02)
    assert lateral == pytest.approx(ref.airy_lateral_fwhm_um(0.615, 1.4), rel=0.01)
    assert axial == pytest.approx(ref.axial_fwhm_um(0.615, 1.4, 1.515), rel=0.01)
    # The in-focus plane holds the bead's photons as the Airy peak says: π (NA/λ)² · pixel².
    assert data[40, 1, 60] == pytest.approx(BEAD_PHOTONS * np.pi * (1.4 / 0.615) ** 2 * 0.01**2, rel=0.01)


def test_confocal_bead_is_shorter_and_not_wider_than_widefield():
    wide = _bead_stack("widefield").data
    conf = _bead_stack("confocal").data
    assert ref.fwhm(conf[:, 1, 60], 0.02) < 0.85 * ref.fwhm(wide[:, 1, 60], 0.02)
    assert ref.fwhm(conf[40, 1, :], 0.01) <= ref.fwhm(wide[40, 1, :], 0.01)
    assert conf[40, 1, 60] == pytest.approx(wide[40, 1, 60], rel=1e-3)  # same in-focus peak


def _independent_image(volume, pad, out_shape, psf_volume):
    """Linear convolution by scipy.signal.fftconvolve, then the crop."""
    full = scipy.signal.fftconvolve(volume.astype(np.float64), psf_volume.astype(np.float64), mode="full")
    centre = [n // 2 for n in psf_volume.shape]
    crop = tuple(slice(c + p, c + p + n) for c, p, n in zip(centre, pad, out_shape))
    return full[crop]


@pytest.mark.parametrize(
    "sample, shape, z_step, pixel, margin, density, gain",
    [
        ("beads", (8, 24, 20), 0.25, 0.1, (0.5, 0.6), 0.2, 1.0),
        ("nuclei", (6, 20, 24), 0.5, 0.2, (1.0, 1.0), 0.01, 4.0),
    ],
)
def test_modalities_image_the_same_object(sample, shape, z_step, pixel, margin, density, gain):
    """Paired stacks: both modalities are this seed's object convolved with their PSF."""
    args = dict(
        shape=shape, z_step_um=z_step, pixel_um=pixel, density_per_um3=density, noise=False, seed=11, camera=DARK, margin_um=margin
    )
    colours = {"emission_wavelength_um": 0.519, "excitation_wavelength_um": 0.495} if sample == "nuclei" else {}
    volume, pad, info = sample_object(sample, shape, z_step, pixel, density, seed=11, margin_um=margin)
    assert volume.sum() > 0
    span = [2 * n + 1 for n in volume.shape]  # every object-to-output offset
    for modality, psf_fn, scale in (("widefield", widefield_psf, 1.0), ("confocal", confocal_psf, gain)):
        stack = simulate_stack(sample, modality, **args)
        psf_volume = psf_fn(tuple(span), pixel_um=pixel, z_step_um=z_step, **colours)
        expected = scale * _independent_image(volume, pad, shape, psf_volume)
        np.testing.assert_allclose(stack.data, expected, rtol=1e-4, atol=1e-4 * expected.max())
        assert stack.metadata["num_objects"] == (len(info["positions_um"]) if sample == "beads" else len(info["centers_um"]))


def test_haze_from_beads_outside_the_field_and_z_range_reaches_inside():
    shape, z_step, pixel = (11, 32, 32), 0.2, 0.1  # field: z 0..2 µm, x, y 0..3.1 µm
    # On voxel centres: 1.5 µm left of the field; 2.6 µm below the last plane.
    outside = [[1.0, 1.6, -1.5], [4.6, 1.6, 1.6]]
    stack = simulate_stack(
        "beads", "widefield", shape=shape, z_step_um=z_step, pixel_um=pixel, noise=False, seed=0, camera=DARK,
        margin_um=(3.0, 2.0), positions_um=outside,
    )
    data = stack.data
    assert np.all(data > 0)
    # Pixel (z=0, y=1.6, x=0 µm): the left bead is 1.5 µm away laterally at
    # dz = -1 µm, the deep one 1.6 µm away at dz = -4.6 µm. Quadrature per bead.
    expected = BEAD_PHOTONS * pixel**2 * (
        ref.kirchhoff_intensity(1.5, -1.0, 0.615, 1.4, 1.515) + ref.kirchhoff_intensity(1.6, -4.6, 0.615, 1.4, 1.515)
    )
    assert data[0, 16, 0] == pytest.approx(expected, rel=2e-3)
    # Without a margin those beads are not allowed at all (no silent cut-off).
    with pytest.raises(ValueError, match="inside the padded grid"):
        simulate_stack("beads", shape=shape, z_step_um=z_step, margin_um=(0.0, 0.0), positions_um=outside)


def test_random_beads_in_the_margin_still_light_the_field():
    # A bead density so low that the field itself is almost surely empty:
    # the light inside then comes from the margin.
    args = dict(shape=(5, 16, 16), z_step_um=0.2, pixel_um=0.1, noise=False, camera=DARK)
    volume, pad, info = sample_object("beads", args["shape"], 0.2, 0.1, 0.02, seed=3)
    in_field = np.all((info["positions_um"] >= 0) & (info["positions_um"] <= [0.8, 1.5, 1.5]), axis=1)
    assert len(info["positions_um"]) > 0 and not np.any(in_field)
    assert simulate_stack("beads", density_per_um3=0.02, seed=3, **args).data.min() > 0


def test_same_seed_same_stack_and_different_seed_different_stack():
    args = dict(shape=(6, 24, 24), z_step_um=0.2, margin_um=(0.4, 0.4), density_per_um3=0.5)
    a = simulate_stack("beads", seed=5, **args)
    b = simulate_stack("beads", seed=5, **args)
    c = simulate_stack("beads", seed=6, **args)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    assert a.metadata["seed"] == 5


def test_noise_streams_are_separate_from_the_object():
    args = dict(shape=(6, 24, 24), z_step_um=0.2, margin_um=(0.4, 0.4), density_per_um3=0.5, seed=8)
    clean_wide = simulate_stack("beads", "widefield", noise=False, **args)
    noisy_wide = simulate_stack("beads", "widefield", noise=True, **args)
    noisy_conf = simulate_stack("beads", "confocal", noise=True, **args)
    assert noisy_wide.data.dtype == np.uint16 and noisy_wide.data.max() <= 4095
    # Noise is zero-mean around the expected counts.
    residual = noisy_wide.data.astype(np.float64) - clean_wide.data
    assert abs(residual.mean()) < 0.5
    assert residual.std() == pytest.approx(np.sqrt((clean_wide.data - 100.0).mean() + 1.6**2 + 1 / 12), rel=0.1)
    # Seed None draws a seed, records it, and the record remakes the stack.
    drawn = simulate_stack("beads", noise=True, **{**args, "seed": None})
    again = simulate_stack("beads", noise=True, **{**args, "seed": drawn.metadata["seed"]})
    np.testing.assert_array_equal(drawn.data, again.data)
    assert noisy_conf.metadata["seed"] == noisy_wide.metadata["seed"]


def test_bead_count_in_stack_follows_density():
    args = dict(shape=(10, 32, 32), z_step_um=0.2, pixel_um=0.1, margin_um=(0.0, 0.0), noise=False)
    volume_um3 = 10 * 0.2 * 32 * 0.1 * 32 * 0.1
    for density in (0.05, 0.2):
        counts = [
            simulate_stack("beads", density_per_um3=density, seed=s, **args).metadata["num_objects"] for s in range(12)
        ]
        assert abs(np.mean(counts) - density * volume_um3) < 4 * np.sqrt(density * volume_um3 / 12)


def test_stack_coordinates_and_metadata():
    stack = simulate_stack(
        "nuclei", "confocal", shape=(7, 20, 20), z_step_um=0.3, pixel_um=0.15, seed=2, margin_um=(0.5, 0.5)
    )
    assert isinstance(stack, Stack)
    np.testing.assert_allclose(stack.z, np.arange(7) * 0.3)
    assert stack.pixel_um == 0.15
    meta = stack.metadata
    assert meta["sample"] == "nuclei" and meta["modality"] == "confocal" and meta["seed"] == 2
    assert meta["optics"]["na"] == 1.4 and meta["optics"]["n_immersion"] == 1.515
    assert meta["optics"]["emission_wavelength_um"] == 0.519 and meta["optics"]["excitation_wavelength_um"] == 0.495
    assert meta["optics"]["pinhole_au"] == 1.0
    assert meta["noise_model"]["type"] == "poisson+gaussian" and meta["noise_model"]["bit_depth"] == 12
    assert "truth" not in meta
    beads = simulate_stack("beads", shape=(3, 8, 8), seed=0, margin_um=(0.0, 0.0))
    assert beads.metadata["optics"]["emission_wavelength_um"] == 0.615
    np.testing.assert_allclose(beads.z, [0.0, 0.1, 0.2])  # beads default: 0.1 µm steps


def test_default_beads_show_tens_of_beads():
    volume, pad, info = sample_object("beads", seed=0)  # 101 x 256 x 256 at 0.1 µm
    z, y, x = info["positions_um"].T
    in_field = (z >= 0) & (z <= 10.0) & (y >= 0) & (y <= 25.6) & (x >= 0) & (x <= 25.6)
    assert 15 <= in_field.sum() <= 80


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(sample="cells"), ValueError, "sample must be one of"),
        (dict(modality="sted"), ValueError, "modality must be one of"),
        (dict(shape=(4, 16)), ValueError, "shape must be three positive integers"),
        (dict(z_step_um=0.0), ValueError, "z_step_um"),
        (dict(pixel_um=-0.1), ValueError, "pixel_um"),
        (dict(na=1.6), ValueError, "na must be smaller"),
        (dict(wavelength=0.5), TypeError, "unknown optics argument"),
        (dict(noise="yes"), TypeError, "noise must be True or False"),
        (dict(camera="sCMOS"), TypeError, "camera must be"),
        (dict(illumination=1.0), ValueError, "illumination must be a number in"),
        (dict(bleaching=-0.1), ValueError, "bleaching must be a number in"),
        (dict(haze_photons_per_um3=float("nan")), ValueError, "haze_photons_per_um3"),
        (dict(sample_options={"arrangement": "worm"}), TypeError, "unknown sample_options"),
        (dict(sample_options=["texture"]), TypeError, "sample_options must be a dict"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    args = dict(sample="beads", modality="widefield", shape=(4, 16, 16), seed=0, margin_um=(0.0, 0.0))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        simulate_stack(**args)


# ---------------------------------------------------------------- field effects


def test_field_effects_are_the_object_convolved_with_the_psf():
    """Haze, vignetting and a sample's options go into the object that is
    imaged: the stack equals an independent fftconvolve of that object."""
    shape, z_step, pixel, margin = (6, 20, 24), 0.5, 0.2, (1.0, 1.0)
    options = {"arrangement": "embryo", "texture": 0.5}
    volume, pad, _ = sample_object("nuclei", shape, z_step, pixel, 0.02, seed=3, margin_um=margin,
                                   sample_options=options, haze_photons_per_um3=200.0)
    plain, _, _ = sample_object("nuclei", shape, z_step, pixel, 0.02, seed=3, margin_um=margin, sample_options=options)
    assert np.all(volume >= plain) and volume.sum() > plain.sum()
    from keras_rmz.simulate.simulate_stack import illumination_field

    volume = volume * illumination_field(volume.shape[1:], pad[1:], shape[1:], 0.3)[None]
    stack = simulate_stack("nuclei", shape=shape, z_step_um=z_step, pixel_um=pixel, density_per_um3=0.02, noise=False,
                           seed=3, camera=DARK, margin_um=margin, sample_options=options, haze_photons_per_um3=200.0,
                           illumination=0.3, emission_wavelength_um=0.519)
    psf_volume = widefield_psf(tuple(2 * n + 1 for n in volume.shape), pixel_um=pixel, z_step_um=z_step,
                               emission_wavelength_um=0.519)
    expected = _independent_image(volume, pad, shape, psf_volume)
    np.testing.assert_allclose(stack.data, expected, rtol=1e-4, atol=1e-4 * expected.max())
    assert stack.metadata["field"] == {"haze_photons_per_um3": 200.0, "illumination": 0.3, "bleaching": 0.0}
    assert stack.metadata["sample_options"] == options and stack.metadata["body"]["shape"] == "ellipsoid"


def test_illumination_falls_off_to_one_minus_the_setting_at_the_corners():
    from keras_rmz.simulate.simulate_stack import illumination_field

    field = illumination_field((30, 40), (5, 5), (20, 30), 0.4)
    np.testing.assert_allclose(field[5, 5], 0.6, rtol=1e-6)  # the field's corner
    np.testing.assert_allclose(field[24, 34], 0.6, rtol=1e-6)
    np.testing.assert_allclose(field[14:16, 19:21].max(), 1 - 0.4 * (0.5**2 + 0.5**2) / (9.5**2 + 14.5**2), rtol=1e-6)
    assert field.min() >= 0.05


def test_a_bead_at_the_corner_is_dimmed_by_the_vignetting():
    """Two equal beads in focus, one at the centre and one near the corner:
    their imaged photons (summed over the bead's neighbourhood) differ by
    the illumination field's ratio at their positions."""
    pixel, n = 0.1, 101
    corner_um = (0.5 * (n - 1)) * pixel
    positions = [[0.0, corner_um, corner_um], [0.0, 1.0, 1.0]]  # centre, and 1 µm from the corner
    args = dict(shape=(1, n, n), z_step_um=0.1, pixel_um=pixel, noise=False, seed=0, camera=DARK,
                margin_um=(0.0, 0.0), positions_um=positions)
    even = simulate_stack("beads", **args).data[0]
    vignetted = simulate_stack("beads", illumination=0.5, **args).data[0]
    r2 = ((1.0 - corner_um) ** 2 * 2) / (2 * corner_um**2)
    for (y, x), expected in (((50, 50), 1.0), ((10, 10), 1 - 0.5 * r2)):
        window = (slice(y - 5, y + 6), slice(x - 5, x + 6))
        np.testing.assert_allclose(vignetted[window].sum() / even[window].sum(), expected, rtol=2e-3)


def test_bleaching_dims_plane_i_by_the_fraction_lost_to_its_acquisition():
    args = dict(shape=(11, 24, 24), z_step_um=0.2, pixel_um=0.1, noise=False, seed=2, density_per_um3=0.5)
    camera = Camera(offset_counts=100.0, background_photons=10.0, gain_counts_per_photon=2.0)
    plain = simulate_stack("beads", camera=camera, **args).data.astype(np.float64) - 100.0 - 2.0 * 10.0
    bleached = simulate_stack("beads", camera=camera, bleaching=0.3, **args).data.astype(np.float64) - 120.0
    ratio = bleached.sum(axis=(1, 2)) / plain.sum(axis=(1, 2))
    np.testing.assert_allclose(ratio, 0.7 ** (np.arange(11) / 10), rtol=1e-5)


def test_uniform_haze_adds_what_energy_conservation_predicts():
    """Every plane of the wide-field PSF holds all of a point's light, so a
    fluorescent medium of density d photons/µm³ filling the grid sends
    d · pixel² · (grid depth) photons into a pixel far from the lateral
    edges (less what leaves the grid laterally: the margin is wide)."""
    shape, z_step, pixel, margin = (5, 32, 32), 0.2, 0.1, (1.0, 6.0)
    haze = 500.0
    volume, pad, _ = sample_object("beads", shape, z_step, pixel, 0.0, seed=0, margin_um=margin,
                                   haze_photons_per_um3=haze)
    stack = simulate_stack("beads", shape=shape, z_step_um=z_step, pixel_um=pixel, density_per_um3=0.0, noise=False,
                           seed=0, camera=DARK, margin_um=margin, haze_photons_per_um3=haze)
    depth_um = volume.shape[0] * z_step
    # The medium's mean density (its ±40 % variation averages out over the grid).
    density = volume.mean() / (z_step * pixel * pixel)
    expected = density * pixel**2 * depth_um
    np.testing.assert_allclose(stack.data.mean(), expected, rtol=0.05)
