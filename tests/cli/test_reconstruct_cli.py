"""``keras-rmz reconstruct``: through ``keras_rmz.cli.main.main``, as a user runs it."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest
import tifffile

import keras_rmz
from keras_rmz.cli import main as cli_main
from keras_rmz.cli.arguments import parse_output_z
from keras_rmz.data.normalization import compute_normalization
from keras_rmz.io import read_stack, write_stack
from keras_rmz.models import RecurrentMZ
from keras_rmz.presets import load_preset, save_preset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STACK_Z = np.arange(9) * 0.5  # 0 .. 4 µm
PIXEL_UM = 0.1


def register_subcommands(patch):
    """Lists reconstruct and evaluate in main.SUBCOMMANDS (a no-op once they
    are registered there) so that main.main's own error handling is what
    runs, and leaves out subcommand modules not written yet."""
    patch.setitem(cli_main.SUBCOMMANDS, "reconstruct", "keras_rmz.cli.reconstruct")
    patch.setitem(cli_main.SUBCOMMANDS, "evaluate", "keras_rmz.cli.evaluate")
    for name, module in list(cli_main.SUBCOMMANDS.items()):
        if importlib.util.find_spec(module) is None:
            patch.delitem(cli_main.SUBCOMMANDS, name)


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    register_subcommands(monkeypatch)


def _bead_stack(shape=(9, 32, 40), seed=0):
    """Camera counts: a background of ~100 with Poisson noise and two bright
    blobs whose brightness changes with z."""
    rng = np.random.default_rng(seed)
    num_z, height, width = shape
    yy, xx = np.mgrid[:height, :width]
    data = 100.0 + rng.poisson(10, shape)
    for (y, x), z0 in (((10, 12), 1.0), ((22, 28), 3.0)):
        for k, z in enumerate(STACK_Z[:num_z]):
            sigma = 1.5 + abs(z - z0)
            data[k] += 3000 / sigma**2 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
    return data.astype(np.uint16)


@pytest.fixture(scope="module")
def preset_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("preset") / "tiny_rmz"
    save_preset(RecurrentMZ(base_filters=4, depth=1), folder, metadata={"num_inputs": 3})
    return folder


@pytest.fixture(scope="module")
def stack_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("stacks") / "beads.ome.tif"
    write_stack(path, _bead_stack(), z_um=STACK_Z, pixel_um=PIXEL_UM, metadata={"modality": "widefield"})
    return path


@pytest.fixture(scope="module")
def reconstruction(tmp_path_factory, preset_dir, stack_path):
    """One real run: unsorted, non-uniformly spaced inputs, a figure."""
    out_dir = tmp_path_factory.mktemp("out")
    output, figure = out_dir / "recon.ome.tif", out_dir / "recon.png"
    argv = [
        "reconstruct", str(stack_path),
        "--input-z", "3.0", "0.5", "2.0",
        "--output-z", "0:4:0.5",
        "--preset", str(preset_dir),
        "-o", str(output), "--figure", str(figure),
        "--batch-size", "16", "--quiet",
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        register_subcommands(patch)
        code = cli_main.main(argv)
    return {"code": code, "output": output, "figure": figure, "dir": out_dir}


def _run_error(capsys, argv):
    """Runs the CLI expecting a user error: exit code 2 and exactly one line
    on stderr, no traceback. Returns that line."""
    try:
        code = cli_main.main(argv)
    except SystemExit as exit_:  # argparse errors exit from parse_args
        code = exit_.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------
# A real reconstruction


@pytest.mark.large  # builds and runs a model: ~1 min on JAX (an XLA compile per weight shape)
def test_writes_the_volume_at_output_z_with_pixel_size_and_metadata(reconstruction, preset_dir, stack_path):
    assert reconstruction["code"] == 0
    result = read_stack(reconstruction["output"])
    np.testing.assert_allclose(result.z, np.arange(9) * 0.5, atol=1e-9)
    assert result.shape == (9, 32, 40)
    assert result.data.dtype == np.float32
    assert result.pixel_um == pytest.approx(PIXEL_UM)
    record = result.metadata["reconstruction"]
    assert record["input_planes"] == [6, 1, 4]  # z 3.0, 0.5, 2.0, in the order given
    assert record["input_z_um"] == [3.0, 0.5, 2.0]
    assert record["preset"] == str(preset_dir)
    assert record["source"] == str(stack_path)
    assert record["model"] == "RecurrentMZ"
    assert result.metadata["keras_rmz_version"] == keras_rmz.__version__
    assert result.metadata["modality"] == "widefield"  # the source's metadata carries over
    # The output folder holds the two files and no leftover temporary file.
    assert sorted(p.name for p in reconstruction["dir"].iterdir()) == ["recon.ome.tif", "recon.png"]


@pytest.mark.large  # builds and runs a model: ~1 min on JAX (an XLA compile per weight shape)
def test_volume_equals_the_model_on_normalized_inputs_mapped_back(reconstruction, preset_dir):
    """Independent of reconstruct_volume: the paper's normalization computed
    from the three input planes, the model's own call, then the inverse."""
    data = _bead_stack()
    images = data[[6, 1, 4]].astype(np.float64)
    norm = compute_normalization(images)
    model = load_preset(str(preset_dir))
    batch = {
        "images": ((images - norm.shift) / norm.scale)[None, ..., None].repeat(9, axis=0).astype(np.float32),
        "input_z": np.tile(np.float32([3.0, 0.5, 2.0]), (9, 1)),
        "output_z": (np.arange(9) * 0.5).astype(np.float32),
    }
    expected = np.asarray(model.predict_on_batch(batch))[..., 0] * norm.scale + norm.shift
    result = read_stack(reconstruction["output"])
    np.testing.assert_allclose(result.data, expected, rtol=1e-4, atol=1e-3 * norm.scale)
    recorded = result.metadata["reconstruction"]["normalization"]
    assert recorded["shift"] == pytest.approx(norm.shift)
    assert recorded["scale"] == pytest.approx(norm.scale)


