"""Recurrent-MZ: a convolutional recurrent network that infers the image at
any axial plane from M wide-field images at arbitrary depths."""

import keras

from keras_rmz.layers import layout
from keras_rmz.layers.decoder_block import DecoderBlock
from keras_rmz.layers.dpm import DPM
from keras_rmz.layers.encoder_block import EncoderBlock
from keras_rmz.layers.recurrent_block import RecurrentBlock
from keras_rmz.layers.sequence_ops import CropToReference, FoldSequence, NearestInputPlane, PadToMultiple, UnfoldSequence
from keras_rmz.models.reconstruction_model import ReconstructionModel
from keras_rmz.precision import builds_layers_in_dtype

# The authors' public code (a holography sibling sharing the network) differs
# from the paper's text in these settings; the paper's text gives the defaults.
AUTHORS_CODE_CONFIG = {
    "base_filters": 16,
    "gru_layers": 2,
    "activation": "leaky_relu",
    "recurrent_activation": "hard_sigmoid_tf2",
}


@keras.saving.register_keras_serializable(package="keras_rmz")
class RecurrentMZ(ReconstructionModel):
    """Recurrent-MZ (Huang et al., 2021): M images + DPMs -> one output plane.

    Each input image is paired with its digital propagation matrix (DPM), the
    constant plane ``output_z - input_z`` (µm), built inside the model. Every
    image passes through the same encoder (Eq. 1: at scale k two 3x3 convs
    with ``base_filters * 2**k / 2`` and ``base_filters * 2**k`` channels,
    BN, activation, 2x2 max pooling before every scale but the first). A
    recurrent block at every scale (Eq. 2: ``s = x + Conv1x1(ConvGRU(x))``)
    integrates the M feature maps; the decoder (Eq. 3: nearest up-sampling,
    concatenation with ``s``, two 3x3 convs) reads the recurrent state after
    the last input, and a 1x1 conv gives the output image.

    One set of weights serves any M >= 1, any input order and any H, W:
    images are zero-padded to a multiple of ``2**depth`` inside the model and
    the output is cropped back.

    Args:
        base_filters: int, channels of the first scale (20 in the paper,
            16 in the authors' code).
        depth: int, number of 2x2 down-samplings (scales = depth + 1).
        gate: "minimal" (the paper's one-gate ConvGRU, Eq. 4-6) or
            "standard" (two-gate convolutional GRU).
        gru_layers: int, ConvGRUs stacked in each recurrent block (1 in the
            paper, 2 in the authors' code).
        activation: activation of the encoder and decoder convs ("relu" in
            the paper, "leaky_relu" in the authors' code).
        recurrent_activation: gate activation ("sigmoid" in the paper,
            "hard_sigmoid_tf2" = clip(0.2x + 0.5, 0, 1) in the authors' code).
        use_batch_norm: bool, batch normalization after each conv.
        kernel_size: int, size of the encoder, recurrent and decoder kernels.
        input_residual: bool. False (the paper): the network outputs the
            image. True: the network outputs a correction added to the input
            image nearest the output plane (as Deep-Z corrects its input), so
            training starts from the nearest plane instead of from zero.
            Not in the paper. On noisy inputs it stalls near the nearest
            plane's quality, since the correction must cancel that plane's
            noise pixel by pixel (measured in docs/presets.md, "How the CPU
            recipe was chosen"); the shipped presets leave it off.
        **kwargs: passed to ``keras.Model`` (``name``, ``dtype``, ...).

    Call arguments:
        inputs: dict with ``"images"`` (B, M, H, W, 1), ``"input_z"``
            (B, M) and ``"output_z"`` (B,), z in µm.

    Returns:
        (B, H, W, 1), the inferred image at ``output_z``.

    Example:

    ```python
    model = keras_rmz.RecurrentMZ()          # the paper's network
    out = model({"images": np.zeros((2, 3, 64, 64, 1)),
                 "input_z": [[0.0, 3.0, 6.0]] * 2,
                 "output_z": [1.5, 4.0]})
    out.shape  # (2, 64, 64, 1)
    authors = keras_rmz.RecurrentMZ(**keras_rmz.models.AUTHORS_CODE_CONFIG)
    ```

    Reference:
        Huang, L., Chen, H., Luo, Y., Rivenson, Y. & Ozcan, A. Recurrent neural
        network-based volumetric fluorescence microscopy. Light Sci Appl 10,
        62 (2021).
    """

    target_modality = "widefield"

    @builds_layers_in_dtype
    def __init__(
        self,
        base_filters=20,
        depth=4,
        gate="minimal",
        gru_layers=1,
        activation="relu",
        recurrent_activation="sigmoid",
        use_batch_norm=True,
        kernel_size=3,
        input_residual=False,
        **kwargs,
    ):
        if int(base_filters) < 2:
            raise ValueError(f"base_filters must be an integer >= 2; got {base_filters}")
        if int(depth) < 0:
            raise ValueError(f"depth must be an integer >= 0; got {depth}")
        if int(gru_layers) < 1:
            raise ValueError(f"gru_layers must be an integer >= 1; got {gru_layers}")
        filters = [int(base_filters) * 2**k for k in range(int(depth) + 1)]

        # === Layers ===
        pad = PadToMultiple(2 ** int(depth), name="pad")
        dpm = DPM(name="dpm")
        fold = FoldSequence(name="fold")
        unfold = UnfoldSequence(name="unfold")
        encoders = [
            EncoderBlock(
                f,
                mid_filters=f // 2,
                kernel_size=kernel_size,
                pool=k > 0,
                activation=activation,
                use_batch_norm=use_batch_norm,
                name=f"encoder_{k}",
            )
            for k, f in enumerate(filters)
        ]
        recurrents = [
            RecurrentBlock(
                f,
                kernel_size=kernel_size,
                gate=gate,
                num_layers=gru_layers,
                recurrent_activation=recurrent_activation,
                name=f"recurrent_{k}",
            )
            for k, f in enumerate(filters)
        ]
        decoders = [
            DecoderBlock(
                f,
                kernel_size=kernel_size,
                activation=activation,
                use_batch_norm=use_batch_norm,
                name=f"decoder_{k}",
            )
            for k, f in enumerate(filters[:-1])
        ]
        head = layout.Conv2D(1, 1, name="output_conv")
        crop = CropToReference(name="crop")

        # === Functional Model ===
        images = keras.Input(shape=(None, None, None, 1), name="images")
        input_z = keras.Input(shape=(None,), name="input_z")
        output_z = keras.Input(shape=(), name="output_z")
        x = dpm(pad(images), input_z, output_z)  # (B, M, H', W', 2)
        features = fold(x)
        skips = []
        for encoder, recurrent in zip(encoders, recurrents):
            features = encoder(features)
            skips.append(recurrent(unfold(features, x)))
        y = skips[-1]
        for decoder, skip in zip(reversed(decoders), reversed(skips[:-1])):
            y = decoder([y, skip])
        outputs = crop(head(y), images)
        if input_residual:
            nearest = NearestInputPlane(name="nearest_input")(images, input_z, output_z)
            outputs = keras.layers.Add(name="input_residual")([outputs, nearest])
        super().__init__(
            inputs={"images": images, "input_z": input_z, "output_z": output_z},
            outputs=outputs,
            **kwargs,
        )

        # === Config ===
        self.base_filters = int(base_filters)
        self.depth = int(depth)
        self.gate = gate
        self.gru_layers = int(gru_layers)
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.use_batch_norm = bool(use_batch_norm)
        self.kernel_size = kernel_size
        self.input_residual = bool(input_residual)

    @property
    def min_plane_size(self):
        """The smallest plane side (pixels) ``reconstruct`` accepts: one
        pixel at the bottom of the ``depth`` poolings; a smaller plane would
        be mostly the model's zero padding."""
        return 2**self.depth

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "base_filters": self.base_filters,
                "depth": self.depth,
                "gate": self.gate,
                "gru_layers": self.gru_layers,
                "activation": self.activation,
                "recurrent_activation": self.recurrent_activation,
                "use_batch_norm": self.use_batch_norm,
                "kernel_size": self.kernel_size,
                "input_residual": self.input_residual,
            }
        )
        return config
