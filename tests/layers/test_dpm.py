import keras
import numpy as np
import pytest

from keras_rmz.layers import DPM
from tests.helpers import assert_config_roundtrip
from tests.helpers import assert_keras_saving_roundtrip
from tests.helpers import to_numpy


def sample(batch=2, num_inputs=3, height=4, width=5, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 1.0, (batch, num_inputs, height, width, 1))
    input_z = rng.uniform(-5.0, 5.0, (batch, num_inputs))
    output_z = rng.uniform(-5.0, 5.0, (batch,))
    return images.astype("float32"), input_z, output_z


def test_exact_values():
    images = np.arange(2 * 2 * 3 * 3, dtype="float32").reshape(2, 2, 3, 3, 1)
    input_z = np.array([[0.0, 3.0], [1.5, -2.0]])
    output_z = np.array([1.0, 0.5])
    got = to_numpy(DPM()(images, input_z, output_z))
    assert got.shape == (2, 2, 3, 3, 2)
    np.testing.assert_array_equal(got[..., 0], images[..., 0])
    # DPM = output_z − input_z, constant over each plane, in µm.
    expected = np.array([[1.0, -2.0], [-1.0, 2.5]])
    np.testing.assert_allclose(
        got[..., 1], np.broadcast_to(expected[:, :, None, None], (2, 2, 3, 3))
    )


def test_output_z_as_column_and_multichannel_images():
    images, input_z, output_z = sample()
    a = to_numpy(DPM()(images, input_z, output_z))
    b = to_numpy(DPM()(images, input_z, output_z[:, None]))
    np.testing.assert_array_equal(a, b)
    two = np.concatenate([images, 2 * images], axis=-1)
    c = to_numpy(DPM()(two, input_z, output_z))
    assert c.shape == images.shape[:4] + (3,)
    np.testing.assert_array_equal(c[..., 2], a[..., 1])


def test_functional_model_and_saving(tmp_path):
    images_in = keras.Input((None, None, None, 1), name="images")
    input_z_in = keras.Input((None,), name="input_z")
    output_z_in = keras.Input((), name="output_z")
    out = DPM()(images_in, input_z_in, output_z_in)
    assert tuple(out.shape) == (None, None, None, None, 2)
    model = keras.Model(
        {"images": images_in, "input_z": input_z_in, "output_z": output_z_in},
        out,
    )
    for m in (3, 1):
        images, input_z, output_z = sample(num_inputs=m, seed=m)
        got = model.predict(
            {"images": images, "input_z": input_z, "output_z": output_z},
            verbose=0,
        )
        np.testing.assert_allclose(
            got[..., 1],
            np.broadcast_to(
                (output_z[:, None] - input_z)[:, :, None, None], images.shape[:4]
            ),
            atol=1e-6,
        )
    images, input_z, output_z = sample()
    assert_keras_saving_roundtrip(
        model,
        {
            "images": images,
            "input_z": input_z.astype("float32"),
            "output_z": output_z.astype("float32"),
        },
        tmp_path,
    )


def test_config_roundtrip():
    assert_config_roundtrip(DPM(name="dpm"))


@pytest.mark.parametrize(
    "shapes, match",
    [
        (((2, 3, 4, 5), (2, 3), (2,)), r"images \(B, M, H, W, C\)"),
        (((2, 3, 4, 5, 1), (2, 3, 1), (2,)), r"input_z \(B, M\)"),
        (((2, 3, 4, 5, 1), (2, 3), (2, 3)), r"output_z \(B,\) or \(B, 1\)"),
        (((2, 3, 4, 5, 1), (2, 2), (2,)), "same M"),
        (((2, 3, 4, 5, 1), (1, 3), (2,)), "one batch size B"),
        (((2, 3, 4, 5, 1), (2, 3), (3,)), "one batch size B"),
    ],
)
def test_mismatched_shapes(shapes, match):
    images, input_z, output_z = (np.zeros(s, "float32") for s in shapes)
    with pytest.raises(ValueError, match=match):
        DPM()(images, input_z, output_z)
