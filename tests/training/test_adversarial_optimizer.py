import keras
import numpy as np
import pytest

from keras_rmz.training import AdversarialOptimizer
from tests.helpers import to_numpy


def _variables():
    generator = [keras.Variable(np.ones((2, 3), "float32")), keras.Variable(np.zeros((3,), "float32"))]
    discriminator = [keras.Variable(np.ones((4,), "float32"))]
    return generator, discriminator


def test_variables_are_both_optimizers_in_order():
    generator_vars, discriminator_vars = _variables()
    g_opt, d_opt = keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-4)
    optimizer = AdversarialOptimizer(g_opt, d_opt)
    optimizer.build_split(generator_vars, discriminator_vars)
    assert optimizer.built
    # Adam: iterations, learning rate, then a momentum and a velocity per weight.
    assert len(g_opt.variables) == 2 + 2 * 2 and len(d_opt.variables) == 2 + 2 * 1
    assert [id(v) for v in optimizer.variables] == [id(v) for v in g_opt.variables + d_opt.variables]
    g_part, d_part = optimizer.split_variables(list(range(len(optimizer.variables))))
    assert g_part == list(range(6)) and d_part == list(range(6, 10))
    with pytest.raises(ValueError, match="expected 10 optimizer values"):
        optimizer.split_variables([0, 1])


def test_iterations_and_learning_rate_are_the_generators():
    generator_vars, discriminator_vars = _variables()
    g_opt, d_opt = keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-4)
    optimizer = AdversarialOptimizer(g_opt, d_opt)
    optimizer.build_split(generator_vars, discriminator_vars)
    g_opt.apply([keras.ops.ones((2, 3)), keras.ops.ones((3,))], generator_vars)
    assert int(to_numpy(optimizer.iterations)) == 1
    assert int(to_numpy(d_opt.iterations)) == 0
    np.testing.assert_allclose(float(to_numpy(optimizer.learning_rate)), 1e-3, rtol=1e-6)
    optimizer.learning_rate = 5e-4  # what ReduceLROnPlateau does
    np.testing.assert_allclose(float(to_numpy(g_opt.learning_rate)), 5e-4, rtol=1e-6)
    np.testing.assert_allclose(float(to_numpy(d_opt.learning_rate)), 1e-4, rtol=1e-6)


def test_state_round_trips_through_save_and_load_own_variables():
    generator_vars, discriminator_vars = _variables()
    optimizer = AdversarialOptimizer(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-4))
    optimizer.build_split(generator_vars, discriminator_vars)
    optimizer.discriminator_optimizer.apply([keras.ops.full((4,), 2.0)], discriminator_vars)
    store = {}
    optimizer.save_own_variables(store)
    clone = AdversarialOptimizer(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-4))
    clone.build_split(*_variables())
    clone.load_own_variables(store)
    for expected, actual in zip(optimizer.variables, clone.variables):
        np.testing.assert_array_equal(to_numpy(actual), to_numpy(expected))
    assert int(to_numpy(clone.discriminator_optimizer.iterations)) == 1
    with pytest.raises(ValueError, match="has 10 variables but the saved state has 1"):
        clone.load_own_variables({"0": np.zeros(())})


def test_config_roundtrip():
    optimizer = AdversarialOptimizer(keras.optimizers.Adam(2e-5), keras.optimizers.Adam(1e-6), name="gan")
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(clone, AdversarialOptimizer) and clone.name == "gan"
    assert isinstance(clone.discriminator_optimizer, keras.optimizers.Adam)
    np.testing.assert_allclose(float(to_numpy(clone.discriminator_optimizer.learning_rate)), 1e-6, rtol=1e-6)
    np.testing.assert_allclose(float(to_numpy(clone.generator_optimizer.learning_rate)), 2e-5, rtol=1e-6)


def test_errors():
    adam = keras.optimizers.Adam()
    with pytest.raises(TypeError, match="generator_optimizer must be a keras.optimizers.Optimizer"):
        AdversarialOptimizer("adam", keras.optimizers.Adam())
    with pytest.raises(ValueError, match="two different optimizer instances"):
        AdversarialOptimizer(adam, adam)
    optimizer = AdversarialOptimizer(keras.optimizers.Adam(), keras.optimizers.Adam())
    with pytest.raises(ValueError, match="build_split"):
        optimizer.build(_variables()[0])
    generator_vars, _ = _variables()
    with pytest.raises(ValueError, match="must not share trainable variables"):
        optimizer.build_split(generator_vars, generator_vars[:1])
    with pytest.raises(NotImplementedError, match="does not apply gradients itself"):
        optimizer.apply([], [])
