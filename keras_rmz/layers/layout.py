"""Keras's convolution and pooling layers, channels-last without layout
copies on PyTorch: drop-in subclasses of the Keras layers of the same names
(same weights, same auto-generated names, so presets load unchanged) that
compute with `keras_rmz.backend.layout` (see there why)."""

import keras

from keras_rmz.backend import layout as backend_layout


class _ConvMixin:
    def convolution_op(self, inputs, kernel):
        if self.data_format != "channels_last":
            return super().convolution_op(inputs, kernel)
        return backend_layout.conv(inputs, kernel, self.strides, self.padding, self.dilation_rate)


@keras.saving.register_keras_serializable(package="keras_rmz")
class Conv2D(_ConvMixin, keras.layers.Conv2D):
    """`keras.layers.Conv2D` without layout copies on PyTorch (see module)."""


@keras.saving.register_keras_serializable(package="keras_rmz")
class Conv3D(_ConvMixin, keras.layers.Conv3D):
    """`keras.layers.Conv3D` without layout copies on PyTorch (see module)."""


class _PoolMixin:
    _pool_fn = None

    def call(self, inputs):
        if self.data_format != "channels_last":
            return super().call(inputs)
        return getattr(backend_layout, self._pool_fn)(inputs, self.pool_size, self.strides, self.padding)


@keras.saving.register_keras_serializable(package="keras_rmz")
class MaxPooling2D(_PoolMixin, keras.layers.MaxPooling2D):
    """`keras.layers.MaxPooling2D` without layout copies on PyTorch."""

    _pool_fn = "max_pool"


@keras.saving.register_keras_serializable(package="keras_rmz")
class MaxPooling3D(_PoolMixin, keras.layers.MaxPooling3D):
    """`keras.layers.MaxPooling3D` without layout copies on PyTorch."""

    _pool_fn = "max_pool"


@keras.saving.register_keras_serializable(package="keras_rmz")
class AveragePooling2D(_PoolMixin, keras.layers.AveragePooling2D):
    """`keras.layers.AveragePooling2D` without layout copies on PyTorch."""

    _pool_fn = "average_pool"


@keras.saving.register_keras_serializable(package="keras_rmz")
class AveragePooling3D(_PoolMixin, keras.layers.AveragePooling3D):
    """`keras.layers.AveragePooling3D` without layout copies on PyTorch."""

    _pool_fn = "average_pool"
