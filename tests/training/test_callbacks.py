import json
import os
import signal
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

from keras_rmz.training import TrainingCheckpoint, callbacks
from tests.helpers import to_numpy
from tests.training.training_testing import variables_numpy


def dense_model(seed=0, units=3):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units), keras.layers.BatchNormalization()])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def regression_data(num_samples=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_samples, 4)).astype("float32")
    return x, (x[:, :3] * 2.0 + 1.0).astype("float32")


def test_save_then_restore_into_a_fresh_model(tmp_path):
    model = dense_model(seed=0)
    x, y = regression_data()
    model.fit(x, y, batch_size=5, epochs=1, verbose=0)  # Adam moments and iterations are non-trivial
    checkpoint = TrainingCheckpoint(tmp_path, monitor=None)
    checkpoint.epoch, checkpoint.step, checkpoint.global_step = 3, 2, 14
    checkpoint.save(model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.h5"]  # no temporary file left
    assert TrainingCheckpoint.read_state(tmp_path) | {"time": 0} == {
        "epoch": 3, "step": 2, "global_step": 14, "monitor": None, "best": None, "best_epoch": None, "time": 0,
    }  # fmt: skip

    fresh = dense_model(seed=7)
    restorer = TrainingCheckpoint(tmp_path, monitor=None)
    state = restorer.load(fresh)
    assert state["global_step"] == 14 and restorer.global_step == 14 and restorer.epoch == 3
    for expected, actual in zip(variables_numpy(model.weights), variables_numpy(fresh.weights)):
        np.testing.assert_array_equal(actual, expected)
    for expected, actual in zip(variables_numpy(model.optimizer.variables), variables_numpy(fresh.optimizer.variables)):
        np.testing.assert_array_equal(actual, expected)
    assert int(to_numpy(fresh.optimizer.iterations)) == 4


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = dense_model()
    checkpoint = TrainingCheckpoint(tmp_path, monitor=None)
    checkpoint.global_step = 5
    checkpoint.save(model)

    def crash(group, variables):
        group.create_dataset("0", data=np.zeros(3))
        raise OSError("disk full")

    monkeypatch.setattr(callbacks, "_write_group", crash)
    checkpoint.global_step = 6
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(model)
    assert TrainingCheckpoint.read_state(tmp_path)["global_step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.h5"]


def test_a_killed_checkpoint_writes_temporary_is_removed_by_the_next_save(tmp_path):
    """What a process killed while writing checkpoint.h5 leaves (a hidden
    temporary named after its pid) is removed by the next save of a resumed
    run; a live writer's temporary is kept."""
    model = dense_model()
    checkpoint = TrainingCheckpoint(tmp_path, monitor=None)
    checkpoint.global_step = 5
    checkpoint.save(model)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    stale = tmp_path / f".checkpoint.h5.{dead}.0123abcd.tmp"
    stale.write_bytes(bytes(1 << 20))
    live = tmp_path / f".checkpoint.h5.{os.getppid()}.4567abcd.tmp"
    live.write_bytes(b"")
    resumed = TrainingCheckpoint(tmp_path, monitor=None)
    resumed.global_step = 7
    resumed.save(model)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "checkpoint.h5"])
    assert TrainingCheckpoint.read_state(tmp_path)["global_step"] == 7


def test_restoring_into_another_model_is_a_clear_error(tmp_path):
    checkpoint = TrainingCheckpoint(tmp_path, monitor=None)
    checkpoint.save(dense_model(units=3))
    with pytest.raises(ValueError, match=r"has shape \(4, 3\) but the model's .* has shape \(4, 5\)"):
        checkpoint.load(dense_model(units=5))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    other.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="holds 6 weights but the model has 2"):
        checkpoint.load(other)


def test_read_state_without_or_with_a_foreign_file(tmp_path):
    assert TrainingCheckpoint.read_state(tmp_path) is None
    with h5py.File(tmp_path / "checkpoint.h5", "w") as handle:
        handle.attrs["format"] = "something else"
    with pytest.raises(ValueError, match="not a keras_rmz training checkpoint"):
        TrainingCheckpoint.read_state(tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"save_freq": 0}, "save_freq must be 'epoch' or an integer"),
        ({"save_freq": "batch"}, "save_freq must be 'epoch' or an integer"),
        ({"mode": "up"}, "mode must be 'auto', 'min' or 'max'"),
        ({"monitor": 3}, "monitor must be a logged name"),
    ],
)
def test_constructor_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingCheckpoint(tmp_path, **kwargs)
    with pytest.raises(ValueError, match="directory must be a non-empty path"):
        TrainingCheckpoint("")


class StateProbe(keras.callbacks.Callback):
    def __init__(self, directory):
        super().__init__()
        self.directory = directory
        self.states = []

    def on_train_batch_end(self, batch, logs=None):
        self.states.append(TrainingCheckpoint.read_state(self.directory))


