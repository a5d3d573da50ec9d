"""A preset model respects physical sizes and guards what it was trained for
(keras_rmz.out_of_distribution, reconstruct's pixel_um= / extrapolate=)."""

import math
import pathlib
import warnings

import numpy as np
import pytest

import keras_rmz
from keras_rmz import evaluation, inference
from keras_rmz.io import Stack
from keras_rmz.models import RecurrentMZ
from keras_rmz.presets import load_preset, registry, save_preset

WEIGHTS = pathlib.Path(keras_rmz.__file__).resolve().parents[1] / "weights"

TRAINED = {
    "modality": "widefield -> widefield",
    "pixel_um": 0.1,
    "num_inputs": 3,
    "input_spacing_um": 2.0,
    "output_range_um": [-2.0, 2.0],  # accepted with the 10 % margin: [-2.4, 2.4]
    "optics": {"na": 1.4, "emission_wavelength_um": 0.615},
}


@pytest.fixture(scope="module")
def make_preset(tmp_path_factory):
    """A tiny RecurrentMZ saved as a preset with the given metadata, loaded."""
    model = RecurrentMZ(base_filters=4, depth=2)

    def make(**changes):
        metadata = {**TRAINED, **changes}
        folder = tmp_path_factory.mktemp("preset") / "tiny"
        save_preset(model, folder, metadata={k: v for k, v in metadata.items() if v is not None})
        return load_preset(folder)

    return make


@pytest.fixture(scope="module")
def preset(make_preset):
    return make_preset()


class Spy:
    """Wraps a model: records the planes each model call sees; ``fail``
    makes any compute (a model call, the normalization) an error."""

    def __init__(self, model, monkeypatch, fail=False):
        self.shapes = []
        original = model.predict_on_batch

        def predict_on_batch(batch):
            if fail:
                raise AssertionError("the model ran")
            self.shapes.append(np.shape(batch["images"])[2:4])
            return original(batch)

        monkeypatch.setattr(model, "predict_on_batch", predict_on_batch)
        if fail:
            def no_normalization(*args, **kwargs):
                raise AssertionError("the normalization was computed")

            monkeypatch.setattr(inference, "resolve_normalization", no_normalization)


def _images(height=24, width=20, m=3, seed=0):
    return np.random.default_rng(seed).uniform(100, 1000, (m, height, width)).astype(np.float32)


def _request():
    """M = 3 inputs 1 µm apart (within 0.5-2x the trained 2 µm), output_z -
    input_z within [-1.5, 1.5] µm (trained: [-2, 2])."""
    return {"input_z": np.array([2.0, 3.0, 4.0]), "output_z": np.array([2.5, 3.5])}


# ---------------------------------------------------------------------------
# preset_metadata


def test_preset_metadata_is_none_without_a_preset_and_a_read_only_copy_with_one(preset):
    assert RecurrentMZ(base_filters=4, depth=2).preset_metadata is None
    metadata = preset.preset_metadata
    assert metadata["pixel_um"] == 0.1 and metadata["output_range_um"] == [-2.0, 2.0]
    assert type(metadata) is dict and type(metadata["optics"]) is dict
    metadata["pixel_um"] = 7.0
    metadata["optics"]["na"] = 0.1
    assert preset.preset_metadata["pixel_um"] == 0.1 and preset.preset_metadata["optics"]["na"] == 1.4
    with pytest.raises(AttributeError):
        preset.preset_metadata = {}


def test_read_preset_metadata_needs_no_model(preset, tmp_path):
    folder = tmp_path / "p"
    save_preset(RecurrentMZ(base_filters=4, depth=2), folder, metadata={"pixel_um": 0.2})
    assert keras_rmz.presets.read_preset_metadata(folder)["pixel_um"] == 0.2
    with pytest.raises(ValueError, match="unknown preset"):
        keras_rmz.presets.read_preset_metadata("no_such_preset")


# ---------------------------------------------------------------------------
# Pixel size


def test_unknown_pixel_size_is_an_error_before_any_compute(preset, monkeypatch):
    Spy(preset, monkeypatch, fail=True)
    with pytest.raises(ValueError, match=r"pixel size is unknown.*0\.1 µm pixels.*pass pixel_um="):
        preset.reconstruct(_images(), **_request())


