"""Object generators: beads, nuclei (worm, embryo, tissue, flat), spots and filaments."""

import numpy as np
import pytest

from keras_rmz.simulate import beads, filaments, nuclei, sample_object, spots
from keras_rmz.simulate.samples import BEAD_PHOTONS, splat_points, worm_like_chain

VOXEL = (0.2, 0.1, 0.1)


def test_splat_keeps_total_and_centroid():
    volume = np.zeros((6, 7, 8), np.float32)
    points = np.array([[2.3, 3.75, 4.1], [1.0, 1.0, 1.0]])
    splat_points(volume, points, [10.0, 4.0])
    assert volume.sum() == pytest.approx(14.0, rel=1e-6)
    grid = np.indices(volume.shape).reshape(3, -1)
    first = np.zeros_like(volume)
    splat_points(first, points[:1], [10.0])
    centroid = (grid * first.ravel()).sum(axis=1) / first.sum()
    np.testing.assert_allclose(centroid, points[0], atol=1e-6)


def test_bead_count_is_proportional_to_density():
    shape = (20, 100, 100)  # 4 x 10 x 10 µm = 400 µm³
    volume_um3 = 400.0
    for density in (0.05, 0.2):
        counts = [
            len(beads(shape, VOXEL, (0, 0, 0), np.random.default_rng(seed), density_per_um3=density)[1]["positions_um"])
            for seed in range(40)
        ]
        expected = density * volume_um3
        # Poisson: the mean of 40 draws is within 4 standard errors of λ.
        assert abs(np.mean(counts) - expected) < 4 * np.sqrt(expected / 40)
        assert np.var(counts) == pytest.approx(expected, rel=0.6)


def test_beads_fill_the_grid_uniformly_with_mean_brightness():
    shape = (20, 100, 100)
    origin = (-1.0, -2.0, -3.0)
    volume, info = beads(shape, VOXEL, origin, np.random.default_rng(0), density_per_um3=2.0)
    positions = info["positions_um"]
    low = np.asarray(origin) - 0.5 * np.asarray(VOXEL)
    high = low + np.asarray(shape) * np.asarray(VOXEL)
    assert np.all(positions >= low) and np.all(positions <= high)
    np.testing.assert_allclose(positions.mean(axis=0), 0.5 * (low + high), atol=0.1)
    assert info["photons"].mean() == pytest.approx(BEAD_PHOTONS, rel=0.05)
    assert info["photons"].std() / info["photons"].mean() == pytest.approx(0.4, rel=0.15)  # log-normal σ 0.4
    # Every photon lands in the grid, except the halves of beads at the very edge.
    assert volume.sum() == pytest.approx(info["photons"].sum(), rel=0.02)


def test_beads_at_given_positions_get_equal_brightness():
    volume, info = beads((10, 20, 20), VOXEL, (0, 0, 0), np.random.default_rng(0), positions_um=[[1.0, 1.0, 1.0]])
    assert volume[5, 10, 10] == pytest.approx(BEAD_PHOTONS)
    assert volume.sum() == pytest.approx(BEAD_PHOTONS)


def _nuclei(seed=0, density=0.01):
    shape = (60, 160, 160)  # 12 x 16 x 16 µm plus nothing else
    voxel = (0.2, 0.1, 0.1)
    rng = np.random.default_rng(seed)
    return nuclei(shape, voxel, (0.0, 0.0, 0.0), (12.0, 16.0, 16.0), rng, density_per_um3=density), voxel


def _worm_lateral(points_yx, worm):
    """Signed lateral distance of points (..., 2) from the worm's bent centre line."""
    center = worm["center_yx_um"]
    return np.hypot(points_yx[..., 0] - center[0], points_yx[..., 1] - center[1]) - worm["bend_radius_um"]


