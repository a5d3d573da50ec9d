"""The paper's robustness tests of a multi-plane reconstruction model.

Each test takes any ``model`` with the `keras_rmz.RecurrentMZ` inference
method ``model.reconstruct(images (M, H, W), input_z (M,), output_z (K,),
batch_size=...) -> np.ndarray (K, H, W)`` (baselines such as a 3D U-Net or an
interpolator wrapped in the same method work too), and returns a frozen
dataclass of numpy arrays that the plotting functions of `keras_rmz.plot`
accept:

- `permutation_test` — all M! input orders (paper Fig. 6, Eq. 12-13).
- `repetition_test` — repeated inputs such as V(I1, I1) (Fig. 7, S7).
- `dpm_noise_test` — Gaussian axial-position errors in each DPM (Fig. 5,
  Eq. 11).
- `nonuniform_spacing_test` — uniform against non-uniform input planes from
  one truth volume (Fig. 4).

Errors are measured on a region of interest (``roi``) when one is given, as
the paper does ("RMSE values were calculated based on the yellow highlighted
ROIs"): ``None`` (whole image), a box ``(y0, y1, x0, x1)`` in pixels
(half-open, like slices), a pair of slices, or a boolean mask (H, W).
"""

import dataclasses
import inspect
import itertools
import math
import warnings

import numpy as np

from keras_rmz.evaluation.baselines import nearest_plane
from keras_rmz.metrics.image import _NRMSE_NORMALIZATIONS
from keras_rmz.metrics.image import _resolve_data_range
from keras_rmz.metrics.image import nrmse as _nrmse

_MAX_PERMUTATION_INPUTS = 7  # 7! = 5040 reconstructions; 8! would be 40320.


@dataclasses.dataclass(frozen=True, eq=False)
class PermutationResult:
    """Result of `permutation_test`.

    Attributes:
        output_z: (K,) output planes in µm.
        input_z: (M,) input positions in µm, in the order given.
        permutations: (P, M) int, P = M!: each row is an input order as
            indices into the given images, lexicographic.
        sorted_index: row of ``permutations`` that sorts inputs by z
            (ascending, the training order).
        rmse: (P, K) RMSE of each order's output against the truth.
        mu_rmse: (K,) mean RMSE over all orders (Eq. 12).
        sigma_rmse: (K,) population standard deviation of the RMSE over all
            orders (Eq. 13, 1/P inside the root).
        sorted_rmse: (K,) RMSE for inputs sorted by z (Fig. 6e, blue).
        nearest_rmse: (K,) RMSE of the nearest input plane used as the
            output (Fig. 6e, gray).
        pixel_std: (K, H, W) pixel-wise standard deviation of the outputs
            over all orders (Fig. 6c), whole image.
    """

    output_z: np.ndarray
    input_z: np.ndarray
    permutations: np.ndarray
    sorted_index: int
    rmse: np.ndarray
    mu_rmse: np.ndarray
    sigma_rmse: np.ndarray
    sorted_rmse: np.ndarray
    nearest_rmse: np.ndarray
    pixel_std: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class RepetitionResult:
    """Result of `repetition_test`.

    Attributes:
        output_z: (K,) output planes in µm.
        input_z: (M,) input positions in µm, in the order given.
        sequences: list of S input sequences, tuples of indices into the
            given images (repeats allowed).
        labels: list of S labels such as ``"V(I1, I1)"`` (1-based, given
            order).
        rmse: (S, K) RMSE of each sequence's output against the truth.
        nearest_rmse: (K,) RMSE of the nearest input plane used as output.
    """

    output_z: np.ndarray
    input_z: np.ndarray
    sequences: list
    labels: list
    rmse: np.ndarray
    nearest_rmse: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class DPMNoiseResult:
    """Result of `dpm_noise_test`.

    Attributes:
        output_z: (K,) output planes in µm.
        sigmas_um: (S,) noise standard deviations in µm.
        z_noise_um: (S, R, M) the offsets z_d,i added to each input's DPM.
        nrmse: (S, R, K) NRMSE of each noisy reconstruction.
        normalization: the NRMSE normalization used.
    """

    output_z: np.ndarray
    sigmas_um: np.ndarray
    z_noise_um: np.ndarray
    nrmse: np.ndarray
    normalization: str


