"""Physics of the simulator's PSFs, against independent reference values.

Golden values (tests/simulate/reference_optics.py, no keras_rmz code):
- wide-field lateral FWHM in focus: the Airy pattern [2 J1(v)/v]², 0.5145 λ/NA
  (0.2260 µm at 615 nm, NA 1.4); tolerance 1 %.
- wide-field axial FWHM: the closed form of the on-axis pupil integral
  (0.6057 µm at 615 nm, NA 1.4, n 1.515; the textbook approximation
  0.88 λ / (n - sqrt(n² - NA²)) gives 0.578 µm); tolerance 1 % (5 % to the
  approximation).
- any point of the wide-field PSF: scipy.integrate.quad of the Kirchhoff
  integral; tolerance 1e-6 relative.
- confocal: excitation × (emission integrated over a 1 AU pinhole disk) by
  fixed Gauss-Legendre quadrature in polar coordinates (no Hankel transform):
  axial FWHM 0.476 µm, lateral 0.212 µm; tolerance 1 %.
"""

import numpy as np
import pytest

from keras_rmz.simulate import confocal_psf, psf, radial_profile, widefield_psf
from tests.simulate import reference_optics as ref

LAMBDA_EM = 0.615
LAMBDA_EX = 0.589
NA = 1.4
N_OIL = 1.515


