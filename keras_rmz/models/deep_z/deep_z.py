"""Deep-Z: one wide-field image plus its DPM -> the image at another plane,
the single-scan baseline Recurrent-MZ is compared with."""

import keras

from keras import ops

from keras_rmz.layers.dpm import DPM
from keras_rmz.layers.sequence_ops import CropToReference, FoldSequence, PadToMultiple
from keras_rmz.models.reconstruction_model import ReconstructionModel
from keras_rmz.models.unet import UNet
from keras_rmz.precision import builds_layers_in_dtype


@keras.saving.register_keras_serializable(package="keras_rmz")
class DeepZ(ReconstructionModel):
    """Deep-Z (Wu et al., 2019): a U-Net that refocuses a single image.

    The input image is paired with its digital propagation matrix (DPM), the
    constant plane ``output_z - input_z`` (µm), built inside the model, and
    the 2-channel image goes through a 2D U-Net generator (``UNet``, nested
    as the layer ``"unet"``):

    - ``depth`` (4) down-sampling levels and as many up-sampling levels;
      level k has ``base_filters * 2**k`` channels.
    - Encoder blocks are residual: two 3x3 convs, each followed by the
      activation, added to the block input zero-padded along channels;
      2x2 average pooling between levels.
    - Decoder: 2x nearest up-sampling, concatenation with the skip of the
      level, two 3x3 convs; a final 1x1 conv gives one channel.

    This follows our reading of the generator in the Deep-Z paper's Methods
    (ref. 38 of Recurrent-MZ); every choice above is a constructor argument.

    ``images`` must hold exactly one image (M = 1): ``check_num_inputs``, a
    call with a static M != 1 and ``reconstruct`` refuse others. Any H, W:
    the image is zero-padded to a multiple of ``2**depth`` and the output
    cropped back.

    Args:
        base_filters: int, channels of the first level.
        depth: int >= 0, number of 2x2 down-samplings.
        kernel_size: int, conv kernel size.
        activation: activation of every conv ("leaky_relu" by default).
        use_batch_norm: bool, batch normalization after each conv.
        residual: bool, residual encoder blocks (Deep-Z) or plain double convs.
        pooling: "average" (Deep-Z) or "max".
        upsampling: "nearest", "transpose" or "bilinear". Keras 3.15's
            bilinear ``UpSampling2D`` fails on TensorFlow in graphs where H, W
            are unknown (``predict``/``fit`` after a change of image size),
            hence nearest by default.
        **kwargs: passed to ``keras.Model`` (``name``, ``dtype``, ...).

    Call arguments:
        inputs: dict with ``"images"`` (B, 1, H, W, 1), ``"input_z"`` (B, 1)
            and ``"output_z"`` (B,), z in µm.

    Returns:
        (B, H, W, 1), the inferred image at ``output_z``.

    Example:

    ```python
    model = keras_rmz.DeepZ(base_filters=8, depth=2)
    out = model({"images": np.zeros((2, 1, 60, 60, 1)),
                 "input_z": [[3.0], [3.0]], "output_z": [1.5, 4.0]})
    out.shape  # (2, 60, 60, 1)
    volume = model.reconstruct(np.zeros((1, 60, 60)), input_z=[3.0],
                               output_z=np.arange(0.0, 6.01, 0.5))
    ```

    Reference:
        Wu, Y., Rivenson, Y., Wang, H., Luo, Y., Ben-David, E., Bentolila,
        L. A., Pritz, C. & Ozcan, A. Three-dimensional virtual refocusing of
        fluorescence microscopy images using deep learning. Nat. Methods 16,
        1323-1331 (2019).
    """

    @builds_layers_in_dtype
    def __init__(
        self,
        base_filters=48,
        depth=4,
        kernel_size=3,
        activation="leaky_relu",
        use_batch_norm=False,
        residual=True,
        pooling="average",
        upsampling="nearest",
        **kwargs,
    ):
        if int(base_filters) != base_filters or int(base_filters) < 2:
            raise ValueError(f"base_filters must be an integer >= 2; got {base_filters!r}")
        if int(depth) != depth or int(depth) < 0:
            raise ValueError(f"depth must be an integer >= 0; got {depth!r}")
        base_filters, depth = int(base_filters), int(depth)

        # === Layers ===
        pad = PadToMultiple(2**depth, name="pad")
        dpm = DPM(name="dpm")
        unet = UNet(
            ndim=2,
            in_channels=2,
            out_channels=1,
            filters=[base_filters * 2**k for k in range(depth + 1)],
            pool_size=2,
            kernel_size=kernel_size,
            block="residual" if residual else "double_conv",
            activation=activation,
            use_batch_norm=use_batch_norm,
            pooling=pooling,
            upsampling=upsampling,
            name="unet",
        )
        fold = FoldSequence(name="fold")
        crop = CropToReference(name="crop")

        # === Functional Model ===
        images = keras.Input(shape=(1, None, None, 1), name="images")
        input_z = keras.Input(shape=(1,), name="input_z")
        output_z = keras.Input(shape=(), name="output_z")
        # input_z itself, through a stack (equal shapes only) that refuses
        # M != 1 at run time also where a traced graph (TensorFlow with
        # relaxed shapes) leaves M unknown and __call__ cannot check it.
        checked_z = ops.stack([input_z, ops.zeros_like(input_z[:, :1])], axis=0)[0]
        x = fold(dpm(pad(images), checked_z, output_z))  # (B·M, H', W', 2) = (B, H', W', 2)
        outputs = crop(unet(x), images)
        super().__init__(
            inputs={"images": images, "input_z": input_z, "output_z": output_z},
            outputs=outputs,
            **kwargs,
        )

        # === Config ===
        self.base_filters = base_filters
        self.depth = depth
        self.kernel_size = kernel_size
        self.activation = activation
        self.use_batch_norm = bool(use_batch_norm)
        self.residual = bool(residual)
        self.pooling = pooling
        self.upsampling = upsampling

    def check_num_inputs(self, num_inputs):
        if num_inputs != 1:
            raise ValueError(
                f"DeepZ takes exactly one input image (M = 1); got M = {num_inputs} — use RecurrentMZ for several"
            )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "base_filters": self.base_filters,
                "depth": self.depth,
                "kernel_size": self.kernel_size,
                "activation": self.activation,
                "use_batch_norm": self.use_batch_norm,
                "residual": self.residual,
                "pooling": self.pooling,
                "upsampling": self.upsampling,
            }
        )
        return config