@dataclasses.dataclass(frozen=True, eq=False)
class NonuniformSpacingResult:
    """Result of `nonuniform_spacing_test`.

    Attributes:
        output_z: (K,) output planes in µm.
        input_z: dict ``{"uniform": (M,), "non-uniform": (M',)}`` in µm.
        psnr: dict label -> (K,) PSNR in dB (``inf`` where exact).
        nrmse: dict label -> (K,) NRMSE (normalization "euclidean").
        data_range: the PSNR data range used (one for all planes).
    """

    output_z: np.ndarray
    input_z: dict
    psnr: dict
    nrmse: dict
    data_range: float


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _check_model(model):
    if not callable(getattr(model, "reconstruct", None)):
        raise TypeError(
            "model must have a method reconstruct(images (M, H, W), input_z (M,), "
            f"output_z (K,), batch_size=...); got {type(model).__name__}"
        )


def _as_images(images, name="images"):
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (M, H, W) with M >= 1; got shape {images.shape}"
        )
    if not np.all(np.isfinite(images)):
        raise ValueError(f"{name} must contain only finite values")
    return images


def _as_z(z, name, length=None):
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1 or z.size == 0:
        raise ValueError(f"{name} must be a non-empty 1D array in µm; got shape {z.shape}")
    if length is not None and z.size != length:
        raise ValueError(
            f"{name} must have one entry per image ({length}); got {z.size}"
        )
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} must be finite; got {z}")
    return z


def _as_truth(truth, output_z, images):
    truth = np.asarray(truth, dtype=np.float64)
    expected = (output_z.size,) + images.shape[1:]
    if truth.shape != expected:
        raise ValueError(
            "truth must have shape (K, H, W) = (len(output_z), H, W) = "
            f"{expected}; got shape {truth.shape}"
        )
    if not np.all(np.isfinite(truth)):
        raise ValueError("truth must contain only finite values")
    return truth


def _roi_index(roi, shape_hw):
    """An index for the last two axes of (..., H, W) arrays."""
    height, width = shape_hw
    if roi is None:
        return (Ellipsis, slice(None), slice(None))
    if isinstance(roi, np.ndarray) and roi.dtype == bool:
        if roi.shape != (height, width):
            raise ValueError(
                f"a boolean roi must have the image shape {(height, width)}; got "
                f"{roi.shape}"
            )
        if not roi.any():
            raise ValueError("roi mask selects no pixel")
        return (Ellipsis, roi)
    if (
        isinstance(roi, tuple)
        and len(roi) == 2
        and all(isinstance(s, slice) for s in roi)
    ):
        index = (Ellipsis, roi[0], roi[1])
    elif isinstance(roi, (tuple, list)) and len(roi) == 4 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in roi
    ):
        y0, y1, x0, x1 = (int(v) for v in roi)
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise ValueError(
                f"roi box (y0, y1, x0, x1) must satisfy 0 <= y0 < y1 <= {height} and "
                f"0 <= x0 < x1 <= {width}; got {roi}"
            )
        index = (Ellipsis, slice(y0, y1), slice(x0, x1))
    else:
        raise ValueError(
            "roi must be None, a box (y0, y1, x0, x1) of ints, a pair of slices, "
            f"or a boolean mask (H, W); got {roi!r}"
        )
    if np.zeros((height, width))[index[1:]].size == 0:
        raise ValueError(f"roi selects no pixel of a {(height, width)} image: {roi!r}")
    return index


def _check_request(model, images, input_z, output_z, truth, roi):
    """The checked (images, input_z, output_z, truth, roi index) of a test."""
    _check_model(model)
    images = _as_images(images)
    input_z = _as_z(input_z, "input_z", images.shape[0])
    output_z = _as_z(output_z, "output_z")
    return images, input_z, output_z, _as_truth(truth, output_z, images), _roi_index(roi, images.shape[1:])


