"""Presets through the Hub's real download path (huggingface_hub against a
local server), offline use of the cache, tampering, and push_to_hub."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import keras_rmz

from keras_rmz.models import RecurrentMZ
from keras_rmz.presets import PRESET_FILES, load_preset, parse_hf_handle, push_to_hub, save_preset
from keras_rmz.presets import hub as hub_lib
from keras_rmz.presets import registry
from tests.presets.preset_testing import assert_same_weights, flip_byte, from_preset, outputs, register

REPO = "owner/tiny"


def _resolved_files(requests):
    return sorted({path.rsplit("/", 1)[-1] for method, path in requests if "/resolve/" in path})


def test_load_through_the_hub_then_offline_from_the_cache(local_hub, hf_env, preset_dir, tiny_model, inputs):
    commit = local_hub.add_repo(REPO, preset_dir)
    expected = outputs(tiny_model, inputs)

    model = from_preset(RecurrentMZ, f"hf://{REPO}@main")
    np.testing.assert_allclose(outputs(model, inputs), expected, atol=1e-6, rtol=0)
    paths = [path for _, path in local_hub.requests]
    assert f"/api/models/{REPO}/revision/main" in paths
    assert f"/api/models/{REPO}/tree/{commit}" in paths
    assert _resolved_files(local_hub.requests) == sorted(PRESET_FILES)
    assert (hf_env.cache / "models--owner--tiny" / "snapshots" / commit / "model.weights.h5").exists()

    # The same commit by hash and the default branch, without a revision.
    for handle in (f"hf://{REPO}@{commit}", f"hf://{REPO}"):
        assert_same_weights(load_preset(handle), tiny_model)

    # Offline, server gone: the cache serves, by branch and by commit.
    local_hub.stop()
    hf_env.go_offline()
    np.testing.assert_allclose(outputs(load_preset(f"hf://{REPO}@main"), inputs), expected, atol=1e-6, rtol=0)
    assert_same_weights(load_preset(f"hf://{REPO}@{commit}"), tiny_model)


def test_offline_with_nothing_cached_says_how_to_fix_it(hf_env):
    hf_env.go_offline()
    with pytest.raises(FileNotFoundError) as error:
        load_preset(f"hf://{REPO}@main")
    message = str(error.value)
    assert "offline" in message and "HF_HUB_OFFLINE" in message and "not in the Hugging Face cache" in message


def test_an_unreachable_hub_with_nothing_cached_is_a_clear_error(local_hub):
    local_hub.stop()  # online mode, but nothing listens any more
    with pytest.raises(FileNotFoundError, match="could not be reached") as error:
        load_preset(f"hf://{REPO}@main")
    message = str(error.value)
    # The address tried and where it came from; no advice about an offline
    # mode that is not on.
    assert os.environ["HF_ENDPOINT"].rstrip("/") in message and "set by HF_ENDPOINT" in message
    assert "HF_HUB_OFFLINE" not in message and "offline mode" not in message


@pytest.mark.parametrize("filename", ["model.weights.h5", "config.json", "README.md"])
def test_a_tampered_download_is_refused(local_hub, preset_dir, filename):
    local_hub.add_repo(REPO, preset_dir)
    data = bytearray((preset_dir / filename).read_bytes())
    data[len(data) // 2] ^= 0xFF
    local_hub.tamper(REPO, filename, bytes(data))
    with pytest.raises(ValueError, match=rf"{filename}.*sha256"):
        load_preset(f"hf://{REPO}@main")


def test_unknown_repo_and_revision(local_hub, preset_dir):
    local_hub.add_repo(REPO, preset_dir)
    with pytest.raises(FileNotFoundError, match="no such Hub model repo"):
        load_preset("hf://owner/missing@main")
    with pytest.raises(ValueError, match="no revision 'v9'"):
        load_preset(f"hf://{REPO}@v9")


def test_a_repo_missing_a_preset_file_is_named(local_hub, preset_dir):
    files = {p.name: p.read_bytes() for p in preset_dir.iterdir() if p.name != "README.md"}
    local_hub.add_repo(REPO, files)
    with pytest.raises(FileNotFoundError, match="README.md"):
        load_preset(f"hf://{REPO}@main")


def test_only_the_preset_files_are_downloaded(local_hub, hf_env, preset_dir):
    files = {p.name: p.read_bytes() for p in preset_dir.iterdir()}
    files["huge_extra.bin"] = b"\0" * 1000
    files["sub/config.json"] = b"{}"
    commit = local_hub.add_repo(REPO, files)
    load_preset(f"hf://{REPO}@main")
    assert _resolved_files(local_hub.requests) == sorted(PRESET_FILES)
    assert sorted(os.listdir(hf_env.cache / "models--owner--tiny" / "snapshots" / commit)) == sorted(PRESET_FILES)


# --- built-in names through the Hub -----------------------------------------


def test_a_builtin_name_downloads_its_pinned_commit(monkeypatch, local_hub, preset_dir, tiny_model, inputs, tmp_path):
    pinned = local_hub.add_repo(REPO, preset_dir, commit="5e" * 20)
    register(monkeypatch, "tiny_beads", preset_dir, hub=f"hf://{REPO}", revision=pinned)
    # The branch moves on to other weights; the built-in stays pinned.
    tiny_model_outputs = outputs(tiny_model, inputs)
    tiny_model.set_weights([w + 0.5 for w in tiny_model.get_weights()])
    newer = save_preset(tiny_model, tmp_path / "newer")
    local_hub.add_repo(REPO, newer)

    model = from_preset(RecurrentMZ, "tiny_beads")
    np.testing.assert_allclose(outputs(model, inputs), tiny_model_outputs, atol=1e-6, rtol=0)
    assert all(f"/resolve/{pinned}/" in path for _, path in local_hub.requests if "/resolve/" in path)
    # hf://owner/tiny (main) gives the newer weights.
    assert not np.allclose(outputs(load_preset(f"hf://{REPO}"), inputs), tiny_model_outputs, atol=1e-4)


SHIPPED = dict(registry.PRESETS)  # before the autouse fixture empties it
SHIPPED_WITH_WEIGHTS = sorted(
    name for name in SHIPPED if (Path(keras_rmz.__file__).resolve().parents[1] / "weights" / name).is_dir()
)


@pytest.mark.parametrize(
    "name",
    SHIPPED_WITH_WEIGHTS or [pytest.param(None, marks=pytest.mark.skip("weights/ holds no registered preset yet"))],
)
def test_shipped_presets_download_through_the_hub(monkeypatch, local_hub, name):
    """Each registered weights/<name>/ folder, served at its pinned commit,
    loads by name through the download path (no local copy). An entry not
    yet on the Hub (hub None) is served as it would be once published."""
    entry = dict(SHIPPED[name])
    folder = Path(keras_rmz.__file__).resolve().parents[1] / "weights" / name
    if entry["hub"] is None:
        repo_id = f"keras-rmz/{name}"
        entry.update(hub=f"hf://{repo_id}", revision=local_hub.add_repo(repo_id, folder))
    else:
        repo_id, _ = parse_hf_handle(entry["hub"])
        local_hub.add_repo(repo_id, folder, commit=entry["revision"])
    monkeypatch.setitem(registry.PRESETS, name, entry)
    model = load_preset(name)
    assert model.count_params() == json.loads((folder / "metadata.json").read_text())["num_parameters"]
    assert all(f"/resolve/{entry['revision']}/" in path for _, path in local_hub.requests if "/resolve/" in path)
    assert _resolved_files(local_hub.requests) == sorted(PRESET_FILES)


def test_a_registered_commit_pins_metadata_json_too(monkeypatch, local_hub, preset_dir):
    pinned = local_hub.add_repo(REPO, preset_dir)
    register(monkeypatch, "tiny_beads", preset_dir, hub=f"hf://{REPO}", revision=pinned)
    # Still self-consistent (the other files are intact), but not what was registered.
    metadata = json.loads((preset_dir / "metadata.json").read_text())
    metadata["z_step_um"] = 0.5
    local_hub.tamper(REPO, "metadata.json", json.dumps(metadata).encode())
    for handle in ("tiny_beads", f"hf://{REPO}@{pinned}", f"hf://{REPO}@main"):
        with pytest.raises(ValueError, match=r"metadata.json.*sha256"):
            load_preset(handle, force_download=True)


# --- handles -------------------------------------------------------------------


@pytest.mark.parametrize(
    "handle, expected",
    [
        ("hf://owner/repo", ("owner/repo", None)),
        ("hf://owner/repo@main", ("owner/repo", "main")),
        ("hf://my-org/rmz.beads_v2@v1.0", ("my-org/rmz.beads_v2", "v1.0")),
        ("hf://owner/repo@" + "a" * 40, ("owner/repo", "a" * 40)),
        ("hf://owner/repo@refs/pr/1", ("owner/repo", "refs/pr/1")),
    ],
)
def test_parse_hf_handle(handle, expected):
    assert parse_hf_handle(handle) == expected


@pytest.mark.parametrize(
    "handle",
    ["hf://repo", "hf://owner/repo/extra", "hf://../repo", "hf://owner/..", "hf://owner/repo@", "hf://owner/repo@../x",
     "hf://owner/repo@a b", "owner/repo", "hf://owner/re po"],
)
def test_parse_hf_handle_refuses(handle):
    with pytest.raises(ValueError, match="hf://owner/repo"):
        parse_hf_handle(handle)


def test_env_set_before_import_in_a_fresh_interpreter(tmp_path, monkeypatch, hf_env, preset_dir, tiny_model, inputs):
    """The way a user runs: HF_ENDPOINT and HF_HOME set before Python starts,
    nothing patched. The download runs in a fresh interpreter (no backend
    needed to fetch and verify), then offline from the cache in the same
    process (HF_HUB_OFFLINE read at the call); this process then loads the
    model from that cache."""
    script = textwrap.dedent(
        f"""
        import json, os, socket, sys
        sys.path.insert(0, {os.getcwd()!r})
        real_connect = socket.socket.connect
        def connect(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
                raise OSError("no network in tests")
            return real_connect(self, address)
        socket.socket.connect = connect
        from tests.presets.hub_server import LocalHub
        hub = LocalHub().start()
        commit = hub.add_repo("owner/tiny", {str(preset_dir)!r})
        os.environ["HF_ENDPOINT"] = hub.url  # before huggingface_hub is imported
        import huggingface_hub
        from keras_rmz.presets import hub as hub_lib, preset_io
        online, online_commit = hub_lib.download_preset("owner/tiny", "main")
        preset_io.verify_preset(online, allowed_root=online.parents[1])
        hub.stop()
        os.environ["HF_HUB_OFFLINE"] = "1"  # after import: keras_rmz reads it at the call
        offline, offline_commit = hub_lib.download_preset("owner/tiny", "main")
        preset_io.verify_preset(offline, allowed_root=offline.parents[1])
        print(json.dumps({{"served": commit, "online": [str(online), online_commit],
                          "offline": [str(offline), offline_commit],
                          "imported_offline": huggingface_hub.constants.HF_HUB_OFFLINE,
                          "backends": [m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules]}}))
        """
    )
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="0", HF_HUB_DISABLE_PROGRESS_BARS="1")
    for name in ("HF_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["imported_offline"] is False and values["backends"] == []
    assert values["online"] == values["offline"] == [
        str(tmp_path / "hf" / "hub" / "models--owner--tiny" / "snapshots" / values["served"]),
        values["served"],
    ]
    # That cache, offline, serves this process too.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    hf_env.go_offline()
    model = load_preset("hf://owner/tiny@main")
    np.testing.assert_allclose(outputs(model, inputs), outputs(tiny_model, inputs), atol=1e-6, rtol=0)


# --- push_to_hub ---------------------------------------------------------------


def test_push_to_hub_uploads_exactly_the_preset(local_hub, preset_dir, tiny_model, inputs):
    """huggingface_hub's own upload path (create_repo, preupload, commit)
    against the local Hub; what lands there loads back through the download path."""
    (preset_dir / "notes.txt").write_text("not part of the preset")
    info = push_to_hub(preset_dir, "me/tiny_beads", private=True, token="hf_x", commit_message="first")
    posts = [path for method, path in local_hub.requests if method == "POST"]
    assert posts[0] == "/api/repos/create" and "/api/models/me/tiny_beads/commit/main" in posts
    assert local_hub.commit_files("me/tiny_beads") == {name: (preset_dir / name).read_bytes() for name in PRESET_FILES}
    assert local_hub.commit_files("me/tiny_beads", info.oid) == local_hub.commit_files("me/tiny_beads")
    assert local_hub.commit_message("me/tiny_beads", info.oid) == "first" and local_hub.is_private("me/tiny_beads")
    model = load_preset(f"hf://me/tiny_beads@{info.oid}")
    np.testing.assert_allclose(outputs(model, inputs), outputs(tiny_model, inputs), atol=1e-6, rtol=0)

    # A second push replaces the files: anything else in the repo is deleted.
    local_hub.add_repo("me/tiny_beads", {**local_hub.commit_files("me/tiny_beads"), "old/stale.bin": b"x"})
    second = push_to_hub(preset_dir, "me/tiny_beads")
    assert second.oid != info.oid
    assert set(local_hub.commit_files("me/tiny_beads")) == set(PRESET_FILES)
    assert local_hub.commit_message("me/tiny_beads", second.oid) == "Upload keras_rmz preset tiny_preset"


def test_push_to_hub_to_a_branch(local_hub, preset_dir):
    info = push_to_hub(preset_dir, "hf://me/tiny_beads@v1")
    assert local_hub.commit_files("me/tiny_beads", "v1") == local_hub.commit_files("me/tiny_beads", info.oid)
    assert local_hub.commit_files("me/tiny_beads", "main") == {}  # the repo's first, empty commit
    assert "/api/models/me/tiny_beads/branch/v1" in [path for _, path in local_hub.requests]


def test_cli_push_prints_the_commit_and_a_registry_entry_that_loads(local_hub, preset_dir, monkeypatch, capsys,
                                                                       tiny_model, inputs):
    from keras_rmz.cli import main as cli_main

    monkeypatch.setattr(cli_main, "SUBCOMMANDS", {"presets": "keras_rmz.cli.presets"})
    code = cli_main.main(["presets", "push", str(preset_dir), "--repo", "me/tiny_beads", "--name", "tiny_beads"])
    out = capsys.readouterr().out
    assert code == 0, out
    (line,) = [line for line in out.splitlines() if line.startswith("pushed")]
    oid = line.rsplit(" ", 1)[-1]
    assert len(oid) == 40 and local_hub.commit_files("me/tiny_beads", oid)
    entry_text = out[out.index("registry entry"):].split("\n", 1)[1]
    assert '"tiny_beads"' in entry_text and oid in entry_text and "me/tiny_beads" in entry_text
    # That entry, registered, loads the preset by name through the Hub.
    entry = register(monkeypatch, "tiny_beads", preset_dir, hub="me/tiny_beads", revision=oid)
    assert registry.format_registry_entry("tiny_beads", entry) in out
    model = load_preset("tiny_beads")
    np.testing.assert_allclose(outputs(model, inputs), outputs(tiny_model, inputs), atol=1e-6, rtol=0)


def test_push_to_hub_refuses_an_unverified_folder(local_hub, preset_dir):
    flip_byte(preset_dir / "model.weights.h5")
    with pytest.raises(ValueError, match=r"model.weights.h5.*sha256"):
        push_to_hub(preset_dir, "me/tiny_beads")
    (preset_dir / "README.md").unlink()
    with pytest.raises(FileNotFoundError, match="README.md"):
        push_to_hub(preset_dir, "me/tiny_beads")
    with pytest.raises(ValueError, match="hf://owner/repo"):
        push_to_hub(preset_dir, "not a repo")
    assert local_hub.requests == []  # refused before any connection


def test_push_to_hub_refuses_offline_mode(local_hub, hf_env, preset_dir):
    hf_env.go_offline()
    with pytest.raises(OSError, match="offline"):
        push_to_hub(preset_dir, "me/tiny_beads")
    assert local_hub.requests == []


def test_hub_settings_are_read_at_call_time(monkeypatch, hf_env):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.setenv("HF_HUB_CACHE", "/somewhere/cache")
    expected = {"endpoint": "http://127.0.0.1:9", "offline": False, "cache_dir": "/somewhere/cache"}
    assert hub_lib.hub_settings() == expected
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", "/home/hf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_lib.hub_settings() == {"endpoint": "http://127.0.0.1:9", "offline": True, "cache_dir": "/home/hf/hub"}


def test_a_connection_dropped_midway_is_retried_or_reported_and_leaves_no_partial_preset(local_hub, hf_env, preset_dir,
                                                                                          tiny_model):
    """The server cuts model.weights.h5 halfway (headers promise the whole
    file). Once: the download is retried and the published weights load.
    Every time: a clear error, no half file in the cache that a later load
    would trust, and the next load after the network recovers works."""
    local_hub.add_repo(REPO, preset_dir)
    local_hub.drop_connections("model.weights.h5", 1)
    assert_same_weights(load_preset(f"hf://{REPO}@main"), tiny_model)

    other = "owner/flaky"
    local_hub.add_repo(other, preset_dir)
    local_hub.drop_connections("model.weights.h5", 1000)
    with pytest.raises(OSError, match="broke off after several retries") as error:
        load_preset(f"hf://{other}@main")
    assert f"hf://{other}@main" in str(error.value) and "resumes" in str(error.value)
    # The half file waits as huggingface_hub's .incomplete blob; no snapshot
    # points at it, so nothing can load it as the weights.
    snapshots = hf_env.cache / "models--owner--flaky" / "snapshots"
    assert not list(snapshots.glob("*/model.weights.h5"))

    local_hub.drop_connections("model.weights.h5", 0)
    assert_same_weights(load_preset(f"hf://{other}@main"), tiny_model)
