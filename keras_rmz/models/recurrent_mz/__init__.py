"""RecurrentMZ and RecurrentMZPlus, and their built-in presets."""

from keras_rmz.models._lazy import lazy_attributes
from keras_rmz.models.recurrent_mz.recurrent_mz_presets import presets
from keras_rmz.presets.registry import register_presets

register_presets(presets, __name__)

_NAMES = {
    "AUTHORS_CODE_CONFIG": "keras_rmz.models.recurrent_mz.recurrent_mz",
    "RecurrentMZ": "keras_rmz.models.recurrent_mz.recurrent_mz",
    "RecurrentMZPlus": "keras_rmz.models.recurrent_mz.recurrent_mz_plus",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
