"""The built-in presets: names a user can load without knowing where the
weights live.

Adding a preset is one entry in ``PRESETS``. Make the entry from a finished
preset folder, once it is on the Hub, with

```python
from keras_rmz.presets import registry_entry_for, format_registry_entry
entry = registry_entry_for("weights/recurrent_mz_beads_m3",
                           "hf://keras-rmz/recurrent_mz_beads_m3", "<40-hex commit>")
print(format_registry_entry("recurrent_mz_beads_m3", entry))
```

or ``keras-rmz presets entry weights/recurrent_mz_beads_m3 --hub ... --revision ...``,
and paste what it prints into ``PRESETS``.

An entry holds:

- ``class_name``: the registered class, ``"keras_rmz>RecurrentMZ"``;
- ``description``: one line;
- ``hub``: ``"hf://owner/repo"``, the Hub repo that holds the folder, or
  ``None`` for a preset that ships only in the repository's ``weights/``
  (not published on the Hub yet);
- ``revision``: the commit (40 hex digits) the entry is pinned to (``None``
  exactly when ``hub`` is);
- ``sha256``: the sha256 of each of the four files;
- ``metadata``: a summary (modality, sample, pixel size, z-step, M, Δz).

A verified local copy in ``$KERAS_RMZ_WEIGHTS_DIR/<name>/`` or in the
repository's ``weights/<name>/`` serves before the network.
"""

import dataclasses
import json
import os
import re
import types
from pathlib import Path

from keras_rmz.presets.hub import parse_hf_handle
from keras_rmz.presets.preset_io import (
    CONFIG_FILE,
    PRESET_FILES,
    config_class_name,
    preset_file,
    read_preset_json,
    resolve_class,
    sha256_file,
    verify_preset,
)

WEIGHTS_DIR_ENV = "KERAS_RMZ_WEIGHTS_DIR"

