import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_rmz.losses import MS_SSIM_POWER_FACTORS
from keras_rmz.losses import RecurrentMZLoss
from tests.helpers import assert_config_roundtrip
from tests.helpers import to_numpy
from tests.losses.loss_testing import evaluate
from tests.losses.loss_testing import fit_one_step
from tests.losses.loss_testing import numpy_berhu
from tests.losses.loss_testing import value_and_grad


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[1], 0 : shape[2]]
    y_true = np.zeros(shape)
    for i in range(shape[0]):
        for _ in range(15):
            cy, cx = rng.uniform(0, shape[1], 2)
            y_true[i, :, :, 0] += np.exp(
                -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2)
            )
    y_true = np.clip(y_true, 0, 1).astype("float32")
    y_pred = np.clip(y_true + 0.15 * rng.standard_normal(shape), 0, 1)
    return y_true, y_pred.astype("float32")


def _tf_ms_ssim(a, b, power_factors=MS_SSIM_POWER_FACTORS):
    return tf.image.ssim_multiscale(
        a, b, max_val=1.0, power_factors=power_factors
    ).numpy()


def test_golden_full_size():
    y_true, y_pred = _pair((2, 192, 192, 1))
    expected = 3.0 * numpy_berhu(y_true, y_pred, 0.1) + 1.0 * (
        1.0 - _tf_ms_ssim(y_true, y_pred)
    )
    loss = RecurrentMZLoss(reduction=None)
    np.testing.assert_allclose(
        evaluate(loss, y_true, y_pred), expected, atol=1e-3, rtol=0
    )
    np.testing.assert_allclose(
        evaluate(RecurrentMZLoss(), y_true, y_pred), expected.mean(),
        atol=1e-3,
    )


def test_golden_training_patch_with_other_weights():
    # 64 x 64 patch: 3 scales, first three weights renormalized.
    y_true, y_pred = _pair((2, 64, 64, 1), seed=1)
    w = np.array(MS_SSIM_POWER_FACTORS[:3])
    d = np.abs(y_pred - y_true).reshape(2, -1)
    c = 0.2 * d.max(axis=1).reshape(2, 1, 1, 1)
    expected = 2.0 * numpy_berhu(y_true, y_pred, c) + 0.5 * (
        1.0 - _tf_ms_ssim(y_true, y_pred, tuple(w / w.sum()))
    )
    loss = RecurrentMZLoss(
        berhu_weight=2.0, ms_ssim_weight=0.5, adaptive=True, reduction=None
    )
    np.testing.assert_allclose(
        evaluate(loss, y_true, y_pred), expected, atol=1e-3, rtol=0
    )


def test_zero_ms_ssim_weight_is_berhu_alone_and_skips_ms_ssim(monkeypatch):
    import keras_rmz.losses.recurrent_mz_loss as module

    def refuse(*args, **kwargs):
        raise AssertionError("MS-SSIM computed at weight 0")

    monkeypatch.setattr(module, "ms_ssim", refuse)
    y_true, y_pred = _pair((2, 64, 64, 1), seed=2)
    d = np.abs(y_pred - y_true)
    expected = 3.0 * numpy_berhu(y_true, y_pred, 0.1)
    loss = RecurrentMZLoss(ms_ssim_weight=0.0, reduction=None)
    np.testing.assert_allclose(evaluate(loss, y_true, y_pred), expected, atol=1e-5, rtol=1e-5)
    assert d.max() > 0.1  # both branches of BerHu are exercised


def test_zero_for_perfect_prediction_and_finite_gradient():
    y_true, _ = _pair((2, 64, 64, 1))
    loss = RecurrentMZLoss(reduction=None)
    np.testing.assert_allclose(to_numpy(loss(y_true, y_true)), 0.0, atol=1e-6)
    value, grad = value_and_grad(lambda p, t: loss(t, p), y_true, y_true)
    assert np.isfinite(value) and np.isfinite(grad).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="berhu_weight must be a number >= 0"):
        RecurrentMZLoss(berhu_weight=-1)
    with pytest.raises(ValueError, match="c must be a number > 0"):
        RecurrentMZLoss(c=0)
    with pytest.raises(ValueError, match="max_val must be a number > 0"):
        RecurrentMZLoss(max_val=0)


def test_config_roundtrip():
    loss = RecurrentMZLoss(
        berhu_weight=2.5, ms_ssim_weight=0.5, c=0.2, adaptive=True,
        max_val=2.0, name="content",
    )
    clone = assert_config_roundtrip(loss)
    assert (clone.berhu_weight, clone.ms_ssim_weight, clone.c,
            clone.adaptive, clone.max_val) == (2.5, 0.5, 0.2, True, 2.0)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, RecurrentMZLoss)
    assert restored.get_config() == loss.get_config()


def test_compile_fit_and_keras_saving(tmp_path):
    value, moved, model = fit_one_step(RecurrentMZLoss(c=0.2), size=64)
    assert np.isfinite(value) and value > 0
    assert moved
    # A compiled model saved to .keras comes back with the same loss.
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.loss, RecurrentMZLoss)
    assert restored.loss.get_config() == model.loss.get_config()


def test_targets_without_channel_axis():
    # Like Keras' own loss classes: (B, H, W) targets against (B, H, W, 1).
    y_true, y_pred = _pair((2, 32, 32, 1))
    loss = RecurrentMZLoss(reduction=None)
    np.testing.assert_allclose(
        to_numpy(loss(y_true[..., 0], y_pred)),
        to_numpy(loss(y_true, y_pred)),
        atol=1e-6,
    )