@pytest.mark.large  # builds and runs a model: ~1 min on JAX (an XLA compile per weight shape)
def test_figure_is_a_png(reconstruction):
    content = reconstruction["figure"].read_bytes()
    assert content.startswith(PNG_SIGNATURE)
    assert len(content) > 1000


@pytest.mark.large  # builds and runs a model: ~1 min on JAX (an XLA compile per weight shape)
def test_evaluate_reads_the_reconstruction(reconstruction, stack_path, capsys):
    csv_path = reconstruction["dir"] / "scores.csv"
    assert cli_main.main(["evaluate", str(reconstruction["output"]), str(stack_path), "--csv", str(csv_path)]) == 0
    rows = csv_path.read_text().strip().splitlines()
    assert len(rows) == 1 + 9
    assert "9 of 9 PREDICTION planes" in capsys.readouterr().out


@pytest.mark.large  # builds and runs a model: ~1 min on JAX (an XLA compile per weight shape)
def test_ome_zarr_in_and_out_gives_the_tiff_run_volume(reconstruction, preset_dir, stack_path, tmp_path):
    """The same run with the stack as OME-Zarr and an OME-Zarr output: the
    same volume, z, pixel size and record as the OME-TIFF run."""
    pytest.importorskip("ome_zarr")
    zarr_stack = write_stack(tmp_path / "beads.ome.zarr", read_stack(stack_path))
    output = tmp_path / "recon.ome.zarr"
    argv = ["reconstruct", str(zarr_stack), "--input-z", "3.0", "0.5", "2.0", "--output-z", "0:4:0.5",
            "--preset", str(preset_dir), "-o", str(output), "--batch-size", "16", "--quiet"]
    assert cli_main.main(argv) == 0
    tiff, zarr_volume = read_stack(reconstruction["output"]), read_stack(output)
    np.testing.assert_allclose(np.asarray(zarr_volume.data), tiff.data, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(zarr_volume.z, tiff.z)
    assert zarr_volume.pixel_um == tiff.pixel_um
    assert zarr_volume.metadata["reconstruction"]["input_planes"] == [6, 1, 4]
    # --overwrite replaces a store (a folder); without it, it is refused.
    assert cli_main.main([*argv, "--overwrite"]) == 0
    assert cli_main.main(argv) == 2


def _timelapse(tmp_path):
    from keras_rmz.io import TimeLapse, write_timelapse

    movie = np.stack([_bead_stack(seed=s) for s in range(3)]).astype(np.float32)
    return write_timelapse(tmp_path / "movie.ome.zarr", TimeLapse(movie, STACK_Z, PIXEL_UM, [0, 1, 2]))


@pytest.mark.large  # builds and runs a model per time point
def test_a_time_range_gives_one_volume_per_time_point(preset_dir, tmp_path, capsys):
    pytest.importorskip("ome_zarr")
    from keras_rmz.inference import reconstruct_stack
    from keras_rmz.io import read_timelapse

    movie = _timelapse(tmp_path)
    output = tmp_path / "volumes.ome.zarr"
    argv = ["reconstruct", str(movie), "--time", "1:2", "--input-z", "0.5", "2.0", "3.0", "--output-z", "0:4:1",
            "--preset", str(preset_dir), "-o", str(output), "--tile-size", "32"]
    assert cli_main.main(argv) == 0
    assert "2 time points x 5 planes" in capsys.readouterr().out
    result = read_timelapse(output)
    assert result.data.shape == (2, 5, 32, 40)
    assert result.metadata["source_time_indices"] == [1, 2]
    model = load_preset(preset_dir)
    for index, t in enumerate((1, 2)):
        expected = reconstruct_stack(model, read_stack(movie, time=t), [1, 4, 6], np.arange(5.0), verbose=False)
        np.testing.assert_allclose(np.asarray(result.data[index]), expected.data, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--time", "0:1", "-o", "v.ome.tif"], "writes an OME-Zarr store: give -o NAME.ome.zarr"),
        (["--time", "0:1", "--figure", "f.png"], "--figure is not available with a --time range"),
        (["--time", "0:7"], "--time: time points must lie in 0..2"),
        (["--time", "a"], "--time takes a time point T or a range"),
        (["--scheduler", "cluster"], "scheduler must be None or 'threads', 'local:N'"),
        (["--time", "0:1", "--tile-size", "48"], "--tile-size must be a multiple of 32"),
        (["--time", "0:1", "--halo", "40"], "--halo must be a multiple of 32"),
        (["--time", "1", "--halo", "32"], "--halo applies to a --time range or --scheduler only"),
    ],
)
def test_bad_time_lapse_requests(capsys, tmp_path, extra, expected):
    pytest.importorskip("ome_zarr")
    movie = _timelapse(tmp_path)
    argv = ["reconstruct", str(movie), "--input-planes", "0", "4", "--output-z", "1", "--preset", "never_loaded",
            "-o", str(tmp_path / "v.ome.zarr"), *extra]
    assert expected in _run_error(capsys, argv)


