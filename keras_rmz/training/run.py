"""A training run from a YAML/JSON config, resumable (``keras-rmz train``).

Example:

```
keras-rmz train examples/train_beads_m3.yaml
keras-rmz train examples/configs/recurrent_mz_beads_m3.yaml --max-minutes 50   # again to resume
keras-rmz train my.yaml --set training.steps=200 --set data.simulate.count=4 --output runs/try
```

The run folder (``output`` in the config) holds:

- ``run.json``: the checked config, the sessions (command, wall time, steps)
  and the state (running, stopped, done);
- ``checkpoint.h5``: the full training state (weights, both optimizers,
  counters), written every ``training.checkpoint_every`` steps, at every
  epoch end and when a session stops (``keras_rmz.training.TrainingCheckpoint``);
- ``best.weights.h5`` / ``best.json``: the generator at the best validation
  score;
- ``log.csv``: one row per epoch (``keras.callbacks.CSVLogger``, appended
  across sessions), with the global ``step``;
- ``simulated/``: the simulated stacks (``data.simulate.cache``);
- ``preset/``: at the end, the trained model as a preset folder
  (``keras_rmz.presets.save_preset``) with metadata: optics, pixel size, z
  step, M, Δz, normalization, the command and config, steps, wall time,
  backend and versions.

Running the same command again resumes where the last session stopped, at
the exact step: items are drawn from ``(seed, epoch, index)``, so a resumed
run sees the batches an uninterrupted one would.

``train_from_config(config, ...)`` runs it; ``keras-rmz train`` is its
command line.
"""

import contextlib
import copy
import csv
import datetime
import hashlib
import importlib.metadata
import inspect
import json
import os
import pathlib
import platform
import shutil
import signal
import sys
import threading
import time

import keras
import numpy as np
from tqdm.auto import tqdm

from keras_rmz import models
from keras_rmz.data import VolumeDataset
from keras_rmz.io import read_stack, read_stack_with_defaults, write_stack
from keras_rmz.io.atomic import write_json
from keras_rmz.losses import RecurrentMZLoss
from keras_rmz.metrics.keras_metrics import PSNR, SSIM
from keras_rmz.models.discriminator import Discriminator
from keras_rmz.precision import policy_name, precision_of_policy
from keras_rmz.presets import load_preset, save_preset
from keras_rmz.simulate import randomized_pair, randomized_stack, simulate_stack
from keras_rmz.simulate.randomize import describe_distribution
from keras_rmz.training.adversarial_trainer import AdversarialTrainer
from keras_rmz.training.callbacks import TrainingCheckpoint
from keras_rmz.training.config import RESUMABLE_CHANGES
from keras_rmz.version import __version__

RUN_FILE = "run.json"
LOG_FILE = "log.csv"
PRESET_DIR = "preset"
SIMULATED_DIR = "simulated"
# The grid of randomized stacks when data.simulate gives none (the nuclei defaults).
RANDOMIZED_SHAPE = (91, 256, 256)
RANDOMIZED_Z_STEP_UM = 0.2
RUN_FORMAT = "keras_rmz.training_run"
# Files of a run that --no-resume removes.
_RUN_FILES = (RUN_FILE, LOG_FILE, "checkpoint.h5", "best.weights.h5", "best.json")
_TIFF_SUFFIXES = (".ome.tif", ".ome.tiff", ".tif", ".tiff")

SAMPLE_WORDS = {
    "beads": "50 nm fluorescent beads",
    "nuclei": "C. elegans neuron nuclei",
}


# --------------------------------------------------------------------------
# The run folder.
# --------------------------------------------------------------------------


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_run(output):
    """The ``run.json`` of a run folder, or None."""
    path = pathlib.Path(output) / RUN_FILE
    if not path.is_file():
        return None
    try:
        run_info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it or use --no-resume") from None
    if not isinstance(run_info, dict) or run_info.get("format") != RUN_FORMAT:
        raise ValueError(f"{path} is not a keras-rmz training run file; choose another output folder")
    return run_info


def _start_over(output):
    for name in _RUN_FILES:
        (output / name).unlink(missing_ok=True)
    preset = output / PRESET_DIR
    if preset.is_dir():
        shutil.rmtree(preset)


def _check_resumable(previous, config):
    """Raises ValueError when ``config`` differs from the run's in keys that a
    resumed run cannot change (anything but steps, epochs, preset text)."""
    old = previous.get("config") or {}
    changed = [
        key
        for key in config.differences(old)
        if not any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE_CHANGES)
    ]
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise ValueError(
            f"the config differs from the run in {config.output} in {shown}; a resumed run may change only "
            "training.steps/epochs, training.precision and preset. Use --no-resume to start over, or another --output"
        )


