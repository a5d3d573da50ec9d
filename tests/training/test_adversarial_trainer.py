import keras
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from keras_rmz.losses import RecurrentMZLoss
from keras_rmz.metrics.keras_metrics import PSNR, SSIM
from keras_rmz.training import AdversarialOptimizer, AdversarialTrainer, TrainingCheckpoint
from tests.helpers import assert_config_roundtrip, assert_keras_saving_roundtrip, to_numpy
from tests.training.training_testing import (
    Recorder,
    batch,
    interpolation_data,
    numpy_berhu,
    numpy_psnr,
    tiny_discriminator,
    tiny_generator,
    variables_numpy,
)

EPOCHS = 8
BATCH_SIZE = 4
STEPS_PER_EPOCH = 16 // BATCH_SIZE


def make_trainer():
    trainer = AdversarialTrainer(tiny_generator(seed=0), tiny_discriminator(seed=1))
    # A larger learning rate than the paper's 1e-5 so that a few dozen steps show learning.
    trainer.compile(learning_rate=3e-3, discriminator_learning_rate=1e-3)
    return trainer


def golden_first_step(trainer, x, y):
    """Eq. 7 and 10 evaluated in numpy on the networks' outputs before the step."""
    generator, discriminator = trainer.generator, trainer.discriminator
    saved = variables_numpy(generator.weights)
    y_hat = to_numpy(generator(x, training=True)).astype(np.float64)
    for variable, value in zip(generator.weights, saved):  # undo the batch-norm update
        variable.assign(value)
    d_fake = to_numpy(discriminator(y_hat.astype("float32"))).astype(np.float64)
    d_real = to_numpy(discriminator(y)).astype(np.float64)
    return {
        "berhu_loss": numpy_berhu(y, y_hat).mean(),
        "adversarial_loss": np.mean((d_fake - 1.0) ** 2),
        "d_real_loss": 0.5 * np.mean((d_real - 1.0) ** 2),
        "d_fake_loss": 0.5 * np.mean(d_fake**2),
        "psnr": numpy_psnr(y, y_hat).mean(),
    }


