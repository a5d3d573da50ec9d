"""The training configuration of ``keras-rmz train``: a YAML or JSON file,
checked key by key, with defaults filled in.

A config has these sections (every key, its default and what it accepts is
in ``SCHEMA``; ``describe_schema()`` prints it, docs/training.md shows it):

```yaml
output: runs/recurrent_mz_beads_m3      # run folder: checkpoint, CSV log, preset/
model:
  class: RecurrentMZ                    # RecurrentMZ | RecurrentMZPlus | DeepZ | UNet3D
  config: {}                            # constructor arguments (the paper's network)
data:
  simulate: {sample: beads, count: 32, seed: 0}   # or folder: path/to/stacks
  num_inputs: 3
  input_spacing_um: 3.0
  patch_size: 256
  batch_size: 4
validation:
  simulate: {count: 4, seed: 100000}
  steps: 8
training:
  steps: 20000
  steps_per_epoch: 500
optimizer:
  learning_rate: 1.0e-5
loss:
  adversarial_weight: 0.5               # 0: no discriminator, plain fit
```

Errors name the key (``data.patch_size``), what was given and what is
accepted, in one line: a ``ValueError`` (or ``TypeError`` for a value of the
wrong type).

Example:

```python
from keras_rmz.training.config import load_training_config

config = load_training_config("examples/train_beads_m3.yaml",
                              overrides=["training.steps=100"])
config.total_steps, config.adversarial   # (100, True)
config.to_dict()                          # every key, defaults filled in
```
"""

import copy
import json
import math
import numbers
import os
import pathlib

import numpy as np

from keras_rmz.data import volume_dataset
from keras_rmz.simulate.simulate_stack import SAMPLES

# Model classes `keras-rmz train` can build (keras_rmz.models.<name>).
MODEL_CLASSES = ("RecurrentMZ", "RecurrentMZPlus", "DeepZ", "UNet3D")
TARGETS = ("inputs", "confocal")
# "auto": the dataset's choice follows from the targets (see the field).
TARGET_NORMALIZATIONS = ("auto", *volume_dataset.TARGET_NORMALIZATIONS)
SCHEDULES = ("constant", "cosine")
MONITORS = ("val_psnr", "val_ssim", "val_loss")
PRESET_WEIGHTS = ("best", "last")

# Training stacks use seeds seed .. seed + count - 1; the default validation
# stacks start this far above, so the two never share an object.
VALIDATION_SEED_OFFSET = 100_000


class _Field:
    """One key of the schema: its kind, default and limits.

    kinds: "int", "float", "bool", "str", "path", "choice", "dict" (free
    form), "shape" (three ints >= 1), "patch" (int or [h, w]), "section"
    (a nested schema in ``fields``).
    """

    def __init__(self, kind, default=None, doc="", *, choices=None, minimum=None, positive=False,
                 nullable=False, fields=None, shown_default=None):
        self.kind = kind
        # What the documentation shows as the default when it is not a constant.
        self.shown_default = shown_default
        self.default = default
        self.doc = doc
        self.choices = choices
        self.minimum = minimum
        self.positive = positive
        self.nullable = nullable or (default is None and kind != "section")
        self.fields = fields

    def accepted(self):
        """What the key accepts, in words (used in error messages)."""
        if self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "int":
            text = f"an integer >= {self.minimum if self.minimum is not None else 0}"
        elif self.kind == "float":
            text = "a number > 0" if self.positive else (
                f"a number >= {self.minimum:g}" if self.minimum is not None else "a number")
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind in ("str", "path"):
            text = "a path" if self.kind == "path" else "a string"
        elif self.kind == "shape":
            text = "three integers >= 1 [Z, Y, X]"
        elif self.kind == "patch":
            text = "an integer >= 1 or [height, width]"
        elif self.kind == "dict":
            text = "a mapping of keys to values"
        else:
            text = "a mapping with keys " + ", ".join(self.fields)
        return text + (" or null" if self.nullable else "")


