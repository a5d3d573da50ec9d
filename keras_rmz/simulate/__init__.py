"""Physics-based simulation of fluorescence z-stacks (beads, worm nuclei).

``simulate_stack`` images a random object (``sample_object``) with a
wide-field (scalar Gibson-Lanni) or confocal PSF (``widefield_psf``,
``confocal_psf``) and reads it out with a camera model (``Camera``).
See docs/simulation.md for the physics, defaults and limits.
"""

from keras_rmz.simulate.camera import Camera
from keras_rmz.simulate.psf import clear_cache, confocal_psf, radial_profile, widefield_psf
from keras_rmz.simulate.samples import beads, nuclei
from keras_rmz.simulate.simulate_stack import sample_object, simulate_stack

__all__ = [
    "Camera",
    "beads",
    "clear_cache",
    "confocal_psf",
    "nuclei",
    "radial_profile",
    "sample_object",
    "simulate_stack",
    "widefield_psf",
]