def training_mode_pixel_error(generator, x, y):
    """BerHu error of the generator in training mode (batch statistics);
    the batch-norm moving statistics that call updates are put back."""
    saved = variables_numpy(generator.weights)
    error = numpy_berhu(y, to_numpy(generator(x, training=True))).mean()
    for variable, value in zip(generator.weights, saved):
        variable.assign(value)
    return error


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One adversarial training run shared by the tests below: fit for
    EPOCHS epochs with validation, recording every step."""
    keras.utils.set_random_seed(1234)
    inputs, target = interpolation_data(16, seed=0)
    val_inputs, val_target = interpolation_data(8, seed=1)
    trainer = make_trainer()
    first_x, first_y = batch(inputs, target, 0, BATCH_SIZE)
    golden = golden_first_step(trainer, first_x, first_y)
    discriminator_before = variables_numpy(trainer.discriminator.weights)
    recorder = Recorder()
    directory = tmp_path_factory.mktemp("run")
    history = trainer.fit(
        inputs,
        target,
        batch_size=BATCH_SIZE,
        epochs=EPOCHS,
        shuffle=False,
        validation_data=(val_inputs, val_target),
        callbacks=[recorder, TrainingCheckpoint(directory, monitor="val_psnr")],
        verbose=0,
    )
    return {
        "trainer": trainer,
        "golden": golden,
        "first_logs": recorder.first_logs,
        "history": history.history,
        "recorder": recorder,
        "directory": directory,
        "discriminator_before": discriminator_before,
        "final_weights": variables_numpy(trainer.weights),
        "final_optimizer": variables_numpy(trainer.optimizer.variables),
        "val": (val_inputs, val_target),
        "data": (inputs, target),
        "val_pred": trainer.predict(val_inputs, verbose=0),
        "pixel_after": training_mode_pixel_error(trainer.generator, first_x, first_y),
    }


@pytest.mark.large
def test_first_step_logs_follow_eq_7_and_10(run):
    logs, golden = run["first_logs"], run["golden"]
    for name in ("berhu_loss", "adversarial_loss", "d_real_loss", "d_fake_loss", "psnr"):
        np.testing.assert_allclose(logs[name], golden[name], rtol=2e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(logs["d_loss"], golden["d_real_loss"] + golden["d_fake_loss"], rtol=2e-4)
    assert 0.0 <= logs["ms_ssim_loss"] <= 2.0
    np.testing.assert_allclose(logs["loss"], 3.0 * golden["berhu_loss"] + 1.0 * logs["ms_ssim_loss"], rtol=2e-4)
    np.testing.assert_allclose(logs["g_loss"], logs["loss"] + 0.5 * golden["adversarial_loss"], rtol=2e-4)


@pytest.mark.large
def test_generator_error_falls(run):
    # Pixel (BerHu) error of the generator in training mode on the first
    # batch, before (numpy, from the golden step) and after training.
    before, after = run["golden"]["berhu_loss"], run["pixel_after"]
    assert after <= 0.7 * before, (before, after)
    berhu_per_epoch = run["history"]["berhu_loss"]
    assert berhu_per_epoch[-1] <= 0.7 * berhu_per_epoch[0], berhu_per_epoch


@pytest.mark.large
def test_discriminator_weights_change(run):
    after = variables_numpy(run["trainer"].discriminator.weights)
    changed = [not np.allclose(a, b) for a, b in zip(run["discriminator_before"], after)]
    assert all(changed), changed
    assert all(np.isfinite(run["history"]["d_loss"]))


@pytest.mark.large
def test_both_optimizer_states_advance_every_step(run):
    steps = run["recorder"].steps
    total = EPOCHS * STEPS_PER_EPOCH
    assert [s["g_iterations"] for s in steps] == list(range(1, total + 1))
    assert [s["d_iterations"] for s in steps] == list(range(1, total + 1))
    for previous, current in zip(steps, steps[1:]):
        for key in ("g_optimizer", "d_optimizer"):
            # Every Adam moment (all variables after iterations and learning rate) moves.
            moved = [not np.array_equal(a, b) for a, b in zip(previous[key][2:], current[key][2:])]
            assert all(moved), (key, moved)
    trainer = run["trainer"]
    # Nothing is lost when fit returns (JAX writes its state back).
    assert int(to_numpy(trainer.discriminator_optimizer.iterations)) == total
    for expected, actual in zip(steps[-1]["d_optimizer"], variables_numpy(trainer.discriminator_optimizer.variables)):
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.large
def test_history_and_validation_metrics(run):
    history = run["history"]
    expected_keys = {
        "loss", "g_loss", "berhu_loss", "ms_ssim_loss", "adversarial_loss", "d_loss", "d_real_loss",
        "d_fake_loss", "psnr", "ssim", "val_loss", "val_psnr", "val_ssim",
    }  # fmt: skip
    assert set(history) == expected_keys
    assert all(len(values) == EPOCHS for values in history.values())
    val_inputs, val_target = run["val"]
    val_pred = run["val_pred"]
    np.testing.assert_allclose(history["val_psnr"][-1], numpy_psnr(val_target, val_pred).mean(), rtol=1e-4)
    expected_ssim = np.mean(
        [
            structural_similarity(
                t[..., 0].astype(np.float64), p[..., 0].astype(np.float64), data_range=1.0,
                gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            )  # fmt: skip
            for t, p in zip(val_target, val_pred)
        ]
    )
    np.testing.assert_allclose(history["val_ssim"][-1], expected_ssim, atol=2e-4)
    np.testing.assert_allclose(
        history["val_loss"][-1], float(to_numpy(RecurrentMZLoss()(val_target, val_pred))), rtol=1e-4
    )
    evaluated = run["trainer"].evaluate(val_inputs, val_target, verbose=0, return_dict=True)
    assert set(evaluated) == {"loss", "psnr", "ssim"}


@pytest.mark.large
def test_best_generator_weights_are_kept(run):
    directory, history = run["directory"], run["history"]
    best_epoch = int(np.argmax(history["val_psnr"]))
    info = TrainingCheckpoint.read_state(directory)
    assert info["best_epoch"] == best_epoch
    np.testing.assert_allclose(info["best"], max(history["val_psnr"]), rtol=1e-6)
    generator = tiny_generator(seed=5)
    generator.load_weights(directory / "best.weights.h5")
    for expected, actual in zip(run["recorder"].epoch_generator_weights[best_epoch], variables_numpy(generator.weights)):
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.large
def test_predict_and_call_run_the_generator(run):
    trainer = run["trainer"]
    val_inputs, _ = run["val"]
    np.testing.assert_allclose(run["val_pred"], trainer.generator.predict(val_inputs, verbose=0), atol=1e-6)
    np.testing.assert_allclose(to_numpy(trainer(val_inputs)), run["val_pred"], atol=1e-5)


@pytest.mark.large
def test_interrupted_run_resumes_as_if_uninterrupted(run, tmp_path):
    """Ctrl-C (KeyboardInterrupt) at the start of epoch 3, all state then
    scrambled, fit again: restored from the checkpoint, the run ends with the
    same weights and optimizer states as the uninterrupted one."""
    inputs, target = run["data"]
    trainer = make_trainer()

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    fit_args = dict(x=inputs, y=target, batch_size=BATCH_SIZE, epochs=EPOCHS, shuffle=False, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(callbacks=[TrainingCheckpoint(tmp_path, monitor=None), CtrlC()], **fit_args)
    state = TrainingCheckpoint.read_state(tmp_path)
    assert (state["epoch"], state["step"], state["global_step"]) == (2, 0, 2 * STEPS_PER_EPOCH)

    rng = np.random.default_rng(0)
    for variable in trainer.weights + trainer.optimizer.variables:
        value = rng.standard_normal(tuple(variable.shape)) if "float" in str(variable.dtype) else 999
        variable.assign(keras.ops.cast(value, variable.dtype))

    checkpoint = TrainingCheckpoint(tmp_path, monitor=None)
    history = trainer.fit(callbacks=[checkpoint], **fit_args)
    assert checkpoint.restored
    assert history.epoch == list(range(2, EPOCHS))
    for expected, actual in zip(run["final_weights"], variables_numpy(trainer.weights)):
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6)
    for expected, actual in zip(run["final_optimizer"], variables_numpy(trainer.optimizer.variables)):
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-7)
    state = TrainingCheckpoint.read_state(tmp_path)
    assert (state["epoch"], state["global_step"]) == (EPOCHS, EPOCHS * STEPS_PER_EPOCH)
    assert trainer._initial_epoch is None  # a later fit() starts from its own initial_epoch


@pytest.mark.large
def test_plain_generator_fit_with_the_content_loss():
    keras.utils.set_random_seed(1234)
    inputs, target = interpolation_data(16, seed=0)
    val_inputs, val_target = interpolation_data(8, seed=1)
    generator = tiny_generator(seed=0)
    first_x, first_y = batch(inputs, target, 0, BATCH_SIZE)
    before = training_mode_pixel_error(generator, first_x, first_y)
    generator.compile(optimizer=keras.optimizers.Adam(3e-3), loss=RecurrentMZLoss(), metrics=[PSNR(), SSIM()])
    history = generator.fit(
        inputs, target, batch_size=BATCH_SIZE, epochs=6, shuffle=False,
        validation_data=(val_inputs, val_target), verbose=0,
    )  # fmt: skip
    assert history.history["loss"][-1] <= 0.7 * history.history["loss"][0]
    assert training_mode_pixel_error(generator, first_x, first_y) <= 0.7 * before
    assert {"val_loss", "val_psnr", "val_ssim"} <= set(history.history)


def test_compile_defaults_to_the_paper():
    trainer = AdversarialTrainer(tiny_generator(), tiny_discriminator())
    trainer.compile()
    assert isinstance(trainer.optimizer, AdversarialOptimizer) and trainer.optimizer.built
    for optimizer in (trainer.generator_optimizer, trainer.discriminator_optimizer):
        assert isinstance(optimizer, keras.optimizers.Adam)
        np.testing.assert_allclose(float(to_numpy(optimizer.learning_rate)), 1e-5, rtol=1e-6)
    loss = trainer.content_loss
    assert isinstance(loss, RecurrentMZLoss)
    assert (loss.berhu_weight, loss.ms_ssim_weight, loss.c, loss.adaptive) == (3.0, 1.0, 0.1, False)
    assert trainer.adversarial_weight == 0.5
    # Both optimizers' variables are the trainer's optimizer state.
    expected = len(trainer.generator_optimizer.variables) + len(trainer.discriminator_optimizer.variables)
    assert len(trainer.optimizer.variables) == expected
    assert len(trainer.discriminator_optimizer.variables) == 2 + 2 * len(trainer.discriminator.trainable_variables)


def test_compile_overrides():
    trainer = AdversarialTrainer(tiny_generator(), tiny_discriminator())
    trainer.compile(discriminator_learning_rate=1e-6, berhu_weight=2.0, ms_ssim_weight=0.5, adversarial_weight=0.0)
    np.testing.assert_allclose(float(to_numpy(trainer.discriminator_optimizer.learning_rate)), 1e-6, rtol=1e-6)
    np.testing.assert_allclose(float(to_numpy(trainer.generator_optimizer.learning_rate)), 1e-5, rtol=1e-6)
    assert (trainer.content_loss.berhu_weight, trainer.content_loss.ms_ssim_weight) == (2.0, 0.5)
    assert trainer.adversarial_weight == 0.0
    sgd = keras.optimizers.SGD(0.1)
    trainer.compile(generator_optimizer=sgd, loss="mae", metrics=None)
    assert trainer.generator_optimizer is sgd
    assert trainer.content_loss is keras.losses.get("mae")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"adversarial_weight": -1.0}, ValueError, "adversarial_weight must be a number >= 0"),
        ({"berhu_weight": "3"}, ValueError, "berhu_weight must be a number >= 0"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate must be a number > 0"),
        ({"loss": "mae", "berhu_weight": 2.0}, ValueError, "set the weights on that loss"),
        (
            {"discriminator_optimizer": keras.optimizers.Adam(1e-6), "discriminator_learning_rate": 1e-6},
            ValueError,
            "give the learning rate to that optimizer",
        ),
        ({"optimizer": "adam"}, TypeError, "does not take 'optimizer'"),
        ({"generator_optimizer": 3}, TypeError, "generator_optimizer must be 'auto'"),
    ],
)
def test_compile_errors(kwargs, error, match):
    trainer = AdversarialTrainer(tiny_generator(), tiny_discriminator())
    with pytest.raises(error, match=match):
        trainer.compile(**kwargs)


def test_constructor_errors():
    generator = tiny_generator()
    with pytest.raises(TypeError, match="discriminator must be a keras.Model"):
        AdversarialTrainer(generator, lambda image: image)
    with pytest.raises(ValueError, match="two different models"):
        AdversarialTrainer(generator, generator)


def test_fit_needs_compile_and_no_sample_weights():
    inputs, target = interpolation_data(4)
    trainer = AdversarialTrainer(tiny_generator(), tiny_discriminator())
    with pytest.raises(ValueError, match="compile"):
        trainer.fit(inputs, target, verbose=0)
    trainer.compile(metrics=None)
    with pytest.raises(ValueError, match="does not support sample weights"):
        trainer.train_on_batch(inputs, target, sample_weight=np.ones(4, "float32"))


def test_config_and_saving_roundtrip(tmp_path):
    inputs, _ = interpolation_data(2)
    trainer = AdversarialTrainer(tiny_generator(), tiny_discriminator(), name="gan")
    clone = assert_config_roundtrip(trainer)
    assert clone.generator.get_config() == trainer.generator.get_config()
    assert clone.discriminator.get_config() == trainer.discriminator.get_config()
    trainer.compile(discriminator_learning_rate=1e-6, adversarial_weight=0.25)
    restored = assert_keras_saving_roundtrip(trainer, inputs, tmp_path)
    assert restored.adversarial_weight == 0.25
    np.testing.assert_allclose(float(to_numpy(restored.discriminator_optimizer.learning_rate)), 1e-6, rtol=1e-6)
