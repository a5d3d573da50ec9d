"""The 3D U-Net baseline: a fixed number of input images and their DPMs as
one volume, the non-recurrent network Recurrent-MZ is compared with."""

import keras
import numpy as np
from keras import ops

from keras_rmz.layers import layout
from keras_rmz.layers.dpm import DPM
from keras_rmz.layers.sequence_ops import CropToReference, PadToMultiple
from keras_rmz.models.reconstruction_model import ReconstructionModel
from keras_rmz.models.unet import UNet
from keras_rmz.precision import builds_layers_in_dtype


@keras.saving.register_keras_serializable(package="keras_rmz")
class UNet3D(ReconstructionModel):
    """The Recurrent-MZ paper's 3D U-Net baseline (Methods, "The
    implementation of 3D U-Net").

    Each of the ``num_inputs`` images is paired with its digital
    propagation matrix (DPM, the constant plane ``output_z - input_z`` in
    µm) and the ``M x H x W x 2`` sequence is reshaped to one
    ``H x W x 2M`` volume, images and DPMs interleaved along depth
    (``I_1, DPM_1, I_2, DPM_2, ...``): a DPM always follows its image, also
    when inputs are permuted. The volume, one channel, goes through a 3D
    U-Net (``UNet``, nested as the layer ``"unet"``) after Çiçek et al.:

    - 3x3x3 kernels; down-sampling level k has two convs with
      ``base_filters * 2**k / 2`` and ``base_filters * 2**k`` channels
      (the paper: 60·2^k at the last conv of each down-sampling block),
      each followed by batch normalization and ReLU.
    - 2x2x1 max pooling: lateral only, since the depth axis is just 2M
      planes deep (6 for M = 3) and would vanish after one or two 2x
      poolings; the depth axis keeps its 2M planes at every level.
    - Up path: 2x2x1 transposed convs ("up-convolution") that keep the
      channel count, concatenation with the skip, two convs of the level's
      channels.
    - The paper does not say how the 2M-deep output becomes one image: a
      final (1, 1, 2M) valid conv projects depth and features to it.

    The network is tied to ``num_inputs``: it is neither permutation
    invariant nor usable with another M (``check_num_inputs``, a call with
    a static M and ``reconstruct`` refuse other M). Any H, W: images are
    zero-padded to a multiple of ``2**depth`` and the output cropped back.

    Args:
        num_inputs: int, the M the network is built for (3 by default).
        base_filters: int, channels at the last conv of the first level
            (60 in the paper).
        depth: int >= 0, number of lateral 2x2 down-samplings (3, as in
            Çiçek et al.).
        kernel_size: int, conv kernel size along every axis.
        activation: activation of every conv.
        use_batch_norm: bool, batch normalization after each conv.
        upsampling: "transpose" (up-convolution) or "nearest".
        **kwargs: passed to ``keras.Model`` (``name``, ``dtype``, ...).

    Call arguments:
        inputs: dict with ``"images"`` (B, num_inputs, H, W, 1),
            ``"input_z"`` (B, num_inputs) and ``"output_z"`` (B,), z in µm.

    Returns:
        (B, H, W, 1), the inferred image at ``output_z``.

    Example:

    ```python
    model = keras_rmz.UNet3D(num_inputs=3, base_filters=8, depth=2)
    out = model({"images": np.zeros((2, 3, 64, 64, 1)),
                 "input_z": [[0.0, 3.0, 6.0]] * 2, "output_z": [1.5, 4.0]})
    out.shape  # (2, 64, 64, 1)
    ```

    Reference:
        Çiçek, Ö., Abdulkadir, A., Lienkamp, S. S., Brox, T. & Ronneberger,
        O. 3D U-Net: learning dense volumetric segmentation from sparse
        annotation. MICCAI 2016, 424-432 (2016).
        Huang, L., Chen, H., Luo, Y., Rivenson, Y. & Ozcan, A. Recurrent
        neural network-based volumetric fluorescence microscopy. Light Sci
        Appl 10, 62 (2021), Methods.
    """

    @builds_layers_in_dtype
    def __init__(
        self,
        num_inputs=3,
        base_filters=60,
        depth=3,
        kernel_size=3,
        activation="relu",
        use_batch_norm=True,
        upsampling="transpose",
        **kwargs,
    ):
        for name, value, minimum in (("num_inputs", num_inputs, 1), ("base_filters", base_filters, 2), ("depth", depth, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
        if upsampling not in ("transpose", "nearest"):
            raise ValueError(f"upsampling must be 'transpose' or 'nearest'; got {upsampling!r}")

        # === Layers ===
        pad = PadToMultiple(2**depth, name="pad")
        dpm = DPM(name="dpm")
        unet = UNet(
            ndim=3,
            in_channels=1,
            out_channels=None,
            filters=[base_filters * 2**k for k in range(depth + 1)],
            pool_size=(2, 2, 1),
            kernel_size=kernel_size,
            block="double_conv",
            halve_first_conv=True,
            activation=activation,
            use_batch_norm=use_batch_norm,
            pooling="max",
            upsampling=upsampling,
            name="unet",
        )
        # Names the 2M-deep volume so that it can be inspected:
        # keras.Model(model.inputs, model.get_layer("volume").output).
        volume_tap = keras.layers.Identity(name="volume")
        depth_projection = layout.Conv3D(1, (1, 1, 2 * num_inputs), padding="valid", name="depth_projection")
        crop = CropToReference(name="crop")

        # === Functional Model ===
        images = keras.Input(shape=(num_inputs, None, None, 1), name="images")
        input_z = keras.Input(shape=(num_inputs,), name="input_z")
        output_z = keras.Input(shape=(), name="output_z")
        # input_z itself, but where a traced graph (TensorFlow with relaxed
        # shapes) leaves M unknown and __call__ cannot check it, this
        # broadcast refuses M > 1 other than num_inputs at run time, and the
        # slices below refuse M < num_inputs.
        # (A numpy constant: a backend tensor would be captured by a traced
        # graph, and an ONNX export would ask for it as one more input.)
        checked_z = input_z + np.zeros((1, num_inputs), "float32")
        x = dpm(pad(images), checked_z, output_z)  # (B, M, H', W', 2)
        # (B, M, H', W', 2) -> (B, H', W', 2M, 1): I_1, DPM_1, I_2, DPM_2, ...
        planes = [x[:, m, :, :, c] for m in range(num_inputs) for c in (0, 1)]
        volume = volume_tap(ops.expand_dims(ops.stack(planes, axis=-1), -1))
        y = depth_projection(unet(volume))  # (B, H', W', 1, 1)
        outputs = crop(y[:, :, :, 0, :], images)
        super().__init__(
            inputs={"images": images, "input_z": input_z, "output_z": output_z},
            outputs=outputs,
            **kwargs,
        )

        # === Config ===
        self.num_inputs = num_inputs
        self.base_filters = base_filters
        self.depth = depth
        self.kernel_size = kernel_size
        self.activation = activation
        self.use_batch_norm = bool(use_batch_norm)
        self.upsampling = upsampling

    def check_num_inputs(self, num_inputs):
        if num_inputs != self.num_inputs:
            raise ValueError(
                f"UNet3D was built for num_inputs = {self.num_inputs} input images (a 3D U-Net needs a fixed "
                f"input grid); got M = {num_inputs} — build UNet3D(num_inputs={num_inputs}) or use RecurrentMZ, "
                "which takes any M"
            )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_inputs": self.num_inputs,
                "base_filters": self.base_filters,
                "depth": self.depth,
                "kernel_size": self.kernel_size,
                "activation": self.activation,
                "use_batch_norm": self.use_batch_norm,
                "upsampling": self.upsampling,
            }
        )
        return config
