"""UNet3D, and its built-in presets."""

from keras_rmz.models._lazy import lazy_attributes
from keras_rmz.models.unet3d.unet3d_presets import presets
from keras_rmz.presets.registry import register_presets

register_presets(presets, __name__)

__all__ = ["UNet3D"]
__getattr__, __dir__ = lazy_attributes(__name__, {"UNet3D": "keras_rmz.models.unet3d.unet3d"})
