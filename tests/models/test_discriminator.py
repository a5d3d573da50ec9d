
import keras
import numpy as np
import pytest

from keras_rmz.models.discriminator import Discriminator
from tests.helpers import assert_config_roundtrip, assert_keras_saving_roundtrip, to_numpy, assert_weights_load_on_the_other_backends

TINY = dict(base_filters=2, num_blocks=3, dense_units=4)


def expected_param_count(base_filters, num_blocks, dense_units, kernel=3, channels=1):
    """Sum over the convs of k·k·cin·cout + cout, then the two dense layers."""
    total = 0
    cin = channels
    for k in range(1, num_blocks + 1):
        f = base_filters * 2**k
        total += kernel * kernel * cin * f + f
        total += kernel * kernel * f * f + f
        cin = f
    return total + cin * dense_units + dense_units + dense_units + 1


def numpy_conv_same(x, kernel, bias, stride):
    """'same' convolution (cross-correlation) as TensorFlow defines it:
    ceil(n / stride) outputs, padding split with the extra pixel at the end."""
    k = kernel.shape[0]
    batch, h, w, _ = x.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h = max((out_h - 1) * stride + k - h, 0)
    pad_w = max((out_w - 1) * stride + k - w, 0)
    x = np.pad(x, [(0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)])
    out = np.zeros((batch, out_h, out_w, kernel.shape[-1]))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            out[:, i, j] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out + bias


def test_paper_default_architecture():
    d = Discriminator()
    assert d.count_params() == expected_param_count(20, 5, 20)
    assert [d.get_layer(f"block_{k}_conv_0").filters for k in range(1, 6)] == [40, 80, 160, 320, 640]
    assert [d.get_layer(f"block_{k}_conv_1").filters for k in range(1, 6)] == [40, 80, 160, 320, 640]
    assert d.get_layer("dense").units == 20 and d.get_layer("probability").units == 1


@pytest.mark.parametrize("h, w", [(8, 8), (33, 47), (40, 9)])
def test_output_shape_and_range_for_any_size(h, w):
    d = Discriminator(**TINY)
    p = to_numpy(d(np.random.default_rng(0).random((3, h, w, 1)).astype("float32")))
    assert p.shape == (3, 1)
    assert np.all((p > 0) & (p < 1))


def test_each_block_halves_the_size():
    d = Discriminator(**TINY)
    last = keras.Model(d.input, d.get_layer("block_3_conv_1").output)
    # ceil(33 / 8) = 5, ceil(47 / 8) = 6; channels 2·2^3
    assert tuple(to_numpy(last(np.zeros((1, 33, 47, 1), "float32"))).shape) == (1, 5, 6, 16)


def test_matches_a_numpy_forward_pass():
    d = Discriminator(base_filters=1, num_blocks=2, dense_units=3)
    x = np.random.default_rng(3).normal(size=(2, 9, 11, 1))
    y = x
    for k in (1, 2):
        for i, stride in ((0, 1), (1, 2)):
            kernel, bias = (to_numpy(w) for w in d.get_layer(f"block_{k}_conv_{i}").weights)
            y = np.maximum(numpy_conv_same(y, kernel, bias, stride), 0.0)
    pooled = y.mean(axis=(1, 2))
    w1, b1 = (to_numpy(w) for w in d.get_layer("dense").weights)
    w2, b2 = (to_numpy(w) for w in d.get_layer("probability").weights)
    hidden = np.maximum(pooled @ w1 + b1, 0.0)
    expected = 1.0 / (1.0 + np.exp(-(hidden @ w2 + b2)))
    np.testing.assert_allclose(to_numpy(d(x.astype("float32"))), expected, atol=1e-5)


def test_refuses_images_smaller_than_the_down_sampling():
    d = Discriminator(**TINY)
    with pytest.raises(ValueError, match=r"at least 8x8 pixels .*got 7x20"):
        d(np.zeros((1, 7, 20, 1), "float32"))
    with pytest.raises(ValueError, match=r"shape \(B, H, W, 1\)"):
        d(np.zeros((1, 7, 20), "float32"))


def test_config_and_keras_file_roundtrip(tmp_path):
    d = Discriminator(activation="leaky_relu", channels=2, **TINY)
    clone = assert_config_roundtrip(d)
    assert clone.count_params() == d.count_params() == expected_param_count(2, 3, 4, channels=2)
    x = np.random.default_rng(4).random((2, 12, 10, 2)).astype("float32")
    restored = assert_keras_saving_roundtrip(d, x, tmp_path)
    assert isinstance(restored, Discriminator)


@pytest.mark.parametrize("name", ["base_filters", "num_blocks", "dense_units", "kernel_size", "channels"])
def test_invalid_config_is_refused(name):
    with pytest.raises(ValueError, match=name):
        Discriminator(**{**TINY, name: 0})


@pytest.mark.large
@pytest.mark.cross_backend
def test_weights_load_on_the_other_backends(tmp_path):
    x = np.random.default_rng(5).random((2, 17, 12, 1)).astype("float32")
    assert_weights_load_on_the_other_backends(Discriminator(**TINY), x, tmp_path, "keras_rmz.models.discriminator")
