"""Smoke tests of benchmarks/inference.py and benchmarks/flops.py: the
benchmark's functions run in a tiny mode on the current backend, and the FLOP
counts match hand-derived values and the traced program. No timings are
asserted (speed lives in the benchmark's output, not in tests)."""

import importlib.util
import pathlib
import sys
import textwrap

import keras
import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    key = f"_rmz_benchmark_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[key] = module
    return sys.modules[key]


@pytest.fixture(scope="module")
def bench():
    return _load("inference")


@pytest.fixture(scope="module")
def flops():
    return _load("flops")


def _conv(k, c_in, c_out, pixels):
    return 2 * k * c_in * c_out * pixels


def test_recurrent_mz_flops_match_hand_count(flops):
    # RecurrentMZ(base_filters=2, depth=1), one 4x4 input (M = 1), 3x3 kernels.
    # Scale 0: 16 pixels, 2 channels; scale 1: 4 pixels, 4 channels.
    expected = (
        _conv(9, 2, 1, 16) + _conv(9, 1, 2, 16)  # encoder 0: image+DPM -> 1 -> 2
        + _conv(9, 2, 4, 16)  # ConvGRU 0: x -> [f, h]; from the zero state no h -> f, (f*h) -> h
        + _conv(1, 2, 2, 16)  # recurrent 1x1
        + _conv(9, 2, 2, 4) + _conv(9, 2, 4, 4)  # encoder 1 after pooling: 2 -> 2 -> 4
        + _conv(9, 4, 8, 4)  # ConvGRU 1
        + _conv(1, 4, 4, 4)
        + _conv(9, 4 + 2, 2, 16) + _conv(9, 2, 2, 16)  # decoder 0 on concat(up(4), skip 2)
        + _conv(1, 2, 1, 16)  # head
    )
    assert expected == 11552
    count = flops.analytic_flops("RecurrentMZ", {"base_filters": 2, "depth": 1}, 4, 4, 1)
    assert count["flops"] == expected
    # Every later ConvGRU step runs both convs: M = 3 adds 2 steps of each layer.
    count3 = flops.analytic_flops("RecurrentMZ", {"base_filters": 2, "depth": 1}, 4, 4, 3)
    per_step = _conv(9, 2, 4, 16) * 2 + _conv(9, 4, 8, 4) * 2
    per_image = _conv(9, 2, 1, 16) + _conv(9, 1, 2, 16) + _conv(9, 2, 2, 4) + _conv(9, 2, 4, 4)
    assert count3["flops"] == expected + 2 * (per_step + per_image)
    # Sizes are padded to a multiple of 2**depth as the model does.
    assert flops.analytic_flops("RecurrentMZ", {"base_filters": 2, "depth": 1}, 3, 3, 1)["flops"] == expected


def test_deep_z_and_unet3d_flops_match_hand_count(flops):
    deep_z = (
        _conv(9, 2, 2, 16) + _conv(9, 2, 2, 16)
        + _conv(9, 2, 4, 4) + _conv(9, 4, 4, 4)
        + _conv(9, 4 + 2, 2, 16) + _conv(9, 2, 2, 16)
        + _conv(1, 2, 1, 16)
    )
    assert deep_z == 8704
    assert flops.analytic_flops("DeepZ", {"base_filters": 2, "depth": 1}, 4, 4, 1)["flops"] == deep_z
    # UNet3D(num_inputs=1, base_filters=2, depth=1): a 4x4x2 volume (image, DPM).
    v0, v1 = 4 * 4 * 2, 2 * 2 * 2
    unet3d = (
        _conv(27, 1, 1, v0) + _conv(27, 1, 2, v0)
        + _conv(27, 2, 2, v1) + _conv(27, 2, 4, v1)
        + _conv(1, 4, 4, v0)  # (2, 2, 1) transposed conv, kernel = stride
        + _conv(27, 4 + 2, 2, v0) + _conv(27, 2, 2, v0)
        + _conv(2, 2, 1, 16)  # (1, 1, 2M) depth projection
    )
    config = {"num_inputs": 1, "base_filters": 2, "depth": 1}
    assert flops.analytic_flops("UNet3D", config, 4, 4, 1)["flops"] == unet3d
    with pytest.raises(ValueError, match="no analytic FLOP count"):
        flops.analytic_flops("ResNet", {}, 4, 4, 1)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the traced count reads a JAX program")
