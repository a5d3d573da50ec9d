"""Fluorescent objects to image: beads, nuclei, protein spots and filaments.

Both generators fill a voxel grid with *expected detected photons per voxel*
(the light a voxel's fluorophores send through the objective during one
exposure). They work in the stack's coordinates: the grid's voxel (0, 0, 0)
sits at ``origin_um`` (z, y, x) and may lie outside the imaged field (the
padding whose out-of-focus haze reaches into the field).
"""

import math

import numpy as np
import scipy.ndimage

# Mean detected photons of one 50 nm bead: in focus at 0.1 µm pixels about
# 16 % of them land on the brightest pixel (π (NA/λ)² · pixel², Airy peak), so
# a mean bead peaks near 1000 photons above background.
BEAD_PHOTONS = 6000.0
# Emitter density inside a nucleus (photons per µm³); the wide-field image of a
# worm then peaks at about 1000-1500 photons including the haze (12-bit safe).
NUCLEUS_PHOTONS_PER_UM3 = 16000.0
# A density giving tens of isolated beads in a 256 x 256 x 101 field (0.1 µm
# pixels and steps: 6554 µm³) as in the paper's Fig. 3.
DEFAULT_BEAD_DENSITY_PER_UM3 = 0.005
# Nuclei per µm³ of worm (head ganglia of C. elegans are packed with neurons).
DEFAULT_NUCLEUS_DENSITY_PER_UM3 = 0.01
# Protein spots: a dense punctate stain (hundreds per cell), each a few
# hundred fluorophores.
SPOT_PHOTONS = 3000.0
DEFAULT_SPOT_DENSITY_PER_UM3 = 0.2
# Filaments: µm of filament per µm³ (a cell's microtubule network: a few
# hundred µm in a few thousand µm³), detected photons per µm of filament
# (an in-focus filament then peaks at a few hundred photons at 0.1 µm
# pixels, as a bead or nucleus does).
FILAMENT_PHOTONS_PER_UM = 15000.0
DEFAULT_FILAMENT_LENGTH_PER_UM3 = 0.05


def _grid_volume_um3(shape, voxel_um):
    return float(np.prod(np.asarray(shape, dtype=np.float64) * np.asarray(voxel_um)))


def splat_points(volume, index_zyx, weights):
    """Add ``weights`` at fractional voxel indices, trilinearly (in place).

    A point between voxels is shared among its 8 neighbours in proportion to
    closeness, which keeps its total and its centroid; corners outside the
    grid are dropped.
    """
    index_zyx = np.asarray(index_zyx, dtype=np.float64).reshape(-1, 3)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    base = np.floor(index_zyx).astype(np.intp)
    frac = index_zyx - base
    shape = np.asarray(volume.shape)
    for corner in np.ndindex(2, 2, 2):
        offset = np.asarray(corner)
        idx = base + offset
        w = weights * np.prod(np.where(offset == 1, frac, 1.0 - frac), axis=1)
        inside = np.all((idx >= 0) & (idx < shape), axis=1) & (w != 0)
        np.add.at(volume, tuple(idx[inside].T), w[inside].astype(volume.dtype))
    return volume


def beads(
    shape,
    voxel_um,
    origin_um,
    rng,
    density_per_um3=DEFAULT_BEAD_DENSITY_PER_UM3,
    photons=BEAD_PHOTONS,
    brightness_sigma=0.4,
    positions_um=None,
):
    """50 nm fluorescent beads: points at random 3D positions, random brightness.

    A 50 nm bead is far below the resolution (~0.23 µm laterally), so it is a
    point. Positions are uniform over the whole grid (the padding included);
    their number is Poisson with mean ``density_per_um3 × grid volume``;
    brightness is log-normal around ``photons`` (bead size and dye loading
    vary, ~40 % spread by default).

    Args:
        shape: grid shape (Z, Y, X).
        voxel_um: (z, y, x) voxel size in µm.
        origin_um: stack coordinates (z, y, x) of voxel (0, 0, 0) in µm.
        rng: ``numpy.random.Generator``.
        density_per_um3: mean number of beads per µm³.
        photons: mean detected photons per bead.
        brightness_sigma: sigma of the log-normal brightness (0: all equal).
        positions_um: optional (N, 3) bead positions (z, y, x) in stack µm
            instead of random ones; they get exactly ``photons`` each.

    Returns:
        ``(volume, info)``: float32 photons per voxel (Z, Y, X) and a dict
        with ``positions_um`` (N, 3) and ``photons`` (N,).
    """
    shape = tuple(int(n) for n in shape)
    voxel_um = np.asarray(voxel_um, dtype=np.float64)
    origin_um = np.asarray(origin_um, dtype=np.float64)
    if positions_um is None:
        # Uniform over the voxel cells, [-0.5, n - 0.5) in index units.
        count = int(rng.poisson(density_per_um3 * _grid_volume_um3(shape, voxel_um)))
        index = rng.uniform(-0.5, np.asarray(shape) - 0.5, size=(count, 3))
        mean = photons * math.exp(-0.5 * brightness_sigma**2)  # keeps the mean at ``photons``
        brightness = mean * rng.lognormal(0.0, brightness_sigma, size=count)
        positions_um = origin_um + index * voxel_um
    else:
        positions_um = np.asarray(positions_um, dtype=np.float64).reshape(-1, 3)
        index = (positions_um - origin_um) / voxel_um
        brightness = np.full(len(positions_um), float(photons))
    volume = np.zeros(shape, dtype=np.float32)
    splat_points(volume, index, brightness)
    return volume, {"positions_um": positions_um, "photons": brightness}


