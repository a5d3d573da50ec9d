"""``keras-rmz train``: a config trains, logs, checkpoints, stops, resumes at the
exact step and ends in a preset; bad configs end in one line. Also runs
examples/finetune.py."""

import csv
import importlib.util
import json
import math
import pathlib

import h5py
import keras
import numpy as np
import pytest
import yaml

from keras_rmz.cli import main as cli_main
from keras_rmz.training import run as training_run
from keras_rmz.io import write_stack
from keras_rmz.models import RecurrentMZ
from keras_rmz.presets import load_preset, save_preset
from keras_rmz.simulate import simulate_stack
from keras_rmz.training import TrainingCheckpoint
from keras_rmz.training.config import training_config_from_dict

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_MODEL = {"class": "RecurrentMZ", "config": {"base_filters": 2, "depth": 1}}
TINY_DISCRIMINATOR = {"config": {"base_filters": 2, "num_blocks": 2, "dense_units": 4}}
# 9 planes 0.5 µm apart (0..4 µm), 32 x 32 pixels: M = 2 inputs 2 µm apart fit.
TINY_SIMULATE = {"sample": "beads", "shape": [9, 32, 32], "z_step_um": 0.5, "density_per_um3": 0.05}
TINY_DATA = {"num_inputs": 2, "input_spacing_um": 2.0, "patch_size": 16, "batch_size": 2}


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    monkeypatch.setitem(cli_main.SUBCOMMANDS, "train", "keras_rmz.cli.train")
    for name, module in list(cli_main.SUBCOMMANDS.items()):
        if importlib.util.find_spec(module) is None:
            monkeypatch.delitem(cli_main.SUBCOMMANDS, name)


def adversarial_config(output):
    return {
        "output": str(output),
        "model": TINY_MODEL,
        "discriminator": TINY_DISCRIMINATOR,
        "data": {"simulate": {**TINY_SIMULATE, "count": 2, "seed": 0}, **TINY_DATA},
        "validation": {"simulate": {"count": 1}, "steps": 1},
        # 5 steps in epochs of 2: the last epoch is one step.
        "training": {"steps": 5, "steps_per_epoch": 2, "checkpoint_every": 2},
        "optimizer": {"learning_rate": 1e-3},
    }


def write_config(path, mapping):
    path.write_text(yaml.safe_dump(mapping))
    return path


def run_cli(capsys, argv):
    code = cli_main.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_error(capsys, argv):
    """A user error: exit code 2, one line on stderr, no traceback."""
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