def _simulate_fields(validation=False):
    fields = {
        "sample": _Field("choice", "beads", "what to simulate", choices=SAMPLES),
        "count": _Field("int", 8, "number of simulated stacks", minimum=1),
        "shape": _Field("shape", None, "[Z, Y, X] of each stack; null: the sample's default "
                        "(101x256x256 beads, 91x256x256 nuclei)"),
        "z_step_um": _Field("float", None, "axial step (µm); null: 0.1 beads, 0.2 nuclei", positive=True),
        "pixel_um": _Field("float", 0.1, "lateral pixel size (µm)", positive=True),
        "density_per_um3": _Field("float", None, "objects per µm³; null: the sample's default", minimum=0.0),
        "seed": _Field("int", 0, "stack i is simulated with seed + i", minimum=0),
        "noise_free_targets": _Field(
            "bool", False, "targets are simulate_stack(..., noise=False) of the same objects (noise-free "
            "expected counts); inputs stay noisy"),
        "cache": _Field("bool", True, "keep the simulated stacks as OME-TIFF under OUTPUT/simulated/ so a "
                        "resumed run reads them instead of simulating again"),
    }
    if validation:
        # Keys not written follow data.simulate (see _inherit_simulate).
        for key, field in fields.items():
            field.shown_default = "as data.simulate"
        fields["count"].shown_default = "data count // 8, at least 1"
        fields["seed"].shown_default = f"data seed + {VALIDATION_SEED_OFFSET}"
    return fields