def _reconstruct(model, images, input_z, output_z, batch_size, pixel_um=None, probing=False):
    """``model.reconstruct``; ``pixel_um`` is passed when given (a preset
    model needs it). ``probing``: the call perturbs the inputs on purpose
    (DPM noise), so a preset model may extrapolate beyond its trained output
    range and its out-of-distribution warning is silenced."""
    from keras_rmz.out_of_distribution import OutOfDistributionWarning

    kwargs = {"batch_size": batch_size}
    try:
        parameters = inspect.signature(model.reconstruct).parameters
    except (TypeError, ValueError):
        parameters = {}
    # keras_rmz models show a progress bar per call; a test makes dozens of
    # calls, so silence it where the model offers the switch.
    if "verbose" in parameters:
        kwargs["verbose"] = False
    if pixel_um is not None:
        kwargs["pixel_um"] = pixel_um
    if probing and "extrapolate" in parameters:
        kwargs["extrapolate"] = True
    with warnings.catch_warnings():
        if probing:
            warnings.simplefilter("ignore", OutOfDistributionWarning)
        volume = model.reconstruct(images, input_z, output_z, **kwargs)
    volume = np.asarray(volume, dtype=np.float64)
    expected = (output_z.size,) + images.shape[1:]
    if volume.shape != expected:
        raise ValueError(
            f"model.reconstruct must return shape (K, H, W) = {expected}; got "
            f"{volume.shape}"
        )
    return volume


def _rmse_per_plane(volume, truth, index):
    diff = volume[index] - truth[index]
    return np.sqrt(np.mean(diff.reshape(diff.shape[0], -1) ** 2, axis=1))


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def permutation_test(
    model, images, input_z, output_z, truth, roi=None, batch_size="auto", pixel_um=None
):
    """Permutation invariance (paper Fig. 6, Eq. 12-13).

    Reconstructs ``output_z`` from every one of the M! orders of the inputs
    (each image keeps its own z, so its DPM follows it) and reports, per
    output plane, the mean μ_RMSE and the standard deviation σ_RMSE of the
    RMSE over all orders:

        μ_RMSE = (1/M!) Σ_{π ∈ S_M} RMSE(V(I_π1, …, I_πM), I)
        σ_RMSE = sqrt((1/M!) Σ_{π ∈ S_M} (RMSE(V(I_π), I) − μ_RMSE)²)

    plus the RMSE of the z-sorted order and of the nearest-input baseline.

    Args:
        model: object with ``reconstruct(images, input_z, output_z,
            batch_size=...)``.
        images: (M, H, W) input planes, 1 ≤ M ≤ 7.
        input_z: (M,) their axial positions in µm.
        output_z: (K,) planes to reconstruct, µm.
        truth: (K, H, W) ground truth at ``output_z``.
        roi: where RMSE is measured (module docstring); ``None``: everywhere.
        batch_size: passed to ``model.reconstruct``.
        pixel_um: the images' pixel size (µm), passed to
            ``model.reconstruct`` when given (required by a preset model
            that records its pixel size).

    Returns:
        `PermutationResult`.

    Example:

    >>> result = permutation_test(model, stack.data[[30, 60, 90]],
    ...     stack.z[[30, 60, 90]], stack.z, stack.data)      # doctest: +SKIP
    >>> keras_rmz.plot.permutation_plot(result, path="perm.png")  # doctest: +SKIP
    """
    images, input_z, output_z, truth, index = _check_request(model, images, input_z, output_z, truth, roi)
    num_inputs = images.shape[0]
    if num_inputs > _MAX_PERMUTATION_INPUTS:
        raise ValueError(
            f"permutation_test runs all M! orders and accepts M <= "
            f"{_MAX_PERMUTATION_INPUTS}; got M = {num_inputs} "
            f"({math.factorial(num_inputs)} orders)"
        )

    permutations = np.array(list(itertools.permutations(range(num_inputs))), dtype=int)
    sorted_order = tuple(np.argsort(input_z, kind="stable"))
    sorted_index = int(
        np.flatnonzero(np.all(permutations == np.array(sorted_order), axis=1))[0]
    )
    rmse = np.empty((len(permutations), output_z.size), dtype=np.float64)
    # Welford's running moments: memory of two volumes whatever M! is, and
    # an exact 0 for identical outputs (E[x²] − E[x]² would leave ~1e-9).
    mean = np.zeros(truth.shape, dtype=np.float64)
    m2 = np.zeros(truth.shape, dtype=np.float64)
    for row, order in enumerate(permutations):
        volume = _reconstruct(
            model, images[order], input_z[order], output_z, batch_size, pixel_um
        )
        rmse[row] = _rmse_per_plane(volume, truth, index)
        delta = volume - mean
        mean += delta / (row + 1)
        m2 += delta * (volume - mean)
    pixel_std = np.sqrt(np.maximum(m2 / len(permutations), 0.0))
    nearest = np.asarray(nearest_plane(images, input_z, output_z), dtype=np.float64)
    return PermutationResult(
        output_z=output_z,
        input_z=input_z,
        permutations=permutations,
        sorted_index=sorted_index,
        rmse=rmse,
        mu_rmse=rmse.mean(axis=0),
        sigma_rmse=rmse.std(axis=0, ddof=0),
        sorted_rmse=rmse[sorted_index].copy(),
        nearest_rmse=_rmse_per_plane(nearest, truth, index),
        pixel_std=pixel_std,
    )


