"""The base class every keras_rmz generator shares: the dict call convention,
the M check, ``compile()`` defaults, and ``reconstruct``, the user-level call
(``keras_rmz.inference`` does the work)."""

import keras

from keras_rmz.inference import reconstruct_volume
from keras_rmz.presets.preset_mixin import PresetMixin


class ReconstructionModel(PresetMixin, keras.Model):
    """Base of the keras_rmz generators (``RecurrentMZ``, ``DeepZ``, ``UNet3D``).

    Subclasses are functional models whose input is the dict
    ``{"images": (B, M, H, W, 1), "input_z": (B, M), "output_z": (B,)}``
    (µm) and whose output is ``(B, H, W, 1)``. They override
    ``check_num_inputs`` when they accept only some M, and add their own
    constructor arguments to ``get_config``.

    Args:
        normalization: how ``reconstruct(normalize="auto")`` normalizes the
            input planes, saved in the model's config (and so in a preset):
            ``"paper"`` (default: the paper's shift and scale from the
            inputs' extended-depth-of-field image, inverted on the output)
            or ``"none"`` (the network takes intensities as given).
        **kwargs: passed to ``keras.Model`` (``name``, ``trainable``, ...).
    """

    NORMALIZATIONS = ("paper", "none")

    def __init__(self, *args, normalization="paper", **kwargs):
        if normalization not in self.NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {', '.join(map(repr, self.NORMALIZATIONS))}; got {normalization!r}"
            )
        super().__init__(*args, **kwargs)
        self.normalization = normalization

    # Adam's learning rate of a plain ``compile()``: the generator alone,
    # content loss only, usually fine-tuning a preset. The paper's 1e-5 is a
    # GAN's rate for days on a GPU (``AdversarialTrainer.compile()`` keeps
    # it); 1e-4 is what fine-tuning the presets on a CPU used successfully
    # (examples/finetune.py, the presets' fine-tuning stages).
    DEFAULT_LEARNING_RATE = 1e-4

    def compile(self, optimizer="auto", loss="auto", metrics="auto", learning_rate="auto", **kwargs):
        """Configures training; ``compile()`` alone gives the paper's content loss.

        Args:
            optimizer: ``"auto"`` (``keras.optimizers.Adam(learning_rate)``),
                an optimizer name or a ``keras.optimizers.Optimizer``.
            loss: ``"auto"`` (``keras_rmz.losses.RecurrentMZLoss()``: the
                paper's 3·BerHu(c = 0.1) + 1·(1 − MS-SSIM)) or any Keras loss
                (None: no loss, as in ``keras.Model.compile``).
            metrics: ``"auto"`` (``[keras_rmz.metrics.PSNR(),
                keras_rmz.metrics.SSIM()]``, data range 1.0), a list of
                Keras metrics, or None.
            learning_rate: the ``"auto"`` optimizer's learning rate;
                ``"auto"`` is ``DEFAULT_LEARNING_RATE`` (1e-4). An error
                together with an explicit ``optimizer``.
            **kwargs: the other ``keras.Model.compile`` arguments
                (``jit_compile``, ``run_eagerly``, ``steps_per_execution``,
                ``loss_weights``, ``auto_scale_loss``, ...), passed as given.

        The adversarial term of the paper's loss needs a discriminator:
        ``keras_rmz.training.AdversarialTrainer(model, Discriminator())``
        and its ``compile()`` (the paper's full recipe, Adam 1e-5).

        Example:

        ```python
        model = keras_rmz.RecurrentMZ.from_preset("recurrent_mz_beads_m3")
        model.compile()                       # Adam 1e-4, RecurrentMZLoss, PSNR, SSIM
        model.compile(learning_rate=1e-5, jit_compile=False)
        ```
        """
        if isinstance(learning_rate, str) and learning_rate == "auto":
            learning_rate = None
        elif isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
            raise ValueError(f"learning_rate must be 'auto' or a number > 0; got {learning_rate!r}")
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = keras.optimizers.Adam(
                learning_rate=self.DEFAULT_LEARNING_RATE if learning_rate is None else float(learning_rate)
            )
        elif learning_rate is not None:
            raise ValueError(
                "learning_rate sets the rate of the 'auto' optimizer; with optimizer=... give the learning rate "
                "to that optimizer instead (e.g. optimizer=keras.optimizers.Adam(1e-5))"
            )
        if isinstance(loss, str) and loss == "auto":
            from keras_rmz.losses import RecurrentMZLoss

            loss = RecurrentMZLoss()
        if isinstance(metrics, str) and metrics == "auto":
            from keras_rmz.metrics.keras_metrics import PSNR, SSIM

            metrics = [PSNR(), SSIM()]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def check_num_inputs(self, num_inputs):
        """Raises ValueError when this model cannot take ``num_inputs`` images."""
        if num_inputs < 1:
            raise ValueError(f"{type(self).__name__} needs at least one input image (M >= 1); got M = {num_inputs}")

    def _check_images(self, inputs):
        # M is static eagerly and under jit; where a traced graph leaves it
        # None, the subclass's graph refuses a wrong M at run time.
        if isinstance(inputs, dict) and hasattr(inputs.get("images"), "shape"):
            shape = tuple(inputs["images"].shape)
            if len(shape) >= 2 and shape[1] is not None:
                self.check_num_inputs(int(shape[1]))

    # M is checked in __call__, before Keras's generic input-shape message,
    # and in call, which is what JAX's stateless paths run.
    def __call__(self, *args, **kwargs):
        if args:
            self._check_images(args[0])
        return super().__call__(*args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        self._check_images(inputs)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def get_config(self):
        """The constructor's arguments; subclasses add theirs to this dict."""
        return {"name": self.name, "trainable": self.trainable, "normalization": self.normalization}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def reconstruct(
        self,
        images,
        input_z=None,
        output_z=None,
        batch_size="auto",
        tile_size=None,
        tile_overlap=48,
        normalize="auto",
        verbose="auto",
        jit_compile="auto",
        pixel_um=None,
        extrapolate=False,
        precision="auto",
        engine="keras",
    ):
        """Infers the image at each output plane from M input planes.

        A model loaded from a preset knows the pixel size, input spacing, M,
        output range and optics it was trained for (``preset_metadata``) and
        checks the request against them before any compute: input planes at
        another pixel size are resampled to the preset's (and the output
        back to the input's H x W), output planes beyond the trained range
        are refused unless ``extrapolate=True``, and other mismatches give
        one ``keras_rmz.OutOfDistributionWarning`` (docs/inference.md).

        Args:
            images: array (M, H, W), uint8, uint16 or float: the input
                planes in the microscope's units; or a
                ``keras_rmz.io.Stack`` of the M input planes (its
                ``pixel_um`` and metadata are used, and its ``z`` when
                ``input_z`` is omitted).
            input_z: array (M,): the z position (µm) of each input plane, in
                any order and at any spacing. May be omitted for a Stack.
            output_z: array (K,) or a scalar: the z positions (µm) to infer
                (required).
            batch_size: int, output planes inferred per model call, or
                "auto" (about 256x256 output pixels per call on a CPU with
                TensorFlow, 256x256x4 with JAX or PyTorch, 1024x1024x4 on a
                GPU; 1 to 8 planes).
            tile_size: None (whole planes up to 1024x1024, 512-pixel tiles
                beyond) or an int: planes are cut into overlapping square
                tiles of this size, inferred one by one and blended; memory
                is bounded by ``batch_size * M * tile_size**2``. On
                out-of-memory the tile size is halved and the work retried
                (down to 32 pixels).
            tile_overlap: int, pixels shared by neighbouring tiles, blended
                with a raised-cosine ramp so no seams show.
            normalize: "auto" (the model's ``normalization``, the
                paper's by default, computed from the input planes and
                inverted on the output, so the volume comes back in the
                input's units), a ``keras_rmz.data.Normalization``, or None
                to feed the images as given.
            verbose: "auto" (a progress bar when there is more than one
                model call), True, or False.
            jit_compile: "auto" (the model's own setting: XLA on
                TensorFlow with a GPU, jax.jit on JAX, eager PyTorch), True
                (XLA, jax.jit or ``torch.compile``) or False. Applies to
                reconstruction only; on a CPU XLA helps some networks and
                sizes and hurts others (docs/performance.md).
            pixel_um: the input's pixel size (µm); overrides a Stack's.
                Required for a plain array when the model comes from a
                preset that records its pixel size: the planes are
                resampled (scikit-image) to the preset's pixel size when
                the two differ by more than 2 %. Unused for a model not
                loaded from a preset.
            extrapolate: bool. False (default): output planes whose
                ``output_z - input_z`` lies beyond the preset's trained
                range (widened by 10 % of its width) raise ValueError; True
                reconstructs them with a warning.
            precision: "auto" (the fastest precision that keeps accuracy
                on this hardware and backend, as measured: bfloat16 on
                TensorFlow on CPUs with Intel AMX, float32 elsewhere, GPUs
                included until measured; ``KERAS_RMZ_PRECISION`` overrides
                it), "float32", "bfloat16" or "float16". The
                weights stay float32; a copy of the model computes in the
                reduced type (docs/performance.md).
            engine: "keras" (default), "onnxruntime" or "openvino": run the
                model exported to ONNX (``keras_rmz.export``; once per set
                of weights) with the same tiling, batching, normalization,
                resampling and guards. Needs ``keras-rmz[onnx]`` (and
                ``[openvino]``); computes in float32.

        Returns:
            numpy float32 array (K, H, W), at the input's pixel size.

        Raises:
            ValueError: bad arguments; the pixel size of a preset model's
                input is unknown; output planes beyond the trained range
                without ``extrapolate=True``.

        Example:

        ```python
        model = keras_rmz.RecurrentMZ(base_filters=4, depth=2)
        volume = model.reconstruct(
            np.random.rand(3, 64, 64), input_z=[0.0, 3.0, 6.0],
            output_z=np.arange(0.0, 6.01, 0.5))
        volume.shape  # (13, 64, 64)
        ```

        A preset and a stack that records its pixel size:

        ```python
        model = keras_rmz.RecurrentMZ.from_preset("recurrent_mz_beads_m3")
        stack = keras_rmz.simulate.simulate_stack("beads", shape=(61, 64, 64), pixel_um=0.065, seed=0)
        volume = model.reconstruct(stack.select([10, 30, 50]), output_z=stack.z[10:51])
        volume.shape  # (41, 64, 64): resampled to 0.1 µm pixels inside, back to 0.065 µm
        ```
        """
        model = self
        if engine != "keras":
            from keras_rmz.export import check_engine, check_engine_precision, engine_model
            from keras_rmz.inference import unpack_stack, validate_reconstruct_arguments

            # Bad arguments are reported before the (seconds-long) export.
            check_engine(engine)
            check_engine_precision(engine, precision)
            planes, planes_z, _, _ = unpack_stack(images, input_z, pixel_um)
            if output_z is None:
                raise ValueError("output_z (the z of the planes to infer, µm) is required")
            planes, _, _ = validate_reconstruct_arguments(planes, planes_z, output_z)
            self.check_num_inputs(planes.shape[0])
            model = engine_model(self, engine, num_inputs=planes.shape[0])
        return reconstruct_volume(
            model,
            images,
            input_z,
            output_z,
            batch_size=batch_size,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            normalize=normalize,
            verbose=verbose,
            jit_compile=jit_compile,
            pixel_um=pixel_um,
            extrapolate=extrapolate,
            precision=precision,
        )
