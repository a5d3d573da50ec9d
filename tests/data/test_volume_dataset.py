"""VolumeDataset: which planes, where, in what order, how normalized.

Most tests use a "coded" stack whose every voxel says where it came from:
``data[k, y, x] = 1000·(k + 1) + y·W + x``. Un-normalizing an item's pixel
with the stack's own ``compute_normalization`` gives an integer from which the
plane ``k`` and the source pixel ``(y, x)`` are read back, independently of
the dataset's code.
"""

import pickle

import keras
import numpy as np
import pytest
import tifffile

from keras_rmz.data import VolumeDataset, compute_normalization
from keras_rmz.io import Stack

Z_STEP = 0.25  # µm
NUM_PLANES = 41  # z = 0 .. 10 µm
SIDE = 24  # y·SIDE + x < 1000, so the plane code is not disturbed


def coded_stack(num_planes=NUM_PLANES, side=SIDE, z=None, offset=0.0, gain=1.0):
    k = np.arange(num_planes, dtype=np.float64)[:, None, None]
    y = np.arange(side, dtype=np.float64)[None, :, None]
    x = np.arange(side, dtype=np.float64)[None, None, :]
    data = (1000.0 * (k + 1) + y * side + x) * gain + offset
    if z is None:
        z = np.arange(num_planes) * Z_STEP
    return Stack(data.astype(np.float32), z=z, pixel_um=0.1)


def decode(planes, norm, side=SIDE, offset=0.0, gain=1.0):
    """(..., P, P) normalized planes -> (k, y, x) integer maps of the same shape."""
    raw = (np.asarray(norm.invert(np.asarray(planes, np.float64))) - offset) / gain
    code = np.rint(raw)
    # Integral only if the dataset applied exactly this normalization.
    np.testing.assert_allclose(raw, code, atol=0.05, rtol=0)
    code = code.astype(np.int64)
    k = np.rint((code - 499.5) / 1000).astype(np.int64) - 1
    pixel = code - 1000 * (k + 1)
    assert pixel.min() >= 0 and pixel.max() < side * side
    return k, pixel // side, pixel % side


def plane_of(planes, norm, **kw):
    """Plane index of each (P, P) plane; every pixel must agree."""
    k, _, _ = decode(planes, norm, **kw)
    flat = k.reshape(k.shape[:-2] + (-1,))
    assert np.all(flat == flat[..., :1]), "pixels of one plane come from different planes"
    return flat[..., 0]


def make(stacks=None, **kwargs):
    defaults = dict(num_inputs=3, input_spacing_um=2.0, patch_size=8, batch_size=8,
                    steps_per_epoch=5, augment=False, seed=7)
    defaults.update(kwargs)
    return VolumeDataset(coded_stack() if stacks is None else stacks, **defaults)


def all_items(dataset):
    return [dataset[i] for i in range(len(dataset))]


# === Shapes and contents ===


def test_item_shapes_and_dtypes():
    dataset = make(patch_size=8, batch_size=3, num_inputs=4, input_spacing_um=1.5)
    inputs, target = dataset[0]
    assert set(inputs) == {"images", "input_z", "output_z"}
    assert inputs["images"].shape == (3, 4, 8, 8, 1)
    assert inputs["input_z"].shape == (3, 4)
    assert inputs["output_z"].shape == (3,)
    assert target.shape == (3, 8, 8, 1)
    for array in (*inputs.values(), target):
        assert array.dtype == np.float32
    assert len(dataset) == 5


def test_images_are_the_planes_at_input_z_and_target_at_output_z():
    stack = coded_stack()
    norm = compute_normalization(stack)
    dataset = make(stack)
    for inputs, target in all_items(dataset):
        planes = plane_of(inputs["images"][..., 0], norm)  # (B, M)
        np.testing.assert_allclose(inputs["input_z"], stack.z[planes], atol=1e-6)
        out = plane_of(target[..., 0], norm)
        np.testing.assert_allclose(inputs["output_z"], stack.z[out], atol=1e-6)


