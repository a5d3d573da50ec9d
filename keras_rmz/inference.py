"""Whole-volume reconstruction: normalization, batching across output planes,
tiling with smooth blending, out-of-memory fallback, progress.

``model.reconstruct(...)`` on every keras_rmz generator calls
``reconstruct_volume``; use this module directly for the lower-level knobs.
"""

import contextlib
import math
import warnings
import weakref

import keras
import numpy as np

from keras_rmz.backend.device import auto_batch_size
from keras_rmz.backend.memory import reuse_freed_memory
from keras_rmz.data.normalization import Normalization, compute_normalization
from keras_rmz.io.resample import resample_planes
from keras_rmz.precision import check_precision, resolve_precision, with_precision

# Whole-plane inference up to this many pixels; larger planes are tiled.
DEFAULT_MAX_TILE_PIXELS = 1024 * 1024
DEFAULT_TILE_SIZE = 512
MIN_TILE_SIZE = 32
def _as_float_array(name, value, ndim_options, shape_hint):
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged lists and other non-arrays
        raise ValueError(f"{name} must be an array of shape {shape_hint}; got {type(value).__name__}") from error
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{name} must be numeric (uint8, uint16, float, ...) with shape {shape_hint}; got dtype {array.dtype}")
    if array.dtype == bool or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real-valued intensities or positions; got dtype {array.dtype}")
    if array.ndim not in ndim_options:
        raise ValueError(f"{name} must have shape {shape_hint}; got shape {array.shape}")
    return array


def validate_reconstruct_arguments(images, input_z, output_z):
    """Checks ``reconstruct``'s arguments and returns them as numpy arrays:
    images (M, H, W) float32, input_z (M,) float32, output_z (K,) float32.

    Raises:
        ValueError: saying what was wrong and what is accepted.
    """
    images = _as_float_array("images", images, (3, 4), "(M, H, W)")
    if images.ndim == 4:
        if images.shape[-1] != 1:
            raise ValueError(
                f"images must have shape (M, H, W) (or (M, H, W, 1)); got shape {images.shape}"
            )
        images = images[..., 0]
    num_inputs, height, width = images.shape
    if num_inputs == 0:
        raise ValueError("images must hold at least one input plane (M >= 1); got M = 0")
    if height == 0 or width == 0:
        raise ValueError(f"images must have non-empty planes; got shape {images.shape}")
    input_z = _as_float_array("input_z", input_z, (0, 1), "(M,)").reshape(-1)
    if input_z.shape[0] != num_inputs:
        raise ValueError(
            f"input_z must give one z (µm) per input image: expected {num_inputs} values "
            f"for images of shape {images.shape}; got {input_z.shape[0]}"
        )
    output_z = _as_float_array("output_z", output_z, (0, 1), "(K,) or a scalar").reshape(-1)
    if output_z.shape[0] == 0:
        raise ValueError("output_z must hold at least one output plane position (µm); got none")
    images = images.astype(np.float32, copy=False)
    for name, array in (("images", images), ("input_z", input_z), ("output_z", output_z)):
        if not np.all(np.isfinite(array)):
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            raise ValueError(f"{name} must be finite; it holds {bad} NaN or inf value(s)")
    return images, input_z.astype(np.float32), output_z.astype(np.float32)


def resolve_jit_compile(model, jit_compile):
    """The compilation ``reconstruct`` uses: ``"auto"`` is the model's own
    setting (Keras's default: XLA on TensorFlow only with a GPU, ``jax.jit``
    on JAX, eager PyTorch); True or False overrides it for reconstruction.

    XLA is not the default on a CPU because it does not pay there for every
    network: measured on this project's 2-core CPU (TensorFlow, one output
    plane per call), XLA ran RecurrentMZ at 1024x1024 1.3x faster in one
    quiet run and 0.77x as fast in another, 0.7-0.9x as fast at 256x256
    under load, and the 3D U-Net (3D convolutions) 7x slower
    (docs/performance.md)."""
    if isinstance(jit_compile, str) and jit_compile == "auto":
        return bool(model.jit_compile) if isinstance(model, keras.Model) else False
    if isinstance(jit_compile, bool):
        return jit_compile
    raise ValueError(f"jit_compile must be 'auto', True or False; got {jit_compile!r}")


