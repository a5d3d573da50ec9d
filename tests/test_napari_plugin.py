"""The napari plugin (keras_rmz/napari): its npe2 manifest checked by npe2
itself, the widget's compute function on numpy data against the model's own
``reconstruct``, the widget in an offscreen Qt, and, where a display with
OpenGL exists (``xvfb-run``), the widget docked in a real ``napari.Viewer``."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt starts: widgets without a display

import pathlib  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

napari = pytest.importorskip("napari")
npe2 = pytest.importorskip("npe2")

from keras_rmz.models import RecurrentMZ  # noqa: E402
from keras_rmz.napari import compute  # noqa: E402
from keras_rmz.presets import load_preset, save_preset  # noqa: E402

pytestmark = pytest.mark.run_once

MANIFEST = pathlib.Path(__file__).resolve().parents[1] / "keras_rmz" / "napari" / "napari.yaml"
EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "napari_screenshot.py"
METADATA = {"pixel_um": 0.1, "num_inputs": 2, "input_spacing_um": 1.0, "output_range_um": [-1.5, 1.5],
            "modality": "widefield -> widefield", "normalization": {"method": "paper"}}


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("napari") / "tiny"
    save_preset(RecurrentMZ(base_filters=4, depth=2), folder, metadata=METADATA)
    return folder


@pytest.fixture(scope="module")
def stack():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:32, :32]
    planes = [100 + 80 * np.exp(-((y - 16 - k) ** 2 + (x - 12) ** 2) / 20.0) + rng.random((32, 32))
              for k in range(11)]
    return np.stack(planes).astype(np.float32)  # 11 planes 0.2 µm apart


def test_manifest_is_valid_and_importable():
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()  # every python_name resolves
    assert {c.id for c in manifest.contributions.commands} == {"keras-rmz.reconstruct", "keras-rmz.simulated_beads"}
    assert [w.command for w in manifest.contributions.widgets] == ["keras-rmz.reconstruct"]
    assert [s.key for s in manifest.contributions.sample_data] == ["beads"]
    # The installed distribution declares it (the napari.manifest entry point).
    assert npe2.PluginManifest.from_distribution("keras-rmz").name == "keras-rmz"


def test_compute_equals_the_models_reconstruct(preset, stack):
    scale, translate = (0.2, 0.1, 0.1), (3.0, 0.0, 0.0)  # plane k at z = 3 + 0.2 k
    data, kwargs, kind = compute.reconstruct_layer(stack, scale, "0, 5", str(preset), "3:4:0.25",
                                                   translate=translate, precision="float32")
    assert kind == "image" and data.shape == (5, 32, 32) and data.dtype == np.float32
    assert kwargs["scale"] == pytest.approx((0.25, 0.1, 0.1))
    assert kwargs["translate"] == pytest.approx((3.0, 0.0, 0.0))
    assert kwargs["metadata"]["keras_rmz"]["input_z_um"] == pytest.approx([3.0, 4.0])
    expected = load_preset(preset).reconstruct(stack[[0, 5]], [3.0, 4.0], np.arange(3.0, 4.01, 0.25), pixel_um=0.1,
                                               precision="float32", verbose=False)
    np.testing.assert_allclose(data, expected, rtol=1e-5, atol=1e-5 * float(np.ptp(expected)))


def test_compute_reports_progress_per_model_call(preset, stack, monkeypatch):
    monkeypatch.setattr(compute, "PLANES_PER_STEP", 2)
    steps = compute.reconstruction_steps(stack, (0.2, 0.1, 0.1), [0, 5], str(preset), "0:1:0.25")
    seen = []
    with pytest.raises(StopIteration) as done:
        while True:
            seen.append(next(steps))
    assert seen == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert done.value.value[0].shape == (5, 32, 32)


@pytest.mark.parametrize("arguments, message", [
    (dict(data=np.zeros((32, 32))), "z-stack"),
    (dict(input_planes="0, 11"), "out of range"),
    (dict(input_planes="0, 0"), "distinct"),
    (dict(input_planes="a"), "integer"),
    (dict(output_z="0 1 1.5"), "equal steps"),
    (dict(scale=(0.2, 0.1, 0.2)), "square"),
    (dict(scale=(0.2, 0.0, 0.0)), "positive"),
    (dict(precision="float8"), "precision"),
])
def test_bad_requests_fail_before_the_model_loads(stack, arguments, message, monkeypatch):
    monkeypatch.setattr(compute, "_model", lambda preset: pytest.fail("the model was loaded"))
    request = dict(data=stack, scale=(0.2, 0.1, 0.1), input_planes="0, 5", preset="unused", output_z="0:1:0.25",
                   precision="auto")
    request.update(arguments)
    with pytest.raises(ValueError, match=message):
        compute.reconstruct_layer(request.pop("data"), request.pop("scale"), request.pop("input_planes"),
                                  request.pop("preset"), request.pop("output_z"), **request)


def test_sample_data_is_a_bead_stack_in_micrometres():
    from keras_rmz.napari.sample_data import simulated_beads

    ((data, kwargs, kind),) = simulated_beads()
    assert kind == "image" and data.shape == (101, 128, 128)
    assert kwargs["scale"] == pytest.approx((0.2, 0.1, 0.1))


def _widget(stack, preset):
    from keras_rmz.napari.widget import reconstruct_widget

    widget = reconstruct_widget()
    layer = napari.layers.Image(stack, scale=(0.2, 0.1, 0.1), translate=(3.0, 0, 0), name="planes")
    widget.preset_folder.value = str(preset)
    widget.image.choices = [layer]  # what the viewer's layer list offers
    widget.image.value = layer
    return widget, layer


def test_widget_prefills_from_the_layer_and_runs_in_a_worker(preset, stack):
    widget, _ = _widget(stack, preset)
    # M = 2 planes 1 µm (5 planes) apart from the preset, centred; z from the layer's scale.
    assert widget.input_planes.value == "2, 7"
    assert widget.output_z_um.value == "3.4:4.4:0.2"
    widget.precision.value = "float32"
    worker = widget()  # the call button's function: a napari FunctionWorker
    results = []
    worker.returned.connect(results.append)
    worker.run()  # in this thread
    ((data, kwargs, kind),) = results
    assert kind == "image" and data.shape == (6, 32, 32) and kwargs["name"] == "planes (Recurrent-MZ)"
    assert kwargs["scale"] == pytest.approx((0.2, 0.1, 0.1))
    assert kwargs["translate"] == pytest.approx((3.4, 0.0, 0.0))


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="a real napari.Viewer needs a display with OpenGL "
                    "(run the tests under xvfb-run); the offscreen Qt platform has none")
def test_widget_in_a_real_viewer(tmp_path):
    """examples/napari_screenshot.py in its own process: the sample data,
    the docked widget, a reconstruction added as a layer, a screenshot."""
    import json
    import subprocess
    import sys

    picture = tmp_path / "napari.png"
    # JAX: TensorFlow and napari's canvas crash together under Mesa's software OpenGL (docs/napari.md).
    environment = {**{k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, str(EXAMPLE), "--output", str(picture)],
                          capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["layers"] == ["simulated beads (wide-field)", "simulated beads (wide-field) (Recurrent-MZ)"]
    assert report["scale"] == pytest.approx([0.2, 0.1, 0.1])
    assert picture.stat().st_size > 10_000
