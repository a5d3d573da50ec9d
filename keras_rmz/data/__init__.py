"""Training data: the paper's normalization and ``VolumeDataset``."""

from keras_rmz.data.normalization import Normalization, compute_normalization, extended_depth_of_field
from keras_rmz.data.volume_dataset import VolumeDataset

__all__ = ["Normalization", "VolumeDataset", "compute_normalization", "extended_depth_of_field"]
