"""The adversarial train step, once per backend.

Each step does the same thing:

1. ``y_hat = G(x)``; ``D(y_hat)`` and ``D(y)`` in training mode.
2. Generator loss (Eq. 7): ``content(y, y_hat) + gamma (D(y_hat) - 1)^2``,
   differentiated with respect to the generator's weights only.
3. Discriminator loss (Eq. 10): ``1/2 D(y_hat)^2 + 1/2 (D(y) - 1)^2`` with
   ``y_hat`` held constant, differentiated with respect to the
   discriminator's weights only.
4. Both optimizers apply their gradients (simultaneous update, as in the
   TensorFlow 2 GAN recipe the authors' code follows); each loss is scaled by
   its own optimizer, so a `keras.optimizers.LossScaleOptimizer` (float16
   mixed precision) works for both networks.

On JAX the step is a pure function of the state Keras carries, ``(trainable,
non_trainable, optimizer, metrics)`` variables. The optimizer part is
``AdversarialOptimizer.variables``, the generator optimizer's variables then
the discriminator optimizer's, so both Adam states travel from step to step
(Keras alone would only carry ``model.optimizer``'s).
"""

import keras


def train_step(trainer, *args):
    """Runs one adversarial step of ``trainer`` on the current backend.

    Args:
        trainer: an `AdversarialTrainer`.
        *args: ``(data,)`` on TensorFlow and PyTorch, ``(state, data)`` on
            JAX (Keras's own ``train_step`` signatures).

    Returns:
        The logs dict (and, on JAX, the new state).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return tensorflow_train_step(trainer, *args)
    if backend == "torch":
        return torch_train_step(trainer, *args)
    if backend == "jax":
        return jax_train_step(trainer, *args)
    raise NotImplementedError(
        f"AdversarialTrainer trains on the tensorflow, jax and torch backends; got KERAS_BACKEND={backend!r}"
    )


def _unpack(data):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if y is None:
        raise ValueError(
            "AdversarialTrainer needs (inputs, target) pairs: the data gave no target image; "
            "pass e.g. a VolumeDataset, or fit(x=inputs_dict, y=targets)"
        )
    if sample_weight is not None:
        raise ValueError(
            "AdversarialTrainer does not support sample weights (the GAN losses are batch means); "
            "pass data as (inputs, target) without a third element"
        )
    return x, y


def tensorflow_train_step(trainer, data):
    """One step with two `tf.GradientTape`s (one forward pass)."""
    import tensorflow as tf

    x, y = _unpack(data)
    generator, discriminator = trainer.generator, trainer.discriminator
    generator_optimizer = trainer.generator_optimizer
    discriminator_optimizer = trainer.discriminator_optimizer
    with tf.GradientTape() as generator_tape, tf.GradientTape() as discriminator_tape:
        y_pred = generator(x, training=True)
        d_fake = discriminator(y_pred, training=True)
        d_real = discriminator(y, training=True)
        g_loss, g_values = trainer.compute_generator_loss(y, y_pred, d_fake)
        d_loss, d_values = trainer.compute_discriminator_loss(d_real, d_fake)
        scaled_g_loss = generator_optimizer.scale_loss(g_loss)
        scaled_d_loss = discriminator_optimizer.scale_loss(d_loss)
    # Each tape differentiates only with respect to its own network; the
    # discriminator's gradient stops at y_hat since G's weights are not asked for.
    generator_variables = generator.trainable_variables
    discriminator_variables = discriminator.trainable_variables
    g_grads = generator_tape.gradient(scaled_g_loss, generator_variables)
    d_grads = discriminator_tape.gradient(scaled_d_loss, discriminator_variables)
    if generator_variables:
        generator_optimizer.apply(g_grads, generator_variables)
    if discriminator_variables:
        discriminator_optimizer.apply(d_grads, discriminator_variables)
    return trainer.update_train_metrics(x, y, y_pred, {**g_values, **d_values})


def torch_train_step(trainer, data):
    """One step with `torch.autograd.grad` (one forward pass)."""
    import torch

    x, y = _unpack(data)
    generator, discriminator = trainer.generator, trainer.discriminator
    generator_optimizer = trainer.generator_optimizer
    discriminator_optimizer = trainer.discriminator_optimizer
    y_pred = generator(x, training=True)
    d_fake = discriminator(y_pred, training=True)
    d_real = discriminator(y, training=True)
    g_loss, g_values = trainer.compute_generator_loss(y, y_pred, d_fake)
    d_loss, d_values = trainer.compute_discriminator_loss(d_real, d_fake)
    scaled_g_loss = generator_optimizer.scale_loss(g_loss)
    scaled_d_loss = discriminator_optimizer.scale_loss(d_loss)

    generator_variables = generator.trainable_variables
    discriminator_variables = discriminator.trainable_variables
    # autograd.grad walks only the graph between each loss and the weights
    # asked for: d_loss does not reach back into the generator.
    g_grads = _torch_grads(torch, scaled_g_loss, generator_variables, retain_graph=True)
    d_grads = _torch_grads(torch, scaled_d_loss, discriminator_variables, retain_graph=False)
    with torch.no_grad():
        if generator_variables:
            generator_optimizer.apply(g_grads, generator_variables)
        if discriminator_variables:
            discriminator_optimizer.apply(d_grads, discriminator_variables)
        values = {name: value.detach() for name, value in {**g_values, **d_values}.items()}
        return trainer.update_train_metrics(x, y, y_pred.detach(), values)


def _torch_grads(torch, loss, variables, retain_graph):
    if not variables:
        return []
    grads = torch.autograd.grad(
        loss, [v.value for v in variables], retain_graph=retain_graph, allow_unused=True
    )
    # A weight the loss does not reach (e.g. a frozen branch) gets a zero
    # gradient rather than None, as the other backends give.
    return [torch.zeros_like(v.value) if g is None else g for g, v in zip(grads, variables)]


def _positions(all_variables, subset, what):
    index = {id(v): i for i, v in enumerate(all_variables)}
    try:
        return [index[id(v)] for v in subset]
    except KeyError:
        raise ValueError(
            f"a {what} variable is not among the trainer's variables; "
            "build the AdversarialTrainer after its generator and discriminator are complete"
        ) from None


def _replace(values, positions, new_values):
    values = list(values)
    for position, value in zip(positions, new_values):
        values[position] = value
    return values


def jax_train_step(trainer, state, data):
    """One pure step: ``(logs, new_state) = f(state, data)`` for `jax.jit`."""
    import jax

    trainable, non_trainable, optimizer_variables, metrics_variables = state
    x, y = _unpack(data)
    generator, discriminator = trainer.generator, trainer.discriminator
    generator_optimizer = trainer.generator_optimizer
    discriminator_optimizer = trainer.discriminator_optimizer

    # Where each network's variables sit in the trainer's flat lists
    # (Python, resolved once while tracing).
    g_train = _positions(trainer.trainable_variables, generator.trainable_variables, "generator")
    d_train = _positions(trainer.trainable_variables, discriminator.trainable_variables, "discriminator")
    g_state = _positions(trainer.non_trainable_variables, generator.non_trainable_variables, "generator")
    d_state = _positions(trainer.non_trainable_variables, discriminator.non_trainable_variables, "discriminator")
    g_opt_vars, d_opt_vars = trainer.optimizer.split_variables(optimizer_variables)

    g_tv = [trainable[i] for i in g_train]
    d_tv = [trainable[i] for i in d_train]
    g_ntv = [non_trainable[i] for i in g_state]
    d_ntv = [non_trainable[i] for i in d_state]

    def scale(optimizer, optimizer_values, loss):
        # The loss scale of a LossScaleOptimizer is one of its variables:
        # read it from the state, not from the (purged) Keras variable.
        with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, optimizer_values))):
            return optimizer.scale_loss(loss)

    def generator_objective(g_tv, g_ntv):
        y_pred, g_ntv = generator.stateless_call(g_tv, g_ntv, x, training=True)
        # D's moving statistics from this pass are dropped; the
        # discriminator pass below keeps its own.
        d_fake, _ = discriminator.stateless_call(d_tv, d_ntv, y_pred, training=True)
        g_loss, g_values = trainer.compute_generator_loss(y, y_pred, d_fake)
        return scale(generator_optimizer, g_opt_vars, g_loss), (y_pred, g_ntv, g_values)

    (_, (y_pred, g_ntv, g_values)), g_grads = jax.value_and_grad(generator_objective, has_aux=True)(g_tv, g_ntv)
    y_fake = jax.lax.stop_gradient(y_pred)

    def discriminator_objective(d_tv, d_ntv):
        d_fake, d_ntv = discriminator.stateless_call(d_tv, d_ntv, y_fake, training=True)
        d_real, d_ntv = discriminator.stateless_call(d_tv, d_ntv, y, training=True)
        d_loss, d_values = trainer.compute_discriminator_loss(d_real, d_fake)
        return scale(discriminator_optimizer, d_opt_vars, d_loss), (d_ntv, d_values)

    (_, (d_ntv, d_values)), d_grads = jax.value_and_grad(discriminator_objective, has_aux=True)(d_tv, d_ntv)

    if g_tv:
        g_tv, g_opt_vars = generator_optimizer.stateless_apply(g_opt_vars, g_grads, g_tv)
    if d_tv:
        d_tv, d_opt_vars = discriminator_optimizer.stateless_apply(d_opt_vars, d_grads, d_tv)

    trainable = _replace(_replace(trainable, g_train, g_tv), d_train, d_tv)
    non_trainable = _replace(_replace(non_trainable, g_state, g_ntv), d_state, d_ntv)
    optimizer_variables = list(g_opt_vars) + list(d_opt_vars)

    mapping = list(zip(trainer.metrics_variables, metrics_variables))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = trainer.update_train_metrics(x, y, y_fake, {**g_values, **d_values})
    metrics_variables = [scope.get_current_value(v) for v in trainer.metrics_variables]
    return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)
