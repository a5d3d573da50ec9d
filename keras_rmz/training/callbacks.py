"""``TrainingCheckpoint``: crash-safe checkpoints, resume, and the best
generator on validation."""

import math
import os
import pathlib
import time

import h5py
import keras
import numpy as np

from keras_rmz.io.atomic import atomic_write, write_json
from keras_rmz.training.adversarial_trainer import AdversarialTrainer

CHECKPOINT_FORMAT = "keras_rmz.training_checkpoint"
CHECKPOINT_VERSION = 1
_MAXIMIZED_WORDS = ("psnr", "ssim", "acc", "auc", "precision", "recall")


def _to_storable(variable):
    array = np.asarray(keras.ops.convert_to_numpy(variable))
    # HDF5 has no bfloat16: keep it as float32, cast back by assign().
    if array.dtype.kind == "V" or str(array.dtype) == "bfloat16":
        array = array.astype(np.float32)
    return array


def _fsync_file(path):
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _write_group(group, variables):
    for index, variable in enumerate(variables):
        dataset = group.create_dataset(str(index), data=_to_storable(variable))
        dataset.attrs["path"] = str(getattr(variable, "path", variable.name))


def _restore_group(group, variables, what, path):
    if len(group.keys()) != len(variables):
        raise ValueError(
            f"checkpoint {path} holds {len(group.keys())} {what} but the model has {len(variables)}: "
            "resume with the same model configuration (and compile settings) that wrote it"
        )
    arrays = [group[str(i)][()] for i in range(len(variables))]
    for index, (variable, array) in enumerate(zip(variables, arrays)):
        if tuple(variable.shape) != tuple(array.shape):
            raise ValueError(
                f"checkpoint {path}: saved {what} #{index} ({group[str(index)].attrs.get('path', '?')}) has shape "
                f"{tuple(array.shape)} but the model's {variable.path} has shape {tuple(variable.shape)}; "
                "resume with the same model configuration that wrote it"
            )
    for variable, array in zip(variables, arrays):
        variable.assign(array)


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves everything needed to resume training, and the best generator.

    Files in ``directory``:

    - ``checkpoint.h5``: the latest training state, written every
      ``save_freq`` steps, at every epoch end and when training ends: all
      model weights (for an `AdversarialTrainer`: generator and
      discriminator, batch-norm statistics included), all optimizer
      variables (both optimizers: iterations, Adam moments, loss scale) and
      the counters ``epoch`` (epochs completed), ``step`` (batches done in
      the current epoch), ``global_step`` and the best monitored value.
    - ``best.weights.h5``: the generator's weights (the model's for a
      plain ``generator.fit``) at the best ``monitor`` value seen at an
      epoch end; load with ``generator.load_weights(...)``. The monitored
      value and epoch are stored as HDF5 attributes and in ``best.json``.

    Every file is written to a temporary file in the same folder and moved
    into place with `os.replace`, so a killed process (SIGKILL, Ctrl-C,
    power loss after the fsync) leaves the previous complete file, never a
    truncated one.

    When ``fit`` starts and ``checkpoint.h5`` exists (and ``restore`` is
    True), the weights, both optimizers' states and the counters are
    restored, and ``fit`` continues at the epoch the checkpoint was written
    in (Keras's ``initial_epoch``); with ``fit(epochs=N)`` the run still ends
    after epoch N. A checkpoint written mid-epoch restores the state at that
    step, but the epoch restarts from its first batch (``fit`` cannot start
    mid-epoch): the batches of that epoch already seen are seen again.
    Pass ``data=`` a `keras_rmz.data.VolumeDataset` to have its ``epoch``
    set to the restored epoch, so that the resumed run draws the same items
    as an uninterrupted one.

    Args:
        directory: folder for the files (created if missing).
        save_freq: ``"epoch"`` (only at epoch ends) or an int N >= 1: also
            every N training steps.
        monitor: logged value that selects the best generator, e.g.
            ``"val_psnr"`` (default), ``"val_ssim"`` or ``"val_loss"``;
            None disables ``best.weights.h5``. If the value is not in the
            logs (no ``validation_data``), no best file is written.
        mode: ``"auto"`` (max for PSNR/SSIM-like names, min otherwise),
            ``"max"`` or ``"min"``.
        restore: resume from ``checkpoint.h5`` if it exists.
        data: optional dataset with an ``epoch`` attribute (VolumeDataset)
            to set when resuming.
        verbose: 0 silent, 1 one line per restore and per saved best.

    Example:

    ```python
    checkpoint = keras_rmz.training.TrainingCheckpoint(
        "runs/beads", save_freq=500, monitor="val_psnr", data=train_dataset)
    trainer.fit(train_dataset, validation_data=val_dataset, epochs=100,
                callbacks=[checkpoint])
    # killed? run the same two lines again: training resumes.
    generator.load_weights("runs/beads/best.weights.h5")
    ```
    """

    CHECKPOINT_NAME = "checkpoint.h5"
    BEST_NAME = "best.weights.h5"
    BEST_INFO_NAME = "best.json"

    def __init__(self, directory, save_freq="epoch", monitor="val_psnr", mode="auto", restore=True, data=None, verbose=0):
        super().__init__()
        if not isinstance(directory, (str, os.PathLike)) or not str(directory):
            raise ValueError(f"directory must be a non-empty path; got {directory!r}")
        if not (save_freq == "epoch" or (isinstance(save_freq, int) and not isinstance(save_freq, bool) and save_freq >= 1)):
            raise ValueError(f"save_freq must be 'epoch' or an integer number of steps >= 1; got {save_freq!r}")
        if monitor is not None and not isinstance(monitor, str):
            raise ValueError(f"monitor must be a logged name such as 'val_psnr', or None; got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
        self.directory = pathlib.Path(directory)
        self.save_freq = save_freq
        self.monitor = monitor
        self.mode = mode
        self.restore = bool(restore)
        self.data = data
        self.verbose = int(verbose)
        self._maximize = mode == "max" or (
            mode == "auto" and monitor is not None and any(word in monitor.lower() for word in _MAXIMIZED_WORDS)
        )
        self._reset_counters()

    def _reset_counters(self):
        self.epoch = 0
        self.step = 0
        self.global_step = 0
        self.best = None
        self.best_epoch = None
        self.restored = False
        self._last_saved = None
        self._clear_initial_epoch = False

    @property
    def checkpoint_path(self):
        return self.directory / self.CHECKPOINT_NAME

    @property
    def best_path(self):
        return self.directory / self.BEST_NAME

    @staticmethod
    def read_state(directory):
        """Counters of the checkpoint in ``directory`` (no model needed).

        Returns:
            dict with ``epoch``, ``step``, ``global_step``, ``monitor``,
            ``best``, ``best_epoch``, ``time``; or None without a checkpoint.
        """
        path = pathlib.Path(directory) / TrainingCheckpoint.CHECKPOINT_NAME
        if not path.exists():
            return None
        with h5py.File(path, "r") as handle:
            return TrainingCheckpoint._read_attrs(handle, path)

    @staticmethod
    def _read_attrs(handle, path):
        if handle.attrs.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a keras_rmz training checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
        best = float(handle.attrs["best"])
        best_epoch = int(handle.attrs["best_epoch"])
        return {
            "epoch": int(handle.attrs["epoch"]),
            "step": int(handle.attrs["step"]),
            "global_step": int(handle.attrs["global_step"]),
            "monitor": str(handle.attrs["monitor"]) or None,
            "best": None if math.isnan(best) else best,
            "best_epoch": None if best_epoch < 0 else best_epoch,
            "time": float(handle.attrs["time"]),
        }

    # --- Callback hooks ----------------------------------------------------

    def on_train_begin(self, logs=None):
        self._reset_counters()
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.restore and self.checkpoint_path.exists():
            self.load(self.model)
            self.resume_fit_at(self.epoch)

    def resume_fit_at(self, epoch):
        """Makes the ``fit`` that is starting begin at ``epoch`` (the
        restored checkpoint's). Keras has no public way for a callback to do
        so: this sets the attribute that ``fit`` reads right after
        ``on_train_begin``, as Keras's own ``BackupAndRestore`` does. A caller
        that passes ``fit(initial_epoch=...)`` itself overrides this with a
        no-op (``keras_rmz.training.run.RunCheckpoint``)."""
        self.model._initial_epoch = epoch
        self._clear_initial_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._clear_initial_epoch:
            # fit() has read it; a later fit() on this model must not inherit it.
            self.model._initial_epoch = None
            self._clear_initial_epoch = False
        self.epoch = epoch
        self.step = 0

    def on_train_batch_end(self, batch, logs=None):
        done = batch + 1
        self.global_step += max(done - self.step, 1)
        self.step = done
        if self.save_freq != "epoch" and self.global_step % self.save_freq == 0:
            self.save(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = epoch + 1
        self.step = 0
        if self.monitor is not None and logs and self.monitor in logs:
            value = float(logs[self.monitor])
            if math.isfinite(value) and self._improves(value):
                self.best = value
                self.best_epoch = epoch
                self.save_best(self.model)
        self.save(self.model)

    def on_train_end(self, logs=None):
        self.save(self.model)

    def _improves(self, value):
        if self.best is None:
            return True
        return value > self.best if self._maximize else value < self.best

    # --- Saving and loading --------------------------------------------------

    def save(self, model):
        """Writes ``checkpoint.h5`` atomically (skipped if nothing changed)."""
        marker = (self.epoch, self.step, self.global_step)
        if marker == self._last_saved:
            return
        with atomic_write(self.checkpoint_path) as temporary:
            with h5py.File(temporary, "w") as handle:
                handle.attrs["format"] = CHECKPOINT_FORMAT
                handle.attrs["version"] = CHECKPOINT_VERSION
                handle.attrs["epoch"] = self.epoch
                handle.attrs["step"] = self.step
                handle.attrs["global_step"] = self.global_step
                handle.attrs["monitor"] = self.monitor or ""
                handle.attrs["best"] = np.nan if self.best is None else self.best
                handle.attrs["best_epoch"] = -1 if self.best_epoch is None else self.best_epoch
                handle.attrs["time"] = time.time()
                handle.attrs["backend"] = keras.backend.backend()
                handle.attrs["model_class"] = type(model).__name__
                _write_group(handle.create_group("model_weights"), model.weights)
                optimizer = getattr(model, "optimizer", None)
                _write_group(handle.create_group("optimizer_variables"), [] if optimizer is None else optimizer.variables)
            _fsync_file(temporary)
        self._last_saved = marker

    def load(self, model):
        """Restores weights, optimizer states and counters from ``checkpoint.h5``."""
        path = self.checkpoint_path
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)
        with h5py.File(path, "r") as handle:
            state = self._read_attrs(handle, path)
            _restore_group(handle["model_weights"], model.weights, "weights", path)
            _restore_group(
                handle["optimizer_variables"], [] if optimizer is None else optimizer.variables, "optimizer variables", path
            )
        self.epoch = state["epoch"]
        self.step = 0  # fit() restarts the epoch from its first batch
        self.global_step = state["global_step"]
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        if state["monitor"] != self.monitor:
            self.best, self.best_epoch = None, None
        best_info = self._read_best_info()
        if best_info is not None and best_info.get("monitor") == self.monitor:
            # best.weights.h5 can be newer than the checkpoint (a kill
            # between the two writes): its own value is authoritative.
            self.best, self.best_epoch = best_info["value"], best_info["epoch"]
        if self.data is not None and hasattr(self.data, "epoch"):
            self.data.epoch = self.epoch
        self.restored = True
        self._last_saved = (self.epoch, state["step"], self.global_step)
        if self.verbose:
            print(
                f"TrainingCheckpoint: resumed from {path} at epoch {self.epoch + 1} "
                f"(step {state['step']} of it, global step {self.global_step})"
            )
        return state

    def _read_best_info(self):
        if not self.best_path.exists():
            return None
        with h5py.File(self.best_path, "r") as handle:
            if "keras_rmz_monitor" not in handle.attrs:
                return None
            return {
                "monitor": str(handle.attrs["keras_rmz_monitor"]),
                "value": float(handle.attrs["keras_rmz_value"]),
                "epoch": int(handle.attrs["keras_rmz_epoch"]),
            }

    def save_best(self, model):
        """Writes the generator's weights to ``best.weights.h5`` atomically."""
        network = model.generator if isinstance(model, AdversarialTrainer) else model
        with atomic_write(self.best_path, suffix=".weights.h5") as temporary:
            network.save_weights(temporary)
            with h5py.File(temporary, "a") as handle:
                handle.attrs["keras_rmz_monitor"] = self.monitor
                handle.attrs["keras_rmz_value"] = self.best
                handle.attrs["keras_rmz_epoch"] = self.best_epoch
            _fsync_file(temporary)
        info = {"monitor": self.monitor, "value": self.best, "epoch": self.best_epoch, "global_step": self.global_step}
        write_json(self.directory / self.BEST_INFO_NAME, info)
        if self.verbose:
            print(f"TrainingCheckpoint: {self.monitor} = {self.best:.5g} at epoch {self.best_epoch + 1}: saved {self.best_path}")
