"""Plots: files written atomically as valid PNGs, panels and physical axes
right. Pixels are not compared."""

import os

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from keras_rmz import evaluation
from keras_rmz import metrics
from keras_rmz import plot
from tests.evaluation.fake_models import InterpolationModel
from tests.evaluation.fake_models import OrderDependentModel


def _assert_png(path):
    assert os.path.isfile(path)
    with open(path, "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 100 and height > 100
    # Nothing but the PNG left in the folder (no temporary file).
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    return width, height


def _labels(ax):
    return ax.get_xlabel(), ax.get_ylabel()


def test_mip_side_views_panels_and_physical_axes(tmp_path):
    rng = np.random.default_rng(0)
    z_um = np.arange(0.0, 10.01, 0.5)  # 21 planes over 10 µm
    pixel_um = 0.1
    volume = rng.random((21, 40, 60))
    path = tmp_path / "out" / "mip.png"  # parent folder made on demand
    fig = plot.mip_side_views(
        {"wide-field": volume, "Recurrent-MZ": volume**2, "confocal": volume**3},
        z_um, pixel_um, path=path, input_z=[2.0, 5.0, 8.0],
    )
    assert isinstance(fig, Figure)
    _assert_png(str(path))
    assert len(fig.axes) == 6 + 3  # x-z and y-z per volume, then a colorbar per row (each its own range)
    for colorbar in fig.axes[6:]:
        assert colorbar.get_ylabel() == "intensity (camera units), this row's range"
    assert "each row its own" in fig.get_suptitle()
    for row in range(3):
        xz, yz = fig.axes[2 * row], fig.axes[2 * row + 1]
        assert _labels(xz) == ("x (µm)", "z (µm)")
        assert _labels(yz) == ("y (µm)", "z (µm)")
        # Equal physical scale, and extents in µm, not pixels.
        assert xz.get_aspect() == 1.0 and yz.get_aspect() == 1.0
        assert xz.get_xlim() == pytest.approx((0.0, 60 * pixel_um))
        assert yz.get_xlim() == pytest.approx((0.0, 40 * pixel_um))
        assert xz.get_ylim() == pytest.approx((-0.25, 10.25))
        # Dashed input-plane markers.
        dashed = [ln for ln in xz.get_lines() if ln.get_linestyle() == "--"]
        assert sorted(ln.get_ydata()[0] for ln in dashed) == [2.0, 5.0, 8.0]
    assert "x-z" in fig.axes[0].get_title() and "confocal" in fig.axes[4].get_title()


def test_mip_side_views_projects_the_right_axes():
    volume = np.zeros((5, 8, 6))
    volume[2, 7, 1] = 1.0  # z = 2, y = 7, x = 1
    fig = plot.mip_side_views({"one bead": volume}, np.arange(5.0), 1.0)
    xz = fig.axes[0].collections[0].get_array().reshape(5, 6)
    yz = fig.axes[1].collections[0].get_array().reshape(5, 8)
    assert np.argwhere(xz == 1.0).tolist() == [[2, 1]]
    assert np.argwhere(yz == 1.0).tolist() == [[2, 7]]


def test_mip_side_views_nonuniform_z_and_errors(tmp_path):
    z_um = np.array([0.0, 0.5, 2.0, 2.5, 6.0])
    fig = plot.mip_side_views({"a": np.ones((5, 8, 8)), "b": np.ones((5, 8, 8))}, z_um, 0.2, normalize="shared",
                              intensity_label="photons")
    assert fig.axes[0].get_ylim() == pytest.approx((-0.25, 7.75))
    assert len(fig.axes) == 4 + 1 and fig.axes[4].get_ylabel() == "photons, shared range"
    assert "one for all panels" in fig.get_suptitle()
    with pytest.raises(ValueError, match="Z = len"):
        plot.mip_side_views({"a": np.ones((4, 8, 8))}, z_um, 0.2)
    with pytest.raises(ValueError, match="pixel_um"):
        plot.mip_side_views({"a": np.ones((5, 8, 8))}, z_um, 0.0)
    with pytest.raises(ValueError, match="dict"):
        plot.mip_side_views(np.ones((5, 8, 8)), z_um, 0.2)
    with pytest.raises(ValueError, match=".png"):
        plot.mip_side_views({"a": np.ones((5, 8, 8))}, z_um, 0.2, path=tmp_path / "a.jpg")


def test_metric_vs_z_lines_bands_and_inputs(tmp_path):
    z = np.linspace(0, 18, 91)
    psnr = 30 + np.cos(z)
    psnr[10] = np.inf  # an exact input plane
    path = tmp_path / "psnr.png"
    fig = plot.metric_vs_z(
        z, {"uniform": psnr, "non-uniform": psnr - 1}, input_z=[3.0, 9.0, 15.0],
        path=path, bands={"uniform": (psnr - 0.5, psnr + 0.5)},
    )
    _assert_png(str(path))
    (ax,) = fig.axes
    assert _labels(ax) == ("z (µm)", "PSNR (dB)")
    vertical = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert sorted(ln.get_xdata()[0] for ln in vertical) == [3.0, 9.0, 15.0]
    assert len(ax.collections) == 1  # one band
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["uniform", "non-uniform"] and "input planes" in legend
    # Per-label inputs in the curve's colour.
    fig = plot.metric_vs_z(
        z, {"uniform": psnr, "non-uniform": psnr - 1}, metric="NRMSE",
        input_z={"uniform": [3.0, 9.0, 15.0], "non-uniform": [3.0, 7.8, 13.6]},
    )
    ax = fig.axes[0]
    colours = {ln.get_label(): ln.get_color() for ln in ax.get_lines()}
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 6
    assert any(ln.get_color() == colours["non-uniform"] and ln.get_xdata()[0] == 7.8
               for ln in dashed)
    assert ax.get_ylabel() == "NRMSE"
    # The infinite value at z[10] is a marker at the top edge per curve, named in the legend, not a gap alone.
    markers = [ln for ln in ax.get_lines() if ln.get_marker() == "^"]
    assert [ln.get_label() for ln in markers] == ["uniform: +∞", "non-uniform: +∞"]
    assert all(ln.get_xdata().tolist() == [z[10]] and ln.get_color() == colours[ln.get_label().split(":")[0]]
               for ln in markers)
    fig = plot.metric_vs_z(z[:3], {"a": [1.0, -np.inf, np.nan]})
    (bottom,) = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "v"]
    assert bottom.get_xdata().tolist() == [z[1]] and bottom.get_label() == "a: −∞"
    with pytest.raises(ValueError, match="one per z"):
        plot.metric_vs_z(z, {"a": psnr[:-1]})
    with pytest.raises(ValueError, match="no curve"):
        plot.metric_vs_z(z, {"a": psnr}, bands={"b": (psnr, psnr)})


