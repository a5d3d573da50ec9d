"""Recurrent block of Recurrent-MZ (paper Eq. 2)."""

import keras
from keras import ops

from keras_rmz.layers import layout
from keras_rmz.layers.conv_gru import ConvGRU2D
from keras_rmz.layers.conv_gru import check_positive_int
from keras_rmz.layers.conv_gru import serialize_activation


@keras.saving.register_keras_serializable(package="keras_rmz")
class RecurrentBlock(keras.layers.Layer):
    """Residual convolutional GRU over the M encoded inputs of one scale.

    `(B, T, H, W, C)` with `C == filters` →

        s = x + Conv1×1(RConv(x))

    By default (`return_sequences=False`) only the state after the last
    input is used: `s = x[:, −1] + Conv1×1(h_T)`, shape `(B, H, W, C)` — what
    the decoder reads. With `return_sequences=True` the 1×1 convolution is
    applied to every step's state: `(B, T, H, W, C)`. `num_layers=2` stacks
    two ConvGRUs (the second reads the first's sequence of states), as in the
    authors' public code.

    Args:
        filters: int, channels of the input, of the ConvGRU state and of the
            output (the residual needs them equal).
        kernel_size: int or pair, ConvGRU kernel size (3).
        gate: `"minimal"` (the paper's one-gate unit) or `"standard"`.
        num_layers: int >= 1, stacked ConvGRUs.
        recurrent_activation: gate activation of the ConvGRUs (`"sigmoid"`;
            the authors' code used `"hard_sigmoid_tf2"`).
        return_sequences: return `(B, T, H, W, C)` instead of the last step.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    ```python
    block = RecurrentBlock(20)
    s = block(np.zeros((2, 3, 32, 32, 20), "float32"))   # (2, 32, 32, 20)
    ```

    Reference:
        Huang et al., "Recurrent neural network-based volumetric fluorescence
        microscopy", Light Sci. Appl. 10, 62 (2021), Eq. 2, 4-6.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        gate="minimal",
        num_layers=1,
        recurrent_activation="sigmoid",
        return_sequences=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("filters", filters)
        check_positive_int("num_layers", num_layers)
        self.filters = filters
        self.kernel_size = kernel_size
        self.gate = gate
        self.num_layers = num_layers
        self.recurrent_activation = recurrent_activation
        self.return_sequences = bool(return_sequences)

        # === Layers ===
        self.conv_grus = [
            ConvGRU2D(
                filters,
                kernel_size,
                gate=gate,
                recurrent_activation=recurrent_activation,
                # Every ConvGRU but the last feeds a whole sequence on.
                return_sequences=self.return_sequences or i < num_layers - 1,
                dtype=self.dtype_policy,
                name=f"conv_gru_{i}",
            )
            for i in range(num_layers)
        ]
        self.conv_1x1 = layout.Conv2D(
            filters, 1, dtype=self.dtype_policy, name="conv_1x1"
        )

    def _check_shape(self, shape):
        shape = tuple(shape)
        if len(shape) != 5:
            raise ValueError(
                "RecurrentBlock input must have shape (B, T, H, W, C) with "
                f"C == filters={self.filters}; got shape {shape}"
            )
        if shape[-1] != self.filters:
            raise ValueError(
                "RecurrentBlock adds its input to the ConvGRU output, so the "
                f"input channels must equal filters={self.filters}; got shape "
                f"{shape}"
            )

    def build(self, input_shape):
        self._check_shape(input_shape)
        shape = tuple(input_shape)
        for conv_gru in self.conv_grus:
            conv_gru.build(shape)
        self.conv_1x1.build((None,) + shape[2:4] + (self.filters,))

    def call(self, inputs, training=None):
        self._check_shape(inputs.shape)
        h = inputs
        for conv_gru in self.conv_grus:
            h = conv_gru(h, training=training)
        if not self.return_sequences:
            return inputs[:, -1] + self.conv_1x1(h)
        # Fold time into the batch for the 2D 1×1 convolution.
        shape = ops.shape(h)
        y = self.conv_1x1(ops.reshape(h, (-1, shape[2], shape[3], shape[4])))
        y = ops.reshape(y, (shape[0], shape[1], shape[2], shape[3], shape[4]))
        return inputs + y

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        shape = tuple(input_shape)
        return shape if self.return_sequences else shape[:1] + shape[2:]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "gate": self.gate,
                "num_layers": self.num_layers,
                "recurrent_activation": serialize_activation(
                    self.recurrent_activation
                ),
                "return_sequences": self.return_sequences,
            }
        )
        return config
