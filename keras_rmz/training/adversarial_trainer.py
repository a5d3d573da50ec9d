"""``AdversarialTrainer``: trains a Recurrent-MZ generator against a
discriminator with the paper's losses, on every Keras backend."""

import numbers

import keras
from keras import ops
from keras.saving import deserialize_keras_object, serialize_keras_object

from keras_rmz.losses import RecurrentMZLoss, berhu, discriminator_loss, generator_adversarial_loss, ms_ssim
from keras_rmz.backend import train_steps
from keras_rmz.training.adversarial_optimizer import AdversarialOptimizer
from keras_rmz.metrics.keras_metrics import PSNR, SSIM

# Paper, Methods ("Recurrent-MZ implementation"): Adam at 1e-5; Eq. 7 with
# alpha = 3 (BerHu), beta = 1 (1 - MS-SSIM), gamma = 0.5 (adversarial).
PAPER_LEARNING_RATE = 1e-5
PAPER_BERHU_WEIGHT = 3.0
PAPER_MS_SSIM_WEIGHT = 1.0
PAPER_ADVERSARIAL_WEIGHT = 0.5

# Running means reported by fit() for the training batches (beside "loss",
# the content loss, and the compiled metrics such as psnr and ssim).
_TRAIN_LOGS = (
    "g_loss",
    "berhu_loss",
    "ms_ssim_loss",
    "adversarial_loss",
    "d_loss",
    "d_real_loss",
    "d_fake_loss",
)


