"""``simulate_stack``: a physically simulated wide-field or confocal z-stack."""

import math

import numpy as np
import scipy.fft

from keras_rmz.io import Stack
from keras_rmz.simulate import psf as psf_lib
from keras_rmz.simulate import samples
from keras_rmz.simulate.camera import Camera
from keras_rmz.version import __version__

SAMPLES = ("beads", "nuclei", "spots", "filaments")
MODALITIES = ("widefield", "confocal")

# Paper Methods: beads 101 planes at 0.1 µm, Texas Red (ex 589 / em 615 nm);
# C. elegans 91 planes at 0.2 µm, GFP through a FITC set (ex 495 / em 519 nm).
# Fields are the paper's 256 x 256 training crops at ~0.1 µm pixels (DESIGN).
SAMPLE_DEFAULTS = {
    "beads": {
        "shape": (101, 256, 256),
        "z_step_um": 0.1,
        "emission_wavelength_um": 0.615,
        "excitation_wavelength_um": 0.589,
        "density_per_um3": samples.DEFAULT_BEAD_DENSITY_PER_UM3,
        # Padding (z, lateral) in µm whose objects are imaged too: their haze
        # reaches into the field.
        "margin_um": (2.0, 3.2),
        # Relative excitation power of the confocal stack (see simulate_stack).
        "confocal_brightness": 1.0,
    },
    "nuclei": {
        "shape": (91, 256, 256),
        "z_step_um": 0.2,
        "emission_wavelength_um": 0.519,
        "excitation_wavelength_um": 0.495,
        "density_per_um3": samples.DEFAULT_NUCLEUS_DENSITY_PER_UM3,
        "margin_um": (4.0, 3.2),
        "confocal_brightness": 4.0,
    },
    # Protein spots in an embryo, Cy3 (ex 550 / em 570 nm).
    "spots": {
        "shape": (91, 256, 256),
        "z_step_um": 0.2,
        "emission_wavelength_um": 0.570,
        "excitation_wavelength_um": 0.550,
        "density_per_um3": samples.DEFAULT_SPOT_DENSITY_PER_UM3,
        "margin_um": (4.0, 3.2),
        "confocal_brightness": 2.0,
    },
    # Microtubule asters, GFP (FITC set).
    "filaments": {
        "shape": (91, 256, 256),
        "z_step_um": 0.2,
        "emission_wavelength_um": 0.519,
        "excitation_wavelength_um": 0.495,
        "density_per_um3": samples.DEFAULT_FILAMENT_LENGTH_PER_UM3,
        "margin_um": (4.0, 3.2),
        "confocal_brightness": 2.0,
    },
}

# The keyword arguments ``sample_options`` may pass to each sample's generator.
SAMPLE_OPTIONS = {
    "beads": ("brightness_sigma",),
    "nuclei": ("arrangement", "texture", "grain_um", "background_fraction"),
    "spots": ("arrangement", "size_um", "background_fraction"),
    "filaments": ("arrangement", "persistence_um", "background_fraction"),
}

# Independent random streams spawned from the seed: the object is drawn from
# its own stream, so both modalities see the same object whatever the noise.
_STREAMS = {"object": 0, "widefield": 1, "confocal": 2}


def _check_shape(shape):
    try:
        shape = tuple(shape)
    except TypeError:
        shape = None

    def positive_int(n):
        return isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1

    if shape is None or len(shape) != 3 or not all(positive_int(n) for n in shape):
        raise ValueError(f"shape must be three positive integers (Z, Y, X); got {shape!r}")
    return tuple(int(n) for n in shape)


