import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage
from skimage.filters import threshold_triangle

from keras_rmz.data.normalization import Normalization, compute_normalization, extended_depth_of_field
from keras_rmz.io import Stack, read_stack, write_stack

BACKGROUND = 100.0
NUM_PLANES, SIZE, RADIUS, PITCH = 5, 96, 6, 32


def disc_volume():
    """Beads as Gaussian-profiled discs, each in focus in one plane, on a background that is
    the same in every plane; discs are far apart (26 px gaps) so no plane's
    sharpness reaches another disc. Any focus-measure EDF must then return
    background + every disc, whichever plane it picks where all look alike.

    Returns the volume and, built independently, its EDF image.
    """
    yy, xx = np.mgrid[:SIZE, :SIZE]
    volume = np.full((NUM_PLANES, SIZE, SIZE), BACKGROUND)
    amplitudes = np.linspace(40.0, 900.0, 9)
    for i, (cy, cx) in enumerate((cy, cx) for cy in (16, 48, 80) for cx in (16, 48, 80)):
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        dome = np.where(r2 <= RADIUS**2, amplitudes[i] * np.exp(-r2 / (2 * 2.5**2)), 0.0)
        volume[i % NUM_PLANES] += dome
    edf = BACKGROUND + (volume - BACKGROUND).sum(axis=0)
    return volume, edf


def paper_factors(edf, percentile=99):
    """The paper's factors from a given EDF image, in plain numpy."""
    threshold = threshold_triangle(edf)
    return edf[edf <= threshold].mean(), np.percentile(edf[edf > threshold], percentile)


# --- extended depth of field ----------------------------------------------------


def test_edf_of_disc_volume_is_every_disc():
    volume, expected = disc_volume()
    edf, index = extended_depth_of_field(volume, return_index=True)
    np.testing.assert_array_equal(edf, expected)
    # every disc's pixels come from the plane the disc is in
    for plane in range(NUM_PLANES):
        on_disc = volume[plane] > BACKGROUND
        assert np.all(index[on_disc] == plane)


def test_edf_picks_the_sharp_plane_per_region():
    rng = np.random.default_rng(0)
    sharp = rng.random((80, 80))
    blurred = ndimage.gaussian_filter(sharp, 3)
    left = np.zeros((80, 80), bool)
    left[:, :40] = True
    # left half sharp in plane 1, right half sharp in plane 3; the rest blurred
    volume = np.stack([blurred, np.where(left, sharp, blurred), blurred, np.where(left, blurred, sharp)])
    edf, index = extended_depth_of_field(volume, return_index=True)
    interior = np.zeros_like(left)
    interior[8:-8, 8:-8] = True
    interior[:, 30:50] = False  # keep away from the seam
    expected_index = np.where(left, 1, 3)
    assert np.mean(index[interior] == expected_index[interior]) > 0.99
    chosen = interior & (index == expected_index)
    np.testing.assert_array_equal(edf[chosen], sharp[chosen])


def test_edf_of_one_plane_is_the_plane():
    image = np.random.default_rng(0).random((20, 30))
    np.testing.assert_array_equal(extended_depth_of_field(image), image)
    np.testing.assert_array_equal(extended_depth_of_field(image[None]), image)


# --- compute_normalization: golden values ---------------------------------------


def test_golden_factors_on_disc_volume():
    volume, edf = disc_volume()
    shift, scale = paper_factors(edf)
    # the threshold cuts through discs: dim disc pixels count as background
    assert shift > BACKGROUND
    norm = compute_normalization(volume)
    assert norm.shift == pytest.approx(shift, rel=1e-12)
    assert norm.scale == pytest.approx(scale, rel=1e-12)


