"""The training configuration of ``keras-rmz train``: a YAML or JSON file read
into typed dataclasses, one per section, defaults filled in.

```yaml
output: runs/recurrent_mz_beads_m3      # run folder: checkpoint, CSV log, preset/
model: {class: RecurrentMZ, config: {}}
data:
  simulate: {sample: beads, count: 32, seed: 0}   # or folder: path/to/stacks
  num_inputs: 3
  input_spacing_um: 3.0
training: {steps: 20000, steps_per_epoch: 500}
loss: {adversarial_weight: 0.5}         # 0: no discriminator, plain fit
```

Every key, its default and what it accepts is in docs/training.md (a test
keeps that table equal to the dataclasses below). Each field's annotation
says what it accepts; errors name the key (``data.patch_size``), what was
given and what is accepted, in one line: a ``ValueError`` (or ``TypeError``
for a value of the wrong type). The arguments that go on to `VolumeDataset`,
`simulate_stack` and the model constructors are checked again there.

Example:

```python
from keras_rmz.training.config import load_training_config

config = load_training_config("examples/configs/recurrent_mz_beads_m3.yaml",
                              overrides=["training.steps=100"])
config.total_steps, config.adversarial, config.data.patch_size   # (100, True, 256)
```
"""

import copy
import dataclasses
import json
import math
import numbers
import os
import pathlib
import typing
from typing import Annotated

import numpy as np

from keras_rmz.data import volume_dataset
from keras_rmz.simulate.randomize import DISTRIBUTIONS
from keras_rmz.simulate.simulate_stack import SAMPLES

# Model classes `keras-rmz train` can build (keras_rmz.models.<name>).
MODEL_CLASSES = ("RecurrentMZ", "RecurrentMZPlus", "DeepZ", "UNet3D")
# Training stacks use seeds seed .. seed + count - 1; the default validation
# stacks start this far above, so the two never share an object.
VALIDATION_SEED_OFFSET = 100_000
# Keys of a resumed run that may differ from the run's first session.
# training.precision: the weights and the optimizer state stay float32 in
# every precision, so a session on other hardware may compute in another.
RESUMABLE_CHANGES = ("output", "training.steps", "training.epochs", "training.precision", "training.distribution",
                     "preset")


# --- What a key accepts: the annotation of its field --------------------------


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class _Accepts:
    """What a field accepts (the metadata of its ``Annotated`` type):
    ``words`` for the error message; ``convert(value)`` returns the value or
    raises ValueError/TypeError (the caller writes the message)."""


class Int(_Accepts):
    def __init__(self, minimum=0):
        self.minimum, self.words = minimum, f"an integer >= {minimum}"

    def convert(self, value):
        if not _is_int(value):
            raise TypeError
        if value < self.minimum:
            raise ValueError
        return int(value)


class Float(_Accepts):
    def __init__(self, minimum=None, positive=False):
        self.minimum, self.positive = minimum, positive
        self.words = "a number > 0" if positive else (f"a number >= {minimum:g}" if minimum is not None else "a number")

    def convert(self, value):
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as text
            value = float(value)  # a ValueError is reported as a TypeError below
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError
        value = float(value)
        if not math.isfinite(value) or (self.positive and value <= 0) or (
                self.minimum is not None and value < self.minimum):
            raise ValueError
        return value


class Choice(_Accepts):
    def __init__(self, choices):
        self.choices, self.words = tuple(choices), "one of " + ", ".join(repr(c) for c in choices)

    def convert(self, value):
        if not isinstance(value, str) or value not in self.choices:
            raise ValueError
        return value


class Ints(_Accepts):
    """``count`` integers >= 1 as a list; ``scalar``: one integer is accepted too."""

    def __init__(self, count, words, scalar=False):
        self.count, self.words, self.scalar = count, words, scalar

    def convert(self, value):
        if self.scalar and _is_int(value) and value >= 1:
            return int(value)
        if not isinstance(value, (list, tuple)) or len(value) != self.count or not all(
                _is_int(v) and v >= 1 for v in value):
            raise ValueError
        return [int(v) for v in value]


class _Simple(_Accepts):
    def __init__(self, words, check, convert=lambda v: v):
        self.words, self._check, self._convert = words, check, convert

    def convert(self, value):
        if not self._check(value):
            raise TypeError
        return self._convert(value)


