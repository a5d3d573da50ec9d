"""The keras_rmz model zoo.

Importing it registers each model's built-in presets (from
``keras_rmz/models/<model>/<model>_presets.py``); the model classes are
imported on first use, so listing or checking presets needs no backend.
"""

from keras_rmz.models import deep_z, recurrent_mz, unet3d  # noqa: F401 - each registers its presets
from keras_rmz.models._lazy import lazy_attributes

# A model folder's own __init__ knows which of its modules defines a name.
_NAMES = {
    "AUTHORS_CODE_CONFIG": "keras_rmz.models.recurrent_mz",
    "DeepZ": "keras_rmz.models.deep_z",
    "Discriminator": "keras_rmz.models.discriminator",
    "ReconstructionModel": "keras_rmz.models.reconstruction_model",
    "RecurrentMZ": "keras_rmz.models.recurrent_mz",
    "RecurrentMZPlus": "keras_rmz.models.recurrent_mz",
    "UNet": "keras_rmz.models.unet",
    "UNet3D": "keras_rmz.models.unet3d",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