# Predict functions compiled for reconstruct, per model and setting, so that
# switching the setting for inference neither recompiles each call nor
# changes what the model's own fit/predict use.
_PREDICT_FUNCTIONS = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def inference_compilation(model, jit_compile="auto"):
    """Runs the block with the model's predict function compiled as
    ``resolve_jit_compile(model, jit_compile)`` says, then restores the
    model's own setting and predict function."""
    if not isinstance(model, keras.Model):  # a stand-in with its own predict_on_batch
        resolve_jit_compile(model, jit_compile)
        yield
        return
    wanted = resolve_jit_compile(model, jit_compile)
    saved_flag = bool(model.jit_compile)
    if saved_flag == wanted:
        yield
        return
    saved_function = model.predict_function
    cache = _PREDICT_FUNCTIONS.setdefault(model, {})
    with warnings.catch_warnings():
        # Keras falls back to False (with a warning) for a model with a layer
        # that cannot be compiled: then nothing changes.
        warnings.simplefilter("ignore")
        model.jit_compile = wanted
    model.predict_function = cache.get(bool(model.jit_compile))
    try:
        yield
    finally:
        cache[bool(model.jit_compile)] = model.predict_function
        model.jit_compile = saved_flag
        model.predict_function = saved_function


def _is_out_of_memory(error):
    """True for the out-of-memory errors of numpy and the three backends."""
    if isinstance(error, MemoryError):
        return True
    text = f"{type(error).__name__}: {error}".lower()
    return any(
        marker in text
        for marker in ("resourceexhausted", "resource_exhausted", "out of memory", "outofmemory", "oom when allocating")
    )


def tile_starts(size, tile, overlap):
    """Start offsets of tiles of length ``tile`` covering ``size`` with at
    least ``overlap`` pixels shared by neighbours; the last tile ends at
    ``size``."""
    if tile >= size:
        return [0]
    step = max(tile - overlap, 1)
    count = math.ceil((size - tile) / step) + 1
    # Spread the tiles evenly so every overlap is about the same width.
    return sorted({round(i * (size - tile) / (count - 1)) for i in range(count)})


def blend_weights(length, left_overlap, right_overlap):
    """1D blending weight of a tile of ``length`` pixels that shares
    ``left_overlap`` / ``right_overlap`` pixels with its neighbours: a
    raised-cosine ramp across each shared band, 1 elsewhere. Across a shared
    band the two tiles' ramps sum to exactly 1 (a partition of unity), so
    blending adds no seam and no intensity change."""
    weight = np.ones(length, np.float64)

    def taper(width):
        return 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)

    if left_overlap > 0:
        weight[:left_overlap] = taper(left_overlap)
    if right_overlap > 0:
        weight[length - right_overlap :] *= taper(right_overlap)[::-1]
    return weight


def _overlaps(starts, tile):
    """(left, right) overlap in pixels of each tile with its neighbours."""
    return [
        (
            starts[i - 1] + tile - start if i > 0 else 0,
            start + tile - starts[i + 1] if i + 1 < len(starts) else 0,
        )
        for i, start in enumerate(starts)
    ]


def resolve_normalization(model, images, normalize):
    """The Normalization to use for ``images`` (M, H, W), or None.

    ``normalize``: "auto" (the model's ``normalization``, the paper's by
    default, computed from the input planes), a ``Normalization``,
    a dict (``Normalization.to_dict()``), or None / False (images are used as
    given).
    """
    if normalize is None or normalize is False:
        return None
    if isinstance(normalize, Normalization):
        return normalize
    if isinstance(normalize, dict):
        return Normalization.from_dict(normalize)
    if normalize == "auto":
        # A ReconstructionModel's ``normalization`` (its config); any other
        # object with ``reconstruct``'s contract gets the paper's.
        method = getattr(model, "normalization", "paper")
        if method == "none":
            return None
        if method != "paper":
            raise ValueError(f"unknown normalization {method!r} in the model's config; known: 'paper', 'none'")
        return compute_normalization(images)
    raise ValueError(
        "normalize must be 'auto', a Normalization, a dict with 'shift' and 'scale', or None; " f"got {normalize!r}"
    )


def _predict_planes(model, images, input_z, output_z, batch_size, progress=None):
    """(K, h, w) float32 for one tile, batched across output planes.

    The K planes are split into calls of (nearly) equal size, at most
    ``batch_size`` each. For a compiled model (XLA, ``jax.jit``,
    ``torch.compile``) a shorter last call is padded to the size of the
    others (repeating its last plane, whose copies are dropped), so that the
    model is compiled once, not twice, for one plane size."""
    planes = []
    total = output_z.shape[0]
    calls = math.ceil(total / max(1, int(batch_size)))
    batch_size = math.ceil(total / calls)
    pad = bool(getattr(model, "jit_compile", False))
    for start in range(0, total, batch_size):
        chunk = output_z[start : start + batch_size]
        count = chunk.shape[0]
        if pad and count < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - count)])
        size = chunk.shape[0]
        batch = {
            "images": np.broadcast_to(images[None, ..., None], (size, *images.shape, 1)),
            "input_z": np.broadcast_to(input_z[None], (size, input_z.shape[0])),
            "output_z": chunk,
        }
        out = model.predict_on_batch(batch)
        planes.append(np.asarray(out, dtype=np.float32)[:count, ..., 0])
        if progress is not None:
            progress.update(count)
    return np.concatenate(planes, axis=0)


