import keras
import numpy as np
import pytest

from keras_rmz.losses import BerHu
from keras_rmz.losses import berhu
from tests.helpers import assert_config_roundtrip
from tests.helpers import to_numpy
from tests.losses.loss_testing import fit_one_step
from tests.losses.loss_testing import numpy_berhu
from tests.losses.loss_testing import value_and_grad


def _pair(shape=(3, 16, 16, 1), scale=0.2, seed=0):
    rng = np.random.default_rng(seed)
    y_true = rng.random(shape).astype("float32")
    # Errors spread over both branches (|d| below and above c = 0.1).
    y_pred = (y_true + scale * rng.standard_normal(shape)).astype("float32")
    return y_true, y_pred


@pytest.mark.parametrize("c", [0.1, 0.05, 0.5])
def test_matches_numpy_equation(c):
    y_true, y_pred = _pair()
    d = np.abs(y_pred - y_true)
    assert (d <= c).any() and (d > c).any()  # both branches exercised
    expected = numpy_berhu(y_true, y_pred, c)
    actual = to_numpy(berhu(y_true, y_pred, c=c))
    assert actual.shape == (3,)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def test_hand_computed_values():
    # |d| = 0.05 <= c: L1 branch; |d| = 0.3 > c: (0.09 + 0.01) / 0.2 = 0.5.
    y_true = np.zeros((2, 2, 2, 1), "float32")
    y_pred = np.array(
        [np.full((2, 2, 1), 0.05), np.full((2, 2, 1), -0.3)], "float32"
    )
    np.testing.assert_allclose(
        to_numpy(berhu(y_true, y_pred)), [0.05, 0.5], rtol=1e-6
    )


def test_adaptive_matches_numpy_per_sample_c():
    y_true, y_pred = _pair(shape=(4, 8, 8, 2))
    y_pred[1] = y_true[1] + 0.01 * (y_pred[1] - y_true[1])  # small errors
    d = np.abs(y_pred - y_true).reshape(4, -1)
    c = 0.2 * d.max(axis=1).reshape(4, 1, 1, 1)
    expected = numpy_berhu(y_true, y_pred, c)
    actual = to_numpy(berhu(y_true, y_pred, adaptive=True))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-8)
    # c is per sample: scaling one sample's errors scales only its loss.
    assert abs(actual[1] / expected[1] - 1) < 1e-5


def test_continuous_at_threshold():
    c = 0.1
    y_true = np.zeros((3, 1), "float32")
    eps = 1e-4
    y_pred = np.array([[c - eps], [c], [c + eps]], "float32")
    values = to_numpy(berhu(y_true, y_pred, c=c))
    # Both branches equal c at |d| = c, and slope 1 on either side.
    np.testing.assert_allclose(values[1], c, rtol=1e-6)
    np.testing.assert_allclose(values, [c - eps, c, c + eps], atol=2e-6)
    quadratic_at_c = (c**2 + c**2) / (2 * c)
    assert abs(quadratic_at_c - c) < 1e-12


def test_gradient_matches_derivative_and_is_finite():
    c = 0.1
    y_true, y_pred = _pair(shape=(2, 8, 8, 1))
    value, grad = value_and_grad(lambda p, t: berhu(t, p, c=c), y_pred, y_true)
    d = (y_pred - y_true).astype(np.float64)
    n = d[0].size
    expected = np.where(np.abs(d) <= c, np.sign(d), d / c) / n
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(
        value, numpy_berhu(y_true, y_pred, c).sum(), rtol=1e-5
    )


def test_adaptive_gradient_treats_c_as_constant():
    y_true, y_pred = _pair(shape=(2, 8, 8, 1))
    _, grad = value_and_grad(
        lambda p, t: berhu(t, p, adaptive=True), y_pred, y_true
    )
    d = (y_pred - y_true).astype(np.float64)
    c = 0.2 * np.abs(d).reshape(2, -1).max(axis=1).reshape(2, 1, 1, 1)
    n = d[0].size
    expected = np.where(np.abs(d) <= c, np.sign(d), d / c) / n
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("adaptive", [False, True])
def test_identical_inputs_zero_loss_finite_gradient(adaptive):
    y = np.random.rand(2, 8, 8, 1).astype("float32")
    value, grad = value_and_grad(
        lambda p, t: berhu(t, p, adaptive=adaptive), y, y
    )
    assert value == 0.0
    assert np.isfinite(grad).all()
    # |d| has no derivative at 0; backends return a subgradient in [-1, 1].
    assert np.abs(grad).max() <= 1.0 / y[0].size + 1e-9


def test_bad_arguments():
    y = np.zeros((2, 4, 4, 1), "float32")
    with pytest.raises(ValueError, match="c must be a number > 0"):
        berhu(y, y, c=0.0)
    with pytest.raises(ValueError, match="c must be a number > 0"):
        BerHu(c=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        berhu(np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4)))


def test_loss_class_reduces_per_sample_values():
    y_true, y_pred = _pair()
    expected = numpy_berhu(y_true, y_pred, 0.1)
    loss = BerHu()
    np.testing.assert_allclose(
        to_numpy(loss(y_true, y_pred)), expected.mean(), rtol=1e-5
    )
    none = BerHu(reduction=None)
    np.testing.assert_allclose(
        to_numpy(none(y_true, y_pred)), expected, rtol=1e-5
    )
    weights = np.array([1.0, 0.0, 2.0], "float32")
    np.testing.assert_allclose(
        to_numpy(loss(y_true, y_pred, sample_weight=weights)),
        (expected * weights).sum() / 3,
        rtol=1e-5,
    )


def test_config_roundtrip():
    loss = BerHu(c=0.25, adaptive=True, name="pixel", reduction="sum")
    clone = assert_config_roundtrip(loss)
    assert (clone.c, clone.adaptive, clone.name, clone.reduction) == (
        0.25,
        True,
        "pixel",
        "sum",
    )
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, BerHu)
    assert restored.get_config() == loss.get_config()


@pytest.mark.parametrize("adaptive", [False, True])
def test_compile_and_fit(adaptive):
    value, moved, _ = fit_one_step(BerHu(adaptive=adaptive))
    assert np.isfinite(value) and value > 0
    assert moved


def test_function_usable_in_compile():
    value, moved, _ = fit_one_step(berhu)
    assert np.isfinite(value) and moved