def repetition_test(
    model,
    images,
    input_z,
    output_z,
    truth,
    repeats=(1, 2, 4, 6),
    index=0,
    sequences=None,
    roi=None,
    batch_size="auto",
    pixel_um=None,
):
    """Repetition invariance (paper Fig. 7 and S7).

    Feeds the model input sequences with repeated planes — by default image
    ``index`` alone and repeated ``repeats`` times, i.e. V(I1), V(I1, I1),
    V(I1, I1, I1, I1), …, then all inputs in the given order and reversed,
    V(I1, I2) and V(I2, I1) for M = 2 — and reports each output's RMSE per
    plane. A model that integrates information correctly gives about the
    same result for every repetition count and improves once a new plane
    is added.

    Args:
        model: object with ``reconstruct(images, input_z, output_z,
            batch_size=...)``.
        images: (M, H, W) input planes.
        input_z: (M,) their axial positions in µm.
        output_z: (K,) planes to reconstruct, µm.
        truth: (K, H, W) ground truth at ``output_z``.
        repeats: repetition counts (each ≥ 1) of image ``index``.
        index: which image (0-based, given order) is repeated.
        sequences: explicit sequences instead of the defaults: a list of
            index tuples into ``images``, e.g. ``[(0, 0, 1), (0, 1, 1)]``.
        roi: where RMSE is measured; ``None``: everywhere.
        batch_size: passed to ``model.reconstruct``.
        pixel_um: the images' pixel size (µm), passed to
            ``model.reconstruct`` when given (required by a preset model
            that records its pixel size).

    Returns:
        `RepetitionResult`.
    """
    images, input_z, output_z, truth, roi_index = _check_request(model, images, input_z, output_z, truth, roi)
    num_inputs = images.shape[0]
    if sequences is None:
        if not isinstance(index, (int, np.integer)) or not 0 <= index < num_inputs:
            raise ValueError(
                f"index must be an integer in [0, {num_inputs}); got {index!r}"
            )
        repeats = list(repeats)
        if not repeats or any(
            not isinstance(r, (int, np.integer)) or r < 1 for r in repeats
        ):
            raise ValueError(
                f"repeats must be a non-empty list of integers >= 1; got {repeats!r}"
            )
        sequences = [(int(index),) * int(r) for r in repeats]
        if num_inputs > 1:
            sequences.append(tuple(range(num_inputs)))
            sequences.append(tuple(reversed(range(num_inputs))))
    else:
        sequences = [tuple(int(i) for i in s) for s in sequences]
        if not sequences or any(
            len(s) == 0 or min(s) < 0 or max(s) >= num_inputs for s in sequences
        ):
            raise ValueError(
                "sequences must be a non-empty list of non-empty tuples of indices "
                f"in [0, {num_inputs}); got {sequences!r}"
            )
    labels = [
        "V(" + ", ".join(f"I{i + 1}" for i in sequence) + ")" for sequence in sequences
    ]
    rmse = np.empty((len(sequences), output_z.size), dtype=np.float64)
    for row, sequence in enumerate(sequences):
        order = np.array(sequence, dtype=int)
        volume = _reconstruct(model, images[order], input_z[order], output_z, batch_size, pixel_um)
        rmse[row] = _rmse_per_plane(volume, truth, roi_index)
    nearest = np.asarray(nearest_plane(images, input_z, output_z), dtype=np.float64)
    return RepetitionResult(
        output_z=output_z,
        input_z=input_z,
        sequences=sequences,
        labels=labels,
        rmse=rmse,
        nearest_rmse=_rmse_per_plane(nearest, truth, roi_index),
    )


