"""The keras_rmz model zoo."""

from keras_rmz.models.reconstruction_model import ReconstructionModel
from keras_rmz.models.recurrent_mz import AUTHORS_CODE_CONFIG, RecurrentMZ, RecurrentMZPlus

__all__ = ["AUTHORS_CODE_CONFIG", "ReconstructionModel", "RecurrentMZ", "RecurrentMZPlus"]
