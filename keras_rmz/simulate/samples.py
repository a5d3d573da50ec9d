"""Fluorescent objects to image: sub-resolution beads and neuron-like nuclei.

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

    def to_dict(self):
        return {
            "center_yx_um": self.center_yx.tolist(),
            "bend_radius_um": self.bend_radius_um,
            "tube_radius_um": self.tube_um,
            "center_z_um": self.center_z_um,
        }


def nuclei(
    shape,
    voxel_um,
    origin_um,
    field_um,
    rng,
    density_per_um3=DEFAULT_NUCLEUS_DENSITY_PER_UM3,
    photons_per_um3=NUCLEUS_PHOTONS_PER_UM3,
    background_fraction=0.04,
):
    """Neuron nuclei of a worm: textured ellipsoids packed in a curved tube.

    The worm (C. elegans AML18, NLS-GFP in every neuron's nucleus, paper
    Methods) is a tube 18-26 µm thick whose upper boundary lies near the
    stack's z = 0 (the paper started each scan at the worm's boundary) and
    whose centre line bends across the field. Inside it, nuclei 2-4 µm across
    (ellipsoids of random size, shape and orientation) are placed at random
    without overlapping, their number Poisson with mean
    ``density_per_um3 × worm volume in the grid``; each has a random
    brightness (log-normal, 30 %) and a smooth random texture (chromatin,
    ~0.35 µm grain, ±30 %). A dim, slowly varying fluorescence fills the
    worm (``background_fraction`` of a nucleus's mean brightness).

    Args:
        shape: grid shape (Z, Y, X).
        voxel_um: (z, y, x) voxel size in µm.
        origin_um: stack coordinates (z, y, x) of voxel (0, 0, 0) in µm.
        field_um: (z, y, x) extent of the imaged stack in µm (the worm is
            placed relative to it).
        rng: ``numpy.random.Generator``.
        density_per_um3: nuclei per µm³ of worm.
        photons_per_um3: mean emitter density of a nucleus (detected photons per µm³).
        background_fraction: worm background relative to a nucleus.

    Returns:
        ``(volume, info)``: float32 photons per voxel and a dict with the
        worm geometry, ``centers_um`` (N, 3), ``semi_axes_um`` (N, 3) and
        ``rotations`` (N, 3, 3): a point p is inside nucleus i where
        ``|((p - centers_um[i]) @ rotations[i]) / semi_axes_um[i]| < 1``.
    """
    shape = tuple(int(n) for n in shape)
    voxel_um = np.asarray(voxel_um, dtype=np.float64)
    origin_um = np.asarray(origin_um, dtype=np.float64)
    field_um = np.asarray(field_um, dtype=np.float64)
    voxel_volume = float(np.prod(voxel_um))

    # --- The worm.
    tube = rng.uniform(9.0, 13.0)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    bend = rng.uniform(40.0, 120.0)
    miss = rng.uniform(-0.5, 0.5) * tube  # the centre line passes near the field centre
    field_center = 0.5 * field_um[1:]
    direction = np.array([np.sin(angle), np.cos(angle)])
    worm = _Worm(field_center + (bend + miss) * direction, bend, tube, tube + rng.uniform(-1.0, 1.0))

    z = origin_um[0] + np.arange(shape[0]) * voxel_um[0]
    y = origin_um[1] + np.arange(shape[1]) * voxel_um[1]
    x = origin_um[2] + np.arange(shape[2]) * voxel_um[2]
    lateral = np.hypot(y[:, None] - worm.center_yx[0], x[None, :] - worm.center_yx[1]) - worm.bend_radius_um
    lateral = lateral.astype(np.float32)
    inside = (lateral[None] ** 2 + ((z - worm.center_z_um) ** 2).astype(np.float32)[:, None, None]) < tube**2
    worm_volume = float(inside.sum()) * voxel_volume

    # --- Diffuse background: smooth (~2 µm) variation inside the worm.
    coarse_shape = tuple(max(2, int(math.ceil(n * v / 2.0)) + 1) for n, v in zip(shape, voxel_um))
    texture = _upsample_linear(_smooth_noise(coarse_shape, 1.0, rng), shape)
    level = background_fraction * photons_per_um3 * voxel_volume
    volume = (inside * level * np.clip(1.0 + 0.4 * texture, 0.2, None)).astype(np.float32)

    # --- Nuclei: random sequential placement without overlap.
    target = int(rng.poisson(density_per_um3 * worm_volume))
    low = origin_um
    high = origin_um + (np.asarray(shape) - 1) * voxel_um
    centers, radii, axes, rotations = [], np.zeros(0), [], []
    attempts = 0
    while len(centers) < target and attempts < 100 * target + 100:
        attempts += 1
        radius = rng.uniform(1.0, 1.75)
        semi_axes = np.clip(radius * rng.uniform(0.75, 1.25, size=3), 1.0, 2.0)
        center = rng.uniform(low, high)
        if worm.distance_um(*center) > tube - 0.5 * radius:
            continue
        if centers and np.any(np.linalg.norm(np.asarray(centers) - center, axis=1) < 0.9 * (radii + semi_axes.max())):
            continue
        centers.append(center)
        radii = np.append(radii, semi_axes.max())
        axes.append(semi_axes)
        rotations.append(_random_rotation(rng))

    texture_sigma = 0.35 / voxel_um
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
        grain = np.clip(1.0 + 0.3 * _smooth_noise(radial.shape, texture_sigma, rng), 0.2, None)
        volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += (brightness * inside_fraction * grain).astype(np.float32)

    info = {
        "worm": worm.to_dict(),
        "centers_um": np.asarray(centers).reshape(-1, 3),
        "semi_axes_um": np.asarray(axes).reshape(-1, 3),
        "rotations": np.asarray(rotations).reshape(-1, 3, 3),
        "worm_volume_um3": worm_volume,
        "target_count": target,
    }
    return volume, info