BOOL = _Simple("true or false", lambda v: isinstance(v, (bool, np.bool_)), bool)
TEXT = _Simple("a string", lambda v: isinstance(v, (str, os.PathLike)) and str(v).strip(), os.fspath)
PATH = _Simple("a path", TEXT._check, os.fspath)
MAPPING = _Simple("a mapping of keys to values",
                  lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v), copy.deepcopy)
COUNT = Int(1)
POSITIVE = Float(positive=True)
NON_NEGATIVE = Float(minimum=0.0)


def _kind(field):
    """``(section dataclass or None, _Accepts or None, nullable)`` of a field."""
    hint, accepts = field.type, None
    if typing.get_origin(hint) is Annotated:
        hint, accepts = typing.get_args(hint)[:2]
    options = typing.get_args(hint) or (hint,)
    section = next((option for option in options if dataclasses.is_dataclass(option)), None)
    return section, accepts, type(None) in options


def describe(field):
    """What a (non-section) field accepts, in words."""
    _, accepts, nullable = _kind(field)
    return accepts.words + (" or null" if nullable else "")


def _key(field):
    """The config key of a dataclass field (``class`` is a Python keyword)."""
    return field.metadata.get("key", field.name)


def _section(path, cls, mapping):
    """``cls`` (a section dataclass) from a mapping, each value checked by its
    field's annotation."""
    where = ".".join(path)
    fields = {_key(f): f for f in dataclasses.fields(cls) if _key(f) is not None}
    if not isinstance(mapping, dict):
        raise TypeError(f"{where} must be a mapping with keys {', '.join(fields)}; got {mapping!r}")
    unknown = [key for key in mapping if key not in fields]
    if unknown:
        raise ValueError(
            f"unknown key {unknown[0]!r} {'in ' + where if where else 'at the top level'}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; accepted keys: {', '.join(fields)}"
        )
    values = {}
    for key, field in fields.items():
        if key not in mapping:
            continue
        value, (section, accepts, nullable) = mapping[key], _kind(field)
        if value is None and nullable:
            values[field.name] = None
        elif section is not None:
            values[field.name] = _section(path + (key,), section, value)
        else:
            try:
                values[field.name] = accepts.convert(value)
            except (ValueError, TypeError) as error:
                error_class = ValueError if value is None else type(error)
                raise error_class(f"{'.'.join(path + (key,))} must be {describe(field)}; got {value!r}") from None
    return cls(**values)


# --- The sections -------------------------------------------------------------


@dataclasses.dataclass
class SimulateSection:
    """Simulated stacks (keras_rmz.simulate.simulate_stack, or
    randomized_stack with ``randomize``); stack i uses seed + i."""

    sample: Annotated[str, Choice(SAMPLES)] = "beads"
    randomize: Annotated[str | None, Choice(tuple(DISTRIBUTIONS))] = None
    count: Annotated[int, COUNT] = 8
    shape: Annotated[list | None, Ints(3, "three integers >= 1 [Z, Y, X]")] = None
    z_step_um: Annotated[float | None, POSITIVE] = None
    pixel_um: Annotated[float, POSITIVE] = 0.1
    density_per_um3: Annotated[float | None, NON_NEGATIVE] = None
    seed: Annotated[int, Int()] = 0
    noise_free_targets: Annotated[bool, BOOL] = False
    cache: Annotated[bool, BOOL] = True


@dataclasses.dataclass
class ModelSection:
    class_name: Annotated[str, Choice(MODEL_CLASSES)] = dataclasses.field(default="RecurrentMZ", metadata={"key": "class"})
    config: Annotated[dict, MAPPING] = dataclasses.field(default_factory=dict)
    init_preset: Annotated[str | None, TEXT] = None


