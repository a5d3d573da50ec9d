"""Figures of the paper's kind: MIP side views, metric-versus-z curves, FWHM
histograms, permutation and DPM-noise plots.

Every function builds a `matplotlib.figure.Figure` on the Agg canvas
directly — never through ``pyplot`` — so it neither opens windows nor
changes the global backend, works on headless machines, and leaks no figure
into pyplot's registry. Each returns the Figure (shown inline by Jupyter)
and, given ``path=``, also writes a PNG atomically (a temporary file in the
same folder, then ``os.replace``), so a reader never sees half a file.

Example:

>>> from keras_rmz import plot
>>> fig = plot.metric_vs_z(z, {"Recurrent-MZ": psnr_curve},
...                        input_z=[3.0, 6.0, 9.0], path="psnr.png")  # doctest: +SKIP
"""

import os
import warnings

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_rmz.io.atomic import atomic_write
from keras_rmz.metrics.beads import histogram_edges
from keras_rmz.metrics.beads import kl_divergence

_DEFAULT_DPI = 120


def _new_figure(figsize):
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path, dpi=_DEFAULT_DPI):
    """Writes ``figure`` as a PNG at ``path`` atomically; returns the path.

    The parent folder is created when missing. The image goes to a temporary
    file in the same folder first and is moved into place with
    ``os.replace``, so an existing file is replaced in one step and an
    interrupted write leaves no partial PNG behind.
    """
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"path must name a .png file; got {path!r}")
    with atomic_write(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi)
    return path


def _finish(figure, path, dpi):
    if path is not None:
        save_figure(figure, path, dpi=dpi)
    return figure


def _as_1d(values, name, length=None):
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{name} must be a non-empty 1D array; got shape {values.shape}")
    if length is not None and values.size != length:
        raise ValueError(
            f"{name} must have {length} values (one per z); got {values.size}"
        )
    return values


def _check_mapping(mapping, name):
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(
            f"{name} must be a non-empty dict of label -> values; got "
            f"{type(mapping).__name__}"
        )


