"""A preset folder: write it atomically, check it, and load the model it holds.

A preset is exactly four files, whatever store holds it (a local folder, a
``weights/<name>/`` folder of the repository, a Hugging Face Hub repo):

- ``config.json``: the Keras serialized model, i.e. the registered class
  name (``"keras_rmz>RecurrentMZ"``) and its constructor arguments;
- ``model.weights.h5``: the weights (``model.save_weights``);
- ``metadata.json``: what a user needs to use the weights well (optics,
  pixel size, z-step, M, Δz, normalization, training recipe), the versions
  and backend that wrote it, and the sha256 of the three other files;
- ``README.md``: the model card.

Only these four names are ever opened. Nothing read from a preset (config or
metadata) is used as a path, a file that is a symlink must stay inside the
folder (or the store that holds it), and a config is deserialized only once
its class is known to be a registered keras_rmz model, with Keras'
``safe_mode=True``.

The functions here are pure Python until a model is made or loaded: checking
a folder never imports a deep-learning backend.
"""

import datetime
import hashlib
import importlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
MODEL_CARD_FILE = "README.md"
# The files of a preset, in the order they are checked. metadata.json lists
# the sha256 of the other three; a registry entry pins all four.
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE, MODEL_CARD_FILE)
# Optional folder of figures the model card shows (not hashed: no code reads them).
FIGURES_DIR = "figures"
HASHED_FILES = (CONFIG_FILE, WEIGHTS_FILE, MODEL_CARD_FILE)

FORMAT_VERSION = 1