def test_nuclei_are_2_to_4_um_ellipsoids_inside_the_worm_without_overlap():
    (volume, info), voxel = _nuclei()
    centers, axes = info["centers_um"], info["semi_axes_um"]
    assert len(centers) >= 10
    assert len(centers) >= 0.8 * info["target_count"]
    assert np.all(axes >= 1.0) and np.all(axes <= 2.0)  # diameters 2-4 µm
    worm = info["worm"]
    lateral = _worm_lateral(centers[:, 1:], worm)
    assert np.all(np.hypot(lateral, centers[:, 0] - worm["center_z_um"]) < worm["tube_radius_um"])
    distances = np.linalg.norm(centers[:, None] - centers[None], axis=-1) + np.eye(len(centers)) * 1e9
    assert np.all(distances > 0.9 * 1.0 * 2)  # at least 0.9 x (two smallest radii)
    # The worm's upper boundary is near z = 0, where the paper's scans began.
    assert abs(worm["center_z_um"] - worm["tube_radius_um"]) <= 1.0
    assert 9.0 <= worm["tube_radius_um"] <= 13.0


def test_nuclei_are_bright_textured_bodies_over_a_dim_worm_background():
    (volume, info), voxel = _nuclei(seed=1)
    grid = [np.arange(n) * v for n, v in zip(volume.shape, voxel)]
    points = np.stack(np.meshgrid(*grid, indexing="ij"), axis=-1)
    near_any = np.zeros(volume.shape, bool)
    cores = []
    for center, axes, rotation in zip(info["centers_um"], info["semi_axes_um"], info["rotations"]):
        # Only the nucleus's neighbourhood (keeps the test fast).
        lo = np.maximum(((center - 2.7) / voxel).astype(int), 0)
        hi = (center + 2.7) / voxel + 1
        box = tuple(slice(a, int(b)) for a, b in zip(lo, hi))
        radial = np.linalg.norm(((points[box] - center) @ rotation) / axes, axis=-1)
        near_any[box] |= radial < 1.3
        core = volume[box][radial < 0.7]
        if core.size:
            cores.append(core)
    worm = info["worm"]
    lateral = _worm_lateral(points[..., 1:], worm)
    in_worm = np.hypot(lateral, points[..., 0] - worm["center_z_um"]) < worm["tube_radius_um"] - 0.5
    background = volume[in_worm & ~near_any]
    assert background.size > 1000 and background.mean() > 0
    nucleus_mean = np.mean([core.mean() for core in cores])
    assert nucleus_mean > 10 * background.mean()
    # Texture: voxel values vary inside each nucleus (±30 % grain), beyond its brightness.
    assert np.median([core.std() / core.mean() for core in cores if core.size > 50]) > 0.1
    out_of_worm = ~(np.hypot(lateral, points[..., 0] - worm["center_z_um"]) < worm["tube_radius_um"] + 2.0 * 2)
    assert np.all(volume[out_of_worm] == 0)


def test_nuclei_are_deterministic_per_seed():
    (a, _), _ = _nuclei(seed=4)
    (b, _), _ = _nuclei(seed=4)
    (c, _), _ = _nuclei(seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sample_object_pads_the_grid_with_margin():
    volume, pad, info = sample_object("beads", (5, 16, 16), z_step_um=0.2, pixel_um=0.1, seed=0, margin_um=(1.0, 0.5))
    assert pad == (5, 5, 5)
    assert volume.shape == (15, 26, 26)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(sample="cells"), "sample must be one of"),
        (dict(density_per_um3=-1.0), "density_per_um3"),
        (dict(margin_um=(1.0,)), "margin_um"),
        (dict(seed=-3), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(positions_um=[[0, 0]]), "positions_um"),
        (dict(positions_um=[[50.0, 0.0, 0.0]]), "inside the padded grid"),
        (dict(sample="nuclei", positions_um=[[0.0, 0.0, 0.0]]), "only accepted for sample='beads'"),
    ],
)
def test_sample_object_rejects_bad_arguments(kwargs, error):
    args = dict(sample="beads", shape=(4, 16, 16), seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=error):
        sample_object(**args)


# ------------------------------------------------- other arrangements and samples

FIELD = (12.0, 16.0, 16.0)
GRID = ((60, 160, 160), (0.2, 0.1, 0.1), (0.0, 0.0, 0.0), FIELD)