def _random_rotation(rng):
    """A uniformly random 3D rotation (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _smooth_noise(shape, sigma_vox, rng):
    """Gaussian-filtered white noise with unit standard deviation."""
    noise = scipy.ndimage.gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="reflect")
    std = noise.std()
    return noise / std if std > 0 else noise


def _upsample_linear(coarse, shape):
    """Separable linear interpolation of a coarse grid onto ``shape`` (cheap)."""
    out = coarse
    for axis, n in enumerate(shape):
        m = out.shape[axis]
        position = np.linspace(0.0, m - 1.0, n)
        lo = np.clip(np.floor(position).astype(np.intp), 0, max(m - 2, 0))
        frac = position - lo
        matrix = np.zeros((n, m))
        matrix[np.arange(n), lo] = 1.0 - frac
        if m > 1:
            matrix[np.arange(n), np.minimum(lo + 1, m - 1)] += frac
        out = np.moveaxis(np.tensordot(matrix, out, axes=([1], [axis])), 0, axis)
    return out


def diffuse_variation(shape, voxel_um, rng, scale_um=2.0):
    """The relative brightness of a diffuse fluorescence: 1 ± 40 % varying
    smoothly over about ``scale_um``, floored at 0.2 (float64, ``shape``)."""
    coarse = tuple(max(2, int(math.ceil(n * v / scale_um)) + 1) for n, v in zip(shape, voxel_um))
    return np.clip(1.0 + 0.4 * _upsample_linear(_smooth_noise(coarse, 1.0, rng), shape), 0.2, None)


class _Worm:
    """A curved tube: a torus segment of radius ``tube_um`` around a circle.

    The circle lies in the plane z = ``center_z``; a worm lying flat on the
    slide and bending gently across the field.
    """

    def __init__(self, center_yx, bend_radius_um, tube_um, center_z_um):
        self.center_yx = np.asarray(center_yx, dtype=np.float64)
        self.bend_radius_um = float(bend_radius_um)
        self.tube_um = float(tube_um)
        self.center_z_um = float(center_z_um)

    def distance_um(self, z, y, x):
        """Distance to the centre line (broadcasts)."""
        lateral = np.hypot(y - self.center_yx[0], x - self.center_yx[1]) - self.bend_radius_um
        return np.hypot(lateral, z - self.center_z_um)

    def mask(self, z, y, x):
        """Inside the worm, on the grid's axes ``z``, ``y``, ``x`` (µm): (Z, Y, X) bool."""
        lateral = np.hypot(y[:, None] - self.center_yx[0], x[None, :] - self.center_yx[1]) - self.bend_radius_um
        lateral = lateral.astype(np.float32)
        return (lateral[None] ** 2 + ((z - self.center_z_um) ** 2).astype(np.float32)[:, None, None]) < self.tube_um**2

    def accepts(self, center, radius):
        return self.distance_um(*center) <= self.tube_um - 0.5 * radius

    def to_dict(self):
        return {
            "shape": "worm",
            "center_yx_um": self.center_yx.tolist(),
            "bend_radius_um": self.bend_radius_um,
            "tube_radius_um": self.tube_um,
            "center_z_um": self.center_z_um,
        }