def _check_positive(name, value):
    if not psf_lib._is_number(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 (µm); got {value!r}")
    return float(value)


def _padding(shape, z_step_um, pixel_um, margin_um):
    try:
        margin_z, margin_xy = (float(m) for m in margin_um)
    except (TypeError, ValueError):
        raise ValueError(f"margin_um must be two numbers >= 0 (axial, lateral) in µm; got {margin_um!r}") from None
    if not (math.isfinite(margin_z) and math.isfinite(margin_xy) and margin_z >= 0 and margin_xy >= 0):
        raise ValueError(f"margin_um must be two numbers >= 0 (axial, lateral) in µm; got {margin_um!r}")
    # Whole voxels covering the margin (the 1e-9 keeps 0.3 / 0.1 at 3, not 4).
    pad_z = int(math.ceil(margin_z / z_step_um - 1e-9))
    pad_xy = int(math.ceil(margin_xy / pixel_um - 1e-9))
    return (pad_z, pad_xy, pad_xy)


def _seed_sequence(seed):
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None; got {seed!r}")
    return np.random.SeedSequence(int(seed))


def _rng(sequence, stream):
    return np.random.default_rng(np.random.SeedSequence(sequence.entropy, spawn_key=(_STREAMS[stream],)))


def sample_object(
    sample="beads",
    shape=None,
    z_step_um=None,
    pixel_um=0.1,
    density_per_um3=None,
    seed=None,
    margin_um=None,
    positions_um=None,
    brightness=1.0,
    sample_options=None,
    haze_photons_per_um3=0.0,
):
    """The fluorescent object ``simulate_stack`` images, on its padded grid.

    Same arguments as ``simulate_stack``. The grid extends the stack by
    ``pad`` voxels on each side (z, y, x); voxel ``pad`` is the stack's first
    voxel.

    Returns:
        ``(volume, pad, info)``: float32 expected photons per voxel, the
        padding (pz, py, px), and a dict describing the object.

    Example:

    ```python
    volume, pad, info = sample_object("beads", (21, 64, 64), seed=1)
    len(info["positions_um"])   # number of beads in the padded grid
    ```
    """
    if sample not in SAMPLES:
        raise ValueError(f"sample must be one of {SAMPLES}; got {sample!r}")
    defaults = SAMPLE_DEFAULTS[sample]
    shape = _check_shape(defaults["shape"] if shape is None else shape)
    z_step_um = _check_positive("z_step_um", defaults["z_step_um"] if z_step_um is None else z_step_um)
    pixel_um = _check_positive("pixel_um", pixel_um)
    brightness = _check_positive("brightness", brightness)
    options = _check_sample_options(sample, sample_options)
    if not psf_lib._is_number(haze_photons_per_um3) or haze_photons_per_um3 < 0:
        raise ValueError(f"haze_photons_per_um3 must be a finite number >= 0; got {haze_photons_per_um3!r}")
    if density_per_um3 is None:
        density_per_um3 = defaults["density_per_um3"]
    if not psf_lib._is_number(density_per_um3) or density_per_um3 < 0:
        raise ValueError(f"density_per_um3 must be a finite number >= 0 (objects per µm³); got {density_per_um3!r}")
    pad = _padding(shape, z_step_um, pixel_um, defaults["margin_um"] if margin_um is None else margin_um)
    padded = tuple(n + 2 * p for n, p in zip(shape, pad))
    voxel = (z_step_um, pixel_um, pixel_um)
    origin = tuple(-p * v for p, v in zip(pad, voxel))
    rng = _rng(_seed_sequence(seed), "object")

    if sample == "beads":
        if positions_um is not None:
            positions_um = np.asarray(positions_um, dtype=np.float64)
            if positions_um.ndim != 2 or positions_um.shape[1] != 3 or not np.all(np.isfinite(positions_um)):
                raise ValueError(
                    f"positions_um must be finite (N, 3) bead positions (z, y, x) in µm; got shape {positions_um.shape}"
                )
            index = (positions_um - np.asarray(origin)) / np.asarray(voxel)
            if np.any(index < 0) or np.any(index > np.asarray(padded) - 1):
                raise ValueError(
                    "positions_um must lie inside the padded grid: z in "
                    f"[{origin[0]:.4g}, {origin[0] + (padded[0] - 1) * voxel[0]:.4g}] µm, y and x in "
                    f"[{origin[1]:.4g}, {origin[1] + (padded[1] - 1) * voxel[1]:.4g}] µm "
                    "(increase margin_um to reach further)"
                )
        photons = samples.BEAD_PHOTONS * brightness
        volume, info = samples.beads(
            padded, voxel, origin, rng, density_per_um3=density_per_um3, photons=photons, positions_um=positions_um,
            **options,
        )
    else:
        if positions_um is not None:
            raise ValueError("positions_um is only accepted for sample='beads'")
        field = tuple(n * v for n, v in zip(shape, voxel))
        if sample == "nuclei":
            volume, info = samples.nuclei(
                padded, voxel, origin, field, rng, density_per_um3=density_per_um3,
                photons_per_um3=samples.NUCLEUS_PHOTONS_PER_UM3 * brightness, **options,
            )
        elif sample == "spots":
            volume, info = samples.spots(
                padded, voxel, origin, field, rng, density_per_um3=density_per_um3,
                photons=samples.SPOT_PHOTONS * brightness, **options,
            )
        else:
            volume, info = samples.filaments(
                padded, voxel, origin, field, rng, length_per_um3=density_per_um3,
                photons_per_um=samples.FILAMENT_PHOTONS_PER_UM * brightness, **options,
            )
    if haze_photons_per_um3 > 0:
        # Diffuse fluorescence everywhere in the padded grid (autofluorescence,
        # unbound dye, tissue above and below the stack), varying by ±40 %
        # over ~4 µm; imaged through the PSF like the sample.
        level = haze_photons_per_um3 * float(np.prod(voxel))
        volume += (level * samples.diffuse_variation(padded, voxel, rng, scale_um=4.0)).astype(np.float32)
    info["density_per_um3"] = float(density_per_um3)
    return volume, pad, info


def _check_sample_options(sample, options):
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"sample_options must be a dict or None; got {type(options).__name__}")
    unknown = sorted(set(options) - set(SAMPLE_OPTIONS[sample]))
    if unknown:
        raise TypeError(
            f"unknown sample_options {unknown} for sample={sample!r}; accepted: {list(SAMPLE_OPTIONS[sample])}"
        )
    return dict(options)