def test_golden_factors_for_input_images():
    """M input images (M, H, W) are normalized the same way: an EDF over them."""
    volume, _ = disc_volume()
    images = volume[[0, 2, 4]]
    edf = BACKGROUND + (images - BACKGROUND).sum(axis=0)
    shift, scale = paper_factors(edf)
    norm = compute_normalization(images)
    assert norm.shift == pytest.approx(shift, rel=1e-12)
    assert norm.scale == pytest.approx(scale, rel=1e-12)


def test_integer_volume_and_stack_input():
    volume, edf = disc_volume()
    counts = np.round(volume).astype(np.uint16)
    shift, scale = paper_factors(BACKGROUND + (counts - BACKGROUND).sum(axis=0))
    stack = Stack(counts, z=np.arange(NUM_PLANES) * 0.1, pixel_um=0.1)
    for source in (counts, stack):
        norm = compute_normalization(source)
        assert (norm.shift, norm.scale) == pytest.approx((shift, scale), rel=1e-12)


def test_one_image_equals_one_plane_stack():
    volume, _ = disc_volume()
    image = volume.sum(axis=0)
    assert compute_normalization(image) == compute_normalization(image[None])


def test_percentile_argument():
    volume, edf = disc_volume()
    _, scale_90 = paper_factors(edf, percentile=90)
    assert compute_normalization(volume, percentile=90).scale == pytest.approx(scale_90, rel=1e-12)
    with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\]"):
        compute_normalization(volume, percentile=0)


def test_factors_follow_an_affine_change_of_units():
    volume, _ = disc_volume()
    norm = compute_normalization(volume)
    changed = compute_normalization(3.0 * volume + 50.0)
    assert changed.shift == pytest.approx(3.0 * norm.shift + 50.0, rel=1e-9)
    assert changed.scale == pytest.approx(3.0 * norm.scale + 50.0, rel=1e-9)


# --- Normalization --------------------------------------------------------------


def test_apply_is_the_paper_formula():
    volume, _ = disc_volume()
    norm = Normalization(shift=101.5, scale=812.25)
    np.testing.assert_allclose(norm.apply(volume), (volume - 101.5) / 812.25, rtol=1e-15)
    # background mean -> 0; foreground 99th percentile -> 1 - shift/scale, not 1
    norm = compute_normalization(volume)
    _, edf = disc_volume()
    normalized = norm.apply(edf)
    threshold = threshold_triangle(edf)
    assert normalized[edf <= threshold].mean() == pytest.approx(0.0, abs=1e-12)
    assert np.percentile(normalized[edf > threshold], 99) == pytest.approx(1 - norm.shift / norm.scale, rel=1e-12)


def test_apply_dtypes():
    norm = Normalization(shift=10, scale=4)
    assert norm.apply(np.array([18], np.uint16)).dtype == np.float32
    np.testing.assert_array_equal(norm.apply(np.array([18], np.uint16)), [2.0])
    assert norm.apply(np.array([18.0])).dtype == np.float64
    assert norm.apply(np.array([18.0], np.float32)).dtype == np.float32
    assert norm.apply(np.array([18], np.uint8), dtype=np.float64).dtype == np.float64
    assert norm.invert(np.array([2.0], np.float32)).dtype == np.float32
    np.testing.assert_array_equal(norm.invert(np.array([2.0])), [18.0])


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 1e-6)])
def test_invert_round_trip(dtype, rtol):
    norm = Normalization(shift=123.456, scale=789.012)
    x = np.random.default_rng(0).uniform(0, 4000, (3, 8, 8)).astype(dtype)
    np.testing.assert_allclose(norm.invert(norm.apply(x)), x, rtol=rtol)
    y = np.random.default_rng(1).uniform(-0.2, 1.5, (3, 8, 8)).astype(dtype)
    np.testing.assert_allclose(norm.apply(norm.invert(y)), y, rtol=rtol, atol=rtol)


def test_dict_round_trip():
    norm = Normalization(shift=np.float32(101.5), scale=np.int64(812))
    d = norm.to_dict()
    assert d == {"shift": 101.5, "scale": 812.0}
    assert all(type(v) is float for v in d.values())
    assert Normalization.from_dict(json.loads(json.dumps(d))) == norm


