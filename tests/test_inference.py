import re

import numpy as np
import pytest

from keras_rmz.data.normalization import compute_normalization
import keras

from keras_rmz.backend.device import auto_batch_size
from keras_rmz.evaluation import adaptive_acquisition
from keras_rmz.inference import blend_weights, reconstruct_volume, tile_starts
from keras_rmz.models import RecurrentMZ


class FirstInputModel:
    """A stand-in generator whose output is its first input image (a known
    answer for tiling and normalization), optionally failing like an
    out-of-memory accelerator when a tile is too large."""

    normalization = "paper"

    def __init__(self, max_pixels=None):
        self.max_pixels = max_pixels
        self.calls = []

    def check_num_inputs(self, num_inputs):
        pass

    def predict_on_batch(self, batch):
        images = np.asarray(batch["images"])
        self.calls.append(images.shape)
        if self.max_pixels is not None and images.shape[2] * images.shape[3] > self.max_pixels:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
        return images[:, 0] + 0.0 * np.asarray(batch["output_z"])[:, None, None, None]


class MeanInputModel(FirstInputModel):
    def predict_on_batch(self, batch):
        return np.asarray(batch["images"]).mean(axis=1)


def test_tile_starts_cover_with_overlap():
    for size, tile, overlap in [(100, 32, 8), (64, 64, 8), (65, 32, 16), (1000, 256, 48)]:
        starts = tile_starts(size, tile, overlap)
        assert starts[0] == 0 and starts[-1] + min(tile, size) == size
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s : s + tile] = True
        assert covered.all()
        for a, b in zip(starts, starts[1:]):
            assert a + tile - b >= overlap


@pytest.mark.parametrize("size, tile, overlap", [(100, 40, 12), (1000, 256, 48), (70, 32, 8)])
def test_blend_weights_form_a_partition_of_unity(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    total = np.zeros(size)
    for i, s in enumerate(starts):
        left = starts[i - 1] + tile - s if i > 0 else 0
        right = s + tile - starts[i + 1] if i + 1 < len(starts) else 0
        weight = blend_weights(tile, left, right)
        assert weight.min() > 0
        total[s : s + tile] += weight
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


@pytest.mark.parametrize("tile_size", [None, 32, 48])
def test_tiling_reproduces_a_pointwise_model_exactly(tile_size):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 4096, (2, 70, 90)).astype(np.uint16)
    model = FirstInputModel()
    out = reconstruct_volume(
        model, images, [0.0, 2.0], [0.5, 1.0, 1.5], tile_size=tile_size, tile_overlap=8, verbose=False
    )
    assert out.dtype == np.float32 and out.shape == (3, 70, 90)
    # Normalized, inferred tile by tile, blended, and mapped back to counts.
    np.testing.assert_allclose(out, np.broadcast_to(images[0], out.shape), rtol=1e-5, atol=1e-2)