def test_fwhm_histograms_legend_means_and_kl(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.normal(0.443, 0.03, 88)
    recon = rng.normal(0.440, 0.03, 80)
    path = tmp_path / "fwhm.png"
    fig = plot.fwhm_histograms(
        {"ground truth": truth, "Recurrent-MZ": recon}, bins=12, path=path,
        reference="ground truth",
    )
    _assert_png(str(path))
    (ax,) = fig.axes
    assert _labels(ax) == ("FWHM (µm)", "number of beads")
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"mean {truth.mean():.4f} µm" in texts[0] and "n = 88" in texts[0]
    kl = metrics.kl_divergence(truth, recon, bins=12)
    assert f"KL {kl:.3f}" in texts[1] and "KL" not in texts[0]
    assert len(ax.patches) == 2  # one filled step histogram per label
    # With a kernel bandwidth the legend quotes the kernel KL divergence.
    fig = plot.fwhm_histograms(
        {"ground truth": truth, "Recurrent-MZ": recon}, bins=12, reference="ground truth", bandwidth=0.02,
    )
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    soft = metrics.kl_divergence(truth, recon, bins=12, bandwidth=0.02)
    assert soft != pytest.approx(kl) and f"KL {soft:.3f}" in texts[1]


def test_fwhm_histograms_accepts_bead_results():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:60, 0:60]
    image = sum(np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / 8.0) for c in (15, 45))
    beads = metrics.bead_fwhm(image + rng.normal(0, 0.003, image.shape), 0.1)
    fig = plot.fwhm_histograms({"beads": beads}, bins=5)
    assert "n = 2" in fig.axes[0].get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError, match="reference"):
        plot.fwhm_histograms({"beads": beads}, reference="truth")


