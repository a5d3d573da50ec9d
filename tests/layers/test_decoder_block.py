import keras
import numpy as np
import pytest

from keras_rmz.layers import DecoderBlock
from tests.helpers import assert_config_roundtrip
from tests.helpers import assert_keras_saving_roundtrip
from tests.helpers import to_numpy
from tests.layers import reference as ref

ATOL = 1e-5


def randomize(block, seed=0):
    rng = np.random.default_rng(seed)
    for conv in (block.conv_1, block.conv_2):
        conv.kernel.assign(
            rng.normal(0.0, 0.4, conv.kernel.shape).astype("float32")
        )
        conv.bias.assign(rng.normal(0.0, 0.2, conv.bias.shape).astype("float32"))
    if block.use_batch_norm:
        for bn in (block.bn_1, block.bn_2):
            c = bn.gamma.shape[0]
            bn.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
            bn.beta.assign(rng.normal(0.0, 0.3, c).astype("float32"))
            bn.moving_mean.assign(rng.normal(0.0, 0.5, c).astype("float32"))
            bn.moving_variance.assign(rng.uniform(0.3, 2.0, c).astype("float32"))


def decoder_ref(block, y_prev, skip):
    """Eq. 3: ReLU(BN(Conv5(ReLU(BN(Conv4(I(y_prev) ⊕ skip))))))."""
    y = np.concatenate([ref.upsample_nearest_2x(y_prev), skip], axis=-1)
    for conv, bn in ((block.conv_1, block.bn_1), (block.conv_2, block.bn_2)):
        y = ref.conv2d(y, to_numpy(conv.kernel), to_numpy(conv.bias))
        if bn is not None:
            y = ref.batch_norm(
                y,
                to_numpy(bn.gamma),
                to_numpy(bn.beta),
                to_numpy(bn.moving_mean),
                to_numpy(bn.moving_variance),
                bn.epsilon,
            )
        y = ref.relu(y)
    return y


def random_pair(batch, height, width, c_prev=3, c_skip=2, seed=1):
    rng = np.random.default_rng(seed)
    y_prev = rng.normal(0.0, 1.0, (batch, height, width, c_prev))
    skip = rng.normal(0.0, 1.0, (batch, 2 * height, 2 * width, c_skip))
    return y_prev.astype("float32"), skip.astype("float32")


@pytest.mark.parametrize("use_batch_norm", [True, False])
def test_golden_inference(use_batch_norm):
    block = DecoderBlock(4, use_batch_norm=use_batch_norm)
    block.build([(None, None, None, 3), (None, None, None, 2)])
    randomize(block, seed=3)
    for i, (height, width) in enumerate([(3, 4), (5, 2)]):
        y_prev, skip = random_pair(2 - i, height, width, seed=i)
        got = to_numpy(block([y_prev, skip], training=False))
        assert got.shape == (2 - i, 2 * height, 2 * width, 4)
        np.testing.assert_allclose(
            got, decoder_ref(block, y_prev, skip), atol=ATOL, rtol=0
        )


def test_concatenation_order_is_upsampled_then_skip():
    block = DecoderBlock(4)
    block.build([(None, None, None, 3), (None, None, None, 2)])
    # First conv reads 3 up-sampled channels then 2 skip channels.
    assert tuple(block.conv_1.kernel.shape) == (3, 3, 5, 4)
    assert tuple(block.conv_2.kernel.shape) == (3, 3, 4, 4)
    y_prev, skip = random_pair(1, 2, 2, c_prev=3, c_skip=2)
    kernel = np.zeros((3, 3, 5, 4), "float32")
    kernel[1, 1, 0, 0] = 1.0  # output 0 = up-sampled channel 0
    kernel[1, 1, 3, 1] = 1.0  # output 1 = skip channel 0
    block.conv_1.kernel.assign(kernel)
    block.conv_2.kernel.assign(_center(4))  # identity
    # Moving variance 1 − ε makes inference batch norm the identity.
    block.bn_1.moving_variance.assign(np.full(4, 1.0 - 1e-3, "float32"))
    block.bn_2.moving_variance.assign(np.full(4, 1.0 - 1e-3, "float32"))
    got = to_numpy(block([y_prev, skip], training=False))
    np.testing.assert_allclose(
        got[..., 0], np.maximum(ref.upsample_nearest_2x(y_prev)[..., 0], 0),
        atol=1e-5,
    )
    np.testing.assert_allclose(got[..., 1], np.maximum(skip[..., 0], 0), atol=1e-5)


def _center(c):
    kernel = np.zeros((3, 3, c, c), "float32")
    kernel[1, 1] = np.eye(c)
    return kernel


def test_functional_model_with_dynamic_shapes():
    y_in = keras.Input((None, None, 3))
    skip_in = keras.Input((None, None, 2))
    block = DecoderBlock(4)
    model = keras.Model([y_in, skip_in], block([y_in, skip_in]))
    assert tuple(model.output.shape) == (None, None, None, 4)
    randomize(block, seed=5)
    for i, (height, width) in enumerate([(3, 4), (2, 6)]):
        y_prev, skip = random_pair(2, height, width, seed=i)
        np.testing.assert_allclose(
            model.predict([y_prev, skip], verbose=0),
            decoder_ref(block, y_prev, skip),
            atol=ATOL,
            rtol=0,
        )


def test_config_roundtrip():
    assert_config_roundtrip(
        DecoderBlock(4, kernel_size=5, activation="leaky_relu",
                     use_batch_norm=False, name="dec")
    )


def test_keras_saving_roundtrip(tmp_path):
    y_in = keras.Input((None, None, 3))
    skip_in = keras.Input((None, None, 2))
    block = DecoderBlock(4)
    model = keras.Model([y_in, skip_in], block([y_in, skip_in]))
    randomize(block, seed=7)
    assert_keras_saving_roundtrip(model, list(random_pair(2, 3, 4)), tmp_path)


def test_bad_inputs():
    block = DecoderBlock(4)
    y_prev, skip = random_pair(1, 3, 4)
    with pytest.raises(ValueError, match=r"called on \[y_prev, skip\]"):
        block(y_prev)
    with pytest.raises(ValueError, match="spatial sizes do not match"):
        block([y_prev, skip[:, :5]])
    with pytest.raises(ValueError, match=r"y_prev \(N, H, W, C1\)"):
        block([y_prev[None], skip])
    with pytest.raises(ValueError, match="batch sizes differ"):
        block([y_prev, np.concatenate([skip, skip])])
    block([y_prev, skip])
    with pytest.raises(ValueError, match=r"built for channels \(3, 2\)"):
        block([y_prev, skip[..., :1]])
