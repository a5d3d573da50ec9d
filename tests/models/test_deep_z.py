
import keras
import numpy as np
import pytest

from keras_rmz.models.deep_z import DeepZ
from tests.helpers import assert_config_roundtrip, assert_keras_saving_roundtrip, to_numpy, assert_weights_load_on_the_other_backends

TINY = dict(base_filters=4, depth=2)
M_MESSAGE = r"DeepZ takes exactly one input image \(M = 1\); got M = {} — use RecurrentMZ for several"


def make_inputs(batch=2, m=1, h=12, w=20, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "images": rng.random((batch, m, h, w, 1)).astype("float32"),
        "input_z": rng.uniform(0, 6, (batch, m)).astype("float32"),
        "output_z": rng.uniform(0, 6, (batch,)).astype("float32"),
    }


def expected_param_count(base_filters, depth, kernel=3, batch_norm=False, in_channels=2):
    """Deep-Z's generator counted from its description: residual encoder
    blocks conv(f) -> conv(f) (zero-padded identity: no parameters),
    parameter-free pooling and up-sampling, decoder conv(f) on
    concat(up(y), skip) -> conv(f), 1x1 output conv."""
    k2 = kernel * kernel
    bn = 4 if batch_norm else 0
    filters = [base_filters * 2**k for k in range(depth + 1)]
    total = 0
    previous = in_channels
    for f in filters:
        total += k2 * previous * f + f + bn * f
        total += k2 * f * f + f + bn * f
        previous = f
    for k in reversed(range(depth)):
        cin = filters[k + 1] + filters[k]
        total += k2 * cin * filters[k] + filters[k] + bn * filters[k]
        total += k2 * filters[k] * filters[k] + filters[k] + bn * filters[k]
    return total + filters[0] + 1


def test_default_architecture():
    model = DeepZ()
    assert model.count_params() == expected_param_count(48, 4)
    config = model.get_layer("unet").get_config()
    assert config["filters"] == [48, 96, 192, 384, 768]
    assert config["block"] == "residual" and config["pooling"] == "average"


def test_variant_parameter_counts():
    assert DeepZ(**TINY).count_params() == expected_param_count(4, 2)
    assert DeepZ(use_batch_norm=True, **TINY).count_params() == expected_param_count(4, 2, batch_norm=True)
    # the plain double-conv variant has the same weights, only no residual add
    assert DeepZ(residual=False, **TINY).count_params() == expected_param_count(4, 2)


@pytest.mark.parametrize("h, w", [(12, 20), (13, 7), (5, 33), (16, 16)])
def test_any_size_with_one_instance(h, w):
    model = DeepZ(**TINY)
    out = to_numpy(model(make_inputs(batch=2, h=h, w=w), training=False))
    assert out.shape == (2, h, w, 1)
    assert np.all(np.isfinite(out))


def test_refuses_more_than_one_image():
    model = DeepZ(**TINY)
    with pytest.raises(ValueError, match=M_MESSAGE.format(3)):
        model.check_num_inputs(3)
    with pytest.raises(ValueError, match=M_MESSAGE.format(3)):
        model(make_inputs(m=3), training=False)
    with pytest.raises(ValueError, match=M_MESSAGE.format(2)):
        model.reconstruct(np.zeros((2, 8, 8)), [0.0, 1.0], [0.5], verbose=False)
    model.check_num_inputs(1)


def test_predict_refuses_more_than_one_image():
    # A fresh model: under JAX a failed predict leaves Keras' variables purged.
    model = DeepZ(**TINY)
    with pytest.raises(ValueError, match=M_MESSAGE.format(2)):
        model.predict(make_inputs(m=2), verbose=0)


def test_traced_graph_with_unknown_m_refuses(backend):
    if backend != "tensorflow":
        pytest.skip("only TensorFlow traces graphs whose M is unknown")
    import tensorflow as tf

    model = DeepZ(**TINY)
    spec = {
        "images": tf.TensorSpec((None, None, None, None, 1)),
        "input_z": tf.TensorSpec((None, None)),
        "output_z": tf.TensorSpec((None,)),
    }
    run = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    assert tuple(run(make_inputs(m=1)).shape) == (2, 12, 20, 1)
    with pytest.raises(tf.errors.InvalidArgumentError):
        run(make_inputs(m=3))
    # also Keras' own predict after its input shapes were relaxed
    model.predict(make_inputs(m=1), verbose=0)
    with pytest.raises(Exception):
        model.predict(make_inputs(m=2), verbose=0)


