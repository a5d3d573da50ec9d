"""keras_rmz.layers.layout: the channels-last convolutions and poolings that
skip Keras's layout copies on PyTorch give the results of the equations (and
of the Keras layers they replace) on every backend, and load the same weights."""

import keras
import numpy as np
import pytest

from keras_rmz.backend import layout as backend_layout
from keras_rmz.layers import layout
from tests.helpers import assert_config_roundtrip
from tests.helpers import to_numpy
from tests.layers import reference as ref


def conv_nd(x, kernel, strides, padding):
    """Cross-correlation of (B, *spatial, C) with (*k, C, O), float64 loops;
    "same" pads (k - 1) // 2 before and the rest after, as TensorFlow does."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    ks = kernel.shape[:-2]
    if padding == "same":
        pads = []
        for n, k, s in zip(x.shape[1:-1], ks, strides):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    out_shape = [(n - k) // s + 1 for n, k, s in zip(x.shape[1:-1], ks, strides)]
    out = np.zeros([x.shape[0]] + out_shape + [kernel.shape[-1]])
    for offset in np.ndindex(*ks):
        window = x[(slice(None),) + tuple(slice(o, o + s * (n - 1) + 1, s) for o, s, n in zip(offset, strides, out_shape))]
        out += np.tensordot(window, kernel[offset], axes=([-1], [0]))
    return out


def pool_nd(x, size, reduce):
    """Non-overlapping pooling of (B, *spatial, C), "valid" (the remainder dropped)."""
    x = np.asarray(x, np.float64)
    spatial = x.shape[1:-1]
    cropped = x[(slice(None),) + tuple(slice(0, n // size * size) for n in spatial)]
    shape = [x.shape[0]]
    for n in spatial:
        shape += [n // size, size]
    blocks = cropped.reshape(shape + [x.shape[-1]])
    return reduce(blocks, axis=tuple(range(2, 2 * len(spatial) + 1, 2)))


@pytest.mark.parametrize(
    "spatial, kernel_size, strides, padding",
    [
        ((13, 10), (3, 3), (1, 1), "same"),
        ((13, 10), (3, 2), (2, 1), "same"),
        ((12, 9), (3, 3), (1, 1), "valid"),
        ((7, 6, 5), (3, 3, 2), (1, 1, 1), "same"),
        ((7, 6, 5), (1, 1, 2), (1, 1, 1), "valid"),
    ],
)
def test_conv_matches_the_cross_correlation(spatial, kernel_size, strides, padding):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2,) + spatial + (5,)).astype("float32")
    kernel = rng.normal(size=kernel_size + (5, 4)).astype("float32")
    got = to_numpy(backend_layout.conv(x, kernel, strides, padding))
    np.testing.assert_allclose(got, conv_nd(x, kernel, strides, padding), atol=2e-5, rtol=1e-5)


def test_conv_of_a_channel_slice():
    # ConvGRU2D convolves slices of its gate tensor (x[..., :n]): strided views.
    rng = np.random.default_rng(1)
    x = keras.ops.convert_to_tensor(rng.normal(size=(1, 9, 8, 6)).astype("float32"))
    kernel = rng.normal(size=(3, 3, 2, 3)).astype("float32")
    got = to_numpy(backend_layout.conv(x[..., 2:4], kernel, 1, "same"))
    np.testing.assert_allclose(got, ref.conv2d(to_numpy(x)[..., 2:4], kernel), atol=2e-5)


@pytest.mark.parametrize("spatial", [(8, 6), (9, 7), (6, 4, 4)])
def test_pools_match_numpy(spatial):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2,) + spatial + (3,)).astype("float32")
    np.testing.assert_allclose(to_numpy(backend_layout.max_pool(x, 2, 2)), pool_nd(x, 2, np.max), atol=1e-6)
    np.testing.assert_allclose(to_numpy(backend_layout.average_pool(x, 2, 2)), pool_nd(x, 2, np.mean), atol=1e-6)


LAYER_PAIRS = [
    (layout.Conv2D, keras.layers.Conv2D, dict(filters=4, kernel_size=3, padding="same"), (2, 9, 8, 3)),
    (layout.Conv2D, keras.layers.Conv2D, dict(filters=4, kernel_size=3, strides=2, activation="relu"), (2, 9, 8, 3)),
    (layout.Conv3D, keras.layers.Conv3D, dict(filters=2, kernel_size=(1, 1, 3), padding="valid"), (1, 5, 4, 6, 3)),
    (layout.MaxPooling2D, keras.layers.MaxPooling2D, dict(pool_size=2), (2, 9, 8, 3)),
    (layout.AveragePooling2D, keras.layers.AveragePooling2D, dict(pool_size=2), (2, 9, 8, 3)),
    (layout.MaxPooling3D, keras.layers.MaxPooling3D, dict(pool_size=2), (1, 4, 6, 4, 2)),
    (layout.AveragePooling3D, keras.layers.AveragePooling3D, dict(pool_size=2), (1, 4, 6, 4, 2)),
]


@pytest.mark.parametrize("ours, theirs, kwargs, shape", LAYER_PAIRS, ids=lambda v: getattr(v, "__name__", None))
def test_layers_are_drop_in_replacements(ours, theirs, kwargs, shape, tmp_path):
    """Same output, weights, auto-generated name and saved weights as the
    Keras layer: presets saved before these layers existed load unchanged."""
    x = np.random.default_rng(3).normal(size=shape).astype("float32")
    theirs_layer, ours_layer = theirs(**kwargs), ours(**kwargs)
    expected = to_numpy(theirs_layer(x))
    ours_layer.build(shape)
    assert [w.path.split("/")[-1] for w in ours_layer.weights] == [w.path.split("/")[-1] for w in theirs_layer.weights]
    assert ours_layer.name.split("_")[0] == theirs_layer.name.split("_")[0]
    if theirs_layer.weights:
        path = tmp_path / "theirs.weights.h5"
        wrapper = keras.Sequential([keras.Input(shape[1:]), theirs_layer])
        wrapper.save_weights(path)
        keras.Sequential([keras.Input(shape[1:]), ours_layer]).load_weights(path)
    np.testing.assert_allclose(to_numpy(ours_layer(x)), expected, atol=1e-5, rtol=1e-5)
    clone = assert_config_roundtrip(ours_layer)
    assert type(clone) is ours


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch memory layout")
def test_torch_outputs_stay_channels_last_in_memory():
    """The point of the module on PyTorch: a channels-last input comes out of a
    convolution and a pooling contiguous as (N, H, W, C), with no channels-first
    copy in between (Keras 3.15's own conv leaves the pooling's output in
    channels-first memory)."""
    import torch

    x = torch.randn(1, 16, 12, 8)
    kernel = torch.randn(3, 3, 8, 4)
    assert backend_layout.conv(x, kernel, 1, "same").is_contiguous()
    pooled = backend_layout.max_pool(x, 2, 2)
    assert pooled.is_contiguous()
    # the channels-first view that the convolution ran on is PyTorch's
    # channels_last memory format
    assert pooled.permute(0, 3, 1, 2).is_contiguous(memory_format=torch.channels_last)
