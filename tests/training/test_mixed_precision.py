import keras
import numpy as np
import pytest

from keras_rmz.training import AdversarialTrainer
from tests.helpers import to_numpy
from tests.training.training_testing import interpolation_data, tiny_discriminator, tiny_generator, variables_numpy


@pytest.fixture
def dtype_policy(request):
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


@pytest.mark.large
@pytest.mark.parametrize("dtype_policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_adversarial_training_under_mixed_precision(dtype_policy):
    # All three backends run float16 and bfloat16 convolutions on CPU
    # (Keras 3.15, TF 2.x CPU, jax 0.10, torch 2.13), so nothing is skipped.
    inputs, target = interpolation_data(8, seed=0)
    generator, discriminator = tiny_generator(), tiny_discriminator()
    compute_dtype = dtype_policy.removeprefix("mixed_")
    assert generator.get_layer("output_conv").compute_dtype == compute_dtype
    assert generator.get_layer("output_conv").variable_dtype == "float32"
    trainer = AdversarialTrainer(generator, discriminator)
    trainer.compile(learning_rate=1e-3, discriminator_learning_rate=1e-3)
    scaled = dtype_policy == "mixed_float16"
    for optimizer in (trainer.generator_optimizer, trainer.discriminator_optimizer):
        # float16 needs loss scaling (bfloat16 has float32's exponent range).
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == scaled
    before = variables_numpy(trainer.trainable_weights)
    history = trainer.fit(inputs, target, batch_size=2, epochs=3, shuffle=False, verbose=0).history
    for name, values in history.items():
        assert np.all(np.isfinite(values)), (name, values)
    after = variables_numpy(trainer.weights)
    assert all(np.all(np.isfinite(w)) for w in after)
    # Some of the 12 steps updated both networks (float16: the first steps
    # may be skipped while the loss scale drops from 2**15 to a finite range).
    for optimizer in (trainer.generator_optimizer, trainer.discriminator_optimizer):
        assert 1 <= int(to_numpy(optimizer.iterations)) <= 12
        if scaled:
            scale = float(to_numpy(optimizer.dynamic_scale))
            assert np.isfinite(scale) and 1.0 <= scale <= 2.0**15
    changed = [not np.array_equal(a, b) for a, b in zip(before, variables_numpy(trainer.trainable_weights))]
    assert all(changed)
    prediction = trainer.predict(inputs, verbose=0)
    assert prediction.shape == target.shape and np.all(np.isfinite(prediction))