def test_fit_checkpoints_every_n_steps_and_keeps_the_best(tmp_path):
    model = dense_model()
    x, y = regression_data(20)
    x_val, y_val = regression_data(10, seed=1)
    checkpoint = TrainingCheckpoint(tmp_path, save_freq=2, monitor="val_loss")
    probe = StateProbe(tmp_path)
    history = model.fit(
        x, y, batch_size=4, epochs=3, validation_data=(x_val, y_val), callbacks=[checkpoint, probe], verbose=0
    )
    # 5 steps per epoch, a checkpoint every 2 global steps and at every epoch
    # end (seen by the probe from the next step on).
    seen = [None if s is None else (s["epoch"], s["step"], s["global_step"]) for s in probe.states]
    assert seen == [
        None, (0, 2, 2), (0, 2, 2), (0, 4, 4), (0, 4, 4),
        (1, 1, 6), (1, 1, 6), (1, 3, 8), (1, 3, 8), (1, 5, 10),
        (2, 0, 10), (2, 2, 12), (2, 2, 12), (2, 4, 14), (2, 4, 14),
    ]  # fmt: skip
    final = TrainingCheckpoint.read_state(tmp_path)
    assert (final["epoch"], final["step"], final["global_step"]) == (3, 0, 15)
    best_epoch = int(np.argmin(history.history["val_loss"]))  # val_loss: lower is better
    assert final["best_epoch"] == best_epoch
    info = json.loads((tmp_path / "best.json").read_text())
    assert info["monitor"] == "val_loss" and info["epoch"] == best_epoch
    np.testing.assert_allclose(info["value"], min(history.history["val_loss"]), rtol=1e-6)
    with h5py.File(tmp_path / "best.weights.h5", "r") as handle:
        assert handle.attrs["keras_rmz_epoch"] == best_epoch
    restored = dense_model(seed=3)
    restored.load_weights(tmp_path / "best.weights.h5")


def test_resume_continues_the_counters_and_epochs(tmp_path):
    x, y = regression_data(20)
    model = dense_model()
    model.fit(x, y, batch_size=4, epochs=2, callbacks=[TrainingCheckpoint(tmp_path, monitor=None)], verbose=0)
    resumed = dense_model(seed=9)
    checkpoint = TrainingCheckpoint(tmp_path, monitor=None)
    history = resumed.fit(x, y, batch_size=4, epochs=4, callbacks=[checkpoint], verbose=0)
    assert checkpoint.restored and history.epoch == [2, 3]
    assert checkpoint.global_step == 20 and int(to_numpy(resumed.optimizer.iterations)) == 20
    # A second fit without the callback is not pulled to the restored epoch.
    assert resumed._initial_epoch is None


def test_restore_false_starts_over(tmp_path):
    x, y = regression_data(20)
    model = dense_model()
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[TrainingCheckpoint(tmp_path, monitor=None)], verbose=0)
    checkpoint = TrainingCheckpoint(tmp_path, monitor=None, restore=False)
    history = dense_model(seed=2).fit(x, y, batch_size=4, epochs=1, callbacks=[checkpoint], verbose=0)
    assert not checkpoint.restored and history.epoch == [0]


def test_resume_sets_the_dataset_epoch(tmp_path):
    class Dataset(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.x, self.y = regression_data(8)

        def __len__(self):
            return 2

        def __getitem__(self, index):
            return self.x[4 * index : 4 * index + 4], self.y[4 * index : 4 * index + 4]

    model = dense_model()
    model.fit(Dataset(), epochs=2, callbacks=[TrainingCheckpoint(tmp_path, monitor=None)], verbose=0)
    dataset = Dataset()
    dense_model(seed=4).fit(dataset, epochs=2, callbacks=[TrainingCheckpoint(tmp_path, monitor=None, data=dataset)], verbose=0)
    assert dataset.epoch == 2


@pytest.mark.large
def test_a_killed_process_resumes_from_its_last_checkpoint(tmp_path):
    """SIGKILL mid-epoch (global step 7; checkpoints every 2 steps), then a
    new process resumes: state restored exactly, counters continue."""
    script = os.path.join(os.path.dirname(__file__), "kill_resume_script.py")
    directory = tmp_path / "run"
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    first = subprocess.run([sys.executable, script, str(directory), "7"], env=env, capture_output=True, text=True)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert not (tmp_path / "report.json").exists()
    state = TrainingCheckpoint.read_state(directory)
    # 4 steps per epoch: the last checkpoint is global step 6, step 2 of epoch 2 (index 1).
    assert (state["epoch"], state["step"], state["global_step"]) == (1, 2, 6)
    assert sorted(p.name for p in directory.iterdir()) == ["checkpoint.h5"]
    with h5py.File(directory / "checkpoint.h5", "r") as handle:
        saved_weights = [
            float(np.sum(handle["model_weights"][str(i)][()], dtype=np.float64))
            for i in range(len(handle["model_weights"]))
        ]
        saved_optimizer = [
            float(np.sum(handle["optimizer_variables"][str(i)][()], dtype=np.float64))
            for i in range(len(handle["optimizer_variables"]))
        ]

    second = subprocess.run([sys.executable, script, str(directory), "0"], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    begin, end = report["begin"], report["end"]
    assert begin["restored"] and begin["g_iterations"] == 6 and begin["d_iterations"] == 6
    assert begin["weight_sums"] == saved_weights
    assert begin["optimizer_sums"] == saved_optimizer
    # Epoch 2 (index 1, the last) restarts from its first batch: 4 more steps.
    assert end["epochs_run"] == [1]
    assert end["g_iterations"] == end["d_iterations"] == end["global_step"] == 10
    assert end["finite"]
    final = TrainingCheckpoint.read_state(directory)
    assert (final["epoch"], final["step"], final["global_step"]) == (2, 0, 10)