# ---------------------------------------------------------------------------
# Options reach reconstruct_volume (a spy instead of the model: no compute)


class _FakeModel:
    """What the command needs of a model, without one: the paper's
    normalization and, for a preset folder, its verified metadata."""

    normalization = "paper"

    def __init__(self, handle=None):
        self.preset_metadata = _fake_metadata(handle)


_read_preset_metadata = keras_rmz.presets.read_preset_metadata


def _fake_metadata(handle):
    """A preset folder's verified metadata; None (nothing to check) for the
    made-up names the spy tests use."""
    folder = pathlib.Path(str(handle))
    return _read_preset_metadata(folder) if folder.is_dir() else None


@pytest.fixture
def spy(monkeypatch):
    calls = []

    def fake_reconstruct_volume(model, images, input_z, output_z, **kwargs):
        calls.append({"images": np.asarray(images), "input_z": np.asarray(input_z), "output_z": np.asarray(output_z), **kwargs})
        return np.zeros((len(output_z), *np.shape(images)[1:]), np.float32)

    monkeypatch.setattr(keras_rmz.inference, "reconstruct_volume", fake_reconstruct_volume)
    monkeypatch.setattr(keras_rmz.presets, "load_preset", _FakeModel)
    monkeypatch.setattr(keras_rmz.presets, "read_preset_metadata", _fake_metadata)
    return calls


