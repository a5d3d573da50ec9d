"""``keras-rmz evaluate``: through ``keras_rmz.cli.main.main``, as a user runs it."""

import csv
import importlib.util

import numpy as np
import pytest
import skimage.metrics
import tifffile

from keras_rmz import metrics
from keras_rmz.cli import main as cli_main
from keras_rmz.cli.evaluate import match_planes
from keras_rmz.io import write_stack

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRUTH_Z = np.arange(7) * 0.5  # 0 .. 3 µm
# Prediction planes: four on the truth's grid (one off by float rounding),
# in no particular order, and one at 5 µm that the truth does not have.
PRED_Z = np.array([1.5, 0.5, 1.0, 2.0000001, 5.0])
MATCHED_TRUTH = [1, 2, 3, 4]  # truth planes of the matched pairs, sorted by z
MATCHED_PRED = [1, 2, 0, 3]


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Lists the subcommands in main.SUBCOMMANDS (a no-op once they are
    registered there) and leaves out subcommand modules not written yet."""
    monkeypatch.setitem(cli_main.SUBCOMMANDS, "reconstruct", "keras_rmz.cli.reconstruct")
    monkeypatch.setitem(cli_main.SUBCOMMANDS, "evaluate", "keras_rmz.cli.evaluate")
    for name, module in list(cli_main.SUBCOMMANDS.items()):
        if importlib.util.find_spec(module) is None:
            monkeypatch.delitem(cli_main.SUBCOMMANDS, name)


def _truth(seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:24, :28]
    volume = np.empty((TRUTH_Z.size, 24, 28), np.float32)
    for k, z in enumerate(TRUTH_Z):
        volume[k] = 10 + 5 * z + 200 * np.exp(-((yy - 12) ** 2 + (xx - 9 - 4 * z) ** 2) / 18) + rng.normal(0, 2, (24, 28))
    return volume


def _prediction(truth, seed=1):
    rng = np.random.default_rng(seed)
    planes = []
    for z in PRED_Z:
        near = np.abs(TRUTH_Z - z)
        base = truth[np.argmin(near)] if near.min() < 0.01 else truth[-1]
        planes.append(base + rng.normal(0, 6 + 4 * z, base.shape))
    return np.stack(planes).astype(np.float32)


@pytest.fixture
def stacks(tmp_path):
    truth = _truth()
    prediction = _prediction(truth)
    truth_path, prediction_path = tmp_path / "truth.ome.tif", tmp_path / "pred.ome.tif"
    write_stack(truth_path, truth, z_um=TRUTH_Z, pixel_um=0.1)
    write_stack(
        prediction_path,
        prediction,
        z_um=PRED_Z,
        pixel_um=0.1,
        metadata={"reconstruction": {"input_z_um": [0.5, 2.0]}},
    )
    return {"truth": truth, "prediction": prediction, "truth_path": truth_path, "prediction_path": prediction_path}


def _read_csv(path):
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]}


def _run_error(capsys, argv):
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


def test_csv_holds_psnr_nrmse_ssim_of_the_matched_planes(stacks, tmp_path, capsys):
    csv_path = tmp_path / "scores" / "scores.csv"
    argv = ["evaluate", str(stacks["prediction_path"]), str(stacks["truth_path"]), "--csv", str(csv_path)]
    assert cli_main.main(argv) == 0
    table = _read_csv(csv_path)
    assert list(table) == ["z_um", "truth_z_um", "psnr_db", "nrmse", "ssim"]
    truth = stacks["truth"][MATCHED_TRUTH].astype(np.float64)
    pred = stacks["prediction"][MATCHED_PRED].astype(np.float64)
    np.testing.assert_allclose(table["z_um"], [0.5, 1.0, 1.5, 2.0000001])
    np.testing.assert_allclose(table["truth_z_um"], [0.5, 1.0, 1.5, 2.0])

    # Golden values from the equations (numpy) and scikit-image: one data
    # range for every plane, the peak-to-peak span of the matched truth planes.
    data_range = truth.max() - truth.min()
    mse = ((truth - pred) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(table["psnr_db"], 10 * np.log10(data_range**2 / mse), rtol=1e-10)
    np.testing.assert_allclose(
        table["nrmse"], np.sqrt(mse) / np.sqrt((truth**2).mean(axis=(1, 2))), rtol=1e-10
    )
    np.testing.assert_allclose(
        table["ssim"],
        [skimage.metrics.structural_similarity(t, p, data_range=data_range) for t, p in zip(truth, pred)],
        rtol=1e-10,
    )
    # And exactly what keras_rmz.metrics gives for the same planes.
    for i, (t, p) in enumerate(zip(truth, pred)):
        assert table["psnr_db"][i] == metrics.psnr(t, p, data_range=data_range)
        assert table["nrmse"][i] == metrics.nrmse(t, p)
        assert table["ssim"][i] == metrics.ssim(t, p, data_range=data_range)
    np.testing.assert_allclose(
        table["psnr_db"], metrics.per_plane("psnr", truth, pred), rtol=1e-12
    )

    out = capsys.readouterr().out
    assert "4 of 5 PREDICTION planes" in out and "1 without a TRUTH plane" in out
    summary = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in (["mean"], ["min"], ["max"])}
    assert float(summary["mean"][0]) == pytest.approx(table["psnr_db"].mean(), abs=0.006)
    assert float(summary["min"][0]) == pytest.approx(table["psnr_db"].min(), abs=0.006)
    assert float(summary["min"][2]) == pytest.approx(table["ssim"].min(), abs=6e-5)
    assert float(summary["max"][1]) == pytest.approx(table["nrmse"].max(), abs=6e-5)
    # The CSV was written atomically: nothing else left in its folder.
    assert [p.name for p in csv_path.parent.iterdir()] == ["scores.csv"]


def test_data_range_option(stacks, tmp_path):
    csv_path = tmp_path / "s.csv"
    argv = ["evaluate", str(stacks["prediction_path"]), str(stacks["truth_path"]), "--csv", str(csv_path)]
    assert cli_main.main([*argv, "--data-range", "1000"]) == 0
    table = _read_csv(csv_path)
    truth = stacks["truth"][MATCHED_TRUTH].astype(np.float64)
    pred = stacks["prediction"][MATCHED_PRED].astype(np.float64)
    mse = ((truth - pred) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(table["psnr_db"], 10 * np.log10(1000.0**2 / mse), rtol=1e-10)
    np.testing.assert_allclose(
        table["ssim"], [skimage.metrics.structural_similarity(t, p, data_range=1000.0) for t, p in zip(truth, pred)]
    )


def test_identical_stacks_give_infinite_psnr_and_zero_error(stacks, tmp_path, capsys):
    csv_path = tmp_path / "s.csv"
    assert cli_main.main(["evaluate", str(stacks["truth_path"]), str(stacks["truth_path"]), "--csv", str(csv_path)]) == 0
    table = _read_csv(csv_path)
    assert np.all(np.isinf(table["psnr_db"])) and np.all(table["nrmse"] == 0) and np.allclose(table["ssim"], 1)
    assert "7 of 7 PREDICTION planes" in capsys.readouterr().out


def test_figure_is_a_png(stacks, tmp_path):
    figure = tmp_path / "psnr.png"
    assert cli_main.main(["evaluate", str(stacks["prediction_path"]), str(stacks["truth_path"]), "--figure", str(figure)]) == 0
    assert figure.read_bytes().startswith(PNG_SIGNATURE)


def test_z_tolerance_option(stacks, tmp_path, capsys):
    # 0.01 µm leaves the plane at 2.0000001 µm matched; 1e-8 µm does not.
    argv = ["evaluate", str(stacks["prediction_path"]), str(stacks["truth_path"])]
    assert cli_main.main([*argv, "--z-tolerance", "1e-8"]) == 0
    assert "3 of 5 PREDICTION planes" in capsys.readouterr().out


def test_plain_tiff_truth_needs_z_step(stacks, tmp_path, capsys):
    raw = tmp_path / "truth_raw.tif"
    tifffile.imwrite(raw, stacks["truth"])
    argv = ["evaluate", str(stacks["prediction_path"]), str(raw)]
    line = _run_error(capsys, argv)
    assert "--z-step" in line
    assert cli_main.main([*argv, "--z-step", "0.5", "--pixel-size", "0.1"]) == 0
    # The prediction records its z: the fill values do not replace them.
    assert "4 of 5 PREDICTION planes" in capsys.readouterr().out


def test_match_planes_pairs_each_truth_plane_once():
    prediction_z = np.array([0.0, 0.02, 0.5, 0.98, 7.0])
    truth_z = np.array([1.0, 0.5, 0.0])
    p, t = match_planes(prediction_z, truth_z, tolerance_um=0.05)
    # 0.0 and 0.02 both lie near truth 0.0: the nearer one (0.0) wins.
    assert p.tolist() == [0, 2, 3] and t.tolist() == [2, 1, 0]


# ---------------------------------------------------------------------------
# User errors: one line on stderr, exit code 2


def test_no_matching_planes(stacks, tmp_path, capsys):
    shifted = tmp_path / "shifted.ome.tif"
    write_stack(shifted, stacks["truth"], z_um=TRUTH_Z + 0.25, pixel_um=0.1)
    line = _run_error(capsys, ["evaluate", str(shifted), str(stacks["truth_path"])])
    assert line.startswith("keras-rmz evaluate: error: no plane of PREDICTION")


def test_plane_size_mismatch(stacks, tmp_path, capsys):
    small = tmp_path / "small.ome.tif"
    write_stack(small, stacks["truth"][:, :20], z_um=TRUTH_Z, pixel_um=0.1)
    line = _run_error(capsys, ["evaluate", str(small), str(stacks["truth_path"])])
    assert "same size" in line and "(20, 28)" in line


def test_missing_file(stacks, tmp_path, capsys):
    line = _run_error(capsys, ["evaluate", str(tmp_path / "absent.tif"), str(stacks["truth_path"])])
    assert "no such file" in line


def test_not_a_tiff(stacks, tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_text("not an image")
    line = _run_error(capsys, ["evaluate", str(stacks["prediction_path"]), str(bad)])
    assert "not a readable TIFF" in line


def test_constant_truth_needs_data_range(tmp_path, capsys):
    flat = tmp_path / "flat.ome.tif"
    write_stack(flat, np.full((2, 16, 16), 5.0, np.float32), z_um=[0.0, 1.0], pixel_um=0.1)
    line = _run_error(capsys, ["evaluate", str(flat), str(flat)])
    assert "--data-range" in line


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--csv", "scores.txt"], "--csv must end in .csv"),
        (["--figure", "psnr.pdf"], "--figure must end in .png"),
        (["--data-range", "-1"], "must be a number > 0"),
        (["--z-tolerance", "abc"], "must be a number > 0"),
    ],
)
def test_bad_arguments(stacks, capsys, extra, expected):
    line = _run_error(capsys, ["evaluate", str(stacks["prediction_path"]), str(stacks["truth_path"]), *extra])
    assert line.startswith("keras-rmz evaluate: error:")
    assert expected in line


def test_missing_truth_argument(stacks, capsys):
    line = _run_error(capsys, ["evaluate", str(stacks["prediction_path"])])
    assert "the following arguments are required: TRUTH" in line
