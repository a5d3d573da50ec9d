
import keras
import numpy as np
import pytest

from keras_rmz.models.unet3d import UNet3D
from tests.helpers import assert_config_roundtrip, assert_keras_saving_roundtrip, to_numpy, assert_weights_load_on_the_other_backends

TINY = dict(num_inputs=3, base_filters=4, depth=2)


def make_inputs(batch=2, m=3, h=12, w=20, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "images": rng.random((batch, m, h, w, 1)).astype("float32"),
        "input_z": np.sort(rng.uniform(0, 6, (batch, m)), axis=1).astype("float32"),
        "output_z": rng.uniform(0, 6, (batch,)).astype("float32"),
    }


def expected_param_count(num_inputs, base_filters, depth, kernel=3, batch_norm=True, transpose=True):
    """The paper's 3D U-Net counted from its description: level k has
    conv(f/2) -> conv(f), f = base·2^k, 3x3x3 kernels, BN; the up path a
    2x2x1 up-convolution keeping the channels, conv(f) on the concatenation,
    conv(f); then a (1, 1, 2M) conv to one output."""
    k3 = kernel**3
    bn = 4 if batch_norm else 0
    filters = [base_filters * 2**k for k in range(depth + 1)]
    total = 0
    previous = 1
    for f in filters:
        mid = f // 2
        total += k3 * previous * mid + mid + bn * mid
        total += k3 * mid * f + f + bn * f
        previous = f
    for k in reversed(range(depth)):
        below, f = filters[k + 1], filters[k]
        if transpose:
            total += 2 * 2 * 1 * below * below + below
        total += k3 * (below + f) * f + f + bn * f
        total += k3 * f * f + f + bn * f
    return total + 2 * num_inputs * filters[0] + 1


def reference_volume(inputs):
    """The paper's reshape of the M x H x W x 2 sequence (image, DPM) to
    H x W x 2M, in numpy."""
    images = inputs["images"]
    dpm = (inputs["output_z"][:, None] - inputs["input_z"])[:, :, None, None, None] * np.ones_like(images)
    sequence = np.concatenate([images, dpm], axis=-1)  # (B, M, H, W, 2)
    batch, m, h, w, _ = sequence.shape
    return sequence.transpose(0, 2, 3, 1, 4).reshape(batch, h, w, 2 * m, 1)


def volume_of(model, inputs):
    tap = keras.Model(model.inputs, model.get_layer("volume").output)
    return to_numpy(tap(inputs, training=False))


def test_default_architecture():
    model = UNet3D()
    assert model.num_inputs == 3
    assert model.count_params() == expected_param_count(3, 60, 3)
    unet = model.get_layer("unet").get_config()
    assert unet["filters"] == [60, 120, 240, 480]
    assert unet["pool_size"] == [2, 2, 1] and unet["kernel_size"] == [3, 3, 3]


def test_variant_parameter_counts():
    assert UNet3D(**TINY).count_params() == expected_param_count(3, 4, 2)
    assert UNet3D(upsampling="nearest", use_batch_norm=False, **TINY).count_params() == expected_param_count(
        3, 4, 2, batch_norm=False, transpose=False
    )


@pytest.mark.parametrize("h, w", [(12, 20), (13, 7), (5, 33)])
def test_any_size_with_one_instance(h, w):
    model = UNet3D(**TINY)
    out = to_numpy(model(make_inputs(batch=2, h=h, w=w), training=False))
    assert out.shape == (2, h, w, 1)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("m", [1, 2, 4])
def test_refuses_another_number_of_inputs(m):
    model = UNet3D(**TINY)
    message = rf"UNet3D was built for num_inputs = 3 input images .*got M = {m}"
    with pytest.raises(ValueError, match=message):
        model.check_num_inputs(m)
    with pytest.raises(ValueError, match=message):
        model(make_inputs(m=m), training=False)
    with pytest.raises(ValueError, match=message):
        model.reconstruct(np.zeros((m, 8, 8)), np.arange(m, dtype="float32"), [0.5], verbose=False)
    model.check_num_inputs(3)


def test_predict_refuses_another_number_of_inputs():
    # A fresh model: under JAX a failed predict leaves Keras' variables purged.
    model = UNet3D(**TINY)
    with pytest.raises(ValueError, match="got M = 4"):
        model.predict(make_inputs(m=4), verbose=0)


