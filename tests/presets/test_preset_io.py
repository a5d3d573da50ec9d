"""Preset folders: what save_to_preset writes, that loading gives the same
model, and that loading refuses corrupted, unsafe or wrong-class presets."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_rmz.models import ReconstructionModel, RecurrentMZ
from keras_rmz.presets import PRESET_FILES, PresetMixin, load_preset, save_preset, verify_preset
from keras_rmz.version import __version__
from tests.presets.preset_testing import (
    TINY_METADATA,
    assert_same_weights,
    flip_byte,
    from_preset,
    outputs,
    rewrite_json,
    sha256_of,
)


def _leftovers(parent, keep):
    return sorted(p.name for p in parent.iterdir() if p.name not in keep)


# --- saving ----------------------------------------------------------------


def test_save_writes_the_four_files_with_their_sha256(preset_dir, tiny_model, backend):
    assert sorted(p.name for p in preset_dir.iterdir()) == sorted(PRESET_FILES)
    metadata = json.loads((preset_dir / "metadata.json").read_text())
    assert metadata["sha256"] == {
        name: sha256_of(preset_dir / name) for name in ("config.json", "model.weights.h5", "README.md")
    }
    assert metadata["class_name"] == "keras_rmz>RecurrentMZ"
    assert metadata["keras_version"] == keras.__version__
    assert metadata["keras_rmz_version"] == __version__
    assert metadata["backend"] == backend
    assert metadata["num_parameters"] == tiny_model.count_params()
    # What the caller gave, numpy values made JSON numbers.
    assert metadata["num_inputs"] == 3 and metadata["z_step_um"] == 0.1
    assert metadata["normalization"] == {"shift": 100.0, "scale": 900.0}
    # Fields nobody gave are present and null: one schema for every preset.
    assert "optics" in metadata and metadata["optics"] is None

    config = json.loads((preset_dir / "config.json").read_text())
    assert config["registered_name"] == "keras_rmz>RecurrentMZ"
    assert config["config"] == json.loads(json.dumps(tiny_model.get_config()))
    assert "compile_config" not in config

    card = (preset_dir / "README.md").read_text()
    assert card.startswith("---\n") and "# tiny_preset" in card and "tiny test preset" in card
    assert "| num_inputs | 3 |" in card


def test_save_writes_a_given_model_card(tmp_path, tiny_model):
    text = "# My beads model\n\nTrained on simulated beads.\n"
    folder = save_preset(tiny_model, tmp_path / "a", model_card=text)
    assert (folder / "README.md").read_text() == text
    card_file = tmp_path / "card.md"
    card_file.write_text("from a file\n")
    folder = save_preset(tiny_model, tmp_path / "b", model_card=card_file)
    assert (folder / "README.md").read_text() == "from a file\n"
    with pytest.raises(TypeError, match="model_card"):
        save_preset(tiny_model, tmp_path / "c", model_card=3)


def test_save_is_atomic_when_writing_fails(tmp_path, tiny_model, monkeypatch):
    def fail(path, *args, **kwargs):
        with open(path, "wb") as file:
            file.write(b"half a weights file")
        raise OSError("disk full")

    monkeypatch.setattr(tiny_model, "save_weights", fail)
    with pytest.raises(OSError, match="disk full"):
        save_preset(tiny_model, tmp_path / "preset")
    assert _leftovers(tmp_path, keep={"repository_weights", "hf_home"}) == []


def test_failed_overwrite_keeps_the_old_preset(preset_dir, tiny_model, monkeypatch):
    before = {name: sha256_of(preset_dir / name) for name in PRESET_FILES}
    monkeypatch.setattr(tiny_model, "save_weights", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_preset(tiny_model, preset_dir, metadata={"num_inputs": 5})
    assert {name: sha256_of(preset_dir / name) for name in PRESET_FILES} == before
    assert _leftovers(preset_dir.parent, keep={"tiny_preset", "repository_weights"}) == []


def test_save_replaces_an_existing_preset(preset_dir, tiny_model):
    save_preset(tiny_model, preset_dir, metadata={"num_inputs": 2})
    assert sorted(p.name for p in preset_dir.iterdir()) == sorted(PRESET_FILES)
    assert verify_preset(preset_dir)["num_inputs"] == 2
    assert _leftovers(preset_dir.parent, keep={"tiny_preset", "repository_weights"}) == []


def test_save_refuses_a_folder_holding_other_files(tmp_path, tiny_model):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="notes.txt"):
        save_preset(tiny_model, folder)
    assert (folder / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_save_refuses_reserved_or_non_json_metadata(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="sha256"):
        save_preset(tiny_model, tmp_path / "a", metadata={"sha256": {}})
    with pytest.raises(TypeError, match="JSON"):
        save_preset(tiny_model, tmp_path / "b", metadata={"optics": object()})
    assert not (tmp_path / "b").exists()


def test_save_refuses_a_model_that_is_not_a_keras_rmz_class(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="keras_rmz"):
        save_preset(model, tmp_path / "p")
    assert not (tmp_path / "p").exists()


# --- loading ---------------------------------------------------------------


def test_load_gives_the_same_model(preset_dir, tiny_model, inputs):
    model = load_preset(str(preset_dir))
    assert type(model) is RecurrentMZ
    np.testing.assert_allclose(outputs(model, inputs), outputs(tiny_model, inputs), atol=1e-6, rtol=0)
    assert_same_weights(load_preset(preset_dir), tiny_model)


def test_from_preset_and_save_to_preset_through_the_mixin(tmp_path, tiny_model, inputs):
    folder = PresetMixin.save_to_preset(tiny_model, tmp_path / "m", metadata={"num_inputs": 3})
    model = from_preset(RecurrentMZ, str(folder), name="renamed")
    assert model.name == "renamed"
    np.testing.assert_allclose(outputs(model, inputs), outputs(tiny_model, inputs), atol=1e-6, rtol=0)
    assert type(from_preset(ReconstructionModel, folder)) is RecurrentMZ


def test_from_preset_refuses_another_model_class(tmp_path):
    deep_z = pytest.importorskip("keras_rmz.models.deep_z.deep_z")
    folder = save_preset(deep_z.DeepZ(base_filters=4, depth=1), tmp_path / "deep_z_preset")
    with pytest.raises(ValueError, match=r"DeepZ.*not a RecurrentMZ"):
        from_preset(RecurrentMZ, folder)
    assert type(load_preset(folder)) is deep_z.DeepZ
    assert type(from_preset(deep_z.DeepZ, folder)) is deep_z.DeepZ
    assert type(from_preset(ReconstructionModel, folder)) is deep_z.DeepZ


@pytest.mark.parametrize(
    "module, class_name, config",
    [
        ("keras_rmz.models.deep_z.deep_z", "DeepZ", {"base_filters": 4, "depth": 1}),
        ("keras_rmz.models.unet3d.unet3d", "UNet3D", {"num_inputs": 2, "base_filters": 2, "depth": 1}),
        ("keras_rmz.models.discriminator", "Discriminator", {"base_filters": 2, "num_blocks": 1, "dense_units": 2}),
    ],
)
def test_every_model_class_round_trips(tmp_path, module, class_name, config):
    cls = getattr(pytest.importorskip(module), class_name)
    model = cls(**config)
    rng = np.random.default_rng(0)
    model.set_weights([rng.random(w.shape).astype(w.dtype) for w in model.get_weights()])
    folder = save_preset(model, tmp_path / class_name.lower())
    assert json.loads((folder / "metadata.json").read_text())["class_name"] == f"keras_rmz>{class_name}"
    assert_same_weights(load_preset(folder), model)
    assert_same_weights(from_preset(cls, folder), model)


@pytest.mark.parametrize("filename", ["model.weights.h5", "config.json", "README.md"])
def test_a_corrupted_file_is_refused_by_name(preset_dir, filename):
    flip_byte(preset_dir / filename, offset=len((preset_dir / filename).read_bytes()) // 2)
    with pytest.raises(ValueError, match=rf"{filename}.*sha256"):
        load_preset(preset_dir)
    with pytest.raises(ValueError, match=rf"{filename}.*sha256"):
        verify_preset(preset_dir)


def test_a_missing_file_is_named(preset_dir):
    (preset_dir / "README.md").unlink()
    with pytest.raises(FileNotFoundError, match="README.md"):
        load_preset(preset_dir)


def test_missing_folder_and_bad_handles(tmp_path):
    with pytest.raises(FileNotFoundError, match="no preset folder"):
        load_preset(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no preset folder"):
        load_preset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="handle"):
        load_preset(3)


def _deserialize_spy(monkeypatch):
    calls = []
    real = keras.saving.deserialize_keras_object

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(keras.saving, "deserialize_keras_object", spy)
    return calls


@keras.saving.register_keras_serializable(package="keras_rmz")
class Impostor(keras.Model):
    """Registered under the keras_rmz package, but not keras_rmz code."""


@pytest.mark.parametrize(
    "names",
    [
        {"class_name": "Sequential", "module": "keras", "registered_name": None},
        {"class_name": "Functional", "module": "keras.src.models.functional", "registered_name": "Functional"},
        {"registered_name": "keras>Sequential"},
        {"registered_name": "os>system"},
        {"registered_name": "keras_rmz>NoSuchModel"},
        {"registered_name": "keras_rmz>Impostor"},
        {"registered_name": "keras_rmz>EncoderBlock", "module": "keras_rmz.layers.encoder_block"},
    ],
    ids=["keras-builtin", "functional", "keras-prefix", "os", "unknown", "impostor", "layer-not-model"],
)
def test_a_config_naming_another_class_is_refused_before_deserializing(preset_dir, monkeypatch, names):
    rewrite_json(preset_dir, "config.json", lambda config: config.update(names))
    # The metadata must not be what refuses it.
    metadata = json.loads((preset_dir / "metadata.json").read_text())
    metadata["class_name"] = None
    (preset_dir / "metadata.json").write_text(json.dumps(metadata))
    calls = _deserialize_spy(monkeypatch)
    with pytest.raises(ValueError, match="keras_rmz"):
        load_preset(preset_dir)
    assert calls == []


def test_metadata_cannot_name_other_files(preset_dir, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of a preset")
    metadata = json.loads((preset_dir / "metadata.json").read_text())
    metadata["sha256"]["../secret.txt"] = sha256_of(secret)
    (preset_dir / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="only config.json, model.weights.h5, README.md"):
        load_preset(preset_dir)


def test_metadata_without_sha256_is_refused(preset_dir):
    rewrite_json(preset_dir, "metadata.json", lambda metadata: metadata.pop("sha256"))
    with pytest.raises(ValueError, match="sha256"):
        load_preset(preset_dir)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_a_symlink_leaving_the_folder_is_refused(preset_dir, tmp_path):
    outside = tmp_path / "card_outside.md"
    outside.write_bytes((preset_dir / "README.md").read_bytes())  # same bytes: the sha256 passes
    (preset_dir / "README.md").unlink()
    os.symlink(outside, preset_dir / "README.md")
    with pytest.raises(ValueError, match="outside"):
        load_preset(preset_dir)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_a_symlink_inside_the_folder_is_fine(preset_dir, tiny_model, inputs):
    (preset_dir / "cards").mkdir()
    os.replace(preset_dir / "README.md", preset_dir / "cards" / "card.md")
    os.symlink("cards/card.md", preset_dir / "README.md")
    np.testing.assert_allclose(outputs(load_preset(preset_dir), inputs), outputs(tiny_model, inputs), atol=1e-6)


def test_verify_returns_the_metadata(preset_dir):
    metadata = verify_preset(preset_dir)
    assert metadata["description"] == TINY_METADATA["description"]
    assert metadata["input_spacing_um"] == 1.0


def test_metadata_and_config_must_agree_on_the_class(preset_dir):
    rewrite_json(preset_dir, "metadata.json", lambda metadata: metadata.update(class_name="keras_rmz>DeepZ"))
    with pytest.raises(ValueError, match="DeepZ"):
        verify_preset(preset_dir)


def test_checking_a_folder_needs_no_backend(preset_dir):
    """`keras-rmz presets verify` must not pay for importing keras."""
    code = (
        "import sys, keras_rmz.presets as p; "
        f"p.verify_preset({str(preset_dir)!r}); "
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.large
@pytest.mark.cross_backend
def test_a_preset_saved_on_one_backend_loads_on_another(preset_dir, tiny_model, inputs, backend, tmp_path):
    other = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}[backend]
    np.savez(tmp_path / "inputs.npz", **inputs)
    code = (
        "import sys, numpy as np, keras; "
        f"sys.path.insert(0, {os.getcwd()!r}); "
        "from keras_rmz.presets import load_preset; "
        f"batch = dict(np.load({str(tmp_path / 'inputs.npz')!r})); "
        f"model = load_preset({str(preset_dir)!r}); "
        f"np.save({str(tmp_path / 'out.npy')!r}, keras.ops.convert_to_numpy(model(batch, training=False))); "
        "print(keras.backend.backend())"
    )
    env = dict(os.environ, KERAS_BACKEND=other)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == other
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), outputs(tiny_model, inputs), atol=1e-5, rtol=0)


@pytest.mark.parametrize("change, words", [
    ({"base_filter": 8}, ["'base_filter'", "does not take", "base_filters"]),
    ({"base_filters": 1_000_000}, ["base_filters=1e+06", "GiB of float32 weights", "GiB of memory"]),
    ({"base_filters": 1e6}, ["base_filters=1e+06", "GiB of float32 weights", "GiB of memory"]),
])  # fmt: skip
def test_a_config_with_unknown_keys_or_an_impossible_size_is_refused_before_any_layer(
    monkeypatch, preset_dir, change, words
):
    """A misspelt or foreign constructor argument was dropped without a word,
    and base_filters=1e6 ended in a backend's out-of-memory traceback; both
    are now a ValueError naming the key, before the model is made."""
    rewrite_json(preset_dir, "config.json", lambda config: config["config"].update(change))
    made = []
    monkeypatch.setattr(keras.saving, "deserialize_keras_object", lambda *a, **k: made.append(a) or pytest.fail())
    with pytest.raises(ValueError) as error:
        load_preset(preset_dir)
    assert all(word in str(error.value) for word in words), str(error.value)
    assert not made


def _dead_pid():
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def test_what_a_killed_save_left_is_removed_or_put_back(tmp_path, tiny_model, inputs):
    """A save killed while writing leaves ``.<name>.partial-<pid>-*``; one
    killed between its two renames leaves the previous preset in
    ``.<name>.old-<pid>-*`` and no folder. The next save of that folder
    removes the first and puts the second back before replacing it; a live
    process's folders are left alone."""
    from keras_rmz.presets.preset_io import _recover_interrupted_save

    folder = save_preset(tiny_model, tmp_path / "p")
    dead = _dead_pid()
    partial = tmp_path / f".p.partial-{dead}-x1"
    partial.mkdir()
    (partial / "config.json").write_text("{")
    live = tmp_path / f".p.partial-{os.getppid()}-x2"
    live.mkdir()
    save_preset(tiny_model, folder)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.lstrip(".").startswith("p")) == [live.name, "p"]

    folder.rename(tmp_path / f".p.old-{dead}-x3")
    _recover_interrupted_save(folder)
    np.testing.assert_allclose(outputs(load_preset(folder), inputs), outputs(tiny_model, inputs), atol=1e-6, rtol=0)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.lstrip(".").startswith("p")) == [live.name, "p"]
