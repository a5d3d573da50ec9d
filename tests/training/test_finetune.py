"""keras_rmz.training.finetune and ``keras-rmz finetune``: checks before any
model is built, the held-out report against an independent computation, the
starting weights kept when training does not help, and resuming."""

import json

import numpy as np
import pytest

import keras_rmz as rmz
from keras_rmz.io import Stack, write_stack
from keras_rmz.models import RecurrentMZ
from keras_rmz.presets import load_preset, save_preset
from keras_rmz.training import fine_tuning as finetune_module
from keras_rmz.training.fine_tuning import finetune

TINY = {"patch_size": 16, "batch_size": 2, "eval_every": 2}


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    """A tiny RecurrentMZ preset: M = 2, Δz = 1 µm, 0.1 µm pixels."""
    folder = tmp_path_factory.mktemp("preset") / "tiny"
    save_preset(
        RecurrentMZ(base_filters=4, depth=2),
        folder,
        metadata={"pixel_um": 0.1, "num_inputs": 2, "input_spacing_um": 1.0, "output_range_um": [-1.5, 1.5],
                  "modality": "widefield -> widefield", "normalization": {"method": "paper"}},
    )
    return folder


@pytest.fixture(scope="module")
def stack():
    """A simulated nuclei stack: 16 planes 0.2 µm apart, 48 x 64 pixels."""
    return rmz.simulate.simulate_stack("nuclei", shape=(16, 48, 64), z_step_um=0.2, pixel_um=0.1, seed=3)


@pytest.fixture
def stack_file(tmp_path, stack):
    path = tmp_path / "stack.ome.tif"
    write_stack(path, stack)
    return path


