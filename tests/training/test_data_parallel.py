"""Data-parallel training (keras.distribution.DataParallel, JAX only): on 2
host devices forced with XLA_FLAGS, a few steps give the weights of a
single-device run, for the plain generator and the adversarial trainer;
``finetune`` and ``keras-rmz train`` run under it; other backends are
refused with the backend to use."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import pytest

from keras_rmz.backend.distribution import resolve_distribution

SCRIPT = textwrap.dedent("""
    import contextlib, json, sys
    import numpy as np
    import keras
    from keras_rmz.backend.distribution import resolve_distribution
    from keras_rmz.data import VolumeDataset
    from keras_rmz.losses import RecurrentMZLoss
    from keras_rmz.models import Discriminator, RecurrentMZ
    from keras_rmz.simulate import simulate_stack
    from keras_rmz.training import AdversarialTrainer

    stack = simulate_stack("beads", shape=(41, 48, 48), seed=0)

    def data():
        return VolumeDataset([stack], num_inputs=2, input_spacing_um=1.0, patch_size=32, batch_size=4,
                             steps_per_epoch=3, seed=0, min_signal=None)

    def run(distribution, adversarial):
        keras.utils.set_random_seed(0)
        with distribution.scope() if distribution is not None else contextlib.nullcontext():
            model = RecurrentMZ(base_filters=4, depth=1)
            if adversarial:
                trainer = AdversarialTrainer(model, Discriminator(base_filters=4, num_blocks=2))
                trainer.compile(generator_optimizer=keras.optimizers.SGD(0.05),
                                discriminator_optimizer=keras.optimizers.SGD(0.05))
                trainer.fit(data(), epochs=1, verbose=0)
            else:
                model.compile(optimizer=keras.optimizers.SGD(0.05), loss=RecurrentMZLoss())
                model.fit(data(), epochs=1, verbose=0)
        return [np.asarray(w, np.float64) for w in model.get_weights()]

    result = {"devices": keras.distribution.list_devices()}
    for adversarial in (False, True):
        single = run(None, adversarial)
        parallel = run(resolve_distribution("data_parallel", batch_size=4), adversarial)
        start = [np.asarray(w, np.float64) for w in RecurrentMZ(base_filters=4, depth=1).get_weights()]
        result["adversarial" if adversarial else "generator"] = {
            "max_difference": max(float(np.abs(a - b).max()) for a, b in zip(single, parallel)),
            "max_weight": max(float(np.abs(a).max()) for a in single),
        }
    try:
        resolve_distribution("data_parallel", batch_size=3)
    except ValueError as error:
        result["odd_batch"] = str(error)
    print("RESULT", json.dumps(result))
""")


def test_other_backends_are_refused_with_the_backend_to_use():
    with pytest.raises(ValueError, match="must be None, 'data_parallel'"):
        resolve_distribution("model_parallel")
    assert resolve_distribution(None) is None
    if keras.backend.backend() == "jax":
        assert isinstance(resolve_distribution("data_parallel", batch_size=2), keras.distribution.DataParallel)
    else:
        with pytest.raises(ValueError, match=f"needs the JAX backend.*runs {keras.backend.backend()}.*KERAS_BACKEND=jax"):
            resolve_distribution("data_parallel")


def _jax_with_two_devices(code, timeout=600):
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "KERAS_RMZ_PRECISION": "float32"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.cross_backend  # runs JAX in a subprocess whatever the backend under test: once per CI run
@pytest.mark.large
def test_data_parallel_steps_give_the_single_device_weights():
    output = _jax_with_two_devices(SCRIPT)
    result = json.loads(output.split("RESULT", 1)[1])
    assert result["devices"] == ["cpu:0", "cpu:1"]
    for kind in ("generator", "adversarial"):
        # The same arithmetic but for the order of the batch-mean reduction.
        assert result[kind]["max_difference"] < 1e-5 * max(1.0, result[kind]["max_weight"]), result
    assert "multiple of the 2 devices" in result["odd_batch"]


@pytest.mark.cross_backend
@pytest.mark.large
def test_finetune_and_train_run_under_data_parallel(tmp_path):
    code = textwrap.dedent(f"""
        import pathlib
        from keras_rmz.io import Stack, write_stack
        from keras_rmz.simulate import simulate_stack
        from keras_rmz.cli.main import main

        folder = pathlib.Path({str(tmp_path)!r})
        embryo = simulate_stack("nuclei", shape=(91, 64, 64), seed=5)
        write_stack(folder / "embryo.ome.tif", Stack(embryo.data, embryo.z, embryo.pixel_um))
        # The two commands of docs/training.md (tests/test_docs.py leaves
        # them to this test), tiny; `keras-rmz finetune` calls
        # finetune(distribution="data_parallel").
        code = main(["finetune", str(folder / "embryo.ome.tif"), "--preset", "recurrent_mz_nuclei_m2", "-o",
                     str(folder / "my_embryo_preset"), "--distribution", "data_parallel", "--steps", "2",
                     "--patch-size", "16", "--batch-size", "2", "--eval-every", "2", "-q"])
        print("CLI FINETUNE", code, (folder / "my_embryo_preset" / "metadata.json").is_file())
        code = main(["train", "examples/train_beads_m3.yaml", "--output", str(folder / "run"), "-q",
                     "--set", "training.distribution=data_parallel", "--set", "training.steps=2",
                     "--set", "training.steps_per_epoch=2", "--set", "training.checkpoint_every=2",
                     "--set", "data.simulate.count=1", "--set", "data.simulate.shape=[81,32,32]",
                     "--set", "data.patch_size=32", "--set", "data.batch_size=2", "--set", "validation.steps=1",
                     "--set", "validation.simulate.count=1", "--set", "validation.batch_size=2",
                     "--set", "optimizer.warmup_steps=0"])
        print("TRAIN", code, (folder / "run" / "preset" / "metadata.json").is_file())
        code = main(["finetune", str(folder / "embryo.ome.tif"), "--preset", "recurrent_mz_nuclei_m2", "-o",
                     str(folder / "odd"), "--steps", "2", "--batch-size", "3", "--distribution", "data_parallel"])
        print("ODD", code)
    """)
    output = _jax_with_two_devices(code)
    assert "CLI FINETUNE 0 True" in output
    assert "TRAIN 0 True" in output
    assert "ODD 2" in output
