import keras
import numpy as np
import pytest

from keras_rmz.layers import EncoderBlock
from tests.helpers import assert_config_roundtrip
from tests.helpers import assert_keras_saving_roundtrip
from tests.helpers import to_numpy
from tests.layers import reference as ref

ATOL = 1e-5


def randomize_bn(bn, rng):
    c = bn.gamma.shape[0]
    bn.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
    bn.beta.assign(rng.normal(0.0, 0.3, c).astype("float32"))
    bn.moving_mean.assign(rng.normal(0.0, 0.5, c).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.3, 2.0, c).astype("float32"))


def randomize(block, seed=0):
    rng = np.random.default_rng(seed)
    for conv in (block.conv_1, block.conv_2):
        conv.kernel.assign(
            rng.normal(0.0, 0.4, conv.kernel.shape).astype("float32")
        )
        conv.bias.assign(rng.normal(0.0, 0.2, conv.bias.shape).astype("float32"))
    if block.use_batch_norm:
        randomize_bn(block.bn_1, rng)
        randomize_bn(block.bn_2, rng)


def bn_ref(x, bn):
    return ref.batch_norm(
        x,
        to_numpy(bn.gamma),
        to_numpy(bn.beta),
        to_numpy(bn.moving_mean),
        to_numpy(bn.moving_variance),
        bn.epsilon,
    )


def encoder_ref(block, x, activation=ref.relu):
    """Eq. 1: act(BN(Conv2(act(BN(Conv1(P(x)))))))."""
    y = ref.max_pool_2x2(np.asarray(x, np.float64)) if block.pool else x
    for conv, bn in ((block.conv_1, block.bn_1), (block.conv_2, block.bn_2)):
        y = ref.conv2d(y, to_numpy(conv.kernel), to_numpy(conv.bias))
        if bn is not None:
            y = bn_ref(y, bn)
        y = activation(y)
    return y


def random_input(shape, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.0, shape).astype("float32")


@pytest.mark.parametrize("pool", [True, False])
def test_golden_inference(pool):
    block = EncoderBlock(4, pool=pool)
    block.build((None, None, None, 2))
    randomize(block, seed=2)
    for i, shape in enumerate([(2, 8, 10, 2), (1, 7, 5, 2)]):
        x = random_input(shape, seed=i)
        got = to_numpy(block(x, training=False))
        want = encoder_ref(block, x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    # The pool drops an odd last row/column: 7x5 -> 3x2.
    if pool:
        assert got.shape == (1, 3, 2, 4)


def test_channels_follow_the_paper():
    """Conv_k,1 has filters // 2 channels (20·2^(k-2)), Conv_k,2 filters."""
    block = EncoderBlock(4)
    block.build((None, None, None, 2))
    assert tuple(block.conv_1.kernel.shape) == (3, 3, 2, 2)
    assert tuple(block.conv_2.kernel.shape) == (3, 3, 2, 4)
    block = EncoderBlock(4, mid_filters=3, kernel_size=5)
    block.build((None, None, None, 2))
    assert tuple(block.conv_1.kernel.shape) == (5, 5, 2, 3)
    assert tuple(block.conv_2.kernel.shape) == (5, 5, 3, 4)


def test_golden_without_batch_norm_and_leaky_relu():
    block = EncoderBlock(4, use_batch_norm=False, activation="leaky_relu")
    x = random_input((2, 6, 6, 2))
    block.build(x.shape)
    randomize(block, seed=4)
    assert block.bn_1 is None and len(block.weights) == 4
    want = encoder_ref(block, x, activation=lambda v: np.where(v > 0, v, 0.2 * v))
    np.testing.assert_allclose(to_numpy(block(x)), want, atol=ATOL, rtol=0)


def test_training_uses_batch_statistics():
    block = EncoderBlock(4, pool=False)
    x = random_input((4, 6, 6, 2)) * 3.0 + 2.0
    block.build(x.shape)
    randomize(block, seed=6)
    inference = to_numpy(block(x, training=False))
    moving_mean = to_numpy(block.bn_1.moving_mean).copy()
    training = to_numpy(block(x, training=True))
    assert not np.allclose(inference, training, atol=1e-3)
    # Batch norm moved its moving statistics towards the batch's.
    assert not np.allclose(to_numpy(block.bn_1.moving_mean), moving_mean)


def test_functional_model_with_dynamic_shapes():
    inputs = keras.Input((None, None, 2))
    block = EncoderBlock(4)
    model = keras.Model(inputs, block(inputs))
    assert tuple(model.output.shape) == (None, None, None, 4)
    randomize(block, seed=8)
    for i, shape in enumerate([(2, 8, 6, 2), (1, 12, 10, 2)]):
        x = random_input(shape, seed=i)
        np.testing.assert_allclose(
            model.predict(x, verbose=0), encoder_ref(block, x),
            atol=ATOL, rtol=0,
        )


def test_config_roundtrip():
    assert_config_roundtrip(
        EncoderBlock(8, mid_filters=3, kernel_size=5, pool=False,
                     activation="hard_sigmoid_tf2", use_batch_norm=False)
    )
    assert_config_roundtrip(EncoderBlock(4, name="enc"))


def test_keras_saving_roundtrip(tmp_path):
    inputs = keras.Input((None, None, 2))
    block = EncoderBlock(4)
    model = keras.Model(inputs, block(inputs))
    randomize(block, seed=10)
    assert_keras_saving_roundtrip(model, random_input((2, 8, 8, 2)), tmp_path)


def test_bad_inputs_and_arguments():
    with pytest.raises(
        ValueError, match=r"\(N, H, W, C\).*got shape \(2, 3, 8, 8, 1\)"
    ):
        EncoderBlock(4)(np.zeros((2, 3, 8, 8, 1), "float32"))
    block = EncoderBlock(4)
    block.build((None, None, None, 2))
    with pytest.raises(ValueError, match="built for C=2"):
        block(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="filters must be a positive int"):
        EncoderBlock(0)
    with pytest.raises(ValueError, match="needs filters >= 2"):
        EncoderBlock(1)
    with pytest.raises(ValueError, match="Unknown activation"):
        EncoderBlock(4, activation="swishy")