def _no_model_built(monkeypatch):
    """Makes building a model an error, so a check is shown to come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(rmz.presets, "load_preset", refuse)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.select([0, 5]), "has 2 plane.*at least 3"),
        (lambda s: Stack(s.data[:5], s.z[:5], s.pixel_um), "thinner than the input span"),
        (lambda s: Stack(np.where(np.arange(16)[:, None, None] == 7, np.nan, s.data), s.z, s.pixel_um),
         "NaN or inf"),
        (lambda s: Stack(s.data[:, :20, :20], s.z, s.pixel_um), "at least 32 pixels per side"),
    ],
    ids=["fewer_planes_than_m_plus_1", "thinner_than_span", "nan", "too_small"],
)
def test_bad_stacks_are_refused_before_any_model(monkeypatch, tmp_path, tiny_preset, stack, change, message):
    _no_model_built(monkeypatch)
    with pytest.raises(ValueError, match=message):
        finetune([change(stack)], tiny_preset, tmp_path / "out", steps=2, **TINY)
    assert not (tmp_path / "out").exists()


def test_bad_requests_are_refused_before_any_model(monkeypatch, tmp_path, tiny_preset, stack):
    _no_model_built(monkeypatch)
    with pytest.raises(ValueError, match="one target stack per input stack"):
        finetune([stack], tiny_preset, tmp_path / "out", targets=[stack, stack], steps=2, **TINY)
    other = Stack(stack.data[:, :40], stack.z, stack.pixel_um)
    with pytest.raises(ValueError, match=r"target 0 \(a Stack\) has shape \(16, 40, 64\).*must match its input"):
        finetune([stack], tiny_preset, tmp_path / "out", targets=[other], steps=2, **TINY)
    for budget in ({"minutes": 0}, {"steps": 0}, {"minutes": -1.0}, {"minutes": float("nan")}):
        with pytest.raises(ValueError, match="must be .* > 0|>= 1"):
            finetune([stack], tiny_preset, tmp_path / "out", **budget, **TINY)
    for ema in (1.0, -0.1, "0.9", True):
        with pytest.raises(ValueError, match=r"ema must be None or a momentum in \[0, 1\)"):
            finetune([stack], tiny_preset, tmp_path / "out", steps=2, ema=ema, **TINY)
    for weight in (-1.0, float("nan"), "1", True):
        with pytest.raises(ValueError, match=r"ms_ssim_weight must be a number >= 0"):
            finetune([stack], tiny_preset, tmp_path / "out", steps=2, ms_ssim_weight=weight, **TINY)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds a preset.*--overwrite"):
        finetune([stack], tiny_preset, tmp_path / "taken", steps=2, **TINY)
    with pytest.raises(ValueError, match="DeepZ, which finetune cannot train"):
        finetune([stack], "deep_z_beads", tmp_path / "out", steps=2, **TINY)
    with pytest.raises(ValueError, match="UNet3D, which finetune cannot train"):
        finetune([stack], "unet3d_beads", tmp_path / "out", steps=2, **TINY)
    with pytest.raises(ValueError, match="needs paired confocal target stacks"):
        finetune([stack], "recurrent_mz_plus_nuclei_m3", tmp_path / "out", steps=2, **TINY)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        finetune([tmp_path / "missing.tif"], tiny_preset, tmp_path / "out", steps=2, **TINY)
    assert not (tmp_path / "out").exists()


def _interpolated(images, input_z, output_z):
    """Linear interpolation between two planes, written out independently."""
    weight = (output_z - input_z[0]) / (input_z[1] - input_z[0])
    return (1 - weight)[:, None, None] * images[0] + weight[:, None, None] * images[1]


def test_finetune_writes_a_preset_with_an_honest_report(tmp_path, tiny_preset, stack_file, stack):
    result = finetune([stack_file], tiny_preset, tmp_path / "mine", steps=4, verbose=0, **TINY)
    folder = tmp_path / "mine"
    assert result.folder == folder
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "figures", "metadata.json",
                                                        "model.weights.h5"]
    assert sorted(p.name for p in (folder / "figures").iterdir()) == ["mip_comparison.png", "psnr_vs_z.png"]
    assert not (tmp_path / ".mine.finetune").exists()  # the run folder is gone once the preset is written
    assert set(result.table) == {"starting preset", "fine-tuned", "linear interpolation", "nearest plane"}
    assert result.steps == 4 and [s for s, _ in result.history] == [0, 2, 4]

    # The held-out part is the right half (x >= 32); its windows hold M = 2
    # planes 1 µm (5 planes) apart. Recompute interpolation's PSNR with numpy.
    metadata = json.loads((folder / "metadata.json").read_text())
    report = metadata["metrics"]["finetune_held_out"]
    held = stack.data[:, :, 32:].astype(np.float64)
    scores = []
    for window in report["windows"]:
        first, last = (int(np.argmin(np.abs(stack.z - z))) for z in window["input_z_um"])
        outputs = np.arange(first + 1, last)
        assert window["planes_scored"] == outputs.size
        truth = held[outputs]
        prediction = _interpolated(held[[first, last]], stack.z[[first, last]], stack.z[outputs])
        peak = truth.max() - truth.min()
        scores.append(10 * np.log10(peak**2 / np.mean((truth - prediction) ** 2)))
    assert result.table["linear interpolation"]["psnr_db"] == pytest.approx(np.mean(scores), abs=1e-3)
    # The written weights are the ones scored: the averaged (EMA) weights of
    # the best checkpoint, not the last raw step's.
    written = load_preset(folder)
    tuned = []
    for window in report["windows"]:
        first, last = (int(np.argmin(np.abs(stack.z - z))) for z in window["input_z_um"])
        outputs = np.arange(first + 1, last)
        truth = held[outputs]
        prediction = written.reconstruct(held[[first, last]].astype(np.float32), stack.z[[first, last]],
                                         stack.z[outputs], pixel_um=stack.pixel_um, extrapolate=True, verbose=False)
        tuned.append(10 * np.log10((truth.max() - truth.min()) ** 2 / np.mean((truth - prediction) ** 2)))
    assert result.table["fine-tuned"]["psnr_db"] == pytest.approx(np.mean(tuned), abs=1e-3)
    if result.kept == "fine-tuned":
        assert result.table["fine-tuned"]["psnr_db"] == pytest.approx(max(p for _, p in result.history), abs=1e-3)

    # Never worse than the starting preset, and the card says which was kept.
    assert result.table["fine-tuned"]["psnr_db"] >= result.table["starting preset"]["psnr_db"] - 1e-6
    card = (folder / "README.md").read_text()
    assert "| linear interpolation |" in card and "figures/psnr_vs_z.png" in card
    assert metadata["pixel_um"] == pytest.approx(0.1) and metadata["num_inputs"] == 2
    model = load_preset(folder)
    volume = model.reconstruct(stack.select([0, 5]), output_z=stack.z[1:5])
    assert volume.shape == (4, 48, 64) and np.all(np.isfinite(volume))
    # An existing preset is refused without overwrite, replaced with it.
    with pytest.raises(ValueError, match="already holds a preset"):
        finetune([stack_file], tiny_preset, folder, steps=2, verbose=0, **TINY)
    finetune([stack_file], tiny_preset, folder, steps=2, overwrite=True, verbose=0, **TINY)
    assert json.loads((folder / "metadata.json").read_text())["training"]["steps"] == 2


@pytest.mark.parametrize("ema", [finetune_module.DEFAULT_EMA, None])
def test_starting_weights_are_kept_when_training_does_not_help(tmp_path, tiny_preset, stack, ema):
    # A learning rate this large ruins the network (raw or averaged): nothing beats the start.
    result = finetune([stack], tiny_preset, tmp_path / "mine", steps=4, learning_rate=50.0, ema=ema, verbose=0,
                      **TINY)
    assert result.kept == "starting preset"
    assert result.table["fine-tuned"]["psnr_db"] == pytest.approx(result.table["starting preset"]["psnr_db"])
    kept, start = load_preset(tmp_path / "mine"), load_preset(tiny_preset)
    for a, b in zip(kept.get_weights(), start.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert "did not beat the starting preset" in (tmp_path / "mine" / "README.md").read_text()


def test_an_interrupted_run_resumes(monkeypatch, tmp_path, tiny_preset, stack):
    calls = {"n": 0}
    score = finetune_module.HeldOutScorer.score

    def interrupted(self, method, keep=False):
        calls["n"] += 1
        if calls["n"] == 5:  # 3 baselines, the score at step 2, then the one at step 4
            raise KeyboardInterrupt
        return score(self, method, keep)

    monkeypatch.setattr(finetune_module.HeldOutScorer, "score", interrupted)
    with pytest.raises(KeyboardInterrupt):
        finetune([stack], tiny_preset, tmp_path / "mine", steps=6, verbose=0, **TINY)
    run = tmp_path / ".mine.finetune"
    state = json.loads((run / finetune_module.RUN_STATE).read_text())
    assert state["steps"] >= 2 and [s for s, _ in state["history"]][:2] == [0, 2]
    assert not (tmp_path / "mine").exists()
    monkeypatch.setattr(finetune_module.HeldOutScorer, "score", score)
    result = finetune([stack], tiny_preset, tmp_path / "mine", steps=6, verbose=0, **TINY)
    metadata = json.loads((tmp_path / "mine" / "metadata.json").read_text())
    assert metadata["training"]["sessions"] == 2
    assert result.steps == 6 and [s for s, _ in result.history] == [0, 2, 4, 6]
    assert not run.exists()


def test_cli_finetune(tmp_path, tiny_preset, stack_file, capsys):
    from keras_rmz.cli.main import main

    out = tmp_path / "cli_preset"
    code = main(["finetune", str(stack_file), "--preset", str(tiny_preset), "-o", str(out), "--steps", "2",
                 "--patch-size", "16", "--batch-size", "2", "--eval-every", "2", "-q"])
    assert code == 0 and (out / "model.weights.h5").exists()
    training = json.loads((out / "metadata.json").read_text())["training"]
    assert training["recipe"]["ms_ssim_weight"] == finetune_module.DEFAULT_MS_SSIM_WEIGHT == 0
    assert training["loss"].startswith("3·BerHu(c = 0.1) + 0·(1 − MS-SSIM)")
    assert main(["finetune", str(stack_file), "--preset", str(tiny_preset), "-o", str(out), "--steps", "2",
                 "--patch-size", "16", "--batch-size", "2", "--eval-every", "2", "-q", "--overwrite",
                 "--ms-ssim-weight", "1", "--precision", "bfloat16"]) == 0
    training = json.loads((out / "metadata.json").read_text())["training"]
    assert training["recipe"]["ms_ssim_weight"] == 1 and "+ 1·(1 − MS-SSIM)" in training["loss"]
    # Trained in bfloat16 (the first run: float32, as tests pin "auto"); the
    # preset holds float32 weights and a config without the policy.
    assert training["precision"] == "bfloat16" and "computing in bfloat16" in (out / "README.md").read_text()
    assert "dtype" not in json.loads((out / "config.json").read_text())["config"]
    assert load_preset(out).compute_dtype == "float32"
    assert main(["finetune", str(stack_file), "--preset", str(tiny_preset), "-o", str(out), "--steps", "2"]) == 2
    assert "already holds a preset" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", str(stack_file), "--preset", str(tiny_preset), "-o", str(out), "--minutes", "0"])
    assert exit_info.value.code == 2
    assert "--minutes" in capsys.readouterr().err


def test_finetune_real_benchmark_runs_and_saves_its_table(tmp_path, tiny_preset, stack_file, capsys):
    """benchmarks/finetune_real.py (the table of docs/finetuning.md), on a tiny stack and budget."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "finetune_real.py"
    spec = importlib.util.spec_from_file_location("_rmz_benchmark_finetune_real", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "results"
    code = bench.main([str(stack_file), "--preset", str(tiny_preset), "--out", str(out), "--tag", "tiny",
                       "--set", "steps=2", "--set", "patch_size=16", "--set", "batch_size=2", "--set", "eval_every=2"])
    assert code == 0
    record = json.loads((out / "finetune_real_tiny.json").read_text())
    (row,) = record["rows"]
    assert row["steps"] == 2 and row["stack"] == "stack.ome.tif"
    table = row["table"]
    gain = table["fine-tuned"]["psnr_db"] - table["linear interpolation"]["psnr_db"]
    assert row["gain_over_interpolation_db"] == pytest.approx(gain)
    assert f"**{gain:+.2f} dB**" in (out / "finetune_real_tiny.md").read_text()
    assert sorted(p.name for p in out.glob("*.png")) == ["finetune_real_tiny_stack_mip_comparison.png",
                                                         "finetune_real_tiny_stack_psnr_vs_z.png"]
    with pytest.raises(SystemExit, match="no such stack"):
        bench.main([str(tmp_path / "missing.tif")])
    with pytest.raises(SystemExit, match="--set takes key=value"):
        bench.main([str(stack_file), "--set", "steps"])


def test_the_learning_rate_schedule_acts_on_every_step(monkeypatch, tmp_path, tiny_preset, stack):
    # The rate is the peak for the first step and zero after it: four steps
    # in one epoch must end where one step ends. (On JAX, Keras carries the
    # optimizer state through an epoch; a rate assigned mid-epoch without a
    # state sync would only act from the next epoch.)
    monkeypatch.setattr(finetune_module, "_lr_at", lambda fraction, peak, **kwargs: peak if fraction == 0 else 0.0)
    from keras_rmz.training.callbacks import TrainingCheckpoint

    ends = []
    on_train_end = TrainingCheckpoint.on_train_end

    def record(self, logs=None):
        ends.append([np.array(w) for w in self.model.get_weights()])
        return on_train_end(self, logs)

    monkeypatch.setattr(TrainingCheckpoint, "on_train_end", record)
    for steps in (1, 4):
        finetune([stack], tiny_preset, tmp_path / f"run{steps}", steps=steps, learning_rate=1e-2, ema=None, verbose=0,
                 patch_size=16, batch_size=2, eval_every=4)  # the same batches: one epoch of 4 steps
    model = load_preset(tiny_preset)
    trainable = {id(v) for v in model.trainable_variables}
    kernels = [i for i, v in enumerate(model.weights) if id(v) in trainable]  # not the moving statistics
    start = model.get_weights()
    assert any(not np.allclose(ends[0][i], start[i]) for i in kernels)  # the first step moved the weights
    for i in kernels:
        np.testing.assert_allclose(ends[1][i], ends[0][i], rtol=1e-5, atol=1e-6)


def test_the_averaged_weights_are_scored_and_the_live_ones_trained(monkeypatch, tmp_path, tiny_preset, stack):
    # With a momentum this close to 1 the average stays put while the live
    # weights move: the held-out score must see the average, and the
    # checkpoint (what training continues from) the live weights, with the
    # averages in the optimizer state.
    import h5py

    from keras_rmz.training.callbacks import TrainingCheckpoint

    scored = []
    score = finetune_module.HeldOutScorer.score

    def recording(self, method, keep=False):
        if not isinstance(method, str):
            scored.append([np.array(w) for w in method.get_weights()])
        return score(self, method, keep)

    save = TrainingCheckpoint.save

    def save_then_stop(self, model):
        save(self, model)
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune_module.HeldOutScorer, "score", recording)
    monkeypatch.setattr(TrainingCheckpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        finetune([stack], tiny_preset, tmp_path / "mine", steps=4, learning_rate=1e-2, ema=0.999999, verbose=0, **TINY)
    start = load_preset(tiny_preset)
    trainable = {id(v) for v in start.trainable_variables}
    kernels = [i for i, v in enumerate(start.weights) if id(v) in trainable]
    assert len(scored) == 2  # the start, then step 2
    with h5py.File(tmp_path / ".mine.finetune" / TrainingCheckpoint.CHECKPOINT_NAME, "r") as handle:
        assert int(handle.attrs["global_step"]) == 2
        live = [handle["model_weights"][str(i)][()] for i in range(len(start.weights))]
        group = handle["optimizer_variables"]
        averages = [group[k][()] for k in sorted(group, key=int) if group[k].attrs["path"].endswith("_average")]
    starting = start.get_weights()
    assert len(averages) == len(kernels)
    # (Keras seeds the average with the weights after the first step, taken
    # at a tenth of the peak rate in the warm-up; the second is near the peak.)
    for average, i in zip(averages, kernels):
        np.testing.assert_allclose(scored[1][i], average, atol=1e-6)
    assert max(np.abs(live[i] - average).max() for average, i in zip(averages, kernels)) > 5e-3
    assert max(np.abs(average - starting[i]).max() for average, i in zip(averages, kernels)) < 2e-3
