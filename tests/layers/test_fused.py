"""keras_rmz.layers.fused.conv_batch_norm: batch norm folded into the
convolution before it gives BN(conv(x)) by the equation in inference, leaves
training untouched, and falls back where it cannot fold."""

import keras
import numpy as np
import pytest

from keras_rmz.layers import EncoderBlock
from keras_rmz.layers import layout
from keras_rmz.layers.fused import conv_batch_norm
from tests.helpers import to_numpy
from tests.layers.test_layout import conv_nd


def make(conv_cls, spatial, c_in, c_out, seed=0, use_bias=True, center=True, scale=True, **conv_kwargs):
    rng = np.random.default_rng(seed)
    conv = conv_cls(c_out, 3, padding="same", use_bias=use_bias, **conv_kwargs)
    bn = keras.layers.BatchNormalization(center=center, scale=scale)
    conv.build((None,) + spatial + (c_in,))
    bn.build(conv.compute_output_shape((None,) + spatial + (c_in,)))
    conv.kernel.assign(rng.normal(0, 0.4, conv.kernel.shape).astype("float32"))
    if use_bias:
        conv.bias.assign(rng.normal(0, 0.3, (c_out,)).astype("float32"))
    if scale:
        bn.gamma.assign(rng.uniform(0.5, 1.5, c_out).astype("float32"))
    if center:
        bn.beta.assign(rng.normal(0, 0.3, c_out).astype("float32"))
    bn.moving_mean.assign(rng.normal(0, 0.5, c_out).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.05, 3.0, c_out).astype("float32"))
    return conv, bn


def equation(conv, bn, x):
    """BN(conv(x)) in float64: (y − mean) / sqrt(var + ε) · gamma + beta."""
    y = conv_nd(x, to_numpy(conv.kernel), conv.strides, conv.padding)
    if conv.use_bias:
        y = y + to_numpy(conv.bias)
    y = (y - to_numpy(bn.moving_mean)) / np.sqrt(to_numpy(bn.moving_variance).astype(np.float64) + bn.epsilon)
    if bn.scale:
        y = y * to_numpy(bn.gamma)
    if bn.center:
        y = y + to_numpy(bn.beta)
    return y


@pytest.mark.parametrize(
    "conv_cls, spatial, options",
    [
        (layout.Conv2D, (9, 11), {}),
        (keras.layers.Conv2D, (9, 11), {"use_bias": False}),
        (layout.Conv2D, (9, 11), {"center": False, "scale": False}),
        (layout.Conv2D, (10, 8), {"strides": 2}),
        (layout.Conv3D, (5, 6, 4), {}),
    ],
)
def test_inference_matches_the_equation(conv_cls, spatial, options):
    conv, bn = make(conv_cls, spatial, 3, 5, **options)
    x = np.random.default_rng(1).normal(size=(2,) + spatial + (3,)).astype("float32")
    want = equation(conv, bn, x)
    for training in (None, False):
        got = to_numpy(conv_batch_norm(conv, bn, x, training=training))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)
        # ... and the unfolded layers, to float rounding.
        np.testing.assert_allclose(got, to_numpy(bn(conv(x), training=False)), rtol=1e-5, atol=2e-5)


def test_inference_does_not_run_the_batch_norm_layer(monkeypatch):
    conv, bn = make(layout.Conv2D, (8, 8), 2, 4)
    x = np.ones((1, 8, 8, 2), "float32")

    def refuse(*args, **kwargs):
        raise AssertionError("batch norm ran as a separate layer in inference")

    monkeypatch.setattr(bn, "call", refuse)
    conv_batch_norm(conv, bn, x, training=False)  # folded: no call
    with pytest.raises(AssertionError, match="separate layer"):
        conv_batch_norm(conv, bn, x, training=True)


def test_training_uses_batch_statistics_and_updates_the_moving_ones():
    conv, bn = make(layout.Conv2D, (8, 8), 2, 4)
    x = np.random.default_rng(2).normal(1.0, 2.0, (3, 8, 8, 2)).astype("float32")
    mean_before = to_numpy(bn.moving_mean).copy()
    got = to_numpy(conv_batch_norm(conv, bn, x, training=True))
    y = conv_nd(x, to_numpy(conv.kernel), (1, 1), "same") + to_numpy(conv.bias)
    normalized = (y - y.mean(axis=(0, 1, 2))) / np.sqrt(y.var(axis=(0, 1, 2)) + bn.epsilon)
    want = normalized * to_numpy(bn.gamma) + to_numpy(bn.beta)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        to_numpy(bn.moving_mean), 0.99 * mean_before + 0.01 * y.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5
    )


def test_no_batch_norm_is_the_convolution():
    conv, _ = make(layout.Conv2D, (6, 6), 2, 3)
    x = np.random.default_rng(3).normal(size=(1, 6, 6, 2)).astype("float32")
    np.testing.assert_array_equal(to_numpy(conv_batch_norm(conv, None, x)), to_numpy(conv(x)))


def test_a_convolution_with_an_activation_is_not_folded():
    # BN(relu(conv(x))) is no affine map of conv(x): it must run as it is.
    conv, bn = make(layout.Conv2D, (6, 6), 2, 3, activation="relu")
    x = np.random.default_rng(4).normal(size=(1, 6, 6, 2)).astype("float32")
    want = to_numpy(bn(conv(x), training=False))
    np.testing.assert_allclose(to_numpy(conv_batch_norm(conv, bn, x)), want, rtol=1e-6, atol=1e-6)


def test_mixed_precision_block_stays_close_to_float32():
    x = np.random.default_rng(5).normal(size=(1, 16, 16, 2)).astype("float32")
    block = EncoderBlock(8, pool=False)
    block(x)
    rng = np.random.default_rng(6)
    for bn in (block.bn_1, block.bn_2):
        bn.moving_variance.assign(rng.uniform(0.05, 3.0, bn.moving_variance.shape).astype("float32"))
    mixed = EncoderBlock(8, pool=False, dtype="mixed_float16")
    mixed(x)
    mixed.set_weights(block.get_weights())
    want = to_numpy(block(x, training=False))
    got = mixed(x, training=False)
    assert keras.backend.standardize_dtype(got.dtype) == "float16"
    np.testing.assert_allclose(to_numpy(got).astype("float32"), want, rtol=2e-2, atol=2e-2)