@pytest.mark.parametrize(
    "name",
    [
        "rmz_m3",
        pytest.param("rmz_m2", marks=pytest.mark.large),
        pytest.param("deepz", marks=pytest.mark.large),
        pytest.param("unet3d", marks=pytest.mark.large),
    ],
)
def test_analytic_flops_equal_traced_program(bench, flops, name):
    model, class_name, num_inputs = bench.build_model(name, quick=True)
    if model is None:
        pytest.skip(num_inputs)
    size = 24  # not a multiple of 2**depth: padding is part of the count
    batch = bench.make_inputs(1, num_inputs, size)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def forward(trainable, non_trainable, batch):
        return model.stateless_call(trainable, non_trainable, batch, training=False)[0]

    traced = flops.traced_conv_flops_jax(forward, trainable, non_trainable, batch)
    assert traced == flops.analytic_flops(class_name, model.get_config(), size, size, num_inputs)["flops"]


def _options(bench, **extra):
    options = bench.build_options(_Args())
    options.update(backend=keras.backend.backend(), verbose=False, max_seconds=None, repeats=1)
    options.update(extra)
    return options


class _Args:
    """The parsed arguments of ``--quick`` with everything else default."""

    quick = True
    gpu = False
    precision = "mixed_float16"
    sizes = [32]
    models = None
    repeats = 1
    max_seconds = 0
    volume_planes = 101
    tiling_image = 4096
    tile_size = 512
    tile_overlap = 48
    tiling_base_filters = None
    tasks = None


def test_measure_models_reports_a_row_per_model_and_size(bench):
    options = _options(bench, models=["rmz_m3"], sizes=[32])
    rows = bench.measure_models(options, reference_gflops=10.0)
    assert len(rows) == 1
    row = rows[0]
    assert row["model"] == "rmz_m3" and row["size"] == 32 and row["num_inputs"] == 3
    assert row["ms_per_plane"] > 0 and row["first_call_s"] > 0
    assert row["gflop_per_plane"] == pytest.approx(
        bench.flops_module().analytic_flops("RecurrentMZ", row["config"], 32, 32, 3)["flops"] / 1e9, rel=1e-3
    )
    assert row["gflops_per_s"] == pytest.approx(row["gflop_per_plane"] / (row["ms_per_plane"] / 1000), rel=0.01)
    assert row["fraction_of_matmul"] == pytest.approx(row["gflops_per_s"] / 10.0, rel=0.01)


def test_budget_skips_a_step_and_reports_its_estimate(bench):
    options = _options(bench, models=["rmz_m2"], sizes=[32], max_seconds=1e-9)
    (row,) = bench.measure_models(options, reference_gflops=10.0)
    assert "ms_per_plane" not in row
    assert "max-seconds" in row["skipped"] and row["estimated_ms_per_plane"] >= 0


@pytest.mark.large
def test_batching_and_volume_run_through_reconstruct(bench):
    options = _options(bench, batching_planes=3, batching_size=32, volume_size=32, volume_planes=5, max_seconds=None)
    batching = bench.measure_batching(options, reference_gflops=10.0)
    assert batching["planes"] == 3
    for key in ("batch_size_auto", "batch_size_8", "batch_size_1"):
        assert batching[key]["ms_per_plane"] > 0
    # 3 planes: at most 3 per call; one at a time is 1 per call.
    assert batching["batch_size_8"]["planes_per_call"] == 3
    assert batching["batch_size_1"]["planes_per_call"] == 1
    from keras_rmz.backend.device import auto_batch_size

    assert batching["batch_size_auto"]["planes_per_call"] == min(3, auto_batch_size(32, 32, 3))
    assert batching["speedup_auto"] == pytest.approx(
        batching["batch_size_1"]["seconds"] / batching["batch_size_auto"]["seconds"], rel=0.01)
    volume = bench.measure_volume(options, reference_gflops=10.0, per_plane_ms=None)
    assert volume["measured_planes"] == 5 and not volume["extrapolated"]
    assert volume["seconds_for_volume"] == pytest.approx(volume["seconds_measured"], abs=0.01)
    # A budget that fits 2 planes of 400 ms: 2 measured (compilation
    # included), the other 3 added at the steady per-plane time.
    volume = bench.measure_volume({**options, "max_seconds": 1.0}, reference_gflops=10.0, per_plane_ms=400.0)
    assert volume["measured_planes"] == 2 and volume["extrapolated"]
    measured = volume["seconds_measured"]
    assert volume["seconds_for_volume"] == pytest.approx(measured + 3 * min(measured / 2, 0.4), abs=0.02)


