
import numpy as np
import pytest

import keras_rmz
from keras_rmz.models import AUTHORS_CODE_CONFIG, RecurrentMZ
from tests.helpers import assert_config_roundtrip, assert_keras_saving_roundtrip, to_numpy, assert_weights_load_on_the_other_backends

TINY = dict(base_filters=4, depth=2)


def make_inputs(batch=2, m=3, h=12, w=20, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "images": rng.random((batch, m, h, w, 1)).astype("float32"),
        "input_z": np.sort(rng.uniform(0, 6, (batch, m)), axis=1).astype("float32"),
        "output_z": rng.uniform(0, 6, (batch,)).astype("float32"),
    }


def expected_param_count(base_filters, depth, gate_count=2, gru_layers=1, kernel=3, in_channels=2):
    """Parameters of the paper's network, counted from Eq. 1-6 by hand."""
    filters = [base_filters * 2**k for k in range(depth + 1)]
    k2 = kernel * kernel
    total = 0
    previous = in_channels
    for f in filters:  # encoder block: conv(f/2), BN, conv(f), BN
        mid = f // 2
        total += k2 * previous * mid + mid + 4 * mid
        total += k2 * mid * f + f + 4 * f
        previous = f
    for f in filters:  # recurrent block: ConvGRU(s) + 1x1 conv
        gru = k2 * f * gate_count * f + k2 * f * gate_count * f + gate_count * f
        total += gru_layers * gru + f * f + f
    for k, f in enumerate(filters[:-1]):  # decoder: conv(f) on concat(up(y), s), BN, conv(f), BN
        cin = filters[k + 1] + f
        total += k2 * cin * f + f + 4 * f
        total += k2 * f * f + f + 4 * f
    return total + filters[0] + 1  # 1x1 output conv


def test_paper_default_architecture():
    model = RecurrentMZ()
    assert model.count_params() == expected_param_count(20, 4)
    assert model.get_layer("encoder_0").get_config()["filters"] == 20
    assert model.get_layer("encoder_4").get_config()["filters"] == 320


def test_authors_code_variant_parameters():
    model = RecurrentMZ(**{**AUTHORS_CODE_CONFIG, "depth": 2})
    assert model.count_params() == expected_param_count(16, 2, gru_layers=2)
    assert RecurrentMZ(gate="standard", **TINY).count_params() == expected_param_count(4, 2, gate_count=3)


@pytest.mark.parametrize("m", [1, 2, 4])
def test_any_m_and_any_size_with_one_instance(m):
    model = RecurrentMZ(**TINY)
    for h, w in [(12, 20), (16, 16), (7, 9)]:
        out = model(make_inputs(batch=2, m=m, h=h, w=w), training=False)
        assert tuple(out.shape) == (2, h, w, 1)
        assert np.all(np.isfinite(to_numpy(out)))


def test_output_depends_on_output_z_and_inputs():
    model = RecurrentMZ(**TINY)
    inputs = make_inputs(batch=1)
    base = to_numpy(model(inputs, training=False))
    moved = dict(inputs, output_z=inputs["output_z"] + 2.0)
    assert not np.allclose(to_numpy(model(moved, training=False)), base)
    permuted = dict(inputs, images=inputs["images"][:, ::-1], input_z=inputs["input_z"][:, ::-1])
    assert to_numpy(model(permuted, training=False)).shape == base.shape


def test_padding_does_not_leak_between_sizes():
    # A 7x9 image gives the same result whether or not other sizes were seen.
    model = RecurrentMZ(**TINY)
    small = make_inputs(batch=1, h=7, w=9)
    first = to_numpy(model(small, training=False))
    model(make_inputs(batch=1, h=16, w=16), training=False)
    np.testing.assert_allclose(to_numpy(model(small, training=False)), first, atol=1e-6)


