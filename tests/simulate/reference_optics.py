"""Independent reference values for the simulator's physics tests.

Nothing here imports keras_rmz: these are the textbook results (closed forms,
or scipy.integrate.quad of the diffraction integral point by point) that the
simulator's own numerics must reproduce.
"""

import functools

import numpy as np
import scipy.integrate
import scipy.optimize
import scipy.special


def airy_lateral_fwhm_um(wavelength_um, na):
    """In-focus FWHM of the wide-field intensity PSF, [2 J1(v)/v]^2 = 1/2.

    Exact for the scalar pupil integral with uniform pupil at focus (the
    integral of J0(v rho) rho over [0, 1] is J1(v)/v): 0.5145 λ/NA.
    """
    v_half = scipy.optimize.brentq(lambda v: (2 * scipy.special.j1(v) / v) ** 2 - 0.5, 0.5, 2.5)
    return 2 * v_half * wavelength_um / (2 * np.pi * na)


def on_axis_intensity(z_um, wavelength_um, na, n):
    """|∫_0^1 exp(i k z sqrt(n² - NA² ρ²)) ρ dρ|² in closed form (u = sqrt(n² - NA² ρ²))."""
    k = 2 * np.pi / wavelength_um
    a = np.sqrt(n**2 - na**2)
    z = np.atleast_1d(np.asarray(z_um, dtype=float))
    out = np.empty(z.shape)
    for i, zz in enumerate(z):
        if abs(zz) < 1e-12:
            out[i] = ((n - a) * (n + a) / 2) ** 2
            continue
        c = 1j * k * zz
        antiderivative = lambda u: np.exp(c * u) * (u / c - 1 / c**2)  # noqa: E731
        out[i] = abs(antiderivative(n) - antiderivative(a)) ** 2
    return out / na**4


def axial_fwhm_um(wavelength_um, na, n):
    """Axial FWHM of the wide-field PSF from the closed-form on-axis intensity."""
    peak = on_axis_intensity(0.0, wavelength_um, na, n)[0]
    half = scipy.optimize.brentq(
        lambda z: on_axis_intensity(z, wavelength_um, na, n)[0] / peak - 0.5, 1e-3, 5 * wavelength_um
    )
    return 2 * half


def kirchhoff_intensity(r_um, dz_um, wavelength_um, na, n):
    """Wide-field intensity density (1/µm²), each plane integrating to 1.

    |∫_0^1 J0(k NA r ρ) exp(-i k dz sqrt(n² - NA²ρ²)) ρ dρ|² / (π / (k NA)²),
    by adaptive quadrature, one point at a time.
    """
    k = 2 * np.pi / wavelength_um

    def part(fn):
        return scipy.integrate.quad(
            lambda rho: scipy.special.j0(k * na * r_um * rho) * fn(-k * dz_um * np.sqrt(n**2 - (na * rho) ** 2)) * rho,
            0.0,
            1.0,
            limit=5000,
            epsabs=1e-13,
            epsrel=1e-10,
        )[0]

    field = complex(part(np.cos), part(np.sin))
    return abs(field) ** 2 / (np.pi / (k * na) ** 2)


@functools.lru_cache(maxsize=8)
def _leggauss(nodes):
    return np.polynomial.legendre.leggauss(nodes)


def kirchhoff_intensity_gl(r_um, dz_um, wavelength_um, na, n, nodes=400):
    """``kirchhoff_intensity`` by one fixed Gauss-Legendre rule (vectorized over r).

    Exact to round-off while k·(NA·r + |dz|·NA²/sqrt(n²-NA²)) stays below
    ~nodes: use it near focus (|dz|, r of a few µm).
    """
    k = 2 * np.pi / wavelength_um
    x, w = _leggauss(nodes)
    rho = 0.5 * (x + 1)
    w = 0.5 * w * rho
    r = np.atleast_1d(np.asarray(r_um, dtype=float))
    pupil = np.exp(-1j * k * dz_um * np.sqrt(n**2 - (na * rho) ** 2))
    field = scipy.special.j0(k * na * r[:, None] * rho[None, :]) @ (w * pupil)
    return np.abs(field) ** 2 / (np.pi / (k * na) ** 2)


def confocal_intensity(r_um, dz_um, excitation_um, emission_um, na, n, pinhole_au=1.0):
    """Unnormalized confocal PSF: h_exc(r, dz) · ∫_pinhole h_em(|r - s|, dz) d²s."""
    radius = 0.5 * pinhole_au * 1.22 * emission_um / na
    excitation = kirchhoff_intensity_gl(r_um, dz_um, excitation_um, na, n)[0]
    detection = disk_average(lambda s: kirchhoff_intensity_gl(s, dz_um, emission_um, na, n), r_um, radius)
    return excitation * detection


def disk_average(fn_of_radius, r_um, radius_um, nodes=24):
    """∫_disk fn(|r e_x - s|) d²s by Gauss-Legendre (radius) x trapezoid (angle, periodic)."""
    x, w = _leggauss(nodes)
    rho = 0.5 * radius_um * (x + 1)
    w_rho = 0.5 * radius_um * w
    phi = np.linspace(0, np.pi, 4 * nodes + 1)
    w_phi = np.full(phi.size, np.pi / (phi.size - 1))
    w_phi[[0, -1]] *= 0.5
    dist = np.sqrt(r_um**2 + rho[None, :] ** 2 - 2 * r_um * rho[None, :] * np.cos(phi)[:, None])
    values = np.asarray(fn_of_radius(dist.ravel())).reshape(dist.shape)
    return 2 * np.sum(w_phi[:, None] * (w_rho * rho)[None, :] * values)


def fwhm(profile, spacing):
    """Full width at half maximum of a 1D peak, half-max crossings by linear interpolation."""
    profile = np.asarray(profile, dtype=float)
    peak = int(np.argmax(profile))
    half = profile[peak] / 2
    left = peak
    while left > 0 and profile[left - 1] > half:
        left -= 1
    right = peak
    while right < profile.size - 1 and profile[right + 1] > half:
        right += 1
    if left == 0 or right == profile.size - 1:
        raise ValueError("the profile does not fall to half maximum on both sides")
    x_left = left - (profile[left] - half) / (profile[left] - profile[left - 1])
    x_right = right + (profile[right] - half) / (profile[right] - profile[right + 1])
    return (x_right - x_left) * spacing