# Keys every metadata.json holds (None when the saver did not give them), so
# that a model card and `keras-rmz presets info` read the same schema.
METADATA_FIELDS = {
    "description": "one line: what the preset does",
    "modality": "input -> target imaging, e.g. 'widefield -> widefield'",
    "sample": "what was imaged, e.g. 'beads (50 nm)'",
    "optics": "dict: objective, NA, immersion index, wavelength_um, ...",
    "pixel_um": "lateral pixel size of the training stacks (µm)",
    "z_step_um": "axial step of the training stacks (µm)",
    "num_inputs": "M, the number of input planes the model was trained with",
    "input_spacing_um": "Δz between input planes during training (µm)",
    "output_range_um": "[min, max] of output_z - input_z seen in training (µm)",
    "normalization": "how input intensities were normalized (dict)",
    "training": "training recipe: data, patches, losses, optimizers, steps",
    "metrics": "measured quality on held-out data",
    "license": "license of the weights",
}
# Written by save_preset itself; a caller cannot set them.
COMPUTED_FIELDS = (
    "format_version",
    "class_name",
    "num_parameters",
    "keras_version",
    "keras_rmz_version",
    "backend",
    "created_utc",
    "sha256",
)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CLASS_NAME_RE = re.compile(r"^keras_rmz>[A-Za-z_][A-Za-z0-9_]*$")
_MODULE_RE = re.compile(r"^keras_rmz(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_HASH_CHUNK = 1 << 20


# ---------------------------------------------------------------------------
# Hashing and checking


def sha256_file(path):
    """Returns the sha256 hex digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_within(path, root):
    try:
        Path(path).relative_to(root)
    except ValueError:
        return False
    return True


def preset_file(folder, filename, *, allowed_root=None):
    """Returns the path of one of the four preset files in ``folder``.

    Args:
        folder: the preset folder.
        filename: one of ``PRESET_FILES``; any other name is refused, so a
            name taken from a config or metadata can never open another file.
        allowed_root: where a symlinked file may point (default: the folder
            itself). The Hugging Face cache keeps files as symlinks into its
            ``blobs/`` folder, so for a cached snapshot this is the cached
            repo's folder.

    Raises:
        ValueError: for a name that is not a preset file, a symlink that
            leaves ``allowed_root``, or a path that is not a regular file.
        FileNotFoundError: when the file is missing.
    """
    if filename not in PRESET_FILES:
        raise ValueError(f"{filename!r} is not a preset file; a preset holds only {', '.join(PRESET_FILES)}")
    folder = Path(folder)
    path = folder / filename
    if not os.path.lexists(path):
        raise FileNotFoundError(
            f"preset folder {folder} has no {filename}; a preset holds {', '.join(PRESET_FILES)}"
        )
    root = Path(allowed_root if allowed_root is not None else folder).resolve()
    real = path.resolve()
    if not _is_within(real, root):
        raise ValueError(f"{filename} in {folder} is a link to {real}, outside {root}; refusing to read it")
    if not real.is_file():
        raise ValueError(f"{filename} in {folder} is not a regular file")
    return path


def read_preset_json(path, filename):
    """Reads config.json or metadata.json: a JSON object, or ValueError."""
    try:
        with open(path, encoding="utf-8") as file:
            value = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{filename} in {Path(path).parent} is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise ValueError(f"{filename} in {Path(path).parent} must hold a JSON object; got {type(value).__name__}")
    return value


def _check_sha256(path, filename, expected, where):
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(
            f"{filename} in {where}: sha256 mismatch (expected {expected}, got {actual}); the file is "
            "corrupted or was changed. Delete the copy and fetch the preset again (a Hub download: "
            "from_preset(..., force_download=True)), or re-save it."
        )


def expected_hashes_from_metadata(metadata, where):
    """The sha256 of config.json, model.weights.h5 and README.md that a
    metadata.json lists, checked for form (and for unexpected names)."""
    hashes = metadata.get("sha256")
    if not isinstance(hashes, dict):
        raise ValueError(
            f"{METADATA_FILE} in {where} has no 'sha256' table; a preset's metadata lists the sha256 of "
            f"{', '.join(HASHED_FILES)} (re-save the preset with save_to_preset)"
        )
    unexpected = sorted(set(hashes) - set(HASHED_FILES))
    if unexpected:
        raise ValueError(
            f"{METADATA_FILE} in {where} lists sha256 for {unexpected}; only {', '.join(HASHED_FILES)} are allowed"
        )
    for filename in HASHED_FILES:
        value = hashes.get(filename)
        if not isinstance(value, str) or not _SHA256_RE.match(value):
            raise ValueError(
                f"{METADATA_FILE} in {where} must give the sha256 of {filename} as 64 lowercase hex digits; "
                f"got {value!r}"
            )
    return {filename: hashes[filename] for filename in HASHED_FILES}


def verify_preset(folder, expected_sha256=None, *, allowed_root=None, where=None):
    """Checks a preset folder and returns its metadata.

    Every file must exist and match its sha256: the ``expected_sha256``
    mapping when given (a registry entry pins all four files), otherwise the
    ``sha256`` table of the folder's own metadata.json (config.json,
    model.weights.h5, README.md). config.json must name a keras_rmz class
    (``"keras_rmz>..."``); that the class exists is checked when loading.

    Args:
        folder: path of the preset folder.
        expected_sha256: optional dict file name -> sha256 for all four files.
        allowed_root: where symlinked files may point (see ``preset_file``).
        where: how to name the folder in errors (default: its path).

    Returns:
        dict, the metadata.

    Raises:
        ValueError: naming the file and saying "sha256" on a mismatch, or
            what else is wrong.
        FileNotFoundError: when the folder or a file is missing.

    Example:

    ```python
    metadata = keras_rmz.presets.verify_preset("my_preset/")
    metadata["num_inputs"], metadata["z_step_um"]
    ```
    """
    folder = Path(folder)
    where = where or str(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no preset folder at {folder}")
    paths = {name: preset_file(folder, name, allowed_root=allowed_root) for name in PRESET_FILES}
    if expected_sha256 is not None:
        for name in PRESET_FILES:
            _check_sha256(paths[name], name, expected_sha256[name], where)
        metadata = read_preset_json(paths[METADATA_FILE], METADATA_FILE)
    else:
        metadata = read_preset_json(paths[METADATA_FILE], METADATA_FILE)
        hashes = expected_hashes_from_metadata(metadata, where)
        for name in HASHED_FILES:
            _check_sha256(paths[name], name, hashes[name], where)
    config = read_preset_json(paths[CONFIG_FILE], CONFIG_FILE)
    class_name = config_class_name(config, where)
    recorded = metadata.get("class_name")
    if recorded is not None and recorded != class_name:
        raise ValueError(
            f"{where}: {METADATA_FILE} says the model is {recorded!r} but {CONFIG_FILE} holds {class_name!r}"
        )
    return metadata


# ---------------------------------------------------------------------------
# Classes: what a config may name


def config_class_name(config, where="the preset"):
    """The registered class name a config.json names, checked for form.

    Only a ``registered_name`` of the form ``"keras_rmz>ClassName"`` is
    accepted (checked before anything is deserialized or imported).
    """
    name = config.get("registered_name")
    if not isinstance(name, str) or not _CLASS_NAME_RE.match(name):
        raise ValueError(
            f"{CONFIG_FILE} in {where} names the class {name!r}; a preset may hold only a registered keras_rmz "
            "model, named 'keras_rmz>ClassName' (e.g. 'keras_rmz>RecurrentMZ'). Refusing to load it."
        )
    return name


def resolve_class(class_name, module=None):
    """Returns the keras_rmz model class registered as ``class_name``.

    The store knows no model class. A class registers itself with Keras
    when its module is imported; ``module`` (the ``"module"`` of a preset's
    ``config.json``, which Keras writes) is imported when the class is not
    registered yet, as ``keras.saving`` does, and only when it is a
    keras_rmz module.

    Args:
        class_name: ``"keras_rmz>ClassName"``.
        module: the module that defines it, e.g.
            ``"keras_rmz.models.recurrent_mz.recurrent_mz"``, or a package
            whose attribute of the class's name is the class.

    Raises:
        ValueError: when the name is not a registered keras_rmz model class.
    """
    import keras

    if not isinstance(class_name, str) or not _CLASS_NAME_RE.match(class_name):
        raise ValueError(f"a preset class must be named 'keras_rmz>ClassName'; got {class_name!r}")
    cls = keras.saving.get_registered_object(class_name)
    if cls is None and isinstance(module, str) and _MODULE_RE.match(module):
        try:
            # A package that loads its classes on first use gives the class
            # as an attribute of its name.
            getattr(importlib.import_module(module), class_name.split(">", 1)[1], None)
        except ImportError:
            pass
        cls = keras.saving.get_registered_object(class_name)
    if not (
        isinstance(cls, type)
        and issubclass(cls, keras.Model)
        and (cls.__module__ == "keras_rmz" or cls.__module__.startswith("keras_rmz."))
    ):
        raise ValueError(
            f"{class_name!r} is not a keras_rmz model class; a preset may hold only models registered by "
            "keras_rmz (RecurrentMZ, DeepZ, UNet3D, Discriminator, ...)"
        )
    return cls


def check_model_class(found, model_class, where):
    """Raises ValueError unless ``found`` is ``model_class`` or a subclass."""
    if model_class is not None and not issubclass(found, model_class):
        raise ValueError(
            f"{where} holds a {found.__name__}, not a {model_class.__name__}: "
            f"{model_class.__name__}.from_preset loads only {model_class.__name__} presets. Use "
            f"keras_rmz.{found.__name__}.from_preset or keras_rmz.presets.load_preset, which loads any class."
        )


# ---------------------------------------------------------------------------
# Loading


def constructor_arguments(cls):
    """The keyword arguments ``cls(...)`` takes, following ``**kwargs`` up
    the class hierarchy to Keras's own (``name``, ``trainable``, ``dtype``)."""
    import inspect

    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {"name", "trainable", "dtype"}
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] == "keras" or klass is object:
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters
        names |= {name for name, p in parameters.items() if p.kind in kinds} - {"self"}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            break
    return names


