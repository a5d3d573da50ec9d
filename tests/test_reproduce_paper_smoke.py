"""Smoke test of examples/reproduce_paper.py: the --quick path with tiny
untrained presets writes the page, its figures and finite numbers for every
method, and its linear-interpolation PSNR matches an independent numpy
computation. The values of untrained models mean nothing and are not checked."""

import importlib.util
import json
import math
import pathlib
import re
import sys

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"

# The script's orchestration (page, figures, tables) does not depend on the
# backend; the five models it runs are tested on every backend in tests/models.
pytestmark = pytest.mark.run_once


def _load():
    key = "_rmz_example_reproduce_paper"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, EXAMPLES / "reproduce_paper.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


@pytest.fixture(scope="module")
def reproduce():
    return _load()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, reproduce):
    import keras_rmz as rmz

    root = tmp_path_factory.mktemp("reproduce")
    tiny = {
        "beads": (rmz.RecurrentMZ(base_filters=4, depth=2), {"num_inputs": 3, "input_spacing_um": 3.0}),
        "deep-z": (rmz.DeepZ(base_filters=4, depth=2), {"num_inputs": 1}),
        "unet3d": (rmz.UNet3D(num_inputs=3, base_filters=4, depth=2), {"num_inputs": 3, "input_spacing_um": 3.0}),
        "nuclei": (rmz.RecurrentMZ(base_filters=4, depth=2), {"num_inputs": 2, "input_spacing_um": 6.0}),
        "plus": (rmz.RecurrentMZPlus(base_filters=4, depth=2), {"num_inputs": 3, "input_spacing_um": 2.0}),
    }
    argv = ["--quick", "-q", "--out", str(root / "docs"), "--json", str(root / "results.json")]
    for role, (model, metadata) in tiny.items():
        folder = root / "presets" / role
        model.save_to_preset(folder, metadata={**metadata, "description": f"tiny untrained {role}"})
        argv += [f"--{role}-preset", str(folder)]
    assert reproduce.main(argv) == 0
    results = json.loads((root / "results.json").read_text(encoding="utf-8"))
    page = (root / "docs" / "reproduction.md").read_text(encoding="utf-8")
    return root, results, page


def test_page_and_figures_exist(quick_run, reproduce):
    root, results, page = quick_run
    assert page.startswith("# Reproducing the paper's experiments")
    assert [s["status"] for s in results["sections"]] == ["ok"] * len(reproduce.EXPERIMENTS)
    for role, info in results["presets"].items():
        assert info["loaded"] and info["num_parameters"] > 0, role
    figures = re.findall(r"!\[[^\]]*\]\((images/reproduction/[^)]+\.png)\)", page)
    assert len(figures) >= len(reproduce.EXPERIMENTS)
    for relative in figures:
        path = root / "docs" / relative
        assert path.is_file() and 1000 < path.stat().st_size < 150_000, relative
    assert "--quick" in page and "Skipped" not in page and "Failed" not in page


def test_fig3_table_is_finite_for_every_method(quick_run, reproduce):
    _, results, _ = quick_run
    fig3 = next(s for s in results["sections"] if s["key"] == "fig3")["numbers"]
    methods = fig3["setting"]["methods"]
    assert methods == [reproduce.METHOD_RMZ, reproduce.METHOD_DEEP_Z, reproduce.METHOD_UNET,
                       reproduce.METHOD_NEAREST, reproduce.METHOD_INTERP]
    for method in methods:
        entry = fig3["table"][method]
        for key in ("psnr_between_db", "psnr_span_db", "nrmse_between", "nrmse_span", "ssim_between"):
            assert entry[key] is not None and math.isfinite(entry[key]), (method, key)
        assert len(fig3["per_plane"][method]["psnr_db"]) == len(fig3["per_plane"]["z_um"])
    truth = fig3["table"][reproduce.TRUTH]
    assert truth["num_beads"] > 0 and 0.1 < truth["fwhm_mean_um"] < 1.0
    for section in results["sections"]:
        for table in section["tables"]:
            assert "nan" not in table.lower() and "inf" not in table.lower(), section["key"]


def test_interpolation_psnr_matches_numpy(quick_run, reproduce):
    from keras_rmz.data import compute_normalization
    from keras_rmz.simulate import simulate_stack

    _, results, page = quick_run
    fig3 = next(s for s in results["sections"] if s["key"] == "fig3")["numbers"]
    setting = fig3["setting"]
    shape = tuple(setting["shape"])
    kwargs = dict(shape=shape, z_step_um=setting["z_step_um"], pixel_um=0.1, seed=reproduce.FIRST_SEED,
                  density_per_um3=setting["bead_density_per_um3"])
    measured = simulate_stack("beads", "widefield", **kwargs)
    noise_free = simulate_stack("beads", "widefield", noise=False, **kwargs)
    norm = compute_normalization(noise_free)
    truth = (noise_free.data.astype(np.float64) - norm.shift) / norm.scale
    scan = (measured.data.astype(np.float64) - norm.shift) / norm.scale
    z = np.arange(shape[0]) * setting["z_step_um"]
    left, middle, right = (int(np.argmin(abs(z - v))) for v in setting["input_z_um"])
    between = [k for k in range(left + 1, right) if k != middle]
    psnr = {}
    for k in between:
        a, b = (left, middle) if k < middle else (middle, right)
        weight = (z[k] - z[a]) / (z[b] - z[a])
        estimate = (1 - weight) * scan[a] + weight * scan[b]
        psnr[k] = 10 * np.log10(1.0 / np.mean((estimate - truth[k]) ** 2))
    one = between[len(between) // 2]
    per_plane = fig3["per_plane"][reproduce.METHOD_INTERP]["psnr_db"]
    assert per_plane[one] == pytest.approx(psnr[one], abs=1e-3)
    mean = float(np.mean(list(psnr.values())))
    assert fig3["table"][reproduce.METHOD_INTERP]["psnr_between_db"] == pytest.approx(mean, abs=1e-3)
    fig3_page = page.split("\n## Fig. 3")[1].split("\n## ")[0]
    row = next(line for line in fig3_page.splitlines() if line.startswith(f"| {reproduce.METHOD_INTERP} |"))
    assert row.split("|")[2].strip() == f"{mean:.2f}"


def test_missing_preset_is_reported_not_fatal(tmp_path, reproduce):
    argv = ["--quick", "-q", "--out", str(tmp_path), "--beads-preset", str(tmp_path / "not_trained_yet"),
            "--deep-z-preset", "none", "--unet3d-preset", "none", "--nuclei-preset", "none", "--plus-preset", "none",
            "--experiments", "fig3", "fig8"]
    assert reproduce.main(argv) == 0
    page = (tmp_path / "reproduction.md").read_text(encoding="utf-8")
    assert "**Skipped**" in page and "not_trained_yet" in page and "not loaded" in page
    assert "Not run: left out with `--experiments`." in page