def test_uniform_spacing_gives_distinct_planes_delta_z_apart():
    dataset = make(num_inputs=4, input_spacing_um=2.5, batch_size=16)
    for inputs, _ in all_items(dataset):
        z = inputs["input_z"]
        np.testing.assert_allclose(np.diff(z, axis=1), 2.5, atol=1e-5)
        # Real planes of the stack.
        np.testing.assert_allclose(z / Z_STEP, np.rint(z / Z_STEP), atol=1e-4)
        assert z.min() >= 0 and z.max() <= 10.0 + 1e-6


def test_start_planes_cover_the_whole_stack():
    # With a span of 6 µm in a 10 µm stack every start in [0, 4] µm is possible.
    dataset = make(num_inputs=3, input_spacing_um=3.0, batch_size=32, steps_per_epoch=20)
    starts = np.concatenate([inputs["input_z"][:, 0] for inputs, _ in all_items(dataset)])
    assert starts.min() == pytest.approx(0.0)
    assert starts.max() == pytest.approx(4.0)


def test_spacing_jitter_stays_within_bounds_and_varies():
    jitter = 0.3
    dataset = make(num_inputs=3, input_spacing_um=2.0, spacing_jitter_um=jitter,
                   batch_size=16, steps_per_epoch=10)
    gaps = np.concatenate([np.diff(i["input_z"], axis=1).ravel() for i, _ in all_items(dataset)])
    # Each plane moves by at most jitter plus half a plane step (snapping).
    assert np.all(np.abs(gaps - 2.0) <= 2 * (jitter + Z_STEP / 2) + 1e-5)
    assert np.all(gaps > 0)
    assert np.unique(np.round(gaps, 3)).size >= 3, "jitter never moved a plane"


def test_random_spacing_draws_distinct_planes_within_the_span():
    dataset = make(num_inputs=3, input_spacing_um=2.0, spacing="random", batch_size=16,
                   steps_per_epoch=10)
    gaps = []
    for inputs, _ in all_items(dataset):
        z = inputs["input_z"]
        assert np.all(np.diff(z, axis=1) > 0)  # sorted and distinct
        assert np.all(z[:, -1] - z[:, 0] <= 4.0 + 1e-5)
        gaps.append(np.diff(z, axis=1).ravel())
    assert np.unique(np.round(np.concatenate(gaps), 3)).size >= 5, "spacing looks uniform"


def test_output_plane_within_span_plus_margin_clipped_to_stack():
    margin = 1.0
    dataset = make(num_inputs=2, input_spacing_um=3.0, output_margin_um=margin,
                   batch_size=32, steps_per_epoch=10)
    beyond = 0
    for inputs, _ in all_items(dataset):
        z, out = inputs["input_z"], inputs["output_z"]
        assert np.all(out >= np.maximum(z.min(axis=1) - margin, 0.0) - 1e-5)
        assert np.all(out <= np.minimum(z.max(axis=1) + margin, 10.0) + 1e-5)
        beyond += np.sum((out < z.min(axis=1) - 1e-5) | (out > z.max(axis=1) + 1e-5))
    assert beyond > 0, "the margin was never used"


def test_zero_margin_keeps_output_between_inputs():
    dataset = make(num_inputs=2, input_spacing_um=3.0, output_margin_um=0.0)
    for inputs, _ in all_items(dataset):
        z, out = inputs["input_z"], inputs["output_z"]
        assert np.all((out >= z.min(axis=1) - 1e-5) & (out <= z.max(axis=1) + 1e-5))


def test_default_margin_is_half_the_spacing():
    dataset = make(num_inputs=3, input_spacing_um=2.0)
    assert dataset.output_margin_um == 1.0


