"""A dimension-generic U-Net shared by the 2D (Deep-Z) and 3D (3D U-Net)
baselines, in the way MONAI's ``BasicUNet`` serves 1D, 2D and 3D alike."""

import keras
from keras import ops
from keras_rmz.layers import layout
from keras_rmz.precision import builds_layers_in_dtype

_CONV = {2: layout.Conv2D, 3: layout.Conv3D}
_CONV_TRANSPOSE = {2: keras.layers.Conv2DTranspose, 3: keras.layers.Conv3DTranspose}
_POOL = {
    ("max", 2): layout.MaxPooling2D,
    ("max", 3): layout.MaxPooling3D,
    ("average", 2): layout.AveragePooling2D,
    ("average", 3): layout.AveragePooling3D,
}
_UPSAMPLE = {2: keras.layers.UpSampling2D, 3: keras.layers.UpSampling3D}
BLOCKS = ("double_conv", "residual")
POOLINGS = ("max", "average")
UPSAMPLINGS = ("nearest", "bilinear", "transpose")


def _positive_int(name, value):
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        as_int = None
    if as_int is None or as_int != value or as_int < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return as_int


def _per_axis(name, value, ndim):
    """An int or one int per spatial axis -> list of ndim positive ints."""
    values = [value] * ndim if isinstance(value, int) else list(value)
    if len(values) != ndim:
        raise ValueError(f"{name} must be an int or {ndim} ints (one per spatial axis); got {value!r}")
    return [_positive_int(name, v) for v in values]


