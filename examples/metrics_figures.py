"""Makes the figures and numbers of docs/metrics.md from a synthetic bead volume.

A thin layer of beads (as in the paper's dried bead-agar samples) is imaged
through a Gaussian-beam approximation of a wide-field PSF (0.44 µm lateral
FWHM in focus, widening with defocus) over 10 µm in 0.1 µm steps, like the
paper's 101-plane bead stacks. Three planes (z = 3, 6, 9 µm) are the inputs.
The "models" are the baselines every trained preset is measured against —
the nearest input plane and linear interpolation between inputs — plus a
deliberately order-sensitive toy to show what the permutation test detects.
No network is trained here: the point is what each metric and figure reports.

Run (from the repository root, a few seconds, no GPU, no network):

    python examples/metrics_figures.py            # writes docs/images/*.png
    python examples/metrics_figures.py --out /tmp/figures
"""

import argparse
import pathlib

import numpy as np

from keras_rmz import evaluation
from keras_rmz import metrics
from keras_rmz import plot

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def bead_volume(
    shape=(101, 256, 256),
    z_step_um=0.1,
    pixel_um=0.1,
    num_beads=100,
    min_spacing_um=1.8,
    layer_z_um=5.0,
    layer_std_um=0.15,
    fwhm_um=0.44,
    rayleigh_um=0.6,
    noise_std=0.01,
    seed=0,
):
    """Beads in a thin layer, each a Gaussian beam: σ(z) = σ0·sqrt(1 + (Δz/zR)²),
    peak ∝ σ0²/σ(z)² (the energy of each plane is conserved)."""
    rng = np.random.default_rng(seed)
    num_z, height, width = shape
    z_um = np.round(np.arange(num_z) * z_step_um, 6)
    sigma0_px = fwhm_um / FWHM_PER_SIGMA / pixel_um
    # Lateral positions drawn one by one, redrawn when closer than
    # min_spacing_um to an earlier bead: mostly isolated beads, as after the
    # paper's sonication, with a few close pairs left to be rejected.
    lateral = []
    while len(lateral) < num_beads:
        candidate = rng.uniform(5, [height - 5, width - 5])
        close = [np.hypot(*(candidate - p)) * pixel_um < min_spacing_um for p in lateral]
        if not any(close) or rng.random() < 0.05:
            lateral.append(candidate)
    centres = np.column_stack(
        [rng.normal(layer_z_um, layer_std_um, num_beads), np.array(lateral)]
    )
    brightness = rng.uniform(0.6, 1.0, num_beads)
    yy = np.arange(height, dtype=np.float64)
    xx = np.arange(width, dtype=np.float64)
    volume = np.zeros(shape)
    for (bz, by, bx), b in zip(centres, brightness):
        sigma = sigma0_px * np.sqrt(1.0 + ((z_um - bz) / rayleigh_um) ** 2)  # (Z,)
        peak = b * (sigma0_px / sigma) ** 2
        gy = np.exp(-((yy[None] - by) ** 2) / (2 * sigma[:, None] ** 2))  # (Z, Y)
        gx = np.exp(-((xx[None] - bx) ** 2) / (2 * sigma[:, None] ** 2))  # (Z, X)
        volume += peak[:, None, None] * gy[:, :, None] * gx[:, None, :]
    volume += rng.normal(0.0, noise_std, shape)
    return volume, z_um, pixel_um


class NearestPlane:
    """Baseline: each output plane is the nearest input plane."""

    def reconstruct(self, images, input_z, output_z, batch_size=8):
        images, input_z = np.asarray(images), np.asarray(input_z, dtype=float)
        nearest = np.argmin(np.abs(np.asarray(output_z)[:, None] - input_z[None]), axis=1)
        return images[nearest].astype(np.float64)


class LinearInterpolation:
    """Baseline: linear interpolation in z between the two bracketing inputs
    (the nearest input outside their span). Order-invariant."""

    def reconstruct(self, images, input_z, output_z, batch_size=8):
        images = np.asarray(images, dtype=np.float64)
        input_z = np.asarray(input_z, dtype=np.float64)
        z_sorted, first = np.unique(input_z, return_index=True)
        stack = images[first]
        out = np.empty((len(output_z),) + images.shape[1:])
        for k, z in enumerate(np.asarray(output_z, dtype=np.float64)):
            hi = int(np.clip(np.searchsorted(z_sorted, z), 1, len(z_sorted) - 1))
            if len(z_sorted) == 1:
                out[k] = stack[0]
                continue
            w = np.clip((z - z_sorted[hi - 1]) / (z_sorted[hi] - z_sorted[hi - 1]), 0, 1)
            out[k] = (1 - w) * stack[hi - 1] + w * stack[hi]
        return out