@pytest.mark.parametrize(
    "d, error",
    [
        ({"shift": 1.0}, ValueError),
        ({"shift": 1.0, "scale": 2.0, "offset": 3.0}, ValueError),
        ([1.0, 2.0], ValueError),
        ({"shift": "1", "scale": 2.0}, TypeError),
        ({"shift": 1.0, "scale": 0.0}, ValueError),
        ({"shift": 1.0, "scale": -2.0}, ValueError),
        ({"shift": float("nan"), "scale": 2.0}, ValueError),
        ({"shift": 1.0, "scale": float("inf")}, ValueError),
    ],
)
def test_from_dict_rejects_bad_input(d, error):
    with pytest.raises(error, match="shift|scale"):
        Normalization.from_dict(d)


def test_normalization_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Normalization(1.0, 2.0).scale = 3.0


def test_stack_records_its_normalization_through_a_file(tmp_path):
    volume, _ = disc_volume()
    stack = Stack(volume.astype(np.float32), np.arange(NUM_PLANES) * 0.1, 0.1, {"modality": "widefield"})
    norm = compute_normalization(stack)
    normalized = norm.apply(stack)
    assert normalized.metadata == {"modality": "widefield", "normalization": norm.to_dict()}
    assert stack.metadata == {"modality": "widefield"}
    back = read_stack(write_stack(tmp_path / "n.ome.tif", normalized))
    assert Normalization.from_dict(back.metadata["normalization"]) == norm
    restored = norm.invert(back)
    assert "normalization" not in restored.metadata
    np.testing.assert_allclose(restored.data, stack.data, rtol=1e-6)


# --- degenerate input -----------------------------------------------------------


@pytest.mark.parametrize(
    "volume, match",
    [
        (np.zeros((3, 16, 16)), r"constant \(every pixel = 0\)"),
        (np.full((3, 16, 16), 7.0), r"constant \(every pixel = 7\)"),
        (np.full((3, 16, 16), np.nan), "NaN or inf"),
        (np.where(np.eye(16, dtype=bool), np.inf, 1.0)[None], "NaN or inf"),
        (np.zeros((0, 16, 16)), "non-empty"),
        (np.zeros((2, 3, 16, 16)), r"\(Z, Y, X\)"),
        (np.zeros(16), r"\(Z, Y, X\)"),
        (np.full((1, 4, 4), "a"), "numbers"),
    ],
)
def test_degenerate_volumes_are_refused(volume, match):
    with pytest.raises(ValueError, match=match):
        compute_normalization(volume)


def test_nan_in_one_pixel_is_refused():
    volume, _ = disc_volume()
    volume[2, 5, 5] = np.nan
    with pytest.raises(ValueError, match="1 NaN or inf"):
        compute_normalization(volume)


def test_non_positive_scale_is_refused():
    volume, _ = disc_volume()
    with pytest.raises(ValueError, match="<= 0"):
        compute_normalization(volume - 10_000.0)


# --- real stacks ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs",
    [("beads_confocal_imagej.tif", {}), ("bead_widefield_25pct.tif", {"z_step_um": 0.2, "pixel_um": 0.1})],
)
def test_real_stacks_normalize_to_background_0_and_beads_near_1(shared_data, name, kwargs):
    stack = read_stack(shared_data / name, **kwargs)
    norm = compute_normalization(stack)
    assert 0 < norm.shift < norm.scale
    normalized = norm.apply(stack.data)
    assert normalized.dtype == np.float32
    # most voxels are background: normalized to about 0
    assert abs(float(np.median(normalized))) < 0.05
    edf = extended_depth_of_field(stack)
    foreground = edf > threshold_triangle(edf)
    assert 0.001 < foreground.mean() < 0.5
    assert 0.9 < np.percentile(norm.apply(edf)[foreground], 99) <= 1.0
