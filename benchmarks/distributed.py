"""Chunked reconstruction of a time-lapse on a 2-worker Dask ``LocalCluster``
against the single-process ``reconstruct_stack``, in one run.

The time-lapse: ``--time-points`` (8) time points of a simulated bead
field, ``--size`` (1024) pixels square, 3 input planes 3 µm apart each; 21
output planes per time point between them. The preset's network
(``--preset``, default ``recurrent_mz_beads_m3``) runs in float32.

- Single process: ``reconstruct_stack`` per time point, whole planes (as
  ``keras-rmz reconstruct`` does for one stack), volumes kept in memory.
- Cluster: ``keras_rmz.distributed.reconstruct_timelapse`` on a
  ``LocalCluster`` of 2 single-threaded worker processes with a
  ``--memory-limit`` per worker, writing the OME-Zarr store chunk by chunk.
  Run a second time with ``--scale`` (2) times the time points, to show that
  a worker's peak memory follows the chunk size, not the data size.

Reported: throughput (output planes per second, wall time), each worker's
peak resident memory (``VmHWM``, the worker process's whole life), the
size of the data, and the difference between the cluster's volumes and the
single-process ones (max |difference| relative to the volumes' range, and
PSNR). Results: ``benchmarks/results/distributed[_TAG].{json,md,png}``.

    KERAS_BACKEND=jax python benchmarks/distributed.py
    KERAS_BACKEND=jax python benchmarks/distributed.py --quick     # tiny sizes, a smoke run
"""

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
# Run as a script, this folder is sys.path[0], where this file would shadow
# the `distributed` package that dask.distributed imports.
sys.path[:] = [p for p in sys.path if pathlib.Path(p or os.curdir).resolve() != HERE]