def _inside_nucleus_distance(info):
    centers, axes = info["centers_um"], info["semi_axes_um"]
    return np.linalg.norm(centers[:, None] - centers[None], axis=-1) + np.eye(len(centers)) * 1e9, axes.max(axis=1)


def test_embryo_nuclei_fill_an_ellipsoid_on_the_coverslip():
    volume, info = nuclei(*GRID, np.random.default_rng(2), density_per_um3=0.03, arrangement="embryo")
    body = info["body"]
    assert body["shape"] == "ellipsoid" and abs(body["center_um"][0] - body["semi_axes_um"][0]) <= 1.0
    c, s = np.cos(body["angle_rad"]), np.sin(body["angle_rad"])
    d = info["centers_um"] - np.asarray(body["center_um"])
    u, v = c * d[:, 1] + s * d[:, 2], -s * d[:, 1] + c * d[:, 2]
    radial = np.sqrt((d[:, 0] / body["semi_axes_um"][0]) ** 2 + (u / body["semi_axes_um"][1]) ** 2
                     + (v / body["semi_axes_um"][2]) ** 2)
    assert len(radial) >= 20 and np.all(radial < 1.0)
    distances, largest = _inside_nucleus_distance(info)
    assert np.all(distances >= 0.9 * (largest[:, None] + largest[None]) - 1e-9)


def test_tissue_nuclei_touch_and_fill_the_volume():
    volume, info = nuclei(*GRID, np.random.default_rng(3), density_per_um3=0.02, arrangement="tissue")
    distances, largest = _inside_nucleus_distance(info)
    pair = largest[:, None] + largest[None]
    assert np.all(distances >= 0.75 * pair - 1e-9)
    assert np.mean(np.min(distances / pair, axis=1) < 1.0) > 0.3  # many touch a neighbour
    assert np.all(info["semi_axes_um"] >= 1.5) and info["body"] == {"shape": "everywhere"}
    assert (volume > 0).mean() > 0.99  # the diffuse background fills the volume


def test_flat_nuclei_lie_in_one_layer_and_turn_about_z_only():
    volume, info = nuclei(*GRID, np.random.default_rng(4), density_per_um3=0.02, arrangement="flat")
    assert len(info["centers_um"]) >= 1
    assert np.all(np.abs(info["centers_um"][:, 0] - info["body"]["center_z_um"]) <= 0.3)
    assert np.all((info["semi_axes_um"][:, 0] >= 0.8) & (info["semi_axes_um"][:, 0] <= 2.0))
    assert np.all(info["semi_axes_um"][:, 1:] >= 2.25 - 1e-9)
    np.testing.assert_allclose(info["rotations"][:, 0], np.tile([1.0, 0.0, 0.0], (len(info["rotations"]), 1)))


def test_texture_sets_the_chromatin_contrast():
    contrasts = []
    for texture in (0.1, 0.5):
        volume, info = nuclei(*GRID, np.random.default_rng(5), density_per_um3=0.02, arrangement="tissue",
                              texture=texture, background_fraction=0.0)
        center = info["centers_um"][0]
        index = tuple(int(round(c / v)) for c, v in zip(center, GRID[1]))
        core = volume[index[0] - 2 : index[0] + 3, index[1] - 5 : index[1] + 6, index[2] - 5 : index[2] + 6]
        contrasts.append(core.std() / core.mean())
    assert contrasts[1] > 2.5 * contrasts[0]


def test_bad_arrangements_raise():
    with pytest.raises(ValueError, match="arrangement must be one of"):
        nuclei(*GRID, np.random.default_rng(0), arrangement="organoid")
    with pytest.raises(ValueError, match="arrangement must be one of"):
        filaments(*GRID, np.random.default_rng(0), arrangement="mesh")


