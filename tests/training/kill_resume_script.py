"""Trains a tiny AdversarialTrainer with a TrainingCheckpoint; used by
test_callbacks.py in a subprocess that kills itself (SIGKILL) mid-epoch,
then again to resume. Not a test module.

Usage: python kill_resume_script.py DIRECTORY KILL_AT_GLOBAL_STEP (0: never)
Writes DIRECTORY/../<probe>.json with what it saw.
"""

import json
import os
import pathlib
import signal
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_rmz.training import AdversarialTrainer, TrainingCheckpoint  # noqa: E402
from tests.training.training_testing import (  # noqa: E402
    interpolation_data,
    tiny_discriminator,
    tiny_generator,
    variables_numpy,
)

EPOCHS = 2
BATCH_SIZE = 2
NUM_SAMPLES = 8  # 4 steps per epoch


def iterations(optimizer):
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


class Probe(keras.callbacks.Callback):
    def __init__(self, checkpoint, kill_at, report):
        super().__init__()
        self.checkpoint = checkpoint
        self.kill_at = kill_at
        self.report = report

    def on_train_begin(self, logs=None):
        # Runs after the checkpoint callback has restored the state.
        trainer = self.model
        self.report["begin"] = {
            "restored": self.checkpoint.restored,
            "g_iterations": iterations(trainer.generator_optimizer),
            "d_iterations": iterations(trainer.discriminator_optimizer),
            "weight_sums": [float(np.sum(w, dtype=np.float64)) for w in variables_numpy(trainer.weights)],
            "optimizer_sums": [float(np.sum(v, dtype=np.float64)) for v in variables_numpy(trainer.optimizer.variables)],
        }

    def on_train_batch_end(self, batch, logs=None):
        if self.kill_at and self.checkpoint.global_step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def main():
    directory = pathlib.Path(sys.argv[1])
    kill_at = int(sys.argv[2])
    keras.utils.set_random_seed(0)
    inputs, target = interpolation_data(NUM_SAMPLES, seed=0)
    trainer = AdversarialTrainer(tiny_generator(seed=0), tiny_discriminator(seed=1))
    trainer.compile(learning_rate=1e-3)
    report = {}
    checkpoint = TrainingCheckpoint(directory, save_freq=2, monitor=None)
    history = trainer.fit(
        inputs,
        target,
        batch_size=BATCH_SIZE,
        epochs=EPOCHS,
        shuffle=False,
        callbacks=[checkpoint, Probe(checkpoint, kill_at, report)],
        verbose=0,
    )
    report["end"] = {
        "epochs_run": history.epoch,
        "g_iterations": iterations(trainer.generator_optimizer),
        "d_iterations": iterations(trainer.discriminator_optimizer),
        "global_step": checkpoint.global_step,
        "finite": bool(all(np.all(np.isfinite(w)) for w in variables_numpy(trainer.weights))),
    }
    (directory.parent / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
