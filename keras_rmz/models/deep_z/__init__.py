"""DeepZ, and its built-in presets."""

from keras_rmz.models._lazy import lazy_attributes
from keras_rmz.models.deep_z.deep_z_presets import presets
from keras_rmz.presets.registry import register_presets

register_presets(presets, __name__)

__all__ = ["DeepZ"]
__getattr__, __dir__ = lazy_attributes(__name__, {"DeepZ": "keras_rmz.models.deep_z.deep_z"})