def _physical_memory_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_constructor_config(cls, arguments, where):
    """Refuses, before any layer is made, constructor arguments that ``cls``
    does not take (a typo or another version's key would otherwise be
    dropped without a word) and sizes that cannot fit in this machine's
    memory: for a ``base_filters``/``depth`` network the deepest level's one
    k x k convolution alone holds ``k² (base_filters 2^(depth-1))²`` float32
    weights, a lower bound of the whole model's."""
    accepted = constructor_arguments(cls)
    unknown = sorted(set(arguments) - accepted)
    if unknown:
        raise ValueError(
            f"{CONFIG_FILE} in {where} gives {cls.__name__} the argument(s) {', '.join(map(repr, unknown))}, which it "
            f"does not take; it takes {', '.join(sorted(accepted))}"
        )
    base, depth = arguments.get("base_filters"), arguments.get("depth")
    kernel = arguments.get("kernel_size", 3)
    kernel = kernel[0] if isinstance(kernel, (list, tuple)) and kernel else kernel
    # JSON numbers: 1e6 arrives as a float.
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e12 for v in (base, depth, kernel)):
        return  # not a base_filters/depth network, or the class's own checks answer
    lower_bound = 4 * float(kernel) ** 2 * (float(base) * 2 ** (min(float(depth), 64) - 1)) ** 2
    memory = _physical_memory_bytes()
    if memory and lower_bound > memory:
        raise ValueError(
            f"{CONFIG_FILE} in {where}: base_filters={base:g}, depth={depth:g}, kernel_size={kernel:g} need at "
            f"least {lower_bound / 2**30:,.0f} GiB of float32 weights, more than this machine's "
            f"{memory / 2**30:,.0f} GiB of memory"
        )


