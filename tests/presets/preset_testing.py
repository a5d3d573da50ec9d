"""Helpers shared by the preset tests."""

import hashlib
import json
import shutil

import keras
import numpy as np

from keras_rmz.presets import PresetMixin, registry

TINY_METADATA = {
    "description": "tiny test preset",
    "modality": "widefield -> widefield",
    "sample": "beads (50 nm)",
    "pixel_um": 0.1,
    "z_step_um": 0.1,
    "num_inputs": 3,
    "input_spacing_um": 1.0,
    "normalization": {"shift": np.float32(100.0), "scale": np.float64(900.0)},
    "training": {"steps": 0},
}


def copy_preset(folder, destination):
    shutil.copytree(folder, destination)
    return destination


def from_preset(cls, handle, **kwargs):
    """``cls.from_preset``; until the model classes mix in PresetMixin, the
    mixin's classmethod is called with ``cls`` (the same code)."""
    if issubclass(cls, PresetMixin):
        return cls.from_preset(handle, **kwargs)
    return PresetMixin.__dict__["from_preset"].__func__(cls, handle, **kwargs)


def presets_of(cls):
    """``cls.presets`` (see ``from_preset``)."""
    if issubclass(cls, PresetMixin):
        return cls.presets
    return PresetMixin.__dict__["presets"].__get__(None, cls)


def flip_byte(path, offset=-100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def sha256_of(path):
    """Independent of the code under test: hashlib over the whole file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_json(folder, filename, mutate):
    """Changes config.json or README.md-free JSON in a preset and re-signs it:
    the metadata's sha256 table is updated, so the preset stays
    self-consistent (what a malicious preset would look like)."""
    path = folder / filename
    value = json.loads(path.read_text())
    mutate(value)
    path.write_text(json.dumps(value))
    metadata = json.loads((folder / "metadata.json").read_text())
    if filename != "metadata.json":
        metadata["sha256"][filename] = sha256_of(path)
        (folder / "metadata.json").write_text(json.dumps(metadata))


def assert_same_weights(model, reference):
    """Same class, config and weights (cheaper than comparing outputs)."""
    assert type(model) is type(reference) and model.get_config() == reference.get_config()
    actual, expected = model.get_weights(), reference.get_weights()
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected):
        np.testing.assert_array_equal(a, b)


def outputs(model, inputs):
    return keras.ops.convert_to_numpy(model(inputs, training=False))


def register(monkeypatch, name, folder, hub="hf://owner/tiny", revision="0" * 40, description=None):
    """Adds a built-in registry entry for ``folder`` (pinned to ``revision``)."""
    entry = registry.registry_entry_for(folder, hub, revision, description=description)
    monkeypatch.setitem(registry.PRESETS, name, entry)
    return entry