def _lateral_profile(volume):
    z, y, x = (n // 2 for n in volume.shape)
    return volume[z, y, :]


def test_widefield_lateral_fwhm_in_focus_matches_airy():
    pixel = 0.005
    volume = widefield_psf((1, 3, 201), pixel_um=pixel, z_step_um=0.1)
    measured = ref.fwhm(_lateral_profile(volume), pixel)
    expected = ref.airy_lateral_fwhm_um(LAMBDA_EM, NA)
    assert expected == pytest.approx(0.2260, abs=2e-4)  # 0.5145 λ/NA
    assert measured == pytest.approx(expected, rel=0.01)


def test_widefield_lateral_fwhm_follows_wavelength():
    pixel = 0.005
    volume = widefield_psf((1, 3, 201), pixel_um=pixel, z_step_um=0.1, emission_wavelength_um=0.519)
    assert ref.fwhm(_lateral_profile(volume), pixel) == pytest.approx(ref.airy_lateral_fwhm_um(0.519, NA), rel=0.01)


def test_widefield_axial_fwhm_matches_closed_form():
    z_step = 0.01
    volume = widefield_psf((241, 1, 1), pixel_um=0.1, z_step_um=z_step)
    measured = ref.fwhm(volume[:, 0, 0], z_step)
    expected = ref.axial_fwhm_um(LAMBDA_EM, NA, N_OIL)
    assert measured == pytest.approx(expected, rel=0.01)
    textbook = 0.88 * LAMBDA_EM / (N_OIL - np.sqrt(N_OIL**2 - NA**2))
    assert measured == pytest.approx(textbook, rel=0.05)


@pytest.mark.parametrize("r_um, dz_um", [(0.0, 0.0), (0.3, 0.5), (5.0, 3.0), (15.0, 10.0), (30.0, -12.0)])
def test_widefield_intensity_matches_quadrature_in_focus_and_far_haze(r_um, dz_um):
    expected = ref.kirchhoff_intensity(r_um, dz_um, LAMBDA_EM, NA, N_OIL)
    actual = radial_profile("widefield", [r_um], [dz_um])[0, 0]
    assert actual == pytest.approx(expected, rel=1e-6)


def test_widefield_planes_conserve_energy():
    # 0.1 µm pixels sample the PSF above Nyquist (λ/(2NA) = 0.22 µm), so a
    # plane's pixel sum is its integral; 25.6 µm across holds all but the
    # Airy tail (~0.2 %) for defocus up to 4 µm.
    volume = widefield_psf((9, 512, 512), pixel_um=0.1, z_step_um=1.0)
    sums = volume.sum(axis=(1, 2), dtype=np.float64)
    np.testing.assert_allclose(sums, 1.0, atol=0.003)
    assert np.ptp(sums) < 0.0015


def test_transfer_function_grid_conserves_energy_before_cropping():
    """The PSF behind simulate_stack's FFT (wrapped grid) keeps every plane's energy."""
    optics = psf.make_optics()
    fft_shape = (16, 192, 192)
    otf = psf.optical_transfer_function("widefield", optics, fft_shape, 0.1, 0.25)
    grid = psf.psf_from_transfer_function(otf, fft_shape)
    sums = grid.sum(axis=(1, 2))
    np.testing.assert_allclose(sums, 1.0, atol=0.01)


def test_widefield_psf_is_symmetric_and_centred():
    volume = widefield_psf((21, 33, 33), pixel_um=0.1, z_step_um=0.1)
    assert np.unravel_index(np.argmax(volume), volume.shape) == (10, 16, 16)
    np.testing.assert_allclose(volume, volume[::-1], rtol=1e-5, atol=1e-9)  # index matched: even in z
    np.testing.assert_allclose(volume, volume[:, ::-1], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(volume, np.swapaxes(volume, 1, 2), rtol=1e-5, atol=1e-9)


def test_confocal_axial_and_lateral_fwhm_match_reference():
    z_step = 0.02
    axial = confocal_psf((61, 1, 1), pixel_um=0.1, z_step_um=z_step)[:, 0, 0]
    zs = np.arange(0, 0.62, z_step)
    reference = np.array([ref.confocal_intensity(0.0, z, LAMBDA_EX, LAMBDA_EM, NA, N_OIL) for z in zs])
    expected_axial = ref.fwhm(np.concatenate([reference[:0:-1], reference]), z_step)
    assert expected_axial == pytest.approx(0.476, abs=0.002)
    assert ref.fwhm(axial, z_step) == pytest.approx(expected_axial, rel=0.01)

    pixel = 0.01
    lateral = _lateral_profile(confocal_psf((1, 1, 61), pixel_um=pixel, z_step_um=0.1))
    rs = np.arange(0, 0.31, pixel)
    reference = np.array([ref.confocal_intensity(r, 0.0, LAMBDA_EX, LAMBDA_EM, NA, N_OIL) for r in rs])
    np.testing.assert_allclose(lateral[30:] / lateral[30], reference / reference[0], atol=3e-3)
    expected_lateral = ref.fwhm(np.concatenate([reference[:0:-1], reference]), pixel)
    assert expected_lateral == pytest.approx(0.212, abs=0.002)
    assert ref.fwhm(lateral, pixel) == pytest.approx(expected_lateral, rel=0.01)


def test_confocal_sections_better_than_widefield():
    z_step, pixel = 0.02, 0.01
    wide_axial = widefield_psf((81, 1, 1), pixel_um=pixel, z_step_um=z_step)[:, 0, 0]
    conf_axial = confocal_psf((81, 1, 1), pixel_um=pixel, z_step_um=z_step)[:, 0, 0]
    assert ref.fwhm(conf_axial, z_step) < 0.85 * ref.fwhm(wide_axial, z_step)
    wide_lateral = _lateral_profile(widefield_psf((1, 1, 81), pixel_um=pixel, z_step_um=z_step))
    conf_lateral = _lateral_profile(confocal_psf((1, 1, 81), pixel_um=pixel, z_step_um=z_step))
    assert ref.fwhm(conf_lateral, pixel) <= ref.fwhm(wide_lateral, pixel)
    # Same in-focus peak (the scaling the simulator promises), far less haze.
    assert conf_axial[40] == pytest.approx(wide_axial[40], rel=1e-4)
    far = radial_profile("confocal", [0.0, 2.0], [4.0])[0]
    assert np.all(far < 0.05 * radial_profile("widefield", [0.0, 2.0], [4.0])[0])


def test_confocal_pinhole_widens_with_aperture():
    pixel = 0.01
    small = _lateral_profile(confocal_psf((1, 1, 81), pixel_um=pixel, pinhole_au=0.2))
    large = _lateral_profile(confocal_psf((1, 1, 81), pixel_um=pixel, pinhole_au=3.0))
    assert ref.fwhm(small, pixel) < ref.fwhm(large, pixel)


def test_index_mismatch_matches_gibson_lanni_quadrature():
    optics = dict(n_sample=1.33, depth_um=10.0)
    z_step = 0.05
    volume = widefield_psf((121, 1, 1), pixel_um=0.1, z_step_um=z_step, **optics)[:, 0, 0]
    # dz = 0 is the best focus (the focal shift is taken out).
    assert abs(int(np.argmax(volume)) - 60) <= 1
    # Spherical aberration: broader and no longer symmetric about focus.
    matched = widefield_psf((121, 1, 1), pixel_um=0.1, z_step_um=z_step)[:, 0, 0]
    assert ref.fwhm(volume, z_step) > 1.2 * ref.fwhm(matched, z_step)
    assert np.max(np.abs(volume - volume[::-1])) > 0.05 * volume.max()
    # Gibson-Lanni OPD (coverslip as designed): zp·sqrt(ns² - s²) - f·sqrt(ni² - s²),
    # integrated by scipy quad with the kink at s = ns given as a break point.
    focus = psf._best_focus_um(psf.make_optics(**optics))
    k = 2 * np.pi / LAMBDA_EM
    kink = 1.33 / NA
    # Plane energy (Parseval): 2π/(k NA)² ∫ |P|² ρ dρ; beyond the kink |P|² =
    # exp(-c t) with t = sqrt(s² - ns²), c = 2 k zp, and ρ dρ = t dt / NA².
    c, t_max = 2 * k * 10.0, np.sqrt(NA**2 - 1.33**2)
    evanescent = (1 - np.exp(-c * t_max) * (1 + c * t_max)) / c**2 / NA**2
    energy = 2 * np.pi / (k * NA) ** 2 * (kink**2 / 2 + evanescent)
    for r_um, dz_um in [(0.0, 0.0), (0.4, 1.0), (2.0, -1.5)]:
        def part(fn, a, b):
            def integrand(rho):
                s = NA * rho
                phase = k * (10.0 * np.sqrt(complex(1.33**2 - s**2)) - (focus + dz_um) * np.sqrt(N_OIL**2 - s**2))
                return ref.scipy.special.j0(k * NA * r_um * rho) * fn(np.exp(1j * phase)) * rho

            return ref.scipy.integrate.quad(integrand, a, b, limit=2000, epsabs=1e-13, epsrel=1e-10)[0]

        field = sum(complex(part(np.real, a, b), part(np.imag, a, b)) for a, b in [(0, kink), (kink, 1)])
        expected = abs(field) ** 2 / energy
        assert radial_profile("widefield", [r_um], [dz_um], **optics)[0, 0] == pytest.approx(expected, rel=1e-4)


def test_profiles_are_cached():
    psf.clear_cache()
    widefield_psf((5, 9, 9))
    before = psf._widefield_profile.cache_info()
    widefield_psf((5, 9, 9))
    after = psf._widefield_profile.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape=(0, 9, 9)), "shape"),
        (dict(shape=(3, 9)), "shape"),
        (dict(pixel_um=0.0), "pixel_um"),
        (dict(z_step_um=-1.0), "z_step_um"),
        (dict(na=1.6), "na must be smaller"),
        (dict(emission_wavelength_um=float("nan")), "emission_wavelength_um"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        widefield_psf(**kwargs)


def test_unknown_modality_raises():
    with pytest.raises(ValueError, match="'widefield' or 'confocal'"):
        radial_profile("lightsheet", [0.0], [0.0])