def test_single_input_draws_output_within_margin():
    dataset = make(num_inputs=1, input_spacing_um=None, output_margin_um=2.0)
    for inputs, _ in all_items(dataset):
        assert inputs["images"].shape[1] == 1
        assert np.all(np.abs(inputs["output_z"] - inputs["input_z"][:, 0]) <= 2.0 + 1e-5)


def test_non_monotonic_z_is_sorted_by_position_not_by_index():
    # Planes stored in descending z: plane k sits at z = 10 - 0.25·k.
    z = 10.0 - np.arange(NUM_PLANES) * Z_STEP
    stack = coded_stack(z=z)
    norm = compute_normalization(stack)
    dataset = make(stack, input_spacing_um=2.0)
    for inputs, target in all_items(dataset):
        planes = plane_of(inputs["images"][..., 0], norm)
        np.testing.assert_allclose(inputs["input_z"], z[planes], atol=1e-6)
        np.testing.assert_allclose(np.diff(inputs["input_z"], axis=1), 2.0, atol=1e-5)
        np.testing.assert_allclose(inputs["output_z"], z[plane_of(target[..., 0], norm)], atol=1e-6)


# === Orders ===


def test_order_sorted_is_ascending_z():
    for inputs, _ in all_items(make(order="sorted", spacing="random")):
        assert np.all(np.diff(inputs["input_z"], axis=1) > 0)


def test_order_descending_dz_puts_the_farthest_input_first():
    stack = coded_stack()
    norm = compute_normalization(stack)
    dataset = make(stack, order="descending_dz", num_inputs=4, input_spacing_um=2.0,
                   output_margin_um=1.0, batch_size=16)
    not_sorted = tied = 0
    for inputs, _ in all_items(dataset):
        dz = np.abs(inputs["input_z"] - inputs["output_z"][:, None])
        assert np.all(np.diff(dz, axis=1) <= 1e-6)
        # Equally far inputs (output midway) come in ascending z.
        ties = np.abs(np.diff(dz, axis=1)) <= 1e-6
        assert np.all(np.diff(inputs["input_z"], axis=1)[ties] > 0)
        tied += np.sum(ties)
        not_sorted += np.sum(np.any(np.diff(inputs["input_z"], axis=1) < 0, axis=1))
        # Images follow their z.
        np.testing.assert_allclose(
            stack.z[plane_of(inputs["images"][..., 0], norm)], inputs["input_z"], atol=1e-6)
    assert not_sorted > 0  # differs from ascending z for outputs inside the span
    assert tied > 0


def test_order_random_permutes_differently_across_samples():
    stack = coded_stack()
    norm = compute_normalization(stack)
    dataset = make(stack, order="random", num_inputs=3, batch_size=16, steps_per_epoch=4)
    permutations = set()
    for inputs, _ in all_items(dataset):
        z = inputs["input_z"]
        np.testing.assert_allclose(
            stack.z[plane_of(inputs["images"][..., 0], norm)], z, atol=1e-6)
        # Still the uniform grid, just reordered.
        np.testing.assert_allclose(np.diff(np.sort(z, axis=1), axis=1), 2.0, atol=1e-5)
        permutations.update(tuple(np.argsort(row)) for row in z)
    assert len(permutations) == 6  # all 3! orders occur over 64 samples


# === Determinism ===


def assert_items_equal(a, b):
    (inputs_a, target_a), (inputs_b, target_b) = a, b
    for key in inputs_a:
        np.testing.assert_array_equal(inputs_a[key], inputs_b[key])
    np.testing.assert_array_equal(target_a, target_b)


def items_differ(a, b):
    return not np.array_equal(a[0]["images"], b[0]["images"])


def test_same_seed_and_index_give_the_same_item():
    kwargs = dict(augment=True, order="random", spacing_jitter_um=0.3, min_signal=0.0)
    first, second = make(**kwargs), make(**kwargs)
    for i in (3, 0, 4, 3):  # any access order
        assert_items_equal(first[i], second[i])
        assert_items_equal(first[i], first[i])
    assert items_differ(first[0], first[1])
    assert items_differ(first[0], make(**{**kwargs, "seed": 8})[0])