def test_a_model_without_preset_keeps_todays_behaviour(monkeypatch):
    model = RecurrentMZ(base_filters=4, depth=2)
    spy = Spy(model, monkeypatch)
    monkeypatch.setattr(inference, "resample_planes", lambda *a: pytest.fail("resampled"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", keras_rmz.OutOfDistributionWarning)
        volume = model.reconstruct(_images(), [0.0, 10.0, 30.0], [50.0], pixel_um=0.3, verbose=False)
    assert volume.shape == (1, 24, 20) and spy.shapes == [(24, 20)]


@pytest.mark.parametrize(
    "pixel_um, seen",
    [
        (0.2, (48, 40)),  # upsampled 2x to the preset's 0.1 µm
        (0.065, (16, 13)),  # downsampled: 24 * 0.65 = 15.6, 20 * 0.65 = 13
        (0.1015, (24, 20)),  # within 2 %: used as it is
        (0.0985, (24, 20)),
    ],
)
def test_planes_are_resampled_to_the_preset_pixel_size_and_back(preset, monkeypatch, pixel_um, seen):
    spy = Spy(preset, monkeypatch)
    volume = preset.reconstruct(_images(), pixel_um=pixel_um, verbose=False, batch_size=2, **_request())
    assert spy.shapes == [seen]
    assert volume.shape == (2, 24, 20) and volume.dtype == np.float32 and np.isfinite(volume).all()


def test_resampling_uses_scikit_image_with_anti_aliasing_when_downsampling():
    from skimage.transform import resize

    planes = np.random.default_rng(1).random((2, 30, 20)).astype(np.float32)
    np.testing.assert_allclose(
        inference.resample_planes(planes, (15, 10)),
        resize(planes, (2, 15, 10), order=1, anti_aliasing=True, preserve_range=True), rtol=1e-6,
    )
    np.testing.assert_allclose(
        inference.resample_planes(planes, (60, 40)),
        resize(planes, (2, 60, 40), order=1, anti_aliasing=False, preserve_range=True), rtol=1e-6,
    )
    np.testing.assert_array_equal(inference.resample_planes(planes, (30, 20)), planes)


def test_a_stack_gives_pixel_size_and_z(preset, monkeypatch):
    spy = Spy(preset, monkeypatch)
    request = _request()
    stack = Stack(_images(), request["input_z"], 0.2)
    volume = preset.reconstruct(stack, output_z=request["output_z"], verbose=False, batch_size=2)
    assert spy.shapes == [(48, 40)] and volume.shape == (2, 24, 20)
    # An explicit pixel_um wins over the stack's; input_z may be given too.
    preset.reconstruct(stack, request["input_z"], request["output_z"], pixel_um=0.1, verbose=False, batch_size=2)
    assert spy.shapes[-1] == (24, 20)
    with pytest.raises(ValueError, match="output_z"):
        preset.reconstruct(stack)
    with pytest.raises(ValueError, match="input_z"):
        preset.reconstruct(_images(), output_z=[1.0])


# ---------------------------------------------------------------------------
# Output range


def test_output_planes_beyond_the_trained_range_are_refused_before_any_compute(preset, monkeypatch):
    Spy(preset, monkeypatch, fail=True)
    # 4.5 - 2 = 2.5 µm: 0.1 µm beyond [-2.4, 2.4] (the trained [-2, 2] with a 10 % margin).
    with pytest.raises(ValueError) as error:
        preset.reconstruct(_images(), [2.0, 3.0, 4.0], [3.0, 4.5], pixel_um=0.1)
    message = str(error.value)
    assert "up to 0.1 µm outside" in message and "[-2, 2] µm" in message and "[-2.4, 2.4] µm" in message
    assert "10% margin" in message and "extrapolate=True" in message and "4.5" in message
    # On the edges of the margin is accepted: 4.4 - 2 = 2.4, 1.6 - 4 = -2.4.
    with pytest.raises(AssertionError, match="normalization"):
        preset.reconstruct(_images(), [2.0, 3.0, 4.0], [4.4, 1.6], pixel_um=0.1)


def test_extrapolate_reconstructs_with_a_warning(preset):
    with pytest.warns(keras_rmz.OutOfDistributionWarning, match="extrapolation") as record:
        volume = preset.reconstruct(_images(), [2.0, 3.0, 4.0], [3.0, 4.5], pixel_um=0.1, extrapolate=True,
                                    verbose=False)
    assert volume.shape == (2, 24, 20)
    assert len([w for w in record if w.category is keras_rmz.OutOfDistributionWarning]) == 1
    assert record[0].filename == __file__  # points at the user's line


# ---------------------------------------------------------------------------
# One warning for every other mismatch


def _ood_warnings(call):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        call()
    return [w for w in record if issubclass(w.category, keras_rmz.OutOfDistributionWarning)]


def test_no_warning_when_the_request_matches_training(preset):
    acquisition = {"modality": "WideField", "optics": {"na": 1.4, "emission_wavelength_um": 0.62}}
    stack = Stack(_images(), [2.0, 4.0, 6.0], 0.1, acquisition)
    assert _ood_warnings(lambda: preset.reconstruct(stack, output_z=[4.0], verbose=False)) == []


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"input_z": [2.0, 2.5, 3.0]}, "input spacing: the input planes are 0.5, 0.5 µm apart"),  # < 2 / 2
        ({"m": 2, "input_z": [2.0, 6.6], "output_z": [4.3]}, "input spacing: the input planes are 4.6 µm"),
        ({"m": 2}, "number of inputs: M = 2; the preset was trained with M = 3"),
        ({"modality": "LaserScanningConfocalMicroscopy"}, "modality: the stack is 'LaserScanningConfocalMicroscopy'"),
        ({"optics": {"emission_wavelength_um": 0.52}}, "emission wavelength: 520 nm; the preset was trained at 615 nm"),
        ({"optics": {"na": 1.2}}, "numerical aperture: NA 1.2; the preset was trained at NA 1.4"),
    ],
)
def test_each_mismatch_warns(preset, change, expected):
    m = change.get("m", 3)
    input_z = change.get("input_z", [2.0, 4.0, 6.0][:m])
    metadata = {key: change[key] for key in ("modality", "optics") if key in change}
    stack = Stack(_images(m=m), input_z, 0.1, metadata)
    (warning,) = _ood_warnings(lambda: preset.reconstruct(stack, output_z=change.get("output_z", [4.0]),
                                                          verbose=False))
    message = str(warning.message)
    assert expected in message
    assert "keras-rmz finetune STACK --preset" in message and "docs/finetuning.md" in message