def _unwrap_loss_scale(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.inner_optimizer
    return optimizer


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def _check_weight(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0 or 'auto'; got {value!r}")
    return float(value)


def _check_learning_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a number > 0 or 'auto'; got {value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="keras_rmz")
class AdversarialTrainer(keras.Model):
    """Trains a generator with a discriminator (least-squares GAN) as in
    Recurrent-MZ.

    Generator loss (paper Eq. 7), with ``y_hat = G(x)``::

        L_G = 3 BerHu(y_hat, y) + 1 (1 - MS-SSIM(y_hat, y)) + 0.5 (D(y_hat) - 1)^2

    Discriminator loss (Eq. 10)::

        L_D = 1/2 D(y_hat)^2 + 1/2 (D(y) - 1)^2

    Both networks are updated at every step, each by its own Adam (learning
    rate 1e-5 by default, the paper's; the authors' code used 1e-6 for the
    discriminator). `compile()` sets all of this with ``"auto"`` defaults a
    user can override. ``fit`` works on TensorFlow, JAX and PyTorch (one
    small train step per backend, `keras_rmz.backend.train_steps`), and
    both optimizers' states are carried across steps on every backend: the
    trainer's ``optimizer`` is an `AdversarialOptimizer` owning both.

    Calling the trainer runs the generator, so ``predict`` and ``evaluate``
    work on it (``evaluate`` reports the content loss and the compiled
    metrics, PSNR and SSIM by default; the discriminator is not used).

    ``fit`` reports for the training batches (running means over the epoch):
    ``loss`` (the content loss ``3 BerHu + 1 (1 - MS-SSIM)``, the same
    quantity as ``val_loss``), ``g_loss`` (the full generator loss),
    ``berhu_loss`` (BerHu, unweighted), ``ms_ssim_loss`` (``1 - MS-SSIM``,
    unweighted), ``adversarial_loss`` (``(D(y_hat) - 1)^2``, unweighted),
    ``d_loss``, ``d_real_loss`` (``1/2 (D(y) - 1)^2``), ``d_fake_loss``
    (``1/2 D(y_hat)^2``), ``psnr`` and ``ssim``; with ``validation_data``
    also ``val_loss``, ``val_psnr`` and ``val_ssim`` (data range 1.0, the
    paper's normalized intensities; see `PSNR`, `SSIM`).

    Args:
        generator: a `keras.Model` mapping the input dict to
            ``(B, H, W, 1)``, e.g. `keras_rmz.RecurrentMZ`.
        discriminator: a `keras.Model` mapping ``(B, H, W, 1)`` to a score
            per image (``(B, 1)``, sigmoid), e.g.
            `keras_rmz.models.Discriminator`.
        **kwargs: passed to `keras.Model` (``name``, ...).

    Example:

    ```python
    generator = keras_rmz.RecurrentMZ()
    trainer = keras_rmz.training.AdversarialTrainer(
        generator, keras_rmz.models.Discriminator())
    trainer.compile()                     # the paper's recipe
    trainer.fit(train_dataset, validation_data=val_dataset, epochs=100,
                callbacks=[keras_rmz.training.TrainingCheckpoint("runs/beads")])
    volume = generator.reconstruct(images, input_z, output_z)
    ```

    Reference:
        Huang, L., Chen, H., Luo, Y., Rivenson, Y. & Ozcan, A. Recurrent neural
        network-based volumetric fluorescence microscopy. Light Sci Appl 10,
        62 (2021), Methods.
    """

    def __init__(self, generator, discriminator, **kwargs):
        for arg, value in (("generator", generator), ("discriminator", discriminator)):
            if not isinstance(value, keras.Model):
                raise TypeError(f"{arg} must be a keras.Model (e.g. keras_rmz.RecurrentMZ()); got {type(value).__name__}")
        if generator is discriminator:
            raise ValueError("generator and discriminator must be two different models")
        super().__init__(**kwargs)

        # === Networks ===
        self.generator = generator
        self.discriminator = discriminator

        # === Training logs ===
        self._train_trackers = {name: keras.metrics.Mean(name=name) for name in _TRAIN_LOGS}

        # Set by compile().
        self.content_loss = None
        self.adversarial_weight = None

    # --- Model -----------------------------------------------------------

    def build(self, inputs_shape=None):
        if not self.discriminator.built:
            height, width = None, None
            if isinstance(inputs_shape, dict) and inputs_shape.get("images") is not None:
                height, width = tuple(inputs_shape["images"])[2:4]
            self.discriminator.build((None, height, width, 1))
        self._build_optimizer()
        self.built = True

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def _build_optimizer(self):
        optimizer = getattr(self, "optimizer", None)
        if isinstance(optimizer, AdversarialOptimizer) and not optimizer.built:
            optimizer.build_split(self.generator.trainable_variables, self.discriminator.trainable_variables)

    # --- Compile ---------------------------------------------------------

    def compile(
        self,
        generator_optimizer="auto",
        discriminator_optimizer="auto",
        loss="auto",
        metrics="auto",
        learning_rate="auto",
        discriminator_learning_rate="auto",
        berhu_weight="auto",
        ms_ssim_weight="auto",
        adversarial_weight="auto",
        **kwargs,
    ):
        """Configures training; every argument defaults to the paper.

        Args:
            generator_optimizer: ``"auto"`` (Adam at ``learning_rate``) or a
                `keras.optimizers.Optimizer`.
            discriminator_optimizer: ``"auto"`` (Adam at
                ``discriminator_learning_rate``) or a
                `keras.optimizers.Optimizer`.
            loss: the generator's content loss. ``"auto"`` is
                `keras_rmz.losses.RecurrentMZLoss` with ``berhu_weight`` and
                ``ms_ssim_weight``; any Keras loss ``(y_true, y_pred)`` is
                accepted (then ``berhu_loss`` and ``ms_ssim_loss`` are not
                logged).
            metrics: ``"auto"`` (`PSNR` and `SSIM`, data range 1.0), a list
                of Keras metrics, or None.
            learning_rate: generator learning rate for the ``"auto"``
                optimizer. ``"auto"`` = 1e-5 (paper).
            discriminator_learning_rate: discriminator learning rate for the
                ``"auto"`` optimizer. ``"auto"`` = 1e-5 (paper); the
                authors' code used 1e-6.
            berhu_weight: alpha of Eq. 7 (``"auto"`` = 3.0), for the
                ``"auto"`` loss.
            ms_ssim_weight: beta of Eq. 7 (``"auto"`` = 1.0), for the
                ``"auto"`` loss.
            adversarial_weight: gamma of Eq. 7 (``"auto"`` = 0.5). 0 trains
                the discriminator but leaves the generator's loss without
                the adversarial term.
            **kwargs: `keras.Model.compile` arguments (``jit_compile``,
                ``run_eagerly``, ``steps_per_execution``,
                ``auto_scale_loss``). With a ``"mixed_float16"`` dtype
                policy each network's optimizer is wrapped in a
                `keras.optimizers.LossScaleOptimizer` (unless
                ``auto_scale_loss=False``).
        """
        for forbidden in ("optimizer", "loss_weights", "weighted_metrics"):
            if forbidden in kwargs:
                raise TypeError(
                    f"AdversarialTrainer.compile() does not take {forbidden!r}: use generator_optimizer / "
                    "discriminator_optimizer, loss and berhu_weight / ms_ssim_weight / adversarial_weight"
                )
        auto_scale_loss = kwargs.pop("auto_scale_loss", True)

        generator_optimizer = self._resolve_optimizer(
            "generator_optimizer", generator_optimizer, "learning_rate", learning_rate
        )
        discriminator_optimizer = self._resolve_optimizer(
            "discriminator_optimizer", discriminator_optimizer, "discriminator_learning_rate", discriminator_learning_rate
        )
        if auto_scale_loss:
            generator_optimizer = self._maybe_loss_scale(self.generator, generator_optimizer)
            discriminator_optimizer = self._maybe_loss_scale(self.discriminator, discriminator_optimizer)

        if _is_auto(loss):
            loss = RecurrentMZLoss(
                berhu_weight=PAPER_BERHU_WEIGHT if _is_auto(berhu_weight) else _check_weight("berhu_weight", berhu_weight),
                ms_ssim_weight=PAPER_MS_SSIM_WEIGHT if _is_auto(ms_ssim_weight) else _check_weight("ms_ssim_weight", ms_ssim_weight),
            )
        else:
            if not (_is_auto(berhu_weight) and _is_auto(ms_ssim_weight)):
                raise ValueError(
                    "berhu_weight and ms_ssim_weight configure the 'auto' loss; with loss=... set the weights on "
                    "that loss instead (e.g. loss=keras_rmz.losses.RecurrentMZLoss(berhu_weight=2.0))"
                )
            loss = keras.losses.get(loss)
            if loss is None or not callable(loss):
                raise ValueError(f"loss must be 'auto', a Keras loss or a callable (y_true, y_pred); got {loss!r}")
        self.content_loss = loss
        self.adversarial_weight = (
            PAPER_ADVERSARIAL_WEIGHT if _is_auto(adversarial_weight) else _check_weight("adversarial_weight", adversarial_weight)
        )
        if _is_auto(metrics):
            metrics = [PSNR(), SSIM()]

        super().compile(
            optimizer=AdversarialOptimizer(generator_optimizer, discriminator_optimizer),
            loss=loss,
            metrics=metrics,
            auto_scale_loss=False,
            **kwargs,
        )
        # Kept serialized: a dict holding metric objects would be tracked as
        # new state, which Keras refuses once the model is built.
        self._compile_arguments = serialize_keras_object(
            {
                # compile() wraps them again under a mixed_float16 policy.
                "generator_optimizer": _unwrap_loss_scale(generator_optimizer),
                "discriminator_optimizer": _unwrap_loss_scale(discriminator_optimizer),
                "loss": loss,
                "metrics": metrics,
                "adversarial_weight": self.adversarial_weight,
                **kwargs,
            }
        )
        if self.generator.built and self.discriminator.built:
            self._build_optimizer()

    @staticmethod
    def _resolve_optimizer(name, optimizer, rate_name, rate):
        if _is_auto(optimizer):
            rate = PAPER_LEARNING_RATE if _is_auto(rate) else _check_learning_rate(rate_name, rate)
            return keras.optimizers.Adam(learning_rate=rate)
        if not _is_auto(rate):
            raise ValueError(
                f"{rate_name} sets the learning rate of the 'auto' {name}; with {name}=... give the learning "
                "rate to that optimizer instead"
            )
        if isinstance(optimizer, str):
            optimizer = keras.optimizers.get(optimizer)
        if not isinstance(optimizer, keras.optimizers.Optimizer) or isinstance(optimizer, AdversarialOptimizer):
            raise TypeError(
                f"{name} must be 'auto', an optimizer name or a keras.optimizers.Optimizer; got {optimizer!r}"
            )
        return optimizer

    @staticmethod
    def _maybe_loss_scale(network, optimizer):
        if network.dtype_policy.name == "mixed_float16" and not isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer
        ):
            return keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    @property
    def generator_optimizer(self):
        """The optimizer of the generator (inside ``self.optimizer``)."""
        return self.optimizer.generator_optimizer

    @property
    def discriminator_optimizer(self):
        """The optimizer of the discriminator (inside ``self.optimizer``)."""
        return self.optimizer.discriminator_optimizer

    # --- Losses (shared by the per-backend steps) ------------------------

    def compute_generator_loss(self, y, y_pred, d_fake):
        """Generator loss of Eq. 7 and its parts.

        Args:
            y: target images ``(B, H, W, 1)``.
            y_pred: generator output, same shape.
            d_fake: discriminator output on ``y_pred``.

        Returns:
            ``(g_loss, values)``: the scalar loss (float32) and a dict of the
            logged scalars (``loss``, ``g_loss``, ``adversarial_loss`` and,
            with `RecurrentMZLoss`, ``berhu_loss`` and ``ms_ssim_loss``).
        """
        y = ops.cast(y, "float32")
        y_pred = ops.cast(y_pred, "float32")
        values = {}
        content_loss = self.content_loss
        if isinstance(content_loss, RecurrentMZLoss) and content_loss.reduction == "sum_over_batch_size":
            # The same sum as RecurrentMZLoss.call, kept in parts for the logs.
            pixel = ops.mean(berhu(y, y_pred, c=content_loss.c, adaptive=content_loss.adaptive))
            structure = ops.mean(1.0 - ops.cast(ms_ssim(y, y_pred, max_val=content_loss.max_val), "float32"))
            content = content_loss.berhu_weight * pixel + content_loss.ms_ssim_weight * structure
            values["berhu_loss"] = pixel
            values["ms_ssim_loss"] = structure
        else:
            # A plain loss function (e.g. "mae") returns per-pixel values;
            # the mean matches Keras's "sum_over_batch_size" reduction.
            content = ops.mean(ops.cast(content_loss(y, y_pred), "float32"))
        adversarial = generator_adversarial_loss(ops.cast(d_fake, "float32"))
        g_loss = content + self.adversarial_weight * adversarial
        values.update({"loss": content, "g_loss": g_loss, "adversarial_loss": adversarial})
        return g_loss, values

    def compute_discriminator_loss(self, d_real, d_fake):
        """Discriminator loss of Eq. 10 and its two halves.

        Returns:
            ``(d_loss, values)`` with ``d_loss``, ``d_real_loss`` and
            ``d_fake_loss`` in ``values``.
        """
        d_real = ops.cast(d_real, "float32")
        d_fake = ops.cast(d_fake, "float32")
        d_loss = discriminator_loss(d_real, d_fake)
        values = {
            "d_loss": d_loss,
            "d_real_loss": 0.5 * ops.mean(ops.square(d_real - 1.0)),
            "d_fake_loss": 0.5 * ops.mean(ops.square(d_fake)),
        }
        return d_loss, values

    # --- Steps and metrics -------------------------------------------------

    def train_step(self, *args):
        if self.content_loss is None:
            raise ValueError("call compile() before fit(): AdversarialTrainer.compile() sets the paper's recipe")
        return train_steps.train_step(self, *args)

    def update_train_metrics(self, x, y, y_pred, values):
        """Updates the running means of a training step and returns the logs."""
        batch_size = ops.shape(y)[0]
        # Keras's own loss tracker holds "loss": the content loss here, so
        # that "loss" and "val_loss" (from the default test step) agree.
        self._loss_tracker.update_state(values["loss"], sample_weight=batch_size)
        for name, tracker in self._train_trackers.items():
            if name in values:
                tracker.update_state(values[name], sample_weight=batch_size)
        logs = super().compute_metrics(x, y, y_pred)
        return {name: value for name, value in logs.items() if name not in self._train_trackers or name in values}

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        # Used by Keras's test step (evaluate, validation): the generator's
        # content loss and the compiled metrics only; the training trackers
        # are not updated there.
        logs = super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return {name: value for name, value in logs.items() if name not in self._train_trackers}

    # --- Config ------------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "generator": serialize_keras_object(self.generator),
            "discriminator": serialize_keras_object(self.discriminator),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("generator", "discriminator"):
            config[key] = deserialize_keras_object(config[key], custom_objects=custom_objects)
        return cls(**config)

    def get_compile_config(self):
        if not self.compiled or not hasattr(self, "_compile_arguments"):
            return {}
        return dict(self._compile_arguments)

    def compile_from_config(self, config):
        config = deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self._build_optimizer()
