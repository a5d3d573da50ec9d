"""``model.compile()`` with no arguments trains every reconstruction model
(the recipe of docs/presets.md: ``compile()``, then ``fit(VolumeDataset)``),
and any argument given still wins."""

import keras
import numpy as np
import pytest

import keras_rmz
from keras_rmz.io import Stack
from keras_rmz.losses import RecurrentMZLoss
from keras_rmz.metrics.keras_metrics import PSNR, SSIM
from keras_rmz.models import RecurrentMZ
from keras_rmz.models.reconstruction_model import ReconstructionModel

MODELS = {
    "RecurrentMZ": lambda: keras_rmz.RecurrentMZ(base_filters=4, depth=2),
    "RecurrentMZPlus": lambda: keras_rmz.RecurrentMZPlus(base_filters=4, depth=2),
    "DeepZ": lambda: keras_rmz.DeepZ(base_filters=4, depth=2),
    "UNet3D": lambda: keras_rmz.UNet3D(num_inputs=2, base_filters=4, depth=2),
}


def test_every_reconstruction_model_is_covered():
    subclasses, pending = set(), [ReconstructionModel]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass.__module__.startswith("keras_rmz."):
                subclasses.add(subclass.__name__)
                pending.append(subclass)
    assert subclasses <= set(MODELS), f"add {sorted(subclasses - set(MODELS))} to MODELS"


def _tiny_dataset(num_inputs=2):
    rng = np.random.default_rng(0)
    stacks = [
        Stack((100 + 1000 * rng.random((9, 24, 24))).astype("float32"), z=np.arange(9) * 0.5, pixel_um=0.1)
        for _ in range(2)
    ]
    return keras_rmz.data.VolumeDataset(
        stacks, num_inputs=num_inputs, input_spacing_um=2.0, patch_size=16, batch_size=2, steps_per_epoch=2, seed=0
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_compile_without_arguments_gives_the_paper_content_loss_and_trains(name):
    model = MODELS[name]()
    model.compile()
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(1e-4)
    assert isinstance(model.loss, RecurrentMZLoss)
    assert model.loss.berhu_weight == 3.0 and model.loss.ms_ssim_weight == 1.0

    dataset = _tiny_dataset(num_inputs=1 if name == "DeepZ" else 2)
    model(dataset[0][0])  # build
    before = [np.array(keras.ops.convert_to_numpy(v)) for v in model.trainable_variables]
    history = model.fit(dataset, epochs=1, verbose=0)
    after = [np.array(keras.ops.convert_to_numpy(v)) for v in model.trainable_variables]

    logs = history.history
    assert np.isfinite(logs["loss"][-1])
    assert np.isfinite(logs["psnr"][-1]) and np.isfinite(logs["ssim"][-1])
    assert any(not np.array_equal(b, a) for b, a in zip(before, after))


def test_arguments_given_to_compile_win():
    model = MODELS["RecurrentMZ"]()
    optimizer = keras.optimizers.SGD(0.5)
    model.compile(optimizer=optimizer, loss="mae", metrics=[], jit_compile=False)
    assert model.optimizer is optimizer
    assert model.loss == "mae"
    assert model.jit_compile is False

    model.compile(learning_rate=3e-5, metrics=[PSNR()])
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(3e-5)
    assert isinstance(model.loss, RecurrentMZLoss)


def test_learning_rate_goes_with_the_auto_optimizer_only():
    model = MODELS["RecurrentMZ"]()
    with pytest.raises(ValueError, match="learning_rate"):
        model.compile(optimizer="adam", learning_rate=1e-3)
    with pytest.raises(ValueError, match="learning_rate"):
        model.compile(learning_rate=-1.0)


def test_the_default_metrics_are_psnr_and_ssim():
    model = MODELS["RecurrentMZ"]()
    model.compile()
    dataset = _tiny_dataset()
    logs = model.evaluate(dataset, verbose=0, return_dict=True)
    assert {"loss", "psnr", "ssim"} <= set(logs)
    assert isinstance(PSNR(), keras.metrics.Metric) and isinstance(SSIM(), keras.metrics.Metric)


def test_normalization_is_part_of_the_config_and_used_by_reconstruct(tmp_path):
    from keras_rmz.data import compute_normalization

    rng = np.random.default_rng(3)
    images = (100 + rng.poisson(20, (2, 32, 32))).astype(np.float32)
    images[:, 8:12, 8:12] += 2000
    plain = RecurrentMZ(base_filters=4, depth=2, normalization="none")
    assert plain.get_config()["normalization"] == "none"
    clone = RecurrentMZ.from_config(plain.get_config())
    assert clone.normalization == "none"
    clone.set_weights(plain.get_weights())
    batch = {"images": images[None, ..., None], "input_z": np.array([[0.0, 2.0]], np.float32),
             "output_z": np.array([1.0], np.float32)}
    # "none": the network sees the intensities as given.
    expected = np.asarray(keras.ops.convert_to_numpy(plain.predict_on_batch(batch)))[0, ..., 0]
    got = clone.reconstruct(images, [0.0, 2.0], [1.0], verbose=False)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    # The default, the paper's: normalized in, mapped back out.
    paper = RecurrentMZ(base_filters=4, depth=2)
    paper.set_weights(plain.get_weights())
    assert paper.normalization == "paper" and paper.get_config()["normalization"] == "paper"
    norm = compute_normalization(images)
    normalized = {**batch, "images": norm.apply(images)[None, ..., None].astype(np.float32)}
    inner = np.asarray(keras.ops.convert_to_numpy(paper.predict_on_batch(normalized)))[0, ..., 0]
    np.testing.assert_allclose(paper.reconstruct(images, [0.0, 2.0], [1.0], verbose=False)[0],
                               norm.invert(inner), rtol=1e-4, atol=1e-2)
    with pytest.raises(ValueError, match="normalization must be one of 'paper', 'none'"):
        RecurrentMZ(base_filters=4, depth=2, normalization="zscore")
    # Saved in a preset and read back from it.
    plain.save_to_preset(tmp_path / "plain")
    from keras_rmz.presets import load_preset

    assert load_preset(str(tmp_path / "plain")).normalization == "none"
