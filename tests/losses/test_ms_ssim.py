import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_rmz.losses import MS_SSIM_POWER_FACTORS
from keras_rmz.losses import MSSSIM
from keras_rmz.losses import ms_ssim
from keras_rmz.losses import ms_ssim_num_scales
from keras_rmz.losses import ms_ssim_window_size
from tests.helpers import assert_config_roundtrip
from tests.helpers import to_numpy
from tests.losses.loss_testing import evaluate
from tests.losses.loss_testing import fit_one_step
from tests.losses.loss_testing import value_and_grad

# The reference is TensorFlow's own MS-SSIM, computed eagerly with
# tensorflow imported directly, whatever KERAS_BACKEND runs `ms_ssim`.
TF_ATOL = 1e-3


def tf_ms_ssim(a, b, **kwargs):
    kwargs.setdefault("max_val", 1.0)
    return tf.image.ssim_multiscale(
        tf.constant(a, tf.float32), tf.constant(b, tf.float32), **kwargs
    ).numpy()


def _blobs(rng, shape, n=30, sigma=4.0):
    """Structured images: Gaussian blobs like beads or nuclei, in [0, 1]."""
    b, h, w, ch = shape
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros(shape, np.float64)
    for i in range(b):
        for k in range(ch):
            for _ in range(n):
                cy, cx = rng.uniform(0, h), rng.uniform(0, w)
                amp = rng.uniform(0.3, 1.0)
                s = sigma * rng.uniform(0.5, 1.5)
                out[i, :, :, k] += amp * np.exp(
                    -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s)
                )
    return np.clip(out, 0, 1).astype("float32")