def read_log(folder):
    with open(folder / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def checkpoint_arrays(folder, group):
    with h5py.File(folder / "checkpoint.h5", "r") as handle:
        return [handle[group][str(i)][()] for i in range(len(handle[group]))]


# ---------------------------------------------------------------------------
# Pure helpers


def test_plan_segments_cover_every_step_once():
    plan = training_run.plan_segments
    # (first_epoch, end_epoch, offset, length): None = whole epochs.
    assert plan(0, 4, 2) == [(0, 2, 0, None)]
    assert plan(0, 5, 2) == [(0, 2, 0, None), (2, 3, 0, 1)]
    assert plan(1, 5, 2) == [(0, 1, 1, 1), (1, 2, 0, None), (2, 3, 0, 1)]
    assert plan(3, 5, 2) == [(1, 2, 1, 1), (2, 3, 0, 1)]
    assert plan(5, 5, 2) == []
    assert plan(0, 3, 5) == [(0, 1, 0, 3)]
    for start in range(0, 11):
        steps = []
        for first, end, offset, length in plan(start, 11, 3):
            for epoch in range(first, end):
                count = 3 if length is None else length
                steps += [epoch * 3 + offset + i for i in range(count)]
        assert steps == list(range(start, 11))


def test_normalization_source_inputs_reaches_the_datasets(tmp_path):
    # "inputs": each item is normalized with the statistics of its M drawn
    # planes, as reconstruct() normalizes at inference.
    mapping = adversarial_config(tmp_path / "run")
    mapping["data"]["normalization_source"] = "inputs"
    config = training_config_from_dict(mapping)
    train, validation, _ = training_run.build_datasets(config, tmp_path / "run", verbose=0)
    assert train.normalization_source == "inputs" and validation.normalization_source == "inputs"
    default = training_config_from_dict(adversarial_config(tmp_path / "run"))
    assert training_run.build_datasets(default, tmp_path / "run", verbose=0)[0].normalization_source == "stack"


def test_find_stack_files_pairs_widefield_with_confocal(tmp_path):
    for name in ("a_widefield.ome.tif", "a_confocal.ome.tif", "b_widefield.tif", "b_confocal.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    inputs, targets = training_run.find_stack_files(tmp_path, "confocal")
    assert [p.name for p in inputs] == ["a_widefield.ome.tif", "b_widefield.tif"]
    assert [p.name for p in targets] == ["a_confocal.ome.tif", "b_confocal.tif"]
    inputs, targets = training_run.find_stack_files(tmp_path, "inputs")
    assert [p.name for p in inputs] == ["a_widefield.ome.tif", "b_widefield.tif"] and targets is None
    (tmp_path / "c_widefield.ome.tif").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="c_widefield.ome.tif has no confocal partner c_confocal.ome.tif"):
        training_run.find_stack_files(tmp_path, "confocal")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "x.tiff").write_bytes(b"")
    (plain / "y_confocal.tif").write_bytes(b"")
    assert [p.name for p in training_run.find_stack_files(plain, "inputs")[0]] == ["x.tiff"]
    with pytest.raises(FileNotFoundError, match="holds no <name>_widefield"):
        training_run.find_stack_files(plain, "confocal")


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_learning_rate_schedule_follows_warmup_and_cosine(schedule):
    config = training_config_from_dict(
        {
            "data": {"simulate": {"count": 1}, "num_inputs": 1, "output_margin_um": 1.0},
            "training": {"steps": 20},
            "optimizer": {"learning_rate": 1e-3, "schedule": schedule, "warmup_steps": 4, "min_learning_rate": 1e-4},
        }
    )
    rate = training_run.learning_rate(config, 1e-3)
    for step in (0, 2, 4, 10, 20, 30):
        if step < 4:
            expected = 1e-3 * step / 4
        elif schedule == "constant":
            expected = 1e-3
        else:
            t = min(step - 4, 16) / 16
            expected = 1e-4 + (1e-3 - 1e-4) * 0.5 * (1 + math.cos(math.pi * t))
        assert float(keras.ops.convert_to_numpy(rate(step))) == pytest.approx(expected, rel=1e-5, abs=1e-9)
    no_schedule = training_config_from_dict(
        {"data": {"simulate": {"count": 1}, "num_inputs": 1, "output_margin_um": 1.0}, "training": {"steps": 20}}
    )
    assert training_run.learning_rate(no_schedule, 2e-5) == 2e-5


# ---------------------------------------------------------------------------
# Bad configs: one line, exit code 2, before any training


@pytest.mark.parametrize(
    "change, words",
    [
        ({"trainig": {"steps": 3}}, ["unknown key 'trainig' at the top level", "training", "optimizer"]),
        ({"data": {**TINY_DATA, "simulate": {"count": 2}, "batchsize": 2}}, ["unknown key 'batchsize' in data",
                                                                             "batch_size"]),
        ({"data": {**TINY_DATA, "simulate": {"count": 2}, "order": "zigzag"}},
         ["data.order must be one of 'sorted', 'random', 'descending_dz'"]),
        ({"data": {**TINY_DATA, "simulate": {"count": "two"}}}, ["data.simulate.count must be an integer >= 1"]),
        ({"data": TINY_DATA}, ["data needs exactly one source", "data.folder", "data.simulate"]),
        ({"data": {**TINY_DATA, "folder": "no/such/folder"}, "validation": None},
         ["data.folder no/such/folder is not a folder"]),
        ({"model": {"class": "RecurrentMZ", "config": {"base_filter": 2}}},
         ["unknown key 'base_filter' in model.config", "base_filters", "depth"]),
    ],
)
def test_bad_configs_fail_in_one_line(tmp_path, capsys, change, words):
    mapping = adversarial_config(tmp_path / "run")
    mapping.update(change)
    line = run_error(capsys, ["train", str(write_config(tmp_path / "bad.yaml", mapping))])
    assert line.startswith("keras-rmz train: error:")
    for word in words:
        assert word in line, line


