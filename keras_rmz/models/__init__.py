"""The keras_rmz model zoo."""

from keras_rmz.models.deep_z import DeepZ
from keras_rmz.models.discriminator import Discriminator
from keras_rmz.models.reconstruction_model import ReconstructionModel
from keras_rmz.models.recurrent_mz import AUTHORS_CODE_CONFIG, RecurrentMZ, RecurrentMZPlus
from keras_rmz.models.unet import UNet
from keras_rmz.models.unet3d import UNet3D

__all__ = [
    "AUTHORS_CODE_CONFIG",
    "DeepZ",
    "Discriminator",
    "ReconstructionModel",
    "RecurrentMZ",
    "RecurrentMZPlus",
    "UNet",
    "UNet3D",
]