def load_preset_folder(
    folder,
    *,
    expected_sha256=None,
    model_class=None,
    allowed_root=None,
    where=None,
    load_weights=True,
    config_overrides=None,
):
    """Verifies a preset folder and returns the model it holds.

    Args:
        folder: the preset folder.
        expected_sha256: dict file name -> sha256 for all four files (a
            registry entry), or None to check against metadata.json.
        model_class: when given, the preset must hold this class or a
            subclass (ValueError otherwise).
        allowed_root: where symlinked files may point (see ``preset_file``).
        where: how to name the preset in errors.
        load_weights: bool, load the weights (False: a freshly initialized
            model of the preset's architecture).
        config_overrides: dict of constructor arguments that replace the
            config's (``name``, ``trainable``, ``dtype``, ...).

    Returns:
        the model, uncompiled.
    """
    import keras

    folder = Path(folder)
    where = where or str(folder)
    metadata = verify_preset(folder, expected_sha256, allowed_root=allowed_root, where=where)
    config = read_preset_json(preset_file(folder, CONFIG_FILE, allowed_root=allowed_root), CONFIG_FILE)
    found = resolve_class(config_class_name(config, where), config.get("module"))
    check_model_class(found, model_class, where)
    if not isinstance(config.get("config"), dict):
        raise ValueError(f"{CONFIG_FILE} in {where} has no 'config' object (the constructor arguments)")
    check_constructor_config(found, {**config["config"], **(config_overrides or {})}, where)
    # Rebuilt from the checked class, so Keras can only make that class. A
    # preset carries an architecture and weights, never an optimizer or loss
    # (compile_config is dropped).
    config = {
        "module": found.__module__,
        "class_name": found.__name__,
        "registered_name": config["registered_name"],
        "config": {**config["config"], **(config_overrides or {})},
        **({"build_config": config["build_config"]} if isinstance(config.get("build_config"), dict) else {}),
    }
    model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    if not isinstance(model, found):
        raise ValueError(f"{CONFIG_FILE} in {where} did not give a {found.__name__}")
    if load_weights:
        # The name must end in .weights.h5 for Keras: pass the link, not its target.
        model.load_weights(str(preset_file(folder, WEIGHTS_FILE, allowed_root=allowed_root)))
        # What the weights were made from (verified above), for a fine-tuning
        # run to record its starting point (keras-rmz train, model.init_preset).
        model._keras_rmz_preset_metadata = metadata
    return model


# ---------------------------------------------------------------------------
# Saving


def _json_default(value):
    import numpy as np

    if hasattr(value, "to_dict") and callable(value.to_dict):
        return value.to_dict()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(
        f"metadata values must be JSON types (str, number, bool, None, list, dict), numpy values or objects "
        f"with to_dict(); got {type(value).__name__}"
    )


def _write_bytes(path, data):
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync(path):
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _format_value(value):
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format_value(v)}" for k, v in value.items()) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(v) for v in value)
    return str(value)