def unpack_stack(images, input_z, pixel_um):
    """(images, input_z, pixel_um, stack metadata) of a ``Stack`` or an array."""
    from keras_rmz.io import Stack

    if not isinstance(images, Stack):
        if input_z is None:
            raise ValueError(
                "input_z (the z of each input plane, µm) is required when images is an array; it may be omitted "
                "only for a keras_rmz.io.Stack, whose z is used"
            )
        return images, input_z, pixel_um, None
    return (
        images.data,
        images.z if input_z is None else input_z,
        images.pixel_um if pixel_um is None else pixel_um,
        images.metadata,
    )


def check_pixel_um(pixel_um):
    if pixel_um is None:
        return None
    if isinstance(pixel_um, (bool, np.bool_)) or not isinstance(pixel_um, (int, float, np.integer, np.floating)):
        raise ValueError(f"pixel_um must be a number (µm per pixel) or None; got {pixel_um!r}")
    if not (math.isfinite(float(pixel_um)) and float(pixel_um) > 0):
        raise ValueError(f"pixel_um must be finite and > 0 (µm per pixel); got {pixel_um!r}")
    return float(pixel_um)


def check_preset_request(model, images, input_z, output_z, *, pixel_um=None, stack_metadata=None, extrapolate=False):
    """The checks ``reconstruct_volume`` makes before any compute, against
    the model's ``preset_metadata`` (see ``keras_rmz.out_of_distribution``):
    raises ValueError (pixel size unknown; output planes beyond the trained
    range without ``extrapolate``) and warns once
    (``OutOfDistributionWarning``) for every other mismatch.

    Returns:
        the (h, w) to resample the (M, H, W) ``images`` to, or None.
    """
    from keras_rmz import out_of_distribution as ood

    metadata = getattr(model, "preset_metadata", None)
    if not metadata:
        return None
    mismatches = ood.check_request(
        metadata,
        input_z=input_z,
        output_z=output_z,
        pixel_um=pixel_um,
        stack_metadata=stack_metadata,
        extrapolate=extrapolate,
    )
    if mismatches:
        preset = getattr(model, "_keras_rmz_preset_handle", None)
        warnings.warn(
            ood.OutOfDistributionWarning(ood.warning_message(mismatches, preset)),
            stacklevel=ood.external_stacklevel(),
        )
    preset_pixel = ood.preset_pixel_um(metadata)
    if not ood.needs_resampling(pixel_um, preset_pixel):
        return None
    return ood.resampled_shape(np.shape(images)[1:3], pixel_um, preset_pixel)