SCHEMA = {
    "output": _Field("path", None, "run folder (checkpoint, CSV log, preset/); null: runs/<config name>"),
    "model": _Field("section", doc="the network to train", fields={
        "class": _Field("choice", "RecurrentMZ", "model class of keras_rmz.models", choices=MODEL_CLASSES),
        "config": _Field("dict", {}, "constructor arguments of the class ({} = its defaults, the paper's "
                         "network); UNet3D's num_inputs defaults to data.num_inputs"),
        "init_preset": _Field("str", None, "start from this preset's architecture and weights (fine-tuning): "
                              "a built-in name, a preset folder or hf://owner/repo[@rev]; model.config must "
                              "then be empty"),
    }),
    "discriminator": _Field("section", doc="the GAN discriminator (used when loss.adversarial_weight > 0)", fields={
        "config": _Field("dict", {}, "constructor arguments of keras_rmz.models.Discriminator ({} = the "
                         "paper's: 5 blocks, 20·2^k channels)"),
    }),
    "data": _Field("section", doc="training stacks and how items are drawn (keras_rmz.data.VolumeDataset)", fields={
        "folder": _Field("path", None, "folder of OME-TIFF/TIFF stacks (<name>_widefield.ome.tif with "
                         "<name>_confocal.ome.tif when data.targets is confocal, as keras-rmz simulate writes)"),
        "simulate": _Field("section", None, "simulate the stacks instead (keras_rmz.simulate.simulate_stack)",
                           fields=_simulate_fields(), nullable=True),
        "targets": _Field("choice", "inputs", "inputs: each stack is its own target; confocal: paired "
                          "confocal stacks (Recurrent-MZ+)", choices=TARGETS),
        "z_step_um": _Field("float", None, "z step (µm) for files that do not record it", positive=True),
        "pixel_um": _Field("float", None, "pixel size (µm) for files that do not record it", positive=True),
        "num_inputs": _Field("int", 3, "M, input planes per item", minimum=1),
        "input_spacing_um": _Field("float", None, "Δz between input planes (µm); required when num_inputs > 1",
                                   positive=True),
        "spacing": _Field("choice", "uniform", "uniform: planes Δz apart; random: M planes at random within "
                          "(M-1)·Δz", choices=volume_dataset.SPACINGS),
        "spacing_jitter_um": _Field("float", 0.0, "uniform only: random offset of each input plane (µm)",
                                    minimum=0.0),
        "output_margin_um": _Field("float", None, "how far beyond the first/last input the output plane may lie "
                                   "(µm); null: Δz/2", minimum=0.0),
        "patch_size": _Field("patch", 256, "training patch side (pixels)"),
        "batch_size": _Field("int", 4, "items per step", minimum=1),
        "order": _Field("choice", "sorted", "input order: sorted (paper), random, descending_dz (Fig. S6)",
                        choices=volume_dataset.ORDERS),
        "augment": _Field("bool", True, "random rotations/flips of each item"),
        "min_signal": _Field("float", None, "redraw patches whose target's 99.9th percentile (normalized) is "
                             "below this; null: no redraw"),
        "target_normalization": _Field(
            "choice", "auto", "own: each target stack by its own statistics (paper); inputs: in the units of "
            "its input stack; auto: inputs for noise-free targets of the same modality, else own",
            choices=TARGET_NORMALIZATIONS),
        "normalization_source": _Field(
            "choice", "stack", "stack: shift and scale from the whole input stack (paper); inputs: from the M "
            "drawn planes only, as reconstruct() computes them at inference",
            choices=volume_dataset.NORMALIZATION_SOURCES),
        "seed": _Field("int", 0, "seed of the item draws", minimum=0),
    }),
    "validation": _Field("section", doc="held-out stacks scored after every epoch (fixed items); null: none",
                         nullable=True, fields={
        "folder": _Field("path", None, "folder of held-out stacks (same layout as data.folder)"),
        "simulate": _Field("section", None, "held-out simulated stacks; keys not given follow data.simulate, "
                           "the seed defaults to data.simulate.seed + 100000", fields=_simulate_fields(True),
                           nullable=True),
        "steps": _Field("int", 4, "validation batches (the same items every time)", minimum=1),
        "batch_size": _Field("int", None, "null: data.batch_size", minimum=1),
        "seed": _Field("int", 1, "seed of the validation item draws", minimum=0),
        "monitor": _Field("choice", "val_psnr", "what selects the best weights", choices=MONITORS),
    }),
    "training": _Field("section", doc="how long, checkpoints, seeds", fields={
        "steps": _Field("int", None, "total training steps (give steps or epochs)", minimum=1),
        "epochs": _Field("int", None, "epochs of steps_per_epoch steps (give steps or epochs)", minimum=1),
        "steps_per_epoch": _Field("int", None, "steps between validations and CSV rows; null: min(steps, 500)",
                                  minimum=1),
        "checkpoint_every": _Field("int", 50, "steps between checkpoints (also at every epoch end)", minimum=1),
        "seed": _Field("int", 0, "seed of the weight initialization", minimum=0),
        "preset_weights": _Field("choice", "best", "weights written to OUTPUT/preset: best on validation "
                                 "(last when there is no validation) or last", choices=PRESET_WEIGHTS),
    }),
    "optimizer": _Field("section", doc="Adam for the generator (and the discriminator)", fields={
        "learning_rate": _Field("float", 1e-5, "generator learning rate (paper: 1e-5)", positive=True),
        "discriminator_learning_rate": _Field("float", None, "null: learning_rate (paper); the authors' code "
                                              "used 1e-6", positive=True),
        "schedule": _Field("choice", "constant", "constant or cosine decay to min_learning_rate",
                           choices=SCHEDULES),
        "warmup_steps": _Field("int", 0, "linear warm-up from 0 over this many steps", minimum=0),
        "min_learning_rate": _Field("float", 0.0, "cosine: the learning rate at the last step", minimum=0.0),
    }),
    "loss": _Field("section", doc="paper Eq. 7: 3·BerHu + 1·(1 − MS-SSIM) + 0.5·(D(ŷ) − 1)²", fields={
        "berhu_weight": _Field("float", 3.0, "α", minimum=0.0),
        "ms_ssim_weight": _Field("float", 1.0, "β", minimum=0.0),
        "adversarial_weight": _Field("float", 0.5, "γ; 0 trains without a discriminator (plain fit)",
                                     minimum=0.0),
        "berhu_c": _Field("float", 0.1, "BerHu threshold c", positive=True),
        "berhu_adaptive": _Field("bool", False, "c = 0.2·max|ŷ − y| per image (authors' code)"),
    }),
    "preset": _Field("section", doc="what OUTPUT/preset/metadata.json says beyond what is measured", fields={
        "description": _Field("str", None, "one line for the model card"),
        "license": _Field("str", "apache-2.0", "license of the weights"),
        "metadata": _Field("dict", {}, "more metadata keys (merged)"),
    }),
}

