"""The built-in registry: entries, listing, local copies before the network."""

import ast
from pathlib import Path

import numpy as np
import pytest

import keras_rmz
from keras_rmz.models import ReconstructionModel, RecurrentMZ
from keras_rmz.presets import (
    PRESET_FILES,
    format_registry_entry,
    list_presets,
    load_preset,
    registry,
    registry_entry_for,
    save_preset,
    verify_preset,
)
from keras_rmz.presets.preset_io import resolve_class
from keras_rmz.presets.registry import validate_entry
from tests.presets.preset_testing import copy_preset, flip_byte, from_preset, outputs, presets_of, register, sha256_of

REAL_PRESETS = dict(registry.PRESETS)  # before the autouse fixture empties it


# --- the registry that ships -------------------------------------------------


@pytest.mark.parametrize("name", sorted(REAL_PRESETS) or [pytest.param(None, marks=pytest.mark.skip("no presets yet"))])
def test_shipped_entries_are_valid(name):
    info = validate_entry(name, REAL_PRESETS[name])
    resolve_class(info.class_name, info.module)  # a registered keras_rmz model class, found as the registry finds it


def test_shipped_weights_folders_verify():
    """Every folder in the repository's weights/ verifies; those with a
    registry entry match the entry's sha256 exactly."""
    root = Path(keras_rmz.__file__).resolve().parents[1] / "weights"
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    if not folders:
        pytest.skip("weights/ holds no preset yet")
    for folder in folders:
        verify_preset(folder)
        if folder.name in REAL_PRESETS:
            verify_preset(folder, dict(REAL_PRESETS[folder.name]["sha256"]))


# --- entries -----------------------------------------------------------------


def test_registry_entry_for_pins_every_file(preset_dir):
    commit = "1f" * 20
    entry = registry_entry_for(preset_dir, "owner/tiny", commit)
    assert entry["sha256"] == {name: sha256_of(preset_dir / name) for name in PRESET_FILES}
    assert entry["class_name"] == "keras_rmz>RecurrentMZ"
    assert entry["hub"] == "hf://owner/tiny" and entry["revision"] == commit
    assert entry["description"] == "tiny test preset"
    assert entry["metadata"]["num_inputs"] == 3 and entry["metadata"]["z_step_um"] == 0.1
    # What the helper prints is the same entry as Python source.
    source = format_registry_entry("tiny_beads", entry)
    assert ast.literal_eval("{" + source + "}") == {"tiny_beads": entry}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"revision": "main"}, "commit hash"),
        ({"hub": "owner/tiny"}, "hf://"),
        ({"hub": "hf://owner/tiny@abc"}, "without '@'"),
        ({"class_name": "keras>Sequential"}, "keras_rmz"),
        ({"sha256": {"config.json": "0" * 64}}, "sha256"),
        ({"extra": 1}, "unknown"),
    ],
)
def test_bad_entries_are_refused(preset_dir, change, message):
    entry = registry_entry_for(preset_dir, "hf://owner/tiny", "2" * 40)
    entry.update(change)
    with pytest.raises(ValueError, match=message):
        validate_entry("tiny", entry)


def test_registry_entry_for_refuses_a_corrupted_folder_or_branch_name(preset_dir):
    with pytest.raises(ValueError, match="commit hash"):
        registry_entry_for(preset_dir, "owner/tiny", "main")
    flip_byte(preset_dir / "model.weights.h5")
    with pytest.raises(ValueError, match="model.weights.h5.*sha256"):
        registry_entry_for(preset_dir, "owner/tiny", "3" * 40)


# --- listing -----------------------------------------------------------------


def test_list_presets_and_presets_per_class(monkeypatch, preset_dir, tmp_path):
    deep_z = pytest.importorskip("keras_rmz.models.deep_z.deep_z")
    deep_z_dir = save_preset(deep_z.DeepZ(base_filters=4, depth=1), tmp_path / "dz", metadata={"description": "dz"})
    register(monkeypatch, "tiny_beads", preset_dir)
    register(monkeypatch, "tiny_deep_z", deep_z_dir, hub="hf://owner/dz")
    listed = list_presets()
    assert [(p.name, p.class_short_name, p.description) for p in listed] == [
        ("tiny_beads", "RecurrentMZ", "tiny test preset"),
        ("tiny_deep_z", "DeepZ", "dz"),
    ]
    assert keras_rmz.list_presets() == listed
    assert presets_of(RecurrentMZ) == ("tiny_beads",)
    assert presets_of(deep_z.DeepZ) == ("tiny_deep_z",)
    assert presets_of(ReconstructionModel) == ("tiny_beads", "tiny_deep_z")
    # A registered class is refused before any download is tried.
    with pytest.raises(ValueError, match="DeepZ"):
        from_preset(RecurrentMZ, "tiny_deep_z")