def illumination_field(padded_yx, pad_yx, field_yx, falloff):
    """Relative excitation on the padded lateral grid: ``1 − falloff ·
    (r / r_corner)²`` around the field's centre, r_corner its corner (a
    vignetted field: 1 in the centre, ``1 − falloff`` at the field's
    corners), floored at 0.05 further out."""
    y = np.arange(padded_yx[0]) - pad_yx[0] - 0.5 * (field_yx[0] - 1)
    x = np.arange(padded_yx[1]) - pad_yx[1] - 0.5 * (field_yx[1] - 1)
    corner = max(math.hypot(0.5 * (field_yx[0] - 1), 0.5 * (field_yx[1] - 1)), 1e-9)
    r2 = (y[:, None] ** 2 + x[None, :] ** 2) / corner**2
    return np.maximum(1.0 - falloff * r2, 0.05).astype(np.float32)


def _optics_for(sample, modality, optics):
    defaults = SAMPLE_DEFAULTS[sample]
    allowed = psf_lib._OPTICS_KEYS
    unknown = sorted(set(optics) - set(allowed))
    if unknown:
        raise TypeError(f"unknown optics argument(s) {unknown}; accepted: {list(allowed)}")
    merged = {
        "emission_wavelength_um": defaults["emission_wavelength_um"],
        "excitation_wavelength_um": defaults["excitation_wavelength_um"],
        **optics,
    }
    return psf_lib.make_optics(**merged)


def _even_fast_len(n):
    """Smallest fast FFT length >= n that is even (the OTF's lateral DCT needs it)."""
    n = scipy.fft.next_fast_len(n, real=True)
    while n % 2:
        n = scipy.fft.next_fast_len(n + 1, real=True)
    return n


def fft_convolve(volume, pad, out_shape, modality, optics, pixel_um, z_step_um):
    """Image ``volume`` (padded grid) with the PSF; return the ``out_shape`` crop.

    A linear (not circular) convolution: the FFT size covers the padded object
    plus the output, so the PSF reaches from every object voxel to every output
    voxel without wrapping around (haze from the far side of the padding is
    kept, nothing folds back).
    """
    fft_shape = (scipy.fft.next_fast_len(volume.shape[0] + out_shape[0] - 1),) + tuple(
        _even_fast_len(n + m - 1) for n, m in zip(volume.shape[1:], out_shape[1:])
    )
    otf = psf_lib.optical_transfer_function(modality, optics, fft_shape, pixel_um, z_step_um)
    nz, ny, nx = fft_shape
    # Separable transforms, pruned: the forward pass skips the zero padding
    # (rows and columns that are all zero), the inverse pass skips what the
    # crop throws away. About half the work of rfftn/irfftn on the full grid.
    spectrum = scipy.fft.rfft(volume, n=nx, axis=2, workers=-1)
    spectrum = scipy.fft.fft(spectrum, n=ny, axis=1, workers=-1, overwrite_x=True)
    spectrum = scipy.fft.fft(spectrum, n=nz, axis=0, workers=-1, overwrite_x=True)
    psf_lib.apply_transfer_function(spectrum, otf)
    spectrum = scipy.fft.ifft(spectrum, axis=0, workers=-1, overwrite_x=True)[pad[0] : pad[0] + out_shape[0]]
    spectrum = scipy.fft.ifft(spectrum, axis=1, workers=-1, overwrite_x=True)[:, pad[1] : pad[1] + out_shape[1]]
    image = scipy.fft.irfft(spectrum, n=nx, axis=2, workers=-1)[:, :, pad[2] : pad[2] + out_shape[2]]
    del spectrum
    # Round-off of the FFT leaves |values| ~1e-4 photons where there is no light.
    return np.maximum(image, 0.0).astype(np.float32)


