"""``keras-rmz demo``: with a tiny built-in preset served from
$KERAS_RMZ_WEIGHTS_DIR and a small volume, it reconstructs, scores against
an independent computation, and writes the volume, CSV and figures; without
the preset it fails in one line that says how to get it."""

import contextlib
import csv
import importlib.util
import io

import numpy as np
import pytest

from keras_rmz.cli import main as cli_main
from keras_rmz.data import compute_normalization
from keras_rmz.evaluation.demo import default_input_z
from keras_rmz.io import read_stack
from keras_rmz.models import RecurrentMZ
from keras_rmz.presets import load_preset, registry, registry_entry_for, save_preset
from keras_rmz.simulate import simulate_stack

NAME = "recurrent_mz_beads_m3"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# 13 planes 0.25 µm apart (0..3 µm); the tiny preset says M = 3, Δz = 1 µm,
# so the inputs are centred at z = 0.5, 1.5, 2.5 µm: planes 2, 6, 10.
SHAPE = (13, 32, 32)
Z_STEP = 0.25
INPUT_PLANES = [2, 6, 10]
SEED = 3


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    monkeypatch.setitem(cli_main.SUBCOMMANDS, "demo", "keras_rmz.cli.demo")
    for name, module in list(cli_main.SUBCOMMANDS.items()):
        if importlib.util.find_spec(module) is None:
            monkeypatch.delitem(cli_main.SUBCOMMANDS, name)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """$KERAS_RMZ_WEIGHTS_DIR holding a tiny preset under the built-in name."""
    root = tmp_path_factory.mktemp("weights")
    save_preset(
        RecurrentMZ(base_filters=2, depth=1),
        root / NAME,
        metadata={"num_inputs": 3, "input_spacing_um": 1.0, "pixel_um": 0.1, "z_step_um": Z_STEP},
    )
    return root


def register_builtin(patch, weights_dir):
    """The tiny preset as the registered built-in NAME (pinned sha256, a
    made-up Hub commit that is never contacted: the local copy serves)."""
    entry = registry_entry_for(weights_dir / NAME, f"keras-rmz/{NAME}", "0" * 40)
    patch.setitem(registry.PRESETS, NAME, entry)
    patch.setenv(registry.WEIGHTS_DIR_ENV, str(weights_dir))
    return weights_dir / NAME


@pytest.fixture
def builtin(monkeypatch, weights_dir):
    return register_builtin(monkeypatch, weights_dir)


