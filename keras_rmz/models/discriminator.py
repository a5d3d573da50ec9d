"""The GAN discriminator of Recurrent-MZ (and of the Deep-Z baseline's
training): an image -> the probability that it is a real target image."""

import keras

from keras_rmz.layers import layout
from keras_rmz.precision import builds_layers_in_dtype
from keras_rmz.presets.preset_mixin import PresetMixin


@keras.saving.register_keras_serializable(package="keras_rmz")
class Discriminator(PresetMixin, keras.Model):
    """Recurrent-MZ's discriminator D (Methods, "Network structure").

    ``num_blocks`` conv blocks, block k (k = 1 .. num_blocks) of two 3x3
    convs with ``base_filters * 2**k`` channels each (the paper: five
    blocks, 20·2^k channels, k counting blocks from 1 as the paper's
    encoder does; so 40, 80, 160, 320, 640), each conv followed by the
    activation. The second conv of every block has stride 2: the
    down-sampling between blocks, as in the authors' public code. Global
    average pooling, ``Dense(dense_units, relu)`` and ``Dense(1, sigmoid)``
    follow.

    Input ``(B, H, W, channels)``, any H, W >= ``2**num_blocks`` (every
    block halves the size; a call with smaller static sizes raises
    ValueError). Output ``(B, 1)`` in (0, 1).

    The authors' code differs in places the paper's text does not follow:
    one extra input conv of 20 channels before the blocks and a second conv
    with twice the block's channels; neither is used here.

    Args:
        base_filters: int, block k has ``base_filters * 2**k`` channels.
        num_blocks: int >= 1, number of conv blocks (and of stride-2
            down-samplings).
        dense_units: int, units of the hidden dense layer (20 in the paper).
        kernel_size: int, conv kernel size.
        activation: activation of the convs.
        channels: int, channels of the input image.
        **kwargs: passed to ``keras.Model`` (``name``, ``dtype``, ...).

    Example:

    ```python
    d = keras_rmz.Discriminator()
    p = d(np.zeros((4, 256, 256, 1)))  # (4, 1), values in (0, 1)
    ```

    Reference:
        Huang, L., Chen, H., Luo, Y., Rivenson, Y. & Ozcan, A. Recurrent neural
        network-based volumetric fluorescence microscopy. Light Sci Appl 10,
        62 (2021), Methods and Fig. S8.
    """

    @builds_layers_in_dtype
    def __init__(
        self,
        base_filters=20,
        num_blocks=5,
        dense_units=20,
        kernel_size=3,
        activation="relu",
        channels=1,
        **kwargs,
    ):
        for name, value in (
            ("base_filters", base_filters),
            ("num_blocks", num_blocks),
            ("dense_units", dense_units),
            ("kernel_size", kernel_size),
            ("channels", channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")

        # === Functional Model ===
        inputs = keras.Input(shape=(None, None, channels), name="images")
        x = inputs
        for k in range(1, num_blocks + 1):
            filters = base_filters * 2**k
            x = layout.Conv2D(
                filters, kernel_size, padding="same", activation=activation, name=f"block_{k}_conv_0"
            )(x)
            x = layout.Conv2D(
                filters, kernel_size, strides=2, padding="same", activation=activation, name=f"block_{k}_conv_1"
            )(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
        # float32 output so the adversarial losses stay exact under mixed precision.
        outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.base_filters = base_filters
        self.num_blocks = num_blocks
        self.dense_units = dense_units
        self.kernel_size = kernel_size
        self.activation = activation
        self.channels = channels

    @property
    def min_size(self):
        """The smallest H and W accepted: every block halves them."""
        return 2**self.num_blocks

    def check_image_shape(self, shape):
        """Raises ValueError when a static H or W is below ``min_size``."""
        shape = tuple(shape)
        if len(shape) != 4:
            raise ValueError(f"Discriminator takes images of shape (B, H, W, {self.channels}); got shape {shape}")
        height, width = shape[1], shape[2]
        if any(size is not None and size < self.min_size for size in (height, width)):
            raise ValueError(
                f"Discriminator needs images of at least {self.min_size}x{self.min_size} pixels "
                f"(2**num_blocks, num_blocks = {self.num_blocks} stride-2 blocks); got {height}x{width}"
            )

    # Checked in __call__ (a clean message for eager calls) and in call
    # (what JAX's stateless paths run).
    def __call__(self, *args, **kwargs):
        if args and hasattr(args[0], "shape"):
            self.check_image_shape(args[0].shape)
        return super().__call__(*args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        self.check_image_shape(inputs.shape)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "base_filters": self.base_filters,
            "num_blocks": self.num_blocks,
            "dense_units": self.dense_units,
            "kernel_size": self.kernel_size,
            "activation": self.activation,
            "channels": self.channels,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
