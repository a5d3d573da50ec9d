"""Reproduces the experiments of the Recurrent-MZ paper (Fig. 2-8) on
simulated held-out volumes and writes docs/reproduction.md with its figures.

Every number on the page comes from this script: it simulates held-out
stacks (seeds from 900000 on, never the training seeds 0.. or the validation
seeds 100000..), runs the presets and the baselines, scores them with
`keras_rmz.metrics`, draws the figures with `keras_rmz.plot` and writes the
page. Rerun it to regenerate the page; no hand edits are needed.

Run from the repository root (KERAS_BACKEND=tensorflow, jax or torch):

    python examples/reproduce_paper.py                       # docs/reproduction.md (hours on a 2-core CPU)
    python examples/reproduce_paper.py --volumes 1 --shape 101 128 128 --out /tmp/repro
    python examples/reproduce_paper.py --quick --out /tmp/repro   # tiny smoke run (seconds)

`compare_methods` (the Fig. 3 comparison) can be imported and reused:

    import importlib.util
    spec = importlib.util.spec_from_file_location("reproduce_paper", "examples/reproduce_paper.py")
    reproduce = importlib.util.module_from_spec(spec); spec.loader.exec_module(reproduce)
    table = reproduce.compare_methods(rmz_model, deep_z=deep_z_model, unet3d=unet_model)["table"]
"""

import argparse
import dataclasses
import datetime
import functools
import json
import math
import os
import pathlib
import platform
import shlex
import sys
import time
import traceback
import warnings

import numpy as np
import scipy.ndimage

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
if str(REPOSITORY) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPOSITORY))

from keras_rmz.evaluation.demo import default_input_z  # noqa: E402
from keras_rmz.evaluation import linear_interpolation  # noqa: E402
from keras_rmz.out_of_distribution import OutOfDistributionWarning  # noqa: E402

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

