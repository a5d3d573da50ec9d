import keras
import numpy as np
import pytest

from keras_rmz.layers import RecurrentBlock
from tests.helpers import assert_config_roundtrip
from tests.helpers import assert_keras_saving_roundtrip
from tests.helpers import to_numpy
from tests.layers import reference as ref

ATOL = 1e-5
GATE_FNS = {"sigmoid": ref.sigmoid, "hard_sigmoid_tf2": ref.hard_sigmoid_tf2}


def randomize(block, seed=0):
    rng = np.random.default_rng(seed)
    for weight in block.weights:
        weight.assign(rng.normal(0.0, 0.4, weight.shape).astype("float32"))


def block_ref(block, x, gate_fn="sigmoid"):
    """Eq. 2: s = x + Conv1x1(RConv(x)), RConv = num_layers stacked ConvGRUs."""
    h = np.asarray(x, np.float64)
    for conv_gru in block.conv_grus:
        cell = conv_gru.cell
        h, _ = ref.conv_gru(
            h,
            to_numpy(cell.kernel),
            to_numpy(cell.recurrent_kernel),
            to_numpy(cell.bias),
            block.gate,
            block.filters,
            gate_fn=GATE_FNS[gate_fn],
        )
    kernel = to_numpy(block.conv_1x1.kernel)
    assert kernel.shape == (1, 1, block.filters, block.filters)
    y = h @ kernel[0, 0] + to_numpy(block.conv_1x1.bias)
    if block.return_sequences:
        return x + y
    return x[:, -1] + y[:, -1]


def random_input(shape, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.0, shape).astype("float32")


@pytest.mark.parametrize(
    "gate, num_layers, recurrent_activation",
    [
        ("minimal", 1, "sigmoid"),
        ("standard", 1, "sigmoid"),
        ("minimal", 2, "hard_sigmoid_tf2"),
    ],
)
def test_golden_last_step(gate, num_layers, recurrent_activation):
    block = RecurrentBlock(3, gate=gate, num_layers=num_layers,
                           recurrent_activation=recurrent_activation)
    block.build((None, None, None, None, 3))
    randomize(block, seed=4)
    for i, shape in enumerate([(2, 3, 6, 7, 3), (1, 2, 8, 5, 3)]):
        x = random_input(shape, seed=i)
        got = to_numpy(block(x))
        assert got.shape == shape[:1] + shape[2:]
        np.testing.assert_allclose(
            got, block_ref(block, x, recurrent_activation), atol=ATOL, rtol=0
        )


@pytest.mark.parametrize("num_layers", [1, 2])
def test_golden_return_sequences(num_layers):
    block = RecurrentBlock(3, num_layers=num_layers, return_sequences=True)
    block.build((None, None, None, None, 3))
    randomize(block, seed=6)
    for i, shape in enumerate([(2, 3, 6, 5, 3), (1, 1, 4, 8, 3)]):
        x = random_input(shape, seed=i)
        got = to_numpy(block(x))
        assert got.shape == shape
        np.testing.assert_allclose(got, block_ref(block, x), atol=ATOL, rtol=0)


def test_two_layers_stack_two_conv_grus():
    block = RecurrentBlock(3, num_layers=2)
    block.build((None, None, None, None, 3))
    assert len(block.conv_grus) == 2
    assert block.conv_grus[0].return_sequences
    assert not block.conv_grus[1].return_sequences
    # Two ConvGRUs (kernel, recurrent kernel, bias) plus the 1x1 conv.
    assert len(block.weights) == 2 * 3 + 2


def test_functional_model_with_dynamic_shapes():
    inputs = keras.Input((None, None, None, 3))
    block = RecurrentBlock(3, num_layers=2)
    model = keras.Model(inputs, block(inputs))
    assert tuple(model.output.shape) == (None, None, None, 3)
    randomize(block, seed=8)
    for i, shape in enumerate([(2, 3, 6, 7, 3), (1, 1, 5, 4, 3)]):
        x = random_input(shape, seed=i)
        np.testing.assert_allclose(
            model.predict(x, verbose=0), block_ref(block, x), atol=ATOL, rtol=0
        )


def test_config_roundtrip():
    clone = assert_config_roundtrip(
        RecurrentBlock(3, kernel_size=5, gate="standard", num_layers=2,
                       recurrent_activation="hard_sigmoid_tf2",
                       return_sequences=True, name="rec")
    )
    assert clone.conv_grus[0].gate == "standard"


def test_keras_saving_roundtrip(tmp_path):
    inputs = keras.Input((None, None, None, 3))
    block = RecurrentBlock(3, num_layers=2, recurrent_activation="hard_sigmoid_tf2")
    model = keras.Model(inputs, block(inputs))
    randomize(block, seed=10)
    assert_keras_saving_roundtrip(model, random_input((2, 3, 6, 6, 3)), tmp_path)


def test_bad_inputs_and_arguments():
    block = RecurrentBlock(3)
    with pytest.raises(ValueError, match=r"input channels must equal filters=3"):
        block(np.zeros((1, 2, 6, 6, 2), "float32"))
    with pytest.raises(ValueError, match=r"\(B, T, H, W, C\)"):
        block(np.zeros((1, 6, 6, 3), "float32"))
    with pytest.raises(ValueError, match="Unknown gate 'gru'"):
        RecurrentBlock(3, gate="gru")
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        RecurrentBlock(3, num_layers=0)
