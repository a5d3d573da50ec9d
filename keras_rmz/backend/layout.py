"""Channels-last convolution and pooling without layout copies on PyTorch.

Every keras_rmz tensor is channels-last, ``(N, *spatial, C)``. On the
TensorFlow and JAX backends ``keras.ops.conv`` computes that layout as it is.
On the PyTorch backend Keras 3.15 moves every channels-last input of a
convolution or pooling to channels-first memory and back again (a
``.contiguous()`` copy, then a ``channels_last`` copy: keras-team/keras#23199),
and pooling outputs land in channels-first memory, where PyTorch's CPU
convolution is 2-2.6x slower. Measured in ``benchmarks/torch_conv_layout.py``:
41-50% of a ``Conv2D``'s time went to those copies.

The functions here give the same results with ``keras.ops`` alone: on PyTorch
they transpose the channels-last tensor to a channels-first *view* (a
permutation of strides, no copy; PyTorch calls this memory layout
``channels_last``), run the channels-first op on it, whose output keeps that
memory layout, and transpose the result back to a channels-last view. On the
other backends they call the channels-last op unchanged (TensorFlow has no
channels-first convolution on a CPU). The layers of
`keras_rmz.layers.layout` are drop-in subclasses of the Keras layers of the
same names that call these functions.
"""

import keras
from keras import ops


def _views_channels_first():
    return keras.backend.backend() == "torch"


def _to_channels_first(x):
    rank = len(x.shape) - 2
    return ops.transpose(x, (0, rank + 1) + tuple(range(1, rank + 1)))


def _to_channels_last(x):
    rank = len(x.shape) - 2
    return ops.transpose(x, (0,) + tuple(range(2, rank + 2)) + (1,))


def conv(inputs, kernel, strides=1, padding="valid", dilation_rate=1):
    """``keras.ops.conv`` on channels-last ``inputs``, without layout copies
    on PyTorch. ``kernel`` is ``(*kernel_size, C_in, C_out)`` as in Keras."""
    if not _views_channels_first():
        return ops.conv(inputs, kernel, strides, padding, "channels_last", dilation_rate)
    outputs = ops.conv(
        _to_channels_first(inputs), kernel, strides, padding, "channels_first", dilation_rate
    )
    return _to_channels_last(outputs)


def _pool(op, inputs, pool_size, strides, padding):
    if keras.backend.backend() == "tensorflow" and len(inputs.shape) == 5 and inputs.dtype == "float16":
        # TensorFlow 2.21 has no float16 3D pooling kernel on a CPU ("No
        # OpKernel was registered to support Op 'MaxPool3D'"): pool in
        # float32 (exact for the maximum) and cast back.
        outputs = op(ops.cast(inputs, "float32"), pool_size, strides, padding, "channels_last")
        return ops.cast(outputs, "float16")
    if not _views_channels_first():
        return op(inputs, pool_size, strides, padding, "channels_last")
    outputs = op(_to_channels_first(inputs), pool_size, strides, padding, "channels_first")
    return _to_channels_last(outputs)


def max_pool(inputs, pool_size, strides=None, padding="valid"):
    """``keras.ops.max_pool`` on channels-last ``inputs`` (see `conv`)."""
    return _pool(ops.max_pool, inputs, pool_size, strides, padding)


def average_pool(inputs, pool_size, strides=None, padding="valid"):
    """``keras.ops.average_pool`` on channels-last ``inputs`` (see `conv`)."""
    return _pool(ops.average_pool, inputs, pool_size, strides, padding)
