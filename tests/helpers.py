"""Shared test helpers, in the way keras-hub's TestCase offers them."""

import json

import keras
import numpy as np


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def assert_config_roundtrip(obj):
    """``from_config(get_config())`` rebuilds an object with the same config,
    and the config survives JSON (what a preset's config.json stores)."""
    config = obj.get_config()
    json.dumps(config)
    clone = obj.__class__.from_config(config)
    assert clone.get_config() == config
    return clone


def assert_keras_saving_roundtrip(model, inputs, tmp_path, atol=1e-6):
    """A ``.keras`` save/load round trip gives identical outputs."""
    expected = to_numpy(model(inputs, training=False))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    actual = to_numpy(restored(inputs, training=False))
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)
    return restored
