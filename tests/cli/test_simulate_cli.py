"""``keras-rmz simulate`` writes OME-TIFF stacks that read back with their physical sizes."""

import json

import numpy as np
import pytest

from keras_rmz.cli.main import main
from keras_rmz.io import read_stack
from keras_rmz.simulate import simulate_stack


def test_simulate_writes_paired_stacks_with_physical_sizes(tmp_path, capsys):
    out = tmp_path / "beads"
    code = main(
        ["simulate", "beads", "--out", str(out), "--count", "2", "--confocal", "--shape", "5", "24", "20"]
        + ["--seed", "3", "--z-step", "0.2", "--pixel", "0.15"]
    )
    assert code == 0
    names = sorted(p.name for p in out.glob("*.ome.tif"))
    assert names == [
        "beads_0000_confocal.ome.tif",
        "beads_0000_widefield.ome.tif",
        "beads_0001_confocal.ome.tif",
        "beads_0001_widefield.ome.tif",
    ]
    wide = read_stack(out / "beads_0001_widefield.ome.tif")
    conf = read_stack(out / "beads_0001_confocal.ome.tif")
    for stack, modality in ((wide, "widefield"), (conf, "confocal")):
        assert stack.shape == (5, 24, 20)
        assert stack.data.dtype == np.uint16
        np.testing.assert_allclose(stack.z, np.arange(5) * 0.2)
        assert stack.pixel_um == pytest.approx(0.15)
        assert stack.metadata["modality"] == modality and stack.metadata["seed"] == 4  # seed S + i
    # The file is exactly what the Python API makes with that seed.
    expected = simulate_stack("beads", "widefield", shape=(5, 24, 20), z_step_um=0.2, pixel_um=0.15, seed=4)
    np.testing.assert_array_equal(wide.data, expected.data)
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["count"] == 2 and manifest["first_seed"] == 3
    assert manifest["stacks"][1] == {
        "index": 1,
        "seed": 4,
        "widefield": "beads_0001_widefield.ome.tif",
        "confocal": "beads_0001_confocal.ome.tif",
    }


def test_simulate_widefield_only_by_default_and_noise_free_option(tmp_path):
    out = tmp_path / "worms"
    assert main(["simulate", "nuclei", "--out", str(out), "--shape", "3", "16", "16", "--seed", "0", "--no-noise"]) == 0
    assert sorted(p.name for p in out.glob("*.ome.tif")) == ["nuclei_0000_widefield.ome.tif"]
    stack = read_stack(out / "nuclei_0000_widefield.ome.tif")
    assert stack.data.dtype == np.float32
    np.testing.assert_allclose(stack.z, [0.0, 0.2, 0.4])  # nuclei default: 0.2 µm steps
    assert stack.pixel_um == pytest.approx(0.1)


def test_simulate_refuses_to_overwrite_without_flag(tmp_path, capsys):
    args = ["simulate", "beads", "--out", str(tmp_path), "--shape", "2", "8", "8", "--seed", "1"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
    assert main(args + ["--overwrite"]) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--count", "0"], "--count must be >= 1"),
        (["--shape", "0", "8", "8"], "--shape must be three positive integers"),
        (["--z-step", "-0.1"], "--z-step must be a number > 0"),
        (["--pixel", "nan"], "--pixel must be a number > 0"),
        (["--density", "-1"], "--density must be a number >= 0"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    code = main(["simulate", "beads", "--out", str(out), "--shape", "2", "8", "8"] + extra)
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("keras-rmz simulate: error:")
    assert not out.exists()


def test_unknown_sample_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "cells", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "invalid choice: 'cells'" in capsys.readouterr().err


def test_randomized_stacks_are_the_api_s_and_record_their_draw(tmp_path):
    from keras_rmz.simulate import randomized_stack

    out = tmp_path / "mixed"
    args = ["simulate", "randomized", "--out", str(out), "--count", "2", "--shape", "5", "24", "24", "--seed", "8"]
    assert main(args + ["--z-step", "0.4"]) == 0
    stack = read_stack(out / "randomized_0001_widefield.ome.tif")
    expected = randomized_stack("widefield-v1", shape=(5, 24, 24), z_step_um=0.4, seed=9)
    np.testing.assert_allclose(stack.data, expected.data, rtol=1e-6)
    assert stack.pixel_um == pytest.approx(0.1)
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["distribution"] == "widefield-v1" and manifest["density_per_um3"] is None


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--density", "0.1"], "--density does not apply to 'randomized' stacks"),
        (["--distribution", "confocal-v9"], "unknown distribution 'confocal-v9'"),
    ],
)
def test_bad_randomized_arguments_exit_before_any_work(tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    assert main(["simulate", "randomized", "--out", str(out)] + extra) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


@pytest.mark.parametrize("sample", ["spots", "filaments"])
def test_spots_and_filaments_are_samples_of_their_own(tmp_path, sample):
    out = tmp_path / sample
    assert main(["simulate", sample, "--out", str(out), "--shape", "5", "24", "24", "--seed", "1"]) == 0
    stack = read_stack(out / f"{sample}_0000_widefield.ome.tif")
    assert stack.metadata["sample"] == sample and stack.data.max() > stack.data.min()