def default_model_card(metadata, name):
    """A model card (README.md text) made from a preset's metadata."""
    class_short = metadata["class_name"].split(">", 1)[-1]
    lines = [
        "---",
        "library_name: keras",
        f"license: {metadata.get('license') or 'apache-2.0'}",
        "tags:",
        "- keras",
        "- keras-rmz",
        "- microscopy",
        "- recurrent-mz",
        "---",
        "",
        f"# {name}",
        "",
        metadata.get("description") or f"A keras_rmz {class_short} preset.",
        "",
        "## Use",
        "",
        "```python",
        "import keras_rmz",
        "",
        f'model = keras_rmz.{class_short}.from_preset("hf://OWNER/{name}")  # or a local folder',
        "volume = model.reconstruct(images, input_z=input_z, output_z=output_z"
        + (", pixel_um=pixel_um)  # your images' pixel size (µm); resampled to the preset's"
           if metadata.get("pixel_um") else ")"),
        "```",
        "",
        "## Preset",
        "",
        "| field | value |",
        "| --- | --- |",
        f"| class | `{metadata['class_name']}` |",
        f"| parameters | {metadata['num_parameters']} |",
    ]
    for key in METADATA_FIELDS:
        if key in ("description", "license", "training", "metrics"):
            continue
        value = metadata.get(key)
        lines.append(f"| {key} | {'not recorded' if value is None else _format_value(value)} |")
    lines += [
        f"| written with | keras {metadata['keras_version']}, keras_rmz {metadata['keras_rmz_version']}, "
        f"{metadata['backend']} backend |",
        "",
        "## Training",
        "",
        _format_value(metadata["training"]) if metadata.get("training") else "Not recorded.",
        "",
        "## Metrics",
        "",
        _format_value(metadata["metrics"]) if metadata.get("metrics") else "Not recorded.",
        "",
        "## Files",
        "",
        "`config.json` (architecture), `model.weights.h5` (weights), `metadata.json` (this table and the "
        "sha256 of the other files), `README.md` (this card).",
        "",
    ]
    return "\n".join(lines)


def _model_card_text(model_card, metadata, name):
    if model_card is None:
        return default_model_card(metadata, name)
    if isinstance(model_card, os.PathLike):
        return Path(model_card).read_text(encoding="utf-8")
    if isinstance(model_card, str):
        return model_card
    raise TypeError(
        f"model_card must be the card's text (str), a pathlib.Path to one, or None; got {type(model_card).__name__}"
    )


def _recover_interrupted_save(folder):
    """What a killed ``save_preset`` of ``folder`` left beside it: its
    unfinished ``.<name>.partial-<pid>-*`` folder is removed; its
    ``.<name>.old-<pid>-*`` backup (the previous preset, moved aside just
    before the new one was moved in) is put back when the kill came between
    the two renames, and removed otherwise. Folders of live processes are
    left alone."""
    from keras_rmz.io.atomic import process_running

    if not folder.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(folder.name)}\.(partial|old)-(\d+)-")
    for candidate in sorted(folder.parent.iterdir()):
        match = pattern.match(candidate.name)
        pid = int(match.group(2)) if match else None
        if pid is None or pid == os.getpid() or process_running(pid):
            continue
        if match.group(1) == "old" and not folder.exists():
            os.rename(candidate, folder)
        else:
            shutil.rmtree(candidate, ignore_errors=True)


def _replaceable(folder):
    """An existing folder may be replaced only if it holds nothing but preset files."""
    others = sorted(p.name for p in folder.iterdir() if p.name not in PRESET_FILES + (FIGURES_DIR,))
    return not others, others