def test_output_depends_on_output_z_only_through_the_dpm():
    model = DeepZ(**TINY)
    inputs = make_inputs(batch=2)
    base = to_numpy(model(inputs, training=False))
    moved = dict(inputs, output_z=inputs["output_z"] + 1.5)
    assert np.max(np.abs(to_numpy(model(moved, training=False)) - base)) > 1e-4
    # the DPM is output_z - input_z: shifting both leaves the output unchanged
    both = dict(inputs, input_z=inputs["input_z"] + 2.0, output_z=inputs["output_z"] + 2.0)
    np.testing.assert_allclose(to_numpy(model(both, training=False)), base, atol=1e-5)


def test_generator_sees_the_image_and_its_dpm():
    # The nested U-Net applied to [image, constant plane output_z - input_z],
    # built here with numpy, gives the model's output.
    model = DeepZ(**TINY)
    inputs = make_inputs(batch=2, h=12, w=16)
    dz = inputs["output_z"] - inputs["input_z"][:, 0]
    image = inputs["images"][:, 0]
    stacked = np.concatenate([image, np.broadcast_to(dz[:, None, None, None], image.shape)], axis=-1)
    expected = to_numpy(model.get_layer("unet")(stacked.astype("float32"), training=False))
    np.testing.assert_allclose(to_numpy(model(inputs, training=False)), expected, atol=1e-5)


def test_padding_is_zero_padding_cropped_back():
    # 13x7 is padded to 16x8 inside; padding by hand gives the same pixels.
    model = DeepZ(**TINY)
    inputs = make_inputs(batch=1, h=13, w=7)
    padded = dict(inputs, images=np.pad(inputs["images"], [(0, 0), (0, 0), (0, 3), (0, 1), (0, 0)]))
    expected = to_numpy(model(padded, training=False))[:, :13, :7]
    np.testing.assert_allclose(to_numpy(model(inputs, training=False)), expected, atol=1e-5)


def test_reconstruct_matches_direct_call():
    model = DeepZ(**TINY)
    image = np.random.default_rng(1).random((1, 10, 14)).astype("float32")
    output_z = np.linspace(0.0, 6.0, 5).astype("float32")
    volume = model.reconstruct(image, [3.0], output_z, batch_size=2, normalize=None, verbose=False)
    assert volume.shape == (5, 10, 14) and volume.dtype == np.float32
    direct = to_numpy(
        model(
            {
                "images": np.repeat(image[None, ..., None], 5, axis=0),
                "input_z": np.full((5, 1), 3.0, "float32"),
                "output_z": output_z,
            },
            training=False,
        )
    )[..., 0]
    np.testing.assert_allclose(volume, direct, atol=1e-5)
    # uint16 planes with the default normalization, and a scalar output_z
    plane = model.reconstruct((image * 1000).astype("uint16"), [3.0], 1.5, verbose=False)
    assert plane.shape == (1, 10, 14) and np.all(np.isfinite(plane))


def test_config_and_keras_file_roundtrip(tmp_path):
    model = DeepZ(use_batch_norm=True, pooling="max", upsampling="transpose", **TINY)
    clone = assert_config_roundtrip(model)
    assert clone.count_params() == model.count_params()
    restored = assert_keras_saving_roundtrip(model, make_inputs(batch=2, h=9, w=13), tmp_path)
    assert isinstance(restored, DeepZ)
    assert restored.get_config() == model.get_config()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(base_filters=1), "base_filters"),
        (dict(depth=-1), "depth"),
        (dict(pooling="min"), "pooling"),
        (dict(upsampling="cubic"), "upsampling"),
    ],
)
def test_invalid_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DeepZ(**{**TINY, **kwargs})


def test_top_level_name():
    import keras_rmz

    try:
        exported = keras_rmz.DeepZ
    except AttributeError:
        pytest.skip("keras_rmz.models does not export DeepZ yet (lead's __init__)")
    assert exported is DeepZ
    assert isinstance(DeepZ(**TINY), keras.Model)


@pytest.mark.large
@pytest.mark.cross_backend
def test_weights_load_on_the_other_backends(tmp_path):
    model = DeepZ(use_batch_norm=True, **TINY)
    assert_weights_load_on_the_other_backends(model, make_inputs(h=12, w=10), tmp_path, "keras_rmz.models.deep_z")
