"""Domain randomization: simulated stacks drawn from a named distribution of
microscopes, samples and cameras.

A preset trained on one simulated microscope learns that microscope. Real
stacks come from many: other objectives, wavelengths and pixel sizes,
refractive-index mismatch, haze from the sample beyond the stack, uneven
illumination, bleaching, other cameras and photon counts, other samples.
``randomized_stack`` draws all of these for each stack from a named,
versioned distribution (``DISTRIBUTIONS``), simulates the stack with
``simulate_stack`` and records what it drew in
``metadata["randomization"]``. A preset trained on such stacks names the
distribution on its card (``describe_distribution``).

Example:

```python
from keras_rmz.simulate import randomized_stack

stack = randomized_stack("widefield-v1", seed=3)          # 91 x 256 x 256 at 0.1 µm
truth = randomized_stack("widefield-v1", seed=3, noise=False)   # the same stack, noise-free
noisy, clean = randomized_pair("widefield-v1", seed=3)    # both from one simulation
stack.metadata["randomization"]["parameters"]["sample"]    # e.g. "nuclei/embryo"
```
"""

import copy
import math

import numpy as np

from keras_rmz.io.resample import resample_planes
from keras_rmz.simulate.camera import Camera
from keras_rmz.simulate.simulate_stack import SAMPLE_DEFAULTS, _check_positive, _check_shape, simulate_stack

# Mean detected photons per µm³ of each sample kind's grid at its default
# density and brightness 1 (measured with sample_object: beads 38, nuclei
# 850-9500 by arrangement, spots 560, filaments 800); the haze is drawn
# relative to it, scaled by the drawn density and brightness.
_SAMPLE_DENSITY_SCALE = {"beads": 30.0, "nuclei": 2500.0, "spots": 600.0, "filaments": 750.0}

# Immersion media: refractive index, NA range of their objectives, and the
# sample's refractive index range (live cells and tissue 1.33-1.40, fixed
# and cleared samples up to 1.45).
_IMMERSIONS = {
    "oil": {"n_immersion": 1.515, "na": (1.3, 1.49), "n_sample": (1.33, 1.46)},
    "water": {"n_immersion": 1.333, "na": (1.1, 1.27), "n_sample": (1.33, 1.38)},
    "silicone": {"n_immersion": 1.406, "na": (1.25, 1.35), "n_sample": (1.36, 1.42)},
}

# Sample kinds: weight, generator options, and each option's range. A range
# (lo, hi) is uniform, ("log", lo, hi) log-uniform, a list a uniform choice.
_NUCLEUS_OPTIONS = {"texture": (0.15, 0.6), "grain_um": (0.25, 0.5), "background_fraction": ("log", 0.02, 0.3)}
_WIDEFIELD_SAMPLES = {
    "beads/sparse": {"weight": 0.06, "sample": "beads", "density_per_um3": ("log", 0.002, 0.01)},
    "beads/dense": {"weight": 0.06, "sample": "beads", "density_per_um3": ("log", 0.01, 0.08)},
    "nuclei/worm": {"weight": 0.1, "sample": "nuclei", "density_per_um3": (0.006, 0.015),
                    "options": {"arrangement": "worm", **_NUCLEUS_OPTIONS}},
    "nuclei/embryo": {"weight": 0.14, "sample": "nuclei", "density_per_um3": (0.015, 0.04),
                      "options": {"arrangement": "embryo", **_NUCLEUS_OPTIONS}},
    "nuclei/tissue": {"weight": 0.1, "sample": "nuclei", "density_per_um3": (0.008, 0.02),
                      "options": {"arrangement": "tissue", **_NUCLEUS_OPTIONS}},
    "nuclei/flat": {"weight": 0.08, "sample": "nuclei", "density_per_um3": (0.005, 0.02),
                    "options": {"arrangement": "flat", **_NUCLEUS_OPTIONS}},
    "spots": {"weight": 0.22, "sample": "spots", "density_per_um3": ("log", 0.05, 0.6),
              "options": {"arrangement": ["embryo", "tissue"], "size_um": (0.1, 0.4),
                          "background_fraction": ("log", 0.05, 1.0)}},
    "filaments": {"weight": 0.24, "sample": "filaments", "density_per_um3": ("log", 0.02, 0.15),
                  "options": {"arrangement": ["asters", "network"], "persistence_um": ("log", 3.0, 30.0),
                              "background_fraction": ("log", 0.05, 1.0)}},
}

# The microscope, field and camera of every wide-field distribution.
_WIDEFIELD_OPTICS_AND_CAMERA = {
    "immersion": {"oil": 0.6, "water": 0.25, "silicone": 0.15},
    "emission_wavelength_um": (0.45, 0.68),
    "stokes_shift_um": (0.015, 0.045),
    "depth_um": (0.0, 20.0),
    "pixel_um": ("log", 0.05, 0.25),
    # Diffuse fluorescence relative to the sample's own mean density.
    "haze_fraction": ("log", 0.02, 3.0),
    "axial_margin_um": (3.0, 8.0),
    "illumination": (0.0, 0.5),
    "bleaching": (0.0, 0.4),
    "brightness": ("log", 0.2, 5.0),
    "background_photons": ("log", 1.0, 300.0),
    "offset_counts": (0.0, 1000.0),
    "gain_counts_per_photon": ("log", 0.5, 2.5),
    "read_noise_counts": ("log", 0.7, 8.0),
    "pinhole_au": (0.7, 1.3),
}