@dataclasses.dataclass
class DiscriminatorSection:
    config: Annotated[dict, MAPPING] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DataSection:
    folder: Annotated[str | None, PATH] = None
    simulate: SimulateSection | None = None
    targets: Annotated[str, Choice(("inputs", "confocal"))] = "inputs"
    z_step_um: Annotated[float | None, POSITIVE] = None
    pixel_um: Annotated[float | None, POSITIVE] = None
    num_inputs: Annotated[int, COUNT] = 3
    input_spacing_um: Annotated[float | None, POSITIVE] = None
    spacing: Annotated[str, Choice(volume_dataset.SPACINGS)] = "uniform"
    spacing_jitter_um: Annotated[float, NON_NEGATIVE] = 0.0
    output_margin_um: Annotated[float | None, NON_NEGATIVE] = None
    patch_size: Annotated[int | list, Ints(2, "an integer >= 1 or [height, width]", scalar=True)] = 256
    batch_size: Annotated[int, COUNT] = 4
    order: Annotated[str, Choice(volume_dataset.ORDERS)] = "sorted"
    augment: Annotated[bool, BOOL] = True
    min_signal: Annotated[float | None, Float()] = None
    # "auto": "inputs" for noise-free targets of the same modality, else "own".
    target_normalization: Annotated[str, Choice(("auto", *volume_dataset.TARGET_NORMALIZATIONS))] = "auto"
    normalization_source: Annotated[str, Choice(volume_dataset.NORMALIZATION_SOURCES)] = "stack"
    seed: Annotated[int, Int()] = 0


@dataclasses.dataclass
class ValidationSection:
    folder: Annotated[str | None, PATH] = None
    # Keys not written follow data.simulate; the seed data.simulate.seed + VALIDATION_SEED_OFFSET.
    simulate: SimulateSection | None = None
    steps: Annotated[int, COUNT] = 4
    batch_size: Annotated[int | None, COUNT] = None  # None: data.batch_size
    seed: Annotated[int, Int()] = 1
    monitor: Annotated[str, Choice(("val_psnr", "val_ssim", "val_loss"))] = "val_psnr"


@dataclasses.dataclass
class TrainingSection:
    steps: Annotated[int | None, COUNT] = None
    epochs: Annotated[int | None, COUNT] = None
    steps_per_epoch: Annotated[int | None, COUNT] = None  # None: min(steps, 500)
    checkpoint_every: Annotated[int, COUNT] = 50
    seed: Annotated[int, Int()] = 0
    preset_weights: Annotated[str, Choice(("best", "last"))] = "best"
    # Keras mixed precision (keras_rmz.precision): "auto" is the fastest that
    # keeps accuracy on the hardware of each session.
    precision: Annotated[str, Choice(("auto", "float32", "bfloat16", "float16"))] = "auto"
    # keras.distribution.DataParallel over every device (JAX only).
    distribution: Annotated[str | None, Choice(("data_parallel",))] = None


@dataclasses.dataclass
class OptimizerSection:
    learning_rate: Annotated[float, POSITIVE] = 1e-5
    discriminator_learning_rate: Annotated[float | None, POSITIVE] = None  # None: learning_rate
    schedule: Annotated[str, Choice(("constant", "cosine"))] = "constant"
    warmup_steps: Annotated[int, Int()] = 0
    min_learning_rate: Annotated[float, NON_NEGATIVE] = 0.0


@dataclasses.dataclass
class LossSection:
    berhu_weight: Annotated[float, NON_NEGATIVE] = 3.0
    ms_ssim_weight: Annotated[float, NON_NEGATIVE] = 1.0
    adversarial_weight: Annotated[float, NON_NEGATIVE] = 0.5
    berhu_c: Annotated[float, POSITIVE] = 0.1
    berhu_adaptive: Annotated[bool, BOOL] = False


