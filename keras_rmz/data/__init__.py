"""Training data: the paper's normalization and ``VolumeDataset``.

``VolumeDataset`` is imported on first use: it needs Keras (and so a
backend), the normalization does not.
"""

import importlib

from keras_rmz.data.normalization import Normalization, compute_normalization, extended_depth_of_field

__all__ = ["Normalization", "VolumeDataset", "compute_normalization", "extended_depth_of_field"]


def __getattr__(name):
    if name == "VolumeDataset":
        return importlib.import_module("keras_rmz.data.volume_dataset").VolumeDataset
    raise AttributeError(f"module 'keras_rmz.data' has no attribute {name!r}")