DISTRIBUTIONS = {
    "widefield-v1": {
        "description": (
            "wide-field stacks of beads, nuclei (worm, embryo, tissue, flat cells), protein spots and "
            "filaments through oil, water or silicone objectives, 450-680 nm emission, 0.05-0.25 µm pixels, "
            "refractive-index mismatch at 0-20 µm depth, diffuse haze, vignetting, bleaching, and "
            "cameras from shot-noise-limited to high signal"
        ),
        "samples": _WIDEFIELD_SAMPLES,
        **_WIDEFIELD_OPTICS_AND_CAMERA,
    },
    "beads-v1": {
        "description": (
            "wide-field stacks of sparse and dense sub-resolution beads through the microscopes, fields and "
            "cameras of widefield-v1 (oil, water or silicone objectives, 450-680 nm emission, 0.05-0.25 µm "
            "pixels, refractive-index mismatch at 0-20 µm depth, haze, vignetting, bleaching)"
        ),
        "samples": {kind: {**spec, "weight": 0.5} for kind, spec in _WIDEFIELD_SAMPLES.items()
                    if spec["sample"] == "beads"},
        **_WIDEFIELD_OPTICS_AND_CAMERA,
    },
}

# Random stream of the parameter draws: a child of the stack's seed that
# simulate_stack's own streams (object 0, wide-field 1, confocal 2) never use.
_PARAMETER_STREAM = 3


def _distribution(name):
    if name not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {name!r}; known: {sorted(DISTRIBUTIONS)}")
    return DISTRIBUTIONS[name]


def _draw(rng, spec):
    if isinstance(spec, list):
        return spec[int(rng.integers(len(spec)))]
    if isinstance(spec, str):
        return spec
    if spec[0] == "log":
        return float(math.exp(rng.uniform(math.log(spec[1]), math.log(spec[2]))))
    return float(rng.uniform(*spec))


