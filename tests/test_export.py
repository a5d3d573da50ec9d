"""ONNX export (keras_rmz.export, ``keras-rmz export``) run by a real ONNX
Runtime and a real OpenVINO: dynamic M, H and W, parity with the Keras model
through ``reconstruct``'s whole path (tiling, batching, normalization,
resampling, guards), the metadata that travels in the file, and clear errors.

The export itself always runs on TensorFlow (in a subprocess on the other
backends), and the engines do not depend on the Keras backend, so these
tests run once per CI run; ``test_export_from_another_backend`` covers the
subprocess route."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_rmz
from keras_rmz import export
from keras_rmz.cli.main import main as cli_main
from keras_rmz.models import DeepZ, RecurrentMZ, UNet3D
from keras_rmz.presets import save_preset

pytestmark = pytest.mark.run_once

# Largest |engine - Keras| over the Keras output's range (float32 both; the
# engines fuse and reorder operations): measured up to 2e-6.
TOLERANCE = 1e-4
METADATA = {"pixel_um": 0.1, "num_inputs": 2, "input_spacing_um": 2.0, "output_range_um": [-3.0, 3.0],
            "modality": "widefield -> widefield", "normalization": {"method": "paper"}}


def _planes(num_inputs, height, width, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width] / max(height, width)
    planes = [200 + 100 * np.sin(7 * x + k) * np.cos(5 * y - k) + 20 * rng.random((height, width))
              for k in range(num_inputs)]
    return np.stack(planes).astype(np.float32)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("export") / "tiny"
    save_preset(RecurrentMZ(base_filters=4, depth=2), folder, metadata=METADATA)
    return folder


@pytest.fixture(scope="module")
def onnx_file(preset, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert cli_main(["export", str(preset), "--format", "onnx", "-o", str(path), "-q"]) == 0
    return path


@pytest.fixture(scope="module")
def fixed_m_files(preset, tmp_path_factory):
    """M fixed (the recurrence unrolled), as OpenVINO needs: M = 2 and 3."""
    folder = tmp_path_factory.mktemp("onnx_fixed")
    files = {}
    for m in (2, 3):
        files[m] = folder / f"tiny_m{m}.onnx"
        assert cli_main(["export", str(preset), "--num-inputs", str(m), "-o", str(files[m]), "-q"]) == 0
    return files


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("num_inputs, shape", [(2, (40, 56)), (3, (64, 48))])
def test_engines_match_keras_for_any_m_and_size(preset, onnx_file, fixed_m_files, engine, num_inputs, shape):
    """ONNX Runtime runs the dynamic-M file for both M; OpenVINO the fixed-M ones."""
    keras_model = keras_rmz.presets.load_preset(preset)
    engine_model = export.OnnxModel(onnx_file if engine == "onnxruntime" else fixed_m_files[num_inputs],
                                    engine=engine)
    images = _planes(num_inputs, *shape)
    input_z = np.arange(num_inputs, dtype=np.float32) * 1.5  # within the trained range of +-3 µm
    output_z = np.linspace(0.0, 1.5 * (num_inputs - 1), 5).astype(np.float32)
    kwargs = {"pixel_um": 0.1, "verbose": False, "precision": "float32"}
    expected = keras_model.reconstruct(images, input_z, output_z, **kwargs)
    actual = engine_model.reconstruct(images, input_z, output_z, **kwargs)
    assert actual.shape == expected.shape == (5, *shape) and actual.dtype == np.float32
    assert np.abs(actual - expected).max() <= TOLERANCE * np.ptp(expected)


def test_the_same_path_tiles_resamples_and_guards(preset, onnx_file):
    """Tiling with blending, resampling from 0.065 µm pixels and the trained
    output range all hold for the engine as they do for Keras."""
    keras_model = keras_rmz.presets.load_preset(preset)
    engine_model = export.OnnxModel(onnx_file)
    images, input_z, output_z = _planes(2, 100, 90, seed=1), [0.0, 2.0], [0.5, 1.5]
    kwargs = {"pixel_um": 0.065, "tile_size": 32, "tile_overlap": 8, "verbose": False, "precision": "float32"}
    expected = keras_model.reconstruct(images, input_z, output_z, **kwargs)
    actual = engine_model.reconstruct(images, input_z, output_z, **kwargs)
    assert actual.shape == (2, 100, 90)
    assert np.abs(actual - expected).max() <= TOLERANCE * np.ptp(expected)
    with pytest.raises(ValueError, match="outside the trained range"):
        engine_model.reconstruct(images, input_z, [30.0], pixel_um=0.1)
    with pytest.raises(ValueError, match="pixel size"):
        engine_model.reconstruct(images, input_z, [1.0])


def _description_and_images_dims(path):
    import onnx

    proto = onnx.load(str(path))
    description = json.loads({p.key: p.value for p in proto.metadata_props}[export.METADATA_KEY])
    images = [i for i in proto.graph.input if i.name.split(":")[0] == "images"][0]
    loops = sum(node.op_type == "Loop" for node in proto.graph.node)
    return description, [d.dim_value for d in images.type.tensor_type.shape.dim], loops


def test_the_file_carries_the_preset_metadata(onnx_file, fixed_m_files):
    description, dims, loops = _description_and_images_dims(onnx_file)
    assert description["class_name"] == "RecurrentMZ"
    assert description["preset_metadata"]["pixel_um"] == 0.1
    assert description["preset_metadata"]["output_range_um"] == [-3.0, 3.0]
    assert description["num_inputs"] == {"at_least": 1}
    # Batch, M, H and W are dynamic in the graph (0: a named dynamic size);
    # the recurrence over M is a Loop.
    assert dims == [0, 0, 0, 0, 1] and loops > 0
    description, dims, loops = _description_and_images_dims(fixed_m_files[3])
    assert description["num_inputs"] == {"exactly": 3}
    assert dims == [0, 3, 0, 0, 1] and loops == 0
    with pytest.raises(ValueError, match="exactly 3 input image"):
        export.OnnxModel(fixed_m_files[3]).reconstruct(_planes(2, 32, 32), [0.0, 2.0], [1.0], pixel_um=0.1)


def test_openvino_refuses_the_loop_of_a_dynamic_m_clearly(onnx_file):
    with pytest.raises(ValueError, match="Export with a fixed M for OpenVINO: .*--num-inputs M"):
        export.OnnxModel(onnx_file, engine="openvino")


def test_reconstruct_with_an_engine_exports_once_per_weights():
    keras.utils.set_random_seed(1)
    model = RecurrentMZ(base_filters=4, depth=2)
    images, input_z, output_z = _planes(3, 32, 32), [0.0, 1.0, 2.0], [0.5, 1.5]
    first = model.reconstruct(images, input_z, output_z, engine="onnxruntime", verbose=False)
    exported = export.engine_model(model, "onnxruntime")
    assert export.engine_model(model, "onnxruntime") is exported
    expected = model.reconstruct(images, input_z, output_z, precision="float32", verbose=False)
    assert np.abs(first - expected).max() <= TOLERANCE * np.ptp(expected)
    # OpenVINO: one export per M (the recurrence unrolled).
    second = model.reconstruct(images, input_z, output_z, engine="openvino", verbose=False)
    assert np.abs(second - expected).max() <= TOLERANCE * np.ptp(expected)
    assert export.engine_model(model, "openvino", num_inputs=3).description["num_inputs"] == {"exactly": 3}
    keras.utils.set_random_seed(2)
    model.set_weights(RecurrentMZ(base_filters=4, depth=2).get_weights())
    assert export.engine_model(model, "onnxruntime") is not exported
    with pytest.raises(ValueError, match="precision='bfloat16' is for engine='keras'"):
        model.reconstruct(images, input_z, output_z, engine="onnxruntime", precision="bfloat16")
    with pytest.raises(ValueError, match="engine must be one of 'keras', 'onnxruntime', 'openvino'"):
        model.reconstruct(images, input_z, output_z, engine="tensorrt")


def test_bad_arguments_are_refused_before_the_export(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was exported before its arguments were checked")

    monkeypatch.setattr(export, "engine_model", refuse)
    model = RecurrentMZ(base_filters=4, depth=2)
    with pytest.raises(ValueError, match="input_z must give one z"):
        model.reconstruct(np.ones((2, 32, 32)), [0.0, 1.0, 2.0], [1.0], engine="onnxruntime")
    with pytest.raises(ValueError, match="output_z .* is required"):
        model.reconstruct(np.ones((2, 32, 32)), [0.0, 1.0], engine="openvino")
    with pytest.raises(ValueError, match="engine must be one of"):
        model.reconstruct(np.ones((2, 32, 32)), [0.0, 1.0], [0.5], engine="onnx")


@pytest.mark.parametrize(
    "make, num_inputs",
    [(lambda: DeepZ(base_filters=4, depth=2), 1), (lambda: UNet3D(num_inputs=2, base_filters=4, depth=1), 2)],
    ids=["DeepZ", "UNet3D"],
)
def test_the_baselines_export_too(tmp_path, make, num_inputs):
    keras.utils.set_random_seed(3)
    model = make()
    path = export.export_onnx(model, tmp_path / "baseline.onnx")
    engine_model = export.OnnxModel(path)
    images, input_z = _planes(num_inputs, 32, 40), np.arange(num_inputs, dtype=np.float32)
    expected = model.reconstruct(images, input_z, [0.25, 0.5], precision="float32", verbose=False)
    actual = engine_model.reconstruct(images, input_z, [0.25, 0.5], verbose=False)
    assert np.abs(actual - expected).max() <= TOLERANCE * np.ptp(expected)
    with pytest.raises(ValueError, match="exactly"):
        engine_model.reconstruct(_planes(num_inputs + 1, 32, 40), np.arange(num_inputs + 1), [0.5])


def test_cli_reconstruct_with_onnxruntime(preset, tmp_path):
    stack = keras_rmz.io.Stack(_planes(5, 48, 48, seed=4), np.arange(5) * 1.0, 0.1)
    keras_rmz.io.write_stack(tmp_path / "stack.ome.tif", stack)
    outputs = {}
    for engine in ("keras", "onnxruntime"):
        out = tmp_path / f"{engine}.ome.tif"
        argv = ["reconstruct", str(tmp_path / "stack.ome.tif"), "--input-z", "0", "2", "--output-z", "0:2:0.5",
                "--preset", str(preset), "-o", str(out), "--engine", engine, "--precision", "float32", "-q"]
        assert cli_main(argv) == 0
        outputs[engine] = keras_rmz.io.read_stack(out)
    assert outputs["onnxruntime"].metadata["reconstruction"]["engine"] == "onnxruntime"
    expected = outputs["keras"].data
    assert np.abs(outputs["onnxruntime"].data - expected).max() <= TOLERANCE * np.ptp(expected)


def test_bad_requests_get_clear_errors(preset, onnx_file, tmp_path, capsys):
    assert cli_main(["export", str(preset), "-o", str(tmp_path / "model.pt")]) == 2
    assert "--output must end in .onnx" in capsys.readouterr().err
    assert cli_main(["export", str(preset), "-o", str(onnx_file)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli_main(["export", "recurrent_mz_nucleii_m2", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "Did you mean 'recurrent_mz_nuclei_m2'" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="OnnxModel runs an ONNX file"):
        export.OnnxModel(onnx_file, engine="keras")
    foreign = tmp_path / "foreign.onnx"
    import onnx

    proto = onnx.load(str(onnx_file))
    del proto.metadata_props[:]
    onnx.save(proto, str(foreign))
    with pytest.raises(ValueError, match="was not written by keras_rmz.export.export_onnx"):
        export.OnnxModel(foreign)


def test_a_missing_engine_names_the_extra(monkeypatch, onnx_file, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def without_openvino(name, *args, **kwargs):
        if name.split(".")[0] == "openvino":
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_openvino)
    monkeypatch.delitem(sys.modules, "openvino", raising=False)
    with pytest.raises(ImportError, match=r"engine='openvino' needs openvino.*pip install 'keras-rmz\[openvino\]'"):
        export.OnnxModel(onnx_file, engine="openvino")
    # The command line says it in one line, before the preset is loaded.
    stack = keras_rmz.io.Stack(_planes(3, 32, 32), np.arange(3) * 1.0, 0.1)
    keras_rmz.io.write_stack(tmp_path / "stack.ome.tif", stack)
    argv = ["reconstruct", str(tmp_path / "stack.ome.tif"), "--input-z", "0", "2", "--output-z", "1",
            "--preset", "recurrent_mz_nuclei_m2", "-o", str(tmp_path / "o.ome.tif"), "--engine", "openvino"]
    assert cli_main(argv) == 2
    assert "engine='openvino' needs openvino, which is not installed; install it with: pip install " \
        "'keras-rmz[openvino]'" in capsys.readouterr().err


@pytest.mark.cross_backend
def test_export_from_another_backend(preset, tmp_path):
    """On JAX (and PyTorch) the export goes through a TensorFlow subprocess
    and gives the same model."""
    path = tmp_path / "from_jax.onnx"
    code = ("import sys; from keras_rmz.export import export_onnx; "
            f"export_onnx({str(preset)!r}, {str(path)!r})")
    done = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "KERAS_BACKEND": "jax"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    keras_model = keras_rmz.presets.load_preset(preset)
    images, input_z, output_z = _planes(2, 40, 40, seed=5), [0.0, 2.0], [1.0]
    expected = keras_model.reconstruct(images, input_z, output_z, pixel_um=0.1, precision="float32", verbose=False)
    actual = export.OnnxModel(path).reconstruct(images, input_z, output_z, pixel_um=0.1, verbose=False)
    assert np.abs(actual - expected).max() <= TOLERANCE * np.ptp(expected)
