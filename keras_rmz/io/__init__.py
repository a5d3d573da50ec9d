"""Stacks and their files: ``Stack``, ``read_stack``, ``write_stack``."""

from keras_rmz.io.resample import resample_planes
from keras_rmz.io.stack import Stack, nearest_planes
from keras_rmz.io.files import read_stack, read_stack_with_defaults, write_stack

__all__ = ["Stack", "nearest_planes", "read_stack", "read_stack_with_defaults", "resample_planes", "write_stack"]