def simulate_stack(
    sample="beads",
    modality="widefield",
    shape=None,
    z_step_um=None,
    pixel_um=0.1,
    density_per_um3=None,
    noise=True,
    seed=None,
    *,
    camera=None,
    margin_um=None,
    positions_um=None,
    brightness=1.0,
    sample_options=None,
    haze_photons_per_um3=0.0,
    illumination=0.0,
    bleaching=0.0,
    **optics,
):
    """Simulate a fluorescence z-stack of beads, nuclei, spots or filaments.

    A padded 3D object (see ``sample_object``) is convolved with the
    wide-field (Gibson-Lanni) or confocal PSF by real FFTs, cropped to the
    field, and read out by a camera (``Camera``). The same ``seed`` and
    ``sample`` (and grid) give the same object in both modalities, so a
    wide-field and a confocal call make a registered pair (Recurrent-MZ+).

    Args:
        sample: "beads" (50 nm beads, Texas Red), "nuclei" (C. elegans
            neuron nuclei, GFP), "spots" (protein puncta in an embryo, Cy3)
            or "filaments" (microtubule asters, GFP).
        modality: "widefield" or "confocal".
        shape: (Z, Y, X); default (101, 256, 256) for beads, (91, 256, 256)
            for nuclei (the paper's stacks, 256 x 256 crops).
        z_step_um: axial step; default 0.1 (beads), 0.2 (nuclei).
        pixel_um: lateral pixel size (default 0.1).
        density_per_um3: beads per µm³ (default 0.005: tens of beads per
            256 x 256 x 101 field), or nuclei per µm³ of worm (default 0.01).
        noise: True: uint16 counts with Poisson and read noise (12 bit);
            False: float32 expected counts.
        seed: non-negative int; None draws one (recorded in ``metadata``).
        camera: a ``Camera`` (default ``Camera()``: offset 100, gain 1,
            read noise 1.6, background 10 photons, 12 bit).
        margin_um: (axial, lateral) padding in µm whose objects are imaged
            too (default (2, 3.2) beads, (4, 3.2) nuclei).
        positions_um: beads only: (N, 3) positions (z, y, x) in µm instead of
            random beads (a PSF calibration stack); may lie in the margin.
        brightness: multiplies the sample's photons (1: bead peaks ~1000
            photons in focus).
        sample_options: keyword arguments of the sample's generator
            (``SAMPLE_OPTIONS``): e.g. ``{"arrangement": "embryo"}`` for
            nuclei (``keras_rmz.simulate.samples.nuclei``).
        haze_photons_per_um3: diffuse fluorescence filling the whole padded
            grid, above and below the stack too (autofluorescence, unbound
            dye, the sample beyond the stack), ±40 % over ~4 µm; imaged
            through the PSF.
        illumination: vignetting of the excitation, ``1 − illumination``
            at the field's corners relative to its centre (0: even); it
            multiplies the sample's fluorescence at every depth.
        bleaching: the fraction of the fluorescence lost over the stack's
            acquisition: plane i (acquired i-th) is dimmed by
            ``(1 − bleaching) ** (i / (Z − 1))``; the camera background is not. Confocal nuclei stacks are made with 4x the
            excitation of the beads (a thick sample loses most of its light at
            the pinhole), recorded in ``metadata["excitation_gain"]``.
        **optics: ``na`` (1.4), ``n_immersion`` (1.515), ``n_sample`` (None =
            index matched), ``depth_um`` (0), ``emission_wavelength_um``
            (0.615 beads, 0.519 nuclei), ``excitation_wavelength_um`` (0.589
            beads, 0.495 nuclei), ``pinhole_au`` (1.0).

    Returns:
        ``Stack`` with z = arange(Z) · z_step_um (first plane at 0), the pixel
        size, and ``metadata`` recording sample, modality, optics, seed and
        noise model (the ground-truth object is not stored).

    Example:

    ```python
    wf = simulate_stack("nuclei", "widefield", seed=7)
    cf = simulate_stack("nuclei", "confocal", seed=7)   # same worm, confocal
    ```
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}; got {modality!r}")
    if sample not in SAMPLES:
        raise ValueError(f"sample must be one of {SAMPLES}; got {sample!r}")
    if not isinstance(noise, (bool, np.bool_)):
        raise TypeError(f"noise must be True or False; got {noise!r}")
    if camera is None:
        camera = Camera()
    elif not isinstance(camera, Camera):
        raise TypeError(f"camera must be a keras_rmz.simulate.Camera or None; got {type(camera).__name__}")
    defaults = SAMPLE_DEFAULTS[sample]
    optics_tuple = _optics_for(sample, modality, optics)
    shape = _check_shape(defaults["shape"] if shape is None else shape)
    z_step_um = _check_positive("z_step_um", defaults["z_step_um"] if z_step_um is None else z_step_um)
    pixel_um = _check_positive("pixel_um", pixel_um)
    if seed is None:
        seed = int(np.random.default_rng().integers(2**63))  # recorded, so the stack can be remade
    sequence = _seed_sequence(seed)
    seed_used = int(seed)

    if not psf_lib._is_number(illumination) or not 0 <= illumination < 1:
        raise ValueError(f"illumination must be a number in [0, 1) (the falloff at the corners); got {illumination!r}")
    if not psf_lib._is_number(bleaching) or not 0 <= bleaching < 1:
        raise ValueError(f"bleaching must be a number in [0, 1) (the fraction lost over the stack); got {bleaching!r}")

    volume, pad, info = sample_object(
        sample, shape, z_step_um, pixel_um, density_per_um3, seed_used, margin_um, positions_um, brightness,
        sample_options, haze_photons_per_um3,
    )
    if illumination > 0:
        volume *= illumination_field(volume.shape[1:], pad[1:], shape[1:], illumination)[None]
    photons = fft_convolve(volume, pad, shape, modality, optics_tuple, pixel_um, z_step_um)
    if bleaching > 0:
        photons *= ((1.0 - bleaching) ** (np.arange(shape[0]) / max(shape[0] - 1, 1))).astype(np.float32)[:, None, None]
    del volume
    if modality == "confocal":
        # A confocal stack of a thick sample is much dimmer than the wide-field
        # one (the pinhole rejects the haze); a user raises the laser power to
        # fill the detector. A point in focus peaks as in wide-field at 1.
        photons *= defaults["confocal_brightness"]
    if noise:
        data = camera.acquire(photons, _rng(sequence, modality))
    else:
        data = camera.expected_counts(photons)

    optics_meta = {
        "model": "gibson-lanni scalar" if modality == "widefield" else "confocal: excitation x (gibson-lanni emission * pinhole)",
        **optics_tuple.to_dict(),
    }
    if modality == "widefield":
        optics_meta.pop("excitation_wavelength_um")
        optics_meta.pop("pinhole_au")
    metadata = {
        "simulator": f"keras_rmz {__version__}",
        "sample": sample,
        "modality": modality,
        "seed": seed_used,
        "wavelength_um": optics_tuple.wavelength_um,
        "optics": optics_meta,
        "noise": bool(noise),
        "noise_model": camera.to_dict() if noise else {"type": "none (expected counts)", **camera.to_dict()},
        "units": "counts",
        "z_step_um": z_step_um,
        "density_per_um3": info["density_per_um3"],
        "num_objects": int(len(info["lengths_um"] if sample == "filaments" else
                               info["positions_um"] if sample in ("beads", "spots") else info["centers_um"])),
        "margin_um": [pad[0] * z_step_um, pad[1] * pixel_um],
        "brightness": float(brightness),
        "excitation_gain": float(defaults["confocal_brightness"]) if modality == "confocal" else 1.0,
    }
    if sample_options:
        metadata["sample_options"] = dict(sample_options)
    if haze_photons_per_um3 or illumination or bleaching:
        metadata["field"] = {"haze_photons_per_um3": float(haze_photons_per_um3),
                             "illumination": float(illumination), "bleaching": float(bleaching)}
    if "worm" in info:
        metadata["worm"] = info["worm"]
    elif "body" in info:
        metadata["body"] = info["body"]
    z = np.arange(shape[0], dtype=np.float64) * z_step_um
    return Stack(data, z, pixel_um, metadata)