def draw_parameters(distribution="widefield-v1", seed=0):
    """The microscope, sample and camera that ``randomized_stack`` simulates
    for ``seed``: a dict of plain values (recorded in the stack's metadata).

    The same seed always draws the same parameters.
    """
    spec = _distribution(distribution)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_PARAMETER_STREAM,)))
    kinds = list(spec["samples"])
    weights = np.array([spec["samples"][k]["weight"] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    sample = spec["samples"][kind]
    immersions = list(spec["immersion"])
    immersion_weights = np.array([spec["immersion"][k] for k in immersions])
    immersion = immersions[int(rng.choice(len(immersions), p=immersion_weights / immersion_weights.sum()))]
    medium = _IMMERSIONS[immersion]
    emission = _draw(rng, spec["emission_wavelength_um"])
    return {
        "sample": kind,
        "sample_kind": sample["sample"],
        "density_per_um3": _draw(rng, sample["density_per_um3"]),
        "sample_options": {key: _draw(rng, value) for key, value in sample.get("options", {}).items()},
        "immersion": immersion,
        "n_immersion": medium["n_immersion"],
        "na": _draw(rng, medium["na"]),
        "n_sample": _draw(rng, medium["n_sample"]),
        "depth_um": _draw(rng, spec["depth_um"]),
        "emission_wavelength_um": emission,
        "excitation_wavelength_um": emission - _draw(rng, spec["stokes_shift_um"]),
        "pinhole_au": _draw(rng, spec["pinhole_au"]),
        "pixel_um": _draw(rng, spec["pixel_um"]),
        "haze_fraction": _draw(rng, spec["haze_fraction"]),
        "axial_margin_um": _draw(rng, spec["axial_margin_um"]),
        "illumination": _draw(rng, spec["illumination"]),
        "bleaching": _draw(rng, spec["bleaching"]),
        "brightness": _draw(rng, spec["brightness"]),
        "camera": {
            "offset_counts": _draw(rng, spec["offset_counts"]),
            "gain_counts_per_photon": _draw(rng, spec["gain_counts_per_photon"]),
            "read_noise_counts": _draw(rng, spec["read_noise_counts"]),
            "background_photons": _draw(rng, spec["background_photons"]),
            "bit_depth": 16,
        },
    }


def _simulate(parameters, modality, shape, z_step_um, pixel_um, noise, seed):
    """simulate_stack with the drawn parameters, at the drawn pixel size."""
    field_um = (shape[1] * pixel_um, shape[2] * pixel_um)
    grid = tuple(max(8, int(round(f / parameters["pixel_um"]))) for f in field_um)
    sample = parameters["sample_kind"]
    scale = _SAMPLE_DENSITY_SCALE[sample] * parameters["density_per_um3"] / SAMPLE_DEFAULTS[sample]["density_per_um3"]
    return simulate_stack(
        sample,
        modality,
        shape=(shape[0], *grid),
        z_step_um=z_step_um,
        pixel_um=parameters["pixel_um"],
        density_per_um3=parameters["density_per_um3"],
        noise=noise,
        seed=int(seed),
        camera=Camera(**parameters["camera"]),
        margin_um=(parameters["axial_margin_um"], SAMPLE_DEFAULTS[sample]["margin_um"][1]),
        brightness=parameters["brightness"],
        sample_options=parameters["sample_options"],
        haze_photons_per_um3=parameters["haze_fraction"] * scale * parameters["brightness"],
        illumination=parameters["illumination"],
        bleaching=parameters["bleaching"],
        na=parameters["na"],
        n_immersion=parameters["n_immersion"],
        n_sample=parameters["n_sample"],
        depth_um=parameters["depth_um"],
        emission_wavelength_um=parameters["emission_wavelength_um"],
        excitation_wavelength_um=parameters["excitation_wavelength_um"],
        **({"pinhole_au": parameters["pinhole_au"]} if modality == "confocal" else {}),
    )


def _resampled(stack, shape, pixel_um, distribution, seed, parameters):
    data = resample_planes(stack.data.astype(np.float32), shape[1:])
    metadata = dict(stack.metadata)
    metadata["simulated_pixel_um"] = parameters["pixel_um"]
    metadata["randomization"] = {"distribution": distribution, "seed": int(seed), "parameters": parameters}
    return type(stack)(data, stack.z, float(pixel_um), metadata)


def _check_grid(shape, z_step_um, pixel_um):
    _check_positive("z_step_um", z_step_um)
    _check_positive("pixel_um", pixel_um)
    return _check_shape(shape)


def randomized_stack(
    distribution="widefield-v1",
    modality="widefield",
    shape=(91, 256, 256),
    z_step_um=0.2,
    pixel_um=0.1,
    noise=True,
    seed=0,
):
    """A simulated stack whose microscope, sample and camera are drawn from
    ``distribution`` (``draw_parameters``).

    The stack is simulated at the drawn pixel size over the same field of
    view as ``shape`` at ``pixel_um``, then resampled to ``pixel_um``
    (``keras_rmz.io.resample_planes``, as ``reconstruct`` resamples a stack
    to a preset's pixel size). The same seed gives the same object,
    microscope and camera for both modalities and with or without noise, so
    ``noise=False`` and ``modality="confocal"`` make registered targets
    (``randomized_pair`` makes a noisy stack and its noise-free twin from
    one simulation).

    Args:
        distribution: a name in ``DISTRIBUTIONS``.
        modality: "widefield" or "confocal" (Recurrent-MZ+ targets).
        shape: (Z, Y, X) of the returned stack.
        z_step_um: axial step (µm).
        pixel_um: pixel size of the returned stack (µm).
        noise: camera noise (uint16 counts before resampling) or the
            noise-free expected counts.
        seed: non-negative int.

    Returns:
        ``Stack`` (float32 counts at ``pixel_um``) whose metadata records
        ``randomization``: the distribution's name, the seed and the drawn
        parameters.
    """
    parameters = draw_parameters(distribution, seed)
    shape = _check_grid(shape, z_step_um, pixel_um)
    stack = _simulate(parameters, modality, shape, z_step_um, pixel_um, noise, seed)
    return _resampled(stack, shape, pixel_um, distribution, seed, parameters)


def randomized_pair(distribution="widefield-v1", shape=(91, 256, 256), z_step_um=0.2, pixel_um=0.1, seed=0):
    """A noisy wide-field stack and its noise-free twin from one simulation.

    The noise-free stack is ``randomized_stack(..., noise=False)``; the noisy
    one reads the same expected photons out through the drawn camera
    (``Camera.acquire``, the seed's wide-field noise stream), so it has the
    statistics of ``randomized_stack(..., noise=True)`` at half the cost.

    Returns:
        ``(noisy, noise_free)``: two ``Stack`` s.
    """
    from keras_rmz.simulate.simulate_stack import _rng, _seed_sequence

    parameters = draw_parameters(distribution, seed)
    shape = _check_grid(shape, z_step_um, pixel_um)
    clean = _simulate(parameters, "widefield", shape, z_step_um, pixel_um, False, seed)
    camera = Camera(**parameters["camera"])
    photons = (clean.data.astype(np.float64) - camera.offset_counts) / camera.gain_counts_per_photon
    photons = np.maximum(photons - camera.background_photons, 0.0)
    counts = camera.acquire(photons, _rng(_seed_sequence(int(seed)), "widefield"))
    metadata = {**clean.metadata, "noise": True, "noise_model": camera.to_dict()}
    noisy = type(clean)(counts, clean.z, clean.pixel_um, metadata)
    return (_resampled(noisy, shape, pixel_um, distribution, seed, parameters),
            _resampled(clean, shape, pixel_um, distribution, seed, parameters))


def describe_distribution(name="widefield-v1"):
    """The distribution's ranges as a plain dict (for a preset's card)."""
    spec = copy.deepcopy(_distribution(name))
    spec["immersion"] = {k: {"weight": w, **_IMMERSIONS[k]} for k, w in spec["immersion"].items()}
    return {"name": name, **spec}
