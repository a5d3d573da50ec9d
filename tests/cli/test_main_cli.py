"""``keras-rmz`` itself: the backends' log lines kept off the terminal unless
``--verbose``, no abbreviated options, ``keras-rmz presets`` alone lists."""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_rmz.cli import main as cli_main
from keras_rmz.cli.quiet import LogLineFilter, is_backend_log_line, quiet_backend_logs
from keras_rmz.io import write_stack

# Lines TensorFlow 2.21 wrote on importing it and on its first training step
# (copied from a terminal).
TF_LINES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796617057.240089   15672 port.cc:153] oneDNN custom operations are on. You may see slightly "
    b"different numerical results due to floating-point round-off errors from different computation orders. To turn "
    b"them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    b"I0000 00:00:1796617057.463445   15672 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    b"available CPU instructions in performance-critical operations.",
    b"To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX512_FP16 AVX_VNNI AMX_TILE "
    b"AMX_INT8 AMX_BF16 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.",
    b"E0000 00:00:1796617072.208586   15672 util.cc:131] oneDNN supports DT_INT32 only on platforms with AVX-512. "
    b"Falling back to the default Eigen-based implementation if present.",
    b"W0000 00:00:1796617072.208586   15672 meta_optimizer.cc:967] remapper failed",
]
# Lines of our own (or of Python) that look a little like them.
OWN_LINES = [
    b"Input z 1, 4, 7 um",
    b"WARNING: the requested output planes lie 2 um beyond the trained range",
    b"To reconstruct a time-lapse, pass --time",
    b"E: 3 errors",
    b"I0000 is not a log line without its source location",
]


def _filtered(chunks):
    written = []
    log_filter = LogLineFilter(written.append)
    for chunk in chunks:
        log_filter.feed(chunk)
    log_filter.close()
    return written


@pytest.mark.parametrize("line", TF_LINES)
def test_backend_log_lines_are_recognized(line):
    assert is_backend_log_line(line)


@pytest.mark.parametrize("line", OWN_LINES)
def test_other_lines_are_not(line):
    assert not is_backend_log_line(line)


def test_the_filter_drops_log_lines_and_keeps_everything_else_in_order():
    stream = b"".join(line + b"\n" for pair in zip(TF_LINES, OWN_LINES + [b"last"]) for line in pair)
    expected = b"".join(line + b"\n" for line in OWN_LINES + [b"last"])
    assert b"".join(_filtered([stream])) == expected
    # The same, whatever the chunks the pipe delivers.
    rng = np.random.default_rng(0)
    cuts = sorted(rng.choice(len(stream), 40, replace=False))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    assert b"".join(_filtered(chunks)) == expected


def test_a_progress_bar_is_written_as_it_comes():
    written = _filtered([b"\rreconstruct:  10%|#", b"#", b"   | 1/10", b"\rreconstruct: 100%|"])
    # Every piece is written in the chunk it came in, not held for a line end.
    assert written == [b"\r", b"reconstruct:  10%|#", b"#", b"   | 1/10", b"\r", b"reconstruct: 100%|"]


def test_a_line_that_may_be_a_log_line_is_held_until_its_end():
    written = []
    log_filter = LogLineFilter(written.append)
    log_filter.feed(b"I0000 00:00:17.5   1 port.cc:1")
    assert written == []
    log_filter.feed(b"53] on\nInput z: 1")
    assert written == []
    log_filter.feed(b"\n")
    assert written == [b"Input z: 1\n"]
    log_filter.feed(b"Trailing, no end")
    log_filter.close()
    assert written[-1] == b"Trailing, no end"


def test_quiet_backend_logs_filters_file_descriptor_2(capfd, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    with quiet_backend_logs():
        os.write(2, TF_LINES[1] + b"\nour line\n" + TF_LINES[0] + b"\n")
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "our line\nafter\n"
    with quiet_backend_logs(enabled=False):
        os.write(2, TF_LINES[1] + b"\n")
    assert capfd.readouterr().err == TF_LINES[1].decode() + "\n"


def test_verbose_before_or_after_the_command():
    parser = cli_main.build_parser()
    assert not getattr(parser.parse_args(["presets", "list"]), "verbose", False)
    assert parser.parse_args(["--verbose", "presets", "list"]).verbose
    assert parser.parse_args(["presets", "--verbose", "list"]).verbose
    assert parser.parse_args(["presets", "list", "--verbose"]).verbose


@pytest.mark.parametrize("argv", [
    ["reconstruct", "s.tif", "--input-z", "1", "--output-z", "1", "--preset", "p", "-o", "v.tif", "--overwr"],
    ["finetune", "s.tif", "--preset", "p", "-o", "out", "--minute", "3"],
    ["presets", "entry", "folder", "--rev", "ab"],
])
def test_options_are_never_abbreviated(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main.build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_presets_alone_lists_the_presets(capsys):
    assert cli_main.main(["presets"]) == 0
    listing = capsys.readouterr().out
    assert cli_main.main(["presets", "list"]) == 0
    assert capsys.readouterr().out == listing and listing.startswith("NAME")


@pytest.mark.large  # a fresh interpreter imports the backend and runs a small model
def test_a_reconstruction_prints_no_backend_log_line(tmp_path, preset_dir_for_quiet):
    stack = tmp_path / "s.ome.tif"
    rng = np.random.default_rng(0)
    write_stack(stack, rng.poisson(100, (9, 24, 24)).astype(np.uint16), z_um=np.arange(9) * 0.5, pixel_um=0.1)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    argv = [sys.executable, "-m", "keras_rmz.cli.main", "reconstruct", str(stack), "--input-z", "0.5", "2", "3.5",
            "--output-z", "0.5:3.5:0.5", "--preset", str(preset_dir_for_quiet), "-o", str(tmp_path / "v.ome.tif")]
    result = subprocess.run(argv, env=env, capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stderr.replace(b"\r", b"\n").splitlines()
    assert not [line for line in lines if is_backend_log_line(line)], result.stderr.decode()
    assert b"wrote" in result.stdout


@pytest.fixture
def preset_dir_for_quiet(tmp_path):
    from keras_rmz.models import RecurrentMZ
    from keras_rmz.presets import save_preset

    return save_preset(RecurrentMZ(base_filters=4, depth=1), tmp_path / "tiny", metadata={"num_inputs": 3})
