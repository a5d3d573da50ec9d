"""Object generators: beads and worm nuclei."""

import numpy as np
import pytest

from keras_rmz.simulate import beads, nuclei, sample_object
from keras_rmz.simulate.samples import BEAD_PHOTONS, splat_points

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
