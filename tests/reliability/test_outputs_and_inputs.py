"""Fault injection: outputs that cannot be written or already exist, writers
killed midway, and inputs that used to get a late or wrong diagnosis
(issue "Reliability"). Each case checks the error class or exit code, that
the message names the problem and what is accepted, that nothing was
written, and that no deep-learning backend was started before the error."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile

from keras_rmz.io import Stack, read_stack, write_stack

BACKENDS = ("tensorflow", "jax", "torch")


def _cli(*argv, cwd=None):
    """``keras-rmz ARGV`` in a fresh process: (exit code, stderr, backends
    imported when it returned)."""
    script = textwrap.dedent(f"""
        import json, sys
        from keras_rmz.cli.main import main
        code = main({list(map(str, argv))!r})
        print(json.dumps([m for m in {BACKENDS!r} if m in sys.modules]))
        sys.exit(code)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, timeout=300)
    backends = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None
    return done.returncode, done.stderr.strip(), backends


@pytest.fixture(scope="module")
def stack_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "beads.ome.tif"
    data = np.random.default_rng(0).integers(0, 1000, (9, 48, 48)).astype(np.uint16)
    write_stack(path, Stack(data, np.arange(9) * 0.5, 0.1, {"modality": "widefield"}))
    return path


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder no file can be written to, for root as well (a read-only
    mount) when this process is root."""
    if os.geteuid() == 0:
        if not os.path.isdir("/sys") or _can_write("/sys"):
            pytest.skip("no read-only folder on this machine")
        yield "/sys"
        return
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    yield str(folder)
    folder.chmod(0o755)


def _can_write(folder):
    try:
        with open(os.path.join(folder, ".probe"), "xb"):
            pass
        os.unlink(os.path.join(folder, ".probe"))
        return True
    except OSError:
        return False


def _reconstruct(stack_path, output, *extra):
    return ("reconstruct", stack_path, "--input-planes", "0", "4", "8", "--output-z", "1", "2",
            "--preset", "recurrent_mz_beads_m3", "-o", output, "-q", *extra)


# --- Outputs ------------------------------------------------------------------


def test_a_read_only_output_folder_is_refused_before_any_work(stack_path, read_only_folder):
    code, err, backends = _cli(*_reconstruct(stack_path, f"{read_only_folder}/recon.ome.tif"))
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert f"cannot write --output '{read_only_folder}/recon.ome.tif'" in err and "not writable" in err
    assert backends == []


def test_a_figure_into_a_read_only_folder_is_refused_before_the_volume_is_written(stack_path, read_only_folder,
                                                                                  tmp_path):
    output = tmp_path / "recon.ome.tif"
    code, err, backends = _cli(*_reconstruct(stack_path, output, "--figure", f"{read_only_folder}/recon.png"))
    assert code == 2 and "cannot write --figure" in err and backends == []
    assert not output.exists()


@pytest.mark.parametrize("command", ["reconstruct", "evaluate"])
def test_an_existing_output_is_kept_without_overwrite(stack_path, tmp_path, command):
    output = tmp_path / ("recon.ome.tif" if command == "reconstruct" else "scores.csv")
    output.write_text("the user's file")
    argv = (_reconstruct(stack_path, output) if command == "reconstruct"
            else ("evaluate", stack_path, stack_path, "--csv", output))
    code, err, backends = _cli(*argv)
    assert code == 2 and f"'{output}' exists; pass --overwrite to replace it" in err and backends == []
    assert output.read_text() == "the user's file"
    if command == "evaluate":  # (reconstruct with --overwrite is run in tests/cli)
        assert _cli(*argv, "--overwrite")[0] == 0
        assert output.read_text().startswith("z_um,")


def test_a_killed_write_stack_leaves_no_temporary_after_the_next_write(tmp_path):
    path = tmp_path / "volume.ome.tif"
    write_stack(path, Stack(np.ones((2, 8, 8), np.float32), [0.0, 1.0], 0.1))
    old = path.read_bytes()
    # The writer is killed while tifffile writes: it has written part of the file.
    script = textwrap.dedent(f"""
        import time, numpy as np, tifffile
        from keras_rmz.io import Stack, write_stack

        def slow(path, data, **kwargs):
            with open(path, "wb") as handle:
                handle.write(b"II*" + bytes(100000))
            print("writing", flush=True)
            time.sleep(60)

        tifffile.imwrite = slow
        write_stack({str(path)!r}, Stack(np.zeros((50, 64, 64), np.float32), np.arange(50.0), 0.1))
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert len(left) == 1 and path.read_bytes() == old  # the old file is intact
    write_stack(path, Stack(np.zeros((3, 8, 8), np.float32), [0.0, 1.0, 2.0], 0.1))
    assert read_stack(path).shape == (3, 8, 8)
    assert [p.name for p in tmp_path.iterdir()] == ["volume.ome.tif"]


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    """The disk fills up halfway through the write (ENOSPC from the write
    itself): the error reaches the caller as OSError(ENOSPC), the old file
    is intact, and the partial temporary is removed."""
    import errno

    path = tmp_path / "volume.ome.tif"
    write_stack(path, Stack(np.ones((2, 8, 8), np.float32), [0.0, 1.0], 0.1))
    old = path.read_bytes()

    def full_disk(target, data, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"II*" + bytes(4096))
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(tifffile, "imwrite", full_disk)
    with pytest.raises(OSError) as error:
        write_stack(path, Stack(np.zeros((40, 64, 64), np.float32), np.arange(40.0), 0.1))
    assert error.value.errno == errno.ENOSPC
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["volume.ome.tif"]


