"""Encoder block of Recurrent-MZ (paper Eq. 1)."""

import keras

from keras_rmz.layers import layout
from keras_rmz.layers.conv_gru import check_positive_int
from keras_rmz.layers.conv_gru import get_activation
from keras_rmz.layers.conv_gru import serialize_activation
from keras_rmz.layers.fused import ConvPairMixin


@keras.saving.register_keras_serializable(package="keras_rmz")
class EncoderBlock(ConvPairMixin, keras.layers.Layer):
    """Pool, then two 3×3 convolutions, each with batch norm and ReLU.

    `(N, H, W, C)` → `(N, H/2, W/2, filters)` (or `(N, H, W, filters)` with
    `pool=False`); the 2×2 max pool drops an odd last row/column:

        x_k = ReLU(BN(Conv_k,2(ReLU(BN(Conv_k,1(P(x_{k−1})))))))

    In inference (`training=False`) batch norm uses its moving statistics:
    `(x − moving_mean) / sqrt(moving_variance + 1e-3) · gamma + beta`, and is
    folded into the convolution before it
    (`keras_rmz.layers.fused.conv_batch_norm`: one pass over the activations
    fewer, same result up to float rounding).

    Args:
        filters: int, channels of the second convolution (the block's output;
            20·2^(k−1) in the paper).
        mid_filters: int or None, channels of the first convolution;
            None means `filters // 2` (the paper's 20·2^(k−2)).
        kernel_size: int or pair, convolution kernel size (3).
        pool: whether to 2×2 max-pool the input first (False for the first
            block, which sees the full-resolution image).
        activation: activation after each batch norm (`"relu"`; e.g.
            `"leaky_relu"` for the authors' code, or any callable).
        use_batch_norm: whether to put batch norm after each convolution.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    ```python
    block = EncoderBlock(40)                     # P, Conv(20), Conv(40)
    y = block(np.zeros((2, 64, 64, 20), "float32"))   # (2, 32, 32, 40)
    ```

    Reference:
        Huang et al., "Recurrent neural network-based volumetric fluorescence
        microscopy", Light Sci. Appl. 10, 62 (2021), Eq. 1.
    """

    def __init__(
        self,
        filters,
        mid_filters=None,
        kernel_size=3,
        pool=True,
        activation="relu",
        use_batch_norm=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("filters", filters)
        if mid_filters is None:
            if filters < 2:
                raise ValueError(
                    "mid_filters=None means filters // 2, which needs "
                    f"filters >= 2; got filters={filters}. Pass mid_filters."
                )
        else:
            check_positive_int("mid_filters", mid_filters)
        self.filters = filters
        self.mid_filters = mid_filters
        self.kernel_size = kernel_size
        self.pool = bool(pool)
        self.activation = get_activation(activation)
        self.use_batch_norm = bool(use_batch_norm)

        # === Layers ===
        self.pool_layer = (
            layout.MaxPooling2D(2, dtype=self.dtype_policy, name="pool")
            if self.pool
            else None
        )
        self._make_conv_pair(mid_filters or filters // 2, filters, kernel_size)

    def _check_shape(self, shape):
        shape = tuple(shape)
        if len(shape) != 4 or shape[-1] is None:
            raise ValueError(
                "EncoderBlock input must have shape (N, H, W, C) with a known "
                f"channel count C; got shape {shape}"
            )
        if self.built and shape[-1] != self._input_channels:
            raise ValueError(
                f"EncoderBlock {self.name!r} was built for "
                f"C={self._input_channels}; got shape {shape}"
            )

    def build(self, input_shape):
        self._check_shape(input_shape)
        self._input_channels = input_shape[-1]
        shape = tuple(input_shape)
        if self.pool:
            self.pool_layer.build(shape)
            shape = self.pool_layer.compute_output_shape(shape)
        self._build_conv_pair(shape)

    def call(self, inputs, training=None):
        self._check_shape(inputs.shape)
        return self._conv_pair(self.pool_layer(inputs) if self.pool else inputs, training)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if self.pool:
            shape = self.pool_layer.compute_output_shape(shape)
        return shape[:3] + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "mid_filters": self.mid_filters,
                "kernel_size": self.kernel_size,
                "pool": self.pool,
                "activation": serialize_activation(self.activation),
                "use_batch_norm": self.use_batch_norm,
            }
        )
        return config