def test_permutation_plot(tmp_path):
    rng = np.random.default_rng(3)
    truth = rng.random((7, 8, 8))
    z = np.arange(7.0)
    result = evaluation.permutation_test(
        OrderDependentModel(), truth[[1, 3, 5]], z[[1, 3, 5]], z, truth
    )
    path = tmp_path / "perm.png"
    fig = plot.permutation_plot(result, path=path)
    _assert_png(str(path))
    (ax,) = fig.axes
    assert _labels(ax) == ("z (µm)", "RMSE")
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    np.testing.assert_allclose(lines["mean of 6 orders"].get_ydata(), result.mu_rmse)
    np.testing.assert_allclose(lines["sorted by z"].get_ydata(), result.sorted_rmse)
    assert len(ax.collections) == 1  # the ±σ band
    with pytest.raises(TypeError, match="PermutationResult"):
        plot.permutation_plot({"mu_rmse": 1})


def test_dpm_noise_plot_panels(tmp_path):
    rng = np.random.default_rng(4)
    truth = rng.random((5, 8, 8))
    z = np.arange(5.0)
    result = evaluation.dpm_noise_test(
        InterpolationModel(), truth[[0, 4]], z[[0, 4]], z, truth,
        sigmas_um=(0.0, 0.5, 1.0), repeats=4, seed=0,
    )
    path = tmp_path / "dpm.png"
    fig = plot.dpm_noise_plot(result, output_z=[1.0, 3.0], path=path)
    _assert_png(str(path))
    assert len(fig.axes) == 2
    assert fig.axes[0].get_xlabel() == "σ (µm)"
    assert fig.axes[1].get_title() == "z = 3 µm"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "0.5", "1"]
    assert len(plot.dpm_noise_plot(result).axes) == 4
    with pytest.raises(ValueError, match="not among"):
        plot.dpm_noise_plot(result, output_z=[2.5])


def test_save_replaces_existing_file_and_keeps_pyplot_untouched(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    path = tmp_path / "curve.png"
    path.write_bytes(b"old")
    plot.metric_vs_z([0.0, 1.0], {"a": [1.0, 2.0]}, path=path)
    _assert_png(str(path))
    assert plt.get_fignums() == before  # figures never registered with pyplot


def test_reconstruction_side_views_show_the_measured_stack_when_it_has_the_output_planes(tmp_path):
    from keras_rmz.io import Stack

    stack = Stack(np.random.default_rng(0).random((11, 16, 12)).astype(np.float32), np.arange(11) * 0.5, 0.2)
    record = {"reconstruction": {"input_z_um": [1.0, 4.0]}}
    on_grid = Stack(stack.data[2:9], stack.z[2:9], 0.2, record)
    figure = plot.reconstruction_side_views(stack, on_grid, tmp_path / "a.png")
    assert (tmp_path / "a.png").is_file()
    titles = " ".join(axis.get_title() for axis in figure.axes)
    assert "measured stack" in titles and "reconstruction" in titles
    # Output planes finer than the stack's (0.1 against 0.5 µm): only the reconstruction.
    off_grid = Stack(stack.data[2:9], 2.0 + 0.1 * np.arange(7), 0.2, record)
    titles = " ".join(axis.get_title() for axis in plot.reconstruction_side_views(stack, off_grid).axes)
    assert "measured stack" not in titles and "reconstruction" in titles
