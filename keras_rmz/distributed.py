"""Chunked and distributed reconstruction of time-lapses with Dask, written
straight to OME-Zarr.

``reconstruct_timelapse`` builds a Dask graph of independent tasks, one per
time point, block of output planes and lateral tile, and runs it on the
scheduler the user chooses: Dask's local threads (the default), a
``dask.distributed`` ``LocalCluster`` (``"local:N"``: N worker processes),
or any cluster's scheduler (``"tcp://host:8786"``, or a ``Client``). Dask
does the scheduling; this module only cuts the work and writes the chunks.

- **Tiles.** The output is chunked as (1 time point, 1 plane, tile, tile)
  in its OME-Zarr store. A task reads the M input planes of its tile plus
  ``halo`` pixels on each side, reconstructs its block of output planes and
  writes the tile's core to the store, chunk-aligned (no two tasks write
  the same chunk). With a halo at least the network's receptive field, the
  result equals whole-plane reconstruction (``reconstruct_stack``).
- **Normalization** is the model's, computed per time point from the whole
  input planes (a small task each tile task depends on), as
  ``reconstruct_stack`` computes it.
- **The model is loaded once per worker** process (a per-process cache
  keyed by the preset handle); tasks carry the handle, not the weights.
  A model object (not a handle) runs on the local threads scheduler only.
- **Restartable.** After a task's chunks are written, it leaves a marker in
  the store's ``.keras_rmz_progress/`` folder. Running the same request
  again (after a crash, a killed job) builds tasks only for the chunks
  without a marker; a chunk written halfway has none and is redone. When
  every task is done, the pyramid and the NGFF metadata are written and the
  progress folder is removed.

Needs ``pip install 'keras-rmz[zarr]'`` (and ``[distributed]`` for clusters).

Example:

```python
from keras_rmz.distributed import reconstruct_timelapse

reconstruct_timelapse("recurrent_mz_nuclei_m2", "movie.ome.zarr", [10, 40], np.arange(2, 8.01, 0.3),
                      "movie_volumes.ome.zarr", times="0:7", scheduler="local:2")
```
"""

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import threading

import numpy as np

# Output chunks: this many pixels per side (a multiple of 2**depth of every
# preset, so tiles stay on the network's pooling grid).
DEFAULT_TILE = 512
DEFAULT_HALO = 64
DEFAULT_PLANES_PER_TASK = 8
PROGRESS_FOLDER = ".keras_rmz_progress"
LEVEL0 = "s0"

# The models this process has loaded: handle -> (model, lock). A worker
# process loads each preset once; the lock serializes calls into one model.
_MODELS = {}
_MODELS_LOCK = threading.Lock()
LOADS = {"count": 0}


def _model(handle):
    with _MODELS_LOCK:
        entry = _MODELS.get(handle)
        if entry is None:
            if handle.startswith("object:"):
                raise RuntimeError(
                    "this worker does not hold the model object passed to reconstruct_timelapse: a model object runs "
                    "on the local threads scheduler only; pass a preset name or folder for a cluster")
            from keras_rmz.presets import load_preset

            entry = _MODELS[handle] = (load_preset(handle), threading.Lock())
            LOADS["count"] += 1
    return entry