def test_reconstruct_matches_direct_call_and_batches():
    model = RecurrentMZ(**TINY)
    rng = np.random.default_rng(1)
    images = rng.random((3, 10, 14)).astype("float32")
    input_z = np.array([0.0, 3.0, 6.0])
    output_z = np.linspace(0.0, 6.0, 5)
    volume = model.reconstruct(images, input_z, output_z, batch_size=2, normalize=None, verbose=False)
    assert volume.shape == (5, 10, 14) and volume.dtype == np.float32
    direct = to_numpy(
        model(
            {
                "images": np.repeat(images[None, ..., None], 5, axis=0),
                "input_z": np.repeat(input_z[None].astype("float32"), 5, axis=0),
                "output_z": output_z.astype("float32"),
            },
            training=False,
        )
    )[..., 0]
    np.testing.assert_allclose(volume, direct, atol=1e-5)
    # uint16 input and a scalar output_z are accepted.
    plane = model.reconstruct((images * 1000).astype("uint16"), input_z, 1.5, verbose=False)
    assert np.all(np.isfinite(plane))
    assert plane.shape == (1, 10, 14)


@pytest.mark.parametrize(
    "images, input_z, output_z, message",
    [
        (np.zeros((0, 8, 8)), [], [1.0], "M >= 1"),
        (np.zeros((3, 8, 8)), [0.0, 1.0], [1.0], "expected 3 values"),
        (np.zeros((8, 8)), [0.0], [1.0], "(M, H, W)"),
        (np.zeros((2, 3, 8, 8)), [0.0, 1.0], [1.0], "(M, H, W)"),
        (np.full((2, 8, 8), np.nan), [0.0, 1.0], [1.0], "images must be finite"),
        (np.zeros((2, 8, 8)), [0.0, np.inf], [1.0], "input_z must be finite"),
        (np.zeros((2, 8, 8)), [0.0, 1.0], [np.nan], "output_z must be finite"),
        (np.zeros((2, 8, 8)), [0.0, 1.0], [], "at least one output plane"),
        (np.array([["a"]]), [0.0], [1.0], "numeric"),
    ],
)
def test_reconstruct_refuses_bad_input(images, input_z, output_z, message):
    model = RecurrentMZ(**TINY)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model.reconstruct(images, input_z, output_z, verbose=False)


def test_config_and_keras_file_roundtrip(tmp_path):
    model = RecurrentMZ(gate="standard", gru_layers=2, activation="leaky_relu", **TINY)
    clone = assert_config_roundtrip(model)
    assert clone.count_params() == model.count_params()
    inputs = make_inputs(batch=2, m=2, h=9, w=13)
    restored = assert_keras_saving_roundtrip(model, inputs, tmp_path, atol=1e-6)
    assert isinstance(restored, RecurrentMZ)


def test_top_level_import():
    assert keras_rmz.RecurrentMZ is RecurrentMZ


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="base_filters"):
        RecurrentMZ(base_filters=1)
    with pytest.raises(ValueError, match="gate"):
        RecurrentMZ(gate="lstm", **TINY)


@pytest.mark.cross_backend
def test_weights_load_on_the_other_backends(tmp_path):
    model = RecurrentMZ(**TINY)
    assert_weights_load_on_the_other_backends(model, make_inputs(batch=2, m=3, h=12, w=12), tmp_path, "keras_rmz.models")


def test_input_residual_adds_the_nearest_input_plane(tmp_path):
    """input_residual=True: the same parameters; the output is the network's
    image plus the input plane nearest output_z (ties averaged), checked
    against a numpy selection by |output_z - input_z|."""
    plain = RecurrentMZ(**TINY)
    model = RecurrentMZ(input_residual=True, **TINY)
    assert model.count_params() == plain.count_params() == expected_param_count(4, 2)
    model.set_weights(plain.get_weights())
    inputs = make_inputs(batch=3, m=3, h=12, w=20, seed=4)
    inputs["input_z"] = np.array([[0.0, 3.0, 6.0], [6.0, 0.0, 3.0], [0.0, 3.0, 6.0]], "float32")
    inputs["output_z"] = np.array([2.0, 0.4, 4.5], "float32")  # nearest: 3, 0, tie of 3 and 6
    images = inputs["images"][..., 0]
    nearest = np.stack([images[0, 1], images[1, 1], (images[2, 1] + images[2, 2]) / 2])
    got = to_numpy(model(inputs, training=False))[..., 0]
    expected = to_numpy(plain(inputs, training=False))[..., 0] + nearest
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert RecurrentMZ.from_config(model.get_config()).input_residual is True
    restored = assert_keras_saving_roundtrip(model, make_inputs(batch=2, m=2, h=9, w=13), tmp_path, atol=1e-6)
    assert restored.input_residual is True