class LastInputBiased(LinearInterpolation):
    """Toy with an order bias: 70 % interpolation + 30 % the last image fed,
    a caricature of a recurrent model that over-trusts its latest input."""

    def reconstruct(self, images, input_z, output_z, batch_size=8):
        interp = super().reconstruct(images, input_z, output_z, batch_size)
        return 0.7 * interp + 0.3 * np.asarray(images, dtype=np.float64)[-1][None]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs")
    parser.add_argument("--dpi", type=int, default=80)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    dpi = args.dpi

    volume, z_um, pixel_um = bead_volume()
    input_planes = [30, 60, 90]  # z = 3, 6, 9 µm, the paper's Δz = 3 µm
    images, input_z = volume[input_planes], z_um[input_planes]
    models = {"nearest plane": NearestPlane(), "linear interpolation": LinearInterpolation()}
    recon = {name: m.reconstruct(images, input_z, z_um) for name, m in models.items()}

    # 1. MIP side views (Fig. 8b), lateral crop to keep the PNG small.
    crop = (slice(None), slice(0, 96), slice(0, 96))
    plot.mip_side_views(
        {"mechanical scan (101 planes)": volume[crop],
         **{f"{name} (M = 3)": v[crop] for name, v in recon.items()}},
        z_um, pixel_um, input_z=input_z, path=out / "metrics_mip_side_views.png", dpi=dpi,
        intensity_label="intensity (a.u.)",
    )

    # 2. Per-plane PSNR and SSIM, one data range for the whole stack (Fig. 4b).
    psnr = {name: metrics.per_plane("psnr", volume, v) for name, v in recon.items()}
    ssim = {name: metrics.per_plane("ssim", volume, v) for name, v in recon.items()}
    plot.metric_vs_z(z_um, psnr, input_z=input_z, metric="PSNR (dB)",
                     path=out / "metrics_psnr_vs_z.png", dpi=dpi)

    # 3. Bead FWHM at z = 5.1 µm and KL divergence (Fig. 3b).
    plane = int(np.argmin(np.abs(z_um - 5.1)))
    beads = {"mechanical scan": metrics.bead_fwhm(volume[plane], pixel_um)}
    for name, v in recon.items():
        beads[name] = metrics.bead_fwhm(v[plane], pixel_um)
    edges = metrics.histogram_edges(*(b.fwhm_um for b in beads.values()), bins=20)
    plot.fwhm_histograms(beads, bins=edges, reference="mechanical scan",
                         path=out / "metrics_fwhm_histograms.png", dpi=dpi)

    # 4. Permutations (Fig. 6e): invariant baseline vs order-sensitive toy.
    roi = (0, 96, 0, 96)
    permutation = evaluation.permutation_test(
        LastInputBiased(), images, input_z, z_um, volume, roi=roi
    )
    plot.permutation_plot(permutation, path=out / "metrics_permutation.png", dpi=dpi)
    invariant = evaluation.permutation_test(
        LinearInterpolation(), images, input_z, z_um, volume, roi=roi
    )

    # 5. DPM noise (Fig. 5b). Planes near inputs, where interpolation is good
    # and a wrong input position shows (between inputs it is poor anyway).
    dpm_planes = [33, 58]
    noise = evaluation.dpm_noise_test(
        LinearInterpolation(), images, input_z, z_um[dpm_planes], volume[dpm_planes],
        sigmas_um=(0.0, 0.25, 0.5, 1.0), repeats=50, seed=0,
    )
    plot.dpm_noise_plot(noise, path=out / "metrics_dpm_noise.png", dpi=dpi)

    # 6. Uniform vs non-uniform inputs (Fig. 4b).
    spacing = evaluation.nonuniform_spacing_test(
        LinearInterpolation(), volume, z_um, uniform_z=[3.0, 6.0, 9.0],
        nonuniform_z=[3.0, 4.8, 8.6],
    )
    plot.metric_vs_z(spacing.output_z, spacing.psnr, input_z=spacing.input_z,
                     path=out / "metrics_nonuniform_spacing.png", dpi=dpi)

    # 7. Repetitions (Fig. 7): numbers only.
    repetition = evaluation.repetition_test(
        LinearInterpolation(), images, input_z, z_um, volume, roi=roi
    )

    # Numbers quoted in docs/metrics.md.
    between = (z_um > 3.0) & (z_um < 9.0)
    print("| method | mean PSNR 3-9 µm (dB) | mean SSIM 3-9 µm | beads | mean FWHM (µm) | KL vs scan |")
    print("| --- | --- | --- | --- | --- | --- |")
    truth_fwhm = beads["mechanical scan"].fwhm_um
    print(f"| mechanical scan | - | - | {len(truth_fwhm)} | {truth_fwhm.mean():.4f} | 0 |")
    for name in recon:
        kl = metrics.kl_divergence(truth_fwhm, beads[name].fwhm_um, bins=edges)
        finite = np.isfinite(psnr[name]) & between
        print(f"| {name} | {psnr[name][finite].mean():.2f} | {ssim[name][between].mean():.3f} "
              f"| {len(beads[name])} | {beads[name].mean_fwhm_um:.4f} | {kl:.3f} |")
    print("rejected at z = 5.1 µm (scan):", beads["mechanical scan"].rejected)
    at = int(np.argmin(np.abs(z_um - 4.5)))
    print(f"permutation at z = 4.5 µm: toy mu {permutation.mu_rmse[at]:.4f} "
          f"sigma {permutation.sigma_rmse[at]:.4f} sorted {permutation.sorted_rmse[at]:.4f}; "
          f"linear sigma max {invariant.sigma_rmse.max():.2e}")
    for s, sigma in enumerate(noise.sigmas_um):
        med = np.median(noise.nrmse[s], axis=0)
        print(f"DPM noise sigma {sigma:g} µm: median NRMSE z=3.3 {med[0]:.4f}, z=5.8 {med[1]:.4f}")
    for label, values in spacing.psnr.items():
        finite = np.isfinite(values) & between
        print(f"spacing {label}: mean PSNR 3-9 µm {values[finite].mean():.2f} dB")
    for label, values in zip(repetition.labels, repetition.rmse):
        print(f"repetition {label}: mean RMSE {values.mean():.4f}")


if __name__ == "__main__":
    main()
