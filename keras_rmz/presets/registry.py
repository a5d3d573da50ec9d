"""The built-in presets: names a user can load without knowing where the
weights live.

Each model's folder holds its built-in presets
(``keras_rmz/models/<model>/<model>_presets.py``) and registers them from its
``__init__.py`` with ``register_presets``; ``PRESETS`` collects them when
keras_rmz is imported. Adding a preset is one entry in that file. Make the
entry from a finished preset folder, once it is on the Hub, with

```python
from keras_rmz.presets import registry_entry_for, format_registry_entry
entry = registry_entry_for("weights/recurrent_mz_beads_m3",
                           "hf://keras-rmz/recurrent_mz_beads_m3", "<40-hex commit>")
print(format_registry_entry("recurrent_mz_beads_m3", entry))
```

or ``keras-rmz presets entry weights/recurrent_mz_beads_m3 --hub ... --revision ...``,
and paste what it prints into the model's presets file.

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

A verified local copy in ``$KERAS_RMZ_WEIGHTS_DIR/<name>/``, in the
repository's ``weights/<name>/`` (a checkout) or in the package's
``keras_rmz/weights/<name>/`` (a wheel) serves before the network.
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

# name -> entry (see the module docstring), filled by ``register_presets``
# from each model's folder (keras_rmz/models/<model>/<model>_presets.py)
# when keras_rmz is imported.
PRESETS = {}
# name -> the package that defines the entry's class (given at registration).
_MODULES = {}

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
        module: the package that registered it (defines its class), or
            None.
    """

    name: str
    class_name: str
    description: str
    hub: object
    revision: object
    sha256: types.MappingProxyType
    metadata: types.MappingProxyType
    module: object = None

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
        module=_MODULES.get(name),
    )


def register_presets(presets, module):
    """Adds a model folder's built-in presets to the registry.

    Each model folder registers its own from its ``__init__.py``, as
    keras-hub's models do:

    ```python
    from keras_rmz.models.recurrent_mz.recurrent_mz_presets import presets
    register_presets(presets, __name__)
    ```

    Args:
        presets: dict name -> entry (see the module docstring).
        module: the package that defines the entries' classes (its
            attribute of the class's name gives the class).

    Raises:
        ValueError: an invalid entry, or a name registered twice.
    """
    for name, entry in presets.items():
        validate_entry(name, entry)
        if name in PRESETS and PRESETS[name] is not entry:
            raise ValueError(f"preset {name!r} is registered twice ({_MODULES.get(name)} and {module})")
        PRESETS[name] = entry
        _MODULES[name] = module


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
        presets = [p for p in presets if issubclass(resolve_class(p.class_name, p.module), model_class)]
    return presets


def get_preset(name):
    """Returns the ``PresetInfo`` of a built-in preset.

    Raises:
        ValueError: for an unknown name, listing the presets that exist.
    """
    if name not in PRESETS:
        raise unknown_preset_error(name)
    return validate_entry(name, PRESETS[name])


def pinned_sha256(repo_id, commit):
    """The registry's sha256 of the four files when ``commit`` of the Hub
    repo ``repo_id`` is a registered preset, else None."""
    for info in list_presets():
        if info.hub is not None and info.hub == f"hf://{repo_id}" and info.revision == commit:
            return dict(info.sha256)
    return None


def unknown_preset_error(handle):
    """The ``ValueError`` for a handle that is no built-in name, folder or
    Hub repository: the closest built-in name, and every one."""
    import difflib

    close = difflib.get_close_matches(str(handle), sorted(PRESETS), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown preset {handle!r}.{hint} {available_presets_message()}")


def available_presets_message():
    """One sentence naming the built-in presets and the handle forms."""
    names = sorted(PRESETS)
    listed = ", ".join(names) if names else "none yet (no trained weights are published)"
    return (
        f"Built-in presets: {listed}. A handle is a built-in name, a preset folder, or "
        "hf://owner/repo[@revision]."
    )


def repository_weights_dir():
    """The repository's ``weights/`` folder (beside the ``keras_rmz``
    package) in a checkout; None where the package is installed (no
    ``pyproject.toml`` beside it: not ``site-packages/weights``)."""
    import keras_rmz

    root = Path(keras_rmz.__file__).resolve().parents[1]
    return root / "weights" if (root / "pyproject.toml").is_file() else None


def package_weights_dir():
    """``keras_rmz/weights/``: the built-in presets a wheel ships (``setup.py``
    copies the repository's ``weights/`` there; a checkout has no such folder)."""
    import keras_rmz

    return Path(keras_rmz.__file__).resolve().parent / "weights"


def local_copy_dirs():
    """Folders searched for local copies, in order: ``$KERAS_RMZ_WEIGHTS_DIR``
    (when set), the repository's ``weights/`` (a checkout or an editable
    install), then the package's own ``weights/`` (a wheel)."""
    dirs = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser())
    repository = repository_weights_dir()
    if repository is not None:
        dirs.append(repository)
    dirs.append(package_weights_dir())
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