def _plane_edges(centres):
    """Cell edges around (possibly non-uniform) plane centres."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = 0.5 * (centres[1:] + centres[:-1])
    first = centres[0] - (mid[0] - centres[0])
    last = centres[-1] + (centres[-1] - mid[-1])
    return np.concatenate([[first], mid, [last]])


def mip_side_views(
    volumes,
    z_um,
    pixel_um,
    path=None,
    *,
    input_z=None,
    normalize="each",
    cmap="gray",
    intensity_label="intensity (camera units)",
    dpi=_DEFAULT_DPI,
):
    """Maximum-intensity-projection side views (x-z and y-z), paper Fig. 8b.

    One row per volume: left, the x-z MIP (maximum over y); right, the y-z
    MIP (maximum over x). Axes are in µm with equal physical scale on both
    axes, so an elongated wide-field PSF looks as elongated as it is;
    non-uniform ``z_um`` is drawn plane by plane at its true positions.

    Args:
        volumes: dict label -> stack (Z, Y, X); all share ``z_um``.
        z_um: (Z,) plane positions in µm.
        pixel_um: lateral pixel size in µm.
        path: optional PNG path.
        input_z: optional input-plane positions (µm), marked by dashed
            horizontal lines (the arrows of Fig. 8b).
        normalize: ``"each"`` scales each volume to its own min..max (MIPs
            of wide-field and confocal stacks differ in brightness);
            ``"shared"`` uses one scale for all. Each row gets a colorbar
            (``"each"``: labelled "this row's range"), or all panels one
            (``"shared"``: "shared range"), and the figure's title says which.
        cmap: colour map.
        intensity_label: the colorbars' label (the volumes' units).
        dpi: PNG resolution.

    Returns:
        `matplotlib.figure.Figure` with 2·len(volumes) axes and their colorbars.
    """
    _check_mapping(volumes, "volumes")
    z_um = _as_1d(z_um, "z_um")
    pixel_um = float(pixel_um)
    if not np.isfinite(pixel_um) or pixel_um <= 0:
        raise ValueError(f"pixel_um must be a finite number > 0; got {pixel_um}")
    if normalize not in ("each", "shared"):
        raise ValueError(f"normalize must be 'each' or 'shared'; got {normalize!r}")
    projections = {}
    for label, volume in volumes.items():
        volume = np.asarray(volume, dtype=np.float64)
        if volume.ndim != 3 or volume.shape[0] != z_um.size:
            raise ValueError(
                f"volume {label!r} must have shape (Z, Y, X) with Z = len(z_um) = "
                f"{z_um.size}; got shape {volume.shape}"
            )
        with warnings.catch_warnings():  # an all-NaN line stays NaN (drawn blank)
            warnings.simplefilter("ignore", RuntimeWarning)
            projections[label] = (np.nanmax(volume, axis=1), np.nanmax(volume, axis=2))
    if normalize == "shared":
        low = min(min(np.nanmin(p) for p in pair) for pair in projections.values())
        high = max(max(np.nanmax(p) for p in pair) for pair in projections.values())
    z_order = np.argsort(z_um, kind="stable")
    z_sorted = z_um[z_order]
    z_edges = _plane_edges(z_sorted)
    z_span = z_edges[-1] - z_edges[0]
    lateral = max(max(p[0].shape[1], p[1].shape[1]) for p in projections.values())
    lateral_span = lateral * pixel_um
    panel_width = 3.2
    row_height = float(np.clip(panel_width * z_span / lateral_span, 0.8, 5.0)) + 0.7
    figure = _new_figure((2 * panel_width + 1.4, row_height * len(projections) + 0.3))
    axes = figure.subplots(len(projections), 2, squeeze=False)
    meshes = []
    figure.suptitle("display range: " + ("each row its own" if normalize == "each" else "one for all panels"),
                    fontsize="medium")
    for row, (label, (xz, yz)) in enumerate(projections.items()):
        if normalize == "each":
            low = min(np.nanmin(xz), np.nanmin(yz))
            high = max(np.nanmax(xz), np.nanmax(yz))
        for col, (mip, axis_name) in enumerate(((xz, "x"), (yz, "y"))):
            ax = axes[row, col]
            lateral_edges = np.arange(mip.shape[1] + 1) * pixel_um
            mesh = ax.pcolormesh(
                lateral_edges,
                z_edges,
                mip[z_order],
                cmap=cmap,
                vmin=low,
                vmax=high if high > low else low + 1.0,
                shading="flat",
                rasterized=True,
            )
            if input_z is not None:
                for z in np.asarray(input_z, dtype=np.float64).ravel():
                    ax.axhline(z, color="tab:cyan", linestyle="--", linewidth=0.8)
            ax.set_aspect("equal")
            ax.set_xlim(lateral_edges[0], lateral_edges[-1])
            ax.set_ylim(z_edges[0], z_edges[-1])
            ax.set_xlabel(f"{axis_name} (µm)")
            ax.set_ylabel("z (µm)")
            ax.set_title(f"{label}: {axis_name}-z MIP", fontsize="medium")
        meshes.append(mesh)
    # After the panels, so that figure.axes[:2 * len(volumes)] are the panels.
    if normalize == "each":
        for row, mesh in enumerate(meshes):
            figure.colorbar(mesh, ax=list(axes[row]), label=f"{intensity_label}, this row's range", shrink=0.9)
    else:
        figure.colorbar(meshes[-1], ax=list(axes.ravel()), label=f"{intensity_label}, shared range", shrink=0.8)
    return _finish(figure, path, dpi)


def reconstruction_side_views(stack, volume, path=None, *, dpi=_DEFAULT_DPI):
    """`mip_side_views` of a reconstructed ``volume`` (a ``Stack``, e.g. from
    ``keras_rmz.inference.reconstruct_stack``) under those of the measured
    ``stack`` when it has a plane at every output z (within half a z step).
    The input planes of the volume's ``reconstruction`` record are marked by
    dashed lines.

    Returns:
        the matplotlib ``Figure``.
    """
    from keras_rmz.io import nearest_planes

    volumes = {}
    if stack.z_step_um is not None:
        matched, _ = nearest_planes(stack.z, volume.z, 0.5 * stack.z_step_um * (1 + 1e-9))
        if np.all(matched >= 0) and len(np.unique(matched)) == matched.size:
            volumes["measured stack"] = np.asarray(stack.data[matched])  # reads only these planes of a lazy stack
    volumes["reconstruction"] = volume.data
    input_z = (volume.metadata or {}).get("reconstruction", {}).get("input_z_um")
    return mip_side_views(volumes, volume.z, volume.pixel_um, path, input_z=input_z, dpi=dpi)


def metric_vs_z(
    z_um,
    curves,
    input_z=None,
    metric="PSNR (dB)",
    path=None,
    *,
    bands=None,
    colors=None,
    title=None,
    dpi=_DEFAULT_DPI,
):
    """A per-plane metric against z for several methods (paper Fig. 4b, 6e).

    Args:
        z_um: (K,) output plane positions in µm.
        curves: dict label -> (K,) values. ``+inf`` (e.g. the PSNR of a
            plane identical to the truth, such as an input plane) is marked by
            a triangle at the top of the axes, ``-inf`` at the bottom, in the
            curve's colour, and named in the legend; NaN is left out.
        input_z: input-plane positions (µm) drawn as dashed vertical lines;
            or a dict label -> positions, drawn in that curve's colour (e.g.
            uniform and non-uniform inputs).
        metric: y-axis label.
        path: optional PNG path.
        bands: optional dict label -> (lower, upper) arrays, shaded in the
            curve's colour (e.g. mean ± std).
        colors: optional dict label -> matplotlib colour.
        title: optional axes title.
        dpi: PNG resolution.

    Returns:
        `matplotlib.figure.Figure` with one axes.
    """
    z_um = _as_1d(z_um, "z_um")
    _check_mapping(curves, "curves")
    colors = dict(colors or {})
    bands = dict(bands or {})
    order = np.argsort(z_um, kind="stable")
    figure = _new_figure((6.0, 3.6))
    ax = figure.subplots()
    drawn = {}
    infinite = []
    for label, values in curves.items():
        values = _as_1d(values, f"curves[{label!r}]", z_um.size)
        (line,) = ax.plot(
            z_um[order], np.where(np.isfinite(values), values, np.nan)[order], label=str(label),
            color=colors.get(label)
        )
        drawn[label] = line.get_color()
        for sign, marker, height in ((1, "^", 0.97), (-1, "v", 0.03)):
            at = z_um[values == sign * np.inf]
            if at.size:
                infinite.append((at, marker, height, drawn[label], f"{label}: {'+' if sign > 0 else '−'}∞"))
    for label, band in bands.items():
        if label not in drawn:
            raise ValueError(f"bands label {label!r} has no curve; curves: {list(drawn)}")
        lower, upper = band
        lower = _as_1d(lower, f"bands[{label!r}][0]", z_um.size)
        upper = _as_1d(upper, f"bands[{label!r}][1]", z_um.size)
        ax.fill_between(
            z_um[order], lower[order], upper[order], color=drawn[label], alpha=0.25,
            linewidth=0,
        )
    if input_z is not None:
        groups = input_z if isinstance(input_z, dict) else {None: input_z}
        for label, positions in groups.items():
            color = drawn.get(label, "gray")
            for i, z in enumerate(np.asarray(positions, dtype=np.float64).ravel()):
                name = (
                    "input planes" if label is None else f"inputs: {label}"
                ) if i == 0 else None
                ax.axvline(z, color=color, linestyle="--", linewidth=0.9, label=name)
    # Infinite values: at the top (bottom) edge whatever the y range, x in data units.
    edge = ax.get_xaxis_transform()
    for at, marker, height, color, name in infinite:
        ax.plot(at, np.full(at.size, height), marker, color=color, transform=edge, clip_on=False, label=name,
                markersize=6)
    ax.set_xlabel("z (µm)")
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _finish(figure, path, dpi)


def fwhm_histograms(
    fwhm,
    bins=20,
    path=None,
    *,
    range=None,
    reference=None,
    bandwidth=None,
    dpi=_DEFAULT_DPI,
):
    """FWHM histograms of several volumes on shared bins (paper Fig. 3b).

    Args:
        fwhm: dict label -> FWHM values in µm (1D), or `BeadFWHM` results.
        bins: number of bins or an array of edges, shared by all labels.
        path: optional PNG path.
        range: ``(low, high)`` in µm; ``None`` spans all values.
        reference: label of the reference (ground truth); the legend then
            also gives each other label's `kl_divergence` from it, on the
            same bins.
        bandwidth: kernel σ (µm) for that KL divergence (see
            `keras_rmz.metrics.kl_divergence`); ``None``: plain histograms.
        dpi: PNG resolution.

    Returns:
        `matplotlib.figure.Figure` with one axes; each legend entry holds the
        mean FWHM and the bead count.
    """
    _check_mapping(fwhm, "fwhm")
    samples = {}
    for label, values in fwhm.items():
        values = getattr(values, "fwhm_um", values)
        samples[label] = _as_1d(values, f"fwhm[{label!r}]")
    if reference is not None and reference not in samples:
        raise ValueError(f"reference {reference!r} is not a label of fwhm: {list(samples)}")
    edges = histogram_edges(*samples.values(), bins=bins, range=range)
    figure = _new_figure((6.0, 3.6))
    ax = figure.subplots()
    for label, values in samples.items():
        text = f"{label}: mean {values.mean():.4f} µm, n = {values.size}"
        if reference is not None and label != reference:
            kl = kl_divergence(samples[reference], values, bins=edges, bandwidth=bandwidth)
            text += f", KL {kl:.3f}"
        ax.hist(values, bins=edges, histtype="stepfilled", alpha=0.35, label=text)
    ax.set_xlabel("FWHM (µm)")
    ax.set_ylabel("number of beads")
    ax.legend(fontsize="small")
    return _finish(figure, path, dpi)


def permutation_plot(result, path=None, *, dpi=_DEFAULT_DPI):
    """RMSE over all input orders against z (paper Fig. 6e).

    Red: μ_RMSE with a pink ±σ_RMSE band; blue: inputs sorted by z; gray:
    the nearest input plane; dashed: the input planes.

    Args:
        result: a `keras_rmz.evaluation.PermutationResult`.
        path: optional PNG path.
        dpi: PNG resolution.

    Returns:
        `matplotlib.figure.Figure` with one axes.
    """
    for name in ("output_z", "mu_rmse", "sigma_rmse", "sorted_rmse", "nearest_rmse"):
        if not hasattr(result, name):
            raise TypeError(
                "result must be a PermutationResult from "
                f"keras_rmz.evaluation.permutation_test; missing {name!r}"
            )
    mean_label = f"mean of {len(result.permutations)} orders"
    curves = {
        mean_label: result.mu_rmse,
        "sorted by z": result.sorted_rmse,
        "nearest input": result.nearest_rmse,
    }
    return metric_vs_z(
        result.output_z,
        curves,
        input_z=result.input_z,
        metric="RMSE",
        path=path,
        bands={mean_label: (result.mu_rmse - result.sigma_rmse,
                            result.mu_rmse + result.sigma_rmse)},
        colors={mean_label: "tab:red", "sorted by z": "tab:blue",
                "nearest input": "gray"},
        title="Input permutations",
        dpi=dpi,
    )


def dpm_noise_plot(result, output_z=None, path=None, *, dpi=_DEFAULT_DPI):
    """NRMSE boxplots against the DPM noise σ (paper Fig. 5b).

    Args:
        result: a `keras_rmz.evaluation.DPMNoiseResult`.
        output_z: planes (µm) to show, one panel each; ``None``: up to four
            planes evenly spread over ``result.output_z``.
        path: optional PNG path.
        dpi: PNG resolution.

    Returns:
        `matplotlib.figure.Figure` with one axes per plane.
    """
    for name in ("output_z", "sigmas_um", "nrmse"):
        if not hasattr(result, name):
            raise TypeError(
                "result must be a DPMNoiseResult from "
                f"keras_rmz.evaluation.dpm_noise_test; missing {name!r}"
            )
    all_z = np.asarray(result.output_z, dtype=np.float64)
    if output_z is None:
        spread = np.linspace(0, all_z.size - 1, min(4, all_z.size))
        planes = np.unique(spread.round().astype(int))
    else:
        wanted = np.asarray(output_z, dtype=np.float64).ravel()
        planes = np.argmin(np.abs(wanted[:, None] - all_z[None, :]), axis=1)
        far = np.abs(all_z[planes] - wanted) > 1e-3
        if np.any(far):
            raise ValueError(
                f"output_z {wanted[far].tolist()} µm are not among result.output_z"
            )
    figure = _new_figure((3.2 * len(planes), 3.4))
    axes = figure.subplots(1, len(planes), squeeze=False)[0]
    labels = [f"{s:g}" for s in result.sigmas_um]
    for ax, plane in zip(axes, planes):
        positions = np.arange(1, len(labels) + 1)
        ax.boxplot(
            [result.nrmse[s, :, plane] for s in range(len(labels))],
            positions=positions,
        )
        ax.set_xticks(positions, labels)
        ax.set_xlabel("σ (µm)")
        ax.set_ylabel(f"NRMSE ({result.normalization})")
        ax.set_title(f"z = {all_z[plane]:g} µm", fontsize="medium")
    return _finish(figure, path, dpi)