# Keys of a resumed run that may differ from the run's first session.
RESUMABLE_CHANGES = ("output", "training.steps", "training.epochs", "preset")


def _path_name(path):
    return ".".join(path) if path else "the config"


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_value(path, field, value):
    name = _path_name(path)

    def fail(error=ValueError):
        raise error(f"{name} must be {field.accepted()}; got {value!r}")

    if value is None:
        if field.nullable:
            return None
        fail()
    kind = field.kind
    if kind == "section":
        if not isinstance(value, dict):
            fail(TypeError)
        return _check_section(path, field.fields, value)
    if kind == "choice":
        if not isinstance(value, str) or value not in field.choices:
            fail()
        return value
    if kind == "int":
        if not _is_int(value):
            fail(TypeError)
        value = int(value)
        if value < (field.minimum or 0):
            fail()
        return value
    if kind == "float":
        if isinstance(value, str):
            # YAML 1.1 reads 1e-5 (no dot) as a string; accept what float() reads.
            try:
                value = float(value)
            except ValueError:
                fail(TypeError)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            fail(TypeError)
        value = float(value)
        if not math.isfinite(value) or (field.positive and value <= 0) or (
                field.minimum is not None and value < field.minimum):
            fail()
        return value
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            fail(TypeError)
        return bool(value)
    if kind in ("str", "path"):
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            fail(TypeError)
        return value
    if kind == "dict":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            fail(TypeError)
        return copy.deepcopy(value)
    if kind == "shape":
        if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(_is_int(v) and v >= 1 for v in value):
            fail()
        return [int(v) for v in value]
    if kind == "patch":
        if _is_int(value) and value >= 1:
            return int(value)
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) and v >= 1 for v in value):
            return [int(v) for v in value]
        fail()
    raise AssertionError(f"unknown field kind {kind!r}")  # a bug in SCHEMA, not in the user's file


def _check_section(path, fields, mapping):
    unknown = [key for key in mapping if key not in fields]
    if unknown:
        where = f"in {_path_name(path)}" if path else "at the top level"
        raise ValueError(
            f"unknown key {unknown[0]!r} {where}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; accepted keys: {', '.join(fields)}"
        )
    result = {}
    for key, field in fields.items():
        if key in mapping:
            result[key] = _check_value(path + (key,), field, mapping[key])
        elif field.kind == "section" and not field.nullable:
            result[key] = _check_section(path + (key,), field.fields, {})
        else:
            result[key] = copy.deepcopy(field.default)
    return result