FIRST_SEED = 900000  # held out: training uses 0.., validation 100000..
DEFAULT_SHAPE = (101, 256, 256)
QUICK_SHAPE = (21, 64, 64)
# Axial ranges of the paper's stacks (µm): beads 101 planes x 0.1 µm (Fig. 3),
# C. elegans 91 x 0.2 µm (Fig. 2, 4-7) and 46 x 0.2 µm (Fig. 8). --shape's Z
# sets the number of bead planes over 10 µm; the nuclei stacks get the same
# sampling density over their ranges (91 and 46 planes at Z = 101).
BEAD_RANGE_UM = 10.0
NUCLEI_RANGE_UM = 18.0
PLUS_RANGE_UM = 9.0
PIXEL_UM = 0.1
QUICK_BEAD_DENSITY = 0.05  # enough beads in a 64 x 64 quick field to measure
FIGURE_DPI = 90
MIP_DPI = 80  # noisy grey images compress poorly: keeps the MIP figures well under 150 kB
# Shared FWHM histogram bins (µm) for the plot and the KL divergence; values
# outside are counted in the end bins.
# 0.02 µm bins: the simulated in-focus FWHM is ~0.23 µm (0.51 λ/NA at 615 nm)
# with a spread of ~0.01 µm, so coarser bins would put every sharp bead in one.
FWHM_EDGES = np.round(np.arange(0.15, 0.9501, 0.02), 4)
# Kernel σ of the FWHM KL divergence (one bin): simulated beads all share one
# FWHM, so plain histograms give every method that misses the truth's bin the
# same saturated value (keras_rmz.metrics.kl_divergence, bandwidth).
FWHM_KL_BANDWIDTH_UM = 0.02
DPM_SIGMAS_UM = (0.0, 0.25, 0.5, 0.75, 1.0)
DPM_TRIALS = 50  # the paper's 50 random tests, spread over the volumes
EXPERIMENTS = ("fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "fig8")

ROLES = {
    # role: (argument, default, what it is used for)
    "beads": ("--beads-preset", "recurrent_mz_beads_m3", "Recurrent-MZ, beads (Fig. 3, 4, 6, S7)"),
    "deep_z": ("--deep-z-preset", "deep_z_beads", "Deep-Z baseline, beads (Fig. 3, S7)"),
    "unet3d": ("--unet3d-preset", "unet3d_beads", "3D U-Net baseline, beads (Fig. 3, 4, S5)"),
    "nuclei": ("--nuclei-preset", "recurrent_mz_nuclei_m2", "Recurrent-MZ, nuclei (Fig. 2, 5, 7)"),
    "plus": ("--plus-preset", "recurrent_mz_plus_nuclei_m3", "Recurrent-MZ+, nuclei (Fig. 8)"),
}

# What the paper reports (Huang et al., Light Sci. Appl. 10, 62 (2021)).
PAPER = {
    "fig2": {"z_um": 11.4, "rmz_nrmse": 6.45, "rmz_psnr": 33.96, "deep_z_nrmse": 8.02, "deep_z_psnr": 32.08},
    "fig3": {"truth_fwhm": 0.4428, "rmz_fwhm": 0.4401, "deep_z_fwhm": 0.4185, "rmz_kl": 1.3373,
             "deep_z_kl": 2.3334, "beads": 88, "z_um": 5.1},
    "fig5": {"z_um": 4.6, "nrmse_sigma0": 5.03, "nrmse_sigma1": 5.94},
    "fig7": {"rmse_repeats": {2: 12.30, 4: 11.26, 6: 11.73}, "rmse_two_inputs": 8.78},
}

METHOD_RMZ = "Recurrent-MZ"
METHOD_DEEP_Z = "Deep-Z (nearest input)"
METHOD_UNET = "3D U-Net"
METHOD_NEAREST = "nearest input plane"
METHOD_INTERP = "linear interpolation"
TRUTH = "truth (noise-free)"
SCAN = "measured scan"


@dataclasses.dataclass
class Preset:
    """A loaded preset, or why it could not be loaded."""

    role: str
    handle: str
    model: object = None
    source: str = ""
    metadata: dict = dataclasses.field(default_factory=dict)
    error: str = ""

    @property
    def ok(self):
        return self.model is not None

    def meta(self, key, default):
        value = self.metadata.get(key)
        return default if value is None else value


@dataclasses.dataclass
class Context:
    presets: dict
    out: pathlib.Path
    images: pathlib.Path
    shape: tuple
    volumes: int
    quick: bool
    batch_size: int
    verbose: bool
    density: object = None

    def say(self, text):
        if self.verbose:
            print(text, flush=True)

    @property
    def seeds(self):
        return [FIRST_SEED + i for i in range(self.volumes)]

    @property
    def bead_density(self):
        if self.density is not None:
            return self.density
        return QUICK_BEAD_DENSITY if self.quick else None

    def planes(self, axial_range_um, paper_planes):
        """Planes (and z step) over ``axial_range_um`` at the sampling density
        --shape asks of the bead stack (``paper_planes`` at Z = 101)."""
        count = max(3, int(round((paper_planes - 1) * (self.shape[0] - 1) / (DEFAULT_SHAPE[0] - 1))) + 1)
        return count, axial_range_um / (count - 1)


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _finite(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value, digits=2, percent=False):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if percent:
        return f"{100 * value:+.{digits}f} %"
    return f"{value:.{digits}f}"


def _table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _finite(value)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    return value


def _plane_index(z, wanted):
    return int(np.argmin(np.abs(np.asarray(z) - wanted)))


def _mean(values):
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


@functools.lru_cache(maxsize=12)
def _simulate(sample, modality, shape, z_step_um, seed, density, noise):
    from keras_rmz.simulate import simulate_stack

    kwargs = dict(shape=tuple(shape), z_step_um=z_step_um, pixel_um=PIXEL_UM, seed=seed, noise=noise)
    if density is not None:
        kwargs["density_per_um3"] = density
    stack = simulate_stack(sample, modality, **kwargs)
    stack.data.flags.writeable = False  # shared by the experiments through the cache
    return stack


def simulate_pair(sample, modality, shape, z_step_um, seed, density=None):
    """``(measured, noise_free)`` Stacks of one held-out object (the same
    volumes are reused by several experiments, so the last few are cached)."""
    args = (sample, modality, tuple(int(v) for v in shape), float(z_step_um), int(seed), density)
    return _simulate(*args, True), _simulate(*args, False)


def _score_planes(volume, truth):
    """Per-plane PSNR (dB, data range 1), NRMSE (euclidean) and SSIM (data
    range 1) of normalized volumes (the demo's convention)."""
    from keras_rmz.metrics import nrmse, psnr, ssim

    return {
        "psnr_db": np.array([psnr(t, v, data_range=1.0) for t, v in zip(truth, volume)]),
        "nrmse": np.array([nrmse(t, v) for t, v in zip(truth, volume)]),
        "ssim": np.array([ssim(t, v, data_range=1.0) for t, v in zip(truth, volume)]),
    }


def _aggregate(per_plane, between, span):
    """``(table, curves)`` from per-volume per-plane scores: ``per_plane``
    maps method -> metric -> list of (Z,) arrays (one per volume). The table
    holds means over volumes and the planes of ``between`` / ``span``
    (``psnr_between_db``, ``nrmse_span``, ...); curves the means over
    volumes per plane."""
    table, curves = {}, {}
    for method, metrics in per_plane.items():
        entry, curve = {}, {}
        for key, values in metrics.items():
            stacked = np.vstack(values)
            name, unit = (key[:-3], "_db") if key.endswith("_db") else (key, "")
            entry[f"{name}_between{unit}"] = _mean(stacked[:, between])
            entry[f"{name}_span{unit}"] = _mean(stacked[:, span])
            curve[key] = np.nanmean(np.where(np.isfinite(stacked), stacked, np.nan), axis=0)
        table[method], curves[method] = entry, curve
    return table, curves


def _plane_sets(z, input_z):
    """Masks over z: strictly between the first and last input and not an
    input plane ("between"), and the inclusive input span ("span")."""
    z = np.asarray(z)
    low, high = float(np.min(input_z)), float(np.max(input_z))
    tol = 1e-6
    is_input = np.any(np.abs(z[:, None] - np.asarray(input_z)[None, :]) < tol, axis=1)
    span = (z >= low - tol) & (z <= high + tol)
    between = span & ~is_input
    return between, span


def _call(model, images, input_z, output_z, batch_size):
    # The reproduction probes the models outside their training on purpose
    # (other M, spacings, repeated inputs, noisy DPMs, every plane of the
    # stack): planes beyond the trained output range are extrapolated and the
    # out-of-distribution warnings are silenced; the stacks have the
    # presets' pixel size.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDistributionWarning)
        volume = model.reconstruct(np.asarray(images, np.float32), np.asarray(input_z, np.float64),
                                   np.asarray(output_z, np.float64), batch_size=batch_size, verbose=False,
                                   pixel_um=PIXEL_UM, extrapolate=True)
    return np.asarray(volume, dtype=np.float32)


def deep_z_from_nearest(model, images, input_z, output_z, batch_size=8):
    """Deep-Z as the paper compares it (Fig. 3): each output plane propagated
    from the nearest input plane alone, so the M inputs give M
    non-overlapping sub-volumes."""
    output_z = np.asarray(output_z, np.float64)
    input_z = np.asarray(input_z, np.float64)
    nearest = np.argmin(np.abs(output_z[:, None] - input_z[None, :]), axis=1)
    volume = np.empty((output_z.size, *np.shape(images)[1:]), np.float32)
    for i in np.unique(nearest):
        chosen = nearest == i
        volume[chosen] = _call(model, images[i : i + 1], input_z[i : i + 1], output_z[chosen], batch_size)
    return volume


def reconstruct_in_groups(model, images, input_z, output_z, group, batch_size=8):
    """Fig. 2's scheme: N inputs fed ``group`` at a time (M = 2: the pair of
    inputs around each output plane; beyond the ends, the nearest pair)."""
    order = np.argsort(input_z)
    images, input_z = np.asarray(images)[order], np.asarray(input_z, np.float64)[order]
    output_z = np.asarray(output_z, np.float64)
    group = min(int(group), len(input_z))
    starts = np.searchsorted(input_z, output_z, side="right") - 1 - (group - 2) // 2
    starts = np.clip(starts, 0, len(input_z) - group)
    volume = np.empty((output_z.size, *images.shape[1:]), np.float32)
    for start in np.unique(starts):
        chosen = starts == start
        window = slice(start, start + group)
        volume[chosen] = _call(model, images[window], input_z[window], output_z[chosen], batch_size)
    return volume


class InTruthUnits:
    """A model that takes and returns the truth's normalized units while its
    network sees the raw planes, as in use (``reconstruct`` computes the
    paper's normalization from the raw input planes; that normalization is
    not affine-equivariant, so pre-normalized planes would change what the
    network sees). For the robustness tests, which compare the model's
    output and the nearest input plane with the truth they are given."""

    def __init__(self, model, normalization):
        self.model = model
        self.normalization = normalization

    def reconstruct(self, images, input_z, output_z, batch_size=8):
        raw = self.normalization.invert(np.asarray(images, np.float64)).astype(np.float32)
        return self.normalization.apply(_call(self.model, raw, input_z, output_z, batch_size))


class LinearInterpolation:
    """Linear interpolation between the input planes, with the models'
    ``reconstruct`` method (for the robustness tests)."""

    def reconstruct(self, images, input_z, output_z, batch_size=8):
        return linear_interpolation(images, input_z, output_z)


# --------------------------------------------------------------------------
# Bead FWHM at each bead's focal plane
# --------------------------------------------------------------------------


def focal_plane_fwhm(volumes, reference, z_um, pixel_um, planes, min_peak=0.1, match_px=1.5):
    """Lateral FWHM of each bead at its own focal plane, in every volume.

    The paper measures beads in one plane (z = 5.1 µm) of a dried bead layer,
    where all beads are in focus. Simulated beads lie at random depths, so a
    single plane would mix in-focus and blurred beads. Instead, beads are
    located as 3D intensity maxima of the ``reference`` volume (the
    noise-free truth) whose focal plane is in ``planes``; at each such plane
    every volume is analysed with `keras_rmz.metrics.bead_fwhm` (isolated
    beads, 2D Gaussian fits), and a fit counts for a bead when its centre is
    within ``match_px`` of the bead. A method that blurs or loses a bead
    measures it wider or not at all (fewer beads).

    Args:
        volumes: dict label -> normalized volume (Z, Y, X).
        reference: label of the volume that defines the beads.
        z_um: (Z,) plane positions.
        pixel_um: lateral pixel size.
        planes: boolean mask (Z,) of planes where beads are measured.
        min_peak: a 3D maximum of the reference below this (normalized
            units) is not a bead.
        match_px: how far (px) a fit may lie from the bead.

    Returns:
        dict label -> np.ndarray of FWHM values (µm), and ``"_beads"``: the
        number of beads located in the reference.
    """
    from keras_rmz.metrics import bead_fwhm

    truth = volumes[reference]
    z_step = float(np.median(np.diff(z_um))) if len(z_um) > 1 else 1.0
    axial = 2 * max(1, int(round(2.0 / z_step))) + 1  # ±2 µm: past the PSF's axial lobes
    lateral = 2 * int(round(0.75 / pixel_um)) + 1
    maxima = scipy.ndimage.maximum_filter(truth, size=(axial, lateral, lateral), mode="nearest") == truth
    maxima &= truth > min_peak
    maxima &= np.asarray(planes, bool)[:, None, None]
    # Beads whose fit window (bead_fwhm's default) would leave the image
    # cannot be measured in any stack: not counted as located.
    window = max(5, int(np.floor(1.5 / pixel_um)))
    half = max(5, window - 1 if window % 2 == 0 else window) // 2
    edge = np.zeros(truth.shape[1:], bool)
    edge[half:-half, half:-half] = True
    maxima &= edge[None]
    beads = np.argwhere(maxima)
    found = {label: [] for label in volumes}
    for k in np.unique(beads[:, 0]):
        where = beads[beads[:, 0] == k][:, 1:].astype(np.float64)
        for label, volume in volumes.items():
            result = bead_fwhm(volume[k], pixel_um)
            if len(result) == 0:
                continue
            distance = np.linalg.norm(result.positions_px[:, None, :] - where[None, :, :], axis=2)
            matched = distance.min(axis=1) <= match_px
            found[label].extend(result.fwhm_um[matched].tolist())
    out = {label: np.asarray(values, np.float64) for label, values in found.items()}
    out["_beads"] = int(len(beads))
    return out


def _fwhm_summary(fwhm, reference):
    from keras_rmz.metrics import kl_divergence

    truth = fwhm[reference]
    truth_mean = float(truth.mean()) if truth.size else float("nan")
    summary = {}
    for label, values in fwhm.items():
        if label.startswith("_"):
            continue
        mean = float(values.mean()) if values.size else float("nan")
        kl = float("nan")
        if values.size and truth.size:
            clip = lambda v: np.clip(v, FWHM_EDGES[0], FWHM_EDGES[-1])  # noqa: E731
            kl = 0.0 if label == reference else kl_divergence(clip(truth), clip(values), bins=FWHM_EDGES,
                                                                         bandwidth=FWHM_KL_BANDWIDTH_UM)
        summary[label] = {
            "num_beads": int(values.size),
            "fwhm_mean_um": mean,
            "fwhm_std_um": float(values.std()) if values.size else float("nan"),
            "fwhm_rel_error": (mean - truth_mean) / truth_mean if values.size and truth.size else float("nan"),
            "fwhm_kl": kl,
        }
    return summary


# --------------------------------------------------------------------------
# Fig. 3: the method comparison (reusable)
# --------------------------------------------------------------------------


def compare_methods(
    recurrent_mz,
    deep_z=None,
    unet3d=None,
    *,
    volumes=3,
    shape=DEFAULT_SHAPE,
    first_seed=FIRST_SEED,
    num_inputs=3,
    spacing_um=3.0,
    axial_range_um=BEAD_RANGE_UM,
    bead_density=None,
    measure_fwhm=True,
    batch_size=8,
    log=None,
):
    """The paper's Fig. 3 comparison on simulated held-out bead volumes.

    For each volume (seeds ``first_seed``, ``first_seed + 1``, ...): a
    wide-field bead stack of ``shape`` over ``axial_range_um`` (z step
    ``axial_range_um / (Z - 1)``, 0.1 µm for Z = 101) and its noise-free
    twin; ``num_inputs`` planes ``spacing_um`` apart, centred in the stack,
    are the inputs. Every plane is reconstructed by Recurrent-MZ, by Deep-Z
    from the nearest input plane, by the 3D U-Net, by copying the nearest
    input plane and by linear interpolation. All volumes are scored after
    the paper's normalization of the noise-free truth (background 0,
    foreground ~1; data range 1), as ``keras-rmz demo`` scores.

    Args:
        recurrent_mz: a model with ``reconstruct`` (any M).
        deep_z: optional single-input model (M = 1).
        unet3d: optional fixed-M model (its ``num_inputs`` must equal
            ``num_inputs``, else it is left out).
        volumes: number of held-out volumes.
        shape: (Z, Y, X) of each simulated stack.
        first_seed: seed of the first volume.
        num_inputs, spacing_um: M and Δz of the inputs.
        axial_range_um: the stack's axial extent.
        bead_density: beads per µm³ (None: the simulator's default).
        measure_fwhm: also measure bead FWHM (seconds per volume).
        batch_size: output planes per model call.
        log: optional ``print``-like function for progress lines.

    Returns:
        dict with

        - ``"setting"``: shape, z_step_um, pixel_um, input_z_um, seeds,
          methods, plane counts;
        - ``"table"``: method -> {``psnr_between_db``, ``psnr_span_db``,
          ``nrmse_between``, ``nrmse_span``, ``ssim_between``,
          ``ssim_span``}: means over volumes and over the planes strictly
          between the first and last input (input planes excluded) or over
          all planes of the inclusive input span; PSNR in dB on normalized
          intensities with data range 1, NRMSE euclidean (RMSE / RMS of the
          truth plane, a fraction), SSIM with data range 1. With
          ``measure_fwhm`` each entry also has ``num_beads``,
          ``fwhm_mean_um``, ``fwhm_std_um``, ``fwhm_rel_error`` (relative to
          the truth's mean) and ``fwhm_kl`` (KL divergence of the truth's
          FWHM histogram to the method's, nats, bins ``FWHM_EDGES``, kernel σ
          ``FWHM_KL_BANDWIDTH_UM``); the
          table then also holds the rows ``"truth (noise-free)"`` and
          ``"measured scan"`` (FWHM only).
        - ``"per_plane"``: ``{"z_um": [...], method: {"psnr_db": [...],
          "nrmse": [...], "ssim": [...]}}``, means over volumes;
        - ``"fwhm_um"``: method -> all per-bead FWHM values (µm), pooled.
    """
    from keras_rmz.data import compute_normalization

    log = log or (lambda text: None)
    num_z = int(shape[0])
    z_step = axial_range_um / (num_z - 1)
    z = np.arange(num_z) * z_step
    input_z = default_input_z(z, num_inputs, spacing_um)
    input_index = np.array([_plane_index(z, v) for v in input_z])
    between, span = _plane_sets(z, input_z)
    if not between.any():
        raise ValueError("no plane lies between the input planes: use more planes (--shape Z)")
    methods = [METHOD_RMZ]
    if deep_z is not None:
        methods.append(METHOD_DEEP_Z)
    unet_note = None
    if unet3d is not None:
        expected = getattr(unet3d, "num_inputs", num_inputs)
        if expected == num_inputs:
            methods.append(METHOD_UNET)
        else:
            unet_note = f"3D U-Net left out: built for M = {expected}, the comparison uses M = {num_inputs}"
    methods += [METHOD_NEAREST, METHOD_INTERP]
    nearest = np.argmin(np.abs(z[:, None] - input_z[None, :]), axis=1)

    per_plane = {m: {"psnr_db": [], "nrmse": [], "ssim": []} for m in methods}
    fwhm_all = {label: [] for label in [TRUTH, SCAN, *methods]}
    beads_located = 0
    seconds = {m: 0.0 for m in methods}
    seeds = [first_seed + i for i in range(volumes)]
    for number, seed in enumerate(seeds, 1):
        measured, noise_free = simulate_pair("beads", "widefield", tuple(shape), z_step, seed, bead_density)
        norm = compute_normalization(noise_free)
        truth = norm.apply(noise_free.data.astype(np.float32))
        scan = norm.apply(measured.data.astype(np.float32))
        # The models get the raw planes, as in use (their normalization is
        # computed from them and inverted on the output); outputs and
        # baselines are then put in the truth's normalized units. (The
        # paper's normalization is not affine-equivariant: feeding
        # pre-normalized planes would change what the network sees.)
        raw = measured.data[input_index].astype(np.float32)
        images = scan[input_index]
        recon = {}
        for method in methods:
            started = time.monotonic()
            if method == METHOD_RMZ:
                recon[method] = norm.apply(_call(recurrent_mz, raw, input_z, z, batch_size))
            elif method == METHOD_DEEP_Z:
                recon[method] = norm.apply(deep_z_from_nearest(deep_z, raw, input_z, z, batch_size))
            elif method == METHOD_UNET:
                recon[method] = norm.apply(_call(unet3d, raw, input_z, z, batch_size))
            elif method == METHOD_NEAREST:
                recon[method] = images[nearest]
            else:
                recon[method] = linear_interpolation(images, input_z, z)
            seconds[method] += time.monotonic() - started
            scores = _score_planes(recon[method], truth)
            for key, values in scores.items():
                per_plane[method][key].append(values)
            log(f"  volume {number}/{volumes} (seed {seed}) {method}: {time.monotonic() - started:.0f} s, "
                f"PSNR between inputs {_mean(scores['psnr_db'][between]):.2f} dB")
        if measure_fwhm:
            started = time.monotonic()
            fwhm = focal_plane_fwhm({TRUTH: truth, SCAN: scan, **recon}, TRUTH, z, PIXEL_UM, between)
            beads_located += fwhm.pop("_beads")
            for label, values in fwhm.items():
                fwhm_all[label].extend(values.tolist())
            log(f"  volume {number}/{volumes}: bead FWHM of {len(fwhm[TRUTH])} beads, "
                f"{time.monotonic() - started:.0f} s")

    table, curves = _aggregate(per_plane, between, span)
    fwhm_values = {label: np.asarray(values) for label, values in fwhm_all.items()}
    if measure_fwhm:
        for label, summary in _fwhm_summary(fwhm_values, TRUTH).items():
            table.setdefault(label, {}).update(summary)
    return {
        "setting": {
            "shape": list(shape),
            "z_step_um": z_step,
            "pixel_um": PIXEL_UM,
            "input_z_um": input_z.tolist(),
            "num_inputs": num_inputs,
            "spacing_um": spacing_um,
            "seeds": seeds,
            "bead_density_per_um3": bead_density,
            "methods": methods,
            "planes_between": int(between.sum()),
            "planes_span": int(span.sum()),
            "beads_located": beads_located,
            "seconds_per_method": seconds,
            "note": unet_note,
        },
        "table": table,
        "per_plane": {"z_um": z.tolist(),
                      **{m: {k: v.tolist() for k, v in curve.items()} for m, curve in curves.items()}},
        "fwhm_um": {label: values.tolist() for label, values in fwhm_values.items()} if measure_fwhm else {},
    }


# --------------------------------------------------------------------------
# The experiments: each returns a section of the page
# --------------------------------------------------------------------------


def _section(key, title, **kwargs):
    section = {"key": key, "title": title, "status": "ok", "intro": "", "tables": [], "figures": [],
               "text": [], "numbers": {}, "seconds": 0.0}
    section.update(kwargs)
    return section


def _needs(ctx, key, title, *roles):
    missing = [ctx.presets[r] for r in roles if not ctx.presets[r].ok]
    if not missing:
        return None
    reasons = "; ".join(f"`{p.handle}` ({ROLES[p.role][0]}): {p.error}" for p in missing)
    return _section(key, title, status="skipped", text=[f"**Skipped**: the preset could not be loaded — {reasons}."])


def compact_png(path, colors=128, limit=150_000):
    """Rewrites a matplotlib PNG with an adaptive palette (grey images and a
    few line colours: no visible change, 2-3x smaller), atomically; warns
    when it is still over ``limit`` bytes."""
    from PIL import Image

    path = pathlib.Path(path)
    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(colors=colors)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    palette.save(temporary, format="PNG", optimize=True)
    os.replace(temporary, path)
    if path.stat().st_size > limit:
        print(f"reproduce_paper: warning: {path} is {path.stat().st_size // 1000} kB", file=sys.stderr)


def _image(ctx, name):
    return ctx.images / name


def _rel(ctx, path):
    return os.path.relpath(path, ctx.out).replace(os.sep, "/")


def _psnr_rows(table, methods):
    return [
        [m, _fmt(table[m]["psnr_between_db"]), _fmt(table[m]["psnr_span_db"]),
         _fmt(table[m]["nrmse_between"], 3), _fmt(table[m]["nrmse_span"], 3),
         _fmt(table[m]["ssim_between"], 3)]
        for m in methods
    ]


PSNR_HEADERS = ["method", "PSNR between inputs (dB)", "PSNR input span (dB)", "NRMSE between",
                "NRMSE span", "SSIM between"]


def _better(a, b, unit="dB"):
    """'1.23 dB above' or '0.40 dB below' (``a`` against ``b``)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return "not comparable (no finite value) with"
    return f"{abs(a - b):.2f} {unit} {'above' if a > b else 'below'}"


def experiment_fig2(ctx):
    key, title = "fig2", "Fig. 2 — C. elegans-like nuclei, M = 2, Δz = 6 µm"
    skipped = _needs(ctx, key, title, "nuclei")
    if skipped:
        return skipped
    from keras_rmz import plot
    from keras_rmz.data import compute_normalization

    preset = ctx.presets["nuclei"]
    group = int(preset.meta("num_inputs", 2))
    spacing = float(preset.meta("input_spacing_um", 6.0))
    num_z, z_step = ctx.planes(NUCLEI_RANGE_UM, 91)
    z = np.arange(num_z) * z_step
    input_z = default_input_z(z, 3, spacing)
    input_index = [_plane_index(z, v) for v in input_z]
    between, span = _plane_sets(z, input_z)
    nearest = np.argmin(np.abs(z[:, None] - input_z[None, :]), axis=1)
    methods = [METHOD_RMZ, METHOD_NEAREST, METHOD_INTERP]
    per_plane = {m: {"psnr_db": [], "nrmse": [], "ssim": []} for m in methods}
    for number, seed in enumerate(ctx.seeds, 1):
        measured, noise_free = simulate_pair("nuclei", "widefield", (num_z, *ctx.shape[1:]), z_step, seed)
        norm = compute_normalization(noise_free)
        truth = norm.apply(noise_free.data.astype(np.float32))
        raw = measured.data[input_index].astype(np.float32)
        images = norm.apply(raw)
        started = time.monotonic()
        recon = {
            METHOD_RMZ: norm.apply(reconstruct_in_groups(preset.model, raw, input_z, z, group, ctx.batch_size)),
            METHOD_NEAREST: images[nearest],
            METHOD_INTERP: linear_interpolation(images, input_z, z),
        }
        ctx.say(f"  volume {number}/{ctx.volumes} (seed {seed}): {time.monotonic() - started:.0f} s")
        for method, volume in recon.items():
            for k, values in _score_planes(volume, truth).items():
                per_plane[method][k].append(values)
        if number == 1:
            mips = {"truth (noise-free)": truth, METHOD_RMZ: recon[METHOD_RMZ], METHOD_INTERP: recon[METHOD_INTERP]}
    table, curves = _aggregate(per_plane, between, span)
    paper = PAPER["fig2"]
    at = _plane_index(z, paper["z_um"])
    at_values = {m: {"psnr_db": float(curves[m]["psnr_db"][at]), "nrmse": float(curves[m]["nrmse"][at])}
                 for m in methods}
    psnr_path = _image(ctx, "fig2_psnr_vs_z.png")
    plot.metric_vs_z(z, {m: curves[m]["psnr_db"] for m in methods}, input_z=input_z,
                     metric="PSNR (dB, normalized, range 1)", path=psnr_path, dpi=FIGURE_DPI,
                     title=f"Nuclei: Recurrent-MZ (M = {group}, pairs) vs baselines")
    mip_path = _image(ctx, "fig2_mip.png")
    plot.mip_side_views(mips, z, PIXEL_UM, mip_path, input_z=input_z, normalize="shared", dpi=MIP_DPI,
                        intensity_label="normalized intensity")
    rmz, interp = table[METHOD_RMZ], table[METHOD_INTERP]
    text = [
        f"Between the inputs, Recurrent-MZ's mean PSNR is {_fmt(rmz['psnr_between_db'])} dB, "
        f"{_better(rmz['psnr_between_db'], interp['psnr_between_db'])} linear interpolation "
        f"({_fmt(interp['psnr_between_db'])} dB). At z = {z[at]:g} µm, the plane the paper quotes, it reaches "
        f"{_fmt(at_values[METHOD_RMZ]['psnr_db'])} dB and NRMSE {_fmt(at_values[METHOD_RMZ]['nrmse'], 3)} "
        f"(interpolation: {_fmt(at_values[METHOD_INTERP]['psnr_db'])} dB, "
        f"{_fmt(at_values[METHOD_INTERP]['nrmse'], 3)}).",
        f"The paper reports NRMSE {paper['rmz_nrmse']} and PSNR {paper['rmz_psnr']} dB at z = {paper['z_um']} µm "
        f"(Deep-Z: {paper['deep_z_nrmse']}, {paper['deep_z_psnr']} dB) on real C. elegans images, without "
        "stating the PSNR data range or the NRMSE normalizer (see docs/metrics.md), so only the ranking "
        "against the baselines carries over, not the values. It gives no interpolation numbers in the main "
        "text (Supplementary Fig. S1 compares interpolation methods).",
    ]
    return _section(
        key, title,
        intro=(f"Wide-field nuclei stacks of {num_z} planes × {z_step:g} µm ({ctx.shape[1]} × {ctx.shape[2]} "
               f"pixels); three inputs at z = {', '.join(f'{v:g}' for v in input_z)} µm fed to "
               f"`{preset.handle}` {group} at a time (the inputs around each output plane), as in the paper. "
               "Truth: the noise-free stack."),
        tables=[_table(PSNR_HEADERS, _psnr_rows(table, methods))],
        figures=[(psnr_path, "PSNR per plane, mean over volumes; dashed: input planes."),
                 (mip_path, "MIP side views of the first volume (shared grey scale).")],
        text=text,
        numbers={"table": table, "at_paper_plane": {"z_um": float(z[at]), **at_values},
                 "input_z_um": input_z, "z_um": z, "per_plane": curves},
    )


def experiment_fig3(ctx):
    key, title = "fig3", "Fig. 3 — beads, M = 3, Δz = 3 µm: Recurrent-MZ vs Deep-Z vs 3D U-Net"
    skipped = _needs(ctx, key, title, "beads")
    if skipped:
        return skipped
    from keras_rmz import plot

    preset = ctx.presets["beads"]
    num_inputs = int(preset.meta("num_inputs", 3))
    spacing = float(preset.meta("input_spacing_um", 3.0))
    notes = []
    deep_z = ctx.presets["deep_z"].model
    unet = ctx.presets["unet3d"].model
    for role in ("deep_z", "unet3d"):
        if not ctx.presets[role].ok:
            p = ctx.presets[role]
            notes.append(f"{ROLES[role][2].split(',')[0]} left out: `{p.handle}` could not be loaded ({p.error}).")
    result = compare_methods(
        preset.model, deep_z=deep_z, unet3d=unet, volumes=ctx.volumes, shape=ctx.shape,
        num_inputs=num_inputs, spacing_um=spacing, bead_density=ctx.bead_density,
        batch_size=ctx.batch_size, log=ctx.say,
    )
    setting, table = result["setting"], result["table"]
    if setting["note"]:
        notes.append(setting["note"] + ".")
    methods = setting["methods"]
    z = np.asarray(result["per_plane"]["z_um"])
    input_z = setting["input_z_um"]
    psnr_path = _image(ctx, "fig3_psnr_vs_z.png")
    plot.metric_vs_z(z, {m: result["per_plane"][m]["psnr_db"] for m in methods}, input_z=input_z,
                     metric="PSNR (dB, normalized, range 1)", path=psnr_path, dpi=FIGURE_DPI,
                     title="Beads: PSNR per plane vs the noise-free truth")
    fwhm_rows = []
    for label in [TRUTH, SCAN, *methods]:
        entry = table.get(label, {})
        fwhm_rows.append([label, entry.get("num_beads", 0), _fmt(entry.get("fwhm_mean_um"), 4),
                          _fmt(entry.get("fwhm_std_um"), 4), _fmt(entry.get("fwhm_rel_error"), 1, percent=True),
                          _fmt(entry.get("fwhm_kl"), 3)])
    figures = [(psnr_path, "PSNR per plane against the noise-free truth, mean over volumes; dashed: inputs.")]
    fwhm = {label: np.asarray(values) for label, values in result["fwhm_um"].items() if len(values)}
    hist_labels = [label for label in (TRUTH, METHOD_RMZ, METHOD_DEEP_Z, METHOD_UNET, METHOD_INTERP) if label in fwhm]
    if TRUTH in fwhm:
        hist_path = _image(ctx, "fig3_fwhm_histograms.png")
        plot.fwhm_histograms({label: np.clip(fwhm[label], FWHM_EDGES[0], FWHM_EDGES[-1]) for label in hist_labels},
                             bins=FWHM_EDGES, path=hist_path, reference=TRUTH,
                             bandwidth=FWHM_KL_BANDWIDTH_UM, dpi=FIGURE_DPI)
        figures.append((hist_path, "Lateral FWHM of each bead at its focal plane (planes between the inputs), "
                                   "all volumes pooled; KL against the truth on the same bins."))
    rmz = table[METHOD_RMZ]
    paper = PAPER["fig3"]
    text = [
        f"Between the inputs Recurrent-MZ scores {_fmt(rmz['psnr_between_db'])} dB, "
        + ", ".join(f"{_better(rmz['psnr_between_db'], table[m]['psnr_between_db'])} {m}"
                    for m in methods if m != METHOD_RMZ) + "."
    ]
    if TRUTH in fwhm:
        truth_entry = table[TRUTH]
        sentence = (f"Bead FWHM: truth {_fmt(truth_entry['fwhm_mean_um'], 4)} µm over {truth_entry['num_beads']} "
                    f"beads; Recurrent-MZ {_fmt(rmz.get('fwhm_mean_um'), 4)} µm "
                    f"({_fmt(rmz.get('fwhm_rel_error'), 1, percent=True)}, KL {_fmt(rmz.get('fwhm_kl'), 3)})")
        if METHOD_DEEP_Z in table:
            dz = table[METHOD_DEEP_Z]
            sentence += (f", Deep-Z {_fmt(dz.get('fwhm_mean_um'), 4)} µm "
                         f"({_fmt(dz.get('fwhm_rel_error'), 1, percent=True)}, KL {_fmt(dz.get('fwhm_kl'), 3)})")
        text.append(sentence + ".")
    text.append(
        f"The paper (88 beads at z = {paper['z_um']} µm of real stacks) reports mean FWHM {paper['truth_fwhm']} µm "
        f"for the scan, {paper['rmz_fwhm']} µm for Recurrent-MZ (−0.6 %, KL {paper['rmz_kl']}) and "
        f"{paper['deep_z_fwhm']} µm for Deep-Z (−5.5 %, KL {paper['deep_z_kl']}). Our simulated PSF is ideal "
        "(in-focus FWHM ≈ 0.51 λ/NA ≈ 0.22 µm at 615 nm, 1.4 NA), narrower than the paper's measured beads, and "
        f"the KL values depend on the bins and the kernel (here bins {FWHM_EDGES[1] - FWHM_EDGES[0]:.2f} µm wide, "
        f"each FWHM spread by a Gaussian of σ = {FWHM_KL_BANDWIDTH_UM:g} µm so that the KL grows with the distance "
        "from the truth instead of saturating; the paper states neither), so compare relative errors and KL "
        "across methods, not with the paper's values. The paper "
        "gives no PSNR for this figure."
    )
    fwhm_headers = ["stack", "beads", "mean FWHM (µm)", "std (µm)", "vs truth", "KL vs truth"]
    return _section(
        key, title,
        intro=(f"Wide-field bead stacks of {ctx.shape[0]} planes × {setting['z_step_um']:g} µm "
               f"({ctx.shape[1]} × {ctx.shape[2]} pixels of {PIXEL_UM} µm), {ctx.volumes} held-out volume(s); "
               f"inputs at z = {', '.join(f'{v:g}' for v in input_z)} µm (Δz = {spacing:g} µm, centred). "
               f"Deep-Z propagates each output plane from the nearest input, as in the paper. Means over "
               f"{setting['planes_between']} planes strictly between the inputs and the "
               f"{setting['planes_span']} planes of the input span. "
               "FWHM: each bead located (3D maximum) in the noise-free truth with its focal plane between the "
               "inputs is fitted at that plane in every stack (`bead_fwhm`: isolated beads, 2D Gaussian fits); a "
               "stack that blurs or loses a bead measures it wider or not at all. The paper measures its beads "
               "in one plane (z = 5.1 µm) of dried bead samples; simulated beads lie at random depths, where one "
               "plane would mix in-focus and defocused beads."),
        tables=[_table(PSNR_HEADERS, _psnr_rows(table, methods)), _table(fwhm_headers, fwhm_rows)],
        figures=figures,
        text=notes + text,
        numbers=result,
    )


def experiment_fig4(ctx):
    key, title = "fig4", "Fig. 4 — non-uniform input spacing (beads, M = 3)"
    skipped = _needs(ctx, key, title, "beads")
    if skipped:
        return skipped
    from keras_rmz import plot
    from keras_rmz.data import compute_normalization
    from keras_rmz.evaluation import nonuniform_spacing_test

    preset = ctx.presets["beads"]
    spacing = float(preset.meta("input_spacing_um", 3.0))
    num_z, z_step = ctx.planes(BEAD_RANGE_UM, 101)
    z = np.arange(num_z) * z_step
    uniform = default_input_z(z, 3, spacing)
    # The paper's (3, 7.8, 13.6) µm against (3, 9, 15) µm, scaled to Δz: gaps of
    # 0.8 and 0.97 Δz, both shorter than the training spacing.
    wanted = uniform[0] + spacing * np.array([0.0, 0.8, 0.8 + 0.9667])
    nonuniform = z[[_plane_index(z, v) for v in wanted]]
    models = {METHOD_RMZ: preset.model, METHOD_INTERP: LinearInterpolation()}
    unet = ctx.presets["unet3d"].model
    unet_z = None
    if unet is not None and getattr(unet, "num_inputs", 3) == 3:
        # The 3D U-Net costs ~30x Recurrent-MZ on a CPU: first volume, every 0.5 µm.
        stride = max(1, int(round(0.5 / z_step)))
        unet_z = z[::stride]
    psnr = {}
    for number, seed in enumerate(ctx.seeds, 1):
        measured, noise_free = simulate_pair("beads", "widefield", (num_z, *ctx.shape[1:]), z_step, seed,
                                             ctx.bead_density)
        norm = compute_normalization(noise_free)
        scan = norm.apply(measured.data.astype(np.float32))
        started = time.monotonic()
        for label, model in models.items():
            if label != METHOD_INTERP:
                model = InTruthUnits(model, norm)
            result = nonuniform_spacing_test(model, scan, z, uniform, nonuniform, data_range=1.0,
                                             batch_size=ctx.batch_size)
            for spacing_label, values in result.psnr.items():
                psnr.setdefault(f"{label}, {spacing_label}", []).append(values)
        if unet_z is not None and number == 1:
            result = nonuniform_spacing_test(InTruthUnits(unet, norm), scan, z, uniform, nonuniform,
                                             output_z=unet_z, data_range=1.0, batch_size=ctx.batch_size)
            unet_psnr = {f"{METHOD_UNET}, {k} (volume 1)": v for k, v in result.psnr.items()}
        ctx.say(f"  volume {number}/{ctx.volumes} (seed {seed}): {time.monotonic() - started:.0f} s")
    curves = {label: np.mean(np.vstack(values), axis=0) for label, values in psnr.items()}
    between_u, _ = _plane_sets(z, uniform)
    between_n, _ = _plane_sets(z, nonuniform)
    # One plane set for both: strictly inside both spans, no input plane of either.
    common = between_u & between_n & ~np.isin(np.arange(num_z), [_plane_index(z, v) for v in nonuniform])
    common &= ~np.isin(np.arange(num_z), [_plane_index(z, v) for v in uniform])
    rows, numbers = [], {}
    for label, values in curves.items():
        numbers[label] = _mean(values[common])
        rows.append([label, _fmt(numbers[label]), ctx.volumes])
    if unet_z is not None:
        unet_common = common[np.isin(z, unet_z)]
        for label, values in unet_psnr.items():
            numbers[label] = _mean(values[unet_common])
            rows.append([label, _fmt(numbers[label]), "1 (every 0.5 µm)"])
    path = _image(ctx, "fig4_nonuniform_psnr.png")
    figure = plot.metric_vs_z(z, curves, input_z={f"{METHOD_RMZ}, uniform": uniform,
                                                  f"{METHOD_RMZ}, non-uniform": nonuniform},
                              metric="PSNR (dB, vs measured scan)", dpi=FIGURE_DPI,
                              title="Uniform vs non-uniform input spacing")
    if unet_z is not None:
        axes = figure.axes[0]
        for (label, values), marker in zip(unet_psnr.items(), ("s", "o")):
            axes.plot(unet_z, np.where(np.isfinite(values), values, np.nan), marker, markersize=3,
                      color="gray" if "non-uniform" in label else "black", label=label)
        axes.legend(fontsize="x-small")
    plot.save_figure(figure, path, dpi=FIGURE_DPI)
    rmz_u, rmz_n = numbers[f"{METHOD_RMZ}, uniform"], numbers[f"{METHOD_RMZ}, non-uniform"]
    change = "loses" if rmz_n < rmz_u else "gains"
    text = [
        f"Recurrent-MZ {change} {abs(rmz_u - rmz_n):.2f} dB mean PSNR with non-uniform inputs "
        f"({_fmt(rmz_u)} → {_fmt(rmz_n)} dB over the planes inside both input sets)"
        + (f"; the 3D U-Net goes from {_fmt(numbers[f'{METHOD_UNET}, uniform (volume 1)'])} to "
           f"{_fmt(numbers[f'{METHOD_UNET}, non-uniform (volume 1)'])} dB." if unet_z is not None else
           "; the 3D U-Net preset is not available, so its curve is missing.")
        ,
        "The paper shows the uniform and non-uniform Recurrent-MZ curves with \"very similar trends\" and the "
        "3D U-Net failing on non-uniform inputs (its lower PSNR values are left off the plot); it gives no "
        "mean values.",
    ]
    return _section(
        key, title,
        intro=(f"The paper uses its C. elegans model; here the bead preset `{preset.handle}` (M = 3, the M the paper "
               f"trained for this test) so that the 3D U-Net bead baseline can be set beside it. Inputs: uniform "
               f"z = {', '.join(f'{v:g}' for v in uniform)} µm and non-uniform "
               f"z = {', '.join(f'{v:g}' for v in nonuniform)} µm (the paper's (3, 7.8, 13.6) vs (3, 9, 15) µm "
               "scaled to Δz = 3 µm). As in the paper, inputs and truth both come from the measured scan "
               "(`nonuniform_spacing_test`; normalized by the noise-free truth, data range 1). Means over "
               "the planes strictly inside both input spans that are no input plane of either set."),
        tables=[_table(["method, inputs", "mean PSNR (dB)", "volumes"], rows)],
        figures=[(path, "PSNR per plane (mean over volumes); dashed: input planes of each set; markers: 3D U-Net "
                        "on the first volume.")],
        text=text,
        numbers={"mean_psnr_db": numbers, "uniform_z_um": uniform, "nonuniform_z_um": nonuniform, "z_um": z,
                 "per_plane_psnr_db": curves},
    )


def experiment_fig5(ctx):
    key, title = "fig5", "Fig. 5 — noise in the DPMs (nuclei, M = 2)"
    skipped = _needs(ctx, key, title, "nuclei")
    if skipped:
        return skipped
    from keras_rmz import plot
    from keras_rmz.data import compute_normalization
    from keras_rmz.evaluation import dpm_noise_test

    preset = ctx.presets["nuclei"]
    spacing = float(preset.meta("input_spacing_um", 6.0))
    num_z, z_step = ctx.planes(NUCLEI_RANGE_UM, 91)
    z = np.arange(num_z) * z_step
    first = default_input_z(z, 3, spacing)[:2]  # the first pair of Fig. 2: 3 and 9 µm
    input_index = [_plane_index(z, v) for v in first]
    output_index = sorted({_plane_index(z, v) for v in (4.6, 6.8)})
    output_z = z[output_index]
    sigmas = (0.0, 0.5, 1.0) if ctx.quick else DPM_SIGMAS_UM
    trials = 2 if ctx.quick else int(math.ceil(DPM_TRIALS / ctx.volumes))
    nrmse, offsets = [], []
    for number, seed in enumerate(ctx.seeds, 1):
        measured, noise_free = simulate_pair("nuclei", "widefield", (num_z, *ctx.shape[1:]), z_step, seed)
        norm = compute_normalization(noise_free)
        truth = norm.apply(noise_free.data.astype(np.float32))[output_index]
        images = norm.apply(measured.data.astype(np.float32))[input_index]
        started = time.monotonic()
        result = dpm_noise_test(InTruthUnits(preset.model, norm), images, first, output_z, truth,
                                sigmas_um=sigmas, repeats=trials, seed=seed, batch_size=ctx.batch_size)
        nrmse.append(result.nrmse)
        offsets.append(result.z_noise_um)
        ctx.say(f"  volume {number}/{ctx.volumes} (seed {seed}): {time.monotonic() - started:.0f} s")
    pooled = dataclasses.replace(result, nrmse=np.concatenate(nrmse, axis=1),
                                 z_noise_um=np.concatenate(offsets, axis=1))
    path = _image(ctx, "fig5_dpm_noise.png")
    plot.dpm_noise_plot(pooled, path=path, dpi=FIGURE_DPI)
    medians = np.median(pooled.nrmse, axis=1)  # (S, K)
    rows = [[f"{s:g}"] + [_fmt(medians[i, k], 4) for k in range(len(output_z))] for i, s in enumerate(sigmas)]
    headers = ["σ (µm)"] + [f"median NRMSE, z = {v:g} µm" for v in output_z]
    ratio = medians[-1] / medians[0]
    paper = PAPER["fig5"]
    text = [
        f"From σ = 0 to σ = {sigmas[-1]:g} µm the median NRMSE changes by a factor "
        + " and ".join(f"{r:.2f} at z = {v:g} µm" for r, v in zip(ratio, output_z)) + ".",
        f"The paper reports NRMSE {paper['nrmse_sigma0']} → {paper['nrmse_sigma1']} at z = {paper['z_um']} µm "
        f"(a factor {paper['nrmse_sigma1'] / paper['nrmse_sigma0']:.2f}) over 50 trials, without stating its NRMSE "
        "normalization (ours: euclidean, a fraction), so compare the factors.",
    ]
    return _section(
        key, title,
        intro=(f"As in the paper, the nuclei preset `{preset.handle}` with the inputs at "
               f"z = {', '.join(f'{v:g}' for v in first)} µm, scored at z = "
               f"{', '.join(f'{v:g}' for v in output_z)} µm (the paper: 4.6 and 6.8 µm) against the noise-free "
               "truth. "
               f"Each trial adds one offset z_d ~ N(0, σ²) per input to its DPM (Eq. 11); {trials} trials per σ "
               f"per volume, {trials * ctx.volumes} in all (the paper: 50)."),
        tables=[_table(headers, rows)],
        figures=[(path, "NRMSE (euclidean) against σ, all trials of all volumes.")],
        text=text,
        numbers={"sigmas_um": sigmas, "output_z_um": output_z, "input_z_um": first,
                 "median_nrmse": medians, "ratio_max_sigma_to_zero": ratio, "nrmse": pooled.nrmse},
    )


def experiment_fig6(ctx):
    key, title = "fig6", "Fig. 6 — permutations of the inputs (beads, M = 3)"
    skipped = _needs(ctx, key, title, "beads")
    if skipped:
        return skipped
    from keras_rmz import plot
    from keras_rmz.data import compute_normalization
    from keras_rmz.evaluation import permutation_test

    preset = ctx.presets["beads"]
    spacing = float(preset.meta("input_spacing_um", 3.0))
    num_z, z_step = ctx.planes(BEAD_RANGE_UM, 101)
    z = np.arange(num_z) * z_step
    input_z = default_input_z(z, 3, spacing)
    input_index = [_plane_index(z, v) for v in input_z]
    between, span = _plane_sets(z, input_z)
    output_z = z[span]
    unet = ctx.presets["unet3d"].model
    use_unet = unet is not None and getattr(unet, "num_inputs", 3) == 3
    # 3D U-Net (Fig. S5): first volume, quarter points of each gap.
    unet_z = np.unique([z[_plane_index(z, a + f * (b - a))] for a, b in zip(input_z[:-1], input_z[1:])
                        for f in (0.25, 0.5, 0.75)])
    results, unet_result = [], None
    for number, seed in enumerate(ctx.seeds, 1):
        measured, noise_free = simulate_pair("beads", "widefield", (num_z, *ctx.shape[1:]), z_step, seed,
                                             ctx.bead_density)
        norm = compute_normalization(noise_free)
        truth = norm.apply(noise_free.data.astype(np.float32))
        images = norm.apply(measured.data.astype(np.float32))[input_index]
        started = time.monotonic()
        results.append(permutation_test(InTruthUnits(preset.model, norm), images, input_z, output_z, truth[span],
                                        batch_size=ctx.batch_size))
        if use_unet and number == 1:
            unet_truth = truth[[_plane_index(z, v) for v in unet_z]]
            unet_result = permutation_test(InTruthUnits(unet, norm), images, input_z, unet_z, unet_truth,
                                           batch_size=ctx.batch_size)
        ctx.say(f"  volume {number}/{ctx.volumes} (seed {seed}): {time.monotonic() - started:.0f} s")
    mean = lambda name: np.mean([getattr(r, name) for r in results], axis=0)  # noqa: E731
    pooled = dataclasses.replace(results[0], mu_rmse=mean("mu_rmse"), sigma_rmse=mean("sigma_rmse"),
                                 sorted_rmse=mean("sorted_rmse"), nearest_rmse=mean("nearest_rmse"),
                                 rmse=mean("rmse"))
    path = _image(ctx, "fig6_permutations.png")
    plot.permutation_plot(pooled, path=path, dpi=FIGURE_DPI)
    inside = between[span]
    rows = [[METHOD_RMZ, _fmt(_mean(pooled.mu_rmse[inside]), 4), _fmt(_mean(pooled.sigma_rmse[inside]), 4),
             _fmt(_mean(pooled.sorted_rmse[inside]), 4), _fmt(_mean(pooled.nearest_rmse[inside]), 4),
             ctx.volumes]]
    numbers = {"mu_rmse": _mean(pooled.mu_rmse[inside]), "sigma_rmse": _mean(pooled.sigma_rmse[inside]),
               "sorted_rmse": _mean(pooled.sorted_rmse[inside]), "nearest_rmse": _mean(pooled.nearest_rmse[inside]),
               "worst_order_rmse": _mean(pooled.rmse[:, inside].max(axis=0)),
               "output_z_um": output_z, "per_plane": {"mu_rmse": pooled.mu_rmse, "sigma_rmse": pooled.sigma_rmse,
                                                      "sorted_rmse": pooled.sorted_rmse}}
    if unet_result is not None:
        rows.append([f"{METHOD_UNET} (Fig. S5)", _fmt(_mean(unet_result.mu_rmse), 4),
                     _fmt(_mean(unet_result.sigma_rmse), 4), _fmt(_mean(unet_result.sorted_rmse), 4),
                     _fmt(_mean(unet_result.nearest_rmse), 4), f"1 (z = {', '.join(f'{v:g}' for v in unet_z)} µm)"])
        numbers["unet3d"] = {"mu_rmse": _mean(unet_result.mu_rmse), "sigma_rmse": _mean(unet_result.sigma_rmse),
                             "sorted_rmse": _mean(unet_result.sorted_rmse), "output_z_um": unet_z}
    text = [
        f"Over the planes between the inputs, the {len(pooled.permutations)} input orders give Recurrent-MZ "
        f"μRMSE {_fmt(numbers['mu_rmse'], 4)} with σRMSE {_fmt(numbers['sigma_rmse'], 4)} (z-sorted: "
        f"{_fmt(numbers['sorted_rmse'], 4)}; worst order {_fmt(numbers['worst_order_rmse'], 4)}), against "
        f"{_fmt(numbers['nearest_rmse'], 4)} for the nearest input plane."
        + (f" The 3D U-Net's σRMSE is {_fmt(numbers['unet3d']['sigma_rmse'], 4)} (μRMSE "
           f"{_fmt(numbers['unet3d']['mu_rmse'], 4)} vs {_fmt(numbers['unet3d']['sorted_rmse'], 4)} sorted)."
           if unet_result is not None else ""),
        "The paper (C. elegans, M = 3) shows the permuted outputs close to the sorted ones with a narrow σRMSE "
        "band and a non-recurrent 3D U-Net failing under permutation (Fig. S5); its RMSE is on 8-bit display "
        "images in a region of interest and is not comparable in value with ours (normalized units, whole field).",
    ]
    return _section(
        key, title,
        intro=(f"The paper's permutation model is its C. elegans Recurrent-MZ with M = 3; the M = 3 wide-field model "
               f"here is the bead preset `{preset.handle}`, trained on z-sorted inputs. All 6 orders of the inputs "
               f"at z = {', '.join(f'{v:g}' for v in input_z)} µm, RMSE against the noise-free truth in normalized "
               "units over the whole field, averaged over volumes; table: mean over the planes between the inputs."),
        tables=[_table(["model", "μRMSE", "σRMSE", "z-sorted RMSE", "nearest input RMSE", "volumes"], rows)],
        figures=[(path, "RMSE per plane: mean over the 6 orders ± σ (red band), z-sorted order (blue), nearest "
                        "input (gray); mean over volumes.")],
        text=text,
        numbers=numbers,
    )


def _repetition(ctx, preset, sample, num_z, z_step, spacing, num_inputs, deep_z=None):
    """Repetition test between the first two inputs; returns rows, numbers, curves."""
    from keras_rmz.data import compute_normalization
    from keras_rmz.evaluation import repetition_test
    from keras_rmz.metrics import rmse

    z = np.arange(num_z) * z_step
    # The first inputs of the 3-plane layout of Fig. 2 / 3 (nuclei: 3, 9 µm).
    input_z = default_input_z(z, max(3, num_inputs), spacing)[:num_inputs]
    input_index = [_plane_index(z, v) for v in input_z]
    low, high = input_z[0], input_z[1]
    output_index = np.flatnonzero((z > low + 1e-6) & (z < high - 1e-6))
    output_z = z[output_index]
    near_i1 = output_z <= (low + high) / 2
    rmses, deep = [], {"Deep-Z(I1)": [], "Deep-Z(I2)": [], "mean of Deep-Z(I1), Deep-Z(I2)": []}
    density = ctx.bead_density if sample == "beads" else None
    for number, seed in enumerate(ctx.seeds, 1):
        measured, noise_free = simulate_pair(sample, "widefield", (num_z, *ctx.shape[1:]), z_step, seed, density)
        norm = compute_normalization(noise_free)
        truth = norm.apply(noise_free.data.astype(np.float32))[output_index]
        images = norm.apply(measured.data.astype(np.float32))[input_index]
        started = time.monotonic()
        result = repetition_test(InTruthUnits(preset.model, norm), images, input_z, output_z, truth,
                                 batch_size=ctx.batch_size)
        rmses.append(result.rmse)
        if deep_z is not None:
            deep_z_units = InTruthUnits(deep_z, norm)
            one = deep_z_units.reconstruct(images[:1], input_z[:1], output_z, ctx.batch_size)
            two = deep_z_units.reconstruct(images[1:2], input_z[1:2], output_z, ctx.batch_size)
            for label, volume in (("Deep-Z(I1)", one), ("Deep-Z(I2)", two),
                                  ("mean of Deep-Z(I1), Deep-Z(I2)", (one + two) / 2)):
                deep[label].append([rmse(t, v) for t, v in zip(truth, volume)])
        ctx.say(f"  volume {number}/{ctx.volumes} (seed {seed}): {time.monotonic() - started:.0f} s")
    curves = dict(zip(result.labels, np.mean(rmses, axis=0)))
    if deep_z is not None:
        curves.update({label: np.mean(values, axis=0) for label, values in deep.items()})
    rows, numbers = [], {}
    for label, values in curves.items():
        numbers[label] = {"rmse_between": _mean(values), "rmse_near_i1": _mean(values[near_i1])}
        rows.append([label, _fmt(numbers[label]["rmse_between"], 4), _fmt(numbers[label]["rmse_near_i1"], 4)])
    return rows, numbers, curves, input_z, output_z


def experiment_fig7(ctx):
    key, title = "fig7", "Fig. 7 — repeated inputs (nuclei M = 2; beads M = 3 with Deep-Z as Fig. S7)"
    from keras_rmz import plot

    parts, tables, figures, numbers, text = [], [], [], {}, []
    headers = ["input sequence", "RMSE, planes between I1 and I2", "RMSE, half nearer I1"]
    for role, sample, label, range_um, paper_planes, m_default, spacing_default, deep in (
        ("nuclei", "nuclei", "nuclei", NUCLEI_RANGE_UM, 91, 2, 6.0, None),
        ("beads", "beads", "beads", BEAD_RANGE_UM, 101, 3, 3.0, ctx.presets["deep_z"].model),
    ):
        preset = ctx.presets[role]
        if not preset.ok:
            text.append(f"**{label.capitalize()} part skipped**: `{preset.handle}` ({ROLES[role][0]}) could not be "
                        f"loaded — {preset.error}.")
            continue
        num_z, z_step = ctx.planes(range_um, paper_planes)
        m = int(preset.meta("num_inputs", m_default))
        spacing = float(preset.meta("input_spacing_um", spacing_default))
        ctx.say(f"  {label}:")
        rows, part_numbers, curves, input_z, output_z = _repetition(ctx, preset, sample, num_z, z_step, spacing,
                                                                    max(m, 2), deep)
        tables.append(f"*{label.capitalize()}, `{preset.handle}`, inputs at z = "
                      f"{', '.join(f'{v:g}' for v in input_z)} µm:*\n\n" + _table(headers, rows))
        path = _image(ctx, f"fig7_repetition_{label}.png")
        plot.metric_vs_z(output_z, curves, input_z=input_z[:2], metric="RMSE (normalized units)", path=path,
                         dpi=FIGURE_DPI, title=f"Repeated inputs, {label}")
        figures.append((path, f"RMSE per plane between I1 and I2 ({label}), mean over volumes."))
        numbers[label] = {"input_z_um": input_z, "output_z_um": output_z, "rmse": part_numbers}
        parts.append(label)
        m_used = len(input_z)
        in_order = "V(" + ", ".join(f"I{i + 1}" for i in range(m_used)) + ")"
        reverse = "V(" + ", ".join(f"I{i + 1}" for i in reversed(range(m_used))) + ")"
        repeated = [k for k in part_numbers if k.startswith("V(I1") and "I2" not in k]
        near = [part_numbers[k]["rmse_near_i1"] for k in repeated]
        alone = _mean([part_numbers[k]["rmse_between"] for k in repeated])
        sentence = (f"{label.capitalize()}: I1 alone and repeated gives RMSE {min(near):.4f}–{max(near):.4f} on the "
                    f"half nearer I1 (spread {max(near) - min(near):.4f}); with all {m_used} inputs the RMSE between "
                    f"I1 and I2 is {part_numbers[in_order]['rmse_between']:.4f} in z order and "
                    f"{part_numbers[reverse]['rmse_between']:.4f} reversed, against {alone:.4f} for I1 alone "
                    "(mean over the repeats)")
        if deep is not None:
            average = part_numbers["mean of Deep-Z(I1), Deep-Z(I2)"]["rmse_between"]
            sentence += (f"; Deep-Z(I1) scores {part_numbers['Deep-Z(I1)']['rmse_near_i1']:.4f} on the half nearer "
                         f"I1 and the mean of Deep-Z(I1) and Deep-Z(I2) {average:.4f} between them")
        text.append(sentence + ".")
    if not parts:
        return _section(key, title, status="skipped", text=text)
    paper = PAPER["fig7"]
    text.append(
        f"The paper (C. elegans, M = 2) reports RMSE {paper['rmse_repeats'][2]}, {paper['rmse_repeats'][4]} and "
        f"{paper['rmse_repeats'][6]} for 2, 4 and 6 repeats of I1 and {paper['rmse_two_inputs']} once I2 is "
        "added, on 8-bit images in a region of interest: nearly constant under repetition, clearly better "
        "with a second plane, and a single input on par with Deep-Z(I1). Our values are in normalized units "
        "over the whole field, so compare the pattern."
    )
    return _section(
        key, title,
        intro=("`repetition_test`: V(I1) and I1 repeated 2, 4 and 6 times, then all inputs in order and reversed; "
               "RMSE against the noise-free truth (normalized units, whole field) on the planes strictly between "
               "the first two inputs, mean over volumes. The nuclei part is the paper's Fig. 7 (M = 2); the beads "
               "part adds the Deep-Z comparison of Fig. S7 (M = 3) with the bead Deep-Z preset."),
        tables=tables, figures=figures, text=text, numbers=numbers,
    )


def experiment_fig8(ctx):
    key, title = "fig8", "Fig. 8 — Recurrent-MZ+: wide-field in, confocal out"
    skipped = _needs(ctx, key, title, "plus")
    if skipped:
        return skipped
    from keras_rmz import plot
    from keras_rmz.data import compute_normalization

    preset = ctx.presets["plus"]
    num_inputs = int(preset.meta("num_inputs", 3))
    spacing = float(preset.meta("input_spacing_um", 2.0))
    num_z, z_step = ctx.planes(PLUS_RANGE_UM, 46)
    z = np.arange(num_z) * z_step
    input_z = default_input_z(z, num_inputs, spacing)
    input_index = [_plane_index(z, v) for v in input_z]
    between, span = _plane_sets(z, input_z)
    nearest = np.argmin(np.abs(z[:, None] - input_z[None, :]), axis=1)
    methods = ["Recurrent-MZ+", f"{METHOD_INTERP} (wide-field)", f"{METHOD_NEAREST} (wide-field)",
               "wide-field scan, all planes"]
    per_plane = {m: {"psnr_db": [], "nrmse": [], "ssim": []} for m in methods}
    for number, seed in enumerate(ctx.seeds, 1):
        shape = (num_z, *ctx.shape[1:])
        widefield, widefield_clean = simulate_pair("nuclei", "widefield", shape, z_step, seed)
        confocal_clean = _simulate("nuclei", "confocal", shape, float(z_step), seed, None, False)
        truth = compute_normalization(confocal_clean).apply(confocal_clean.data.astype(np.float32))
        raw_inputs = widefield.data[input_index].astype(np.float32)
        # The network's output is in the confocal target's normalized units;
        # reconstruct() maps it back with the inputs' normalization, so that
        # normalization undoes the mapping (see RecurrentMZPlus).
        input_norm = compute_normalization(raw_inputs)
        started = time.monotonic()
        output = input_norm.apply(_call(preset.model, raw_inputs, input_z, z, ctx.batch_size))
        images = input_norm.apply(raw_inputs)
        recon = {
            methods[0]: output,
            methods[1]: linear_interpolation(images, input_z, z),
            methods[2]: images[nearest],
            methods[3]: compute_normalization(widefield_clean).apply(widefield.data.astype(np.float32)),
        }
        ctx.say(f"  volume {number}/{ctx.volumes} (seed {seed}): {time.monotonic() - started:.0f} s")
        for method, volume in recon.items():
            for k, values in _score_planes(volume, truth).items():
                per_plane[method][k].append(values)
        if number == 1:
            mips = {"wide-field scan": recon[methods[3]], "input (nearest plane)": recon[methods[2]],
                    METHOD_INTERP: recon[methods[1]], "Recurrent-MZ+": output, "confocal truth": truth}
    table, curves = _aggregate(per_plane, between, span)
    psnr_path = _image(ctx, "fig8_psnr_vs_z.png")
    plot.metric_vs_z(z, {m: curves[m]["psnr_db"] for m in methods}, input_z=input_z,
                     metric="PSNR vs confocal (dB)", path=psnr_path, dpi=FIGURE_DPI,
                     title="Recurrent-MZ+ vs wide-field baselines")
    mip_path = _image(ctx, "fig8_mip.png")
    plot.mip_side_views(mips, z, PIXEL_UM, mip_path, input_z=input_z, normalize="each", dpi=MIP_DPI,
                        intensity_label="normalized intensity")
    plus, interp = table[methods[0]], table[methods[1]]
    text = [
        f"Against the confocal truth, Recurrent-MZ+ scores {_fmt(plus['psnr_between_db'])} dB between the inputs, "
        f"{_better(plus['psnr_between_db'], interp['psnr_between_db'])} interpolating the wide-field inputs and "
        f"{_better(plus['psnr_between_db'], table[methods[3]]['psnr_between_db'])} the full wide-field scan.",
        "The paper shows Fig. 8 qualitatively (MIP side views: Recurrent-MZ+ from 3 wide-field planes close to the "
        "confocal stack, the 46-plane wide-field stack blurred and elongated axially); it gives no numbers.",
    ]
    return _section(
        key, title,
        intro=(f"Wide-field nuclei stacks of {num_z} planes × {z_step:g} µm and the confocal stack of the same seed "
               f"(the registered pair); inputs at z = {', '.join(f'{v:g}' for v in input_z)} µm "
               f"(the paper: 2.8, 4.8, 6.8 µm). Each volume is normalized with the paper's normalization — the "
               "confocal truth with its own, the wide-field planes with the inputs' (the Recurrent-MZ+ output is "
               "in the confocal target's units) — then scored with data range 1."),
        tables=[_table(PSNR_HEADERS, _psnr_rows(table, methods))],
        figures=[(psnr_path, "PSNR per plane against the confocal truth, mean over volumes."),
                 (mip_path, "MIP side views (x-z, y-z) of the first volume, each volume on its own grey scale; "
                            "dashed: input planes.")],
        text=text,
        numbers={"table": table, "input_z_um": input_z, "z_um": z, "per_plane": curves},
    )


EXPERIMENT_FUNCTIONS = {
    "fig2": experiment_fig2, "fig3": experiment_fig3, "fig4": experiment_fig4, "fig5": experiment_fig5,
    "fig6": experiment_fig6, "fig7": experiment_fig7, "fig8": experiment_fig8,
}


# --------------------------------------------------------------------------
# Presets, machine, page
# --------------------------------------------------------------------------


def _is_name(handle):
    return not handle.startswith("hf://") and "/" not in handle and os.sep not in handle


def _builtin_details(name, summary):
    """``(metadata, source)`` of a built-in preset: the full metadata.json of
    its local copy when there is one (the registry only keeps a summary),
    and where it was loaded from."""
    from keras_rmz.presets import get_preset, registry, verify_preset

    info = get_preset(name)
    metadata = {**summary, "description": info.description}
    local = registry.find_local_copy(name)
    if local is not None:
        try:
            metadata = {**metadata, **verify_preset(local)}
        except Exception:  # noqa: BLE001 - the summary is enough for the page
            pass
        try:
            where = f"`{pathlib.Path(local).resolve().relative_to(REPOSITORY)}`"
        except ValueError:
            where = f"`{local}`"
        return metadata, f"built-in ({where})"
    return metadata, f"built-in ({info.hub}@{str(info.revision)[:8]})"


def load_presets(handles):
    """``{role: Preset}``; a preset that cannot be loaded keeps its error.

    A built-in name that cannot be loaded falls back to the training output
    ``runs/<name>/preset`` of this checkout when that folder exists (the
    page says so).
    """
    from keras_rmz.cli.demo import load_demo_model

    presets = {}
    for role, handle in handles.items():
        preset = Preset(role=role, handle=handle)
        if handle.lower() in ("", "none", "skip"):
            preset.error = "disabled on the command line"
            presets[role] = preset
            continue
        candidates = [(handle, "built-in" if _is_name(handle) and not os.path.isdir(handle) else "folder")]
        local = REPOSITORY / "runs" / handle / "preset"
        if _is_name(handle) and local.is_dir():
            candidates.append((str(local), f"`runs/{handle}/preset` of this checkout (the built-in name did not load)"))
        errors = []
        for candidate, source in candidates:
            try:
                model, metadata = load_demo_model(candidate)
            except Exception as error:  # noqa: BLE001 - reported on the page, never fatal
                # The first sentence says what is missing; the rest (how to
                # train it) is in the printed log.
                message = str(error).splitlines()[0] if str(error) else ""
                first = message.split(". ", 1)[0].rstrip(".")
                errors.append(f"{type(error).__name__}: {first}")
                print(f"  {role}: {candidate}: {type(error).__name__}: {message}", file=sys.stderr)
                continue
            preset.model, preset.metadata, preset.source = model, dict(metadata or {}), source
            if source == "built-in":
                preset.metadata, preset.source = _builtin_details(candidate, preset.metadata)
            elif not preset.metadata and os.path.isdir(candidate):
                from keras_rmz.presets import verify_preset

                preset.metadata = dict(verify_preset(candidate))
            break
        if not preset.ok:
            preset.error = "; ".join(errors)
        presets[role] = preset
    return presets


def _load_average():
    try:
        return round(os.getloadavg()[0], 1)
    except OSError:
        return None


def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    import keras

    from keras_rmz.version import __version__

    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "backend": keras.backend.backend(),
            "keras": keras.__version__, "keras_rmz": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "accelerators": accelerators()}


def accelerators():
    """Names of the accelerators the Keras backend sees ("" for none)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            devices = tf.config.list_physical_devices("GPU")
            names = [tf.config.experimental.get_device_details(d).get("device_name", d.name) for d in devices]
        elif backend == "jax":
            import jax

            names = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
        elif backend == "torch":
            import torch

            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        else:
            names = []
    except Exception:  # noqa: BLE001 - informational only
        names = []
    return ", ".join(names)


def render_page(results):
    """The Markdown of docs/reproduction.md from the results dict."""
    machine, run = results["machine"], results["run"]
    loads = [v for v in (run.get("load_start"), run.get("load_end")) if v is not None]
    busy = (" (other processes shared the CPU: times are longer than on an idle machine)"
            if loads and max(loads) > 1.2 * machine["usable_cores"] else "")
    lines = [
        "# Reproducing the paper's experiments",
        "",
        "<!-- Generated by examples/reproduce_paper.py; do not edit by hand: rerun the script. -->",
        "",
        "This page is written by `examples/reproduce_paper.py`. It re-runs the experiments of the "
        "Recurrent-MZ paper (Huang et al., *Light: Science & Applications* 10, 62 (2021), Fig. 2-8) on "
        "**simulated** held-out stacks (`keras_rmz.simulate`, seeds from "
        f"{FIRST_SEED} on, never used in training or validation) with this repository's presets, and compares "
        "the outcome with what the paper reports. The paper's numbers come from real microscope images "
        "(RMSE on 0-255 grey levels in Fig. 6 and 7) and GPU-trained networks; ours from a simulator, "
        "normalized intensities and CPU-trained presets. Read the comparisons as *does the same ranking and trend hold*, not as equal "
        "values.",
        "",
        "## Run",
        "",
        _table(["", ""], [
            ["command", f"`{run['command']}`"],
            ["date", run["date"]],
            ["wall time", f"{run['seconds'] / 60:.1f} min; 1-minute load average {run['load_start']} at the start "
                          f"and {run['load_end']} at the end on {machine['usable_cores']} cores" + busy],
            ["hardware", f"{machine['cpu']}, {machine['usable_cores']} usable of {machine['cores']} cores; "
                         + (f"accelerator: {machine['accelerators']}" if machine["accelerators"] else "no GPU")],
            ["software", f"Keras {machine['keras']} ({machine['backend']} backend), keras_rmz {machine['keras_rmz']}, "
                         f"Python {machine['python']}, NumPy {machine['numpy']}"],
            ["held-out volumes",
             f"{run['volumes']} per experiment, " + (f"seeds {FIRST_SEED}–{FIRST_SEED + run['volumes'] - 1}"
                                                    if run["volumes"] > 1 else f"seed {FIRST_SEED}")],
            ["bead stack", f"{run['shape'][0]} × {run['shape'][1]} × {run['shape'][2]} (Z × Y × X), "
                           f"{BEAD_RANGE_UM / (run['shape'][0] - 1):g} µm steps, {PIXEL_UM} µm pixels, "
                           + (f"{run['bead_density']:g} beads/µm³" if run["bead_density"] else
                              "the simulator's default bead density (0.005/µm³, as `keras-rmz demo`)")
                           + (" (--quick)" if run["quick"] else "")],
        ]),
        "",
        "### Presets",
        "",
    ]
    rows = []
    for role, info in results["presets"].items():
        if info["loaded"]:
            rows.append([ROLES[role][2], f"`{info['handle']}`", info["source"], info["class_name"],
                         f"{info['num_parameters']:,}", info["description"] or "–"])
        else:
            rows.append([ROLES[role][2], f"`{info['handle']}`", "**not loaded**", "–", "–", info["error"]])
    lines += [_table(["used for", "preset", "loaded from", "class", "parameters", "description / why not loaded"],
                     rows), ""]
    lines += [
        "## Conventions",
        "",
        "- Every volume is scored after the paper's normalization (`keras_rmz.data.compute_normalization`) of the "
        "noise-free truth — background 0, foreground ≈ 1 — as `keras-rmz demo` does: PSNR in dB with data "
        "range 1, "
        "NRMSE = RMSE / RMS of the truth plane (scikit-image's *euclidean*, a fraction), SSIM with data range 1, "
        "RMSE in those normalized units.",
        "- The truth is the noise-free simulated stack; the inputs are planes of the simulated *measured* stack "
        "(camera noise), so baselines that copy input planes are not exact there.",
        "- \"Between inputs\": planes strictly between the first and last input, input planes excluded; "
        "\"input span\": all planes from the first to the last input.",
        "- Figures are means over the held-out volumes unless said otherwise. `--json` writes every number.",
        "",
    ]
    for section in results["sections"]:
        lines += [f"## {section['title']}", ""]
        if section["status"] == "ok" and section.get("intro"):
            lines += [section["intro"], ""]
        for table in section.get("tables", []):
            lines += [table, ""]
        for path, caption in section.get("figures", []):
            lines += [f"![{caption}]({path})", "", f"*{caption}*", ""]
        for sentence in section.get("text", []):
            lines += [sentence, ""]
        if section["status"] == "ok":
            lines += [f"<sub>{section['seconds']:.0f} s on this machine.</sub>", ""]
    return "\n".join(lines).rstrip() + "\n"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python examples/reproduce_paper.py",
        description=(
            "Re-runs the Recurrent-MZ paper's Fig. 2-8 experiments on simulated held-out volumes with the "
            "presets and writes OUT/reproduction.md and OUT/images/reproduction/*.png. A preset that cannot be "
            "loaded is reported and its experiments are skipped; a built-in name that does not load falls back "
            "to runs/<name>/preset of this checkout when it exists."
        ),
        epilog=(
            "examples:\n"
            "  KERAS_BACKEND=tensorflow python examples/reproduce_paper.py   # docs/reproduction.md, hours on a CPU\n"
            "  python examples/reproduce_paper.py --quick --out /tmp/repro           # tiny smoke run\n"
            "  python examples/reproduce_paper.py --volumes 1 --shape 101 128 128 --json /tmp/repro.json\n"
            "  python examples/reproduce_paper.py --beads-preset runs/recurrent_mz_beads_m3/preset \\\n"
            "      --unet3d-preset none --experiments fig3 fig6 --out /tmp/repro\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for role, (flag, default, used) in ROLES.items():
        parser.add_argument(flag, default=default, metavar="NAME|DIR",
                            help=f"{used}: a built-in name or a preset folder, 'none' to skip (default {default})")
    parser.add_argument("--volumes", type=int, default=None, metavar="N",
                        help="held-out volumes per experiment, seeds 900000.. (default 3; 1 with --quick)")
    parser.add_argument("--shape", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                        help="bead stack: Z planes over 10 µm and Y x X pixels of 0.1 µm (default 101 256 256; "
                             "nuclei stacks get the same z sampling over 18 and 9 µm and the same Y x X)")
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny run for tests: shape {' '.join(map(str, QUICK_SHAPE))}, 1 volume, 2 DPM trials, "
                             "dense beads")
    parser.add_argument("--bead-density", type=float, default=None, metavar="PER_UM3",
                        help="beads per µm³ of the bead stacks (default: the simulator's, 0.005, as keras-rmz demo; "
                             f"{QUICK_BEAD_DENSITY} with --quick)")
    parser.add_argument("--experiments", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS),
                        metavar="FIG", help=f"which to run (default all: {' '.join(EXPERIMENTS)}); the others are "
                                            "listed as not run")
    parser.add_argument("--out", default=str(REPOSITORY / "docs"), metavar="DIR",
                        help="folder of the page (default docs/): DIR/reproduction.md, DIR/images/reproduction/")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write every number to this JSON file")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="output planes per model call (default 8; with --quick on TensorFlow 1, where "
                             "tracing one function per batch shape costs more than the tiny models' work)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return parser


def _default_batch_size(quick):
    import keras

    return 1 if quick and keras.backend.backend() == "tensorflow" else 8


def main(argv=None):
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    load_start = _load_average()
    shape = tuple(args.shape) if args.shape else (QUICK_SHAPE if args.quick else DEFAULT_SHAPE)
    volumes = args.volumes if args.volumes is not None else (1 if args.quick else 3)
    if volumes < 1 or min(shape) < 3:
        raise SystemExit("--volumes must be >= 1 and every --shape value >= 3")
    out = pathlib.Path(args.out)
    images = out / "images" / "reproduction"
    images.mkdir(parents=True, exist_ok=True)
    handles = {role: getattr(args, flag.lstrip("-").replace("-", "_")) for role, (flag, _, _) in ROLES.items()}
    say = (lambda text: None) if args.quiet else (lambda text: print(text, flush=True))
    say("reproduce_paper: loading presets")
    presets = load_presets(handles)
    for preset in presets.values():
        say(f"  {preset.role}: {preset.handle} -> " + (preset.source if preset.ok else f"not loaded ({preset.error})"))
    ctx = Context(presets=presets, out=out, images=images, shape=shape, volumes=volumes, quick=args.quick,
                  batch_size=args.batch_size or _default_batch_size(args.quick), verbose=not args.quiet,
                  density=args.bead_density)
    sections, failed = [], []
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress lines only
        tqdm = None
    todo = [key for key in EXPERIMENTS if key in args.experiments]
    progress = tqdm(total=len(todo), desc="experiments", disable=args.quiet or tqdm is None) if tqdm else None
    for key in EXPERIMENTS:
        if key not in args.experiments:
            sections.append(_section(key, f"{key.replace('fig', 'Fig. ')} — not run", status="not run",
                                     text=["Not run: left out with `--experiments`."]))
            continue
        say(f"reproduce_paper: {key}")
        begun = time.monotonic()
        try:
            section = EXPERIMENT_FUNCTIONS[key](ctx)
        except Exception as error:  # noqa: BLE001 - one failed experiment must not lose the others
            traceback.print_exc()
            failed.append(key)
            message = str(error).splitlines()[0] if str(error) else ""
            section = _section(key, f"{key.replace('fig', 'Fig. ')} — failed", status="failed",
                               text=[f"**Failed**: `{type(error).__name__}: {message}`."])
        section["seconds"] = time.monotonic() - begun
        for path, _ in section["figures"]:
            compact_png(path)
        section["figures"] = [(_rel(ctx, path), caption) for path, caption in section["figures"]]
        sections.append(section)
        say(f"reproduce_paper: {key} {section['status']} in {section['seconds']:.0f} s")
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()
    load_end = _load_average()
    given = sys.argv[1:] if argv is None else list(argv)
    command = "python examples/reproduce_paper.py" + (" " + shlex.join(given) if given else "")
    results = {
        "machine": machine_info(),
        "run": {"command": command, "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                "seconds": time.monotonic() - started, "volumes": volumes, "shape": list(shape), "quick": args.quick,
                "bead_density": ctx.bead_density, "load_start": load_start, "load_end": load_end},
        "presets": {
            role: {"handle": p.handle, "loaded": p.ok, "source": p.source, "error": p.error,
                   "class_name": type(p.model).__name__ if p.ok else None,
                   "num_parameters": int(p.model.count_params()) if p.ok else None,
                   "description": p.metadata.get("description") if p.ok else None,
                   "metadata": {k: p.metadata.get(k) for k in ("num_inputs", "input_spacing_um", "z_step_um",
                                                               "pixel_um", "modality", "sample")} if p.ok else {}}
            for role, p in presets.items()
        },
        "sections": sections,
    }
    page = out / "reproduction.md"
    temporary = page.with_name(f".{page.name}.{os.getpid()}.tmp")
    temporary.write_text(render_page(results), encoding="utf-8")
    os.replace(temporary, page)
    say(f"reproduce_paper: wrote {page} in {(time.monotonic() - started) / 60:.1f} min")
    if args.json:
        json_path = pathlib.Path(args.json)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(_jsonable(results), indent=1), encoding="utf-8")
        say(f"reproduce_paper: wrote {json_path}")
    if failed:
        print(f"reproduce_paper: failed experiments: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