def test_normalization_is_applied_and_inverted():
    rng = np.random.default_rng(1)
    images = (100 + rng.poisson(20, (3, 40, 40))).astype(np.uint16)
    images[:, 10:14, 10:14] += 2000
    norm = compute_normalization(images)
    model = MeanInputModel()
    seen = []
    original = model.predict_on_batch

    def spy(batch):
        seen.append(np.asarray(batch["images"]))
        return original(batch)

    model.predict_on_batch = spy
    out = reconstruct_volume(model, images, [0, 1, 2], [1.0], verbose=False)
    np.testing.assert_allclose(seen[0][0, ..., 0], norm.apply(images.astype(np.float64)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[0], images.astype(np.float64).mean(axis=0), rtol=1e-5, atol=1e-2)
    raw = reconstruct_volume(model, images, [0, 1, 2], [1.0], normalize=None, verbose=False)
    np.testing.assert_allclose(raw[0], images.mean(axis=0), rtol=1e-6)


def test_out_of_memory_retries_with_smaller_tiles():
    images = np.random.default_rng(2).random((2, 128, 128)).astype(np.float32)
    model = FirstInputModel(max_pixels=64 * 64)
    with pytest.warns(RuntimeWarning, match="tile_size=64"):
        out = reconstruct_volume(model, images, [0, 1], [0.5], tile_size=128, normalize=None, verbose=False)
    np.testing.assert_allclose(out[0], images[0], atol=1e-6)
    assert max(shape[2] for shape in model.calls[1:]) <= 64


def test_non_memory_errors_are_not_swallowed():
    class Broken(FirstInputModel):
        def predict_on_batch(self, batch):
            raise RuntimeError("something else")

    with pytest.raises(RuntimeError, match="something else"):
        reconstruct_volume(Broken(), np.zeros((1, 64, 64)), [0], [0], normalize=None, verbose=False)


def test_tiled_real_model_matches_untiled_within_a_few_percent():
    model = RecurrentMZ(base_filters=4, depth=2)
    rng = np.random.default_rng(3)
    images = rng.random((2, 128, 112)).astype(np.float32)
    whole = reconstruct_volume(model, images, [0.0, 3.0], [1.0, 2.0], normalize=None, verbose=False)
    tiled = reconstruct_volume(
        model, images, [0.0, 3.0], [1.0, 2.0], tile_size=80, tile_overlap=48, normalize=None, verbose=False
    )
    relative = np.linalg.norm(tiled - whole) / np.linalg.norm(whole)
    assert relative < 0.03, relative


def test_adaptive_acquisition_reports_relative_change():
    rng = np.random.default_rng(4)
    images = rng.random((4, 16, 16)).astype(np.float32)
    z = np.array([0.0, 3.0, 6.0, 9.0])
    steps = adaptive_acquisition(MeanInputModel(), images, z, [1.0, 2.0], normalize=None)
    assert [s.num_inputs for s in steps] == [1, 2, 3, 4]
    assert np.isnan(steps[0].relative_change)
    for m in range(2, 5):
        v_m = np.broadcast_to(images[:m].mean(axis=0), (2, 16, 16))
        v_prev = np.broadcast_to(images[: m - 1].mean(axis=0), (2, 16, 16))
        expected = np.linalg.norm(v_m - v_prev) / np.linalg.norm(v_m)
        assert steps[m - 1].relative_change == pytest.approx(expected, rel=1e-5)
    stopped = adaptive_acquisition(MeanInputModel(), images, z, [1.0], normalize=None, epsilon=1.0)
    assert len(stopped) == 2


@pytest.mark.parametrize("tile_size, want", [(None, r"reconstruct: 100%.*\b3/3 \[.*plane/s"),
                                              (64, r"reconstruct 3 planes x 4 tiles: 100%.*\b12/12 \[.*tile/s")])
def test_the_progress_bar_counts_planes_or_tiles(capsys, tile_size, want):
    """A tiled reconstruction counts tiles (4 per plane here), not planes:
    a plane/s rate would be off by the tile count."""
    images = np.random.default_rng(0).random((2, 96, 96)).astype(np.float32)
    reconstruct_volume(FirstInputModel(), images, [0.0, 2.0], [0.5, 1.0, 1.5], tile_size=tile_size, tile_overlap=16,
                       batch_size=1, normalize=None, verbose=True)
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.search(want, final), final


def test_bad_tile_arguments_are_refused():
    with pytest.raises(ValueError, match="tile_size"):
        reconstruct_volume(FirstInputModel(), np.zeros((1, 8, 8)), [0], [0], tile_size=4)
    with pytest.raises(ValueError, match="normalize"):
        reconstruct_volume(FirstInputModel(), np.ones((1, 8, 8)), [0], [0], normalize="zscore")
    with pytest.raises(ValueError, match=r"tile_overlap \(64\) must be smaller than tile_size \(64\)"):
        reconstruct_volume(FirstInputModel(), np.zeros((1, 128, 128)), [0], [0], tile_size=64, tile_overlap=64)


class OutputZModel(FirstInputModel):
    """Outputs its output_z everywhere: which plane went where is visible."""

    def predict_on_batch(self, batch):
        images = np.asarray(batch["images"])
        self.calls.append(images.shape)
        z = np.asarray(batch["output_z"], np.float32)
        return np.broadcast_to(z[:, None, None, None], (images.shape[0], *images.shape[2:4], 1)).copy()


def test_planes_are_split_into_the_fewest_even_calls_and_come_back_in_order():
    # 7 planes, at most 3 per call: the fewest calls (3), in order.
    model = OutputZModel()
    output_z = np.arange(7, dtype=np.float32) * 0.5
    out = reconstruct_volume(model, np.ones((2, 16, 16)), [0, 3], output_z, batch_size=3, normalize=None,
                             verbose=False)
    assert [shape[0] for shape in model.calls] == [3, 3, 1]
    np.testing.assert_array_equal(out[:, 5, 5], output_z)
    # 9 planes, at most 8 per call: 2 calls of 5 and 4, not 8 and 1.
    model = OutputZModel()
    reconstruct_volume(model, np.ones((2, 16, 16)), [0, 3], np.arange(9.0), batch_size=8, normalize=None,
                       verbose=False)
    assert [shape[0] for shape in model.calls] == [5, 4]
    # Fewer planes than the batch size: one call of just those planes.
    model = OutputZModel()
    reconstruct_volume(model, np.ones((2, 16, 16)), [0, 3], [1.0, 2.0], batch_size=8, normalize=None, verbose=False)
    assert [shape[0] for shape in model.calls] == [2]


def test_a_compiled_model_sees_one_batch_shape():
    # jit_compile: the shorter last call is padded (its padding dropped), so
    # XLA / jax.jit compile once.
    model = OutputZModel()
    model.jit_compile = True
    output_z = np.arange(7, dtype=np.float32) * 0.5
    out = reconstruct_volume(model, np.ones((2, 16, 16)), [0, 3], output_z, batch_size=3, normalize=None,
                             verbose=False)
    assert [shape[0] for shape in model.calls] == [3, 3, 3]
    np.testing.assert_array_equal(out[:, 5, 5], output_z)


def test_auto_batch_size_bounds_the_pixels_per_call():
    for backend in ("jax", "torch"):
        assert auto_batch_size(256, 256, accelerator=False, backend=backend) == 4
        assert auto_batch_size(512, 512, accelerator=False, backend=backend) == 1
        assert auto_batch_size(1024, 1024, accelerator=False, backend=backend) == 1
        assert auto_batch_size(64, 64, accelerator=False, backend=backend) == 8  # at most 8
        assert auto_batch_size(64, 64, num_planes=3, accelerator=False, backend=backend) == 3
    # TensorFlow on a CPU ran batched 256² planes slower than one at a time.
    assert auto_batch_size(256, 256, accelerator=False, backend="tensorflow") == 1
    assert auto_batch_size(128, 128, accelerator=False, backend="tensorflow") == 4
    assert auto_batch_size(300, 300, accelerator=False, backend="tensorflow") == 1
    assert auto_batch_size(256, 256, accelerator=False) == auto_batch_size(
        256, 256, accelerator=False, backend=keras.backend.backend())
    assert auto_batch_size(1024, 1024, accelerator=True) == 4
    assert auto_batch_size(512, 512, accelerator=True) == 8
    # reconstruct's default: 256x256 planes go auto_batch_size(256, 256) per call (4, or 1 with TensorFlow).
    model = OutputZModel()
    reconstruct_volume(model, np.ones((2, 256, 256)), [0, 3], np.arange(10.0), normalize=None, verbose=False)
    sizes = [shape[0] for shape in model.calls]
    assert sum(sizes) == 10 and max(sizes) <= auto_batch_size(256, 256)
    assert len(sizes) == -(-10 // auto_batch_size(256, 256))


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "big", True, None])
def test_bad_batch_size_is_refused(batch_size):
    with pytest.raises(ValueError, match="batch_size must be 'auto' or a positive integer"):
        reconstruct_volume(FirstInputModel(), np.zeros((1, 8, 8)), [0], [0], batch_size=batch_size)


