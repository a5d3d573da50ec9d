"""Precision as a setting: models that compute in bfloat16 or float16 with
float32 weights (Keras mixed precision), chosen per call.

- ``resolve_precision("auto")``: the fastest precision that keeps accuracy
  on this hardware and backend (``keras_rmz.backend.precision``; the
  measurements are in docs/performance.md).
- ``with_precision(model, precision)``: the model, or a copy of it that
  computes in ``precision`` with the same (float32) weights. ``reconstruct``
  uses it, so a preset loaded once serves every precision.
- Every keras_rmz model takes ``dtype=`` (a Keras dtype policy such as
  ``"mixed_bfloat16"``) and builds all its layers with it; a preset's config
  never records it, so presets keep float32 weights whatever precision
  trained or ran them.

Example:

```python
model = keras_rmz.RecurrentMZ.from_preset("recurrent_mz_nuclei_m2")
volume = model.reconstruct(stack, input_z=[6, 12], output_z=z, precision="bfloat16")
tuned = keras_rmz.RecurrentMZ.from_preset("recurrent_mz_nuclei_m2", dtype=policy_name("bfloat16"))
```
"""

import contextlib
import functools
import inspect
import weakref

import keras

from keras_rmz.backend.precision import (  # noqa: F401 - re-exported
    ENVIRONMENT_VARIABLE,
    POLICIES,
    PRECISIONS,
    auto_precision,
    check_precision,
    precision_of_policy,
    resolve_precision,
)

__all__ = [
    "ENVIRONMENT_VARIABLE", "POLICIES", "PRECISIONS", "auto_precision", "builds_layers_in_dtype", "check_precision",
    "dtype_policy_scope", "policy_name", "precision_of_policy", "resolve_precision", "with_precision",
]


def policy_name(precision):
    """The Keras dtype policy of a precision (``"auto"`` resolved first):
    ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"``."""
    return POLICIES[resolve_precision(precision)]


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Layers made in the block take ``policy`` (a name or a
    ``keras.DTypePolicy``) as their default; the global policy is restored
    afterwards. None leaves the default as it is."""
    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def builds_layers_in_dtype(init):
    """Decorates a functional model's ``__init__`` so that its ``dtype=``
    argument reaches the layers it makes before ``super().__init__``
    (Keras gives a functional model's dtype to the model alone)."""

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        with dtype_policy_scope(kwargs.get("dtype")):
            init(self, *args, **kwargs)

    # Keras reads the constructor's arguments (inspect.getfullargspec, which
    # does not follow __wrapped__) to record a model's config.
    wrapper.__signature__ = inspect.signature(init)
    return wrapper


# model -> {policy name: copy}: the copies ``with_precision`` made, so that a
# model reconstructed many times is copied (and compiled) once per precision.
_COPIES = weakref.WeakKeyDictionary()
# Attributes a copy shares with its model (what reconstruct reads from it).
_SHARED_ATTRIBUTES = ("_keras_rmz_preset_metadata", "_keras_rmz_preset_handle")


def with_precision(model, precision="auto"):
    """``model`` when it already computes in ``precision``, else a copy of
    it that does, holding the model's current weights (copied at every
    call, so a model trained further is seen as it is now).

    Args:
        model: a keras_rmz model (any ``keras.Model`` whose ``get_config``
            and ``from_config`` round-trip); anything else is returned as
            it is.
        precision: ``"auto"``, ``"float32"``, ``"bfloat16"`` or
            ``"float16"``.
    """
    wanted = POLICIES[resolve_precision(precision)]
    if not isinstance(model, keras.Model) or model.dtype_policy.name == wanted:
        return model
    copies = _COPIES.setdefault(model, {})
    copy = copies.get(wanted)
    if copy is None:
        copy = type(model).from_config({**model.get_config(), "dtype": wanted})
        copy.build_from_config(model.get_build_config() or {"input_shape": None})
        for name in _SHARED_ATTRIBUTES:
            if hasattr(model, name):
                setattr(copy, name, getattr(model, name))
        copy.jit_compile = model.jit_compile
        copies[wanted] = copy
    copy.set_weights(model.get_weights())
    return copy
