"""The bead demo: a simulated bead stack reconstructed from a few planes and
scored against the truth and linear interpolation (``keras-rmz demo``)."""

import csv
import io
import pathlib
import time

import numpy as np

from keras_rmz import plot
from keras_rmz.data import compute_normalization
from keras_rmz.evaluation.baselines import linear_interpolation
from keras_rmz.evaluation.scoring import score_planes
from keras_rmz.io import Stack, nearest_planes, write_stack
from keras_rmz.io.atomic import write_text
from keras_rmz.simulate import simulate_stack
from keras_rmz.version import __version__

DEFAULT_SHAPE = (101, 256, 256)
DEFAULT_Z_STEP_UM = 0.1
DEFAULT_NUM_INPUTS = 3
DEFAULT_INPUT_SPACING_UM = 3.0
DEFAULT_PIXEL_UM = 0.1
METHOD_INTERPOLATION = "linear interpolation"
CSV_COLUMNS = (
    "z_um",
    "input_plane",
    "between_inputs",
    "model_psnr_noise_free_db",
    "model_psnr_measured_db",
    "model_ssim_noise_free",
    "model_ssim_measured",
    "interpolation_psnr_noise_free_db",
    "interpolation_psnr_measured_db",
    "interpolation_ssim_noise_free",
    "interpolation_ssim_measured",
)


def default_input_z(z, num_inputs, spacing_um):
    """``num_inputs`` positions ``spacing_um`` apart, centred in ``z`` and on
    its planes."""
    extent = z[-1] - z[0]
    span = (num_inputs - 1) * spacing_um
    if span > extent + 1e-9:
        raise ValueError(
            f"{num_inputs} input planes {spacing_um:g} µm apart span {span:g} µm, more than the stack's "
            f"{extent:g} µm; use a taller --shape or a larger --z-step"
        )
    start = z[0] + (extent - span) / 2
    wanted = start + spacing_um * np.arange(num_inputs)
    return z[np.argmin(np.abs(z[None, :] - wanted[:, None]), axis=1)]


def _write_csv(path, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()})
    write_text(path, buffer.getvalue())


