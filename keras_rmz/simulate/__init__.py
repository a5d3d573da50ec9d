"""Physics-based simulation of fluorescence z-stacks (beads, nuclei, spots, filaments).

``simulate_stack`` images a random object (``sample_object``) with a
wide-field (scalar Gibson-Lanni) or confocal PSF (``widefield_psf``,
``confocal_psf``) and reads it out with a camera model (``Camera``).
``randomized_stack`` draws the microscope, sample and camera of each stack
from a named distribution (domain randomization, ``DISTRIBUTIONS``).
See docs/simulation.md for the physics, defaults and limits.
"""

from keras_rmz.simulate.camera import Camera
from keras_rmz.simulate.psf import clear_cache, confocal_psf, radial_profile, widefield_psf
from keras_rmz.simulate.randomize import (DISTRIBUTIONS, describe_distribution, draw_parameters,
                                          randomized_pair, randomized_stack)
from keras_rmz.simulate.samples import beads, filaments, nuclei, spots
from keras_rmz.simulate.simulate_stack import sample_object, simulate_stack

__all__ = [
    "DISTRIBUTIONS",
    "Camera",
    "beads",
    "clear_cache",
    "confocal_psf",
    "describe_distribution",
    "draw_parameters",
    "filaments",
    "nuclei",
    "radial_profile",
    "randomized_pair",
    "randomized_stack",
    "sample_object",
    "simulate_stack",
    "spots",
    "widefield_psf",
]
