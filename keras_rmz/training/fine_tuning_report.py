"""The figures and the model card of a fine-tuned preset
(``keras_rmz.training.fine_tuning.finetune``)."""

import io

import numpy as np

METHOD_COLORS = {
    "starting preset": "tab:gray",
    "fine-tuned": "tab:red",
    "linear interpolation": "tab:blue",
    "nearest plane": "tab:green",
}


def _png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def figures(table, predictions, windows, scorer):
    """{"figures/psnr_vs_z.png": bytes, "figures/mip_comparison.png": bytes}
    for the middle scoring window."""
    from matplotlib.figure import Figure

    index = len(windows) // 2
    window = windows[index]
    _, input_z, output_z, truth = scorer.window_data(window)
    region = scorer.regions[window.region].name

    figure = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = figure.subplots()
    for name, row in table.items():
        ax.plot(output_z, row["psnr_per_plane_db"][index], marker=".", color=METHOD_COLORS.get(name),
                label=f"{name} ({row['psnr_db']:.2f} dB mean over windows)")
    for i, z in enumerate(input_z):
        ax.axvline(z, color="black", linestyle="--", linewidth=0.8, label="input planes" if i == 0 else None)
    ax.set_xlabel("z (µm)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"held-out {region}: planes between inputs at {', '.join(f'{z:g}' for z in input_z)} µm",
                 fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    psnr_png = _png(figure)

    volumes = {"measured (truth)": truth}
    volumes.update({name: predictions[name][index] for name in table})
    low = float(np.percentile(truth, 0.1))
    high = float(truth.max())
    pixel = scorer.regions[window.region].stack.pixel_um
    figure = Figure(figsize=(10, 1.2 + 1.5 * len(volumes)), layout="constrained")
    axes = figure.subplots(len(volumes), 1, squeeze=False)[:, 0]
    z_edges = np.concatenate([[output_z[0] - 0.5 * (output_z[1] - output_z[0]) if len(output_z) > 1 else output_z[0] - 0.05],
                              (output_z[1:] + output_z[:-1]) / 2,
                              [output_z[-1] + 0.5 * (output_z[-1] - output_z[-2]) if len(output_z) > 1 else output_z[0] + 0.05]])
    mesh = None
    for ax, (name, volume) in zip(axes, volumes.items()):
        mip = np.asarray(volume).max(axis=1)  # x-z: maximum over y
        x_edges = np.arange(mip.shape[1] + 1) * pixel
        mesh = ax.pcolormesh(x_edges, z_edges, mip, cmap="magma", vmin=low, vmax=high, shading="flat",
                             rasterized=True)
        ax.set_ylabel("z (µm)")
        ax.set_title(name, fontsize="medium", loc="left")
    axes[-1].set_xlabel("x (µm)")
    figure.colorbar(mesh, ax=list(axes), label="intensity (camera units), shared range", shrink=0.8)
    figure.suptitle(f"x-z maximum-intensity projections of the held-out {region}, planes between the inputs",
                    fontsize="medium")
    mip_png = _png(figure)
    return {"figures/psnr_vs_z.png": psnr_png, "figures/mip_comparison.png": mip_png}


def model_card(metadata, report, name):
    """README.md of a fine-tuned preset: what it is, the held-out table and
    figures, how to use it."""
    table = report["table"]
    lines = [
        "---",
        f"license: {metadata.get('license') or 'apache-2.0'}",
        "library_name: keras",
        "tags:",
        "- keras-rmz",
        "- microscopy",
        "---",
        "",
        f"# {name}",
        "",
        metadata["description"] + ".",
        "",
        f"**Result:** {report['verdict']}.",
        "",
        "## Held-out score",
        "",
        "Scored on data not used for training: " + "; ".join(report["held_out"]) + ". "
        + f"{len(report['windows'])} window(s) of M = {metadata['num_inputs']} inputs "
        + f"{metadata['input_spacing_um']:g} µm apart ("
        + "; ".join(f"inputs at {', '.join(f'{z:g}' for z in w['input_z_um'])} µm, {w['planes_scored']} planes"
                    for w in report["windows"]) + ").",
        "",
        "| method | PSNR (dB) | NRMSE | SSIM |",
        "| --- | ---: | ---: | ---: |",
    ]
    for method, row in table.items():
        lines.append(f"| {method} | {row['psnr_db']:.2f} | {row['nrmse']:.3f} | {row['ssim']:.3f} |")
    lines += [
        "",
        f"Fine-tuned minus linear interpolation: {report['gain_over_interpolation_db']:+.2f} dB; "
        f"minus the starting preset: {report['gain_over_starting_preset_db']:+.2f} dB.",
        "",
        report["scoring"],
        "",
        "![PSNR against z on the held-out part](figures/psnr_vs_z.png)",
        "",
        "![x-z MIPs on the held-out part](figures/mip_comparison.png)",
        "",
        "Held-out PSNR during training (step: dB): "
        + ", ".join(f"{s}: {p:.2f}" for s, p in report["history"]) + ".",
        "",
        "## Training",
        "",
        f"{report['steps']} steps in {report['training_seconds'] / 60:.1f} min "
        f"({report['sessions']} session(s), {metadata['training']['backend']}, computing in "
        f"{metadata['training']['precision'] or 'float32'}); best held-out weights at step {report['best_step']}. "
        f"Recipe: {metadata['training']['loss']}; " +
        ", ".join(f"{k} {v}" for k, v in metadata["training"]["recipe"].items()) + ".",
        "",
        "## Use",
        "",
        "```python",
        "import keras_rmz",
        f'model = keras_rmz.presets.load_preset("{name}/")',
        "stack = keras_rmz.io.read_stack(\"my_stack.ome.tif\")",
        "volume = model.reconstruct(stack.select([0, -1]), output_z=stack.z)",
        "```",
        "",
        f"Pixel size {metadata['pixel_um']:g} µm (other pixel sizes are resampled), trained output range "
        f"{metadata['output_range_um'][0]:g}..{metadata['output_range_um'][1]:g} µm from the inputs.",
        "",
    ]
    return "\n".join(lines)