def _register(model):
    """A handle for ``model`` (a preset name or folder, or a model object)."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    handle = f"object:{id(model)}"
    with _MODELS_LOCK:
        _MODELS.setdefault(handle, (model, threading.Lock()))
    return handle


# --------------------------------------------------------------------------
# Tasks (run on the workers).
# --------------------------------------------------------------------------


def _normalization_task(handle, planes, normalize):
    if not normalize:
        return None
    from keras_rmz.inference import resolve_normalization

    model, _ = _model(handle)
    normalization = resolve_normalization(model, np.asarray(planes), "auto")
    return None if normalization is None else normalization.to_dict()


def _tile_task(handle, planes, normalization, request, task):
    from keras_rmz.data.normalization import Normalization
    from keras_rmz.inference import MIN_TILE_SIZE, reconstruct_volume

    import zarr

    model, lock = _model(handle)
    with lock:
        volume = reconstruct_volume(
            model, np.asarray(planes, np.float32), request["input_z"], task["output_z"],
            normalize=None if normalization is None else Normalization.from_dict(normalization),
            pixel_um=request["pixel_um"], extrapolate=True, verbose=False, precision=request["precision"],
            batch_size=request["batch_size"], tile_size=max(*planes.shape[1:], MIN_TILE_SIZE), tile_overlap=0,
        )
    (cy0, cy1, cx0, cx1), (t, k0, y0, x0) = task["core"], task["at"]
    core = volume[:, cy0:cy1, cx0:cx1]
    array = zarr.open_array(str(pathlib.Path(request["output"]) / LEVEL0), mode="r+")
    array[t, k0:k0 + core.shape[0], y0:y0 + core.shape[1], x0:x0 + core.shape[2]] = core
    marker = pathlib.Path(request["output"]) / PROGRESS_FOLDER / task["name"]
    marker.write_text("done\n")
    return task["name"]


# --------------------------------------------------------------------------
# The graph.
# --------------------------------------------------------------------------


def _tiles(size, tile, halo):
    """(core start, core stop, read start, read stop) along one axis."""
    return [(start, min(start + tile, size), max(start - halo, 0), min(start + tile + halo, size))
            for start in range(0, size, tile)]


def _fingerprint(request):
    keys = ("source", "shape", "input_planes", "input_z", "output_z", "times", "pixel_um", "tile", "halo",
            "planes_per_task", "normalize", "precision", "model")
    text = json.dumps({key: request[key] for key in keys}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _scheduler(scheduler):
    """("threads" | "local" | "address" | "client", value) of a scheduler
    argument, or a ValueError / ImportError saying what is accepted."""
    if scheduler is None or scheduler == "threads":
        return "threads", None
    try:
        from dask.distributed import Client
    except ImportError:
        raise ImportError("a cluster scheduler needs dask.distributed: pip install 'keras-rmz[distributed]'") from None
    if isinstance(scheduler, Client):
        return "client", scheduler
    text = str(scheduler)
    if text.startswith("local:"):
        workers = text.split(":", 1)[1]
        if not workers.isdigit() or int(workers) < 1:
            raise ValueError(f"scheduler 'local:N' takes N >= 1 worker processes; got {scheduler!r}")
        return "local", int(workers)
    if "://" in text:
        return "address", text
    raise ValueError(f"scheduler must be None or 'threads', 'local:N' (N worker processes), a scheduler address "
                     f"such as 'tcp://host:8786', or a dask.distributed Client; got {scheduler!r}")


@contextlib.contextmanager
def scheduler_client(scheduler):
    """Yields the ``dask.distributed.Client`` that ``scheduler`` names (None
    for Dask's local threads), closing what it started.

    ``scheduler``: None or "threads" (local threads), "local:N" (a
    ``LocalCluster`` of N single-threaded worker processes started here),
    an address ("tcp://host:8786") or a ``Client``.
    """
    kind, value = _scheduler(scheduler)
    if kind == "threads":
        yield None
    elif kind == "client":
        yield value
    elif kind == "local":
        from dask.distributed import Client, LocalCluster

        with LocalCluster(n_workers=value, threads_per_worker=1, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            yield client
    else:
        from dask.distributed import Client

        with Client(value) as client:
            yield client


def reconstruct_timelapse(
    model,
    source,
    input_planes,
    output_z,
    output,
    *,
    times=None,
    channel=None,
    scheduler=None,
    tile=DEFAULT_TILE,
    halo=DEFAULT_HALO,
    planes_per_task=DEFAULT_PLANES_PER_TASK,
    normalize=True,
    precision="float32",
    batch_size="auto",
    extrapolate=False,
    overwrite=False,
    verbose=True,
):
    """Reconstructs every time point of a time-lapse with Dask, into an
    OME-Zarr store (see the module).

    Args:
        model: a preset name, folder or ``hf://`` handle (loaded once per
            worker), or a model object (local threads scheduler only).
        source: a ``TimeLapse`` (numpy or Dask data), or the path of a
            time-lapse file (read lazily from OME-Zarr).
        input_planes: plane indices of the M inputs, the same at every time
            point.
        output_z: (K,) z (µm) of the planes to infer.
        output: the ``.zarr`` store to write (axes ``tzyx``).
        times: time points of ``source`` (indices, a range, "A:B" with B
            included; default all).
        channel: the channel of a multi-channel file.
        scheduler: None (Dask's local threads), "local:N", an address or a
            ``Client`` (`scheduler_client`).
        tile: output pixels per tile side (the store's chunks).
        halo: pixels read around each tile; at least the network's
            receptive field for results equal to whole planes.
        planes_per_task: output planes per task.
        normalize: the model's normalization from each time point's input
            planes (True), or the intensities as they are (False).
        precision, batch_size, extrapolate: as in ``reconstruct_volume``
            (``extrapolate`` is checked once, here, before any task).
        overwrite: replace an existing store that is not an unfinished run
            of this same request (which is resumed).
        verbose: a progress bar over the tasks.

    Returns:
        ``pathlib.Path`` of the store.
    """
    from keras_rmz.io.omezarr import is_zarr, require_zarr
    from keras_rmz.io.timelapse import TimeLapse, read_timelapse

    require_zarr()
    import dask
    import dask.array as da
    import zarr

    output = pathlib.Path(output)
    if not is_zarr(output):
        raise ValueError(f"output must be an OME-Zarr store (a name ending in .zarr); got {str(output)!r}")
    if isinstance(source, TimeLapse):
        movie, source_name = source, source.source or "TimeLapse"
        if times is not None:
            raise ValueError("times= selects time points of a file; a TimeLapse is used whole")
    else:
        movie, source_name = read_timelapse(source, times=times, channel=channel), os.fspath(source)
    planes = [int(i) for i in input_planes]
    count, num_z, height, width = movie.data.shape
    if not planes or any(not 0 <= i < num_z for i in planes) or len(set(planes)) != len(planes):
        raise ValueError(f"input_planes must be distinct plane indices in 0..{num_z - 1}; got {list(input_planes)}")
    output_z = np.atleast_1d(np.asarray(output_z, np.float64))
    if output_z.ndim != 1 or not np.all(np.isfinite(output_z)):
        raise ValueError("output_z must be finite z positions (µm)")
    tile, halo = int(tile), int(halo)
    if tile < 32 or tile % 32 or halo < 0 or halo % 32:
        raise ValueError(f"tile must be a multiple of 32 (>= 32) and halo a multiple of 32 (>= 0), so that tiles stay "
                         f"on the pooling grid of the network; got tile={tile}, halo={halo}")
    if _scheduler(scheduler)[0] != "threads" and not isinstance(model, (str, os.PathLike)):
        raise ValueError("a model object runs on the local threads scheduler only; pass the preset's name or "
                         "folder so that each worker loads it once")
    handle = _register(model)
    input_z = movie.z[planes]

    # The preset's guards, once, before any task (as reconstruct_volume does).
    from keras_rmz import out_of_distribution as ood
    from keras_rmz.presets import read_preset_metadata

    if handle.startswith("object:"):
        metadata = getattr(model, "preset_metadata", None)
    else:
        metadata = read_preset_metadata(handle)
    if metadata:
        import warnings

        mismatches = ood.check_request(metadata, input_z=input_z, output_z=output_z, pixel_um=movie.pixel_um,
                                       stack_metadata=movie.metadata, extrapolate=extrapolate)
        if mismatches:
            warnings.warn(ood.warning_message(mismatches, handle), ood.OutOfDistributionWarning, stacklevel=2)

    request = {
        "source": source_name, "shape": list(movie.data.shape), "input_planes": planes,
        "input_z": [float(z) for z in input_z], "output_z": [float(z) for z in output_z],
        "times": movie.times, "pixel_um": movie.pixel_um, "tile": tile, "halo": halo,
        "planes_per_task": int(planes_per_task), "normalize": bool(normalize), "precision": precision,
        "model": handle if not handle.startswith("object:") else type(model).__name__,
        "batch_size": batch_size, "output": str(output.resolve()),
    }
    fingerprint = _fingerprint(request)
    progress = output / PROGRESS_FOLDER
    if output.exists():
        root = zarr.open_group(str(output), mode="r") if (output / "zarr.json").exists() else None
        previous = (root.attrs.asdict().get("keras_rmz_run") or {}) if root is not None else {}
        if not (progress.is_dir() and previous.get("fingerprint") == fingerprint):
            if not overwrite:
                raise FileExistsError(f"{output} exists (and is not an unfinished run of this request); pass "
                                      "overwrite=True (--overwrite) to replace it")
            shutil.rmtree(output)
    if not output.exists():
        root = zarr.open_group(str(output), mode="w")
        root.create_array(LEVEL0, shape=(count, output_z.size, height, width), dtype="float32",
                          chunks=(1, 1, min(tile, height), min(tile, width)), fill_value=np.nan,
                          dimension_names=("t", "z", "y", "x"))
        root.attrs["keras_rmz_run"] = {"fingerprint": fingerprint, "request": request}
        progress.mkdir()
    done = {p.name for p in progress.iterdir()}

    ys, xs = _tiles(height, tile, halo), _tiles(width, tile, halo)
    per_task = max(1, int(planes_per_task))
    tasks = []
    data = movie.data if isinstance(movie.data, da.Array) else da.from_array(movie.data, chunks=(1, 1, -1, -1))
    for t in range(count):
        inputs = data[t][planes]
        normalization = dask.delayed(_normalization_task, pure=True)(handle, inputs, normalize)
        for k0 in range(0, output_z.size, per_task):
            for cy0, cy1, ry0, ry1 in ys:
                for cx0, cx1, rx0, rx1 in xs:
                    name = f"t{t}_z{k0}_y{cy0}_x{cx0}"
                    if name in done:
                        continue
                    task = {"name": name, "output_z": [float(z) for z in output_z[k0:k0 + per_task]],
                            "core": (cy0 - ry0, cy1 - ry0, cx0 - rx0, cx1 - rx0), "at": (t, k0, cy0, cx0)}
                    tile_inputs = inputs[:, ry0:ry1, rx0:rx1]
                    tasks.append(dask.delayed(_tile_task, pure=False)(handle, tile_inputs, normalization, request,
                                                                      task))
    try:
        with scheduler_client(scheduler) as client:
            _run(tasks, client, verbose, total=len(tasks) + len(done), done=len(done))
    finally:
        if handle.startswith("object:"):
            with _MODELS_LOCK:
                _MODELS.pop(handle, None)  # the caller's model object is not kept alive here

    _finish(output, movie, output_z, request)
    return output


def _run(tasks, client, verbose, total, done):
    if not tasks:
        return
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=done, desc="reconstruct (tiles)", unit="task")
    try:
        if client is None:
            from dask.callbacks import Callback

            keys = {task.key for task in tasks}

            class _Progress(Callback):
                def _posttask(self, key, result, dsk, state, worker_id):
                    if bar is not None and key in keys:
                        bar.update()

            import dask

            with _Progress():
                dask.compute(*tasks, scheduler="threads")
        else:
            from dask.distributed import as_completed

            futures = client.compute(tasks)
            for future in as_completed(futures):
                future.result()  # raises the task's error here
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()


def _finish(output, movie, output_z, request):
    """The pyramid, the NGFF metadata and our attributes, once every chunk
    is written; then the progress folder goes."""
    import dask.array as da
    import zarr
    from ome_zarr.format import CurrentFormat
    from ome_zarr.writer import write_multiscales_metadata

    from keras_rmz.io.omezarr import ATTRIBUTE, pyramid_factors
    from keras_rmz.version import __version__

    root = zarr.open_group(str(output), mode="r+")
    level0 = da.from_zarr(root[LEVEL0])
    steps = np.diff(np.sort(output_z))
    dz = float(np.median(steps)) if steps.size else 1.0
    z0 = float(output_z.min())
    pixel = movie.pixel_um
    datasets = [{"path": LEVEL0, "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, dz, pixel, pixel]}, {"type": "translation", "translation": [0.0, z0, 0.0, 0.0]}]}]
    for level, factor in enumerate(pyramid_factors(level0.shape), 1):
        path = f"s{level}"
        if path in root:
            del root[path]
        # Whole blocks of factor x factor pixels, in chunks that hold whole blocks.
        height, width = (level0.shape[2] // factor) * factor, (level0.shape[3] // factor) * factor
        aligned = level0[:, :, :height, :width].rechunk((1, 1, 512, 512))
        coarse = da.coarsen(np.mean, aligned, {2: factor, 3: factor}).astype(np.float32)
        coarse = coarse.rechunk((1, 1, min(512, coarse.shape[2]), min(512, coarse.shape[3])))
        target = root.create_array(path, shape=coarse.shape, dtype="float32", chunks=coarse.chunksize,
                                   dimension_names=("t", "z", "y", "x"))
        da.store(coarse, target, lock=False)
        shift = pixel * (factor - 1) / 2
        datasets.append({"path": path, "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, dz, pixel * factor, pixel * factor]},
            {"type": "translation", "translation": [0.0, z0, shift, shift]}]})
    axes = [{"name": "t", "type": "time"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    write_multiscales_metadata(root, datasets, fmt=CurrentFormat(), axes=axes, name=output.name.split(".")[0])
    metadata = {**movie.metadata, "keras_rmz_version": __version__, "source_time_indices": movie.times,
                "reconstruction": {key: request[key] for key in
                                   ("source", "input_planes", "input_z", "model", "normalize", "precision", "tile",
                                    "halo")}}
    root.attrs[ATTRIBUTE] = {"z_um": [float(z) for z in output_z], "metadata": json.loads(json.dumps(metadata,
                                                                                                   default=str))}
    attributes = root.attrs.asdict()
    attributes.pop("keras_rmz_run", None)
    root.attrs.put(attributes)
    shutil.rmtree(output / PROGRESS_FOLDER, ignore_errors=True)
