import math

import keras
import numpy as np
import pytest

from keras_rmz.models.unet import UNet
from tests.helpers import assert_config_roundtrip, assert_keras_saving_roundtrip, to_numpy


def conv_params(kernel_volume, cin, cout, batch_norm):
    # weights + bias (+ BN gamma, beta, moving mean, moving variance)
    return kernel_volume * cin * cout + cout + (4 * cout if batch_norm else 0)


def expected_unet_params(
    ndim, in_channels, out_channels, filters, kernel=3, pool=2, halve=False, batch_norm=True, transpose=False
):
    """Parameters of the U-Net counted from its description, by hand."""
    kernel_volume = kernel**ndim
    pool_volume = math.prod(pool) if isinstance(pool, (tuple, list)) else pool**ndim
    total = 0
    cin = in_channels
    for f in filters:  # encoder: conv(mid), conv(f)
        mid = f // 2 if halve else f
        total += conv_params(kernel_volume, cin, mid, batch_norm) + conv_params(kernel_volume, mid, f, batch_norm)
        cin = f
    for k in reversed(range(len(filters) - 1)):  # decoder: [up-conv], conv on concat, conv
        below = filters[k + 1]
        if transpose:
            total += pool_volume * below * below + below
        total += conv_params(kernel_volume, below + filters[k], filters[k], batch_norm)
        total += conv_params(kernel_volume, filters[k], filters[k], batch_norm)
    if out_channels:
        total += filters[0] * out_channels + out_channels
    return total


CONFIGS = [
    (
        dict(ndim=2, in_channels=2, out_channels=1, filters=[4, 8, 16]),
        dict(ndim=2, in_channels=2, out_channels=1, filters=[4, 8, 16]),
        (2, 12, 20, 2),
    ),
    (
        dict(
            ndim=2,
            in_channels=2,
            out_channels=3,
            filters=[3, 6, 6],
            block="residual",
            use_batch_norm=False,
            pooling="average",
            upsampling="bilinear",
            activation="leaky_relu",
        ),
        dict(ndim=2, in_channels=2, out_channels=3, filters=[3, 6, 6], batch_norm=False),
        (1, 8, 12, 2),
    ),
    (
        dict(
            ndim=3,
            in_channels=1,
            out_channels=None,
            filters=[4, 8, 16],
            pool_size=(2, 2, 1),
            halve_first_conv=True,
            upsampling="transpose",
        ),
        dict(ndim=3, in_channels=1, out_channels=None, filters=[4, 8, 16], pool=(2, 2, 1), halve=True, transpose=True),
        (2, 8, 12, 6, 1),
    ),
    (
        dict(ndim=3, in_channels=2, out_channels=1, filters=[2, 4], pool_size=2, kernel_size=(3, 3, 1)),
        None,  # anisotropic kernel: counted below
        (1, 4, 6, 8, 2),
    ),
]


@pytest.mark.parametrize("config, count_args, shape", CONFIGS)
def test_shapes_and_parameter_counts(config, count_args, shape):
    unet = UNet(**config)
    out = to_numpy(unet(np.random.default_rng(0).random(shape).astype("float32")))
    out_channels = config["out_channels"] or config["filters"][0]
    assert out.shape == (*shape[:-1], out_channels)
    assert np.all(np.isfinite(out))
    if count_args is not None:
        assert unet.count_params() == expected_unet_params(**count_args)
    else:  # 3x3x1 kernels: 9 weights per (cin, cout) pair
        expected = (9 * 2 * 2 + 2 + 8) + (9 * 2 * 2 + 2 + 8) + (9 * 2 * 4 + 4 + 16) + (9 * 4 * 4 + 4 + 16)
        expected += (9 * 6 * 2 + 2 + 8) + (9 * 2 * 2 + 2 + 8) + (2 * 1 + 1)
        assert unet.count_params() == expected


def test_lateral_only_pooling_keeps_the_depth_axis():
    # A depth of 5 (odd) is fine when only H and W are pooled.
    unet = UNet(ndim=3, in_channels=1, out_channels=1, filters=[2, 4, 8], pool_size=(2, 2, 1))
    bottom = keras.Model(unet.input, unet.get_layer("down_2_1_act").output)
    assert tuple(to_numpy(bottom(np.zeros((1, 8, 12, 5, 1), "float32"))).shape) == (1, 2, 3, 5, 8)
    assert tuple(unet(np.zeros((1, 8, 12, 5, 1), "float32")).shape) == (1, 8, 12, 5, 1)
    assert unet.size_multiple == [4, 4, 1]


def test_residual_block_adds_the_zero_padded_input():
    # With every conv zeroed the conv path is act(0) = 0: what is left is
    # the residual path, the input zero-padded from 2 to 5 channels.
    unet = UNet(ndim=2, in_channels=2, out_channels=None, filters=[5], block="residual", use_batch_norm=False)
    for layer in unet.layers:
        if isinstance(layer, keras.layers.Conv2D):
            for weight in layer.weights:
                weight.assign(np.zeros(weight.shape))
    x = np.random.default_rng(1).normal(size=(2, 6, 7, 2)).astype("float32")
    expected = np.concatenate([x, np.zeros((2, 6, 7, 3), "float32")], axis=-1)
    np.testing.assert_allclose(to_numpy(unet(x)), expected, atol=1e-6)
    # and with its initial weights the conv path does contribute
    fresh = UNet(ndim=2, in_channels=2, out_channels=None, filters=[5], block="residual", use_batch_norm=False)
    assert not np.allclose(to_numpy(fresh(x)), expected)


def test_refuses_sizes_that_do_not_divide():
    unet = UNet(ndim=2, in_channels=1, out_channels=1, filters=[2, 4, 8])
    with pytest.raises(ValueError, match=r"multiples of \[4, 4\].*got spatial shape \(12, 10\)"):
        unet(np.zeros((1, 12, 10, 1), "float32"))
    unet3d = UNet(ndim=3, in_channels=1, out_channels=1, filters=[2, 4], pool_size=(2, 2, 1))
    unet3d(np.zeros((1, 4, 4, 3, 1), "float32"))  # depth 3 is not pooled
    with pytest.raises(ValueError, match=r"multiples of \[2, 2, 1\]"):
        unet3d(np.zeros((1, 4, 5, 3, 1), "float32"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ndim=1), "ndim must be 2 or 3"),
        (dict(filters=[]), "filters must be a non-empty sequence"),
        (dict(filters=[4, 0]), "filters must be a positive integer"),
        (dict(ndim=3, upsampling="bilinear"), "upsampling must be one of"),
        (dict(pooling="min"), "pooling must be one of"),
        (dict(block="dense"), "block must be one of"),
        (dict(ndim=3, pool_size=(2, 2)), "pool_size must be an int or 3 ints"),
        (dict(block="residual", filters=[8, 4]), "channels must never shrink"),
        (dict(block="residual", in_channels=4, filters=[2, 4]), "channels must never shrink"),
    ],
)
def test_invalid_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNet(**kwargs)


def test_config_and_keras_file_roundtrip(tmp_path):
    unet = UNet(
        ndim=3, in_channels=1, out_channels=2, filters=[2, 4], pool_size=(2, 2, 1), halve_first_conv=True,
        upsampling="transpose", name="my_unet",
    )
    clone = assert_config_roundtrip(unet)
    assert clone.count_params() == unet.count_params()
    assert clone.get_config()["pool_size"] == [2, 2, 1]
    x = np.random.default_rng(2).random((2, 6, 4, 3, 1)).astype("float32")
    restored = assert_keras_saving_roundtrip(unet, x, tmp_path)
    assert isinstance(restored, UNet)
