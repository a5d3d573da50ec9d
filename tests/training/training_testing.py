"""Tiny models and data shared by the training tests."""

import keras
import numpy as np

from keras_rmz.models.discriminator import Discriminator
from keras_rmz.models.recurrent_mz import RecurrentMZ

SIZE = 16
INPUT_Z = (0.0, 2.0)


def interpolation_data(num_samples=16, seed=0):
    """Two input planes at z = 0 and 2 µm; the target at output_z is the
    linear interpolation between them: a simple function of the inputs."""
    rng = np.random.default_rng(seed)
    images = rng.random((num_samples, len(INPUT_Z), SIZE, SIZE, 1)).astype("float32")
    input_z = np.tile(np.array(INPUT_Z, "float32"), (num_samples, 1))
    output_z = rng.uniform(INPUT_Z[0], INPUT_Z[-1], num_samples).astype("float32")
    weight = ((output_z - INPUT_Z[0]) / (INPUT_Z[-1] - INPUT_Z[0]))[:, None, None, None]
    target = ((1.0 - weight) * images[:, 0] + weight * images[:, -1]).astype("float32")
    return {"images": images, "input_z": input_z, "output_z": output_z}, target


def tiny_generator(seed=0):
    keras.utils.set_random_seed(seed)
    return RecurrentMZ(base_filters=4, depth=1)


def tiny_discriminator(seed=1):
    keras.utils.set_random_seed(seed)
    return Discriminator(base_filters=2, num_blocks=2, dense_units=4)


def batch(inputs, target, start, size):
    return {key: value[start : start + size] for key, value in inputs.items()}, target[start : start + size]


def numpy_berhu(y_true, y_pred, c=0.1):
    """Eq. 8 per pixel, mean over the pixels of each image."""
    d = np.abs(np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64))
    per_pixel = np.where(d <= c, d, (d**2 + c**2) / (2 * c))
    return per_pixel.reshape(per_pixel.shape[0], -1).mean(axis=1)


def numpy_psnr(y_true, y_pred, max_val=1.0):
    d = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)
    mse = (d**2).reshape(d.shape[0], -1).mean(axis=1)
    return 10.0 * np.log10(max_val**2 / mse)


def variables_numpy(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


class Recorder(keras.callbacks.Callback):
    """Records, after every training step, both optimizers' iteration counts
    and a copy of every optimizer variable; after every epoch, the
    generator's weights."""

    def __init__(self):
        super().__init__()
        self.steps = []
        self.epoch_generator_weights = []
        self.first_logs = None

    def on_train_batch_end(self, batch, logs=None):
        if self.first_logs is None:  # running means over one batch: that batch's values
            self.first_logs = {name: float(value) for name, value in logs.items()}
        trainer = self.model  # on JAX this syncs the state into the variables
        self.steps.append(
            {
                "g_iterations": int(keras.ops.convert_to_numpy(trainer.generator_optimizer.iterations)),
                "d_iterations": int(keras.ops.convert_to_numpy(trainer.discriminator_optimizer.iterations)),
                "g_optimizer": variables_numpy(trainer.generator_optimizer.variables),
                "d_optimizer": variables_numpy(trainer.discriminator_optimizer.variables),
            }
        )

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_generator_weights.append(variables_numpy(self.model.generator.weights))