class _Ellipsoid:
    """An embryo: an ellipsoid lying on the coverslip, long axes in the plane."""

    def __init__(self, center_um, semi_axes_um, angle):
        self.center = np.asarray(center_um, dtype=np.float64)
        self.semi_axes = np.asarray(semi_axes_um, dtype=np.float64)
        self.angle = float(angle)

    def _radial(self, z, y, x):
        dy, dx = y - self.center[1], x - self.center[2]
        c, s = math.cos(self.angle), math.sin(self.angle)
        u, v = c * dy + s * dx, -s * dy + c * dx
        return np.sqrt(((z - self.center[0]) / self.semi_axes[0]) ** 2 + (u / self.semi_axes[1]) ** 2
                       + (v / self.semi_axes[2]) ** 2)

    def mask(self, z, y, x):
        return self._radial(z[:, None, None], y[None, :, None], x[None, None, :]) < 1.0

    def accepts(self, center, radius):
        return self._radial(*center) <= 1.0 - 0.5 * radius / self.semi_axes.min()

    def to_dict(self):
        return {"shape": "ellipsoid", "center_um": self.center.tolist(), "semi_axes_um": self.semi_axes.tolist(),
                "angle_rad": self.angle}


class _Slab:
    """A layer of cells on the coverslip: ``center_z_um ± half_thickness_um``."""

    def __init__(self, center_z_um, half_thickness_um):
        self.center_z = float(center_z_um)
        self.half = float(half_thickness_um)

    def mask(self, z, y, x):
        inside = np.abs(z - self.center_z) < self.half
        return np.broadcast_to(inside[:, None, None], (len(z), len(y), len(x)))

    def accepts(self, center, radius):
        return abs(center[0] - self.center_z) <= 0.3

    def to_dict(self):
        return {"shape": "slab", "center_z_um": self.center_z, "half_thickness_um": self.half}


class _Everywhere:
    """Tissue filling the whole grid."""

    def mask(self, z, y, x):
        return np.ones((len(z), len(y), len(x)), dtype=bool)

    def accepts(self, center, radius):
        return True

    def to_dict(self):
        return {"shape": "everywhere"}


# Nuclear shapes per arrangement: the radius range (µm), the semi-axes' clip
# range and how close two nuclei may come (a fraction of the sum of their
# largest semi-axes: 1 = just touching spheres).
NUCLEUS_ARRANGEMENTS = ("worm", "embryo", "tissue", "flat")
_NUCLEUS_SHAPES = {
    "worm": {"radius": (1.0, 1.75), "clip": (1.0, 2.0), "spacing": 0.9},
    "embryo": {"radius": (1.2, 2.2), "clip": (1.0, 2.6), "spacing": 0.9},
    "tissue": {"radius": (2.0, 3.2), "clip": (1.5, 4.0), "spacing": 0.75},
    "flat": {"radius": (3.0, 7.0), "clip": (0.8, 8.0), "spacing": 0.9},
}


def _region(arrangement, field_um, rng):
    """The body the nuclei (or spots, filaments) fill, in stack coordinates."""
    field_center = 0.5 * field_um[1:]
    if arrangement == "worm":
        tube = rng.uniform(9.0, 13.0)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        bend = rng.uniform(40.0, 120.0)
        miss = rng.uniform(-0.5, 0.5) * tube  # the centre line passes near the field centre
        direction = np.array([np.sin(angle), np.cos(angle)])
        return _Worm(field_center + (bend + miss) * direction, bend, tube, tube + rng.uniform(-1.0, 1.0))
    if arrangement == "embryo":
        # A C. elegans embryo is about 50 x 30 x 30 µm; its top near z = 0.
        semi = np.array([rng.uniform(8.0, 13.0), rng.uniform(15.0, 26.0), rng.uniform(12.0, 16.0)])
        center_yx = field_center + rng.uniform(-0.25, 0.25, size=2) * field_um[1:]
        return _Ellipsoid([semi[0] + rng.uniform(-1.0, 1.0), *center_yx], semi, rng.uniform(0.0, np.pi))
    if arrangement == "flat":
        return _Slab(rng.uniform(0.25, 0.75) * field_um[0], rng.uniform(1.0, 3.0))
    return _Everywhere()


