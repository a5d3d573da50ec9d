"""Convolution followed by batch norm, folded into one convolution in inference.

In inference batch norm is an affine map per channel with fixed statistics,

    BN(y) = (y − moving_mean) · s + beta,   s = gamma / sqrt(moving_variance + ε),

so after a convolution `y = W ∗ x + b` it can be folded into the convolution:

    BN(W ∗ x + b) = (W · s) ∗ x + ((b − moving_mean) · s + beta).

The folded kernel costs `k²·C_in·C_out` multiplications per call, where the
unfolded batch norm streams the whole `(N, H, W, C_out)` activation through
memory once more (several elementwise passes on eager PyTorch). Results are
equal up to float rounding. Training (`training=True`) runs the two layers
as they are, so batch statistics and moving averages behave as usual, and so
do the weights: the layers keep their own variables, presets are unchanged.
"""

import keras
from keras import ops

from keras_rmz.backend import layout as backend_layout
from keras_rmz.layers import layout


def _foldable(conv, bn):
    rank = len(conv.kernel.shape) - 2
    linear = conv.activation is None or conv.activation is keras.activations.linear
    return (
        linear
        and conv.data_format == "channels_last"
        and getattr(conv, "groups", 1) == 1
        and bn.axis in (-1, rank + 1)
        and not getattr(bn, "renorm", False)
    )


def conv_batch_norm(conv, bn, inputs, training=None):
    """`bn(conv(inputs), training=training)`, folded into one convolution when
    not training.

    Args:
        conv: a built channels-last `keras.layers.Conv2D`/`Conv3D` (or the
            `keras_rmz.layers.layout` ones) without activation.
        bn: a built `keras.layers.BatchNormalization` on the channel axis, or
            None (then this is `conv(inputs)`).
        inputs: channels-last tensor.
        training: the caller's `training` flag; folding happens when it is
            falsy (inference), as in `BatchNormalization` itself.

    Example:

    ```python
    conv = keras.layers.Conv2D(8, 3, padding="same")
    bn = keras.layers.BatchNormalization()
    conv.build((None, 32, 32, 4)); bn.build((None, 32, 32, 8))
    y = conv_batch_norm(conv, bn, x)     # == bn(conv(x)) up to rounding
    ```
    """
    if bn is None:
        return conv(inputs)
    if training or not _foldable(conv, bn):
        return bn(conv(inputs), training=training)
    # The fold in float32 (batch norm computes in at least float32), the
    # convolution in the layers' compute dtype.
    mean = ops.cast(bn.moving_mean, "float32")
    scale = ops.rsqrt(ops.cast(bn.moving_variance, "float32") + bn.epsilon)
    if bn.scale:
        scale = scale * ops.cast(bn.gamma, "float32")
    shift = -mean * scale
    if conv.use_bias:
        shift = shift + ops.cast(conv.bias, "float32") * scale
    if bn.center:
        shift = shift + ops.cast(bn.beta, "float32")
    dtype = conv.compute_dtype
    kernel = ops.cast(ops.cast(conv.kernel, "float32") * scale, dtype)
    outputs = backend_layout.conv(
        ops.cast(inputs, dtype),
        kernel,
        strides=conv.strides,
        padding=conv.padding,
        dilation_rate=conv.dilation_rate,
    )
    return ops.cast(outputs + ops.cast(shift, dtype), bn.compute_dtype)


class ConvPairMixin:
    """The two ``Conv(3x3) -> BN -> activation`` steps of the paper's encoder
    and decoder blocks (Eq. 1 and 3), as sublayers ``conv_1``, ``bn_1``,
    ``conv_2``, ``bn_2`` (the names the presets' weights carry), with each
    batch norm folded into its convolution in inference."""

    def _make_conv_pair(self, mid_filters, filters, kernel_size):
        policy = self.dtype_policy
        self.conv_1 = layout.Conv2D(mid_filters, kernel_size, padding="same", dtype=policy, name="conv_1")
        self.conv_2 = layout.Conv2D(filters, kernel_size, padding="same", dtype=policy, name="conv_2")
        self.bn_1 = self.bn_2 = None
        if self.use_batch_norm:
            self.bn_1 = keras.layers.BatchNormalization(dtype=policy, name="bn_1")
            self.bn_2 = keras.layers.BatchNormalization(dtype=policy, name="bn_2")

    def _build_conv_pair(self, shape):
        for conv, bn in ((self.conv_1, self.bn_1), (self.conv_2, self.bn_2)):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            if bn is not None:
                bn.build(shape)

    def _conv_pair(self, x, training):
        x = self.activation(conv_batch_norm(self.conv_1, self.bn_1, x, training))
        return self.activation(conv_batch_norm(self.conv_2, self.bn_2, x, training))