@dataclasses.dataclass
class PresetSection:
    description: Annotated[str | None, TEXT] = None
    license: Annotated[str, TEXT] = "apache-2.0"
    metadata: Annotated[dict, MAPPING] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainingConfig:
    """A checked training config: one dataclass per section.

    Made by `load_training_config` or `training_config_from_dict`. ``source``
    is the file it was read from (or None); ``validation`` is None for a run
    without validation.
    """

    output: Annotated[str | None, PATH] = None  # None: runs/<config file stem>
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    discriminator: DiscriminatorSection = dataclasses.field(default_factory=DiscriminatorSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    validation: ValidationSection | None = None
    training: TrainingSection = dataclasses.field(default_factory=TrainingSection)
    optimizer: OptimizerSection = dataclasses.field(default_factory=OptimizerSection)
    loss: LossSection = dataclasses.field(default_factory=LossSection)
    preset: PresetSection = dataclasses.field(default_factory=PresetSection)
    source: str | None = dataclasses.field(default=None, compare=False, metadata={"key": None})

    @property
    def adversarial(self):
        """True when the generator is trained against a discriminator."""
        return self.loss.adversarial_weight > 0

    @property
    def steps_per_epoch(self):
        return self.training.steps_per_epoch

    @property
    def total_steps(self):
        """Training steps of the whole run."""
        if self.training.steps is not None:
            return self.training.steps
        return self.training.epochs * self.training.steps_per_epoch

    @property
    def num_epochs(self):
        """Epochs of the run; the last one may be shorter than steps_per_epoch."""
        return -(-self.total_steps // self.steps_per_epoch)

    @property
    def target_normalization(self):
        """"own" or "inputs": data.target_normalization with "auto" resolved."""
        if self.data.target_normalization != "auto":
            return self.data.target_normalization
        noise_free = self.data.simulate is not None and self.data.simulate.noise_free_targets
        return "inputs" if noise_free and self.data.targets == "inputs" else "own"

    def to_dict(self):
        """Every key of every section, as the config file writes them (JSON-able)."""

        def convert(section):
            return {_key(f): (convert(v) if dataclasses.is_dataclass(v := getattr(section, f.name)) else
                              copy.deepcopy(v))
                    for f in dataclasses.fields(section) if _key(f) is not None}

        return convert(self)

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


# --- Rules that involve several keys -------------------------------------------


def _check_data(data):
    if (data.folder is None) == (data.simulate is None):
        raise ValueError(
            "data needs exactly one source: data.folder (a folder of OME-TIFF stacks) or data.simulate "
            "(simulated stacks, e.g. {sample: beads, count: 8}); got "
            + ("both" if data.folder is not None else "neither")
        )
    # The rules between the sampling keys are VolumeDataset's own.
    arguments = ("num_inputs", "input_spacing_um", "spacing", "spacing_jitter_um", "output_margin_um",
                 "patch_size", "batch_size", "order", "min_signal", "normalization_source")
    try:
        volume_dataset.VolumeDataset.check_arguments(**{name: getattr(data, name) for name in arguments})
    except (ValueError, TypeError) as error:
        raise type(error)(f"data.{error}") from None


def _check_model(config):
    model, data = config.model, config.data
    if model.init_preset is not None and model.config:
        raise ValueError(
            "model.config must be empty when model.init_preset is given: the architecture comes from the preset "
            f"(got model.config keys {sorted(model.config)})"
        )
    if model.class_name == "DeepZ" and data.num_inputs != 1:
        raise ValueError(f"model.class DeepZ takes one input image: set data.num_inputs to 1; got {data.num_inputs}")
    given = model.config.get("num_inputs")
    if model.class_name == "UNet3D" and given is not None and given != data.num_inputs:
        raise ValueError(
            f"model.config.num_inputs ({given!r}) must equal data.num_inputs ({data.num_inputs}): UNet3D "
            "takes a fixed number of input images"
        )
    blocks = config.discriminator.config.get("num_blocks", 5)
    if config.adversarial and _is_int(blocks) and blocks >= 1:
        patch = data.patch_size
        if (min(patch) if isinstance(patch, list) else patch) < 2**blocks:
            raise ValueError(
                f"data.patch_size {patch} is smaller than the discriminator accepts ({2**blocks} pixels = "
                f"2**num_blocks, num_blocks = {blocks}); use a larger patch, fewer "
                "discriminator.config.num_blocks, or loss.adversarial_weight: 0"
            )


def _check_schedule(config):
    training, optimizer = config.training, config.optimizer
    if (training.steps is None) == (training.epochs is None):
        raise ValueError(
            "training needs exactly one of steps (total training steps) or epochs (with steps_per_epoch); got "
            + ("both" if training.steps is not None else "neither")
        )
    if training.steps_per_epoch is None:
        if training.epochs is not None:
            raise ValueError("training.epochs needs training.steps_per_epoch (steps per epoch)")
        training.steps_per_epoch = min(training.steps, 500)
    if optimizer.warmup_steps >= config.total_steps:
        raise ValueError(
            f"optimizer.warmup_steps ({optimizer.warmup_steps}) must be smaller than the run's "
            f"{config.total_steps} training steps"
        )
    if optimizer.min_learning_rate > optimizer.learning_rate:
        raise ValueError(
            f"optimizer.min_learning_rate ({optimizer.min_learning_rate:g}) must not exceed "
            f"optimizer.learning_rate ({optimizer.learning_rate:g})"
        )
    if optimizer.discriminator_learning_rate is None:
        optimizer.discriminator_learning_rate = optimizer.learning_rate


def _validation(mapping, data):
    """The validation section: absent means the default validation, null none.
    Keys of validation.simulate not written follow data.simulate."""
    if "validation" in mapping and mapping["validation"] is None:
        return None
    raw = mapping.get("validation", {})
    if isinstance(raw, dict) and raw.get("folder") is None:
        given = raw.get("simulate")
        if given is None and data.simulate is not None:
            given = {"count": max(1, data.simulate.count // 8)}
        if isinstance(given, dict):
            inherited = dataclasses.asdict(data.simulate or SimulateSection())
            inherited["seed"] += VALIDATION_SEED_OFFSET
            raw = {**raw, "simulate": {**inherited, **given}}
    validation = _section(("validation",), ValidationSection, raw)
    if validation.folder is not None and validation.simulate is not None:
        raise ValueError("validation takes one source: validation.folder or validation.simulate, not both")
    if validation.folder is None and validation.simulate is None:
        raise ValueError(
            "validation needs held-out stacks: validation.folder (other files than data.folder) or "
            "validation.simulate; or write 'validation: null' to train without validation"
        )
    if validation.folder is not None and data.folder is not None and (
            pathlib.Path(validation.folder).resolve() == pathlib.Path(data.folder).resolve()):
        raise ValueError(
            f"validation.folder is data.folder ({data.folder}): validation needs held-out stacks, "
            "not the training stacks"
        )
    train, valid = data.simulate, validation.simulate
    if train is not None and valid is not None and train.sample == valid.sample:
        train_seeds = range(train.seed, train.seed + train.count)
        valid_seeds = range(valid.seed, valid.seed + valid.count)
        shared = sorted(set(train_seeds) & set(valid_seeds))
        if shared:
            raise ValueError(
                f"validation.simulate seeds {valid_seeds.start}..{valid_seeds.stop - 1} overlap the training "
                f"seeds {train_seeds.start}..{train_seeds.stop - 1} (shared: {shared[0]}...): validation needs "
                f"other objects; e.g. validation.simulate.seed: {train_seeds.stop + VALIDATION_SEED_OFFSET}"
            )
    if validation.batch_size is None:
        validation.batch_size = data.batch_size
    return validation


def training_config_from_dict(mapping, source=None):
    """Checks a config mapping and returns a `TrainingConfig` with defaults.

    Args:
        mapping: dict as read from YAML/JSON (sections as in docs/training.md).
        source: optional file name, for ``TrainingConfig.source`` and the
            default output folder (``runs/<file stem>``).

    Raises:
        ValueError: unknown keys (listing the accepted ones), values out of
            range, missing or conflicting keys.
        TypeError: a value of the wrong type.
    """
    sections = [_key(f) for f in dataclasses.fields(TrainingConfig) if _key(f)]
    if not isinstance(mapping, dict):
        raise TypeError(f"a training config is a mapping with sections {', '.join(sections)}; "
                        f"got {type(mapping).__name__}")
    # The validation section depends on the data section: checked after it.
    config = _section((), TrainingConfig, {k: v for k, v in mapping.items() if k != "validation"})
    _check_data(config.data)
    config.validation = _validation(mapping, config.data)
    _check_model(config)
    _check_schedule(config)
    if config.output is None:
        stem = pathlib.Path(source).name.split(".")[0] if source else "training"
        config.output = str(pathlib.Path("runs") / stem)
    config.source = None if source is None else str(source)
    return config


# --- Files and --set overrides -------------------------------------------------


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
        raise ValueError(f"{path} must hold a mapping of sections; got a {type(mapping).__name__}")
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