def test_items_survive_pickling_for_worker_processes():
    dataset = make(augment=True, order="random")
    clone = pickle.loads(pickle.dumps(dataset))
    for i in range(len(dataset)):
        assert_items_equal(dataset[i], clone[i])


def test_seed_none_draws_one_seed_and_keeps_it():
    dataset = make(seed=None)
    assert isinstance(dataset.seed, int)
    assert_items_equal(dataset[2], dataset[2])
    assert_items_equal(dataset[2], make(seed=dataset.seed)[2])


def test_epochs_resample_deterministically():
    dataset, other = make(), make()
    epoch0 = dataset[0]
    dataset.on_epoch_end()
    assert dataset.epoch == 1
    assert items_differ(epoch0, dataset[0])
    # Resuming at epoch 1 reproduces it.
    other.epoch = 1
    assert_items_equal(dataset[0], other[0])

    fixed = make(resample_each_epoch=False)
    before = fixed[0]
    fixed.on_epoch_end()
    assert_items_equal(before, fixed[0])


def test_steps_per_epoch_is_len_and_default_counts_non_overlapping_patches():
    assert len(make(steps_per_epoch=13)) == 13
    # Two 24×24 stacks hold 3·3 patches of 8×8 each: 18 patches, batches of 4.
    dataset = make([coded_stack(), coded_stack()], steps_per_epoch=None, batch_size=4)
    assert len(dataset) == 5
    with pytest.raises(IndexError):
        dataset[5]


# === Augmentation and normalization ===


def _dihedral(array, rot90, flip):
    array = np.rot90(array, rot90)
    return array[:, ::-1] if flip else array


def test_augmentation_transforms_inputs_and_target_alike():
    stack = coded_stack()
    norm = compute_normalization(stack)
    dataset = make(stack, augment=True, batch_size=16, steps_per_epoch=4)
    seen = set()
    for inputs, target in all_items(dataset):
        for b in range(dataset.batch_size):
            planes = np.concatenate([inputs["images"][b, ..., 0], target[b, None, ..., 0]])
            _, ys, xs = decode(planes, norm)
            # Every input and the target show the same pixels in the same layout.
            assert np.all(ys == ys[:1]) and np.all(xs == xs[:1])
            # That layout is one of the 8 symmetries of an un-augmented crop.
            y0, x0 = ys[0].min(), xs[0].min()
            crop_y, crop_x = np.mgrid[y0:y0 + 8, x0:x0 + 8]
            matches = [(r, f) for r in range(4) for f in (False, True)
                       if np.array_equal(_dihedral(crop_y, r, f), ys[0])
                       and np.array_equal(_dihedral(crop_x, r, f), xs[0])]
            assert len(matches) == 1
            seen.add(matches[0])
    assert len(seen) == 8, f"only {len(seen)} of the 8 symmetries occurred"


def test_no_augmentation_gives_plain_crops():
    stack = coded_stack()
    norm = compute_normalization(stack)
    inputs, target = make(stack, augment=False)[0]
    _, ys, xs = decode(inputs["images"][..., 0], norm)
    y0, x0 = ys[:, :, :1, :1], xs[:, :, :1, :1]
    grid_y, grid_x = np.mgrid[0:8, 0:8]
    np.testing.assert_array_equal(ys, y0 + grid_y)
    np.testing.assert_array_equal(xs, x0 + grid_x)


def test_rectangular_patches_keep_their_shape_under_augmentation():
    dataset = make(patch_size=(8, 12), augment=True, batch_size=16)
    for inputs, target in all_items(dataset):
        assert inputs["images"].shape[2:4] == (8, 12)
        assert target.shape[1:3] == (8, 12)


