import numpy as np
import pytest

from keras_rmz.losses import discriminator_loss
from keras_rmz.losses import generator_adversarial_loss
from tests.helpers import to_numpy
from tests.losses.loss_testing import value_and_grad


@pytest.mark.parametrize("shape", [(4, 1), (2, 4, 4, 1)])
def test_generator_loss_is_mean_squared_distance_to_one(shape):
    d_fake = np.random.default_rng(0).normal(size=shape).astype("float32")
    expected = np.mean((d_fake.astype(np.float64) - 1.0) ** 2)
    value = to_numpy(generator_adversarial_loss(d_fake))
    assert value.shape == ()
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_generator_hand_values():
    np.testing.assert_allclose(
        to_numpy(generator_adversarial_loss(np.array([[0.5], [1.0]]))), 0.125
    )
    # Fooling the discriminator completely costs nothing.
    assert to_numpy(generator_adversarial_loss(np.ones((3, 1)))) == 0.0


@pytest.mark.parametrize("shape", [(4, 1), (2, 4, 4, 1)])
def test_discriminator_loss_matches_equation(shape):
    rng = np.random.default_rng(1)
    d_real = rng.normal(size=shape).astype("float32")
    d_fake = rng.normal(size=shape).astype("float32")
    expected = 0.5 * np.mean(d_fake.astype(np.float64) ** 2) + 0.5 * np.mean(
        (d_real.astype(np.float64) - 1.0) ** 2
    )
    value = to_numpy(discriminator_loss(d_real, d_fake))
    assert value.shape == ()
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_discriminator_hand_values_and_argument_order():
    # Perfect discriminator: real -> 1, fake -> 0.
    assert to_numpy(discriminator_loss(np.ones((2, 1)), np.zeros((2, 1)))) == 0
    # Swapped arguments give the worst case 1/2 + 1/2.
    np.testing.assert_allclose(
        to_numpy(discriminator_loss(np.zeros((2, 1)), np.ones((2, 1)))), 1.0
    )


def test_gradients():
    rng = np.random.default_rng(2)
    d_fake = rng.normal(size=(3, 1)).astype("float32")
    d_real = rng.normal(size=(3, 1)).astype("float32")
    _, grad = value_and_grad(generator_adversarial_loss, d_fake)
    np.testing.assert_allclose(grad, 2 * (d_fake - 1) / 3, rtol=1e-5)
    _, grad = value_and_grad(
        lambda f, r: discriminator_loss(r, f), d_fake, d_real
    )
    np.testing.assert_allclose(grad, d_fake / 3, rtol=1e-5)
    _, grad = value_and_grad(
        lambda r, f: discriminator_loss(r, f), d_real, d_fake
    )
    np.testing.assert_allclose(grad, (d_real - 1) / 3, rtol=1e-5)