def dpm_noise_test(
    model,
    images,
    input_z,
    output_z,
    truth,
    sigmas_um=(0.0, 0.25, 0.5, 1.0),
    repeats=50,
    seed=None,
    normalization="euclidean",
    roi=None,
    batch_size="auto",
    pixel_um=None,
):
    """Stability under axial-position errors (paper Fig. 5, Eq. 11).

    For each σ and each of ``repeats`` random trials, draws one offset
    z_d,i ~ N(0, σ²) per input image and adds it to that image's DPM,
    Z_i,noised = Z_i + z_d,i·J (Eq. 11). Since the DPM is
    ``output_z − input_z``, this is done by passing ``input_z − z_d`` to the
    model; the same offsets hold for every output plane of a trial, as a
    real stage error would. σ = 0 is reconstructed once and its NRMSE
    repeated (the model is assumed deterministic at inference).

    Args:
        model: object with ``reconstruct(images, input_z, output_z,
            batch_size=...)``.
        images: (M, H, W) input planes.
        input_z: (M,) their nominal axial positions in µm.
        output_z: (K,) planes to reconstruct, µm.
        truth: (K, H, W) ground truth at ``output_z``.
        sigmas_um: noise standard deviations in µm (each ≥ 0); the paper
            goes up to 1 µm, 2.5× the 0.4 µm depth of field.
        repeats: random trials per σ (the paper: 50).
        seed: seed of ``numpy.random.default_rng`` (reproducible offsets).
        normalization: NRMSE normalization (see `keras_rmz.metrics.nrmse`).
        roi: where NRMSE is measured; ``None``: everywhere.
        batch_size: passed to ``model.reconstruct``.
        pixel_um: the images' pixel size (µm), passed to
            ``model.reconstruct`` when given (required by a preset model
            that records its pixel size).

    Returns:
        `DPMNoiseResult`.
    """
    images, input_z, output_z, truth, roi_index = _check_request(model, images, input_z, output_z, truth, roi)
    num_inputs = images.shape[0]
    sigmas_um = np.asarray(sigmas_um, dtype=np.float64).reshape(-1)
    if sigmas_um.size == 0 or not np.all(np.isfinite(sigmas_um)) or np.any(sigmas_um < 0):
        raise ValueError(
            f"sigmas_um must be a non-empty list of finite values >= 0; got {sigmas_um}"
        )
    if not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1; got {repeats!r}")
    # Validated before any reconstruction is paid for.
    if not isinstance(normalization, str) or (
        normalization.lower() not in _NRMSE_NORMALIZATIONS
    ):
        raise ValueError(
            f"normalization must be one of {_NRMSE_NORMALIZATIONS}; got "
            f"{normalization!r}"
        )
    truth_roi = truth[roi_index]

    def score(volume):
        volume_roi = volume[roi_index]
        return np.array(
            [
                _nrmse(truth_roi[k], volume_roi[k], normalization=normalization)
                for k in range(output_z.size)
            ]
        )

    rng = np.random.default_rng(seed)
    z_noise = np.zeros((sigmas_um.size, repeats, num_inputs), dtype=np.float64)
    scores = np.empty((sigmas_um.size, repeats, output_z.size), dtype=np.float64)
    clean_scores = None
    for s, sigma in enumerate(sigmas_um):
        if sigma == 0.0:
            if clean_scores is None:
                clean_scores = score(
                    _reconstruct(model, images, input_z, output_z, batch_size, pixel_um)
                )
            scores[s] = clean_scores
            continue
        for r in range(repeats):
            z_noise[s, r] = rng.normal(0.0, sigma, size=num_inputs)
            # DPM_i + z_d,i = output_z − (input_z_i − z_d,i)   (Eq. 11)
            volume = _reconstruct(
                model, images, input_z - z_noise[s, r], output_z, batch_size, pixel_um, probing=True
            )
            scores[s, r] = score(volume)
    return DPMNoiseResult(
        output_z=output_z,
        sigmas_um=sigmas_um,
        z_noise_um=z_noise,
        nrmse=scores,
        normalization=normalization.lower(),
    )