# name -> entry (see the module docstring). These presets ship in the
# repository's weights/ (hub None: not published on the Hub yet); made with
# examples/presets/publish_preset.py and `keras-rmz presets entry`.
PRESETS = {
    "recurrent_mz_beads_m3": {
        "class_name": "keras_rmz>RecurrentMZ",
        "description": "Recurrent-MZ (M = 3, Δz = 3 µm) for wide-field stacks of sub-resolution beads, 63x/1.4 NA oil, 615 nm, 0.1 µm pixels; trained on simulated stacks on a CPU, fine-tuned with the paper's adversarial loss",
        "hub": None,
        "revision": None,
        "sha256": {
            "config.json": "ca04591855d2865a64b143495b1fb85b445feef40348cdb0ab1edc0d4d109b0d",
            "model.weights.h5": "eac7e3ad1e8d1db9f7e527a23ff256f5d8ac1a3443e0e9a2bec254bf9d741900",
            "metadata.json": "37174e5438c2cd0fd9665cc97dc0eaf03d66c9c19f930715958004f864508a18",
            "README.md": "055c601d99784124ed502d7fc0d0b1d46a3d19a548025a16c93b6a79c4f06c16",
        },
        "metadata": {
            "modality": "widefield -> widefield (noise-free)",
            "sample": "50 nm fluorescent beads (simulated)",
            "pixel_um": 0.1,
            "z_step_um": 0.09999999999999998,
            "num_inputs": 3,
            "input_spacing_um": 3.0,
            "output_range_um": [-7.5, 7.5],
            "license": "apache-2.0",
        },
    },
    "recurrent_mz_nuclei_m2": {
        "class_name": "keras_rmz>RecurrentMZ",
        "description": "Recurrent-MZ (M = 2, Δz = 6 µm) for wide-field stacks of neuron nuclei (GFP), 63x/1.4 NA oil, 0.1 µm pixels, 0.2 µm z steps; trained on simulated stacks on a CPU",
        "hub": None,
        "revision": None,
        "sha256": {
            "config.json": "ca04591855d2865a64b143495b1fb85b445feef40348cdb0ab1edc0d4d109b0d",
            "model.weights.h5": "a39824f44a16126d8576a2655541431eb31399375a51fbcb5d7a9792a0f9fada",
            "metadata.json": "44d6c75a7fbd943a1e3dcabfa78b11ba1e1a633cfb7e15b352aa636e870ef211",
            "README.md": "6ba18352ab8126fde2ce0ae35e4b07e4f1fb7c0da4f543d91e0aa6efa980a13f",
        },
        "metadata": {
            "modality": "widefield -> widefield (noise-free)",
            "sample": "C. elegans neuron nuclei (simulated)",
            "pixel_um": 0.1,
            "z_step_um": 0.19999999999999996,
            "num_inputs": 2,
            "input_spacing_um": 6.0,
            "output_range_um": [-9.0, 9.0],
            "license": "apache-2.0",
        },
    },
    "recurrent_mz_plus_nuclei_m3": {
        "class_name": "keras_rmz>RecurrentMZPlus",
        "description": "Recurrent-MZ+ (M = 3, Δz = 2 µm) from wide-field planes to the confocal stack, neuron nuclei (GFP), 63x/1.4 NA oil, 0.1 µm pixels; trained on simulated pairs on a CPU",
        "hub": None,
        "revision": None,
        "sha256": {
            "config.json": "243a7449da1de55ae6de8fbaffa4b9b4b4bbd63d33bff582adbea0cb8b37c1f4",
            "model.weights.h5": "320e6427ee211a2577a9ece34c234e0cae534c9a25dc950b006651164541023d",
            "metadata.json": "e5bdcf99a3780875df1aea1efde17b12f4176dc5ee60644bd5f75f6d9161381a",
            "README.md": "66b75fdc9d1483561fe7a5682f53f83351dbb1ae5b1be8ac81d48a8318c9a129",
        },
        "metadata": {
            "modality": "widefield -> confocal",
            "sample": "C. elegans neuron nuclei (simulated)",
            "pixel_um": 0.1,
            "z_step_um": 0.19999999999999996,
            "num_inputs": 3,
            "input_spacing_um": 2.0,
            "output_range_um": [-5.0, 5.0],
            "license": "apache-2.0",
        },
    },
    "deep_z_beads": {
        "class_name": "keras_rmz>DeepZ",
        "description": "Deep-Z baseline (one plane + DPM, outputs within ±1.5 µm) for wide-field stacks of sub-resolution beads, 63x/1.4 NA oil, 0.1 µm pixels; trained on simulated stacks on a CPU",
        "hub": None,
        "revision": None,
        "sha256": {
            "config.json": "6fc5b5e304ea5e8e3cabe1962351f0d7af250c441df45273b846f83e1cd23a12",
            "model.weights.h5": "9b2b97bf69dad21216301cd4eb23ee3057b21f561695063d8629bd69fb7dd9cd",
            "metadata.json": "3247a8d787aed9b28aa74e78b98a27df98f4de30155217c3d874c31589c3ba74",
            "README.md": "ed43d353c8e38ef212008ea6430e40b31b61cef42715de96e0ec81b064a8880f",
        },
        "metadata": {
            "modality": "widefield -> widefield (noise-free)",
            "sample": "50 nm fluorescent beads (simulated)",
            "pixel_um": 0.1,
            "z_step_um": 0.09999999999999998,
            "num_inputs": 1,
            "output_range_um": [-1.5, 1.5],
            "license": "apache-2.0",
        },
    },
    "unet3d_beads": {
        "class_name": "keras_rmz>UNet3D",
        "description": "3D U-Net baseline (M = 3, Δz = 3 µm) for wide-field stacks of sub-resolution beads, 63x/1.4 NA oil, 0.1 µm pixels; trained on simulated stacks on a CPU",
        "hub": None,
        "revision": None,
        "sha256": {
            "config.json": "541388289880c109671fddf0279f467d6df65ac5008bdc79cd5f69392116de04",
            "model.weights.h5": "6ebf9110273b5add1db6e3e38e12a78c27103a5337c879524f3de7d2bbf5bfbb",
            "metadata.json": "699c7017e80c3520ec994dc145318ee926e498ff64ea9577702975f06ad86024",
            "README.md": "f893f95b388f1c9e75305d73a404d75ef3e8ac98a78af0f4b2710b7646ad345c",
        },
        "metadata": {
            "modality": "widefield -> widefield (noise-free)",
            "sample": "50 nm fluorescent beads (simulated)",
            "pixel_um": 0.1,
            "z_step_um": 0.09999999999999998,
            "num_inputs": 3,
            "input_spacing_um": 3.0,
            "output_range_um": [-7.5, 7.5],
            "license": "apache-2.0",
        },
    },
}