def test_options_are_passed_to_reconstruct_volume(spy, stack_path, tmp_path):
    output = tmp_path / "out.ome.tif"
    argv = [
        "reconstruct", str(stack_path), "--input-planes", "0", "-1", "4",
        "--output-z", "1.25", "0.75", "3:4:0.5",
        "--preset", "anything", "-o", str(output),
        "--tile-size", "64", "--batch-size", "3", "--no-normalize", "--precision", "bfloat16", "-q",
    ]  # fmt: skip
    assert cli_main.main(argv) == 0
    (call,) = spy
    assert call["precision"] == "bfloat16"
    np.testing.assert_array_equal(call["images"], _bead_stack()[[0, 8, 4]])
    np.testing.assert_allclose(call["input_z"], [0.0, 4.0, 2.0])
    np.testing.assert_allclose(call["output_z"], [1.25, 0.75, 3.0, 3.5, 4.0])
    assert call["tile_size"] == 64 and call["batch_size"] == 3
    assert call["normalize"] is None and call["verbose"] is False
    result = read_stack(output)
    np.testing.assert_allclose(result.z, [1.25, 0.75, 3.0, 3.5, 4.0])
    assert result.metadata["reconstruction"]["normalization"] is None
    assert result.metadata["reconstruction"]["tile_size"] == 64
    assert result.metadata["reconstruction"]["precision"] == "bfloat16"


def test_input_z_picks_the_nearest_plane_within_half_a_step(spy, stack_path, tmp_path):
    argv = [
        "reconstruct", str(stack_path), "--input-z", "1.2", "1.3", "-0.24",
        "--output-z", "1", "--preset", "anything", "-o", str(tmp_path / "o.ome.tif"), "-q",
    ]  # fmt: skip
    assert cli_main.main(argv) == 0
    # Planes at 1.0, 1.5 and 0.0 µm (step 0.5 µm: each within 0.25 µm).
    np.testing.assert_allclose(spy[0]["input_z"], [1.0, 1.5, 0.0])
    np.testing.assert_array_equal(spy[0]["images"], _bead_stack()[[2, 3, 0]])
    # The paper's normalization of the input planes ("auto"), recorded in the output.
    assert spy[0]["normalize"] == "auto"
    record = read_stack(tmp_path / "o.ome.tif").metadata["reconstruction"]
    assert record["normalization"] == pytest.approx(compute_normalization(_bead_stack()[[2, 3, 0]]).to_dict())


def test_normalize_from_stack_uses_every_plane(spy, stack_path, tmp_path):
    output = tmp_path / "o.ome.tif"
    argv = ["reconstruct", str(stack_path), "--input-planes", "2", "6", "--output-z=-0.5:0.5:0.5"]
    assert cli_main.main([*argv, "--preset", "x", "-o", str(output), "--normalize-from-stack", "-q"]) == 0
    norm = compute_normalization(_bead_stack())
    assert spy[0]["normalize"].shift == pytest.approx(norm.shift)
    assert spy[0]["normalize"].scale == pytest.approx(norm.scale)
    np.testing.assert_allclose(spy[0]["output_z"], [-0.5, 0.0, 0.5])
    assert read_stack(output).metadata["reconstruction"]["normalization_from"] == "stack"