@pytest.mark.parametrize(
    "optics, expected",
    [
        ({"emission_wavelength_um": 0.52, "na": 1.2}, None),  # inside the trained ranges
        ({"emission_wavelength_um": 0.44}, None),  # within 5 % of the range's end
        ({"emission_wavelength_um": 0.75}, "emission wavelength: 750 nm; the preset was trained at 450 nm to 680 nm"),
        ({"na": 0.8}, "numerical aperture: NA 0.8; the preset was trained at NA 1.1 to 1.49"),
    ],
)
def test_a_preset_trained_on_ranges_warns_only_outside_them(optics, expected):
    """A domain-randomized preset records its optics as [low, high] ranges."""
    from keras_rmz import out_of_distribution

    metadata = {"optics": {"emission_wavelength_um": [0.45, 0.68], "na": [1.1, 1.49]}}
    mismatches = out_of_distribution.check_request(
        metadata, input_z=np.array([2.0, 8.0]), output_z=np.array([5.0]), pixel_um=0.1,
        stack_metadata={"optics": optics})
    if expected is None:
        assert mismatches == []
    else:
        (mismatch,) = mismatches
        assert mismatch.startswith(expected)


def test_every_mismatch_in_one_warning_before_any_compute(preset, monkeypatch):
    Spy(preset, monkeypatch, fail=True)
    stack = Stack(_images(m=2), [2.0, 2.5], 0.1, {"modality": "confocal", "optics": {"na": 1.0, "wavelength_um": 0.5}})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(AssertionError, match="normalization"):
            preset.reconstruct(stack, output_z=[2.2])
    (warning,) = [w for w in record if w.category is keras_rmz.OutOfDistributionWarning]
    message = str(warning.message)
    for part in ("input spacing", "number of inputs", "modality", "emission wavelength", "numerical aperture"):
        assert part in message
    assert str(pathlib.Path(preset._keras_rmz_preset_handle)) in message


def test_out_of_distribution_warning_is_exported():
    assert issubclass(keras_rmz.OutOfDistributionWarning, UserWarning)
    assert "OutOfDistributionWarning" in dir(keras_rmz)


def test_adaptive_acquisition_checks_once(preset):
    stack = Stack(_images(m=3), [2.0, 4.0, 6.0], 0.2)
    record = _ood_warnings(lambda: evaluation.adaptive_acquisition(preset, stack, None, [4.0]))
    assert len(record) == 0  # checked with all N = 3 planes; the steps M = 1, 2 do not warn
    with pytest.raises(ValueError, match="pixel_um="):
        evaluation.adaptive_acquisition(preset, stack.data, stack.z, [4.0])