def test_peak_rss_reset_sees_a_large_allocation():
    # In a fresh interpreter: a test process whose earlier tests left freed
    # memory on malloc's heap (or changed its thresholds) may serve the
    # block without new resident pages (seen on a pytest-xdist worker).
    import subprocess

    code = textwrap.dedent(f"""
        import importlib.util, numpy as np
        spec = importlib.util.spec_from_file_location("bench", {str(BENCHMARKS / "inference.py")!r})
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        if not bench.reset_peak_rss():
            print("UNSUPPORTED")
            raise SystemExit
        before = bench.peak_rss_mb()
        block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
        del block
        grown = bench.peak_rss_mb()
        reset = bench.reset_peak_rss()
        print("PEAKS", before, grown, reset, bench.peak_rss_mb())
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    if "UNSUPPORTED" in result.stdout:
        pytest.skip("/proc/self/clear_refs is not writable here")
    before, grown, reset, after = result.stdout.split("PEAKS", 1)[1].split()
    assert float(grown) >= float(before) + 60
    assert reset == "True" and float(after) < float(before) + 60


def test_matmul_rate_and_markdown_report(bench):
    rates = bench.matmul_rates(n=128, repeats=1)
    assert set(rates) == {"numpy", "backend"} and all(r > 0 for r in rates.values())
    options = _options(bench, models=["deepz"], sizes=[32])
    rows = bench.measure_models(options, reference_gflops=10.0)
    report = {
        "machine": bench.machine_info(),
        "runs": [
            {"backend": keras.backend.backend(), "models": rows, "matmul_reference_gflops": 10.0},
            {"backend": "torch", "error": "worker exited with code 1"},
        ],
    }
    table = bench.markdown_report(report)
    lines = [line for line in table.splitlines() if line.startswith(f"| {keras.backend.backend()} | deepz")]
    assert len(lines) == 1 and "| 32 |" in lines[0]
    assert "worker exited with code 1" in table
    assert report["machine"]["cpu_count"] >= 1


def test_command_line_refuses_unknown_names(bench, tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--backends", "theano", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        bench.main(["--models", "resnet", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        bench.main(["--variants", "turbo", "--out", str(tmp_path)])


@pytest.mark.large
def test_tiled_peak_memory_is_reported_against_the_untiled_estimate(bench):
    options = _options(bench, tiling_image=96, tile_size=32, tile_overlap=8)
    result = bench.measure_tiling(options)
    assert result["tiled"]["size"] == 96 and result["tiled"]["tile_size"] == 32
    assert result["untiled_measured"][0]["size"] == 32 and result["untiled_measured"][1]["size"] == 64
    assert result["tiled"]["peak_rss_mb"] >= result["tiled"]["rss_before_mb"]
    assert isinstance(result["bounded"], bool)


@pytest.mark.backend_independent  # runs the torch backend in its own process, whatever this one uses
def test_torch_conv_layout_runs_and_the_no_copy_patch_keeps_the_result(tmp_path):
    pytest.importorskip("torch")
    import json
    import subprocess

    command = [sys.executable, str(BENCHMARKS / "torch_conv_layout.py"), "--size", "16", "--channels", "4",
               "--repeats", "1", "--out", str(tmp_path)]
    # The script asserts that skipping Keras's input copy, and the package's
    # layout.Conv2D, leave the output unchanged.
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "torch_conv_layout.json").read_text())
    settings = {row["setting"] for row in report["rows"]}
    assert len(report["rows"]) == 6 and any("no input copy" in s for s in settings)
    assert any("layout.Conv2D" in s for s in settings)
    assert all(row["ms"] > 0 and row["channels"] == 4 for row in report["rows"])
    assert report["matmul_gflops"] > 0 and report["profiles"]["4"]
    assert (tmp_path / "torch_conv_layout.png").stat().st_size > 0
    assert "| operator | ms | share |" in (tmp_path / "torch_conv_layout.md").read_text()


def test_training_benchmark_runs_per_layout(tmp_path):
    """benchmarks/training.py times both modes in a worker per backend, and on
    torch also with Keras's own layout ops (--layouts keras), which other
    backends skip."""
    import json
    import subprocess

    backend = keras.backend.backend()
    output = tmp_path / "training.json"
    command = [sys.executable, str(BENCHMARKS / "training.py"), "--backends", backend, "--layouts", "package",
               "keras", "--size", "32", "--batch-size", "1", "--steps", "1", "--modes", "generator_only",
               "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(output.read_text())
    assert not report["errors"]
    layouts = [r["layout"] for r in report["results"]]
    assert layouts == (["package", "keras"] if backend == "torch" else ["package"])
    assert all(r["backend"] == backend and r["samples_per_s"] > 0 for r in report["results"])


def test_session8_variants_undo_the_speedups_but_not_the_result(bench, monkeypatch):
    """The variants convgru_keras_loop and bn_unfolded put back the Keras time
    loop and the separate batch-norm pass; the network's output is the same."""
    from keras_rmz.layers import ConvGRU2D
    from keras_rmz.layers import fused
    from keras_rmz.models import RecurrentMZ

    # Restored after the test: the patches change these module attributes.
    monkeypatch.setattr(ConvGRU2D, "unrolls", ConvGRU2D.unrolls)
    monkeypatch.setattr(fused, "conv_batch_norm", fused.conv_batch_norm)
    batch = bench.make_inputs(1, 3, 32)
    model = RecurrentMZ(base_filters=4, depth=2)
    model(batch)
    _load("interleaved").randomize_batch_norm_statistics(model, np.random.default_rng(0))
    default = keras.ops.convert_to_numpy(model.predict_on_batch(batch))
    assert default.std() > 1e-3  # a live output, or equality would prove nothing
    folded = fused.conv_batch_norm
    for name in ("convgru_keras_loop", "bn_unfolded"):
        assert name in bench.VARIANTS
        bench.apply_patch(name)
    assert not ConvGRU2D(2, 3).unrolls(3)
    assert fused.conv_batch_norm is not folded  # the patch reaches the layers' call
    patched = RecurrentMZ(base_filters=4, depth=2)
    patched(batch)
    patched.set_weights(model.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(patched.predict_on_batch(batch)), default,
                               rtol=1e-4, atol=1e-5)


def test_conv_ceiling_records_every_convolution_of_the_network(flops):
    """benchmarks/conv_ceiling.py: the convolutions recorded from one forward
    pass add up to the analytic FLOP count, and scale with the image."""
    from keras_rmz.models import RecurrentMZ

    ceiling = _load("conv_ceiling")
    model = RecurrentMZ(base_filters=4, depth=2)
    batch = _load("inference").make_inputs(1, 3, 32)
    calls = ceiling.record_convolutions(model, batch)
    recorded = sum(ceiling.conv_flops(call) for call in calls)
    assert recorded == flops.analytic_flops("RecurrentMZ", model.get_config(), 32, 32, 3)["flops"]
    groups = ceiling.distinct(calls)
    assert sum(count for _, count in groups) == len(calls) and len(groups) < len(calls)
    doubled = sum(ceiling.conv_flops(ceiling.scaled(call, 2)) * count for call, count in groups)
    assert doubled == 4 * recorded


def test_interleaved_speedups_keep_the_output(tmp_path):
    """benchmarks/interleaved.py builds the four settings in one process and
    reports their times; the settings change speed, not the output."""
    import json
    import subprocess

    backend = keras.backend.backend()
    command = [sys.executable, str(BENCHMARKS / "interleaved.py"), "--backends", backend, "--size", "32",
               "--repeats", "1", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = json.loads((tmp_path / "interleaved.json").read_text())["runs"]
    assert run["backend"] == backend
    assert set(run["seconds"]) == {"default", "loop", "unfolded", "both"}
    assert all(value > 0 for value in run["seconds"].values())
    assert run["max_abs_difference"] < 1e-4 and run["output_std"] > 1e-3


@pytest.mark.run_once  # the script starts each backend in its own process
def test_precision_benchmark_times_every_precision_and_engine(tmp_path):
    """benchmarks/precision.py on tiny sizes: every precision is timed on
    the reconstruct and train cases, every engine on the same network, and
    the tables and figure are written."""
    import json
    import subprocess

    command = [sys.executable, str(BENCHMARKS / "precision.py"), "--quick", "--backends", "tensorflow",
               "--tasks", "speed,engines", "--precisions", "float32,bfloat16", "--repeats", "1", "--out", str(tmp_path),
               "--tag", "smoke"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    records = json.loads((tmp_path / "precision_smoke.json").read_text())["records"]
    speed, engines = records
    assert speed["task"] == "speed" and speed["backend"] == "tensorflow"
    for case in speed["cases"].values():
        assert set(case["ms"]) == {"float32", "bfloat16"}  # float16 is the same code path, and slow on CPUs
        assert all(value > 0 for values in case["ms"].values() for value in values)
    assert set(engines["engines"]) >= {"keras float32", "onnxruntime, M dynamic", "openvino, M = 2"}
    table = (tmp_path / "precision_smoke.md").read_text()
    assert "bfloat16 speed-up" in table and "onnxruntime" in table
    assert (tmp_path / "precision_smoke.png").stat().st_size > 0
    # The accuracy table compares every reduced precision with float32.
    bench = _load("precision")
    text = bench._tables([{"task": "accuracy", "backend": "tensorflow",
                           "presets": {"p": {"float32": 30.0, "bfloat16": 29.99}}}])
    assert "| tensorflow | p | 30.000 dB | 29.990 dB (-0.010) | – | 0.010 dB |" in text


def test_generalization_benchmark_scores_presets_beside_the_baselines(tmp_path):
    """benchmarks/generalization.py on tiny simulated stacks: every preset and
    baseline is scored on every set, and the table, JSON and figure are saved."""
    import json

    generalization = _load("generalization")
    code = generalization.main(["--presets", "recurrent_mz_nuclei_m2", "--no-real", "--randomized", "1",
                                "--nuclei", "1", "--shape", "61", "48", "48", "--out", str(tmp_path), "--tag", "t"])
    assert code == 0
    record = json.loads((tmp_path / "generalization_t.json").read_text())
    assert [row["set"].split(" (")[0] for row in record["rows"]] == ["simulated: widefield-v1", "simulated: nuclei, one microscope"]
    for row in record["rows"]:
        assert set(row["scores"]) == {"recurrent_mz_nuclei_m2", "linear interpolation", "nearest plane"}
        assert all(np.isfinite(score["psnr_db"]) for score in row["scores"].values())
    assert (tmp_path / "generalization_t.png").stat().st_size > 0
    assert "| data |" in (tmp_path / "generalization_t.md").read_text()


@pytest.mark.cross_backend  # runs PyTorch in a subprocess whatever the backend under test: once per CI run
@pytest.mark.large  # two LocalClusters of 2 workers (~60 s)
def test_distributed_benchmark_compares_the_cluster_with_one_process(tmp_path):
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("distributed")
    pytest.importorskip("torch")
    # PyTorch, not the JAX of the benchmark's own runs: JAX workers compile the
    # network for each tile shape (the quick run: 250 s with JAX, 58 s with
    # PyTorch on a 2-core CPU); the script is the same on every backend.
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    result = subprocess.run([sys.executable, str(BENCHMARKS / "distributed.py"), "--quick", "--out", str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "distributed_quick.json").read_text())
    assert record["psnr_cluster_vs_single_db"] > 60  # the halo covers the tiny network's receptive field
    peaks = record["cluster_2_workers"]["worker_peak_rss_mb"]
    assert len(peaks) == 2 and all(100 < p < 16000 for p in peaks)
    assert record["cluster_scaled"]["time_points"] == 2 * record["time_points"]
    assert (tmp_path / "distributed_quick.png").stat().st_size > 1000