def test_plain_tiff_needs_z_step_and_pixel_size(spy, tmp_path, capsys):
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, _bead_stack())  # no physical sizes recorded
    output = tmp_path / "o.ome.tif"
    argv = ["reconstruct", str(raw), "--input-planes", "1", "4", "--output-z", "0:2:1", "--preset", "x", "-o", str(output), "-q"]
    line = _run_error(capsys, argv)
    assert "--z-step" in line and "--pixel-size" in line
    assert cli_main.main([*argv, "--z-step", "0.25", "--pixel-size", "0.2"]) == 0
    np.testing.assert_allclose(spy[0]["input_z"], [0.25, 1.0])
    result = read_stack(output)
    assert result.pixel_um == pytest.approx(0.2)


def test_recorded_sizes_win_over_the_fill_options(spy, stack_path, tmp_path):
    output = tmp_path / "o.ome.tif"
    argv = ["reconstruct", str(stack_path), "--input-planes", "2", "--output-z", "1", "--preset", "x", "-o", str(output)]
    assert cli_main.main([*argv, "--z-step", "7", "--pixel-size", "3", "-q"]) == 0
    np.testing.assert_allclose(spy[0]["input_z"], [1.0])
    assert read_stack(output).pixel_um == pytest.approx(PIXEL_UM)


# ---------------------------------------------------------------------------
# --output-z ranges


@pytest.mark.parametrize(
    "tokens, expected",
    [
        (["0:10:0.1"], np.linspace(0.0, 10.0, 101)),  # STOP included despite rounding
        (["0:1:0.3"], [0.0, 0.3, 0.6, 0.9]),  # 0.9 is nearest to 1.0
        (["0:1:0.4"], [0.0, 0.4, 0.8]),  # 0.8 and 1.2 tie: the one before STOP
        (["0:1:0.35"], [0.0, 0.35, 0.7, 1.05]),  # 1.05 is nearest to 1.0
        (["5:3:-0.5"], [5.0, 4.5, 4.0, 3.5, 3.0]),
        (["2", "1.5,-1", "3:3:1"], [2.0, 1.5, -1.0, 3.0]),
    ],
)
def test_parse_output_z(tokens, expected):
    np.testing.assert_allclose(parse_output_z(tokens), expected, atol=1e-12)


@pytest.mark.parametrize("tokens", [["0:1:-0.1"], ["0:1"], ["1:2:0"], ["abc"], ["1", "1.0"], ["0:nan:1"]])
def test_parse_output_z_rejects(tokens):
    with pytest.raises(ValueError, match="--output-z"):
        parse_output_z(tokens)


# ---------------------------------------------------------------------------
# User errors: one line on stderr, exit code 2


def _argv(stack, preset, out, *extra):
    return ["reconstruct", str(stack), "--output-z", "0:4:1", "--preset", str(preset), "-o", str(out), "-q", *extra]


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--input-z", "9.0"], "no plane of the stack within half a z step"),
        (["--input-planes", "0", "9"], "out of range"),
        (["--input-planes", "2", "-7"], "both select plane 2"),
        (["--input-z", "1.0", "1.1"], "both select plane 2"),
        (["--input-z", "1", "--output-z", "0:x:1"], "--output-z"),
    ],
)
def test_bad_planes_and_positions(capsys, stack_path, tmp_path, extra, expected):
    # The preset is never loaded: these errors come first.
    line = _run_error(capsys, _argv(stack_path, "never_loaded", tmp_path / "o.ome.tif", *extra))
    assert line.startswith("keras-rmz reconstruct: error:")
    assert expected in line
    assert not (tmp_path / "o.ome.tif").exists()


def test_missing_stack(capsys, tmp_path):
    line = _run_error(capsys, _argv(tmp_path / "nope.tif", "never_loaded", tmp_path / "o.ome.tif", "--input-planes", "0"))
    assert "no such file" in line and "nope.tif" in line


def test_unknown_preset(capsys, stack_path, tmp_path):
    line = _run_error(capsys, _argv(stack_path, "no_such_preset", tmp_path / "o.ome.tif", "--input-planes", "0"))
    assert "unknown preset 'no_such_preset'" in line