def test_jit_compile_setting_gives_the_same_volume_and_leaves_the_model_as_it_was():
    keras.utils.set_random_seed(7)
    model = RecurrentMZ(base_filters=4, depth=2)
    flag = model.jit_compile
    images = np.random.default_rng(8).random((2, 32, 32)).astype(np.float32)
    plain = model.reconstruct(images, [0.0, 3.0], [1.0, 2.0], jit_compile=False, normalize=None, verbose=False)
    # The model's own setting (Keras: XLA on TensorFlow with a GPU, jax.jit, eager torch).
    default = model.reconstruct(images, [0.0, 3.0], [1.0, 2.0], normalize=None, verbose=False)
    np.testing.assert_allclose(default, plain, rtol=1e-4, atol=1e-4)
    assert model.jit_compile == flag
    if keras.backend.backend() != "torch":  # torch.compile takes minutes on a small CPU
        compiled = model.reconstruct(images, [0.0, 3.0], [1.0, 2.0], jit_compile=True, normalize=None, verbose=False)
        np.testing.assert_allclose(compiled, plain, rtol=1e-4, atol=1e-4)
        assert model.jit_compile == flag
    # The model's own predict still works, with its own setting.
    batch = {"images": images[None, ..., None], "input_z": np.array([[0.0, 3.0]]), "output_z": np.array([1.0])}
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(batch))[0, ..., 0], plain[0], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="jit_compile must be 'auto', True or False"):
        model.reconstruct(images, [0.0, 3.0], [1.0], jit_compile="xla")