def test_normalization_is_each_stacks_own():
    bright = coded_stack(offset=20000.0, gain=3.0)
    dim = coded_stack()
    dataset = make([bright, dim], batch_size=16)
    norms = [compute_normalization(bright), compute_normalization(dim)]
    for got, expected in zip(dataset.input_normalizations, norms):
        assert got.shift == pytest.approx(expected.shift)
        assert got.scale == pytest.approx(expected.scale)
    samples = dataset.describe_item(0)
    inputs, target = dataset[0]
    used = set()
    for b, sample in enumerate(samples):
        i = sample["stack_index"]
        used.add(i)
        kw = dict(offset=20000.0, gain=3.0) if i == 0 else {}
        planes = plane_of(inputs["images"][b, ..., 0], norms[i], **kw)
        np.testing.assert_array_equal(planes, sample["input_planes"])
        # Golden value: the raw voxel through compute_normalization(stack).apply.
        stack = (bright, dim)[i]
        y, x = sample["y"], sample["x"]
        expected = norms[i].apply(stack.data[sample["output_plane"], y:y + 8, x:x + 8])
        np.testing.assert_allclose(target[b, ..., 0], expected, rtol=1e-5, atol=1e-5)
    assert used == {0, 1}


# === Paired targets ===


def test_paired_targets_come_from_the_target_stack_with_its_normalization():
    inputs_stack = coded_stack()
    # A "confocal" stack on the same grid, with another intensity scale.
    target_stack = coded_stack(offset=5000.0, gain=2.0)
    dataset = make(inputs_stack, targets=target_stack, augment=True)
    input_norm = compute_normalization(inputs_stack)
    target_norm = compute_normalization(target_stack)
    assert dataset.target_normalizations[0].scale == pytest.approx(target_norm.scale)
    assert target_norm.scale != pytest.approx(input_norm.scale)
    for inputs, target in all_items(dataset):
        out = plane_of(target[..., 0], target_norm, offset=5000.0, gain=2.0)
        np.testing.assert_allclose(inputs["output_z"], inputs_stack.z[out], atol=1e-6)
        planes = plane_of(inputs["images"][..., 0], input_norm)
        np.testing.assert_allclose(inputs["input_z"], inputs_stack.z[planes], atol=1e-6)


def test_paired_targets_must_match_shape_and_z():
    with pytest.raises(ValueError, match=r"shape \(41, 20, 20\).*\(41, 24, 24\)"):
        make(coded_stack(), targets=coded_stack(side=20))
    shifted = coded_stack(z=np.arange(NUM_PLANES) * Z_STEP + 0.05)
    with pytest.raises(ValueError, match="different z grid"):
        make(coded_stack(), targets=shifted)
    with pytest.raises(ValueError, match="2 stacks and 1 targets"):
        make([coded_stack(), coded_stack()], targets=[coded_stack()])


# === Paths ===


def test_paths_are_read_as_stacks(tmp_path):
    from keras_rmz.io import read_stack

    stack = coded_stack()
    path = tmp_path / "coded.ome.tif"
    tifffile.imwrite(
        path, stack.data, ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1,
                  "PhysicalSizeZ": Z_STEP},
    )
    from_path = make(str(path), augment=True)
    from_stack = make(read_stack(path), augment=True)
    for i in range(len(from_path)):
        assert_items_equal(from_path[i], from_stack[i])
    norm = compute_normalization(from_path.stacks[0])
    inputs, _ = from_path[0]
    planes = plane_of(inputs["images"][..., 0], norm)
    # z from the file's PhysicalSizeZ: consecutive planes 0.25 µm apart.
    np.testing.assert_allclose(np.diff(inputs["input_z"], axis=1), 2.0, atol=1e-5)
    np.testing.assert_allclose(np.diff(planes, axis=1), 8)
    # Paired paths too.
    paired = make([path], targets=[path])
    assert paired.targets[0].shape == stack.shape


# === Signal rejection ===