def nuclei(
    shape,
    voxel_um,
    origin_um,
    field_um,
    rng,
    density_per_um3=DEFAULT_NUCLEUS_DENSITY_PER_UM3,
    photons_per_um3=NUCLEUS_PHOTONS_PER_UM3,
    background_fraction=0.04,
    arrangement="worm",
    texture=0.3,
    grain_um=0.35,
):
    """Nuclei: textured ellipsoids packed in a body (a worm by default).

    ``arrangement`` picks the body and the nuclei's shapes:

    - ``"worm"`` (the paper's C. elegans AML18, NLS-GFP in every neuron's
      nucleus): a tube 18-26 µm thick whose upper boundary lies near the
      stack's z = 0 (the paper started each scan at the worm's boundary) and
      whose centre line bends across the field; nuclei 2-4 µm across.
    - ``"embryo"``: an ellipsoid about 16-26 µm thick and 24-52 µm long
      (a C. elegans embryo) lying on the coverslip; nuclei 2.4-4.4 µm across,
      densely packed.
    - ``"tissue"``: the whole volume; nuclei 4-6.4 µm across, touching
      (centres 0.75 of two radii apart at the closest).
    - ``"flat"``: one layer of flat cultured-cell nuclei, 6-14 µm across
      and 1.6-4 µm high, lying in the plane.

    Inside the body, nuclei (ellipsoids of random size, shape and
    orientation; flat nuclei turn about z only) are placed at random without
    overlapping, their number Poisson with mean ``density_per_um3 × body
    volume in the grid``; each has a random brightness (log-normal, 30 %)
    and a smooth random chromatin texture (``grain_um`` grain, ±``texture``).
    A dim, slowly varying fluorescence fills the body
    (``background_fraction`` of a nucleus's mean brightness).

    Args:
        shape: grid shape (Z, Y, X).
        voxel_um: (z, y, x) voxel size in µm.
        origin_um: stack coordinates (z, y, x) of voxel (0, 0, 0) in µm.
        field_um: (z, y, x) extent of the imaged stack in µm (the body is
            placed relative to it).
        rng: ``numpy.random.Generator``.
        density_per_um3: nuclei per µm³ of body.
        photons_per_um3: mean emitter density of a nucleus (detected photons per µm³).
        background_fraction: body background relative to a nucleus.
        arrangement: "worm", "embryo", "tissue" or "flat".
        texture: relative standard deviation of the chromatin texture (0: none).
        grain_um: size of the texture's grain (its Gaussian smoothing, µm).

    Returns:
        ``(volume, info)``: float32 photons per voxel and a dict with the
        body's geometry (``worm`` for the worm, ``body`` otherwise),
        ``centers_um`` (N, 3), ``semi_axes_um`` (N, 3) and ``rotations``
        (N, 3, 3): a point p is inside nucleus i where
        ``|((p - centers_um[i]) @ rotations[i]) / semi_axes_um[i]| < 1``.
    """
    if arrangement not in NUCLEUS_ARRANGEMENTS:
        raise ValueError(f"arrangement must be one of {NUCLEUS_ARRANGEMENTS}; got {arrangement!r}")
    shape = tuple(int(n) for n in shape)
    voxel_um = np.asarray(voxel_um, dtype=np.float64)
    origin_um = np.asarray(origin_um, dtype=np.float64)
    field_um = np.asarray(field_um, dtype=np.float64)
    voxel_volume = float(np.prod(voxel_um))

    body = _region(arrangement, field_um, rng)
    z, y, x = (origin_um[a] + np.arange(shape[a]) * voxel_um[a] for a in range(3))
    inside = body.mask(z, y, x)
    body_volume = float(inside.sum()) * voxel_volume

    # --- Diffuse background: smooth (~2 µm) variation inside the body.
    level = background_fraction * photons_per_um3 * voxel_volume
    volume = (inside * level * diffuse_variation(shape, voxel_um, rng)).astype(np.float32)

    # --- Nuclei: random sequential placement without overlap.
    form = _NUCLEUS_SHAPES[arrangement]
    target = int(rng.poisson(density_per_um3 * body_volume))
    low = origin_um
    high = origin_um + (np.asarray(shape) - 1) * voxel_um
    centers, radii, axes, rotations = [], np.zeros(0), [], []
    attempts = 0
    while len(centers) < target and attempts < 100 * target + 100:
        attempts += 1
        radius = rng.uniform(*form["radius"])
        semi_axes = np.clip(radius * rng.uniform(0.75, 1.25, size=3), *form["clip"])
        if arrangement == "flat":
            # Flat nuclei: the first axis is the height (0.8-2 µm); they
            # turn about z only.
            semi_axes[0] = rng.uniform(0.8, 2.0)
        center = rng.uniform(low, high)
        if arrangement == "flat":
            center[0] = body.center_z + rng.uniform(-0.3, 0.3)
        if not body.accepts(center, radius):
            continue
        if centers and np.any(
            np.linalg.norm(np.asarray(centers) - center, axis=1) < form["spacing"] * (radii + semi_axes.max())
        ):
            continue
        centers.append(center)
        radii = np.append(radii, semi_axes.max())
        axes.append(semi_axes)
        if arrangement == "flat":
            turn = rng.uniform(0.0, 2.0 * np.pi)
            rotations.append(np.array([[1.0, 0.0, 0.0], [0.0, math.cos(turn), -math.sin(turn)],
                                       [0.0, math.sin(turn), math.cos(turn)]]))
        else:
            rotations.append(_random_rotation(rng))

    texture_sigma = grain_um / voxel_um
    edge_um = 0.08
    for center, semi_axes, rotation in zip(centers, axes, rotations):
        brightness = photons_per_um3 * voxel_volume * rng.lognormal(-0.5 * 0.3**2, 0.3)
        reach = semi_axes.max() + 4 * edge_um
        lo = np.maximum(np.floor((center - reach - origin_um) / voxel_um).astype(int), 0)
        hi = np.minimum(np.ceil((center + reach - origin_um) / voxel_um).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        axes_um = [origin_um[a] + np.arange(lo[a], hi[a]) * voxel_um[a] - center[a] for a in range(3)]
        grids = np.meshgrid(*axes_um, indexing="ij")
        offsets = np.stack(grids, axis=-1) @ rotation  # coordinates in the nucleus's own axes
        radial = np.sqrt(np.sum((offsets / semi_axes) ** 2, axis=-1))
        # Signed distance to the surface, approximately; a ~0.1 µm soft edge.
        inside_fraction = 0.5 * (1.0 - np.tanh((radial - 1.0) * semi_axes.min() / edge_um))
        grain = np.clip(1.0 + texture * _smooth_noise(radial.shape, texture_sigma, rng), 0.2, None)
        volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += (brightness * inside_fraction * grain).astype(np.float32)

    info = {
        ("worm" if arrangement == "worm" else "body"): body.to_dict(),
        "arrangement": arrangement,
        "centers_um": np.asarray(centers).reshape(-1, 3),
        "semi_axes_um": np.asarray(axes).reshape(-1, 3),
        "rotations": np.asarray(rotations).reshape(-1, 3, 3),
        "body_volume_um3": body_volume,
        "target_count": target,
    }
    return volume, info


def spots(
    shape,
    voxel_um,
    origin_um,
    field_um,
    rng,
    density_per_um3=DEFAULT_SPOT_DENSITY_PER_UM3,
    photons=SPOT_PHOTONS,
    size_um=0.2,
    arrangement="embryo",
    background_fraction=0.3,
):
    """Protein spots (puncta): small Gaussian blobs in a body, over a diffuse cytoplasm.

    Spot centres are uniform in the body (``arrangement``: "embryo" as in
    ``nuclei``, or "tissue" for the whole grid), their number Poisson with
    mean ``density_per_um3 × body volume``; each holds a log-normal number
    of photons (mean ``photons``, 50 % spread) spread as a 3D Gaussian of
    FWHM ``size_um``. The body is filled with a dim, slowly varying
    fluorescence whose density is ``background_fraction`` of the spots'
    mean density (photons per µm³).

    Returns:
        ``(volume, info)``: float32 photons per voxel, and ``positions_um``
        (N, 3), ``photons`` (N,) and the body's geometry.
    """
    shape = tuple(int(n) for n in shape)
    voxel_um = np.asarray(voxel_um, dtype=np.float64)
    origin_um = np.asarray(origin_um, dtype=np.float64)
    body = _region("tissue" if arrangement == "tissue" else "embryo", np.asarray(field_um, np.float64), rng)
    z, y, x = (origin_um[a] + np.arange(shape[a]) * voxel_um[a] for a in range(3))
    inside = body.mask(z, y, x)
    voxel_volume = float(np.prod(voxel_um))
    count = int(rng.poisson(density_per_um3 * float(inside.sum()) * voxel_volume))
    index = rng.uniform(-0.5, np.asarray(shape) - 0.5, size=(4 * count + 16, 3))
    keep = inside[tuple(np.clip(np.rint(index).astype(int), 0, np.asarray(shape) - 1).T)]
    index = index[keep][:count]
    brightness = photons * math.exp(-0.5 * 0.5**2) * rng.lognormal(0.0, 0.5, size=len(index))
    volume = np.zeros(shape, dtype=np.float32)
    splat_points(volume, index, brightness)
    sigma = (size_um / 2.3548) / voxel_um
    volume = scipy.ndimage.gaussian_filter(volume, sigma, mode="constant", truncate=3.0)
    level = background_fraction * density_per_um3 * photons * voxel_volume
    volume += (inside * level * diffuse_variation(shape, voxel_um, rng)).astype(np.float32)
    return volume, {"positions_um": origin_um + index * voxel_um, "photons": brightness, "body": body.to_dict()}


FILAMENT_ARRANGEMENTS = ("asters", "network")


def worm_like_chain(start, count, step_um, persistence_um, rng):
    """(count, 3) points of a worm-like chain from ``start`` in a random direction.

    Each step of ``step_um`` turns the direction by a Gaussian kick
    perpendicular to it, of variance ``step / persistence`` per component,
    so that ⟨cos θ(s)⟩ = exp(−s / persistence) (for steps much shorter than
    the persistence length).
    """
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    kicks = rng.standard_normal((count, 3)) * math.sqrt(step_um / persistence_um)
    path = np.empty((count, 3))
    position = np.array(start, dtype=np.float64)
    for i in range(count):
        path[i] = position
        direction = direction + kicks[i] - np.dot(kicks[i], direction) * direction
        direction /= np.linalg.norm(direction)
        position = position + step_um * direction
    return path


def filaments(
    shape,
    voxel_um,
    origin_um,
    field_um,
    rng,
    length_per_um3=DEFAULT_FILAMENT_LENGTH_PER_UM3,
    photons_per_um=FILAMENT_PHOTONS_PER_UM,
    persistence_um=10.0,
    arrangement="asters",
    background_fraction=0.1,
):
    """Filaments (microtubules, actin bundles): thin curved lines.

    Each filament is a worm-like chain: it grows from its start in steps of
    half a voxel, turning at random so that its direction decorrelates over
    ``persistence_um`` (⟨cos θ(s)⟩ = exp(−s / persistence)); its length is
    uniform in 3-12 µm. With ``"asters"`` filaments radiate from a few
    centres (microtubules from centrosomes); with ``"network"`` they start
    anywhere. Their number makes ``length_per_um3`` µm of filament per µm³
    of the grid on average; a filament is far thinner than the resolution,
    so it is a line of points (``photons_per_um`` photons per µm, log-normal
    30 % per filament). A dim uniform fluorescence (free tubulin) fills the
    grid: ``background_fraction`` of the filaments' mean density.

    Returns:
        ``(volume, info)``: float32 photons per voxel, ``centers_um`` (the
        aster centres; empty for a network), ``lengths_um`` (N,) and
        ``photons`` (N,): each filament's photons (the part inside the grid
        is in ``volume``).
    """
    if arrangement not in FILAMENT_ARRANGEMENTS:
        raise ValueError(f"arrangement must be one of {FILAMENT_ARRANGEMENTS}; got {arrangement!r}")
    shape = tuple(int(n) for n in shape)
    voxel_um = np.asarray(voxel_um, dtype=np.float64)
    origin_um = np.asarray(origin_um, dtype=np.float64)
    extent = (np.asarray(shape) - 1) * voxel_um
    grid_volume = _grid_volume_um3(shape, voxel_um)
    mean_length = 7.5
    count = int(rng.poisson(length_per_um3 * grid_volume / mean_length))
    centers = np.zeros((0, 3))
    if arrangement == "asters":
        centers = origin_um + rng.uniform(0.15, 0.85, size=(max(1, int(rng.poisson(3))), 3)) * extent
    step = 0.5 * float(voxel_um.min())
    points, weights, lengths, totals = [], [], [], []
    for _ in range(count):
        length = rng.uniform(3.0, 12.0)
        n = max(2, int(length / step))
        start = centers[rng.integers(len(centers))] if len(centers) else origin_um + rng.uniform(0, 1, 3) * extent
        points.append(worm_like_chain(start, n, step, persistence_um, rng))
        weights.append(np.full(n, photons_per_um * step * rng.lognormal(-0.5 * 0.3**2, 0.3)))
        lengths.append(n * step)
        totals.append(float(weights[-1].sum()))
    volume = np.zeros(shape, dtype=np.float32)
    if points:
        index = (np.concatenate(points) - origin_um) / voxel_um
        splat_points(volume, index, np.concatenate(weights))
    volume += np.float32(background_fraction * length_per_um3 * photons_per_um * float(np.prod(voxel_um)))
    return volume, {"centers_um": centers, "lengths_um": np.asarray(lengths), "photons": np.asarray(totals)}
