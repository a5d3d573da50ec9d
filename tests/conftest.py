"""Shared fixtures. Tests use tiny configs and generated data, never the network."""

import os
import pathlib

import numpy as np
import pytest

# Never touch the network from tests, whatever the environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# precision="auto" means float32 in tests, whatever the CPU: results (and
# their tolerances) must not depend on whether the machine has Intel AMX.
# tests/test_precision.py unsets it to test "auto" itself.
os.environ.setdefault("KERAS_RMZ_PRECISION", "float32")
# Tests compile many tiny XLA programs (JAX compiles every model build and
# call; TensorFlow with jit_compile): optimizing the machine code costs more
# than running it. Halves the JAX suite's time; results stay within the
# tests' tolerances. Set XLA_FLAGS yourself to test with full optimization.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")

import keras  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
TESTS = pathlib.Path(__file__).resolve().parent

# Tests that one backend's run covers for all three (`.ci/test` runs them
# with the first backend only, setting KERAS_RMZ_RUN_ONCE_DONE=1 for the
# others):
# - backend_independent: tests of code that never runs through the Keras
#   backend (numpy, scipy, tifffile, matplotlib: I/O, the simulator,
#   numpy metrics, baselines and scoring, plots, config parsing), so their
#   result cannot depend on it
#   (tests/metrics/test_image.py checks that these modules import no backend);
# - cross_backend: weights saved on this backend are loaded on the two others
#   in subprocesses; every backend's own save/load round trip is tested on it;
# - run_once: tests whose work does not depend on the backend under test for
#   other reasons (tests/test_docs.py's `keras-rmz` commands: the command
#   line is tested on every backend by tests/cli/).
BACKEND_INDEPENDENT = (
    "io/",
    "simulate/",
    "metrics/test_image.py",
    "metrics/test_beads.py",
    "evaluation/",
    "data/test_normalization.py",
    "cli/test_simulate_cli.py",
    "cli/test_evaluate_cli.py",
    "test_plot.py",
    "test_architecture.py",
    "training/test_config.py",
    "reliability/",
)

# The longest modules, run first: `.ci/test` spreads the suite over
# pytest-xdist workers a module (or test class) at a time
# (``--dist loadscope``), in collection order, so a long module collected
# last would run alone at the end. Ordered by their time in a PyTorch run
# with the run-once tests on 2 workers (`bash .ci/test --durations=40`).
LONGEST_FIRST = (
    "test_docs.py",
    "test_benchmarks_smoke.py",
    "training/test_data_parallel.py",
    "test_export.py",
    "training/test_finetune.py",
    "cli/test_train_cli.py",
    "test_distributed.py",
)


def _relative(item):
    return pathlib.Path(str(item.path)).resolve().relative_to(TESTS).as_posix()


def pytest_collection_modifyitems(config, items):
    run_once_done = os.environ.get("KERAS_RMZ_RUN_ONCE_DONE") == "1"
    kept, deselected = [], []
    for item in items:
        relative = _relative(item)
        if relative.startswith(BACKEND_INDEPENDENT):
            item.add_marker(pytest.mark.backend_independent)
        once = any(item.get_closest_marker(name) for name in ("backend_independent", "cross_backend", "run_once"))
        if run_once_done and once:
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)

    def rank(item):
        relative = _relative(item)
        return LONGEST_FIRST.index(relative) if relative in LONGEST_FIRST else len(LONGEST_FIRST)

    items[:] = sorted(kept, key=rank)  # stable: the order within a module is kept


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    # A test (or a documentation block run by tests/test_docs.py) may set a global
    # dtype policy such as "mixed_bfloat16"; later tests must not inherit it.
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)


@pytest.fixture
def backend():
    return keras.backend.backend()


@pytest.fixture
def shared_data():
    """Folder of real stacks made by others (``../shared/data``); skip if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