# ---------------------------------------------------------------------------
# The shipped 0.1 µm bead preset on stacks of other pixel sizes


FIELD_UM = 10.4  # 160 px of 0.065 µm, 104 of 0.1 µm, 52 of 0.2 µm
BEADS_INPUT_Z = np.array([1.0, 4.0, 7.0])  # M = 3, 3 µm apart, as trained
BEADS_OUTPUT_Z = np.array([2.0, 2.4, 3.0, 5.0, 5.6, 6.0])  # between the inputs
FINE_UM = 0.05


def _bead_positions(seed=7):
    rng = np.random.default_rng(seed)
    low, high = np.array([-1.5, -1.4, -1.4]), np.array([9.5, FIELD_UM + 1.4, FIELD_UM + 1.4])
    return rng.uniform(low, high, size=(rng.poisson(0.015 * np.prod(high - low)), 3))


def _camera_stack(positions, pixel_um):
    """The same beads (positions in µm) seen by a camera of ``pixel_um``
    pixels: simulate_stack places each bead on its own grid (a 0.2 µm grid
    blurs and aliases what a 0.1 µm grid resolves), so the light is
    simulated on a grid of at most 0.05 µm and summed over each camera pixel,
    as the camera integrates it. Returns (noise-free counts, measured
    counts) at z = 0, 0.2, ..., 8 µm."""
    from keras_rmz.simulate import Camera, simulate_stack

    factor = math.ceil(pixel_um / FINE_UM - 1e-9)
    n = int(round(FIELD_UM / pixel_um))
    fine = simulate_stack("beads", shape=(41, n * factor, n * factor), z_step_um=0.2, pixel_um=pixel_um / factor,
                          positions_um=positions, margin_um=(2.0, 1.6), noise=False, seed=0,
                          camera=Camera(offset_counts=0, background_photons=0))
    photons = fine.data.astype(np.float64).reshape(41, n, factor, n, factor).sum(axis=(2, 4))
    camera = Camera()
    return camera, camera.expected_counts(photons), camera.acquire(photons, np.random.default_rng(7))


def test_the_bead_preset_scores_alike_at_0065_01_and_02_um_pixels():
    name = "recurrent_mz_beads_m3"
    if not (WEIGHTS / name / "model.weights.h5").is_file() or name not in registry.PRESETS:
        pytest.skip(f"{name} is not shipped in this checkout")
    model = RecurrentMZ.from_preset(name)
    positions = _bead_positions()
    inputs = np.round(BEADS_INPUT_Z / 0.2).astype(int)
    outputs = np.round(BEADS_OUTPUT_Z / 0.2).astype(int)
    scores, unresampled, reference_scale = {}, {}, None
    for pixel_um in (0.1, 0.065, 0.2):
        camera, truth, measured = _camera_stack(positions, pixel_um)

        def density(counts, pixel_um=pixel_um):
            # photons per µm²: one intensity scale on every grid.
            return (np.asarray(counts, np.float64) - camera.offset_counts - camera.background_photons) / pixel_um**2

        if reference_scale is None:  # the 0.1 µm truth's normalization scale, as a density
            reference_scale = keras_rmz.data.compute_normalization(truth).scale / 0.1**2

        def psnr(volume):
            t, v = density(truth[outputs]) / reference_scale, density(volume) / reference_scale
            return float(np.mean([10 * np.log10(1.0 / np.mean((a - b) ** 2)) for a, b in zip(t, v)]))

        volume = model.reconstruct(measured[inputs], BEADS_INPUT_Z, BEADS_OUTPUT_Z, pixel_um=pixel_um, verbose=False)
        assert volume.shape == (len(outputs), *measured.shape[1:])
        scores[pixel_um] = psnr(volume)
        if pixel_um != 0.1:  # the 0.1 µm model fed the planes as they are
            unresampled[pixel_um] = psnr(model.reconstruct(measured[inputs], BEADS_INPUT_Z, BEADS_OUTPUT_Z,
                                                           pixel_um=0.1, verbose=False))
    # Measured on TensorFlow: 0.1 µm 38.81 dB; 0.065 µm 38.53 (unresampled
    # 37.01); 0.2 µm 39.60 (unresampled 38.52) (docs/inference.md).
    for pixel_um in (0.065, 0.2):
        assert scores[pixel_um] > scores[0.1] - 1.0, (scores, unresampled)
        assert scores[pixel_um] > unresampled[pixel_um], (scores, unresampled)