def test_spot_count_follows_density_and_spots_stay_in_the_body():
    counts = []
    for seed in range(4):
        volume, info = spots(*GRID, np.random.default_rng(seed), density_per_um3=0.3, arrangement="tissue")
        counts.append(len(info["positions_um"]))
    expected = 0.3 * 60 * 160 * 160 * 0.2 * 0.01
    assert abs(np.mean(counts) - expected) < 4 * np.sqrt(expected / 4)
    volume, info = spots(*GRID, np.random.default_rng(9), density_per_um3=0.3, arrangement="embryo")
    body = info["body"]
    d = info["positions_um"] - np.asarray(body["center_um"])
    c, s = np.cos(body["angle_rad"]), np.sin(body["angle_rad"])
    u, v = c * d[:, 1] + s * d[:, 2], -s * d[:, 1] + c * d[:, 2]
    radial = np.sqrt((d[:, 0] / body["semi_axes_um"][0]) ** 2 + (u / body["semi_axes_um"][1]) ** 2
                     + (v / body["semi_axes_um"][2]) ** 2)
    assert np.all(radial < 1.0 + 0.1 / min(body["semi_axes_um"]))  # within half a voxel of the body


def test_a_spot_is_a_gaussian_of_the_given_fwhm():
    volume, info = spots((41, 41, 41), (0.05, 0.05, 0.05), (0.0, 0.0, 0.0), (2.0, 2.0, 2.0),
                         np.random.default_rng(0), density_per_um3=0.0, size_um=0.3, background_fraction=0.0)
    assert volume.sum() == 0
    from keras_rmz.simulate.samples import splat_points

    point = np.zeros((41, 41, 41), np.float32)
    splat_points(point, [[20, 20, 20]], [1.0])
    import scipy.ndimage

    blob = scipy.ndimage.gaussian_filter(point, (0.3 / 2.3548) / 0.05, mode="constant", truncate=3.0)
    profile = blob[20, 20]
    half = profile.max() / 2
    above = np.flatnonzero(profile >= half)
    # FWHM from linear interpolation at both flanks.
    left = above[0] - (profile[above[0]] - half) / (profile[above[0]] - profile[above[0] - 1])
    right = above[-1] + (profile[above[-1]] - half) / (profile[above[-1]] - profile[above[-1] + 1])
    np.testing.assert_allclose((right - left) * 0.05, 0.3, rtol=0.03)


def test_worm_like_chains_decorrelate_over_the_persistence_length():
    rng = np.random.default_rng(0)
    step, persistence, n = 0.02, 2.0, 151
    cosines = []
    for _ in range(400):
        path = worm_like_chain((0.0, 0.0, 0.0), n, step, persistence, rng)
        tangents = np.diff(path, axis=0) / step
        cosines.append(tangents[1:] @ tangents[0])
    cosines = np.mean(cosines, axis=0)
    s = np.arange(1, n - 1) * step
    np.testing.assert_allclose(cosines[[24, 74, 148]], np.exp(-s[[24, 74, 148]] / persistence), atol=0.05)
    np.testing.assert_allclose(np.linalg.norm(np.diff(path, axis=0), axis=1), step)


def test_filaments_hold_their_length_in_photons():
    grid = ((40, 120, 120), (0.2, 0.1, 0.1), (0.0, 0.0, 0.0), (8.0, 12.0, 12.0))
    volume, info = filaments(*grid, np.random.default_rng(1), length_per_um3=0.1, photons_per_um=1000.0,
                             arrangement="network", background_fraction=0.0)
    lengths, photons = info["lengths_um"], info["photons"]
    assert len(lengths) > 5 and np.all((lengths >= 2.9) & (lengths <= 12.0))
    # Log-normal brightness around 1000 photons per µm of each filament.
    assert 0.4 < np.median(photons / lengths) / 1000 < 2.5
    # The grid holds what lies inside it: never more light than was emitted.
    assert 0 < volume.sum() <= photons.sum() * (1 + 1e-5)
    # A coarse grid much larger than the filaments keeps most of an aster's light.
    big = ((60, 60, 60), (0.5, 0.5, 0.5), (0.0, 0.0, 0.0), (30.0, 30.0, 30.0))
    volume, info = filaments(*big, np.random.default_rng(2), length_per_um3=0.01, arrangement="asters",
                             background_fraction=0.0)
    assert 1 <= len(info["centers_um"]) and 0.6 * info["photons"].sum() < volume.sum() <= info["photons"].sum() * 1.00001