def test_missing_confocal_partner_fails_in_one_line(tmp_path, capsys):
    folder = tmp_path / "stacks"
    folder.mkdir()
    write_stack(folder / "a_widefield.ome.tif", np.zeros((9, 32, 32), np.uint16), z_um=np.arange(9) * 0.5,
                pixel_um=0.1)
    mapping = adversarial_config(tmp_path / "run")
    mapping["data"] = {**TINY_DATA, "folder": str(folder), "targets": "confocal"}
    mapping["validation"] = None
    line = run_error(capsys, ["train", str(write_config(tmp_path / "c.yaml", mapping))])
    assert "a_widefield.ome.tif has no confocal partner a_confocal.ome.tif" in line


def test_bad_options_fail_in_one_line(tmp_path, capsys):
    path = write_config(tmp_path / "a.yaml", adversarial_config(tmp_path / "run"))
    assert "--max-minutes: must be a number > 0" in run_error(capsys, ["train", str(path), "--max-minutes", "0"])
    assert "an override is KEY=VALUE" in run_error(capsys, ["train", str(path), "--set", "training.steps"])
    assert "no training config at" in run_error(capsys, ["train", str(tmp_path / "none.yaml")])


# ---------------------------------------------------------------------------
# An adversarial run in three sessions: stopped by time, by steps, finished


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adversarial")
    config_path = write_config(folder / "tiny.yaml", adversarial_config(folder / "run"))
    output = folder / "run"
    seen = {"output": output, "config": config_path}
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(cli_main.SUBCOMMANDS, "train", "keras_rmz.cli.train")
        # Session 1: the deadline has passed when the first step ends.
        assert cli_main.main(["train", str(config_path), "--max-minutes", "0.0001", "-q"]) == 0
        seen["after_time"] = {
            "state": TrainingCheckpoint.read_state(output),
            "run": json.loads((output / "run.json").read_text()),
            "rows": read_log(output),
        }
        # Session 2: two more steps: ends epoch 0, stops one step into epoch 1.
        assert cli_main.main(["train", str(config_path), "--max-steps", "2", "-q"]) == 0
        seen["after_steps"] = {"state": TrainingCheckpoint.read_state(output), "rows": read_log(output)}
        # Session 3: to the end.
        assert cli_main.main(["train", str(config_path), "-q"]) == 0
        seen["done"] = {"state": TrainingCheckpoint.read_state(output), "run": json.loads((output / "run.json").read_text())}
        # The same config in one session, for comparison.
        assert cli_main.main(["train", str(config_path), "--output", str(folder / "straight"), "-q"]) == 0
    seen["straight"] = folder / "straight"
    return seen


@pytest.mark.large
def test_max_minutes_stops_after_the_step_in_progress(sessions):
    state = sessions["after_time"]["state"]
    assert (state["epoch"], state["step"], state["global_step"]) == (0, 1, 1)
    run = sessions["after_time"]["run"]
    assert run["state"] == "stopped" and run["steps_done"] == 1 and run["total_steps"] == 5
    assert run["sessions"][0]["stopped_by"] == "--max-minutes"
    assert sessions["after_time"]["rows"] == []  # no epoch completed yet