def test_traced_graph_with_unknown_m_refuses(backend):
    if backend != "tensorflow":
        pytest.skip("only TensorFlow traces graphs whose M is unknown")
    import tensorflow as tf

    model = UNet3D(**TINY)
    spec = {
        "images": tf.TensorSpec((None, None, None, None, 1)),
        "input_z": tf.TensorSpec((None, None)),
        "output_z": tf.TensorSpec((None,)),
    }
    run = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    assert tuple(run(make_inputs(m=3)).shape) == (2, 12, 20, 1)
    for m in (1, 2, 4):
        with pytest.raises(tf.errors.InvalidArgumentError):
            run(make_inputs(m=m))
    # also Keras' own predict after its input shapes were relaxed
    model.predict(make_inputs(m=3), verbose=0)
    with pytest.raises(Exception):
        model.predict(make_inputs(m=4), verbose=0)


def test_volume_interleaves_images_and_dpms():
    model = UNet3D(**TINY)
    inputs = make_inputs(batch=2, h=8, w=12)  # multiples of 4: no padding
    np.testing.assert_allclose(volume_of(model, inputs), reference_volume(inputs), atol=1e-6)


def test_dpms_follow_their_images_and_order_matters():
    model = UNet3D(**TINY)
    inputs = make_inputs(batch=1, h=8, w=12)
    order = [2, 0, 1]
    permuted = dict(inputs, images=inputs["images"][:, order], input_z=inputs["input_z"][:, order])
    # the (image, DPM) pairs move together ...
    pairs = volume_of(model, inputs).reshape(1, 8, 12, 3, 2)
    expected = pairs[:, :, :, order].reshape(1, 8, 12, 6, 1)
    np.testing.assert_allclose(volume_of(model, permuted), expected, atol=1e-6)
    # ... and the 3D U-Net is not permutation invariant (the paper's point)
    base = to_numpy(model(inputs, training=False))
    assert np.max(np.abs(to_numpy(model(permuted, training=False)) - base)) > 1e-4


def test_output_depends_on_output_z():
    model = UNet3D(**TINY)
    inputs = make_inputs(batch=2)
    base = to_numpy(model(inputs, training=False))
    moved = dict(inputs, output_z=inputs["output_z"] + 1.5)
    assert np.max(np.abs(to_numpy(model(moved, training=False)) - base)) > 1e-4


def test_padding_is_zero_padding_cropped_back():
    model = UNet3D(**TINY)
    inputs = make_inputs(batch=1, h=13, w=7)
    padded = dict(inputs, images=np.pad(inputs["images"], [(0, 0), (0, 0), (0, 3), (0, 1), (0, 0)]))
    expected = to_numpy(model(padded, training=False))[:, :13, :7]
    np.testing.assert_allclose(to_numpy(model(inputs, training=False)), expected, atol=1e-5)


def test_reconstruct_matches_direct_call():
    model = UNet3D(**TINY)
    images = np.random.default_rng(1).random((3, 10, 14)).astype("float32")
    input_z = np.array([0.0, 3.0, 6.0], "float32")
    output_z = np.linspace(0.0, 6.0, 4).astype("float32")
    volume = model.reconstruct(images, input_z, output_z, batch_size=3, normalize=None, verbose=False)
    assert volume.shape == (4, 10, 14)
    direct = to_numpy(
        model(
            {
                "images": np.repeat(images[None, ..., None], 4, axis=0),
                "input_z": np.repeat(input_z[None], 4, axis=0),
                "output_z": output_z,
            },
            training=False,
        )
    )[..., 0]
    np.testing.assert_allclose(volume, direct, atol=1e-5)


def test_config_and_keras_file_roundtrip(tmp_path):
    model = UNet3D(num_inputs=2, base_filters=4, depth=1, upsampling="nearest")
    clone = assert_config_roundtrip(model)
    assert clone.count_params() == model.count_params() == expected_param_count(2, 4, 1, transpose=False)
    assert clone.num_inputs == 2
    restored = assert_keras_saving_roundtrip(model, make_inputs(batch=2, m=2, h=9, w=13), tmp_path)
    assert isinstance(restored, UNet3D)
    assert restored.get_config() == model.get_config()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_inputs=0), "num_inputs"),
        (dict(base_filters=1), "base_filters"),
        (dict(depth=-1), "depth"),
        (dict(upsampling="bilinear"), "upsampling"),
    ],
)
def test_invalid_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNet3D(**{**TINY, **kwargs})


@pytest.mark.large
@pytest.mark.cross_backend
def test_weights_load_on_the_other_backends(tmp_path):
    model = UNet3D(**TINY)
    assert_weights_load_on_the_other_backends(model, make_inputs(h=12, w=10), tmp_path, "keras_rmz.models.unet3d")
