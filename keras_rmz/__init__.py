"""keras_rmz: Recurrent-MZ volumetric microscopy as a Keras 3 model zoo.

Example:

```python
import keras_rmz as rmz

model = rmz.RecurrentMZ.from_preset("recurrent_mz_beads_m3")
stack = rmz.io.read_stack("beads.ome.tif")
volume = model.reconstruct(stack.data[[30, 60, 90]],
                           input_z=stack.z[[30, 60, 90]],
                           output_z=stack.z)
```

Submodules and the model classes are imported on first use, so
``import keras_rmz`` stays cheap and a command such as ``keras-rmz simulate``
never pays for a deep-learning backend it does not need.
"""

import importlib

# Registers the built-in presets of every model (the classes load on first use).
from keras_rmz import models  # noqa: F401
from keras_rmz.version import __version__

_SUBMODULES = (
    "cli",
    "data",
    "evaluation",
    "export",
    "inference",
    "io",
    "layers",
    "losses",
    "metrics",
    "models",
    "plot",
    "precision",
    "presets",
    "simulate",
    "training",
)

# Public name -> module that defines it.
_LAZY_ATTRS = {
    "RecurrentMZ": "keras_rmz.models",
    "RecurrentMZPlus": "keras_rmz.models",
    "DeepZ": "keras_rmz.models",
    "UNet3D": "keras_rmz.models",
    "Discriminator": "keras_rmz.models",
    "list_presets": "keras_rmz.presets",
    "OutOfDistributionWarning": "keras_rmz.out_of_distribution",
}

__all__ = ["__version__", *_SUBMODULES, *_LAZY_ATTRS]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_rmz.{name}")
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    raise AttributeError(f"module 'keras_rmz' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
