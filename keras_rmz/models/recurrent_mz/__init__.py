from keras_rmz.models.recurrent_mz.recurrent_mz import AUTHORS_CODE_CONFIG, RecurrentMZ
from keras_rmz.models.recurrent_mz.recurrent_mz_plus import RecurrentMZPlus

__all__ = ["AUTHORS_CODE_CONFIG", "RecurrentMZ", "RecurrentMZPlus"]