def _plane_indices(z_um, wanted, name):
    """Indices of ``wanted`` positions in ``z_um`` (to within 1 nm)."""
    wanted = _as_z(wanted, name)
    distance = np.abs(wanted[:, None] - z_um[None, :])
    indices = np.argmin(distance, axis=1)
    missing = wanted[distance[np.arange(wanted.size), indices] > 1e-3]
    if missing.size:
        raise ValueError(
            f"{name} must be planes of the volume (z_um, to within 1 nm); "
            f"{missing.tolist()} µm are not among z_um in "
            f"[{z_um.min():g}, {z_um.max():g}]"
        )
    return indices


def nonuniform_spacing_test(
    model,
    volume,
    z_um,
    uniform_z,
    nonuniform_z,
    output_z=None,
    roi=None,
    data_range=None,
    batch_size="auto",
    pixel_um=None,
):
    """Uniform against non-uniform input spacing (paper Fig. 4).

    Takes two sets of input planes from the same truth volume — evenly
    spaced (as in training) and non-uniformly spaced, e.g. (3, 9, 15) µm and
    (3, 7.8, 13.6) µm — reconstructs ``output_z`` from each and scores both
    against the volume's own planes with PSNR and NRMSE per plane.

    Args:
        model: object with ``reconstruct(images, input_z, output_z,
            batch_size=...)``.
        volume: truth stack (Z, H, W).
        z_um: (Z,) its plane positions in µm.
        uniform_z: input positions (µm), planes of ``volume``.
        nonuniform_z: input positions (µm), planes of ``volume``.
        output_z: planes to reconstruct and score (µm, planes of ``volume``);
            ``None``: all of ``z_um``.
        roi: where metrics are measured; ``None``: everywhere.
        data_range: PSNR data range; ``None``: the span of the truth planes
            (within the roi), one value for all planes.
        batch_size: passed to ``model.reconstruct``.
        pixel_um: the images' pixel size (µm), passed to
            ``model.reconstruct`` when given (required by a preset model
            that records its pixel size).

    Returns:
        `NonuniformSpacingResult`; ``result.psnr`` goes straight into
        ``keras_rmz.plot.metric_vs_z``.
    """
    _check_model(model)
    volume = _as_images(volume, "volume")
    z_um = _as_z(z_um, "z_um", volume.shape[0])
    roi_index = _roi_index(roi, volume.shape[1:])
    selections = {
        "uniform": _plane_indices(z_um, uniform_z, "uniform_z"),
        "non-uniform": _plane_indices(z_um, nonuniform_z, "nonuniform_z"),
    }
    if output_z is None:
        out_indices = np.arange(z_um.size)
    else:
        out_indices = _plane_indices(z_um, output_z, "output_z")
    output_z = z_um[out_indices]
    truth = np.asarray(volume[out_indices], dtype=np.float64)
    truth_roi = truth[roi_index]
    data_range = _resolve_data_range(truth_roi, data_range)
    psnr, nrmse, input_z = {}, {}, {}
    for label, indices in selections.items():
        input_z[label] = z_um[indices]
        recon = _reconstruct(
            model, volume[indices], z_um[indices], output_z, batch_size, pixel_um
        )[roi_index]
        diff = (recon - truth_roi).reshape(output_z.size, -1)
        mse = np.mean(diff**2, axis=1)
        with np.errstate(divide="ignore"):
            psnr[label] = 10.0 * np.log10(data_range**2 / mse)
        norm = np.sqrt(np.mean(truth_roi.reshape(output_z.size, -1) ** 2, axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            nrmse[label] = np.sqrt(mse) / norm
    return NonuniformSpacingResult(
        output_z=output_z,
        input_z=input_z,
        psnr=psnr,
        nrmse=nrmse,
        data_range=data_range,
    )
