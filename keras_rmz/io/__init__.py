"""Stacks and their files: ``Stack``, ``read_stack``, ``write_stack``; time-lapses:
``TimeLapse``, ``read_timelapse``, ``write_timelapse``."""

from keras_rmz.io.resample import resample_planes
from keras_rmz.io.stack import Stack, nearest_planes
from keras_rmz.io.files import read_stack, read_stack_with_defaults, write_stack
from keras_rmz.io.timelapse import TimeLapse, read_timelapse, write_timelapse

__all__ = ["Stack", "TimeLapse", "nearest_planes", "read_stack", "read_stack_with_defaults", "read_timelapse",
           "resample_planes", "write_stack", "write_timelapse"]