def test_unknown_name_lists_the_presets(monkeypatch, preset_dir):
    with pytest.raises(ValueError, match="unknown preset 'nope'.*none yet"):
        load_preset("nope")
    register(monkeypatch, "tiny_beads", preset_dir)
    with pytest.raises(ValueError, match="unknown preset 'recurrent_mz_nope'.*tiny_beads"):
        from_preset(RecurrentMZ, "recurrent_mz_nope")


# --- local copies ------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Offline, with an empty cache: only a local copy can serve."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))


def test_a_builtin_name_loads_from_the_weights_dir_env(monkeypatch, tmp_path, preset_dir, tiny_model, inputs, offline):
    register(monkeypatch, "tiny_beads", preset_dir)
    weights = tmp_path / "my_weights"
    copy_preset(preset_dir, weights / "tiny_beads")
    monkeypatch.setenv("KERAS_RMZ_WEIGHTS_DIR", str(weights))
    model = from_preset(RecurrentMZ, "tiny_beads")
    np.testing.assert_allclose(outputs(model, inputs), outputs(tiny_model, inputs), atol=1e-6, rtol=0)
    assert registry.local_copy_status("tiny_beads")[:2] == ("verified", weights / "tiny_beads")


def test_a_builtin_name_loads_from_the_repository_weights(monkeypatch, preset_dir, tiny_model, inputs, offline):
    register(monkeypatch, "tiny_beads", preset_dir)
    copy_preset(preset_dir, registry.repository_weights_dir() / "tiny_beads")
    model = load_preset("tiny_beads")
    np.testing.assert_allclose(outputs(model, inputs), outputs(tiny_model, inputs), atol=1e-6, rtol=0)


def test_a_wheel_s_package_copy_serves_after_the_repository(monkeypatch, preset_dir, tiny_model, inputs, offline):
    register(monkeypatch, "tiny_beads", preset_dir)
    packaged = copy_preset(preset_dir, registry.package_weights_dir() / "tiny_beads")
    assert registry.local_copy_dirs() == [registry.repository_weights_dir(), packaged.parent]
    model = load_preset("tiny_beads")
    np.testing.assert_allclose(outputs(model, inputs), outputs(tiny_model, inputs), atol=1e-6, rtol=0)
    assert registry.local_copy_status("tiny_beads")[:2] == ("verified", packaged)
    # A copy in the repository's weights/ comes first; outside a checkout there is none.
    flip_byte(copy_preset(preset_dir, registry.repository_weights_dir() / "tiny_beads") / "model.weights.h5")
    assert registry.local_copy_status("tiny_beads")[0] == "corrupt"
    monkeypatch.setattr(registry, "repository_weights_dir", lambda: None)
    assert registry.local_copy_dirs() == [packaged.parent]
    assert registry.local_copy_status("tiny_beads")[:2] == ("verified", packaged)


def test_the_env_dir_comes_before_the_repository(monkeypatch, tmp_path, preset_dir, offline):
    register(monkeypatch, "tiny_beads", preset_dir)
    corrupt = copy_preset(preset_dir, registry.repository_weights_dir() / "tiny_beads")
    flip_byte(corrupt / "model.weights.h5")
    good = copy_preset(preset_dir, tmp_path / "env_weights" / "tiny_beads")
    monkeypatch.setenv("KERAS_RMZ_WEIGHTS_DIR", str(good.parent))
    assert type(load_preset("tiny_beads")) is RecurrentMZ
    # Without the env dir the corrupted repository copy is found, and refused.
    monkeypatch.delenv("KERAS_RMZ_WEIGHTS_DIR")
    with pytest.raises(ValueError, match=r"model.weights.h5.*sha256"):
        load_preset("tiny_beads")
    assert registry.local_copy_status("tiny_beads")[0] == "corrupt"


def test_a_local_copy_is_held_to_the_registry_not_its_own_metadata(
    monkeypatch, tmp_path, preset_dir, tiny_model, offline
):
    """A self-consistent folder with other weights is not the registered preset."""
    register(monkeypatch, "tiny_beads", preset_dir)
    tiny_model.set_weights([w * 2 for w in tiny_model.get_weights()])
    impostor = save_preset(tiny_model, tmp_path / "w" / "tiny_beads")
    verify_preset(impostor)  # consistent with itself
    monkeypatch.setenv("KERAS_RMZ_WEIGHTS_DIR", str(impostor.parent))
    with pytest.raises(ValueError, match="sha256"):
        load_preset("tiny_beads")


