"""Shared fixtures. Tests use tiny configs and generated data, never the network."""

import os
import pathlib

import numpy as np
import pytest

# Never touch the network from tests, whatever the environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import keras  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
TESTS = pathlib.Path(__file__).resolve().parent

# Tests of code that never runs through the Keras backend (numpy, scipy,
# tifffile, matplotlib: I/O, the simulator, metrics, plots, config parsing):
# their result cannot depend on KERAS_BACKEND. `.ci/test` runs them with the
# first backend only (KERAS_RMZ_SKIP_BACKEND_INDEPENDENT=1 for the others).
# tests/metrics/test_image.py checks that these modules import no backend.
BACKEND_INDEPENDENT = (
    "io/",
    "simulate/",
    "metrics/",
    "data/test_normalization.py",
    "cli/test_simulate_cli.py",
    "cli/test_evaluate_cli.py",
    "test_plot.py",
    "training/test_config.py",
)


def pytest_collection_modifyitems(config, items):
    skip_independent = os.environ.get("KERAS_RMZ_SKIP_BACKEND_INDEPENDENT") == "1"
    kept, deselected = [], []
    for item in items:
        relative = pathlib.Path(str(item.path)).resolve().relative_to(TESTS).as_posix()
        if relative.startswith(BACKEND_INDEPENDENT):
            item.add_marker(pytest.mark.backend_independent)
            if skip_independent:
                deselected.append(item)
                continue
        kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield


@pytest.fixture
def backend():
    return keras.backend.backend()


@pytest.fixture
def shared_data():
    """Folder of real stacks made by others (``../shared/data``); skip if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