# Metadata keys copied into an entry's summary.
SUMMARY_KEYS = (
    "modality",
    "sample",
    "pixel_um",
    "z_step_um",
    "num_inputs",
    "input_spacing_um",
    "output_range_um",
    "license",
)
ENTRY_KEYS = ("class_name", "description", "hub", "revision", "sha256", "metadata")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class PresetInfo:
    """One built-in preset, as ``list_presets`` returns it.

    Attributes:
        name: the preset's name (``from_preset(name)``).
        class_name: the registered class, ``"keras_rmz>RecurrentMZ"``.
        description: one line.
        hub: ``"hf://owner/repo"``, or None when the preset ships only in
            the repository's ``weights/`` (not on the Hub).
        revision: the pinned commit (None when ``hub`` is None).
        sha256: mapping file name -> sha256, for the four files.
        metadata: mapping, the metadata summary.
    """

    name: str
    class_name: str
    description: str
    hub: object
    revision: object
    sha256: types.MappingProxyType
    metadata: types.MappingProxyType

    @property
    def class_short_name(self):
        """The class name without the ``keras_rmz>`` package prefix."""
        return self.class_name.split(">", 1)[-1]

    @property
    def handle(self):
        """``hf://owner/repo@revision``, the exact Hub handle of the entry
        (None for a preset that is not on the Hub)."""
        if self.hub is None:
            return None
        return f"{self.hub}@{self.revision}"


def validate_entry(name, entry):
    """Checks one registry entry and returns it as a ``PresetInfo``.

    Raises:
        ValueError: saying which field is wrong and what is accepted.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"preset names are lowercase letters, digits and '_'; got {name!r}")
    if not isinstance(entry, dict):
        raise ValueError(f"preset {name!r}: an entry is a dict with keys {ENTRY_KEYS}; got {type(entry).__name__}")
    missing = [key for key in ENTRY_KEYS if key not in entry]
    extra = sorted(set(entry) - set(ENTRY_KEYS))
    if missing or extra:
        raise ValueError(
            f"preset {name!r}: an entry has exactly the keys {ENTRY_KEYS}; missing {missing}, unknown {extra}"
        )
    config_class_name({"registered_name": entry["class_name"]}, where=f"the registry entry {name!r}")
    if entry["hub"] is None:
        # Ships only in the repository's weights/ folder.
        hub = None
        if entry["revision"] is not None:
            raise ValueError(f"preset {name!r}: 'revision' must be None when 'hub' is None; got {entry['revision']!r}")
    else:
        repo_id, revision = parse_hf_handle(entry["hub"])
        if revision is not None:
            raise ValueError(f"preset {name!r}: 'hub' is hf://owner/repo without '@'; the commit goes in 'revision'")
        if not isinstance(entry["revision"], str) or not _COMMIT_RE.match(entry["revision"]):
            raise ValueError(
                f"preset {name!r}: 'revision' must be a commit hash (40 hex digits); got {entry['revision']!r}"
            )
        hub = f"hf://{repo_id}"
    hashes = entry["sha256"]
    if not isinstance(hashes, dict) or sorted(hashes) != sorted(PRESET_FILES):
        raise ValueError(f"preset {name!r}: 'sha256' maps each of {PRESET_FILES} to its sha256")
    for filename, value in hashes.items():
        if not isinstance(value, str) or not _SHA256_RE.match(value):
            raise ValueError(f"preset {name!r}: sha256 of {filename} must be 64 lowercase hex digits; got {value!r}")
    if not isinstance(entry["description"], str) or not isinstance(entry["metadata"], dict):
        raise ValueError(f"preset {name!r}: 'description' is a str and 'metadata' a dict")
    return PresetInfo(
        name=name,
        class_name=entry["class_name"],
        description=entry["description"],
        hub=hub,
        revision=entry["revision"],
        sha256=types.MappingProxyType(dict(hashes)),
        metadata=types.MappingProxyType(dict(entry["metadata"])),
    )


def list_presets(model_class=None):
    """Lists the built-in presets.

    Args:
        model_class: optional model class; only presets of this class (or a
            subclass) are listed.

    Returns:
        list of ``PresetInfo`` (name, class_name, description, hub,
        revision, sha256, metadata), sorted by name.

    Example:

    ```python
    for preset in keras_rmz.list_presets():
        print(preset.name, preset.class_short_name, preset.description)
    ```
    """
    presets = [validate_entry(name, entry) for name, entry in sorted(PRESETS.items())]
    if model_class is not None:
        presets = [p for p in presets if issubclass(resolve_class(p.class_name), model_class)]
    return presets


def get_preset(name):
    """Returns the ``PresetInfo`` of a built-in preset.

    Raises:
        ValueError: for an unknown name, listing the presets that exist.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}. {available_presets_message()}")
    return validate_entry(name, PRESETS[name])