def save_preset(model, folder, metadata=None, model_card=None, extra_files=None):
    """Writes ``model`` as a preset folder, atomically.

    The four files are written into a temporary folder beside ``folder``
    and renamed into place: the final path never holds a half-written
    preset. An existing ``folder`` is replaced if it is empty or holds only
    preset files; a folder with other files is refused.

    Args:
        model: a registered keras_rmz model (``RecurrentMZ``, ...).
        folder: where to write the preset.
        metadata: dict of what a user needs to use the weights: any of
            ``METADATA_FIELDS`` (``modality``, ``optics``, ``pixel_um``,
            ``z_step_um``, ``num_inputs``, ``input_spacing_um``,
            ``normalization``, ``training``, ``metrics``, ...) and more keys
            of your own. Values must be JSON-able (numpy values and objects
            with ``to_dict()``, such as ``Normalization``, are converted).
            Versions, backend, class and sha256 are added.
        model_card: README.md text (str), a ``pathlib.Path`` to one, or
            None for a card made from the metadata.
        extra_files: optional dict ``"figures/NAME.png"`` -> bytes: figures
            the model card shows, written with the preset (only under
            ``figures/``).

    Returns:
        pathlib.Path of the preset folder.

    Example:

    ```python
    model.save_to_preset("my_preset/", metadata={"num_inputs": 3, "z_step_um": 0.1})
    ```
    """
    import keras

    from keras_rmz.version import __version__

    folder = Path(folder).expanduser()
    if folder.name in ("", ".", ".."):
        raise ValueError(f"folder must name a new or existing preset folder; got {str(folder)!r}")
    metadata = dict(metadata or {})
    extra_files = dict(extra_files or {})
    for name in extra_files:
        parts = Path(name).parts
        if len(parts) != 2 or parts[0] != FIGURES_DIR or parts[1] in ("", ".", ".."):
            raise ValueError(f"extra_files names must be '{FIGURES_DIR}/NAME'; got {name!r}")
    reserved = sorted(set(metadata) & set(COMPUTED_FIELDS))
    if reserved:
        raise ValueError(f"metadata may not set {reserved}: save_to_preset writes {', '.join(COMPUTED_FIELDS)}")
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    class_name = config.get("registered_name")
    try:
        found = resolve_class(class_name, config.get("module"))
    except ValueError:
        found = None
    if found is not type(model):
        raise ValueError(
            f"only keras_rmz models can be saved as presets (classes of the keras_rmz package registered with "
            f"@keras.saving.register_keras_serializable(package='keras_rmz')); got {type(model).__name__} "
            f"(registered as {class_name!r})"
        )
    _recover_interrupted_save(folder)
    if folder.exists():
        if not folder.is_dir():
            raise ValueError(f"{folder} exists and is not a folder; choose another path for the preset")
        ok, others = _replaceable(folder)
        if not ok:
            raise ValueError(
                f"{folder} holds files that are not part of a preset ({', '.join(others[:5])}); "
                "save the preset to a new or empty folder"
            )
    folder.parent.mkdir(parents=True, exist_ok=True)

    full_metadata = {"format_version": FORMAT_VERSION, "class_name": class_name}
    full_metadata.update({key: None for key in METADATA_FIELDS})
    full_metadata.update(metadata)
    full_metadata.update(
        {
            "num_parameters": int(model.count_params()),
            "keras_version": keras.__version__,
            "keras_rmz_version": __version__,
            "backend": keras.backend.backend(),
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-{os.getpid()}-", dir=folder.parent))
    try:
        _write_bytes(temporary / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode("utf-8"))
        model.save_weights(str(temporary / WEIGHTS_FILE))
        _fsync(temporary / WEIGHTS_FILE)
        # The card may quote the metadata (without the sha256 it cannot know yet).
        card = _model_card_text(model_card, full_metadata, folder.name)
        _write_bytes(temporary / MODEL_CARD_FILE, card.encode("utf-8"))
        for name, data in extra_files.items():
            (temporary / name).parent.mkdir(exist_ok=True)
            _write_bytes(temporary / name, bytes(data))
        full_metadata["sha256"] = {name: sha256_file(temporary / name) for name in HASHED_FILES}
        text = json.dumps(full_metadata, indent=2, default=_json_default, ensure_ascii=False) + "\n"
        _write_bytes(temporary / METADATA_FILE, text.encode("utf-8"))
        _publish(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return folder


def _publish(temporary, folder):
    """Renames the finished temporary folder to ``folder`` (replacing an old preset)."""
    if not folder.exists():
        os.rename(temporary, folder)
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-{os.getpid()}-", dir=folder.parent))
    os.rmdir(backup)
    os.rename(folder, backup)
    try:
        os.rename(temporary, folder)
    except BaseException:
        os.rename(backup, folder)
        raise
    shutil.rmtree(backup, ignore_errors=True)
