"""Helpers shared by the loss tests: gradients on the current backend, a
one-step `fit` with a loss, and an independent numpy BerHu."""

import keras
import numpy as np


def value_and_grad(fn, x, *args):
    """`fn(x, *args)` (summed to a scalar) and its gradient with respect to
    `x`, on the current Keras backend. Both returned as numpy."""
    backend = keras.backend.backend()
    x = np.asarray(x, dtype="float32")
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = tf.reduce_sum(fn(x, *args))
        grad = tape.gradient(value, x)
        return value.numpy(), grad.numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        # jit: one XLA compile per shape instead of one per op (eager JAX
        # compiles every op for every new shape, which dominates run time).
        value, grad = jax.jit(
            jax.value_and_grad(lambda v, *a: jnp.sum(fn(v, *a)))
        )(jnp.asarray(x), *args)
        return np.asarray(value), np.asarray(grad)
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        value = torch.sum(fn(x, *args))
        value.backward()
        return value.detach().cpu().numpy(), x.grad.detach().cpu().numpy()
    raise NotImplementedError(backend)


def evaluate(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` as numpy. Under JAX it runs jitted, as inside
    `fit`: one compile per input shape instead of one per op, which keeps
    the tests fast; the eager path is covered by the other calls."""
    if keras.backend.backend() == "jax":
        import jax

        key = (fn, tuple(sorted(kwargs.items())))
        if key not in _JITTED:
            _JITTED[key] = jax.jit(lambda *a: fn(*a, **kwargs))
        return np.asarray(_JITTED[key](*args))
    return keras.ops.convert_to_numpy(fn(*args, **kwargs))


_JITTED = {}


def fit_one_step(loss, size=32, channels=1):
    """Compile a tiny conv model with `loss`, fit one step; return the
    history's loss and whether the weights moved."""
    rng = np.random.default_rng(0)
    x = rng.random((2, size, size, channels)).astype("float32")
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype("float32")
    inputs = keras.Input((size, size, channels))
    # A 3x3 mean filter to start from: its output correlates positively
    # with the target. (From a random init MS-SSIM can be clipped to 0 with
    # a zero gradient, as in TensorFlow, and the step would not move.)
    outputs = keras.layers.Conv2D(
        channels,
        3,
        padding="same",
        kernel_initializer=keras.initializers.Constant(1.0 / (9 * channels)),
    )(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    before = [np.array(w) for w in model.get_weights()]
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    after = model.get_weights()
    moved = any(not np.allclose(a, b) for a, b in zip(before, after))
    return history.history["loss"][-1], moved, model


def numpy_berhu(y_true, y_pred, c):
    """Paper's BerHu, pixel by pixel, averaged over each sample. `c` is a
    number or an array broadcastable to the inputs."""
    d = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)
    c = np.broadcast_to(np.asarray(c, np.float64), d.shape)
    out = np.empty_like(d)
    flat_d, flat_c, flat_out = d.ravel(), c.ravel(), out.ravel()
    for i, (di, ci) in enumerate(zip(flat_d, flat_c)):
        if abs(di) <= ci:
            flat_out[i] = abs(di)
        else:
            flat_out[i] = (di * di + ci * ci) / (2 * ci)
    return out.reshape(d.shape).reshape(d.shape[0], -1).mean(axis=1)