def _case(name, rng):
    if name == "noise_vs_noisy_copy":
        a = rng.random((2, 192, 192, 1))
        b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    elif name == "independent_noise":
        a = rng.random((2, 192, 192, 1))
        b = rng.random((2, 192, 192, 1))
    elif name == "blobs_vs_shifted_dimmer":
        a = _blobs(rng, (2, 192, 192, 3))
        b = 0.8 * np.roll(a, (2, -3), axis=(1, 2))
    elif name == "blobs_vs_noisy":
        a = _blobs(rng, (3, 192, 192, 2), sigma=2.0)  # same 6 planes
        b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    elif name == "blobs_vs_blurred_odd_size":
        a = _blobs(rng, (1, 193, 311, 1))
        k = np.ones(9) / 9
        b = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, a)
        b = np.clip(b + 0.05 * rng.standard_normal(b.shape), 0, 1)
    elif name == "ramp_vs_blobs_smallest_5_scale":
        yy, xx = np.mgrid[0:161, 0:161] / 160.0
        a = np.broadcast_to((0.5 * yy + 0.5 * xx)[None, :, :, None],
                            (2, 161, 161, 1)).copy()
        b = _blobs(rng, (2, 161, 161, 1))
    elif name == "checkerboard_vs_contrast_change":
        yy, xx = np.mgrid[0:256, 0:256]
        a = (((yy // 16) + (xx // 16)) % 2).astype(float)[None, :, :, None]
        a = np.concatenate([a, 1 - a], axis=0) * 0.9 + 0.05
        a = a[:, 32:224, 32:224]  # 192 x 192
        b = 0.5 * a + 0.25
    else:
        raise KeyError(name)
    return np.asarray(a, "float32"), np.asarray(b, "float32")


CASES = [
    "noise_vs_noisy_copy",
    "independent_noise",
    "blobs_vs_shifted_dimmer",
    "blobs_vs_noisy",
    "blobs_vs_blurred_odd_size",
    "ramp_vs_blobs_smallest_5_scale",
    "checkerboard_vs_contrast_change",
]


@pytest.mark.parametrize("name", CASES)
def test_matches_tf_ssim_multiscale(name):
    rng = np.random.default_rng(CASES.index(name))
    a, b = _case(name, rng)
    assert ms_ssim_num_scales(a.shape[1], a.shape[2]) == 5
    expected = tf_ms_ssim(a, b)
    actual = evaluate(ms_ssim, a, b)
    assert actual.shape == (a.shape[0],)
    np.testing.assert_allclose(actual, expected, atol=TF_ATOL, rtol=0)
    # Symmetric in its arguments, as the formula is.
    np.testing.assert_allclose(
        evaluate(ms_ssim, b, a), actual, atol=1e-5, rtol=0
    )


def test_matches_tf_with_other_range_and_parameters():
    rng = np.random.default_rng(7)
    a = 255.0 * _blobs(rng, (2, 192, 192, 1))
    b = np.clip(a + 10.0 * rng.standard_normal(a.shape), 0, 255)
    b = b.astype("float32")
    kwargs = dict(max_val=255.0, filter_size=7, filter_sigma=1.0, k1=0.02,
                  k2=0.05, power_factors=(0.2, 0.3, 0.5))
    expected = tf_ms_ssim(a, b, **kwargs)
    np.testing.assert_allclose(
        evaluate(ms_ssim, a, b, **kwargs), expected, atol=TF_ATOL, rtol=0
    )


def test_leading_batch_dimensions():
    rng = np.random.default_rng(3)
    a = _blobs(rng, (6, 192, 192, 1), n=10)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    b = b.astype("float32")
    flat = evaluate(ms_ssim, a, b)
    nested = evaluate(ms_ssim, a.reshape(2, 3, 192, 192, 1),
                      b.reshape(2, 3, 192, 192, 1))
    assert nested.shape == (2, 3)
    np.testing.assert_allclose(nested.ravel(), flat, atol=1e-6)


# --- small patches: fewer scales, then a smaller window -------------------


@pytest.mark.parametrize(
    "size, scales",
    [(1024, 5), (192, 5), (161, 5), (160, 4), (81, 4), (80, 3), (64, 3),
     (41, 3), (40, 2), (32, 2), (21, 2), (20, 1), (16, 1), (11, 1), (8, 1),
     (1, 1)],
)
def test_num_scales_rule(size, scales):
    # Largest n with ceil(size / 2**(n-1)) >= 11, at most 5.
    assert ms_ssim_num_scales(size, size) == scales
    expected = max(
        [n for n in range(1, 6) if -(-size // 2 ** (n - 1)) >= 11] or [1]
    )
    assert scales == expected


def test_num_scales_and_window_non_square_and_arguments():
    assert ms_ssim_num_scales(64, 300) == 3
    assert ms_ssim_num_scales(300, 22) == 2
    assert ms_ssim_num_scales(256, 256, filter_size=7, max_scales=3) == 3
    assert ms_ssim_num_scales(64, 64, filter_size=3) == 5
    assert [ms_ssim_window_size(s, s) for s in (64, 11, 10, 9, 8, 2, 1)] == [
        11, 11, 9, 9, 7, 1, 1]
    assert ms_ssim_window_size(5, 40) == 5
    assert ms_ssim_window_size(8, 8, filter_size=5) == 5
    with pytest.raises(ValueError, match="height must be an integer >= 1"):
        ms_ssim_num_scales(0, 8)
    with pytest.raises(ValueError, match="filter_size must be an integer"):
        ms_ssim_window_size(8, 8, filter_size=2.5)


@pytest.mark.parametrize("size", [64, 96, 32])
def test_small_patch_equals_tf_with_renormalized_first_weights(size):
    # The documented rule, checked against TensorFlow itself: on a patch
    # with n < 5 usable scales, ours equals tf's MS-SSIM with the first n
    # weights rescaled to sum to 1 (tf accepts that many scales there).
    rng = np.random.default_rng(size)
    a = _blobs(rng, (2, size, size, 2), n=8, sigma=2.0)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    b = b.astype("float32")
    n = ms_ssim_num_scales(size, size)
    assert n < 5
    weights = np.array(MS_SSIM_POWER_FACTORS[:n])
    expected = tf_ms_ssim(a, b, power_factors=tuple(weights / weights.sum()))
    np.testing.assert_allclose(
        evaluate(ms_ssim, a, b), expected, atol=TF_ATOL, rtol=0
    )


@pytest.mark.parametrize("size", [8, 10, 16])
def test_tiny_patch_equals_tf_ssim_with_shrunk_window(size):
    rng = np.random.default_rng(size)
    a = rng.random((2, size, size, 1)).astype("float32")
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    b = b.astype("float32")
    window = ms_ssim_window_size(size, size)
    expected = tf.image.ssim(a, b, max_val=1.0, filter_size=window).numpy()
    np.testing.assert_allclose(
        to_numpy(ms_ssim(a, b)), np.maximum(expected, 0), atol=TF_ATOL, rtol=0
    )


SMALL_SHAPES = [(2, 8, 8, 1), (2, 16, 16, 1), (2, 32, 32, 1), (2, 64, 64, 1),
                (2, 96, 96, 1), (1, 64, 40, 3), (1, 8, 64, 1), (1, 3, 5, 1),
                (1, 1, 1, 1), (1, 150, 33, 2)]


@pytest.mark.parametrize("shape", SMALL_SHAPES)
def test_small_and_odd_shapes_finite_in_range(shape):
    rng = np.random.default_rng(0)
    a = rng.random(shape).astype("float32")
    b = np.clip(a + 0.2 * rng.standard_normal(shape), 0, 1).astype("float32")
    for x, y in [(a, b), (a, 1 - a), (a, np.zeros_like(a))]:
        value = to_numpy(ms_ssim(x, y))
        assert value.shape == (shape[0],)
        assert np.isfinite(value).all()
        assert ((value >= 0) & (value <= 1 + 1e-6)).all()
    np.testing.assert_allclose(to_numpy(ms_ssim(a, a)), 1.0, atol=1e-6)


@pytest.mark.parametrize("size", [8, 64, 192])
def test_constant_images(size):
    shape = (3, size, size, 1)
    ones = np.full(shape, 0.5, "float32")
    zeros = np.zeros(shape, "float32")
    np.testing.assert_allclose(evaluate(ms_ssim, ones, ones), 1.0, atol=1e-6)
    np.testing.assert_allclose(evaluate(ms_ssim, zeros, zeros), 1.0, atol=1e-6)
    # Two different constants: only the luminance term differs,
    # (2 a b + C1) / (a^2 + b^2 + C1) at the coarsest scale, raised to the
    # coarsest scale's (renormalized) weight.
    a, b, c1 = 0.5, 0.4, (0.01 * 1.0) ** 2
    n = ms_ssim_num_scales(size, size)
    w = np.array(MS_SSIM_POWER_FACTORS[:n])
    w_last = w[-1] if n == 5 else w[-1] / w.sum()
    expected = ((2 * a * b + c1) / (a * a + b * b + c1)) ** w_last
    value = evaluate(ms_ssim, np.full(shape, a, "float32"),
                     np.full(shape, b, "float32"))
    # float32: E[x^2] - mu^2 of a constant is ~1e-8, not 0, against C2 ~1e-3.
    np.testing.assert_allclose(value, expected, rtol=5e-4)


@pytest.mark.parametrize("shape", [(2, 8, 8, 1), (2, 64, 64, 1), (1, 5, 9, 2)])
@pytest.mark.parametrize(
    "pair", ["identical", "constant", "zeros", "noisy", "anticorrelated",
             "constant_vs_noise"])
def test_gradient_finite(shape, pair):
    rng = np.random.default_rng(1)
    a = rng.random(shape).astype("float32")
    pred, true = {
        "identical": (a, a),
        "constant": (np.full(shape, 0.3), np.full(shape, 0.3)),
        "zeros": (np.zeros(shape), np.zeros(shape)),
        "noisy": (np.clip(a + 0.1 * rng.standard_normal(shape), 0, 1), a),
        # Local contrast-structure negative -> clipped to 0 -> pow(0, w).
        "anticorrelated": (1 - a, a),
        "constant_vs_noise": (np.full(shape, 0.5), a),
    }[pair]
    true = np.asarray(true, "float32")
    value, grad = value_and_grad(lambda p, t: ms_ssim(t, p), pred, true)
    assert np.isfinite(value)
    assert np.isfinite(grad).all()
    if pair in ("identical", "constant", "zeros"):
        # MS-SSIM is at its maximum: the gradient is (numerically) zero.
        assert np.abs(grad).max() < 1e-3


@pytest.mark.large
def test_gradient_finite_at_five_scales():
    # The full 5-scale plan, identical and anticorrelated images.
    a = np.random.default_rng(0).random((2, 192, 192, 1)).astype("float32")
    for pred in (a, 1 - a):
        value, grad = value_and_grad(lambda p, t: ms_ssim(t, p), pred, a)
        assert np.isfinite(value) and np.isfinite(grad).all()


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    true = _blobs(rng, (1, 24, 24, 1), n=4, sigma=2.0)
    pred = np.clip(true + 0.1 * rng.standard_normal(true.shape), 0, 1)
    pred = pred.astype("float64")
    _, grad = value_and_grad(lambda p, t: ms_ssim(t, p), pred, true)
    # Central differences in float64 with numpy inputs on a few pixels.
    for idx in [(0, 12, 12, 0), (0, 3, 20, 0), (0, 0, 0, 0)]:
        h = 1e-3
        up, down = pred.copy(), pred.copy()
        up[idx] += h
        down[idx] -= h
        numeric = (to_numpy(ms_ssim(true.astype("float64"), up))[0]
                   - to_numpy(ms_ssim(true.astype("float64"), down))[0]) / (
                       2 * h)
        np.testing.assert_allclose(grad[idx], numeric, rtol=2e-2, atol=1e-4)


def test_dtype():
    a = np.random.rand(1, 32, 32, 1)
    assert keras.backend.standardize_dtype(
        ms_ssim(a.astype("float16"), a.astype("float16")).dtype) == "float32"


def test_bad_arguments():
    a = np.zeros((1, 16, 16, 1), "float32")
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        ms_ssim(np.zeros((16, 16)), np.zeros((16, 16)))
    with pytest.raises(ValueError, match="same shape"):
        ms_ssim(a, np.zeros((1, 16, 17, 1)))
    with pytest.raises(ValueError, match="max_val must be > 0"):
        ms_ssim(a, a, max_val=0.0)
    with pytest.raises(ValueError, match="filter_sigma"):
        ms_ssim(a, a, filter_sigma=0)
    with pytest.raises(ValueError, match="power_factors"):
        ms_ssim(a, a, power_factors=())
    with pytest.raises(ValueError, match="filter_size"):
        MSSSIM(filter_size=0)


@pytest.mark.large
@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="unknown static sizes only occur in tf graphs")
def test_unknown_sizes_in_tf_graph_follow_the_same_rule():
    # `fit` on patches of changing size retraces with height/width None;
    # the plan is then chosen at run time and must equal the static one.
    graph = tf.function(
        lambda x, y: ms_ssim(x, y),
        input_signature=[tf.TensorSpec((None, None, None, 1), tf.float32)] * 2,
    )
    rng = np.random.default_rng(0)
    for size in [(8, 8), (9, 40), (16, 16), (33, 47), (64, 64), (100, 90),
                 (161, 170), (192, 192)]:
        a = rng.random((2, *size, 1)).astype("float32")
        b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
        b = b.astype("float32")
        np.testing.assert_allclose(
            graph(a, b).numpy(), to_numpy(ms_ssim(a, b)), atol=1e-6,
            err_msg=f"size {size}",
        )


def test_loss_class_is_one_minus_ms_ssim():
    rng = np.random.default_rng(2)
    a = _blobs(rng, (2, 192, 192, 1), n=10)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    b = b.astype("float32")
    expected = 1 - tf_ms_ssim(a, b)
    np.testing.assert_allclose(
        evaluate(MSSSIM(reduction=None), a, b), expected, atol=TF_ATOL
    )
    np.testing.assert_allclose(
        to_numpy(MSSSIM()(a, b)), expected.mean(), atol=TF_ATOL
    )


def test_config_roundtrip():
    loss = MSSSIM(max_val=255.0, filter_size=7, filter_sigma=1.0,
                  power_factors=(0.5, 0.5), name="structure")
    clone = assert_config_roundtrip(loss)
    assert clone.power_factors == (0.5, 0.5)
    assert clone.filter_size == 7 and clone.max_val == 255.0
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, MSSSIM)
    assert restored.get_config() == loss.get_config()


@pytest.mark.parametrize("size", [64, 16])
def test_compile_and_fit(size):
    value, moved, _ = fit_one_step(MSSSIM(), size=size)
    assert np.isfinite(value) and 0 < value < 1
    assert moved