def bead_demo(
    model,
    out,
    *,
    preset_metadata=None,
    preset="",
    shape=DEFAULT_SHAPE,
    z_step_um=DEFAULT_Z_STEP_UM,
    input_z=None,
    seed=0,
    batch_size="auto",
    precision="auto",
    verbose=True,
):
    """Simulates a bead stack, reconstructs it from M planes with ``model``
    and scores it against the truth and linear interpolation
    (``keras-rmz demo``).

    Args:
        model: a reconstruction model (e.g. a preset's).
        out: the folder for ``reconstruction.ome.tif``, ``measured.ome.tif``,
            ``metrics.csv``, ``mip.png`` and ``psnr_vs_z.png``.
        preset_metadata: the preset's metadata: M, Δz and the pixel size
            come from it (else 3, 3 µm, 0.1 µm).
        preset: the preset's name, recorded in the output's metadata.
        shape: (Z, Y, X) of the simulated stack.
        z_step_um: its axial step.
        input_z: z (µm) of the input planes; default M planes Δz apart,
            centred in the stack.
        seed: seed of the simulated beads.
        batch_size, precision: passed to ``reconstruct``.
        verbose: progress lines and bar.

    Returns:
        list of str: the score table (mean PSNR and SSIM over the planes
        between the inputs).

    Raises:
        ValueError: an ``out`` that is a file, fewer than 2 planes, inputs
            off the stack or too far apart for it, no plane between them.
    """
    started = time.monotonic()
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    shape = tuple(shape)
    z_step = z_step_um
    if shape[0] < 2:
        raise ValueError(f"--shape needs at least 2 planes (Z >= 2); got {shape[0]}")
    preset_metadata = preset_metadata or {}
    num_inputs = int(preset_metadata.get("num_inputs") or DEFAULT_NUM_INPUTS)
    spacing = float(preset_metadata.get("input_spacing_um") or DEFAULT_INPUT_SPACING_UM)
    pixel_um = float(preset_metadata.get("pixel_um") or DEFAULT_PIXEL_UM)
    z = np.arange(shape[0]) * z_step
    if input_z is not None:
        input_z = np.asarray(input_z, np.float64)
        index, gap = nearest_planes(z, input_z, 0.5 * z_step * (1 + 1e-9))
        if np.any(index < 0):
            raise ValueError(
                f"--input-z must lie on the simulated stack, z = 0..{z[-1]:g} µm; got {input_z[index < 0][0]:g}"
            )
        if len(set(index.tolist())) != len(index):
            raise ValueError("--input-z positions must pick distinct planes")
        input_z = z[index]
    else:
        input_z = default_input_z(z, num_inputs, spacing)
    input_index = [int(np.argmin(np.abs(z - value))) for value in input_z]
    if hasattr(model, "check_num_inputs"):
        model.check_num_inputs(len(input_index))

    say = (lambda text: print(text, flush=True)) if verbose else (lambda text: None)
    say(
        f"keras-rmz demo: simulating {shape[0]}x{shape[1]}x{shape[2]} beads ({z_step:g} µm steps, {pixel_um:g} µm "
        f"pixels, seed {seed}); inputs at z = {', '.join(f'{v:g}' for v in input_z)} µm"
    )
    measured = simulate_stack("beads", "widefield", shape=shape, z_step_um=z_step, pixel_um=pixel_um, seed=seed)
    noise_free = simulate_stack(
        "beads", "widefield", shape=shape, z_step_um=z_step, pixel_um=pixel_um, seed=seed, noise=False
    )
    images = measured.data[input_index]

    from keras_rmz.backend.precision import resolve_precision

    say(f"keras-rmz demo: reconstructing {shape[0]} planes with {type(model).__name__} ({preset})")
    volume = model.reconstruct(
        images, input_z, z, batch_size=batch_size, verbose="auto" if verbose else False, pixel_um=pixel_um,
        precision=precision,
    )

    # Scores in the units of a training target: the paper's normalization
    # of the noise-free volume (background 0, foreground ~1), data range 1.
    # The same linear map for every volume, so it ranks methods as raw
    # counts would.
    norm = compute_normalization(noise_free)
    normalized = {
        "model": norm.apply(volume.astype(np.float32)),
        "interpolation": norm.apply(linear_interpolation(images.astype(np.float32), input_z, z)),
    }
    truths = {"noise_free": norm.apply(noise_free.data.astype(np.float32)),
              "measured": norm.apply(measured.data.astype(np.float32))}
    is_input = np.zeros(shape[0], bool)
    is_input[input_index] = True
    between = (z > input_z.min()) & (z < input_z.max()) & ~is_input
    planes = np.flatnonzero(between)
    if planes.size == 0:
        raise ValueError("no planes lie between the input planes; give inputs further apart (--input-z)")
    scores = {}
    for method, recon in normalized.items():
        for truth_name, truth in truths.items():
            # Normalized intensities: data range 1 (the paper's convention).
            per_plane = score_planes(truth, recon, data_range=1.0)
            scores[method, truth_name] = (per_plane["psnr_db"], per_plane["ssim"])

    # --- Report ---
    label = "Recurrent-MZ" if type(model).__name__ == "RecurrentMZ" else type(model).__name__
    lines = [
        f"planes between the inputs: {planes.size} (z = {z[planes[0]]:g}..{z[planes[-1]]:g} µm), mean per plane",
        f"{'':24s}{'PSNR noise-free':>17s}{'PSNR measured':>15s}{'SSIM noise-free':>17s}{'SSIM measured':>15s}",
    ]
    for method, name in (("model", label), ("interpolation", METHOD_INTERPOLATION)):
        p_free, s_free = scores[method, "noise_free"]
        p_meas, s_meas = scores[method, "measured"]
        lines.append(
            f"{name:24s}{np.mean(p_free[planes]):>14.2f} dB{np.mean(p_meas[planes]):>12.2f} dB"
            f"{np.mean(s_free[planes]):>17.3f}{np.mean(s_meas[planes]):>15.3f}"
        )

    out.mkdir(parents=True, exist_ok=True)
    recon_path = out / "reconstruction.ome.tif"
    write_stack(
        recon_path,
        Stack(
            volume.astype(np.float32),
            z,
            pixel_um,
            {
                "keras_rmz_version": __version__,
                "reconstruction": {
                    "demo": True,
                    "preset": str(preset),
                    "model": type(model).__name__,
                    "input_planes": input_index,
                    "input_z_um": [float(v) for v in input_z],
                    "precision": resolve_precision(precision),
                    "source": "measured.ome.tif",
                },
            },
        ),
    )
    write_stack(out / "measured.ome.tif", measured)
    rows = []
    for k in range(shape[0]):
        row = {"z_um": float(z[k]), "input_plane": int(is_input[k]), "between_inputs": int(between[k])}
        for method, prefix in (("model", "model"), ("interpolation", "interpolation")):
            for truth_name in ("noise_free", "measured"):
                p, s = scores[method, truth_name]
                row[f"{prefix}_psnr_{truth_name}_db"] = float(p[k])
                row[f"{prefix}_ssim_{truth_name}"] = float(s[k])
        rows.append(row)
    _write_csv(out / "metrics.csv", rows)

    nearest = np.argmin(np.abs(z[:, None] - input_z[None, :]), axis=1)
    plot.mip_side_views(
        {
            "inputs (nearest input plane)": truths["measured"][input_index][nearest],
            METHOD_INTERPOLATION: normalized["interpolation"],
            label: normalized["model"],
            "truth (noise-free)": truths["noise_free"],
        },
        z,
        pixel_um,
        out / "mip.png",
        input_z=input_z,
        normalize="shared",
        intensity_label="normalized intensity (background 0, beads ~1)",
    )
    plot.metric_vs_z(
        z,
        {
            f"{label} vs noise-free": scores["model", "noise_free"][0],
            f"{label} vs measured": scores["model", "measured"][0],
            f"{METHOD_INTERPOLATION} vs noise-free": scores["interpolation", "noise_free"][0],
            f"{METHOD_INTERPOLATION} vs measured": scores["interpolation", "measured"][0],
        },
        input_z=input_z,
        metric="PSNR (dB, normalized, range 1)",
        path=out / "psnr_vs_z.png",
        title=f"{label} from {len(input_index)} planes vs linear interpolation",
    )
    say(
        f"keras-rmz demo: wrote {recon_path}, {out / 'measured.ome.tif'}, {out / 'metrics.csv'}, "
        f"{out / 'mip.png'}, {out / 'psnr_vs_z.png'} in {time.monotonic() - started:.0f} s"
    )
    return lines