def test_reconstruct_stack_returns_a_stack_that_records_how_it_was_made():
    from keras_rmz.inference import reconstruct_stack
    from keras_rmz.io import Stack

    rng = np.random.default_rng(0)
    data = rng.uniform(0, 100, (9, 24, 20)).astype(np.float32)
    stack = Stack(data, np.arange(9) * 0.5, 0.1, {"note": "kept"})
    result = reconstruct_stack(FirstInputModel(), stack, [6, 2], [1.0, 2.0], normalize=None, record={"preset": "p"})
    assert isinstance(result, Stack) and result.pixel_um == 0.1
    np.testing.assert_allclose(result.z, [1.0, 2.0])
    # FirstInputModel returns its first input: plane 6, unnormalized.
    np.testing.assert_allclose(result.data, np.stack([data[6], data[6]]), rtol=1e-6)
    record = result.metadata["reconstruction"]
    assert result.metadata["note"] == "kept" and "keras_rmz_version" in result.metadata
    assert record["input_planes"] == [6, 2] and record["input_z_um"] == [3.0, 1.0]
    assert record["normalization"] is None and record["preset"] == "p" and record["resampled_to_pixel_um"] is None
    # "stack" normalizes with every plane's statistics, "inputs" with the input planes' only.
    for normalize, source in (("stack", data), ("inputs", data[[6, 2]])):
        record = reconstruct_stack(FirstInputModel(), stack, [6, 2], [1.0], normalize=normalize).metadata[
            "reconstruction"]
        assert record["normalization"] == compute_normalization(source).to_dict()
        assert record["normalization_from"] == normalize
    with pytest.raises(ValueError, match="normalize must be 'inputs', 'stack' or None"):
        reconstruct_stack(FirstInputModel(), stack, [6, 2], [1.0], normalize="auto")
    data[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"input planes \[6, 2\] hold NaN"):
        reconstruct_stack(FirstInputModel(), Stack(data, stack.z, 0.1), [6, 2], [1.0])
