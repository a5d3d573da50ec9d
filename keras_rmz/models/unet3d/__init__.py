from keras_rmz.models.unet3d.unet3d import UNet3D

__all__ = ["UNet3D"]
