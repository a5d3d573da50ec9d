"""Decoder block of Recurrent-MZ (paper Eq. 3)."""

import keras

from keras_rmz.layers.conv_gru import check_positive_int
from keras_rmz.layers.conv_gru import get_activation
from keras_rmz.layers.conv_gru import serialize_activation
from keras_rmz.layers.fused import ConvPairMixin


@keras.saving.register_keras_serializable(package="keras_rmz")
class DecoderBlock(ConvPairMixin, keras.layers.Layer):
    """Up-sample, concatenate the skip, then two convolutions with BN and ReLU.

    Called on `[y_prev, skip]` with `y_prev` `(N, H, W, C1)` and `skip`
    `(N, 2H, 2W, C2)`; returns `(N, 2H, 2W, filters)`:

        y_k = ReLU(BN(Conv_k,5(ReLU(BN(Conv_k,4(I(y_{k−1}) ⊕ s_k))))))

    where `I` is 2×2 nearest-neighbour up-sampling and `⊕` concatenation on
    channels (up-sampled `y_prev` first, then `skip`). Both convolutions have
    `filters` channels.

    In inference (`training=False`) each batch norm is folded into the
    convolution before it (`keras_rmz.layers.fused.conv_batch_norm`).

    Args:
        filters: int, channels of both convolutions.
        kernel_size: int or pair, convolution kernel size (3).
        activation: activation after each batch norm (`"relu"`).
        use_batch_norm: whether to put batch norm after each convolution.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    ```python
    block = DecoderBlock(20)
    y = block([np.zeros((2, 16, 16, 40), "float32"),
               np.zeros((2, 32, 32, 20), "float32")])   # (2, 32, 32, 20)
    ```

    Reference:
        Huang et al., "Recurrent neural network-based volumetric fluorescence
        microscopy", Light Sci. Appl. 10, 62 (2021), Eq. 3.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        activation="relu",
        use_batch_norm=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("filters", filters)
        self.filters = filters
        self.kernel_size = kernel_size
        self.activation = get_activation(activation)
        self.use_batch_norm = bool(use_batch_norm)

        # === Layers ===
        self.upsample = keras.layers.UpSampling2D(
            2, interpolation="nearest", dtype=self.dtype_policy, name="upsample"
        )
        self.concat = keras.layers.Concatenate(
            axis=-1, dtype=self.dtype_policy, name="concat"
        )
        self._make_conv_pair(filters, filters, kernel_size)

    def _split_shapes(self, input_shape):
        """(y_prev shape, skip shape) after checking them."""
        accepted = (
            "DecoderBlock is called on [y_prev, skip] with y_prev (N, H, W, C1) "
            "and skip (N, 2H, 2W, C2)"
        )
        if (
            not isinstance(input_shape, (list, tuple))
            or len(input_shape) != 2
            or not all(isinstance(s, (list, tuple)) for s in input_shape)
        ):
            raise ValueError(f"{accepted}; got input shape {input_shape}")
        prev_shape, skip_shape = (tuple(s) for s in input_shape)
        if len(prev_shape) != 4 or len(skip_shape) != 4:
            raise ValueError(
                f"{accepted}; got shapes {prev_shape} and {skip_shape}"
            )
        if prev_shape[-1] is None or skip_shape[-1] is None:
            raise ValueError(
                f"{accepted} with known channel counts; got shapes "
                f"{prev_shape} and {skip_shape}"
            )
        for axis in (1, 2):
            if (
                prev_shape[axis] is not None
                and skip_shape[axis] is not None
                and 2 * prev_shape[axis] != skip_shape[axis]
            ):
                raise ValueError(
                    f"{accepted}; spatial sizes do not match: "
                    f"{prev_shape} and {skip_shape}"
                )
        batch_sizes = {prev_shape[0], skip_shape[0]} - {None}
        if len(batch_sizes) > 1:
            raise ValueError(
                f"{accepted}; batch sizes differ: {prev_shape} and {skip_shape}"
            )
        return prev_shape, skip_shape

    def build(self, input_shape):
        prev_shape, skip_shape = self._split_shapes(input_shape)
        self._input_channels = (prev_shape[-1], skip_shape[-1])
        shape = skip_shape[:3] + (prev_shape[-1] + skip_shape[-1],)
        self._build_conv_pair(shape)

    def call(self, inputs, training=None):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                "DecoderBlock is called on [y_prev, skip]; got one tensor of "
                f"shape {tuple(inputs.shape)}"
            )
        prev_shape, skip_shape = self._split_shapes(
            [tuple(t.shape) for t in inputs]
        )
        if (prev_shape[-1], skip_shape[-1]) != self._input_channels:
            raise ValueError(
                f"DecoderBlock {self.name!r} was built for channels "
                f"{self._input_channels} (y_prev, skip); got shapes "
                f"{prev_shape} and {skip_shape}"
            )
        y_prev, skip = inputs
        return self._conv_pair(self.concat([self.upsample(y_prev), skip]), training)

    def compute_output_shape(self, input_shape):
        _, skip_shape = self._split_shapes(input_shape)
        return skip_shape[:3] + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "activation": serialize_activation(self.activation),
                "use_batch_norm": self.use_batch_norm,
            }
        )
        return config