# --------------------------------------------------------------------------
# Data.
# --------------------------------------------------------------------------


def _stem(path):
    name = path.name
    for suffix in _TIFF_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[len(name) - len(suffix) :]
    return path.stem, path.suffix


def find_stack_files(folder, targets, what="data.folder"):
    """Input files (and paired target files) of a folder of stacks.

    ``targets="confocal"``: every ``<name>_widefield.<ext>`` with its
    ``<name>_confocal.<ext>``. ``targets="inputs"``: the ``*_widefield``
    files if there are any, otherwise every TIFF that is not ``*_confocal``.

    Returns:
        ``(inputs, targets)``: lists of paths (``targets`` None for "inputs").
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(_TIFF_SUFFIXES))
    widefield = [p for p in files if _stem(p)[0].endswith("_widefield")]
    if targets == "confocal":
        if not widefield:
            raise FileNotFoundError(
                f"{what} {folder} holds no <name>_widefield.ome.tif stacks to pair with <name>_confocal.ome.tif "
                "(data.targets: confocal; keras-rmz simulate --confocal writes such pairs)"
            )
        partners = []
        for path in widefield:
            stem, suffix = _stem(path)
            partner = path.with_name(stem[: -len("_widefield")] + "_confocal" + suffix)
            if not partner.is_file():
                raise FileNotFoundError(f"{what}: {path.name} has no confocal partner {partner.name} in {folder}")
            partners.append(partner)
        return widefield, partners
    inputs = widefield or [p for p in files if not _stem(p)[0].endswith("_confocal")]
    if not inputs:
        raise FileNotFoundError(f"{what} {folder} holds no TIFF stacks (*.ome.tif, *.tif, *.tiff)")
    return inputs, None


def _read_stacks(paths, data, what):
    stacks = []
    for path in paths:
        try:
            stacks.append(read_stack_with_defaults(path, z_step_um=data.z_step_um, pixel_um=data.pixel_um))
        except ValueError as error:
            message = str(error)
            if "does not record" in message:
                message += " Set data.z_step_um / data.pixel_um."
            raise ValueError(f"{what}: {path.name}: {message}") from None
    return stacks


def _cache_path(spec, modality, noise, seed, cache_dir):
    if cache_dir is None:
        return None
    settings = {
        "sample": spec.sample,
        "randomize": spec.randomize,
        "modality": modality,
        "shape": spec.shape,
        "z_step_um": spec.z_step_um,
        "pixel_um": spec.pixel_um,
        "density_per_um3": spec.density_per_um3,
        "noise": noise,
        "seed": seed,
        "keras_rmz": __version__,
    }
    if spec.randomize is None:
        del settings["randomize"]  # the names of caches made before randomization existed
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    kind = spec.sample if spec.randomize is None else spec.randomize
    return cache_dir / f"{kind}_{seed:06d}_{modality}{'' if noise else '_noise_free'}_{digest}.ome.tif"


def _read_cached(path):
    if path is not None and path.is_file():
        try:
            return read_stack(path)
        except (ValueError, OSError):
            pass  # a damaged cache file is simulated again
    return None


def _write_cached(path, stack):
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_stack(path, stack)
    return stack


def _simulate_cached(spec, modality, noise, seed, cache_dir):
    """``simulate_stack`` (or ``randomized_stack``) of one object, read from
    ``cache_dir`` when it was simulated before with the same settings (and
    keras_rmz version)."""
    path = _cache_path(spec, modality, noise, seed, cache_dir)
    stack = _read_cached(path)
    if stack is not None:
        return stack
    if spec.randomize is not None:
        stack = randomized_stack(spec.randomize, modality, pixel_um=spec.pixel_um, noise=noise, seed=seed,
                                 **_randomized_grid(spec))
    else:
        stack = simulate_stack(
            spec.sample,
            modality,
            shape=spec.shape,
            z_step_um=spec.z_step_um,
            pixel_um=spec.pixel_um,
            density_per_um3=spec.density_per_um3,
            noise=noise,
            seed=seed,
        )
    return _write_cached(path, stack)


def _randomized_grid(spec):
    return {"shape": spec.shape or RANDOMIZED_SHAPE, "z_step_um": spec.z_step_um or RANDOMIZED_Z_STEP_UM}


def _randomized_pair_cached(spec, seed, cache_dir):
    """A randomized stack and its noise-free twin, simulated once."""
    paths = [_cache_path(spec, "widefield", noise, seed, cache_dir) for noise in (True, False)]
    stacks = [_read_cached(path) for path in paths]
    if all(stack is not None for stack in stacks):
        return stacks
    pair = randomized_pair(spec.randomize, pixel_um=spec.pixel_um, seed=seed, **_randomized_grid(spec))
    return [_write_cached(path, stack) for path, stack in zip(paths, pair)]


def _simulated_stacks(spec, targets, output, what, verbose):
    cache_dir = output / SIMULATED_DIR if spec.cache else None
    inputs, paired = [], []
    seeds = range(spec.seed, spec.seed + spec.count)
    desc = f"simulate {what}" + (f" ({spec.randomize})" if spec.randomize else "")
    for seed in tqdm(seeds, desc=desc, unit="stack", disable=not verbose, file=sys.stderr):
        if spec.randomize is not None and targets != "confocal" and spec.noise_free_targets:
            noisy, clean = _randomized_pair_cached(spec, seed, cache_dir)
            inputs.append(noisy)
            paired.append(clean)
            continue
        inputs.append(_simulate_cached(spec, "widefield", True, seed, cache_dir))
        if targets == "confocal":
            paired.append(_simulate_cached(spec, "confocal", not spec.noise_free_targets, seed, cache_dir))
        elif spec.noise_free_targets:
            paired.append(_simulate_cached(spec, "widefield", False, seed, cache_dir))
    return inputs, (paired or None)


def _load_source(section, data, output, what, verbose):
    """Input and target stacks of ``section`` (data or validation)."""
    if section.simulate is not None:
        return _simulated_stacks(section.simulate, data.targets, output, what, verbose)
    input_paths, target_paths = find_stack_files(section.folder, data.targets, f"{what}.folder")
    stacks = _read_stacks(input_paths, data, what)
    targets = None if target_paths is None else _read_stacks(target_paths, data, what)
    return stacks, targets


def _volume_dataset(config, stacks, targets, *, validation, what):
    data = config.data
    try:
        return VolumeDataset(
            stacks,
            targets,
            num_inputs=data.num_inputs,
            input_spacing_um=data.input_spacing_um,
            spacing=data.spacing,
            spacing_jitter_um=data.spacing_jitter_um,
            output_margin_um=data.output_margin_um,
            patch_size=data.patch_size,
            batch_size=config.validation.batch_size if validation else data.batch_size,
            order=data.order,
            augment=data.augment and not validation,
            min_signal=data.min_signal,
            steps_per_epoch=config.validation.steps if validation else config.steps_per_epoch,
            resample_each_epoch=not validation,
            target_normalization=config.target_normalization,
            normalization_source=data.normalization_source,
            seed=config.validation.seed if validation else data.seed,
        )
    except (ValueError, TypeError) as error:
        raise ValueError(f"{what}: {error}") from None


def build_datasets(config, output, verbose=1):
    """``(train_dataset, validation_dataset or None, stacks)``: VolumeDatasets
    of the config's data and validation sections, and the training input
    stacks (their metadata goes into the preset)."""
    stacks, targets = _load_source(config.data, config.data, output, "data", verbose)
    train = _volume_dataset(config, stacks, targets, validation=False, what="data")
    validation = None
    if config.validation is not None:
        val_stacks, val_targets = _load_source(config.validation, config.data, output, "validation", verbose)
        validation = _volume_dataset(config, val_stacks, val_targets, validation=True, what="validation")
    return train, validation, stacks


# --------------------------------------------------------------------------
# Models and optimizers.
# --------------------------------------------------------------------------


def _construct(cls, kwargs, what):
    parameters = inspect.signature(cls.__init__).parameters
    accepted = [name for name, p in parameters.items() if name != "self" and p.kind is not p.VAR_KEYWORD]
    unknown = [key for key in kwargs if key not in accepted and key not in ("name", "dtype", "trainable")]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in {what}; {cls.__name__} accepts: {', '.join(accepted)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{what}: {error}") from None


def build_models(config):
    """``(generator, discriminator or None)`` as the config describes them."""
    name = config.model.class_name
    policy = policy_name(config.training.precision)
    if config.model.init_preset is not None:
        generator = load_preset(config.model.init_preset, dtype=policy)
        if type(generator).__name__ != name:
            raise ValueError(
                f"model.init_preset {config.model.init_preset!r} holds a {type(generator).__name__}, but "
                f"model.class is {name}; set model.class: {type(generator).__name__}"
            )
    else:
        cls = getattr(models, name, None)
        if not (isinstance(cls, type) and issubclass(cls, keras.Model)):
            from keras_rmz.training.config import MODEL_CLASSES

            available = [c for c in MODEL_CLASSES if isinstance(getattr(models, c, None), type)]
            raise ValueError(
                f"model.class {name} is not available in this keras_rmz; available: {', '.join(available)}"
            )
        kwargs = dict(config.model.config)
        if name == "UNet3D":
            kwargs.setdefault("num_inputs", config.data.num_inputs)
        generator = _construct(cls, {**kwargs, "dtype": policy}, "model.config")
    if hasattr(generator, "check_num_inputs"):
        try:
            generator.check_num_inputs(config.data.num_inputs)
        except ValueError as error:
            raise ValueError(f"data.num_inputs: {error}") from None
    discriminator = None
    if config.adversarial:
        discriminator = _construct(Discriminator, {**config.discriminator.config, "dtype": policy},
                                   "discriminator.config")
    return generator, discriminator


def learning_rate(config, rate):
    """``rate`` (a float) or a schedule: optional linear warm-up from 0 over
    ``optimizer.warmup_steps``, then constant or cosine decay to
    ``optimizer.min_learning_rate`` at the last step."""
    optimizer = config.optimizer
    warmup = optimizer.warmup_steps
    if optimizer.schedule == "constant" and warmup == 0:
        return rate
    # alpha = 1 keeps CosineDecay constant after the warm-up.
    alpha = 1.0 if optimizer.schedule == "constant" else optimizer.min_learning_rate / rate
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else rate,
        decay_steps=max(1, config.total_steps - warmup),
        alpha=alpha,
        warmup_target=rate if warmup else None,
        warmup_steps=warmup,
    )


def compile_model(config, generator, discriminator):
    """The model ``fit`` runs: an `AdversarialTrainer` (with a discriminator)
    or the generator itself, compiled with the config's loss and Adam."""
    loss_section = config.loss
    loss = RecurrentMZLoss(
        berhu_weight=loss_section.berhu_weight,
        ms_ssim_weight=loss_section.ms_ssim_weight,
        c=loss_section.berhu_c,
        adaptive=loss_section.berhu_adaptive,
    )
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate(config, config.optimizer.learning_rate))
    if discriminator is None:
        generator.compile(optimizer=optimizer, loss=loss, metrics=[PSNR(), SSIM()])
        return generator
    trainer = AdversarialTrainer(generator, discriminator)
    trainer.compile(
        generator_optimizer=optimizer,
        discriminator_optimizer=keras.optimizers.Adam(
            learning_rate=learning_rate(config, config.optimizer.discriminator_learning_rate)
        ),
        loss=loss,
        adversarial_weight=loss_section.adversarial_weight,
    )
    return trainer


