import keras
import numpy as np
import pytest

from keras_rmz.layers import ConvGRU2D
from keras_rmz.layers import ConvGRUCell
from keras_rmz.layers import hard_sigmoid_tf2
from tests.helpers import assert_config_roundtrip
from tests.helpers import assert_keras_saving_roundtrip
from tests.helpers import to_numpy
from tests.layers import reference as ref

ATOL = 1e-5
GATE_FNS = {"sigmoid": ref.sigmoid, "hard_sigmoid_tf2": ref.hard_sigmoid_tf2}
# Tests overwrite the weights; zero initializers spare JAX a compilation
# of the random initializers for every weight shape.
ZEROS = {
    "kernel_initializer": "zeros",
    "recurrent_initializer": "zeros",
    "bias_initializer": "zeros",
}


def randomize_weights(layer, seed=0, scale=0.4):
    """Non-trivial weights (biases too) so every term of the equations shows."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(0.0, scale, weight.shape).astype("float32"))


def make_layer(filters=3, kernel_size=3, channels=2, seed=0, **kwargs):
    """A built ConvGRU2D with random weights."""
    layer = ConvGRU2D(filters, kernel_size, **{**ZEROS, **kwargs})
    layer.build((None, None, None, None, channels))
    randomize_weights(layer, seed=seed)
    return layer


def cell_weights(layer):
    cell = layer.cell
    bias = None if cell.bias is None else to_numpy(cell.bias)
    return to_numpy(cell.kernel), to_numpy(cell.recurrent_kernel), bias


def random_input(shape, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.0, shape).astype("float32")


def expected(layer, x, gate_fn="sigmoid", h0=None):
    kernel, recurrent_kernel, bias = cell_weights(layer)
    return ref.conv_gru(
        x,
        kernel,
        recurrent_kernel,
        bias,
        layer.gate,
        layer.filters,
        padding=layer.padding,
        gate_fn=GATE_FNS[gate_fn],
        go_backwards=layer.go_backwards,
        h0=h0,
    )


def test_hard_sigmoid_tf2_is_the_tf_keras_2_form():
    x = np.array([-3.0, -2.5, -1.0, 0.0, 0.5, 2.5, 4.0], "float32")
    np.testing.assert_allclose(
        to_numpy(hard_sigmoid_tf2(x)),
        [0.0, 0.0, 0.3, 0.5, 0.6, 1.0, 1.0],
        atol=1e-7,
    )
    # Keras 3's hard_sigmoid is x / 6 + 0.5: a different function.
    assert not np.allclose(
        to_numpy(keras.activations.hard_sigmoid(x)), to_numpy(hard_sigmoid_tf2(x))
    )


@pytest.mark.parametrize("gate, num_gates", [("minimal", 2), ("standard", 3)])
def test_weight_layout(gate, num_gates):
    layer = ConvGRU2D(3, (3, 5), gate=gate, **ZEROS)
    layer.build((None, None, None, None, 2))
    assert tuple(layer.cell.kernel.shape) == (3, 5, 2, num_gates * 3)
    assert tuple(layer.cell.recurrent_kernel.shape) == (3, 5, 3, num_gates * 3)
    assert tuple(layer.cell.bias.shape) == (num_gates * 3,)


@pytest.mark.parametrize("gate", ["minimal", "standard"])
@pytest.mark.parametrize("recurrent_activation", ["sigmoid", "hard_sigmoid_tf2"])
def test_golden_sequences_on_varying_shapes(gate, recurrent_activation):
    layer = make_layer(
        gate=gate,
        recurrent_activation=recurrent_activation,
        return_sequences=True,
    )
    # The same instance serves different T, H, W and batch sizes.
    for i, shape in enumerate([(2, 3, 6, 7, 2), (1, 1, 9, 5, 2)]):
        x = random_input(shape, seed=i)
        want_seq, _ = expected(layer, x, recurrent_activation)
        got = to_numpy(layer(x))
        assert got.shape == shape[:4] + (3,)
        np.testing.assert_allclose(got, want_seq, atol=ATOL, rtol=0)


def test_minimal_gate_is_a_standard_gru_with_one_shared_gate():
    """Eq. 4-6 are a two-gate GRU whose reset and update gates are both f."""
    layer = make_layer(gate="minimal", return_sequences=True, seed=3)
    x = random_input((1, 3, 6, 6, 2))
    kernel, recurrent_kernel, bias = cell_weights(layer)
    # Standard GRU whose z and r are both the minimal unit's f.
    n = 3
    std_kernel = np.concatenate([kernel[..., :n], kernel], axis=-1)
    std_recurrent = np.concatenate(
        [recurrent_kernel[..., :n], recurrent_kernel], axis=-1
    )
    std_bias = np.concatenate([bias[:n], bias])
    want, _ = ref.conv_gru(x, std_kernel, std_recurrent, std_bias, "standard", n)
    np.testing.assert_allclose(to_numpy(layer(x)), want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("gate", ["minimal", "standard"])
def test_golden_last_output_and_state(gate):
    layer = make_layer(gate=gate, return_state=True, seed=5)
    x = random_input((2, 3, 7, 6, 2))
    output, state = layer(x)
    _, want = expected(layer, x)
    np.testing.assert_allclose(to_numpy(output), want, atol=ATOL, rtol=0)
    np.testing.assert_allclose(to_numpy(state), want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("gate", ["minimal", "standard"])
def test_golden_go_backwards(gate):
    layer = make_layer(
        gate=gate, go_backwards=True, return_sequences=True, return_state=True,
        seed=7,
    )
    x = random_input((2, 4, 6, 5, 2))
    sequence, state = layer(x)
    want_seq, want_last = expected(layer, x)
    np.testing.assert_allclose(to_numpy(sequence), want_seq, atol=ATOL, rtol=0)
    np.testing.assert_allclose(to_numpy(state), want_last, atol=ATOL, rtol=0)
    # Reading backwards is reading the reversed sequence forwards.
    forward = make_layer(gate=gate)
    forward.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        to_numpy(forward(x[:, ::-1])), want_last, atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("gate", ["minimal", "standard"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_zero_state_start_equals_the_loop_from_zeros(gate, go_backwards, steps):
    # Without initial_state the first step skips its recurrent convolutions
    # (they act on zeros); passing zeros runs every step through the loop.
    layer = make_layer(
        gate=gate, go_backwards=go_backwards, return_sequences=True,
        return_state=True, seed=29,
    )
    x = random_input((2, steps, 6, 5, 2))
    sequence, state = layer(x)
    zeros = np.zeros((2, 6, 5, 3), "float32")
    loop_sequence, loop_state = layer(x, initial_state=zeros)
    assert tuple(sequence.shape) == (2, steps, 6, 5, 3)
    np.testing.assert_allclose(to_numpy(sequence), to_numpy(loop_sequence), atol=1e-6, rtol=0)
    np.testing.assert_allclose(to_numpy(state), to_numpy(loop_state), atol=1e-6, rtol=0)
    last = make_layer(gate=gate, go_backwards=go_backwards, seed=29)
    np.testing.assert_allclose(to_numpy(last(x)), to_numpy(loop_state), atol=1e-6, rtol=0)


def test_zero_state_start_skips_the_recurrent_convolutions():
    # A NaN recurrent kernel poisons every step that convolves the state:
    # from the zero state the first step does not, so T = 1 stays finite.
    layer = make_layer(gate="minimal", seed=31)
    layer.cell.recurrent_kernel.assign(np.full(layer.cell.recurrent_kernel.shape, np.nan, "float32"))
    x = random_input((1, 1, 5, 5, 2))
    first = to_numpy(layer(x))
    assert np.all(np.isfinite(first))
    kernel, _, bias = cell_weights(layer)
    # The reference with a zero recurrent kernel: the same first step.
    _, want = ref.conv_gru(x, kernel, np.zeros((3, 3, 3, 6), "float32"), bias, "minimal", 3)
    np.testing.assert_allclose(first, want, atol=ATOL, rtol=0)
    assert np.all(np.isnan(to_numpy(layer(random_input((1, 2, 5, 5, 2))))))


@pytest.mark.parametrize("unroll", [None, True, False])
@pytest.mark.parametrize("gate", ["minimal", "standard"])
def test_unrolled_and_looped_give_the_equations(unroll, gate):
    layer = make_layer(gate=gate, return_sequences=True, return_state=True, unroll=unroll, seed=37)
    x = random_input((2, 4, 6, 5, 2))
    want_seq, want_last = expected(layer, x)
    for h0 in (None, np.zeros((2, 6, 5, 3), "float32")):  # zero-state start, and the loop from zeros
        sequence, state = layer(x, initial_state=h0)
        np.testing.assert_allclose(to_numpy(sequence), want_seq, atol=ATOL, rtol=0)
        np.testing.assert_allclose(to_numpy(state), want_last, atol=ATOL, rtol=0)


def test_unroll_none_unrolls_short_sequences_of_known_length(monkeypatch):
    from keras_rmz.layers import conv_gru

    layer = make_layer(seed=41)
    assert layer.unroll is None
    assert layer.unrolls(3) and layer.unrolls(conv_gru.AUTO_UNROLL_MAX_STEPS)
    assert not layer.unrolls(conv_gru.AUTO_UNROLL_MAX_STEPS + 1) and not layer.unrolls(None)
    assert make_layer(unroll=False).unrolls(3) is False
    assert make_layer(unroll=True).unrolls(40) is True
    # Unrolled, each of the T - 1 steps after the zero-state start runs the
    # cell once (Keras's PyTorch loop would run the first of them twice).
    calls = []
    original = conv_gru.ConvGRUCell.call

    def counting(self, inputs, states):
        calls.append(1)
        return original(self, inputs, states)

    monkeypatch.setattr(conv_gru.ConvGRUCell, "call", counting)
    layer(random_input((1, 4, 5, 5, 2)))
    assert len(calls) == 3
    assert layer.unroll is None  # the setting survives the call
    assert assert_config_roundtrip(layer).unroll is None
    assert assert_config_roundtrip(make_layer(unroll=True)).unroll is True


@pytest.mark.parametrize("as_list", [False, True])
def test_golden_initial_state(as_list):
    layer = make_layer(gate="standard", return_sequences=True, seed=11)
    x = random_input((2, 2, 6, 7, 2))
    h0 = random_input((2, 6, 7, 3), seed=9) * 0.5
    got = layer(x, initial_state=[h0] if as_list else h0)
    want, _ = expected(layer, x, h0=h0)
    np.testing.assert_allclose(to_numpy(got), want, atol=ATOL, rtol=0)
    # A non-zero start changes the result (the state is really used).
    assert not np.allclose(to_numpy(layer(x)), want, atol=1e-3)


def test_golden_valid_padding():
    layer = make_layer(
        kernel_size=(3, 5), padding="valid", return_sequences=True, seed=13
    )
    for i, shape in enumerate([(2, 3, 6, 7, 2), (1, 2, 5, 9, 2)]):
        x = random_input(shape, seed=i)
        got = to_numpy(layer(x))
        assert got.shape == (shape[0], shape[1], shape[2] - 2, shape[3] - 4, 3)
        want, _ = expected(layer, x)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_golden_without_bias():
    layer = make_layer(use_bias=False, seed=17)
    x = random_input((1, 2, 5, 5, 2))
    assert layer.cell.bias is None and len(layer.weights) == 2
    _, want = expected(layer, x)
    np.testing.assert_allclose(to_numpy(layer(x)), want, atol=ATOL, rtol=0)


def test_functional_model_with_dynamic_shapes_under_jit():
    inputs = keras.Input((None, None, None, 2))
    layer = ConvGRU2D(3, 3, gate="minimal", return_sequences=True, **ZEROS)
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer, seed=19)
    modes = [model.jit_compile]
    if keras.backend.backend() in ("tensorflow", "jax"):
        modes.append(True)
    for jit_compile in modes:
        model.jit_compile = jit_compile
        for i, shape in enumerate([(2, 3, 6, 7, 2), (3, 1, 10, 4, 2)]):
            x = random_input(shape, seed=i)
            got = model.predict(x, verbose=0, batch_size=shape[0])
            want, _ = expected(layer, x)
            np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_functional_model_with_initial_state_input():
    sequences = keras.Input((None, None, None, 2))
    initial_state = keras.Input((None, None, 3))
    layer = ConvGRU2D(3, 3, gate="standard", return_state=True, **ZEROS)
    output, state = layer(sequences, initial_state=initial_state)
    model = keras.Model([sequences, initial_state], [output, state])
    randomize_weights(layer, seed=23)
    for i, shape in enumerate([(2, 2, 6, 7, 2), (1, 3, 8, 5, 2)]):
        x = random_input(shape, seed=i)
        h0 = random_input(shape[:1] + shape[2:4] + (3,), seed=i + 10)
        got_output, got_state = model.predict([x, h0], verbose=0)
        _, want = expected(layer, x, h0=h0)
        np.testing.assert_allclose(got_output, want, atol=ATOL, rtol=0)
        np.testing.assert_allclose(got_state, want, atol=ATOL, rtol=0)


def test_trains():
    """Gradients reach every weight through time, on every backend."""
    inputs = keras.Input((None, None, None, 2))
    layer = ConvGRU2D(3, 3, gate="minimal")  # default initializers
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = random_input((4, 3, 6, 6, 2))
    y = random_input((4, 6, 6, 3), seed=2) * 0.5
    before = [np.array(w) for w in model.get_weights()]
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][1] < history.history["loss"][0]
    for old, new in zip(before, model.get_weights()):
        assert not np.allclose(old, new)


def test_output_shape_inference():
    layer = ConvGRU2D(3, 3, padding="valid", return_sequences=True,
                      return_state=True, **ZEROS)
    output, state = layer(keras.Input((None, 8, 9, 2)))
    assert tuple(output.shape) == (None, None, 6, 7, 3)
    assert tuple(state.shape) == (None, 6, 7, 3)


def test_config_roundtrip():
    cell = ConvGRUCell(3, (3, 5), gate="standard",
                       recurrent_activation="hard_sigmoid_tf2")
    clone = assert_config_roundtrip(cell)
    assert clone.recurrent_activation is hard_sigmoid_tf2
    layer = ConvGRU2D(
        4, 3, gate="standard", padding="valid", return_sequences=True,
        return_state=True, go_backwards=True,
        recurrent_activation=hard_sigmoid_tf2, use_bias=False,
        kernel_initializer="he_normal", name="gru",
    )
    clone = assert_config_roundtrip(layer)
    assert clone.recurrent_activation is hard_sigmoid_tf2
    assert (clone.gate, clone.padding, clone.go_backwards) == (
        "standard", "valid", True
    )


@pytest.mark.parametrize("gate", ["minimal", "standard"])
def test_keras_saving_roundtrip(tmp_path, gate):
    inputs = keras.Input((None, None, None, 2))
    layer = ConvGRU2D(3, 3, gate=gate, recurrent_activation="hard_sigmoid_tf2",
                      return_sequences=True, **ZEROS)
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer, seed=29)
    restored = assert_keras_saving_roundtrip(
        model, random_input((2, 3, 6, 7, 2)), tmp_path
    )
    # The restored layer still takes any shape.
    x = random_input((1, 2, 9, 4, 2), seed=3)
    np.testing.assert_allclose(
        to_numpy(restored(x)), to_numpy(model(x)), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"gate": "lstm"}, "Unknown gate 'lstm'.*'minimal'.*'standard'"),
        ({"padding": "causal"}, "padding must be 'same' or 'valid'"),
        ({"kernel_size": (3, 3, 3)}, "kernel_size must be"),
        ({"filters": 0}, "filters must be a positive int"),
        ({"recurrent_activation": "nope"}, "Unknown activation 'nope'"),
        ({"stateful": True}, "stateful=True"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"filters": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        ConvGRU2D(**args)


def test_bad_inputs():
    layer = ConvGRU2D(3, 3, **ZEROS)
    with pytest.raises(ValueError, match=r"\(B, T, H, W, C\), 5 dims"):
        layer(np.zeros((2, 6, 6, 2), "float32"))
    layer.build((None, None, None, None, 2))
    with pytest.raises(ValueError, match="built for C=2"):
        layer(np.zeros((1, 2, 6, 6, 3), "float32"))
    with pytest.raises(ValueError, match="initial_state must have shape"):
        layer(np.zeros((1, 2, 6, 6, 2), "float32"),
              initial_state=np.zeros((1, 6, 6, 5), "float32"))
    with pytest.raises(ValueError, match="H and W must be >= kernel_size"):
        ConvGRU2D(3, 5, padding="valid", **ZEROS)(
            np.zeros((1, 2, 4, 6, 2), "float32")
        )