def corner_stack(side=64, corner=24):
    rng = np.random.default_rng(0)
    data = rng.normal(100.0, 2.0, size=(21, side, side))
    data[:, :corner, :corner] += 1000.0
    return Stack(data.astype(np.float32), z=np.arange(21) * 0.5, pixel_um=0.1)


def test_min_signal_makes_empty_patches_rare():
    stack = corner_stack()

    def fraction_with_signal(**kwargs):
        dataset = VolumeDataset(stack, num_inputs=2, input_spacing_um=2.0, patch_size=16,
                                batch_size=25, steps_per_epoch=8, augment=False, seed=3,
                                **kwargs)
        # Bright pixels (normalized ≈ 1, background ≈ 0) in each target patch.
        bright = np.concatenate([np.sum(target[..., 0] > 0.5, axis=(1, 2))
                                 for _, target in all_items(dataset)])
        return np.mean(bright >= 2)

    without = fraction_with_signal()
    with_rejection = fraction_with_signal(min_signal=0.5)
    assert without < 0.4  # the corner covers ~20% of patch positions
    assert with_rejection > 0.95


def test_min_signal_gives_up_after_bounded_retries():
    stack = corner_stack()
    # Unreachable threshold: every sample still comes back, after the retries.
    dataset = VolumeDataset(stack, num_inputs=2, input_spacing_um=2.0, patch_size=16,
                            batch_size=4, steps_per_epoch=2, min_signal=1e6,
                            max_signal_retries=3, seed=0)
    inputs, target = dataset[0]
    assert np.all(np.isfinite(target))