def reconstruct_volume(
    model,
    images,
    input_z=None,
    output_z=None,
    *,
    batch_size="auto",
    tile_size=None,
    tile_overlap=48,
    normalize="auto",
    verbose="auto",
    jit_compile="auto",
    pixel_um=None,
    extrapolate=False,
    precision="auto",
):
    """Infers the planes at ``output_z`` from M input planes: what
    ``model.reconstruct`` runs (``ReconstructionModel.reconstruct``, whose
    docstring and docs/inference.md describe every argument), for any
    keras_rmz generator or engine model (``keras_rmz.export.engine_model``).

    Before any compute (normalization, model call), a model loaded from a
    preset checks the request against its ``preset_metadata``
    (``check_preset_request``): the input's pixel size must be known and is
    resampled to the preset's when the two differ by more than 2 %; every
    ``output_z - input_z`` must lie within the trained ``output_range_um``
    widened by 10 % of its width (else ValueError, unless
    ``extrapolate=True``); any other mismatch (input spacing outside 0.5-2x
    the trained one, another M, modality, emission wavelength or NA) gives
    one ``keras_rmz.OutOfDistributionWarning``.

    Returns:
        float32 array (K, H, W) in the input's intensity units, at the
        input's pixel size.
    """
    images, input_z, pixel_um, stack_metadata = unpack_stack(images, input_z, pixel_um)
    if output_z is None:
        raise ValueError("output_z (the z of the planes to infer, µm) is required")
    pixel_um = check_pixel_um(pixel_um)
    images, input_z, output_z = validate_reconstruct_arguments(images, input_z, output_z)
    model.check_num_inputs(images.shape[0])
    if not (isinstance(batch_size, str) and batch_size == "auto"):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be 'auto' or a positive integer; got {batch_size!r}")
        batch_size = int(batch_size)
    resolve_jit_compile(model, jit_compile)
    check_precision(precision)
    if tile_size is not None and int(tile_size) < MIN_TILE_SIZE:
        raise ValueError(f"tile_size must be None or an integer >= {MIN_TILE_SIZE}; got {tile_size}")
    if int(tile_overlap) < 0:
        raise ValueError(f"tile_overlap must be >= 0; got {tile_overlap}")
    if tile_size is not None and int(tile_overlap) >= int(tile_size):
        raise ValueError(
            f"tile_overlap ({tile_overlap}) must be smaller than tile_size ({tile_size}): neighbouring tiles "
            "share tile_overlap pixels (default 48)"
        )
    # The preset's guards, before any compute.
    resampled = check_preset_request(
        model, images, input_z, output_z, pixel_um=pixel_um, stack_metadata=stack_metadata, extrapolate=extrapolate
    )
    minimum = getattr(model, "min_plane_size", None)
    if minimum and min(resampled or images.shape[1:]) < minimum:
        shown = "x".join(map(str, images.shape[1:])) + (
            f" (resampled to the preset's pixel size: {'x'.join(map(str, resampled))})" if resampled else "")
        raise ValueError(
            f"the planes are {shown} pixels, smaller than the {minimum}x{minimum} that {type(model).__name__} needs "
            f"(2**depth: {int(math.log2(minimum))} poolings); give planes of at least {minimum} pixels per side"
        )
    normalization = resolve_normalization(model, images, normalize)
    if normalization is not None:
        images = normalization.apply(images).astype(np.float32)
    input_shape = images.shape[1:]
    if resampled is not None:
        images = resample_planes(images, resampled)

    height, width = images.shape[1:]
    if tile_size is None:
        tile_size = max(height, width) if height * width <= DEFAULT_MAX_TILE_PIXELS else DEFAULT_TILE_SIZE
    tile_size = int(tile_size)
    model = with_precision(model, precision)
    while True:
        try:
            planes = batch_size
            if planes == "auto":
                planes = auto_batch_size(min(tile_size, height), min(tile_size, width), output_z.shape[0])
            # On PyTorch, large freed blocks are reused instead of faulted in
            # afresh for every intermediate tensor (keras_rmz.backend.memory).
            with inference_compilation(model, jit_compile), reuse_freed_memory():
                volume = _tiled_predict(model, images, input_z, output_z, planes, tile_size, int(tile_overlap), verbose)
            break
        except Exception as error:  # noqa: BLE001 - re-raised unless it is an OOM
            if not _is_out_of_memory(error) or tile_size // 2 < max(MIN_TILE_SIZE, int(tile_overlap) + 1):
                raise
            tile_size //= 2
            warnings.warn(f"out of memory; retrying with tile_size={tile_size}", RuntimeWarning, stacklevel=2)
    if resampled is not None:
        volume = resample_planes(volume, input_shape)
    if normalization is not None:
        volume = normalization.invert(volume).astype(np.float32)
    return volume