@keras.saving.register_keras_serializable(package="keras_rmz")
class UNet(keras.Model):
    """A U-Net over 2D images or 3D volumes, channels-last.

    ``(B, *spatial, in_channels) -> (B, *spatial, out_channels)``. Level k
    (k = 0 .. len(filters) - 1) holds one conv block with ``filters[k]``
    output channels; levels are joined by pooling of ``pool_size`` per axis
    on the way down and up-sampling by the same factors on the way up, where
    the up-sampled map is concatenated with the skip of its level and passed
    through two convs of ``filters[k]`` channels.

    Conv blocks:
      - ``"double_conv"``: conv(mid) -> [BN] -> act -> conv(f) -> [BN] -> act,
        with mid = f // 2 when ``halve_first_conv`` (3D U-Net, Çiçek et al.)
        else f.
      - ``"residual"``: the same two convs plus the block input added back,
        zero-padded along channels to f (Deep-Z's encoder blocks); needs
        channels that never shrink along the encoder.

    Spatial sizes must be multiples of ``pool_size[i] ** (len(filters) - 1)``
    on axis i (the models built on it pad for you); a call with other static
    sizes raises ValueError.

    Args:
        ndim: 2 or 3, the number of spatial axes.
        in_channels: int, channels of the input.
        out_channels: int or None. An int adds a final 1x1 (1x1x1) conv with
            that many channels; None returns the last decoder features
            (``filters[0]`` channels).
        filters: sequence of ints, output channels of the conv block of each
            level, top (full resolution) first; its length - 1 is the number
            of down-samplings.
        pool_size: int or one int per spatial axis, the down/up-sampling
            factor between levels (e.g. ``(2, 2, 1)`` pools laterally only).
        kernel_size: int or one int per spatial axis.
        block: "double_conv" or "residual" (encoder blocks only; decoder
            blocks are always two plain convs).
        halve_first_conv: bool, the first conv of each encoder block has
            ``filters[k] // 2`` channels.
        activation: activation of every conv (a Keras activation name).
        use_batch_norm: bool, batch normalization after each conv.
        pooling: "max" or "average".
        upsampling: "nearest", "bilinear" (2D only; on TensorFlow, Keras
            3.15's bilinear resize fails where H, W are unknown in a traced
            graph) or "transpose" (a transposed conv with kernel and stride
            ``pool_size`` that keeps the channel count).
        output_activation: activation of the final conv (None: linear).
        **kwargs: passed to ``keras.Model`` (``name``, ``dtype``, ...).

    Example:

    ```python
    unet = UNet(ndim=3, in_channels=1, out_channels=1, filters=[8, 16, 32],
                pool_size=(2, 2, 1), block="double_conv")
    unet(np.zeros((1, 16, 16, 6, 1))).shape  # (1, 16, 16, 6, 1)
    ```

    Reference:
        Ronneberger, O., Fischer, P. & Brox, T. U-Net: convolutional networks
        for biomedical image segmentation. MICCAI (2015).
        Çiçek, Ö. et al. 3D U-Net: learning dense volumetric segmentation
        from sparse annotation. MICCAI (2016).
    """

    @builds_layers_in_dtype
    def __init__(
        self,
        ndim=2,
        in_channels=1,
        out_channels=1,
        filters=(32, 64, 128, 256, 512),
        pool_size=2,
        kernel_size=3,
        block="double_conv",
        halve_first_conv=False,
        activation="relu",
        use_batch_norm=True,
        pooling="max",
        upsampling="nearest",
        output_activation=None,
        **kwargs,
    ):
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3 (spatial axes); got {ndim!r}")
        in_channels = _positive_int("in_channels", in_channels)
        if out_channels is not None:
            out_channels = _positive_int("out_channels", out_channels)
        if isinstance(filters, int) or len(filters) < 1:
            raise ValueError(f"filters must be a non-empty sequence of ints, one per level; got {filters!r}")
        filters = [_positive_int("filters", f) for f in filters]
        pool_size = _per_axis("pool_size", pool_size, ndim)
        kernel_size = _per_axis("kernel_size", kernel_size, ndim)
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}; got {block!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
        if upsampling not in UPSAMPLINGS or (upsampling == "bilinear" and ndim != 2):
            accepted = UPSAMPLINGS if ndim == 2 else ("nearest", "transpose")
            raise ValueError(f"upsampling must be one of {accepted} for ndim={ndim}; got {upsampling!r}")
        if block == "residual":
            widths = [in_channels, *filters]
            if any(b < a for a, b in zip(widths, widths[1:])):
                raise ValueError(
                    "block='residual' zero-pads the block input along channels, so channels must never "
                    f"shrink along the encoder (in_channels, *filters); got {widths}"
                )
        depth = len(filters) - 1
        conv_cls = _CONV[ndim]

        def conv(channels, name):
            return conv_cls(channels, kernel_size, padding="same", name=name)

        def norm_act(x, name):
            if use_batch_norm:
                x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
            return keras.layers.Activation(activation, name=f"{name}_act")(x)

        # === Functional Model ===
        inputs = keras.Input(shape=(None,) * ndim + (in_channels,), name="inputs")
        x = inputs
        channels = in_channels
        skips = []
        for k, f in enumerate(filters):
            name = f"down_{k}"
            if k > 0:
                x = _POOL[(pooling, ndim)](pool_size, name=f"{name}_pool")(x)
            y = norm_act(conv(f // 2 if halve_first_conv else f, f"{name}_conv_0")(x), f"{name}_0")
            y = norm_act(conv(f, f"{name}_conv_1")(y), f"{name}_1")
            if block == "residual":
                # Deep-Z's residual path: the input, zero-padded to f channels.
                if f > channels:
                    x = ops.pad(x, [[0, 0]] * (ndim + 1) + [[0, f - channels]])
                y = keras.layers.Add(name=f"{name}_residual")([x, y])
            x = y
            channels = f
            skips.append(x)
        for k in reversed(range(depth)):
            name = f"up_{k}"
            if upsampling == "transpose":
                x = _CONV_TRANSPOSE[ndim](channels, pool_size, strides=pool_size, name=f"{name}_upsample")(x)
            elif upsampling == "bilinear":
                x = keras.layers.UpSampling2D(pool_size, interpolation="bilinear", name=f"{name}_upsample")(x)
            else:
                x = _UPSAMPLE[ndim](pool_size, name=f"{name}_upsample")(x)
            x = keras.layers.Concatenate(name=f"{name}_concat")([x, skips[k]])
            x = norm_act(conv(filters[k], f"{name}_conv_0")(x), f"{name}_0")
            x = norm_act(conv(filters[k], f"{name}_conv_1")(x), f"{name}_1")
            channels = filters[k]
        if out_channels is not None:
            x = conv_cls(out_channels, 1, activation=output_activation, name="output_conv")(x)
        super().__init__(inputs=inputs, outputs=x, **kwargs)

        # === Config ===
        self.ndim = ndim
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.filters = filters
        self.pool_size = pool_size
        self.kernel_size = kernel_size
        self.block = block
        self.halve_first_conv = bool(halve_first_conv)
        self.activation = activation
        self.use_batch_norm = bool(use_batch_norm)
        self.pooling = pooling
        self.upsampling = upsampling
        self.output_activation = output_activation

    @property
    def size_multiple(self):
        """Per spatial axis, the factor its size must be a multiple of."""
        return [p ** (len(self.filters) - 1) for p in self.pool_size]

    def check_spatial_shape(self, shape):
        """Raises ValueError when a static spatial size does not divide by
        ``size_multiple`` (sizes that are None, only known later, pass)."""
        spatial = tuple(shape)[1:-1]
        for axis, (size, multiple) in enumerate(zip(spatial, self.size_multiple)):
            if size is not None and size % multiple:
                raise ValueError(
                    f"{type(self).__name__} input spatial sizes must be multiples of {self.size_multiple} "
                    f"(pool_size {self.pool_size} ** {len(self.filters) - 1} down-samplings); got spatial "
                    f"shape {spatial} (axis {axis} is {size}). Pad the input first."
                )

    # The check runs in __call__ (a clean message for eager calls, before
    # Keras adds the arguments to it) and again in call, which is what JAX's
    # stateless paths run; sizes that do not divide would otherwise fail deep
    # inside as a concatenation mismatch.
    def __call__(self, *args, **kwargs):
        if args and hasattr(args[0], "shape"):
            self.check_spatial_shape(args[0].shape)
        return super().__call__(*args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        self.check_spatial_shape(inputs.shape)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "ndim": self.ndim,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "filters": list(self.filters),
            "pool_size": list(self.pool_size),
            "kernel_size": list(self.kernel_size),
            "block": self.block,
            "halve_first_conv": self.halve_first_conv,
            "activation": self.activation,
            "use_batch_norm": self.use_batch_norm,
            "pooling": self.pooling,
            "upsampling": self.upsampling,
            "output_activation": self.output_activation,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