# === Argument checks ===


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_inputs=0), r"num_inputs must be an int ≥ 1; got 0"),
        (dict(num_inputs=3, input_spacing_um=None), r"input_spacing_um .* is required"),
        (dict(num_inputs=3, input_spacing_um=6.0), r"\[0, 10\] µm"),
        (dict(num_inputs=3, input_spacing_um=0.1), r"finer than the planes"),
        (dict(num_inputs=50, input_spacing_um=0.25), r"at least that many planes"),
        (dict(input_spacing_um=-1.0), r"input_spacing_um must be > 0"),
        (dict(patch_size=32), r"patch_size 32×32 is larger .*\(24×24"),
        (dict(patch_size=0), r"patch_size must be a positive int"),
        (dict(order="backwards"), r"order must be one of 'sorted', 'random', 'descending_dz'"),
        (dict(spacing="log"), r"spacing must be one of"),
        (dict(spacing_jitter_um=1.5), r"smaller than input_spacing_um / 2"),
        (dict(spacing="random", spacing_jitter_um=0.1), r"spacing='uniform' only"),
        (dict(batch_size=0), r"batch_size must be an int ≥ 1"),
        (dict(steps_per_epoch=0), r"steps_per_epoch must be an int ≥ 1"),
        (dict(output_margin_um=-1.0), r"output_margin_um must be ≥ 0"),
        (dict(num_inputs=1, input_spacing_um=None), r"needs output_margin_um"),
        (dict(signal_percentile=101), r"signal_percentile must be in \[0, 100\]"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_bad_stack_lists_raise():
    with pytest.raises(ValueError, match="stacks is empty"):
        VolumeDataset([], num_inputs=1, output_margin_um=1.0)
    with pytest.raises(TypeError, match="wrap arrays as Stack"):
        VolumeDataset([np.zeros((5, 8, 8))], num_inputs=1, output_margin_um=1.0)
    with pytest.raises(ValueError, match="stack 1"):
        make([coded_stack(), coded_stack(num_planes=9)], input_spacing_um=2.0)


# === Training ===


def tiny_model(m, p):
    images = keras.Input((m, p, p, 1), name="images")
    input_z = keras.Input((m,), name="input_z")
    output_z = keras.Input((), name="output_z")
    mean_image = keras.layers.Lambda(lambda t: keras.ops.mean(t, axis=1))(images)
    dz = keras.layers.Lambda(lambda t: t[1][:, None] - t[0])([input_z, output_z])
    shift = keras.layers.Reshape((1, 1, 1))(keras.layers.Dense(1)(dz))
    outputs = keras.layers.Add()([keras.layers.Conv2D(1, 1)(mean_image), shift])
    model = keras.Model({"images": images, "input_z": input_z, "output_z": output_z}, outputs)
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_model_fit_consumes_the_dataset():
    dataset = make(num_inputs=3, patch_size=8, batch_size=2, steps_per_epoch=2, augment=True)
    history = tiny_model(3, 8).fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert dataset.epoch >= 1  # fit called on_epoch_end


class RecordingDataset(VolumeDataset):
    """Logs the (epoch, index) of every item Keras asks for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requests = []

    def __getitem__(self, index):
        self.requests.append((self.epoch, index))
        return super().__getitem__(index)


def test_resumed_fit_sees_the_items_of_an_uninterrupted_run():
    kwargs = dict(stacks=coded_stack(), num_inputs=3, input_spacing_um=2.0, patch_size=8,
                  batch_size=2, steps_per_epoch=2, seed=5)
    full = RecordingDataset(**kwargs)
    tiny_model(3, 8).fit(full, epochs=3, verbose=0)
    resumed = RecordingDataset(**kwargs)
    resumed.epoch = 1  # as documented: the epoch training resumes at
    tiny_model(3, 8).fit(resumed, initial_epoch=1, epochs=3, verbose=0)
    # The last two epochs (4 items) of both runs are the same items.
    assert sorted(full.requests[-4:]) == sorted(resumed.requests[-4:])
    assert len({epoch for epoch, _ in full.requests[-4:]}) == 2


def test_target_normalization_inputs_uses_the_input_stacks_statistics():
    from keras_rmz.data.normalization import compute_normalization
    from keras_rmz.io import Stack

    rng = np.random.default_rng(0)
    data = (100 + rng.poisson(10, (12, 32, 32))).astype(np.float32)
    data[:, 8:12, 8:12] += 500
    stack = Stack(data, np.arange(12) * 0.5, 0.1)
    target = Stack(data * 3.0, np.arange(12) * 0.5, 0.1)
    dataset = VolumeDataset(
        [stack], targets=[target], num_inputs=2, input_spacing_um=2.0, patch_size=32,
        batch_size=2, augment=False, target_normalization="inputs", seed=0,
    )
    (inputs, y) = dataset[0]
    plan = dataset.describe_item(0)[0]
    expected = compute_normalization(stack).apply(target.data[plan["output_plane"]].astype(np.float64))
    np.testing.assert_allclose(y[0, ..., 0], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="target_normalization"):
        VolumeDataset([stack], num_inputs=2, input_spacing_um=2.0, patch_size=32, target_normalization="x")


def test_normalization_source_inputs_uses_only_the_drawn_planes():
    from keras_rmz.data.normalization import compute_normalization
    from keras_rmz.io import Stack

    rng = np.random.default_rng(1)
    data = (100 + rng.poisson(10, (12, 32, 32))).astype(np.float32)
    data[:, 8:12, 8:12] += np.linspace(100, 2000, 12)[:, None, None]
    stack = Stack(data, np.arange(12) * 0.5, 0.1)
    dataset = VolumeDataset(
        [stack], num_inputs=2, input_spacing_um=2.0, patch_size=32, batch_size=2,
        augment=False, normalization_source="inputs", seed=0,
    )
    inputs, y = dataset[0]
    plan = dataset.describe_item(0)[0]
    norm = compute_normalization(data[sorted(plan["input_planes"])])
    np.testing.assert_allclose(
        inputs["images"][0, :, :, :, 0], norm.apply(data[plan["input_planes"]].astype(np.float64)), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(y[0, ..., 0], norm.apply(data[plan["output_plane"]].astype(np.float64)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="normalization_source"):
        VolumeDataset([stack], num_inputs=2, input_spacing_um=2.0, patch_size=32, normalization_source="x")
