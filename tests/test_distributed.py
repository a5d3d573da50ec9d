"""Chunked and distributed reconstruction (keras_rmz.distributed): the Dask
graph's volumes equal the in-memory ``reconstruct_stack`` on Dask's threads
and on a real ``dask.distributed.LocalCluster`` of 2 worker processes; the
model is loaded once per worker; an interrupted run is resumed where it
stopped, redoing only what has no marker."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("ome_zarr")

from keras_rmz import distributed  # noqa: E402
from keras_rmz.inference import reconstruct_stack  # noqa: E402
from keras_rmz.io import TimeLapse, read_stack, read_timelapse, write_timelapse  # noqa: E402
from keras_rmz.models import RecurrentMZ  # noqa: E402
from keras_rmz.presets import load_preset, save_preset  # noqa: E402

INPUTS, OUTPUT_Z = [0, 4], [0.5, 1.0, 1.5]
# 2 time points x 2 blocks of planes x 2 x 2 tiles = 16 tasks.
GRID = {"tile": 64, "halo": 32, "planes_per_task": 2}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    save_preset(RecurrentMZ(base_filters=4, depth=1), folder / "tiny", metadata={"num_inputs": 2})
    rng = np.random.default_rng(0)
    data = (100 + 50 * rng.random((2, 5, 100, 90))).astype(np.float32)
    data[:, :, 30:50, 40:60] += 400  # a bright object crossing tile borders
    write_timelapse(folder / "movie.ome.zarr", TimeLapse(data, np.arange(5) * 0.5, 0.1, [0, 1], {"modality": "widefield"}))
    return folder


@pytest.fixture(scope="module")
def expected(workdir):
    """Whole-plane, in-memory reconstructions of each time point."""
    model = load_preset(workdir / "tiny")
    return np.stack([reconstruct_stack(model, read_stack(workdir / "movie.ome.zarr", time=t), INPUTS, OUTPUT_Z,
                                       verbose=False).data for t in range(2)])


def _check(output, expected):
    result = read_timelapse(output)
    assert result.data.shape == expected.shape
    np.testing.assert_allclose(np.asarray(result.data), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(result.z, OUTPUT_Z)
    assert result.pixel_um == pytest.approx(0.1)
    assert result.metadata["reconstruction"]["input_planes"] == INPUTS
    assert result.metadata["modality"] == "widefield"
    assert not (pathlib.Path(output) / distributed.PROGRESS_FOLDER).exists()


def test_threads_equal_whole_planes(workdir, expected, tmp_path):
    output = distributed.reconstruct_timelapse(workdir / "tiny", workdir / "movie.ome.zarr", INPUTS, OUTPUT_Z,
                                               tmp_path / "out.ome.zarr", verbose=False, **GRID)
    _check(output, expected)
    # Viewers see an NGFF image with a pyramid in micrometers.
    import zarr

    ngff = zarr.open_group(str(output), mode="r").attrs.asdict()["ome"]["multiscales"][0]
    assert [a["name"] for a in ngff["axes"]] == ["t", "z", "y", "x"]
    assert ngff["axes"][3]["unit"] == "micrometer"
    assert len(ngff["datasets"]) == 1  # 100 x 90 px: no level keeps 64 px per side once halved
    # An existing store is not replaced without overwrite.
    with pytest.raises(FileExistsError, match="overwrite"):
        distributed.reconstruct_timelapse(workdir / "tiny", workdir / "movie.ome.zarr", INPUTS, OUTPUT_Z, output,
                                          verbose=False, **GRID)


@pytest.mark.large  # starts 2 worker processes that import Keras (~30 s)
def test_local_cluster_of_two_workers_equals_whole_planes_and_loads_the_model_once_per_worker(
        workdir, expected, tmp_path):
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        # By the scheduler's address, as --scheduler tcp://host:8786 reaches a cluster.
        output = distributed.reconstruct_timelapse(str(workdir / "tiny"), workdir / "movie.ome.zarr", INPUTS,
                                                   OUTPUT_Z, tmp_path / "out.ome.zarr",
                                                   scheduler=cluster.scheduler_address, verbose=False, **GRID)
        loads = client.run(lambda: __import__("keras_rmz.distributed").distributed.LOADS["count"])
    _check(output, expected)
    assert len(loads) == 2 and set(loads.values()) <= {0, 1} and sum(loads.values()) >= 1, loads


def test_a_failed_run_resumes_and_redoes_only_unfinished_tasks(workdir, expected, tmp_path, monkeypatch):
    output = tmp_path / "out.ome.zarr"
    real, calls = distributed._tile_task, []

    def failing(*args):
        calls.append(args[-1]["name"])
        if len(calls) == 5:
            raise RuntimeError("worker died")
        return real(*args)

    monkeypatch.setattr(distributed, "_tile_task", failing)
    with pytest.raises(RuntimeError, match="worker died"):
        distributed.reconstruct_timelapse(workdir / "tiny", workdir / "movie.ome.zarr", INPUTS, OUTPUT_Z, output,
                                          verbose=False, **GRID)
    # Tasks already running on other threads when one failed finish on
    # their own: wait until no marker appears for a second.
    finished, stable_since = None, time.monotonic()
    while time.monotonic() - stable_since < 1.0:
        now = {p.name for p in (output / distributed.PROGRESS_FOLDER).iterdir()}
        if now != finished:
            finished, stable_since = now, time.monotonic()
        time.sleep(0.05)
    assert 1 <= len(finished) < 16

    calls.clear()
    monkeypatch.setattr(distributed, "_tile_task", lambda *args: calls.append(args[-1]["name"]) or real(*args))
    distributed.reconstruct_timelapse(workdir / "tiny", workdir / "movie.ome.zarr", INPUTS, OUTPUT_Z, output,
                                      verbose=False, **GRID)
    assert len(calls) == 16 - len(finished) and not set(calls) & finished
    _check(output, expected)


@pytest.mark.large  # a killed process and a resumed run (~20 s)
def test_a_killed_run_is_resumed_by_running_it_again(workdir, expected, tmp_path, monkeypatch):
    """The whole process is killed (SIGKILL, no clean-up) while it writes;
    running the same request again finishes it and redoes only the tasks
    without a marker (a chunk written halfway has none)."""
    output = tmp_path / "out.ome.zarr"
    script = textwrap.dedent(f"""
        import time
        from keras_rmz import distributed
        real = distributed._tile_task
        def slow(*args):
            time.sleep(0.5)
            return real(*args)
        distributed._tile_task = slow
        distributed.reconstruct_timelapse({str(workdir / "tiny")!r}, {str(workdir / "movie.ome.zarr")!r}, {INPUTS},
                                          {OUTPUT_Z}, {str(output)!r}, verbose=False, tile=64, halo=32,
                                          planes_per_task=2)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = output / distributed.PROGRESS_FOLDER
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if progress.is_dir() and len(list(progress.iterdir())) >= 3:
            break
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p.name for p in progress.iterdir()}
    assert 3 <= len(finished) < 16

    calls = []
    real = distributed._tile_task
    monkeypatch.setattr(distributed, "_tile_task", lambda *args: calls.append(args[-1]["name"]) or real(*args))
    distributed.reconstruct_timelapse(workdir / "tiny", workdir / "movie.ome.zarr", INPUTS, OUTPUT_Z, output,
                                      verbose=False, **GRID)
    assert len(calls) == 16 - len(finished) and not set(calls) & finished
    _check(output, expected)