def run_error(capsys, argv):
    try:
        code = cli_main.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def demo_run(weights_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    argv = ["demo", "--out", str(out), "--seed", str(SEED), "--shape", *map(str, SHAPE), "--z-step", str(Z_STEP)]
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        preset = register_builtin(patch, weights_dir)
        patch.setitem(cli_main.SUBCOMMANDS, "demo", "keras_rmz.cli.demo")
        code = cli_main.main(argv + ["--quiet"])
    return {"code": code, "out": out, "stdout": stdout.getvalue(), "preset": preset}


def numpy_linear_interpolation(images, input_z, z):
    """Per plane: the two input planes around z, weighted by distance."""
    volume = np.empty((len(z), *images.shape[1:]))
    for k, position in enumerate(z):
        if position <= input_z[0]:
            volume[k] = images[0]
        elif position >= input_z[-1]:
            volume[k] = images[-1]
        else:
            j = np.flatnonzero(np.asarray(input_z) <= position)[-1]
            j = min(j, len(input_z) - 2)
            t = (position - input_z[j]) / (input_z[j + 1] - input_z[j])
            volume[k] = (1 - t) * images[j] + t * images[j + 1]
    return volume


@pytest.mark.large
def test_demo_writes_volume_metrics_and_figures(demo_run):
    assert demo_run["code"] == 0
    out = demo_run["out"]
    assert sorted(p.name for p in out.iterdir()) == [
        "measured.ome.tif",
        "metrics.csv",
        "mip.png",
        "psnr_vs_z.png",
        "reconstruction.ome.tif",
    ]
    for name in ("mip.png", "psnr_vs_z.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    recon = read_stack(out / "reconstruction.ome.tif")
    assert recon.shape == SHAPE and recon.pixel_um == pytest.approx(0.1)
    np.testing.assert_allclose(recon.z, np.arange(SHAPE[0]) * Z_STEP, atol=1e-9)
    assert recon.metadata["reconstruction"]["input_planes"] == INPUT_PLANES
    assert recon.metadata["reconstruction"]["input_z_um"] == [0.5, 1.5, 2.5]
    # The measured stack is the simulator's, with that seed.
    measured = simulate_stack("beads", "widefield", shape=SHAPE, z_step_um=Z_STEP, pixel_um=0.1, seed=SEED)
    np.testing.assert_array_equal(read_stack(out / "measured.ome.tif").data, measured.data)
    # The volume is the preset's reconstruction from the three measured planes.
    model = load_preset(str(demo_run["preset"]))
    expected = model.reconstruct(measured.select(INPUT_PLANES), output_z=measured.z, verbose=False)
    np.testing.assert_allclose(recon.data, expected, rtol=1e-4, atol=1e-3 * float(np.abs(expected).max()))


@pytest.mark.large
def test_demo_scores_match_an_independent_computation(demo_run):
    measured = simulate_stack("beads", "widefield", shape=SHAPE, z_step_um=Z_STEP, pixel_um=0.1, seed=SEED)
    noise_free = simulate_stack("beads", "widefield", shape=SHAPE, z_step_um=Z_STEP, pixel_um=0.1, seed=SEED,
                                noise=False)
    norm = compute_normalization(noise_free)
    z = np.arange(SHAPE[0]) * Z_STEP

    def normalized(volume):
        return (np.asarray(volume, np.float64) - norm.shift) / norm.scale

    interpolation = normalized(numpy_linear_interpolation(measured.data[INPUT_PLANES].astype(np.float64),
                                                          [0.5, 1.5, 2.5], z))
    recon = normalized(read_stack(demo_run["out"] / "reconstruction.ome.tif").data)
    truth_free, truth_measured = normalized(noise_free.data), normalized(measured.data)

    def psnr(truth, volume):
        with np.errstate(divide="ignore"):  # an input plane against itself: inf
            return 10 * np.log10(1.0 / np.mean((truth - volume) ** 2, axis=(1, 2)))

    with open(demo_run["out"] / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["z_um"]) for row in rows] == pytest.approx(z)
    between = [k for k in range(SHAPE[0]) if 2 < k < 10 and k != 6]
    assert [k for k, row in enumerate(rows) if row["between_inputs"] == "1"] == between
    assert [k for k, row in enumerate(rows) if row["input_plane"] == "1"] == INPUT_PLANES
    for column, expected in (
        ("interpolation_psnr_noise_free_db", psnr(truth_free, interpolation)),
        ("interpolation_psnr_measured_db", psnr(truth_measured, interpolation)),
        ("model_psnr_noise_free_db", psnr(truth_free, recon)),
        ("model_psnr_measured_db", psnr(truth_measured, recon)),
    ):
        got = np.array([float(rows[k][column]) for k in between])
        np.testing.assert_allclose(got, expected[between], rtol=0, atol=0.02)
    # The printed table holds the means over the planes between the inputs.
    table = demo_run["stdout"]
    line = next(text for text in table.splitlines() if text.startswith("linear interpolation"))
    assert f"{psnr(truth_free, interpolation)[between].mean():.2f} dB" in line
    assert f"{psnr(truth_measured, interpolation)[between].mean():.2f} dB" in line
    assert "Recurrent-MZ" in table and "planes between the inputs: 6" in table


def test_demo_without_the_preset_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(registry.WEIGHTS_DIR_ENV, str(tmp_path))
    monkeypatch.delitem(registry.PRESETS, NAME, raising=False)
    line = run_error(capsys, ["demo", "--out", str(tmp_path / "out")])
    assert f"preset '{NAME}' is not available" in line
    assert f"keras-rmz train examples/presets/{NAME}.yaml" in line and "KERAS_RMZ_WEIGHTS_DIR" in line
    assert not (tmp_path / "out").exists()


def test_demo_bad_arguments_fail_in_one_line(builtin, tmp_path, capsys):
    line = run_error(capsys, ["demo", "--shape", "13", "32", "--out", str(tmp_path)])
    assert "--shape" in line
    line = run_error(capsys, ["demo", "--shape", *map(str, SHAPE), "--z-step", "0.1", "--out", str(tmp_path / "o")])
    assert "3 input planes 1 µm apart span 2 µm, more than the stack's 1.2 µm" in line
    line = run_error(
        capsys, ["demo", "--shape", *map(str, SHAPE), "--z-step", str(Z_STEP), "--input-z", "0", "9", "--out",
                 str(tmp_path / "o")]
    )
    assert "--input-z must lie on the simulated stack, z = 0..3 µm; got 9" in line


def test_default_inputs():
    z = np.arange(101) * 0.1
    np.testing.assert_allclose(default_input_z(z, 3, 3.0), [2.0, 5.0, 8.0])
    np.testing.assert_allclose(default_input_z(z, 2, 6.0), [2.0, 8.0])