def _worker_peak_rss_mb():
    """The worker process's peak resident memory (Linux ``VmHWM``). Not
    ``getrusage``'s ``ru_maxrss``: Linux keeps it across ``exec``, so a
    spawned worker would report its parent's peak."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_timelapse(path, time_points, size, seed=0):
    """Bead fields (the simulator's beads sample, its widefield PSF) at 3
    planes 3 µm apart, drifting a few pixels per time point."""
    from keras_rmz.io import TimeLapse, write_timelapse
    from keras_rmz.simulate import simulate_stack

    stack = simulate_stack("beads", shape=(61, size, size), seed=seed)  # z 0..6 µm, 0.1 µm steps
    planes = stack.data[[0, 30, 60]].astype(np.float32)
    frames = np.stack([np.roll(planes, 3 * t, axis=2) for t in range(time_points)])
    write_timelapse(path, TimeLapse(frames, stack.z[[0, 30, 60]], stack.pixel_um, list(range(time_points))))
    return frames.nbytes


def single_process(preset, movie_path, output_z):
    from keras_rmz.inference import reconstruct_stack
    from keras_rmz.io import read_stack
    from keras_rmz.io.timelapse import count_time_points
    from keras_rmz.presets import load_preset

    model = load_preset(preset)
    volumes = []
    start = time.perf_counter()
    for t in range(count_time_points(movie_path)):
        stack = read_stack(movie_path, time=t)
        volumes.append(reconstruct_stack(model, stack, [0, 1, 2], output_z, verbose=False,
                                         precision="float32").data)
    return np.stack(volumes), time.perf_counter() - start


def cluster(preset, movie_path, output_z, output, memory_limit, tile, halo, workers=2):
    from dask.distributed import Client, LocalCluster

    from keras_rmz.distributed import reconstruct_timelapse

    import dask

    # The limit is enforced (a worker above 95 % of it is restarted), but
    # workers neither pause nor spill: a worker whose Keras backend alone
    # takes most of a low limit would otherwise pause for good.
    settings = {"distributed.worker.memory.pause": False, "distributed.worker.memory.spill": False,
                "distributed.worker.memory.target": False}
    with dask.config.set(settings), LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=memory_limit,
                                                 dashboard_address=None) as local, Client(local) as client:
        client.run(lambda: None)  # workers up before the clock starts
        start = time.perf_counter()
        reconstruct_timelapse(preset, movie_path, [0, 1, 2], output_z, output, scheduler=client, tile=tile,
                              halo=halo, precision="float32", verbose=False)
        seconds = time.perf_counter() - start
        peaks = client.run(_worker_peak_rss_mb)
    return seconds, sorted(peaks.values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="recurrent_mz_beads_m3")
    parser.add_argument("--time-points", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--planes", type=int, default=21)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--halo", type=int, default=64)
    parser.add_argument("--memory-limit", default="2GiB", help="per worker (Dask's memory_limit)")
    parser.add_argument("--scale", type=int, default=2, help="a second cluster run with this many times the data")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.time_points, args.size, args.planes, args.tile, args.halo = 2, 96, 5, 64, 32

    import keras

    work = pathlib.Path(tempfile.mkdtemp(prefix="rmz_distributed_"))
    try:
        output_z = np.linspace(0.0, 6.0, args.planes)
        movie = work / "movie.ome.zarr"
        input_bytes = make_timelapse(movie, args.time_points, args.size)
        planes_total = args.time_points * args.planes
        output_bytes = planes_total * args.size**2 * 4

        expected, single_seconds = single_process(args.preset, movie, output_z)
        cluster_seconds, peaks = cluster(args.preset, movie, output_z, work / "out.ome.zarr", args.memory_limit,
                                         args.tile, args.halo)
        from keras_rmz.io import read_timelapse

        result = np.asarray(read_timelapse(work / "out.ome.zarr").data)
        span = float(expected.max() - expected.min()) or 1.0
        difference = float(np.abs(result - expected).max())
        mse = float(np.mean((result.astype(np.float64) - expected) ** 2))
        psnr = float("inf") if mse == 0 else 10 * np.log10(span**2 / mse)
        del result, expected

        scaled = None
        if args.scale > 1:
            big = work / "movie_big.ome.zarr"
            big_input = make_timelapse(big, args.time_points * args.scale, args.size)
            seconds, big_peaks = cluster(args.preset, big, output_z, work / "out_big.ome.zarr", args.memory_limit,
                                         args.tile, args.halo)
            scaled = {"time_points": args.time_points * args.scale, "seconds": seconds,
                      "planes_per_second": args.time_points * args.scale * args.planes / seconds,
                      "worker_peak_rss_mb": big_peaks,
                      "data_mb": (big_input + args.time_points * args.scale * args.planes * args.size**2 * 4) / 2**20}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    record = {
        "backend": keras.backend.backend(), "preset": args.preset, "time_points": args.time_points,
        "size": args.size, "output_planes": args.planes, "tile": args.tile, "halo": args.halo,
        "memory_limit_per_worker": args.memory_limit, "cpus": os.cpu_count(),
        "data_mb": (input_bytes + output_bytes) / 2**20,
        "single_process": {"seconds": single_seconds, "planes_per_second": planes_total / single_seconds},
        "cluster_2_workers": {"seconds": cluster_seconds, "planes_per_second": planes_total / cluster_seconds,
                              "worker_peak_rss_mb": peaks},
        "cluster_scaled": scaled,
        "max_abs_difference_relative_to_range": difference / span, "psnr_cluster_vs_single_db": psnr,
        "python": sys.version.split()[0], "keras": keras.__version__,
    }
    lines = [
        f"{args.time_points} time points x {args.planes} output planes of {args.size}² px from 3 inputs, preset "
        f"`{args.preset}`, {record['backend']}, float32, {os.cpu_count()} CPUs; data (inputs + volumes) "
        f"{record['data_mb']:.0f} MB; tile {args.tile} px + halo {args.halo} px",
        "",
        "| run | wall | planes/s | peak memory per worker |",
        "| --- | ---: | ---: | --- |",
        f"| single process, `reconstruct_stack` per time point | {single_seconds:.1f} s | "
        f"{planes_total / single_seconds:.2f} | – |",
        f"| LocalCluster, 2 workers, memory limit {args.memory_limit} each | {cluster_seconds:.1f} s | "
        f"{planes_total / cluster_seconds:.2f} | " + ", ".join(f"{p:.0f} MB" for p in peaks) + " |",
    ]
    if scaled:
        lines.append(f"| the same, {scaled['time_points']} time points ({scaled['data_mb']:.0f} MB of data) | "
                     f"{scaled['seconds']:.1f} s | {scaled['planes_per_second']:.2f} | "
                     + ", ".join(f"{p:.0f} MB" for p in scaled["worker_peak_rss_mb"]) + " |")
    lines += ["", f"cluster vs single process: max |difference| = {record['max_abs_difference_relative_to_range']:.2e}"
              f" of the volumes' range, PSNR {psnr:.1f} dB"]
    text = "\n".join(lines)
    print(text)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "distributed" + (f"_{args.tag}" if args.tag else "") + ("_quick" if args.quick else "")
    (out / f"{stem}.md").write_text(text + "\n")
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    _figure(record, out / f"{stem}.png")
    return 0


def _figure(record, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    runs = ["single process", "2 workers"]
    rates = [record["single_process"]["planes_per_second"], record["cluster_2_workers"]["planes_per_second"]]
    left.bar(runs, rates, color=["0.6", "tab:blue"])
    left.set_ylabel("output planes per second")
    left.set_title("throughput")
    sizes = [record["data_mb"]]
    peaks = [max(record["cluster_2_workers"]["worker_peak_rss_mb"])]
    if record["cluster_scaled"]:
        sizes.append(record["cluster_scaled"]["data_mb"])
        peaks.append(max(record["cluster_scaled"]["worker_peak_rss_mb"]))
    right.plot(sizes, peaks, "o-", label="largest worker peak")
    right.plot(sizes, sizes, "--", color="0.6", label="data size")
    right.set_xlabel("data (inputs + volumes), MB")
    right.set_ylabel("MB")
    right.set_title("peak memory per worker")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