def test_offline_without_local_copy_or_cache_says_how_to_fix_it(monkeypatch, preset_dir, offline):
    register(monkeypatch, "tiny_beads", preset_dir)
    with pytest.raises(FileNotFoundError) as error:
        load_preset("tiny_beads")
    message = str(error.value)
    assert "no local copy" in message and "HF_HUB_OFFLINE" in message and "KERAS_RMZ_WEIGHTS_DIR" in message


# --- presets that ship only in weights/ (not on the Hub) ---------------------


def test_a_repository_only_entry_has_no_hub_and_loads_from_weights(monkeypatch, preset_dir, tiny_model, inputs):
    entry = register(monkeypatch, "tiny_beads", preset_dir, hub=None, revision=None)
    assert entry["hub"] is None and entry["revision"] is None
    assert ast.literal_eval("{" + format_registry_entry("tiny_beads", entry) + "}") == {"tiny_beads": entry}
    info = registry.get_preset("tiny_beads")
    assert info.hub is None and info.handle is None
    copy_preset(preset_dir, registry.repository_weights_dir() / "tiny_beads")
    # force_download has nothing to download from: the verified copy serves.
    model = load_preset("tiny_beads", force_download=True)
    np.testing.assert_allclose(outputs(model, inputs), outputs(tiny_model, inputs), atol=1e-6, rtol=0)


def test_a_repository_only_entry_without_its_folder_says_where_it_ships(monkeypatch, preset_dir):
    register(monkeypatch, "tiny_beads", preset_dir, hub=None, revision=None)
    with pytest.raises(FileNotFoundError) as error:
        load_preset("tiny_beads")
    message = str(error.value)
    assert "not published on the Hub" in message and "weights/tiny_beads" in message
    assert "KERAS_RMZ_WEIGHTS_DIR" in message


@pytest.mark.parametrize("hub, revision", [(None, "3" * 40), ("owner/tiny", None)])
def test_hub_and_revision_come_together(preset_dir, hub, revision):
    with pytest.raises(ValueError, match="revision"):
        registry_entry_for(preset_dir, hub, revision)
    entry = registry_entry_for(preset_dir, "owner/tiny", "3" * 40)
    entry.update(hub=None if hub is None else entry["hub"], revision=revision)
    with pytest.raises(ValueError, match="revision"):
        validate_entry("tiny_beads", entry)


@pytest.mark.run_once  # the store's imports do not depend on the backend
def test_the_store_finds_a_presets_class_without_importing_the_models_itself(tmp_path):
    """The preset store imports no model class: a built-in preset loads in a
    fresh process through the module its config.json names (as keras.saving
    does)."""
    import os
    import subprocess
    import sys

    name = "recurrent_mz_beads_m3"
    if name not in REAL_PRESETS:
        pytest.skip(f"{name} is not a built-in preset")
    code = (
        "import sys\n"
        "from keras_rmz.presets import load_preset\n"
        "assert 'keras_rmz.models.recurrent_mz.recurrent_mz' not in sys.modules, 'a model class was imported'\n"
        f"model = load_preset({name!r})\n"
        "print(type(model).__name__)\n"
    )
    root = Path(keras_rmz.__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "RecurrentMZ"


@pytest.mark.parametrize("published", [True, False])
def test_a_corrupted_builtin_copy_says_how_to_get_a_good_one(monkeypatch, tmp_path, preset_dir, offline, published):
    """Delete-and-download advice only where the registry has a Hub
    location; a preset that ships only in the repository says to restore it."""
    if published:
        register(monkeypatch, "tiny_beads", preset_dir)
    else:
        register(monkeypatch, "tiny_beads", preset_dir, hub=None, revision=None)
    corrupt = copy_preset(preset_dir, tmp_path / "w" / "tiny_beads")
    flip_byte(corrupt / "model.weights.h5")
    monkeypatch.setenv("KERAS_RMZ_WEIGHTS_DIR", str(corrupt.parent))
    with pytest.raises(ValueError, match=r"model.weights.h5.*sha256") as error:
        load_preset("tiny_beads")
    message = str(error.value)
    assert ("delete it to download from the Hub" in message) is published
    assert ("not published on the Hub" in message and "git checkout -- weights/tiny_beads" in message) is not published
