"""Fixtures for the preset tests: a tiny model and its preset folder, a
network guard, an isolated Hugging Face cache, and a local Hub server.

How the Hub settings reach huggingface_hub in these tests: the library
reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_HOME`` once, at import,
and tests/conftest.py sets ``HF_HUB_OFFLINE=1`` before anything imports it.
keras_rmz reads the environment at every call and passes ``endpoint=``,
``cache_dir=`` and ``local_files_only=`` explicitly, so the tests set the
environment with monkeypatch. What keras_rmz cannot pass (the import-time
offline switch that guards every request, and the endpoint and cache paths
the library uses for its own side requests) is patched on
``huggingface_hub.constants`` for the test's duration. A socket guard makes
any connection outside 127.0.0.1 fail the test, so a setting that leaks
cannot reach the internet unnoticed. One test (test_hub.py) runs a fresh
interpreter with the environment set before import, the way a user runs.
"""

import socket

import numpy as np
import pytest

from keras_rmz.presets import registry
from keras_rmz.presets.preset_io import save_preset
from tests.presets.hub_server import LocalHub
from tests.presets.preset_testing import TINY_METADATA

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", None}


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Fails the test if anything tries to reach a host other than this one."""
    attempts = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOCAL_HOSTS:
            attempts.append(host)
            raise OSError(f"tests may not reach the network (lookup of {host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL_HOSTS:
            attempts.append(address[0])
            raise OSError(f"tests may not reach the network (connect to {address!r})")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield attempts
    assert not attempts, f"the test tried to reach the network: {attempts}"


@pytest.fixture(autouse=True)
def isolated_presets(monkeypatch, tmp_path):
    """No built-in preset, no local copy and no weights dir leak in from outside."""
    monkeypatch.setattr(registry, "PRESETS", {})
    monkeypatch.delenv(registry.WEIGHTS_DIR_ENV, raising=False)
    empty = tmp_path / "repository_weights"
    empty.mkdir()
    monkeypatch.setattr(registry, "repository_weights_dir", lambda: empty)
    packaged = tmp_path / "package_weights"
    monkeypatch.setattr(registry, "package_weights_dir", lambda: packaged)
    yield


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    """An empty Hugging Face cache in tmp_path, online mode, no endpoint yet.

    Returns an object with ``go_offline()`` and ``cache`` (the hub cache).
    """
    import huggingface_hub
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    cache = home / "hub"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / "agent_harnesses.json"))
    assert huggingface_hub.constants is constants

    class Env:
        def __init__(self):
            self.cache = cache

        def go_offline(self):
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
            monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    return Env()


@pytest.fixture
def local_hub(hf_env, monkeypatch):
    """A running LocalHub, with HF_ENDPOINT (and the library's default
    endpoint) pointing at it."""
    from huggingface_hub import constants

    hub = LocalHub().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    yield hub
    hub.stop()


@pytest.fixture
def tiny_model():
    from keras_rmz.models import RecurrentMZ

    return RecurrentMZ(base_filters=4, depth=1)


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    return {
        "images": rng.random((2, 3, 10, 10, 1), dtype=np.float32),
        "input_z": np.array([[0.0, 1.0, 2.0], [2.0, 0.5, 1.0]], np.float32),
        "output_z": np.array([0.5, 1.5], np.float32),
    }


@pytest.fixture
def preset_dir(tmp_path, tiny_model):
    """A preset folder saved from ``tiny_model``."""
    return save_preset(tiny_model, tmp_path / "tiny_preset", metadata=TINY_METADATA)