@pytest.mark.large
def test_resumed_session_continues_the_step_counter_and_the_log(sessions):
    state = sessions["after_steps"]["state"]
    assert (state["epoch"], state["step"], state["global_step"]) == (1, 1, 3)
    rows = sessions["after_steps"]["rows"]
    assert [row["epoch"] for row in rows] == ["0"] and rows[0]["step"] == "2"
    state = sessions["done"]["state"]
    assert (state["epoch"], state["global_step"]) == (3, 5)
    rows = read_log(sessions["output"])
    # One row per epoch, written when the epoch ends, whatever session it ends in.
    assert [(row["epoch"], row["step"]) for row in rows] == [("0", "2"), ("1", "4"), ("2", "5")]
    for column in ("g_loss", "d_loss", "adversarial_loss", "berhu_loss", "val_psnr", "val_ssim", "val_loss"):
        assert all(math.isfinite(float(row[column])) for row in rows), column


@pytest.mark.large
def test_stopped_and_resumed_run_equals_an_uninterrupted_one(sessions):
    resumed, straight = sessions["output"], sessions["straight"]
    for group in ("model_weights", "optimizer_variables"):
        for a, b in zip(checkpoint_arrays(resumed, group), checkpoint_arrays(straight, group), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # Validation runs on the same weights at every epoch end.
    for a, b in zip(read_log(resumed), read_log(straight), strict=True):
        assert float(a["val_psnr"]) == pytest.approx(float(b["val_psnr"]), rel=1e-4)


@pytest.mark.large
def test_run_record_and_preset_metadata(sessions):
    run = sessions["done"]["run"]
    assert run["state"] == "done" and run["steps_done"] == 5 and run["preset"] == "preset"
    commands = [session["command"] for session in run["sessions"]]
    config = str(sessions["config"])
    assert commands == [
        f"keras-rmz train {config} --max-minutes 0.0001 --quiet",
        f"keras-rmz train {config} --max-steps 2 --quiet",
        f"keras-rmz train {config} --quiet",
    ]
    assert [(s["first_step"], s["last_step"]) for s in run["sessions"]] == [(0, 1), (1, 3), (3, 5)]
    metadata = json.loads((sessions["output"] / "preset" / "metadata.json").read_text())
    assert metadata["class_name"] == "keras_rmz>RecurrentMZ"
    assert metadata["num_inputs"] == 2 and metadata["input_spacing_um"] == 2.0
    assert metadata["z_step_um"] == pytest.approx(0.5) and metadata["pixel_um"] == pytest.approx(0.1)
    assert metadata["modality"] == "widefield -> widefield"
    # (M - 1)·Δz + Δz/2 on either side of an input plane.
    assert metadata["output_range_um"] == [-3.0, 3.0]
    assert metadata["normalization"]["method"] == "paper" and metadata["normalization"]["targets"] == "own"
    assert metadata["optics"]["na"] == 1.4 and metadata["optics"]["wavelength_um"] == pytest.approx(0.615)
    training = metadata["training"]
    assert training["steps"] == 5 and training["adversarial"] is True
    assert training["commands"] == commands and training["sessions"] == 3
    assert training["wall_time_s"] == pytest.approx(sum(s["wall_time_s"] for s in run["sessions"]), abs=0.2)
    assert training["backend"] == keras.backend.backend() and training["versions"]["keras"] == keras.__version__
    assert training["config"]["loss"]["adversarial_weight"] == 0.5
    assert "fine_tuned_from" not in training  # trained from scratch
    assert training["weights"].startswith("best val_psnr")
    best = json.loads((sessions["output"] / "best.json").read_text())
    assert metadata["metrics"]["validation"]["val_psnr"] == pytest.approx(best["value"], rel=1e-6)


@pytest.mark.large
def test_preset_holds_the_best_weights_and_loads(sessions):
    model = load_preset(str(sessions["output"] / "preset"))
    reference = RecurrentMZ(base_filters=2, depth=1)
    reference.load_weights(str(sessions["output"] / "best.weights.h5"))
    rng = np.random.default_rng(0)
    batch = {
        "images": rng.random((2, 2, 16, 16, 1)).astype("float32"),
        "input_z": np.float32([[0.0, 2.0], [0.0, 2.0]]),
        "output_z": np.float32([0.5, 3.0]),
    }
    np.testing.assert_allclose(
        np.asarray(model.predict_on_batch(batch)), np.asarray(reference.predict_on_batch(batch)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.large
def test_finished_run_is_not_trained_again_and_changed_configs_are_refused(sessions, capsys):
    code, out, _ = run_cli(capsys, ["train", str(sessions["config"]), "-q"])
    assert code == 0 and "done, 5 steps" in out
    assert len(json.loads((sessions["output"] / "run.json").read_text())["sessions"]) == 3
    line = run_error(capsys, ["train", str(sessions["config"]), "--set", "data.batch_size=1"])
    assert "the config differs from the run" in line and "data.batch_size" in line and "--no-resume" in line


# ---------------------------------------------------------------------------
# Without a discriminator, on a folder of confocal pairs


@pytest.fixture(scope="module")
def confocal_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("confocal")
    for folder, seeds in (("train", (0, 1)), ("valid", (7,))):
        (root / folder).mkdir()
        for seed in seeds:
            for modality in ("widefield", "confocal"):
                stack = simulate_stack("beads", modality, shape=(9, 32, 32), z_step_um=0.5, density_per_um3=0.05,
                                       seed=seed)
                write_stack(root / folder / f"beads_{seed:04d}_{modality}.ome.tif", stack)
    return root


@pytest.mark.large
def test_plain_fit_on_confocal_pairs_and_no_resume(confocal_folders, tmp_path, capsys):
    mapping = {
        "output": str(tmp_path / "run"),
        "model": TINY_MODEL,
        "data": {**TINY_DATA, "folder": str(confocal_folders / "train"), "targets": "confocal"},
        "validation": {"folder": str(confocal_folders / "valid"), "steps": 1},
        "training": {"steps": 2, "steps_per_epoch": 1},
        "optimizer": {"learning_rate": 1e-3, "schedule": "cosine", "warmup_steps": 1},
        "loss": {"adversarial_weight": 0},
    }
    path = write_config(tmp_path / "plain.yaml", mapping)
    code, out, _ = run_cli(capsys, ["train", str(path), "--max-steps", "1", "-q"])
    assert code == 0 and "stopped at step 1 of 2" in out
    # Start over: the old checkpoint, log and sessions are gone.
    code, out, _ = run_cli(capsys, ["train", str(path), "--no-resume", "-q"])
    assert code == 0 and "done, 2 steps" in out
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert len(run["sessions"]) == 1 and run["sessions"][0]["first_step"] == 0
    rows = read_log(tmp_path / "run")
    assert [(row["epoch"], row["step"]) for row in rows] == [("0", "1"), ("1", "2")]
    # A plain fit logs the content loss and metrics, no GAN terms.
    assert "d_loss" not in rows[0] and math.isfinite(float(rows[0]["val_psnr"]))
    metadata = json.loads((tmp_path / "run" / "preset" / "metadata.json").read_text())
    assert metadata["modality"] == "widefield -> confocal"
    assert metadata["training"]["adversarial"] is False
    assert metadata["training"]["data"] == {"folder": str(confocal_folders / "train"), "stacks": 2}
    assert isinstance(load_preset(str(tmp_path / "run" / "preset")), RecurrentMZ)


# ---------------------------------------------------------------------------
# examples/finetune.py


@pytest.mark.large
def test_init_preset_run_records_what_it_was_fine_tuned_from(tmp_path, capsys):
    # 4 filters, not 2: PyTorch's CPU convolution without native bfloat16
    # (no AVX512-BF16 or AMX) falls back to slow_conv2d, whose backward fails
    # in bfloat16 for layers of 2 or 3 channels ("grad_weight must be
    # contiguous"; torch 2.13 on an AMD EPYC); 4 and more train.
    base = RecurrentMZ(base_filters=4, depth=1)
    start = save_preset(base, tmp_path / "start", metadata={"description": "the starting point"})
    base_metadata = json.loads((start / "metadata.json").read_text())
    config = {
        "output": str(tmp_path / "tuned"),
        "model": {"class": "RecurrentMZ", "init_preset": str(start)},
        "data": {"simulate": {**TINY_SIMULATE, "count": 1, "seed": 0}, **TINY_DATA},
        "validation": None,
        "training": {"steps": 1, "steps_per_epoch": 1, "precision": "bfloat16"},
        "optimizer": {"learning_rate": 1e-3},
        "loss": {"adversarial_weight": 0.0},
    }
    code, _, _ = run_cli(capsys, ["train", str(write_config(tmp_path / "tune.yaml", config)), "-q"])
    assert code == 0
    # Resumed in another precision (the weights stay float32 in both).
    code, _, _ = run_cli(capsys, ["train", str(tmp_path / "tune.yaml"), "-q", "--set", "training.steps=2",
                                  "--set", "training.precision=float32"])
    assert code == 0
    run = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert [s["precision"] for s in run["sessions"]] == ["bfloat16", "float32"]
    assert "dtype" not in json.loads((tmp_path / "tuned" / "preset" / "config.json").read_text())["config"]
    training = json.loads((tmp_path / "tuned" / "preset" / "metadata.json").read_text())["training"]
    lineage = training["fine_tuned_from"]
    assert lineage["preset"] == str(start) and lineage["description"] == "the starting point"
    # The starting weights are named by their sha256, as verified on loading.
    assert lineage["sha256"] == base_metadata["sha256"]
    assert training["config"]["model"]["init_preset"] == str(start)


def test_a_run_stopped_before_its_preset_writes_the_trained_weights(tmp_path, capsys):
    # All steps done and checkpointed, then the session died before writing
    # the preset: the next session has no step to train and must write the
    # checkpoint's weights, not the starting ones.
    config = {
        "output": str(tmp_path / "run"),
        "model": TINY_MODEL,
        "data": {"simulate": {**TINY_SIMULATE, "count": 1, "seed": 0}, **TINY_DATA},
        "validation": None,
        "training": {"steps": 2, "preset_weights": "last"},
        "optimizer": {"learning_rate": 1e-2},
        "loss": {"adversarial_weight": 0.0},
    }
    path = write_config(tmp_path / "run.yaml", config)
    assert run_cli(capsys, ["train", str(path), "-q"])[0] == 0
    trained = load_preset(str(tmp_path / "run" / "preset")).get_weights()
    run_file = tmp_path / "run" / "run.json"
    run = json.loads(run_file.read_text())
    run["state"], run["preset"] = "running", None
    run_file.write_text(json.dumps(run))
    for file in (tmp_path / "run" / "preset").iterdir():
        file.unlink()
    (tmp_path / "run" / "preset").rmdir()
    code, out, _ = run_cli(capsys, ["train", str(path)])
    assert code == 0 and "resuming at step 2" in out
    rewritten = load_preset(str(tmp_path / "run" / "preset")).get_weights()
    for a, b in zip(trained, rewritten, strict=True):
        np.testing.assert_array_equal(a, b)
    assert json.loads(run_file.read_text())["state"] == "done"


def test_a_finished_run_with_a_short_last_epoch_can_be_extended(tmp_path, capsys):
    # 3 steps in epochs of 2 end with a one-step epoch, checkpointed as
    # complete. Raising the steps to 5 must go on inside that epoch and
    # give what an uninterrupted 5-step run gives.
    def config(output, steps):
        return {
            "output": str(output),
            "model": TINY_MODEL,
            "data": {"simulate": {**TINY_SIMULATE, "count": 1, "seed": 0}, **TINY_DATA},
            "validation": None,
            "training": {"steps": steps, "steps_per_epoch": 2, "preset_weights": "last"},
            "optimizer": {"learning_rate": 1e-2},
            "loss": {"adversarial_weight": 0.0},
        }

    short = write_config(tmp_path / "short.yaml", config(tmp_path / "run", 3))
    assert run_cli(capsys, ["train", str(short), "-q"])[0] == 0
    state = TrainingCheckpoint.read_state(tmp_path / "run")
    assert (state["epoch"], state["step"], state["global_step"]) == (2, 0, 3)
    longer = write_config(tmp_path / "longer.yaml", config(tmp_path / "run", 5))
    code, out, _ = run_cli(capsys, ["train", str(longer)])
    assert code == 0 and "resuming at step 3" in out
    state = TrainingCheckpoint.read_state(tmp_path / "run")
    assert (state["epoch"], state["global_step"]) == (3, 5)
    straight = write_config(tmp_path / "straight.yaml", config(tmp_path / "straight", 5))
    assert run_cli(capsys, ["train", str(straight), "-q"])[0] == 0
    for group in ("model_weights", "optimizer_variables"):
        for a, b in zip(checkpoint_arrays(tmp_path / "run", group), checkpoint_arrays(tmp_path / "straight", group),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["state"] == "done" and [(s["first_step"], s["last_step"]) for s in run["sessions"]] == [(0, 3), (3, 5)]


def test_finetune_example_trains_and_saves_a_preset(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("finetune_example", REPO / "examples" / "finetune.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    for seed in (0, 1):
        stack = simulate_stack("beads", "widefield", shape=(9, 32, 32), z_step_um=0.5, density_per_um3=0.05, seed=seed)
        write_stack(tmp_path / f"stack_{seed}.ome.tif", stack)
    start = save_preset(RecurrentMZ(base_filters=2, depth=1), tmp_path / "start")
    argv = [str(tmp_path / "stack_*.ome.tif"), "--preset", str(start), "--steps", "2", "--out", str(tmp_path / "mine"),
            "--num-inputs", "2", "--input-spacing", "2.0", "--patch-size", "16", "--batch-size", "1"]
    assert example.main(argv) == 0
    tuned = load_preset(str(tmp_path / "mine"))
    before = load_preset(str(start))
    changed = [not np.allclose(a, b) for a, b in zip(tuned.get_weights(), before.get_weights(), strict=True)]
    assert any(changed)  # two steps of Adam at 1e-4 moved the weights
    metadata = json.loads((tmp_path / "mine" / "metadata.json").read_text())
    assert metadata["num_inputs"] == 2 and metadata["training"]["steps"] == 2
    assert metadata["z_step_um"] == pytest.approx(0.5)
    assert "saved" in capsys.readouterr().out


def test_sigterm_stops_after_the_step_in_progress_and_resumes(tmp_path, capsys, monkeypatch):
    """SIGTERM (a scheduler's time limit, `kill`) mid-run: the session ends
    cleanly after the step in progress with a checkpoint; the same command
    then finishes the run."""
    import os
    import signal

    mapping = {
        "output": str(tmp_path / "run"),
        "model": TINY_MODEL,
        "data": {"simulate": {**TINY_SIMULATE, "count": 2, "seed": 0}, **TINY_DATA},
        "training": {"steps": 4, "steps_per_epoch": 2, "checkpoint_every": 1},
        "optimizer": {"learning_rate": 1e-3},
        "loss": {"adversarial_weight": 0},
    }
    path = write_config(tmp_path / "plain.yaml", mapping)

    class Signalling(training_run.RunControl):
        def on_train_batch_begin(self, batch, logs=None):
            super().on_train_batch_begin(batch, logs)
            if self.session_steps == 2:  # during the third step
                os.kill(os.getpid(), signal.SIGTERM)

    original = training_run.RunControl
    monkeypatch.setattr(training_run, "RunControl", Signalling)
    before = signal.getsignal(signal.SIGTERM)
    code, out, _ = run_cli(capsys, ["train", str(path), "-q"])
    assert code == 0
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is removed again
    state = TrainingCheckpoint.read_state(tmp_path / "run")
    assert state["global_step"] == 3
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["state"] == "stopped" and run["sessions"][0]["stopped_by"] == "SIGTERM"
    monkeypatch.setattr(training_run, "RunControl", original)
    code, out, _ = run_cli(capsys, ["train", str(path), "-q"])
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert code == 0 and run["state"] == "done" and run["steps_done"] == 4
    assert run["sessions"][1]["first_step"] == 3
