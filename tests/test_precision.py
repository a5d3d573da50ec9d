"""Precision as a setting (keras_rmz.precision, keras_rmz.backend.precision):
the "auto" decision table, every precision on every model against float32,
models that build all their layers in the policy they are given, copies that
follow the model's weights, and presets that stay float32."""

import json

import keras
import numpy as np
import pytest

import keras_rmz
from keras_rmz.backend import precision as backend_precision
from keras_rmz.models import DeepZ, RecurrentMZ, UNet3D
from keras_rmz.precision import POLICIES, resolve_precision, with_precision
from keras_rmz.presets import load_preset, save_preset

AMX = frozenset({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
AVX512_BF16_ONLY = frozenset({"avx512f", "avx512_bf16"})

# Largest |reduced - float32| over the float32 output's range, for the
# untrained tiny networks below. Measured on the three backends on an Intel
# Xeon with AMX: bfloat16 0.58-1.33 %, float16 0.12-0.21 %; on an AMD EPYC
# without AMX, TensorFlow's UNet3D (27-tap 3D convolutions) reaches 3.9 %
# in bfloat16 and 0.64 % in float16. bfloat16 keeps 8 bits of mantissa
# (relative rounding 0.4 %), float16 11 bits (0.05 %); the bounds leave
# room above the largest measured, and a cast that went wrong (float32
# weights read as another type, a layer left in float32 and fed reduced
# values the wrong way) is off by far more.
TOLERANCE = {"bfloat16": 0.06, "float16": 0.01}


@pytest.fixture
def no_override(monkeypatch):
    """"auto" as a user gets it (tests/conftest.py pins it to float32)."""
    monkeypatch.delenv(backend_precision.ENVIRONMENT_VARIABLE, raising=False)


@pytest.mark.parametrize(
    "backend, flags, accelerator, expected",
    [
        ("tensorflow", AMX, False, "bfloat16"),
        ("torch", AMX, False, "float32"),  # bfloat16 is faster, but moved a preset's PSNR by 0.032 dB
        ("jax", AMX, False, "float32"),  # XLA's CPU compiler computes bf16 convolutions in float32
        ("tensorflow", AVX512_BF16_ONLY, False, "float32"),
        ("torch", frozenset(), False, "float32"),
        ("tensorflow", AMX, True, "float32"),  # a GPU computes: not measured yet
        ("torch", frozenset(), True, "float32"),
    ],
)
def test_auto_follows_the_measured_table(no_override, backend, flags, accelerator, expected):
    assert backend_precision.auto_precision(backend, flags=flags, accelerator=accelerator) == expected


def test_the_environment_variable_is_what_auto_means(monkeypatch):
    monkeypatch.setenv(backend_precision.ENVIRONMENT_VARIABLE, "float16")
    assert backend_precision.auto_precision("jax", flags=frozenset(), accelerator=False) == "float16"
    assert resolve_precision("auto") == "float16"
    assert resolve_precision("bfloat16") == "bfloat16"  # an explicit choice wins
    monkeypatch.setenv(backend_precision.ENVIRONMENT_VARIABLE, "fp8")
    with pytest.raises(ValueError, match="KERAS_RMZ_PRECISION='fp8' is not a precision; set it to float32"):
        resolve_precision("auto")


def test_auto_on_this_machine_reads_its_cpu(no_override):
    expected = "float32"
    if keras.backend.backend() == "tensorflow" and "amx_bf16" in backend_precision.cpu_flags():
        expected = "bfloat16"
    from keras_rmz.backend.device import has_accelerator

    if not has_accelerator():
        assert resolve_precision("auto") == expected


@pytest.mark.parametrize("bad", ["fp16", "float64", None, 16])
def test_a_bad_precision_is_refused_before_any_compute(monkeypatch, bad):
    model = RecurrentMZ(base_filters=4, depth=2)

    def refuse(*args, **kwargs):
        raise AssertionError("the model ran before the precision was checked")

    monkeypatch.setattr(model, "predict_on_batch", refuse)
    with pytest.raises(ValueError, match="precision must be one of 'auto', 'float32', 'bfloat16', 'float16'"):
        model.reconstruct(np.ones((2, 32, 32)), [0.0, 2.0], [1.0], precision=bad)


def _smooth_planes(num_inputs, size=48, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    planes = [1 + np.sin(6 * x + k) * np.cos(4 * y - k) + 0.1 * rng.random((size, size)) for k in range(num_inputs)]
    return (100 * np.stack(planes)).astype(np.float32)


@pytest.mark.parametrize(
    "make, num_inputs",
    [
        (lambda: RecurrentMZ(base_filters=4, depth=2), 3),
        (lambda: DeepZ(base_filters=4, depth=2), 1),
        (lambda: UNet3D(num_inputs=2, base_filters=4, depth=1), 2),
    ],
    ids=["RecurrentMZ", "DeepZ", "UNet3D"],
)
@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_every_precision_agrees_with_float32(make, num_inputs, precision):
    keras.utils.set_random_seed(1)
    model = make()
    images = _smooth_planes(num_inputs)
    input_z = np.arange(num_inputs, dtype=np.float32) * 2.0
    output_z = np.array([0.5, 1.0, 2.5], np.float32)
    reference = model.reconstruct(images, input_z, output_z, precision="float32", verbose=False)
    reduced = model.reconstruct(images, input_z, output_z, precision=precision, verbose=False)
    assert reduced.dtype == np.float32 and reduced.shape == reference.shape
    assert np.all(np.isfinite(reduced))
    error = np.abs(reduced - reference).max() / np.ptp(reference)
    assert error <= TOLERANCE[precision], error
    # Reduced precision computes something else than float32 at all: the
    # copy really runs in it.
    assert error > 0


def test_models_build_every_layer_in_the_policy_they_are_given():
    model = RecurrentMZ(base_filters=4, depth=2, dtype="mixed_bfloat16")
    policies = {layer.dtype_policy.name for layer in model._flatten_layers(include_self=True)}
    assert policies == {"mixed_bfloat16"}
    assert all(v.dtype == "float32" for v in model.weights)
    # The global default is untouched, and the config does not carry the policy.
    assert keras.config.dtype_policy().name == "float32"
    assert "dtype" not in model.get_config()
    for cls, kwargs in ((DeepZ, {}), (UNet3D, {"num_inputs": 2, "depth": 1})):
        other = cls(base_filters=4, dtype="mixed_float16", **kwargs)
        assert {layer.dtype_policy.name for layer in other._flatten_layers()} == {"mixed_float16"}


def test_large_stage_positions_keep_their_distances_in_bfloat16():
    """The DPM is the distance output_z - input_z: taken in float32 before the
    cast, a stack at z = 1000 µm gives what the same stack at z = 0 gives
    (bfloat16 itself steps 4 µm apart at 1000 µm)."""
    keras.utils.set_random_seed(2)
    model = RecurrentMZ(base_filters=4, depth=2, input_residual=True)
    images = _smooth_planes(3)
    near = model.reconstruct(images, [0.0, 3.0, 6.0], [1.3, 4.9], precision="bfloat16", verbose=False)
    far = model.reconstruct(images, [1000.0, 1003.0, 1006.0], [1001.3, 1004.9], precision="bfloat16", verbose=False)
    np.testing.assert_array_equal(far, near)


def test_the_copy_follows_the_weights_and_is_made_once():
    keras.utils.set_random_seed(3)
    model = RecurrentMZ(base_filters=4, depth=2)
    assert with_precision(model, "float32") is model
    copy = with_precision(model, "bfloat16")
    assert copy is not model and copy.compute_dtype == "bfloat16"
    assert with_precision(model, "bfloat16") is copy
    images, input_z, output_z = _smooth_planes(3), [0.0, 2.0, 4.0], [1.0]
    before = model.reconstruct(images, input_z, output_z, precision="bfloat16", verbose=False)
    keras.utils.set_random_seed(9)
    model.set_weights(RecurrentMZ(base_filters=4, depth=2).get_weights())  # as if trained further
    after = model.reconstruct(images, input_z, output_z, precision="bfloat16", verbose=False)
    reference = model.reconstruct(images, input_z, output_z, precision="float32", verbose=False)
    assert not np.allclose(after, before)
    assert np.abs(after - reference).max() / np.ptp(reference) <= TOLERANCE["bfloat16"]
    # A model already in a reduced policy runs as it is when asked for it.
    mixed = RecurrentMZ(base_filters=4, depth=2, dtype="mixed_bfloat16")
    assert with_precision(mixed, "bfloat16") is mixed
    assert with_precision(mixed, "float32").compute_dtype == "float32"


def test_presets_keep_float32_weights_and_load_in_any_precision(tmp_path):
    keras.utils.set_random_seed(4)
    model = RecurrentMZ(base_filters=4, depth=2, dtype="mixed_bfloat16")
    model.reconstruct(_smooth_planes(2), [0.0, 2.0], [1.0], precision="bfloat16", verbose=False)
    folder = tmp_path / "preset"
    save_preset(model, folder, metadata={"num_inputs": 2})
    config = json.loads((folder / "config.json").read_text())
    assert "dtype" not in config["config"]
    plain = load_preset(folder)
    assert plain.compute_dtype == "float32"
    for saved, loaded in zip(model.weights, plain.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(saved), keras.ops.convert_to_numpy(loaded))
    tuned = load_preset(folder, dtype=POLICIES["float16"])
    assert tuned.compute_dtype == "float16" and all(v.dtype == "float32" for v in tuned.weights)
    # The copy keeps what the guards read: the preset's metadata.
    assert with_precision(plain, "bfloat16").preset_metadata == plain.preset_metadata


def test_reconstruct_stack_records_the_precision(tmp_path):
    keras.utils.set_random_seed(5)
    model = RecurrentMZ(base_filters=4, depth=2)
    stack = keras_rmz.io.Stack(_smooth_planes(4), np.arange(4) * 1.0, 0.1)
    result = keras_rmz.inference.reconstruct_stack(model, stack, [0, 3], [1.0, 2.0], verbose=False,
                                                   precision="bfloat16")
    assert result.metadata["reconstruction"]["precision"] == "bfloat16"
