"""Small shape layers that let one functional graph serve any M, H and W.

They are building blocks of the models rather than layers a user composes,
so they share one file. Each works with dynamic batch, sequence and spatial
sizes on every backend (shapes are read with ``keras.ops.shape`` at call
time) and declares its output shape so the functional graph keeps ``None``
where a size is only known at call time.
"""

import keras
from keras import ops


def _mul(a, b):
    return None if a is None or b is None else a * b


@keras.saving.register_keras_serializable(package="keras_rmz")
class FoldSequence(keras.layers.Layer):
    """Merges the batch and sequence axes: (B, M, H, W, C) -> (B·M, H, W, C).

    Every input image then goes through the encoder in one batched call.
    """

    def call(self, inputs):
        shape = ops.shape(inputs)
        return ops.reshape(inputs, (-1, *shape[2:]))

    def compute_output_shape(self, input_shape):
        return (_mul(input_shape[0], input_shape[1]), *input_shape[2:])


@keras.saving.register_keras_serializable(package="keras_rmz")
class UnfoldSequence(keras.layers.Layer):
    """Splits the batch axis back: call(x (B·M, h, w, c), reference (B, M, ...))
    -> (B, M, h, w, c), with B and M read from ``reference``."""

    def call(self, features, reference):
        ref_shape = ops.shape(reference)
        shape = ops.shape(features)
        return ops.reshape(features, (-1, ref_shape[1], *shape[1:]))

    def compute_output_shape(self, features_shape, reference_shape):
        return (reference_shape[0], reference_shape[1], *features_shape[1:])


@keras.saving.register_keras_serializable(package="keras_rmz")
class PadToMultiple(keras.layers.Layer):
    """Zero-pads the two spatial axes (the two before channels) at their end
    so that both become multiples of ``multiple``.

    Zero is the background of a normalized image, so padding adds no signal.
    ``CropToReference`` undoes it.

    Args:
        multiple: int, the spatial sizes are padded up to a multiple of it.
    """

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, inputs):
        shape = ops.shape(inputs)
        height, width = shape[-3], shape[-2]
        pad_h = (self.multiple - height % self.multiple) % self.multiple
        pad_w = (self.multiple - width % self.multiple) % self.multiple
        widths = [[0, 0]] * (len(inputs.shape) - 3) + [[0, pad_h], [0, pad_w], [0, 0]]
        return ops.pad(inputs, widths)

    def compute_output_shape(self, input_shape):
        def up(size):
            return None if size is None else -(-size // self.multiple) * self.multiple

        return (*input_shape[:-3], up(input_shape[-3]), up(input_shape[-2]), input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"multiple": self.multiple})
        return config


@keras.saving.register_keras_serializable(package="keras_rmz")
class CropToReference(keras.layers.Layer):
    """Crops (B, H', W', C) to the spatial size of ``reference`` (..., H, W, C')."""

    def call(self, images, reference):
        ref_shape = ops.shape(reference)
        return images[:, : ref_shape[-3], : ref_shape[-2], :]

    def compute_output_shape(self, images_shape, reference_shape):
        return (images_shape[0], reference_shape[-3], reference_shape[-2], images_shape[-1])


@keras.saving.register_keras_serializable(package="keras_rmz")
class NearestInputPlane(keras.layers.Layer):
    """The input image nearest in z to the output plane: (B, M, H, W, C)
    images, (B, M) ``input_z`` and (B,) ``output_z`` -> (B, H, W, C).

    Inputs at the same smallest distance are averaged. Used as the skip
    connection of ``RecurrentMZ(input_residual=True)``, where the network
    learns the correction to the nearest input plane, as Deep-Z learns the
    correction to its input.
    """

    @property
    def input_dtype(self):
        # Positions arrive as float32 (not cast to the compute dtype).
        return "float32"

    def call(self, images, input_z, output_z):
        images = ops.cast(images, self.compute_dtype)
        # Distances in float32 whatever the compute dtype (bfloat16 rounds
        # stage positions of hundreds of µm to whole µm).
        distance = ops.abs(ops.cast(input_z, "float32") - ops.expand_dims(ops.cast(output_z, "float32"), -1))
        nearest = ops.cast(distance <= ops.min(distance, axis=1, keepdims=True), images.dtype)
        weights = nearest / ops.sum(nearest, axis=1, keepdims=True)  # (B, M)
        return ops.sum(images * weights[:, :, None, None, None], axis=1)

    def compute_output_shape(self, images_shape, input_z_shape, output_z_shape):
        return (images_shape[0], *images_shape[2:])