def test_concurrent_writers_to_one_output_leave_one_whole_file(tmp_path):
    """Four processes write different stacks to one path at once, five times
    each: the file read afterwards is one writer's whole stack, and no
    temporary is left."""
    path = tmp_path / "volume.ome.tif"
    script = textwrap.dedent("""
        import sys, numpy as np
        from keras_rmz.io import Stack, write_stack
        k = int(sys.argv[1])
        for _ in range(5):
            write_stack(sys.argv[2], Stack(np.full((20, 128, 128), k, np.float32), np.arange(20.0), 0.1))
    """)
    writers = [subprocess.Popen([sys.executable, "-c", script, str(k), str(path)]) for k in range(1, 5)]
    assert [w.wait(timeout=300) for w in writers] == [0] * 4
    stack = read_stack(path)
    assert stack.shape == (20, 128, 128) and stack.data.min() == stack.data.max() in (1, 2, 3, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["volume.ome.tif"]


# --- Inputs -------------------------------------------------------------------


def test_read_stack_on_a_folder_says_it_is_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder; read_stack reads one TIFF / OME-TIFF file"):
        read_stack(tmp_path)


def test_negative_pixel_sizes_are_named_as_invalid_not_missing(tmp_path, stack_path):
    path = tmp_path / "negative.ome.tif"
    tifffile.imwrite(path, np.zeros((5, 16, 16), np.uint16), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": -0.1, "PhysicalSizeY": -0.1, "PhysicalSizeZ": 0.5})
    with pytest.raises(ValueError, match=r"does not record a valid pixel size \(it records PhysicalSizeX = '-0.1', "
                                         r"which is not a length > 0; pass pixel_um=\)"):
        read_stack(path)
    assert read_stack(path, pixel_um=0.1).pixel_um == 0.1
    code, err, backends = _cli(*_reconstruct(path, tmp_path / "o.ome.tif"))
    assert code == 2 and "PhysicalSizeX = '-0.1'" in err and "--pixel-um" in err and backends == []


def test_a_2d_image_at_the_command_line_gets_a_command_line_answer(tmp_path):
    path = tmp_path / "plane.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint16))
    code, err, backends = _cli(*_reconstruct(path, tmp_path / "o.ome.tif", "--pixel-um", "0.1"))
    assert code == 2 and "is one 2D image without a z position" in err and "z-stacks (Z, Y, X)" in err
    assert "z_um=" not in err and backends == []


def test_bool_intensities_are_refused_before_the_model_loads(tmp_path):
    path = tmp_path / "mask.ome.tif"
    write_stack(path, Stack(np.zeros((9, 32, 32), bool), np.arange(9) * 0.5, 0.1))
    code, err, backends = _cli(*_reconstruct(path, tmp_path / "o.ome.tif"))
    assert code == 2 and "holds bool values; intensities must be integers or floats" in err and backends == []


def test_int8_intensities_are_read_and_reconstructed(tmp_path):
    """int8 is an integer image like any other: read as it is, normalized to
    float32 for the model, with a finite result."""
    from keras_rmz.cli.common import read_input_stack
    from keras_rmz.inference import reconstruct_volume

    class MeanModel:
        normalization = "paper"

        def check_num_inputs(self, num_inputs):
            pass

        def predict_on_batch(self, batch):
            return np.mean(batch["images"], axis=1)

    data = np.random.default_rng(0).integers(-100, 100, (3, 16, 16), dtype=np.int8)
    path = tmp_path / "int8.ome.tif"
    tifffile.imwrite(path, data, metadata={"axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeZ": 1.0})
    stack = read_input_stack(path)
    assert stack.data.dtype == np.int8 and np.array_equal(stack.data, data)
    volume = reconstruct_volume(MeanModel(), stack.data[[0, 2]], [0.0, 2.0], [1.0], verbose=False)
    assert volume.dtype == np.float32 and volume.shape == (1, 16, 16) and np.all(np.isfinite(volume))


def test_a_time_series_needs_a_time_point(tmp_path):
    """A TZCYX OME-TIFF: without a time point an error gives the frames and
    the option (before a backend starts); read_stack(time=) and --time pick
    one."""
    data = np.arange(2 * 4 * 2 * 16 * 16, dtype=np.uint16).reshape(2, 4, 2, 16, 16)
    path = tmp_path / "tzcyx.ome.tif"
    tifffile.imwrite(path, data, metadata={"axes": "TZCYX", "PhysicalSizeX": 0.1, "PhysicalSizeZ": 0.5})
    stack = read_stack(path, channel=1, time=1)
    np.testing.assert_array_equal(stack.data, data[1, :, 1])
    np.testing.assert_allclose(stack.z, [0.0, 0.5, 1.0, 1.5])
    with pytest.raises(ValueError, match=r"2 frames.*pass time= \(an int in 0..1\)"):
        read_stack(path, channel=1)
    with pytest.raises(ValueError, match=r"time must be an int in 0..1; got 2"):
        read_stack(path, channel=1, time=2)
    argv = ["reconstruct", path, "--input-planes", "0", "3", "--output-z", "0.5", "--channel", "1", "-o",
            tmp_path / "o.ome.tif", "--preset"]
    code, err, backends = _cli(*argv, "no_such_preset")
    assert code == 2 and "2 frames" in err and "pass --time T (an int in 0..1)" in err and backends == []
    code, err, backends = _cli(*argv, "no_such_preset", "--time", "1")
    assert code == 2 and "unknown preset 'no_such_preset'" in err and backends == []  # the stack was read


@pytest.mark.parametrize("side", [1, 7])
def test_planes_smaller_than_the_network_needs_are_refused_with_the_reason(side):
    from keras_rmz.models import RecurrentMZ

    model = RecurrentMZ(base_filters=4, depth=3)
    images = np.random.default_rng(0).random((3, side, side)).astype(np.float32)
    with pytest.raises(ValueError, match=rf"the planes are {side}x{side} pixels, smaller than the 8x8 that "
                                         r"RecurrentMZ needs \(2\*\*depth: 3 poolings\)"):
        model.reconstruct(images, [0.0, 1.0, 2.0], [0.5])
    assert model.reconstruct(np.ones((3, 8, 8), np.float32) * np.arange(8), [0.0, 1.0, 2.0], [0.5]).shape == (1, 8, 8)


def test_nan_outside_the_inputs_is_reported_and_left_out_of_the_figure(tmp_path, stack_path):
    from keras_rmz import plot

    stack = read_stack(stack_path)
    data = stack.data.astype(np.float32)
    data[2, 5, 5] = np.nan  # plane 2 is no input
    path = tmp_path / "nan.ome.tif"
    write_stack(path, Stack(data, stack.z, stack.pixel_um, stack.metadata))
    output, figure_path = tmp_path / "o.ome.tif", tmp_path / "o.png"
    code, err, _ = _cli(*_reconstruct(path, output, "--figure", figure_path))
    assert code == 0 and "holds 1 NaN or inf values outside the input planes; they are not used" in err
    assert output.is_file() and figure_path.is_file()
    figure = plot.reconstruction_side_views(read_stack(path), read_stack(output))
    measured = figure.axes[0].collections[0].get_array()
    assert np.isfinite(measured).all()  # the NaN pixel's line holds the other planes' maximum
    code, err, backends = _cli(*_reconstruct(path, tmp_path / "p.ome.tif", "--normalize-from-stack"))
    assert code == 2 and "--normalize-from-stack needs finite intensities" in err and backends == []


@pytest.mark.parametrize("command", ["reconstruct", "demo"])
def test_a_misspelt_preset_gets_a_suggestion_before_a_backend_starts(command, stack_path, tmp_path):
    argv = {
        "reconstruct": ("reconstruct", stack_path, "--input-planes", "0", "4", "--output-z", "1",
                        "--preset", "recurent_mz_beads_m3", "-o", tmp_path / "o.ome.tif"),
        "demo": ("demo", "--preset", "recurent_mz_beads_m3", "--out", tmp_path / "d"),
    }[command]
    code, err, backends = _cli(*argv)
    assert code == 2 and "unknown preset 'recurent_mz_beads_m3'. Did you mean 'recurrent_mz_beads_m3'?" in err
    assert "Built-in presets:" in err and backends == []