def reconstruct_stack(model, stack, input_planes, output_z, *, normalize="inputs", batch_size="auto", tile_size=None,
                      extrapolate=False, verbose=True, record=None, precision="auto"):
    """The volume at ``output_z`` from planes ``input_planes`` of ``stack``,
    as a ``Stack`` that says how it was made (what ``keras-rmz reconstruct``
    writes): the stack's pixel size and metadata, plus ``keras_rmz_version``
    and a ``reconstruction`` record (input planes and z, model,
    normalization, tiling, resampling, ``extrapolate``, and ``record``).

    Args:
        model: a generator (a preset's is checked against its metadata, as
            in ``reconstruct_volume``).
        stack: a ``keras_rmz.io.Stack`` with its pixel size.
        input_planes: plane indices of the inputs, in input order.
        output_z: (K,) z (µm) of the planes to infer.
        normalize: "inputs" (the model's normalization from the input
            planes, as ``reconstruct`` does), "stack" (from every plane of the
            stack, as the paper's training data were) or None (intensities
            as they are).
        batch_size, tile_size, extrapolate, verbose, precision: as in
            ``reconstruct_volume``.
        record: more keys for the ``reconstruction`` record (e.g. the
            source file and the preset handle).

    Example:

    ```python
    volume = reconstruct_stack(model, read_stack("beads.ome.tif"), [30, 60, 90], np.arange(0, 10.01, 0.1))
    write_stack("recon.ome.tif", volume)
    ```
    """
    from keras_rmz import out_of_distribution as ood
    from keras_rmz.io import Stack
    from keras_rmz.version import __version__

    if normalize not in ("inputs", "stack", None):
        raise ValueError(f"normalize must be 'inputs', 'stack' or None; got {normalize!r}")
    indices = [int(i) for i in input_planes]
    # np.asarray reads only these planes of a lazily read (OME-Zarr) stack.
    images, input_z = np.asarray(stack.data[indices]), stack.z[indices]
    if not np.all(np.isfinite(images)):
        raise ValueError(f"the input planes {indices} hold NaN or inf values; the model needs finite intensities")
    normalization = None
    if normalize == "stack":
        every_plane = np.asarray(stack.data)
        if not np.all(np.isfinite(every_plane)):
            raise ValueError("the stack holds NaN or inf values; normalizing from the whole stack needs finite "
                             "intensities")
        normalization = resolve_normalization(model, every_plane, "auto")
    # "inputs" is reconstruct_volume's own "auto", computed after its checks.
    volume = reconstruct_volume(
        model, images, input_z, output_z, batch_size=batch_size, tile_size=tile_size,
        normalize={"stack": normalization, "inputs": "auto", None: None}[normalize], verbose=verbose,
        pixel_um=stack.pixel_um, extrapolate=extrapolate, precision=precision,
    )
    if normalize == "inputs":
        normalization = resolve_normalization(model, images, "auto")
    preset_pixel = ood.preset_pixel_um(getattr(model, "preset_metadata", None))
    metadata = {
        **stack.metadata,
        "keras_rmz_version": __version__,
        "reconstruction": {
            "input_planes": indices,
            "input_z_um": [float(z) for z in input_z],
            "model": type(model).__name__,
            "normalization": None if normalization is None else normalization.to_dict(),
            "normalization_from": normalize if normalization is not None else None,
            "batch_size": batch_size,
            "tile_size": tile_size,
            "pixel_um": stack.pixel_um,
            "resampled_to_pixel_um": preset_pixel if ood.needs_resampling(stack.pixel_um, preset_pixel) else None,
            "extrapolate": bool(extrapolate),
            "precision": resolve_precision(precision),
            **(record or {}),
        },
    }
    return Stack(volume, np.asarray(output_z, dtype=np.float64), stack.pixel_um, metadata)


def _tiled_predict(model, images, input_z, output_z, batch_size, tile_size, overlap, verbose):
    height, width = images.shape[1:]
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    ys, xs = tile_starts(height, tile_h, overlap), tile_starts(width, tile_w, overlap)
    weights_y = dict(zip(ys, (blend_weights(tile_h, *o) for o in _overlaps(ys, tile_h))))
    weights_x = dict(zip(xs, (blend_weights(tile_w, *o) for o in _overlaps(xs, tile_w))))
    tiles = [(y, x) for y in ys for x in xs]
    calls = len(tiles) * math.ceil(output_z.shape[0] / batch_size)
    show = calls > 1 if verbose == "auto" else bool(verbose)
    progress = None
    if show:
        from tqdm.auto import tqdm

        # Moves with each model call: planes, or for a tiled plane the tiles
        # of every plane (a plane/s rate would be off by the tile count).
        planes = output_z.shape[0]
        if len(tiles) == 1:
            progress = tqdm(total=planes, desc="reconstruct", unit="plane")
        else:
            progress = tqdm(total=len(tiles) * planes, desc=f"reconstruct {planes} planes x {len(tiles)} tiles",
                            unit="tile")
    try:
        if len(tiles) == 1:
            return _predict_planes(model, images, input_z, output_z, batch_size, progress)
        accumulated = np.zeros((output_z.shape[0], height, width), np.float64)
        total_weight = np.zeros((height, width), np.float64)
        for y, x in tiles:
            tile = images[:, y : y + tile_h, x : x + tile_w]
            planes = _predict_planes(model, tile, input_z, output_z, batch_size, progress)
            weight = np.outer(weights_y[y], weights_x[x])
            accumulated[:, y : y + tile_h, x : x + tile_w] += planes * weight
            total_weight[y : y + tile_h, x : x + tile_w] += weight
        return (accumulated / total_weight).astype(np.float32)
    finally:
        if progress is not None:
            progress.close()
