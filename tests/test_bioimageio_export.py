"""BioImage Model Zoo packages (``keras-rmz export --format bioimageio``),
checked by bioimageio.core's own ``test_model`` and against the Keras model.

The export runs on TensorFlow (a subprocess on the other backends) and the
package runs in ONNX Runtime, so these tests run once per CI run."""

import zipfile

import keras
import numpy as np
import pytest
import yaml

from keras_rmz.cli.main import main as cli_main
from keras_rmz.models import RecurrentMZ
from keras_rmz.presets import load_preset, save_preset

pytestmark = pytest.mark.run_once

METADATA = {"pixel_um": 0.1, "num_inputs": 2, "input_spacing_um": 2.0, "output_range_um": [-3.0, 3.0],
            "modality": "widefield -> widefield", "sample": "beads (simulated)",
            "normalization": {"method": "paper"}, "license": "apache-2.0",
            "metrics": {"table": {"model": {"psnr_between_db": 30.0},
                                  "linear interpolation": {"psnr_between_db": 28.5}}}}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    pytest.importorskip("bioimageio.core")
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("bioimageio") / "tiny"
    save_preset(RecurrentMZ(base_filters=4, depth=2), folder, metadata=METADATA)
    path = folder.parent / "tiny.zip"
    assert cli_main(["export", str(folder), "--format", "bioimageio", "-o", str(path), "-q"]) == 0
    return folder, path


def _read(path):
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        arrays = {name: np.load(archive.open(name)) for name in names if name.endswith(".npy")}
        readme = archive.read("README.md").decode("utf-8")
    return names, rdf, arrays, readme


def test_bioimageio_core_test_model_passes(package):
    from bioimageio.core import test_model

    _, path = package
    summary = test_model(path)
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    # It ran the ONNX weights on the test tensors and at other sizes and batch sizes.
    names = [d.name for d in summary.details]
    assert any("Reproduce test outputs" in name and "onnx" in name for name in names)
    assert sum("Run onnx inference" in name for name in names) >= 2


def test_package_describes_three_inputs_with_units(package):
    _, path = package
    names, rdf, arrays, readme = _read(path)
    assert rdf["format_version"].startswith("0.5") and rdf["type"] == "model"
    assert {"rdf.yaml", "README.md", "cover.png", "weights.onnx"} <= names
    assert [t["id"] for t in rdf["inputs"]] == ["images", "input_z", "output_z"]
    assert [t["id"] for t in rdf["outputs"]] == ["plane"]
    images, input_z, output_z = rdf["inputs"]
    assert [a["type"] for a in images["axes"]] == ["batch", "index", "space", "space", "channel"]
    assert images["axes"][1]["size"] == 2  # M fixed to the preset's
    space = [a for a in images["axes"] if a["type"] == "space"]
    assert [a["id"] for a in space] == ["y", "x"]
    assert all(a["unit"] == "micrometer" and a["scale"] == pytest.approx(0.1) for a in space)
    assert all(a["size"] == {"min": 4, "step": 4} for a in space)  # 2**depth
    assert input_z["data"]["unit"] == "µm" and output_z["data"]["unit"] == "µm"
    assert input_z["axes"][1]["size"] == {"tensor_id": "images", "axis_id": "index"}
    assert [a["type"] for a in output_z["axes"]] == ["batch"]
    out_space = [a for a in rdf["outputs"][0]["axes"] if a["type"] == "space"]
    assert all(a["size"] == {"tensor_id": "images", "axis_id": a["id"]} for a in out_space)
    assert set(rdf["weights"]) == {"onnx"}
    assert rdf["cite"][0]["doi"] == "10.1038/s41377-021-00506-9"
    assert rdf["license"] == "Apache-2.0"
    # Test tensors: normalized planes, their z Δz apart, an output z between them.
    assert arrays["test_images.npy"].shape == (1, 2, 128, 128, 1)
    np.testing.assert_allclose(np.diff(arrays["test_input_z.npy"][0]), [2.0], atol=1e-5)
    assert arrays["test_output_z.npy"].shape == (1,)
    # The card says how to normalize, and carries the preset's held-out metrics.
    assert "99th percentile" in readme and "## Validation" in readme and "30.00 dB" in readme


def test_expected_output_is_the_keras_models(package):
    """The package's expected plane (ONNX Runtime's) equals the Keras
    model's prediction on the same test tensors."""
    folder, path = package
    _, _, arrays, _ = _read(path)
    model = load_preset(folder)
    keras_plane = keras.ops.convert_to_numpy(model({
        "images": arrays["test_images.npy"], "input_z": arrays["test_input_z.npy"],
        "output_z": arrays["test_output_z.npy"]}))
    expected = arrays["test_plane.npy"]
    assert expected.shape == keras_plane.shape == (1, 128, 128, 1)
    span = float(keras_plane.max() - keras_plane.min())
    assert np.max(np.abs(expected - keras_plane)) <= 1e-4 * max(span, 1e-6)


def test_bad_requests_fail_before_any_work(package, tmp_path, capsys):
    folder, path = package
    assert cli_main(["export", str(folder), "--format", "bioimageio", "-o", str(tmp_path / "x.onnx")]) != 0
    assert ".zip" in capsys.readouterr().err
    assert cli_main(["export", str(folder), "--format", "bioimageio", "-o", str(path)]) != 0  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(["export", "no_such_preset", "--format", "bioimageio", "-o", str(tmp_path / "y.zip")]) != 0
    assert not (tmp_path / "y.zip").exists()


def test_missing_extra_is_named(monkeypatch, tmp_path):
    import sys

    from keras_rmz import bioimageio_export

    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"keras-rmz\[bioimageio\]"):
        bioimageio_export.export_bioimageio("recurrent_mz_nuclei_m2", tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()