def test_bad_requests_are_refused_before_any_task(workdir, tmp_path):
    source = workdir / "movie.ome.zarr"
    with pytest.raises(ValueError, match="must be an OME-Zarr store"):
        distributed.reconstruct_timelapse(workdir / "tiny", source, INPUTS, OUTPUT_Z, tmp_path / "o.ome.tif")
    with pytest.raises(ValueError, match="distinct plane indices in 0..4"):
        distributed.reconstruct_timelapse(workdir / "tiny", source, [0, 9], OUTPUT_Z, tmp_path / "o.zarr")
    with pytest.raises(ValueError, match="multiple of 32"):
        distributed.reconstruct_timelapse(workdir / "tiny", source, INPUTS, OUTPUT_Z, tmp_path / "o.zarr", tile=50)
    with pytest.raises(ValueError, match=r"time points must lie in 0..1"):
        distributed.reconstruct_timelapse(workdir / "tiny", source, INPUTS, OUTPUT_Z, tmp_path / "o.zarr", times="0:5")
    with pytest.raises(ValueError, match="'local:N'"):
        distributed.reconstruct_timelapse(workdir / "tiny", source, INPUTS, OUTPUT_Z, tmp_path / "o.zarr",
                                          scheduler="cluster")
    assert not list(tmp_path.iterdir())


def test_a_model_object_runs_on_threads_only(workdir, tmp_path):
    pytest.importorskip("distributed")
    model = load_preset(workdir / "tiny")
    with pytest.raises(ValueError, match="model object runs on the local threads scheduler only"):
        distributed.reconstruct_timelapse(model, workdir / "movie.ome.zarr", INPUTS, OUTPUT_Z, tmp_path / "o.zarr",
                                          scheduler="local:1", verbose=False, **GRID)
