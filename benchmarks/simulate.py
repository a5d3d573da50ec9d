"""Time ``simulate_stack`` on the paper's bead stack (101 x 256 x 256, wide-field).

Measures a cold call (empty PSF caches: radial profile, transfer function and
imaging) and warm calls (PSF cached, as for every stack after the first in
``keras-rmz simulate --count N``), wall clock and CPU time, and saves

    benchmarks/results/simulate_<sample>_<modality>.json
    benchmarks/results/simulate_<sample>_<modality>_xz_mip.png

(the stack's x-z maximum-intensity projection, in µm). Run:

    python benchmarks/simulate.py [--sample beads] [--modality widefield] [--repeats 3]

The machine's load average is recorded: on a shared machine it changes
wall-clock times a lot; CPU time changes less.
"""

import argparse
import json
import os
import pathlib
import platform
import time

import numpy as np
import scipy

from keras_rmz.simulate import psf, simulate_stack
from keras_rmz.version import __version__

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="beads", choices=("beads", "nuclei"))
    parser.add_argument("--modality", default="widefield", choices=("widefield", "confocal"))
    parser.add_argument("--shape", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=3, help="warm calls (default 3)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    psf.clear_cache()
    run = lambda seed: simulate_stack(args.sample, args.modality, shape=args.shape, seed=seed)  # noqa: E731
    stack, cold_wall, cold_cpu = _timed(lambda: run(0))
    warm = [_timed(lambda seed=seed: run(seed))[1:] for seed in range(1, args.repeats + 1)]
    warm_wall = [w for w, _ in warm]
    warm_cpu = [c for _, c in warm]

    result = {
        "benchmark": "simulate_stack",
        "sample": args.sample,
        "modality": args.modality,
        "shape": list(stack.shape),
        "z_step_um": stack.metadata["z_step_um"],
        "pixel_um": stack.pixel_um,
        "num_objects": stack.metadata["num_objects"],
        "cold_wall_s": round(cold_wall, 3),
        "cold_cpu_s": round(cold_cpu, 3),
        "warm_wall_s": [round(w, 3) for w in warm_wall],
        "warm_wall_median_s": round(float(np.median(warm_wall)), 3),
        "warm_cpu_median_s": round(float(np.median(warm_cpu)), 3),
        "target_s": 10.0,
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "keras_rmz": __version__,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"simulate_{args.sample}_{args.modality}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = stack.data.astype(np.float32)
    mip = data.max(axis=1)  # (Z, X): x-z maximum-intensity projection
    z_extent = stack.z[-1] + stack.metadata["z_step_um"]
    x_extent = data.shape[2] * stack.pixel_um
    fig, ax = plt.subplots(figsize=(8, 8 * z_extent / x_extent + 1.2))
    image = ax.imshow(mip, cmap="magma", extent=(0, x_extent, z_extent, 0), interpolation="nearest")
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("z (µm)")
    ax.set_title(f"{args.sample}, {args.modality}: x-z MIP of {data.shape[0]}x{data.shape[1]}x{data.shape[2]} (counts)")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(args.out / f"{stem}_xz_mip.png", dpi=120)
    plt.close(fig)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