def test_missing_preset_folder(capsys, stack_path, tmp_path):
    line = _run_error(capsys, _argv(stack_path, tmp_path / "absent", tmp_path / "o.ome.tif", "--input-planes", "0"))
    assert "absent" in line


@pytest.mark.large  # builds and runs a model: ~1 min on JAX (an XLA compile per weight shape)
def test_corrupt_preset_is_refused(capsys, stack_path, preset_dir, tmp_path):
    import shutil

    corrupt = tmp_path / "corrupt"
    shutil.copytree(preset_dir, corrupt)
    config = json.loads((corrupt / "config.json").read_text())
    config["config"]["base_filters"] = 8
    (corrupt / "config.json").write_text(json.dumps(config))
    line = _run_error(capsys, _argv(stack_path, corrupt, tmp_path / "o.ome.tif", "--input-planes", "0"))
    assert "config.json" in line


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--input-planes", "0"], "the following arguments are required: --preset"),
        (["--input-planes", "0", "--input-z", "1", "--preset", "p"], "not allowed with argument"),
        (["--input-planes", "a", "--preset", "p"], "plane index"),
        (["--input-planes", "0", "--preset", "p", "--batch-size", "0"], "'auto' or a positive integer"),
        (["--input-planes", "0", "--preset", "p", "--batch-size", "many"], "'auto' or a positive integer"),
        (["--input-planes", "0", "--preset", "p", "--tile-size", "-3"], "positive integer"),
        (["--input-planes", "0", "--preset", "p", "--precision", "float64"], "invalid choice: 'float64'"),
        (["--preset", "p"], "one of the arguments --input-z --input-planes is required"),
        (["--input-planes", "0", "--preset", "p", "--no-normalize", "--normalize-from-stack"], "not allowed with"),
    ],
)
def test_bad_arguments(capsys, stack_path, tmp_path, argv, expected):
    full = ["reconstruct", str(stack_path), "--output-z", "0:4:1", "-o", str(tmp_path / "o.ome.tif"), *argv]
    line = _run_error(capsys, full)
    assert line.startswith("keras-rmz reconstruct: error:")
    assert expected in line


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["-o", "volume.npy"], "--output must end in .tif or .tiff or .zarr"),
        (["--figure", "fig.jpg"], "--figure must end in .png"),
    ],
)
def test_bad_output_names(capsys, stack_path, tmp_path, monkeypatch, extra, expected):
    monkeypatch.chdir(tmp_path)
    argv = ["reconstruct", str(stack_path), "--input-planes", "0", "--output-z", "1", "--preset", "never_loaded"]
    if "-o" not in extra:
        argv += ["-o", "o.ome.tif"]
    line = _run_error(capsys, [*argv, *extra])
    assert expected in line


def test_refuses_to_overwrite_the_input(capsys, stack_path):
    line = _run_error(capsys, _argv(stack_path, "never_loaded", stack_path, "--input-planes", "0"))
    assert "overwrite the input" in line


def test_model_that_cannot_take_m_inputs_is_a_user_error(capsys, stack_path, tmp_path, monkeypatch):
    class TwoInputsOnly(_FakeModel):
        def check_num_inputs(self, num_inputs):
            if num_inputs != 2:
                raise ValueError(f"this model takes M = 2 input images; got M = {num_inputs}")

    monkeypatch.setattr(keras_rmz.presets, "load_preset", lambda handle: TwoInputsOnly())
    monkeypatch.setattr(keras_rmz.presets, "read_preset_metadata", _fake_metadata)
    line = _run_error(capsys, _argv(stack_path, "x", tmp_path / "o.ome.tif", "--input-planes", "0", "1", "2"))
    assert "M = 2" in line


# ---------------------------------------------------------------------------
# The preset's pixel size and trained range (keras_rmz.out_of_distribution)


