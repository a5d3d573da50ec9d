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