class TrainingConfig:
    """A checked training config: one dict per section, every key present.

    Made by `load_training_config` or `training_config_from_dict`; attributes
    ``output`` (str), ``model``, ``discriminator``, ``data``, ``validation``
    (dict or None), ``training``, ``optimizer``, ``loss``, ``preset`` (dicts)
    and ``source`` (the file it was read from, or None).
    """

    SECTIONS = tuple(SCHEMA)

    def __init__(self, sections, source=None):
        for name in self.SECTIONS:
            setattr(self, name, sections[name])
        self.source = None if source is None else str(source)

    @property
    def adversarial(self):
        """True when the generator is trained against a discriminator."""
        return self.loss["adversarial_weight"] > 0

    @property
    def steps_per_epoch(self):
        return self.training["steps_per_epoch"]

    @property
    def total_steps(self):
        """Training steps of the whole run."""
        if self.training["steps"] is not None:
            return self.training["steps"]
        return self.training["epochs"] * self.training["steps_per_epoch"]

    @property
    def num_epochs(self):
        """Epochs of the run; the last one may be shorter than steps_per_epoch."""
        return -(-self.total_steps // self.steps_per_epoch)

    @property
    def target_normalization(self):
        """"own" or "inputs": data.target_normalization with "auto" resolved."""
        value = self.data["target_normalization"]
        if value != "auto":
            return value
        simulate = self.data["simulate"]
        noise_free = simulate is not None and simulate["noise_free_targets"]
        return "inputs" if noise_free and self.data["targets"] == "inputs" else "own"

    def to_dict(self):
        """Every key of every section (JSON-able)."""
        return {name: copy.deepcopy(getattr(self, name)) for name in self.SECTIONS}

    def dumps(self):
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def differences(self, other):
        """Dotted keys whose values differ between two configs."""
        found = []

        def walk(a, b, path):
            if isinstance(a, dict) and isinstance(b, dict):
                for key in sorted(set(a) | set(b)):
                    walk(a.get(key), b.get(key), path + (key,))
            elif a != b:
                found.append(".".join(path))

        walk(self.to_dict(), other.to_dict() if isinstance(other, TrainingConfig) else other, ())
        return found

    def __repr__(self):
        return f"TrainingConfig(source={self.source!r}, output={self.output!r}, total_steps={self.total_steps})"


def _check_cross(config, validation_simulate_keys=()):
    """Rules that involve several keys; fills the defaults that depend on
    other keys. ``validation_simulate_keys``: the validation.simulate keys
    the file wrote (the others follow data.simulate)."""
    model, data, validation, training, optimizer = (
        config.model, config.data, config.validation, config.training, config.optimizer)

    if (data["folder"] is None) == (data["simulate"] is None):
        raise ValueError(
            "data needs exactly one source: data.folder (a folder of OME-TIFF stacks) or data.simulate "
            f"(simulated stacks, e.g. {{sample: beads, count: 8}}); got "
            + ("both" if data["folder"] is not None else "neither")
        )
    if data["num_inputs"] > 1 and data["input_spacing_um"] is None:
        raise ValueError(
            f"data.input_spacing_um (Δz in µm between input planes) is required when data.num_inputs > 1; "
            f"got num_inputs = {data['num_inputs']} and no input_spacing_um"
        )
    if data["num_inputs"] == 1 and data["input_spacing_um"] is None and data["output_margin_um"] is None:
        raise ValueError(
            "data.num_inputs = 1 needs data.output_margin_um (µm): the axial range around the input plane that "
            "output planes are drawn from (e.g. 1.5 for Deep-Z on beads)"
        )
    if data["spacing_jitter_um"] > 0 and data["input_spacing_um"] is not None and data["num_inputs"] > 1 and (
            data["spacing_jitter_um"] >= data["input_spacing_um"] / 2):
        raise ValueError(
            f"data.spacing_jitter_um must be < data.input_spacing_um / 2 = {data['input_spacing_um'] / 2:g} µm "
            f"so that the inputs keep their order; got {data['spacing_jitter_um']:g}"
        )
    if data["spacing_jitter_um"] > 0 and data["spacing"] != "uniform":
        raise ValueError("data.spacing_jitter_um applies to data.spacing: uniform only (random already draws "
                         "non-uniform planes); set it to 0 or use spacing: uniform")

    if model["init_preset"] is not None and model["config"]:
        raise ValueError(
            "model.config must be empty when model.init_preset is given: the architecture comes from the preset "
            f"(got model.config keys {sorted(model['config'])})"
        )
    if model["class"] == "DeepZ" and data["num_inputs"] != 1:
        raise ValueError(f"model.class DeepZ takes one input image: set data.num_inputs to 1; got "
                         f"{data['num_inputs']}")
    if model["class"] == "UNet3D":
        given = model["config"].get("num_inputs")
        if given is not None and given != data["num_inputs"]:
            raise ValueError(
                f"model.config.num_inputs ({given!r}) must equal data.num_inputs ({data['num_inputs']}): UNet3D "
                "takes a fixed number of input images"
            )

    if config.adversarial:
        blocks = config.discriminator["config"].get("num_blocks", 5)
        if _is_int(blocks) and blocks >= 1:
            patch = data["patch_size"]
            smallest = min(patch) if isinstance(patch, list) else patch
            if smallest < 2**blocks:
                raise ValueError(
                    f"data.patch_size {patch} is smaller than the discriminator accepts ({2**blocks} pixels = "
                    f"2**num_blocks, num_blocks = {blocks}); use a larger patch, fewer "
                    "discriminator.config.num_blocks, or loss.adversarial_weight: 0"
                )

    if (training["steps"] is None) == (training["epochs"] is None):
        raise ValueError(
            "training needs exactly one of steps (total training steps) or epochs (with steps_per_epoch); got "
            + ("both" if training["steps"] is not None else "neither")
        )
    if training["steps_per_epoch"] is None:
        if training["epochs"] is not None:
            raise ValueError("training.epochs needs training.steps_per_epoch (steps per epoch)")
        training["steps_per_epoch"] = min(training["steps"], 500)
    if optimizer["warmup_steps"] >= config.total_steps:
        raise ValueError(
            f"optimizer.warmup_steps ({optimizer['warmup_steps']}) must be smaller than the run's "
            f"{config.total_steps} training steps"
        )
    if optimizer["min_learning_rate"] > optimizer["learning_rate"]:
        raise ValueError(
            f"optimizer.min_learning_rate ({optimizer['min_learning_rate']:g}) must not exceed "
            f"optimizer.learning_rate ({optimizer['learning_rate']:g})"
        )
    if optimizer["discriminator_learning_rate"] is None:
        optimizer["discriminator_learning_rate"] = optimizer["learning_rate"]

    if validation is not None:
        if validation["folder"] is not None and validation["simulate"] is not None:
            raise ValueError("validation takes one source: validation.folder or validation.simulate, not both")
        if validation["folder"] is None and validation["simulate"] is None:
            if data["simulate"] is None:
                raise ValueError(
                    "validation needs held-out stacks: validation.folder (other files than data.folder) or "
                    "validation.simulate; or write 'validation: null' to train without validation"
                )
            validation["simulate"] = {"count": max(1, data["simulate"]["count"] // 8)}
            validation_simulate_keys = {"count"}
        if validation["folder"] is not None and data["folder"] is not None and (
                pathlib.Path(validation["folder"]).resolve() == pathlib.Path(data["folder"]).resolve()):
            raise ValueError(
                f"validation.folder is data.folder ({data['folder']}): validation needs held-out stacks, "
                "not the training stacks"
            )
        if validation["simulate"] is not None:
            validation["simulate"] = _inherit_simulate(validation["simulate"], validation_simulate_keys, data["simulate"])
            _check_disjoint_seeds(data["simulate"], validation["simulate"])
        if validation["batch_size"] is None:
            validation["batch_size"] = data["batch_size"]


def _inherit_simulate(given, written, base):
    """validation.simulate: the keys written, the others from data.simulate
    (the seed: data.simulate.seed + VALIDATION_SEED_OFFSET)."""
    merged = {}
    defaults = {key: field.default for key, field in _simulate_fields().items()}
    for key in defaults:
        if key in written:
            merged[key] = given[key]
        elif key == "seed":
            merged[key] = (base["seed"] if base is not None else 0) + VALIDATION_SEED_OFFSET
        elif base is not None:
            merged[key] = copy.deepcopy(base[key])
        else:
            merged[key] = copy.deepcopy(defaults[key])
    return merged


def _check_disjoint_seeds(train, valid):
    if train is None or train["sample"] != valid["sample"]:
        return
    train_seeds = range(train["seed"], train["seed"] + train["count"])
    valid_seeds = range(valid["seed"], valid["seed"] + valid["count"])
    shared = sorted(set(train_seeds) & set(valid_seeds))
    if shared:
        raise ValueError(
            f"validation.simulate seeds {valid_seeds.start}..{valid_seeds.stop - 1} overlap the training seeds "
            f"{train_seeds.start}..{train_seeds.stop - 1} (shared: {shared[0]}...): validation needs other "
            f"objects; e.g. validation.simulate.seed: {train_seeds.stop + VALIDATION_SEED_OFFSET}"
        )


def training_config_from_dict(mapping, source=None):
    """Checks a config mapping and returns a `TrainingConfig` with defaults.

    Args:
        mapping: dict as read from YAML/JSON (sections as in ``SCHEMA``).
        source: optional file name, for ``TrainingConfig.source`` and the
            default output folder (``runs/<file stem>``).

    Raises:
        ValueError: unknown keys (listing the accepted ones), values out of
            range, missing or conflicting keys.
        TypeError: a value of the wrong type.
    """
    if not isinstance(mapping, dict):
        raise TypeError(
            "a training config is a mapping with sections " + ", ".join(SCHEMA) + f"; got {type(mapping).__name__}"
        )
    mapping = copy.deepcopy(mapping)
    # Which validation.simulate keys were written (the others follow data.simulate).
    given_validation_simulate = None
    validation = mapping.get("validation")
    if isinstance(validation, dict) and isinstance(validation.get("simulate"), dict):
        given_validation_simulate = set(validation["simulate"])
    sections = _check_section((), SCHEMA, mapping)
    if "validation" not in mapping:
        # Absent means "the default validation"; `validation: null` means none.
        sections["validation"] = _check_section(("validation",), SCHEMA["validation"].fields, {})
    if sections["output"] is None:
        stem = pathlib.Path(source).name.split(".")[0] if source else "training"
        sections["output"] = str(pathlib.Path("runs") / stem)
    config = TrainingConfig(sections, source=source)
    _check_cross(config, given_validation_simulate or set())
    return config


def parse_override(text):
    """``"section.key=value"`` -> ``(["section", "key"], value)``, the value
    read as YAML (``training.steps=100``, ``data.simulate=null``,
    ``data.patch_size=[64, 64]``)."""
    import yaml

    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"an override is KEY=VALUE with a dotted key, e.g. training.steps=100; got {text!r}")
    key, _, raw = text.partition("=")
    path = [part.strip() for part in key.strip().split(".")]
    if not all(path):
        raise ValueError(f"an override key is dotted section names, e.g. data.simulate.count; got {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ValueError(f"override {text!r}: the value is not valid YAML ({error.problem})") from None
    return path, value


def apply_overrides(mapping, overrides):
    """Sets each ``"a.b.c=value"`` of ``overrides`` in a copy of ``mapping``."""
    mapping = copy.deepcopy(mapping)
    for text in overrides or ():
        path, value = parse_override(text)
        node = mapping
        for depth, key in enumerate(path[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                raise ValueError(
                    f"override {text!r}: {'.'.join(path[: depth + 1])} is {child!r}, not a section with keys"
                )
            node = child
        node[path[-1]] = value
    return mapping


def read_config_file(path):
    """The mapping in a YAML (.yaml, .yml) or JSON (.json) file."""
    import yaml

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training config at {path}")
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ValueError(f"a training config is a .yaml, .yml or .json file; got {path.name!r}")
    text = path.read_text(encoding="utf-8")
    try:
        mapping = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error.msg} at line {error.lineno}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path} is not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    if mapping is None:
        raise ValueError(f"{path} is empty; a training config needs at least data and training sections")
    if not isinstance(mapping, dict):
        raise ValueError(f"{path} must hold a mapping of sections ({', '.join(SCHEMA)}); got a "
                         f"{type(mapping).__name__}")
    return mapping


def load_training_config(path, overrides=None, output=None):
    """Reads, checks and completes a training config file.

    Args:
        path: a ``.yaml``/``.yml`` or ``.json`` file.
        overrides: optional list of ``"section.key=value"`` (YAML values),
            applied before checking.
        output: optional run folder replacing the config's ``output``.

    Returns:
        `TrainingConfig`.

    Raises:
        FileNotFoundError: no such file.
        ValueError / TypeError: what is wrong, naming the key and what is
            accepted.
    """
    mapping = apply_overrides(read_config_file(path), overrides)
    if output is not None:
        mapping["output"] = os.fspath(output)
    return training_config_from_dict(mapping, source=str(path))


def describe_schema(fields=None, prefix=""):
    """Markdown table rows ``| key | default | accepts | meaning |`` of every key."""
    fields = SCHEMA if fields is None else fields
    rows = []
    for key, field in fields.items():
        name = prefix + key
        if field.kind == "section":
            rows.append(f"| `{name}` | — | section{' or null' if field.nullable else ''} | {field.doc.replace('|', chr(92) + '|')} |")
            rows.extend(describe_schema(field.fields, name + "."))
            continue
        default = field.shown_default or f"`{json.dumps(field.default)}`"
        doc = field.doc.replace("|", "\\|")
        rows.append(f"| `{name}` | {default} | {field.accepted()} | {doc} |")
    return rows