# --------------------------------------------------------------------------
# Callbacks: sessions that stop and resume at any step.
# --------------------------------------------------------------------------


class EpochWindow(keras.utils.PyDataset):
    """Items ``offset .. offset + length - 1`` of a VolumeDataset: the rest
    of an epoch a session stopped in, or a last epoch shorter than
    ``steps_per_epoch``. Its epoch is set by ``RunControl``."""
    def __init__(self, dataset, offset=0, length=None):
        super().__init__()
        self.dataset = dataset
        self.offset = offset
        self.length = len(dataset) - offset if length is None else length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} is out of range for {self.length} items")
        return self.dataset[self.offset + index]


class RunControl(keras.callbacks.Callback):
    """Sets the dataset's epoch, validates after complete epochs, stops
    the session at ``deadline`` (time.monotonic()) or after
    ``max_steps`` steps, and tells the other callbacks whether an epoch
    ended early (``partial``)."""
    def __init__(self, config, train_data, validation_data, deadline=None, max_steps=None):
        super().__init__()
        self.config = config
        self.train_data = train_data
        self.validation_data = validation_data
        self.deadline = deadline
        self.max_steps = max_steps
        self.offset = 0
        self.session_steps = 0
        self.step_seconds = []
        self.stopped_by = None
        self.partial = False
        self._batches = 0
        self._batch_start = None
        self.signal_name = None  # set by the SIGTERM handler of the session

    def epoch_length(self, epoch):
        return min(self.config.steps_per_epoch, self.config.total_steps - epoch * self.config.steps_per_epoch)

    def on_epoch_begin(self, epoch, logs=None):
        # Items depend on (seed, epoch, index): the epoch is set here, so a
        # resumed run draws exactly the items an uninterrupted one would.
        self.train_data.epoch = epoch
        self._batches = 0
        self.partial = False

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self._batches = batch + 1
        self.session_steps += 1
        if self._batch_start is not None:
            self.step_seconds.append(time.monotonic() - self._batch_start)
        if self.signal_name is not None:
            self.stopped_by = self.signal_name
        elif self.max_steps is not None and self.session_steps >= self.max_steps:
            self.stopped_by = f"--max-steps {self.max_steps}"
        elif self.deadline is not None:
            # Stop when the next step would end after the deadline.
            # The median ignores the first step's compilation.
            recent = sorted(self.step_seconds[-20:]) or [0.0]
            if time.monotonic() + recent[len(recent) // 2] > self.deadline:
                self.stopped_by = "--max-minutes"
        if self.stopped_by is not None:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        done = self.offset + self._batches
        self.partial = done < self.epoch_length(epoch)
        if logs is None or self.partial:
            return
        logs["step"] = epoch * self.config.steps_per_epoch + done
        if self.validation_data is not None:
            scores = self.model.evaluate(self.validation_data, verbose=0, return_dict=True)
            logs.update({f"val_{name}": float(value) for name, value in scores.items()})


class RunCheckpoint(TrainingCheckpoint):
    """`TrainingCheckpoint` that records the step within an epoch a
    session stopped at, and counts steps from ``control.offset`` when a
    session starts mid-epoch."""
    def __init__(self, directory, control, **kwargs):
        super().__init__(directory, **kwargs)
        self.control = control

    def load(self, model):
        state = super().load(model)
        if extends_short_last_epoch(state, self.control.config.steps_per_epoch):
            # That epoch goes on from step `offset`.
            epoch, offset = divmod(self.global_step, self.control.config.steps_per_epoch)
            self.epoch = epoch
            if self.data is not None and hasattr(self.data, "epoch"):
                self.data.epoch = epoch
            self._last_saved = (epoch, offset, self.global_step)
        return state

    def resume_fit_at(self, epoch):
        """Nothing: `train_from_config` passes the checkpoint's epoch to
        ``fit(initial_epoch=...)`` itself (`plan_segments`)."""

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self.step = self.control.offset

    def on_train_batch_end(self, batch, logs=None):
        done = self.control.offset + batch + 1
        self.global_step += max(done - self.step, 1)
        self.step = done
        if self.save_freq != "epoch" and self.global_step % self.save_freq == 0:
            self.save(self.model)

    def on_epoch_end(self, epoch, logs=None):
        if self.control.partial:
            # Stopped mid-epoch: the epoch is not done; keep its step.
            self.save(self.model)
            return
        super().on_epoch_end(epoch, logs)


class RunCSVLogger(keras.callbacks.CSVLogger):
    """CSVLogger, appending across sessions, without rows for epochs a
    session stopped in (their row comes when they end)."""
    def __init__(self, filename, control):
        super().__init__(filename, append=True)
        self.control = control

    def on_epoch_end(self, epoch, logs=None):
        if not self.control.partial:
            super().on_epoch_end(epoch, logs)


def extends_short_last_epoch(state, steps_per_epoch):
    """True for the checkpoint of a run that finished with a short last
    epoch (its steps not a multiple of ``steps_per_epoch``): that epoch was
    saved as complete (the next epoch, step 0), and a resumed run with more
    steps goes on inside it (``RunCheckpoint.load``)."""
    epoch, offset = divmod(state["global_step"], steps_per_epoch)
    return offset > 0 and (state["epoch"], state["step"]) == (epoch + 1, 0)


def plan_segments(start_step, total_steps, steps_per_epoch):
    """The ``fit`` calls that take a run from ``start_step`` to
    ``total_steps``: ``(first_epoch, end_epoch, offset, length)`` each.
    ``length`` None: whole epochs ``first_epoch .. end_epoch - 1``;
    otherwise one epoch from item ``offset`` for ``length`` steps (the rest
    of an epoch a session stopped in, or a short last epoch)."""
    segments = []
    step = start_step
    while step < total_steps:
        epoch, offset = divmod(step, steps_per_epoch)
        epoch_length = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
        if offset == 0 and epoch_length == steps_per_epoch:
            end = total_steps // steps_per_epoch
            segments.append((epoch, end, 0, None))
            step = end * steps_per_epoch
        else:
            segments.append((epoch, epoch + 1, offset, epoch_length - offset))
            step = epoch * steps_per_epoch + epoch_length
    return segments


# --------------------------------------------------------------------------
# The preset.
# --------------------------------------------------------------------------


def _versions():
    versions = {"python": platform.python_version(), "keras": keras.__version__, "keras_rmz": __version__,
                "numpy": np.__version__}
    backend = keras.backend.backend()
    package = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    if package:
        try:
            versions[package] = importlib.import_module(package).__version__
        except (ImportError, AttributeError):
            try:
                versions[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                pass
    return versions


def _best_row(output, epoch):
    """The log.csv row of ``epoch`` (the best one), as floats."""
    path = output / LOG_FILE
    if epoch is None or not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("epoch") == str(epoch):
                values = {}
                for key, value in row.items():
                    try:
                        values[key] = float(value)
                    except (TypeError, ValueError):
                        pass
                return values
    return {}


def fine_tuned_from(config, generator):
    """What a run with ``model.init_preset`` started from: the handle, and
    the description, training record and sha256 of that preset's metadata
    (None for a run from scratch)."""
    handle = config.model.init_preset
    if handle is None:
        return None
    base = getattr(generator, "_keras_rmz_preset_metadata", None) or {}
    return {"preset": handle, **{k: base.get(k) for k in ("description", "training", "sha256")}}


def preset_metadata(config, stacks, run_info, best, base=None):
    """metadata.json of the preset a run writes (keras_rmz.presets.METADATA_FIELDS).

    ``base``: `fine_tuned_from`'s record of the preset a fine-tuning run
    started from, kept as ``training.fine_tuned_from``."""
    data = config.data
    first = stacks[0]
    meta = first.metadata or {}
    simulate = data.simulate
    sample = simulate.sample if simulate is not None else meta.get("sample")
    input_modality = meta.get("modality", "widefield")
    target_modality = "confocal" if data.targets == "confocal" else input_modality
    if simulate is not None and simulate.noise_free_targets:
        target_modality += " (noise-free)"
    modality = f"{input_modality} -> {target_modality}"
    spacing = data.input_spacing_um or 0.0
    margin = data.output_margin_um if data.output_margin_um is not None else spacing / 2
    reach = (data.num_inputs - 1) * spacing + margin
    optics = meta.get("optics")
    if isinstance(optics, dict) and meta.get("wavelength_um") is not None:
        optics = {**optics, "wavelength_um": meta["wavelength_um"]}
    sessions = run_info["sessions"]
    sample_words = SAMPLE_WORDS.get(sample, sample) if sample else None
    randomization = None
    if simulate is not None and simulate.randomize is not None:
        # A domain-randomized preset: the optics it was trained on are ranges.
        randomization = describe_distribution(simulate.randomize)
        sample_words = f"domain-randomized samples ({simulate.randomize}: {randomization['description']})"
        immersions = randomization["immersion"].values()
        optics = {
            "model": "gibson-lanni scalar, drawn per stack",
            "emission_wavelength_um": list(randomization["emission_wavelength_um"]),
            "na": [min(m["na"][0] for m in immersions), max(m["na"][1] for m in immersions)],
            "immersion": sorted(randomization["immersion"]),
        }
    description = config.preset.description or (
        f"{config.model.class_name} ({modality}) trained on "
        + (f"simulated {sample_words}" if simulate is not None else f"the stacks of {data.folder}")
        + f", M = {data.num_inputs}"
        + (f", Δz = {data.input_spacing_um:g} µm" if data.input_spacing_um else "")
    )
    if simulate is not None:
        source = {
            "simulated": {k: getattr(simulate, k) for k in ("sample", "count", "shape", "z_step_um", "pixel_um",
                                                     "density_per_um3", "seed", "noise_free_targets")},
            "simulator": meta.get("simulator"),
        }
        if randomization is not None:
            source["simulated"] = {k: getattr(simulate, k) for k in ("randomize", "count", "shape", "z_step_um",
                                                                     "pixel_um", "seed", "noise_free_targets")}
            source["randomization"] = randomization
    else:
        source = {"folder": str(data.folder), "stacks": len(stacks)}
    best_row = best.get("row", {})
    training = {
        "command": sessions[0]["command"] if sessions else None,
        "commands": [s["command"] for s in sessions],
        "config": config.to_dict(),
        "data": source,
        "adversarial": config.adversarial,
        "steps": run_info["steps_done"],
        "total_steps": config.total_steps,
        "epochs": config.num_epochs,
        "steps_per_epoch": config.steps_per_epoch,
        "wall_time_s": round(sum(s.get("wall_time_s") or 0.0 for s in sessions), 1),
        "sessions": len(sessions),
        "weights": best.get("which", "last"),
        "backend": keras.backend.backend(),
        "versions": _versions(),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    if base is not None:
        training["fine_tuned_from"] = base
    metadata = {
        "description": description,
        "modality": modality,
        "sample": (f"{sample_words} (simulated)" if simulate is not None else sample_words),
        "optics": optics,
        "pixel_um": float(first.pixel_um),
        "z_step_um": None if first.z_step_um is None else float(first.z_step_um),
        "num_inputs": data.num_inputs,
        "input_spacing_um": data.input_spacing_um,
        "output_range_um": [-reach, reach],
        "normalization": {
            "method": "paper",
            "inputs": "per stack: triangle threshold of the extended-depth-of-field image; shift = mean of the "
            "background, scale = 99th percentile of the foreground (Huang et al. 2021, Methods)",
            "targets": config.target_normalization,
        },
        "training": training,
        "metrics": (
            {
                "validation": {k: v for k, v in best_row.items() if k.startswith("val_")},
                "at_step": int(best_row["step"]) if "step" in best_row else None,
                "set": "validation items (fixed) of the training config",
            }
            if best_row
            else None
        ),
        "license": config.preset.license,
    }
    metadata.update(copy.deepcopy(config.preset.metadata))
    return metadata


# --------------------------------------------------------------------------
# The run.
# --------------------------------------------------------------------------


def train_from_config(config, *, command=None, resume=True, max_minutes=None, max_steps=None, verbose=1):
    """Runs (or resumes) the training a `TrainingConfig` describes.

    Args:
        config: a `keras_rmz.training.config.TrainingConfig`.
        command: the command line to record (default: this function's call).
        resume: continue the run in ``config.output`` (True) or delete its
            checkpoint, log and preset and start over (False).
        max_minutes: stop cleanly before this many minutes have passed.
        max_steps: stop cleanly after this many steps in this session.
        verbose: 0 silent, 1 progress bars.

    With ``training.distribution: data_parallel`` the models are built and
    trained under ``keras.distribution.DataParallel`` over every device
    (JAX only; `keras_rmz.backend.distribution`).

    Returns:
        dict: ``state`` ("done" or "stopped"), ``steps_done``,
        ``total_steps``, ``stopped_by``, ``output``, ``preset`` (path or
        None).

    Raises:
        ValueError / FileNotFoundError: bad data, model or run folder.
    """
    from keras_rmz.backend.distribution import resolve_distribution

    distribution = resolve_distribution(config.training.distribution, batch_size=config.data.batch_size)
    if distribution is not None and config.validation is not None:
        resolve_distribution(distribution, batch_size=config.validation.batch_size)
    with distribution.scope() if distribution is not None else contextlib.nullcontext():
        return _train_from_config(config, command=command, resume=resume, max_minutes=max_minutes,
                                  max_steps=max_steps, verbose=verbose)


def _train_from_config(config, *, command, resume, max_minutes, max_steps, verbose):
    started = time.monotonic()
    started_utc = _utc_now()
    deadline = None if max_minutes is None else started + 60.0 * max_minutes
    output = pathlib.Path(config.output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is a file; choose a folder for the run")
    if command is None:
        command = f"keras_rmz.training.train_from_config({config.source or 'config'})"

    previous = read_run(output)
    if resume and previous is not None:
        _check_resumable(previous, config)

    total = config.total_steps
    state = TrainingCheckpoint.read_state(output) if resume else None
    if state and state["global_step"] >= total and previous and previous.get("state") == "done" and (
            output / PRESET_DIR / "metadata.json").is_file():
        return {"output": str(output), "steps_done": state["global_step"], "total_steps": total,
                "stopped_by": None, "preset": str(output / PRESET_DIR), "state": "done"}

    # Model first (cheap), then data (may simulate for minutes): errors in
    # either come before anything in the run folder changes.
    keras.utils.set_random_seed(config.training.seed)
    generator, discriminator = build_models(config)
    train_data, validation_data, stacks = build_datasets(config, output, verbose)
    model = compile_model(config, generator, discriminator)

    output.mkdir(parents=True, exist_ok=True)
    if not resume:
        _start_over(output)
        previous, state = None, None
    start_step = state["global_step"] if state else 0
    if state and start_step < total:
        expected = divmod(start_step, config.steps_per_epoch)
        if (state["epoch"], state["step"]) != expected and not extends_short_last_epoch(state, config.steps_per_epoch):
            raise ValueError(
                f"the checkpoint in {output} is at epoch {state['epoch']} step {state['step']}, which does not match "
                f"global step {start_step} with {config.steps_per_epoch} steps per epoch; use --no-resume"
            )

    run_info = {
        "format": RUN_FORMAT,
        "version": 1,
        "config_source": config.source,
        "config": config.to_dict(),
        "total_steps": total,
        "steps_done": start_step,
        "state": "running",
        "sessions": list(previous["sessions"]) if previous else [],
        "preset": None,
    }
    session = {"command": command, "started_utc": started_utc, "first_step": start_step, "last_step": start_step,
               "wall_time_s": None, "backend": keras.backend.backend(),
               "precision": precision_of_policy(generator.dtype_policy), "stopped_by": None}
    run_info["sessions"].append(session)
    write_json(output / RUN_FILE, run_info)

    control = RunControl(config, train_data, validation_data, deadline=deadline, max_steps=max_steps)
    monitor = config.validation.monitor if config.validation is not None else None
    checkpoint = RunCheckpoint(
        output, control, save_freq=config.training.checkpoint_every, monitor=monitor, restore=resume
    )
    csv_logger = RunCSVLogger(str(output / LOG_FILE), control)
    callbacks = [control, checkpoint, csv_logger]

    if verbose:
        kind = "adversarial (generator + discriminator)" if discriminator is not None else "without discriminator"
        where = f"resuming at step {start_step}" if start_step else "from step 0"
        print(
            f"keras-rmz train: {type(generator).__name__} ({generator.count_params():,} parameters), "
            f"{kind}, {total} steps in epochs of {config.steps_per_epoch}, {where}; run folder {output}",
            flush=True,
        )

    segments = plan_segments(start_step, total, config.steps_per_epoch)
    if not segments and checkpoint.checkpoint_path.is_file():
        # Every step was done, but the session stopped before it wrote the
        # preset: no fit() will restore the checkpoint, so restore it here
        # (the model built by calling it on a batch's inputs, the optimizer
        # by `load`), or the preset would hold the starting weights.
        model(train_data[0][0])
        checkpoint.load(model)
    with _stop_on_sigterm(control, verbose):
        for first_epoch, end_epoch, offset, length in segments:
            control.offset = offset
            data = EpochWindow(train_data, offset, length)
            # shuffle=False: items are already random by (seed, epoch, index);
            # Keras's shuffle would reorder them with Python's global random state,
            # and a resumed run would not see the batches an uninterrupted one does.
            model.fit(
                data, epochs=end_epoch, initial_epoch=first_epoch, callbacks=callbacks, verbose=verbose, shuffle=False
            )
            if control.stopped_by is not None:
                break

    final_state = TrainingCheckpoint.read_state(output)
    steps_done = final_state["global_step"] if final_state else start_step
    session["last_step"] = steps_done
    session["wall_time_s"] = round(time.monotonic() - started, 1)
    run_info["steps_done"] = steps_done
    result = {"output": str(output), "steps_done": steps_done, "total_steps": total, "stopped_by": None,
              "preset": None}
    if steps_done < total:
        session["stopped_by"] = control.stopped_by
        run_info["state"] = "stopped"
        write_json(output / RUN_FILE, run_info)
        return {**result, "state": "stopped", "stopped_by": control.stopped_by}

    # Done: the best (or last) generator becomes the preset.

    best = {"which": "last"}
    best_info = output / TrainingCheckpoint.BEST_INFO_NAME
    if config.training.preset_weights == "best" and checkpoint.best_path.is_file() and best_info.is_file():
        info = json.loads(best_info.read_text(encoding="utf-8"))
        generator.load_weights(str(checkpoint.best_path))
        row = _best_row(output, info.get("epoch"))
        step = int(row["step"]) if "step" in row else info.get("global_step")
        best = {"which": f"best {info['monitor']} = {info['value']:.4g} at step {step}", "row": row}
    else:
        last_row = _last_row(output)
        if last_row:
            best["row"] = last_row
    run_info["state"] = "done"
    run_info["preset"] = PRESET_DIR
    metadata = preset_metadata(config, stacks, run_info, best, base=fine_tuned_from(config, generator))
    save_preset(generator, output / PRESET_DIR, metadata=metadata)
    write_json(output / RUN_FILE, run_info)
    return {**result, "state": "done", "preset": str(output / PRESET_DIR)}


@contextlib.contextmanager
def _stop_on_sigterm(control, verbose):
    """While training, SIGTERM (``kill``, a batch scheduler's time limit)
    stops the session after the step in progress, as --max-minutes does: the
    checkpoint is saved and the same command resumes. Only the main thread
    can install a handler; elsewhere SIGTERM keeps its default."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum, frame):
        control.signal_name = "SIGTERM"
        if verbose:
            print("\nkeras-rmz train: SIGTERM, stopping after this step (checkpoint saved; run again to resume)",
                  file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _last_row(output):
    path = output / LOG_FILE
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    values = {}
    for key, value in rows[-1].items():
        try:
            values[key] = float(value)
        except (TypeError, ValueError):
            pass
    return values
