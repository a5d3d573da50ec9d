"""``AdversarialOptimizer``: the generator's and the discriminator's
optimizers as one ``keras.optimizers.Optimizer``."""

import keras
from keras.saving import deserialize_keras_object, serialize_keras_object


@keras.saving.register_keras_serializable(package="keras_rmz")
class AdversarialOptimizer(keras.optimizers.Optimizer):
    """Two optimizers, one for the generator and one for the discriminator,
    presented to Keras as a single optimizer.

    `AdversarialTrainer` stores this as its ``optimizer``. Keras's training
    loop keeps exactly ``model.optimizer.variables`` as optimizer state (on
    JAX they travel through the jitted train step and nothing else does), so
    ``variables`` here lists the generator optimizer's variables followed by
    the discriminator optimizer's: both Adam states (iterations, first and
    second moments) are carried across steps on every backend, saved by
    ``model.save_weights`` and restored by `TrainingCheckpoint`.

    The trainer's train step calls the two inner optimizers directly; this
    wrapper itself does not apply gradients. ``iterations`` and
    ``learning_rate`` are the generator optimizer's, so Keras callbacks that
    schedule the learning rate (``ReduceLROnPlateau``,
    ``LearningRateScheduler``) act on the generator; set
    ``discriminator_optimizer.learning_rate`` for the discriminator.

    Args:
        generator_optimizer: a `keras.optimizers.Optimizer` for the
            generator's weights.
        discriminator_optimizer: a `keras.optimizers.Optimizer` for the
            discriminator's weights (a different instance).
        name: name of the wrapper.

    Example:

    ```python
    optimizer = AdversarialOptimizer(
        keras.optimizers.Adam(1e-5), keras.optimizers.Adam(1e-6))
    optimizer.build_split(generator.trainable_variables,
                          discriminator.trainable_variables)
    ```
    """

    def __init__(self, generator_optimizer, discriminator_optimizer, name="adversarial_optimizer", **kwargs):
        for arg, value in (
            ("generator_optimizer", generator_optimizer),
            ("discriminator_optimizer", discriminator_optimizer),
        ):
            if not isinstance(value, keras.optimizers.Optimizer) or isinstance(value, AdversarialOptimizer):
                raise TypeError(
                    f"{arg} must be a keras.optimizers.Optimizer instance (e.g. keras.optimizers.Adam(1e-5)); "
                    f"got {type(value).__name__}"
                )
        if generator_optimizer is discriminator_optimizer:
            raise ValueError(
                "generator_optimizer and discriminator_optimizer must be two different optimizer instances: "
                "one optimizer cannot hold the state of both networks"
            )
        # The wrapper's own learning rate is never used (the inner optimizers
        # apply the updates); 0.0 as in keras.optimizers.LossScaleOptimizer.
        super().__init__(learning_rate=0.0, name=name, **kwargs)
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        self._num_generator_variables = 0
        self._discriminator_variable_ids = frozenset()

    def build_split(self, generator_variables, discriminator_variables):
        """Creates both optimizers' variables (moments, iterations).

        Args:
            generator_variables: list of the generator's trainable variables.
            discriminator_variables: list of the discriminator's trainable
                variables.
        """
        if self.built:
            return
        generator_variables = list(generator_variables)
        discriminator_variables = list(discriminator_variables)
        shared = {id(v) for v in generator_variables} & {id(v) for v in discriminator_variables}
        if shared:
            raise ValueError(
                f"the generator and the discriminator must not share trainable variables; {len(shared)} are shared"
            )
        self.generator_optimizer.build(generator_variables)
        self.discriminator_optimizer.build(discriminator_variables)
        self._num_generator_variables = len(self.generator_optimizer.variables)
        self._discriminator_variable_ids = frozenset(id(v) for v in discriminator_variables)
        # Base bookkeeping (the variable index) over both lists; creates no variables.
        super().build(generator_variables + discriminator_variables)

    def build(self, var_list):
        """Keras calls this with one flat variable list; it cannot tell the
        two networks apart, so the split must have been given before."""
        if self.built:
            return
        raise ValueError(
            "AdversarialOptimizer needs to know which variables belong to the generator and which to the "
            "discriminator: build it with build_split(generator_variables, discriminator_variables) "
            "(AdversarialTrainer does this when it is built and compiled)"
        )

    @property
    def variables(self):
        return self.generator_optimizer.variables + self.discriminator_optimizer.variables

    def split_variables(self, values):
        """Splits a list aligned with ``variables`` into the generator
        optimizer's part and the discriminator optimizer's part."""
        values = list(values)
        if len(values) != len(self.variables):
            raise ValueError(
                f"expected {len(self.variables)} optimizer values (generator's then discriminator's); "
                f"got {len(values)}"
            )
        return values[: self._num_generator_variables], values[self._num_generator_variables :]

    @property
    def iterations(self):
        return self.generator_optimizer.iterations

    @property
    def learning_rate(self):
        return self.generator_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.generator_optimizer.learning_rate = learning_rate

    def apply(self, grads, trainable_variables=None):
        raise NotImplementedError(
            "AdversarialOptimizer does not apply gradients itself: call "
            "generator_optimizer.apply(...) and discriminator_optimizer.apply(...) with each network's gradients"
        )

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        raise NotImplementedError(
            "AdversarialOptimizer does not apply gradients itself: split the state with split_variables() and "
            "call generator_optimizer.stateless_apply(...) and discriminator_optimizer.stateless_apply(...)"
        )

    def scale_loss(self, loss):
        # Each network's loss is scaled by its own optimizer in the train step.
        return loss

    def finalize_variable_values(self, var_list):
        # Keras calls this at the end of fit with all trainable variables;
        # each inner optimizer finalizes the variables it was built with
        # (only optimizers with use_ema=True change anything).
        discriminator_ids = self._discriminator_variable_ids
        generator_part = [v for v in var_list if id(v) not in discriminator_ids]
        discriminator_part = [v for v in var_list if id(v) in discriminator_ids]
        if self.generator_optimizer.use_ema:
            self.generator_optimizer.finalize_variable_values(generator_part)
        if self.discriminator_optimizer.use_ema:
            self.discriminator_optimizer.finalize_variable_values(discriminator_part)

    def save_own_variables(self, store):
        for i, variable in enumerate(self.variables):
            store[str(i)] = keras.ops.convert_to_numpy(variable)

    def load_own_variables(self, store):
        if len(store.keys()) != len(self.variables):
            raise ValueError(
                f"cannot restore {self.name}: it has {len(self.variables)} variables but the saved state has "
                f"{len(store.keys())}; build it (fit, or build_split) with the same models before loading"
            )
        for i, variable in enumerate(self.variables):
            variable.assign(store[str(i)])

    def get_config(self):
        return {
            "name": self.name,
            "generator_optimizer": serialize_keras_object(self.generator_optimizer),
            "discriminator_optimizer": serialize_keras_object(self.discriminator_optimizer),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("generator_optimizer", "discriminator_optimizer"):
            config[key] = deserialize_keras_object(config[key], custom_objects=custom_objects)
        return cls(**config)
