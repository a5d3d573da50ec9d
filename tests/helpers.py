"""Shared test helpers, in the way keras-hub's TestCase offers them."""

import json
import os
import subprocess
import sys
import textwrap

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


CROSS_BACKEND_SCRIPT = textwrap.dedent(
    """
    import importlib, json, sys
    import numpy as np
    import keras
    folder, module, name = sys.argv[1:4]
    model = getattr(importlib.import_module(module), name).from_config(json.load(open(folder + "/config.json")))
    model.load_weights(folder + "/model.weights.h5")
    data = np.load(folder + "/io.npz")
    inputs = {k: data[k] for k in data.files if k != "expected"}
    inputs = inputs["x"] if list(inputs) == ["x"] else inputs
    out = keras.ops.convert_to_numpy(model(inputs, training=False))
    err = float(np.max(np.abs(out - data["expected"])))
    print(json.dumps({"backend": keras.backend.backend(), "max_abs_error": err}))
    """
)


def assert_weights_load_on_the_other_backends(model, inputs, tmp_path, module):
    # Non-trivial BN statistics so that they are part of what is compared.
    rng = np.random.default_rng(2)
    nested = [model]
    while nested:  # the layers of the model and of its nested U-Net
        layer = nested.pop()
        nested.extend(getattr(layer, "layers", []))
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape))
    expected = to_numpy(model(inputs, training=False))
    (tmp_path / "config.json").write_text(json.dumps(model.get_config()))
    model.save_weights(tmp_path / "model.weights.h5")
    arrays = inputs if isinstance(inputs, dict) else {"x": inputs}
    np.savez(tmp_path / "io.npz", expected=expected, **arrays)
    script = tmp_path / "load.py"
    script.write_text(CROSS_BACKEND_SCRIPT)
    for other in [b for b in ("tensorflow", "jax", "torch") if b != keras.backend.backend()]:
        result = subprocess.run(
            [sys.executable, str(script), str(tmp_path), module, type(model).__name__],
            env=dict(os.environ, KERAS_BACKEND=other),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["backend"] == other
        assert report["max_abs_error"] < 1e-4, report