def pinned_sha256(repo_id, commit):
    """The registry's sha256 of the four files when ``commit`` of the Hub
    repo ``repo_id`` is a registered preset, else None."""
    for info in list_presets():
        if info.hub is not None and info.hub == f"hf://{repo_id}" and info.revision == commit:
            return dict(info.sha256)
    return None


def available_presets_message():
    """One sentence naming the built-in presets and the handle forms."""
    names = sorted(PRESETS)
    listed = ", ".join(names) if names else "none yet (no trained weights are published)"
    return (
        f"Built-in presets: {listed}. A handle is a built-in name, a preset folder, or "
        "hf://owner/repo[@revision]."
    )


def repository_weights_dir():
    """The repository's ``weights/`` folder (beside the ``keras_rmz`` package)."""
    import keras_rmz

    return Path(keras_rmz.__file__).resolve().parents[1] / "weights"


def local_copy_dirs():
    """Folders searched for local copies, in order: ``$KERAS_RMZ_WEIGHTS_DIR``
    (when set), then the repository's ``weights/``."""
    dirs = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser())
    dirs.append(repository_weights_dir())
    return dirs


def find_local_copy(name):
    """The first ``<dir>/<name>/`` folder of ``local_copy_dirs()``, or None.

    A folder found here is the preset's local copy: it must hold the four
    files and match the registry's sha256 (see ``local_copy_status``).
    """
    for directory in local_copy_dirs():
        candidate = directory / name
        if candidate.is_dir():
            return candidate
    return None


def local_copy_status(name):
    """``(status, folder, error)`` of a built-in preset's local copy:
    status is "verified", "corrupt" or "none"."""
    info = get_preset(name)
    folder = find_local_copy(name)
    if folder is None:
        return "none", None, None
    try:
        verify_preset(folder, dict(info.sha256))
    except (ValueError, OSError) as error:
        return "corrupt", folder, error
    return "verified", folder, None


def registry_entry_for(folder, hub_repo=None, revision=None, *, description=None):
    """Makes the registry entry of a finished preset folder.

    The folder is verified against its own metadata first; the entry pins
    the sha256 of all four files.

    Args:
        folder: the preset folder (as uploaded to the Hub).
        hub_repo: ``"owner/repo"`` or ``"hf://owner/repo"``; None for a
            preset that ships only in the repository's ``weights/``.
        revision: the Hub commit holding exactly these files (40 hex digits;
            ``push_to_hub`` returns it); None exactly when ``hub_repo`` is.
        description: one line; default: the metadata's ``description``.

    Returns:
        dict, the entry (paste it into ``PRESETS`` with
        ``format_registry_entry``).
    """
    folder = Path(folder)
    metadata = verify_preset(folder)
    if hub_repo is None:
        if revision is not None:
            raise ValueError(f"a revision ({revision!r}) needs the Hub repo that holds it (hub_repo)")
        hub = None
    else:
        handle = hub_repo if str(hub_repo).startswith("hf://") else f"hf://{hub_repo}"
        repo_id, handle_revision = parse_hf_handle(handle)
        if handle_revision is not None:
            raise ValueError(f"give the Hub repo without '@revision' and the commit as revision; got {hub_repo!r}")
        if not isinstance(revision, str) or not _COMMIT_RE.match(revision):
            raise ValueError(
                f"revision must be the Hub commit hash (40 hex digits) holding the preset; got {revision!r}"
            )
        hub = f"hf://{repo_id}"
    config = read_preset_json(preset_file(folder, CONFIG_FILE), CONFIG_FILE)
    description = description or metadata.get("description") or ""
    entry = {
        "class_name": config_class_name(config, str(folder)),
        "description": description,
        "hub": hub,
        "revision": revision,
        "sha256": {filename: sha256_file(folder / filename) for filename in PRESET_FILES},
        "metadata": {key: metadata.get(key) for key in SUMMARY_KEYS if metadata.get(key) is not None},
    }
    validate_entry(folder.name if _NAME_RE.match(folder.name) else "preset", entry)
    return entry


def _python_source(value, indent):
    if isinstance(value, dict):
        if not value:
            return "{}"
        pad = " " * (indent + 4)
        items = "".join(f"{pad}{_python_source(k, 0)}: {_python_source(v, indent + 4)},\n" for k, v in value.items())
        return "{\n" + items + " " * indent + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_python_source(v, indent) for v in value) + "]"
    if isinstance(value, str):
        # A JSON string literal is a valid Python string literal.
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def format_registry_entry(name, entry):
    """Python source of ``"name": {...},`` for pasting into ``PRESETS``."""
    validate_entry(name, entry)
    return f"{_python_source(name, 0)}: {_python_source(entry, 0)},"