@pytest.fixture(scope="module")
def guarded_preset(tmp_path_factory):
    """A tiny preset trained (it says) on 0.05 µm pixels, M = 3 inputs 1 µm
    apart, output_z - input_z in [-2, 2] µm."""
    folder = tmp_path_factory.mktemp("preset") / "guarded"
    metadata = {"num_inputs": 3, "pixel_um": 0.05, "input_spacing_um": 1.0, "output_range_um": [-2.0, 2.0],
                "modality": "widefield -> widefield"}
    save_preset(RecurrentMZ(base_filters=4, depth=1), folder, metadata=metadata)
    return folder


def test_output_beyond_the_trained_range_is_refused_before_the_model_loads(capsys, stack_path, guarded_preset,
                                                                         tmp_path, monkeypatch):
    monkeypatch.setattr(keras_rmz.presets, "load_preset", lambda handle: pytest.fail("the model was loaded"))
    # 4 - 1 = 3 µm: 0.6 µm beyond [-2.4, 2.4].
    argv = ["reconstruct", str(stack_path), "--input-z", "1", "2", "3", "--output-z", "2", "4",
            "--preset", str(guarded_preset), "-o", str(tmp_path / "o.ome.tif"), "-q"]
    line = _run_error(capsys, argv)
    assert "up to 0.6 µm outside the trained range" in line and "pass --extrapolate" in line
    assert not (tmp_path / "o.ome.tif").exists()


def test_extrapolate_warns_and_passes_the_pixel_size(spy, capsys, stack_path, guarded_preset, tmp_path):
    output = tmp_path / "o.ome.tif"
    argv = ["reconstruct", str(stack_path), "--input-z", "1", "2", "3", "--output-z", "2", "4",
            "--preset", str(guarded_preset), "-o", str(output), "-q", "--extrapolate"]
    assert cli_main.main(argv) == 0
    err = capsys.readouterr().err
    assert "keras-rmz reconstruct: warning:" in err and "extrapolation (--extrapolate)" in err
    assert f"keras-rmz finetune STACK --preset {guarded_preset}" in err
    (call,) = spy
    assert call["extrapolate"] is True and call["pixel_um"] == pytest.approx(PIXEL_UM)
    record = read_stack(output).metadata["reconstruction"]
    assert record["extrapolate"] is True and record["resampled_to_pixel_um"] == pytest.approx(0.05)
    assert "extrapolation" in record["out_of_distribution"][0]


def test_pixel_um_names_the_option_and_pixel_size_stays_an_alias(spy, tmp_path, capsys):
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, _bead_stack())  # no physical sizes recorded
    output = tmp_path / "o.ome.tif"
    argv = ["reconstruct", str(raw), "--input-planes", "1", "4", "--output-z", "0:2:1", "--z-step", "0.25",
            "--preset", "x", "-o", str(output), "-q"]
    line = _run_error(capsys, argv)
    assert "--pixel-um" in line
    assert cli_main.main([*argv, "--pixel-um", "0.065"]) == 0
    assert spy[-1]["pixel_um"] == pytest.approx(0.065)
    assert read_stack(output).pixel_um == pytest.approx(0.065)


@pytest.mark.large  # builds and runs a model
def test_resampled_volume_keeps_the_stack_pixel_size(stack_path, guarded_preset, tmp_path, capsys):
    output = tmp_path / "o.ome.tif"
    argv = ["reconstruct", str(stack_path), "--input-z", "1", "2", "3", "--output-z", "1.5", "2.5",
            "--preset", str(guarded_preset), "-o", str(output)]
    assert cli_main.main(argv) == 0
    out = capsys.readouterr().out
    assert "resampled from 0.1 to the preset's 0.05 µm pixels and back" in out
    result = read_stack(output)
    assert result.shape == (2, 32, 40) and result.pixel_um == pytest.approx(PIXEL_UM)
    assert np.isfinite(result.data).all()
    # The OME-XML itself records the stack's pixel size.
    with tifffile.TiffFile(output) as tif:
        assert 'PhysicalSizeX="0.1"' in tif.ome_metadata
