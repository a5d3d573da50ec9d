"""`keras-rmz presets list | info | verify | entry`."""

import ast
import subprocess
import sys

import pytest

from keras_rmz.cli import main as cli_main
from keras_rmz.presets import PRESET_FILES, registry
from tests.presets.preset_testing import copy_preset, flip_byte, register, sha256_of


@pytest.fixture
def run_cli(monkeypatch, capsys):
    # Only this subcommand: the others belong to other modules.
    monkeypatch.setattr(cli_main, "SUBCOMMANDS", {"presets": "keras_rmz.cli.presets"})

    def run(*argv):
        code = cli_main.main(["presets", *map(str, argv)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_list_without_presets(run_cli):
    code, out, _ = run_cli("list")
    assert code == 0 and "No built-in presets yet" in out


def test_list_shows_name_class_description_and_local_copy(run_cli, monkeypatch, preset_dir, tmp_path):
    register(monkeypatch, "tiny_beads", preset_dir)
    register(monkeypatch, "tiny_other", preset_dir, description="another one")
    copy_preset(preset_dir, tmp_path / "w" / "tiny_beads")
    monkeypatch.setenv("KERAS_RMZ_WEIGHTS_DIR", str(tmp_path / "w"))
    code, out, _ = run_cli("list")
    assert code == 0
    header, beads, other = out.strip().splitlines()
    assert header.split() == ["NAME", "CLASS", "LOCAL", "COPY", "DESCRIPTION"]
    assert beads.split()[:3] == ["tiny_beads", "RecurrentMZ", "verified"] and "tiny test preset" in beads
    assert other.split()[:3] == ["tiny_other", "RecurrentMZ", "none"] and other.endswith("another one")
    flip_byte(tmp_path / "w" / "tiny_beads" / "config.json")
    assert "corrupt" in run_cli("list")[1]


def test_info_of_a_folder_and_of_a_name(run_cli, monkeypatch, preset_dir):
    code, out, _ = run_cli("info", preset_dir)
    assert code == 0
    assert "sha256 verified" in out and "num_inputs: 3" in out and "class_name: keras_rmz>RecurrentMZ" in out
    assert "z_step_um: 0.1" in out
    entry = register(monkeypatch, "tiny_beads", preset_dir, revision="ab" * 20)
    code, out, _ = run_cli("info", "tiny_beads")
    assert code == 0
    assert f"hub: hf://owner/tiny@{'ab' * 20}" in out and "local copy: none" in out
    assert entry["sha256"]["model.weights.h5"] in out


def test_verify_a_folder(run_cli, preset_dir):
    code, out, _ = run_cli("verify", preset_dir)
    assert code == 0
    for name in ("config.json", "model.weights.h5", "README.md"):
        assert f"ok  {name}  {sha256_of(preset_dir / name)}" in out


def test_verify_a_builtin_local_copy(run_cli, monkeypatch, preset_dir, tmp_path):
    register(monkeypatch, "tiny_beads", preset_dir)
    code, _, err = run_cli("verify", "tiny_beads")
    assert code == 2 and "no local copy" in err
    copy_preset(preset_dir, registry.repository_weights_dir() / "tiny_beads")
    code, out, _ = run_cli("verify", "tiny_beads")
    assert code == 0 and out.count("ok  ") == len(PRESET_FILES) and "the registry" in out


def test_errors_are_one_line_and_exit_2(run_cli, monkeypatch, preset_dir):
    flip_byte(preset_dir / "model.weights.h5")
    code, out, err = run_cli("verify", preset_dir)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "model.weights.h5" in err and "sha256" in err
    code, _, err = run_cli("info", "no_such_preset")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unknown preset 'no_such_preset'" in err
    code, _, err = run_cli("verify", "./missing_folder")
    assert code == 2 and "no preset folder" in err


def test_entry_prints_a_registry_entry(run_cli, preset_dir):
    commit = "de" * 20
    code, out, _ = run_cli("entry", preset_dir, "--hub", "owner/tiny", "--revision", commit, "--name", "tiny_beads")
    assert code == 0
    parsed = ast.literal_eval("{" + out.strip() + "}")
    assert parsed["tiny_beads"]["revision"] == commit
    assert parsed["tiny_beads"]["sha256"] == {name: sha256_of(preset_dir / name) for name in PRESET_FILES}
    code, _, err = run_cli("entry", preset_dir, "--hub", "owner/tiny", "--revision", "main")
    assert code == 2 and "commit hash" in err


def test_the_presets_command_needs_no_backend(preset_dir):
    code = (
        "import sys; from keras_rmz.cli import main as m; "
        "m.SUBCOMMANDS = {'presets': 'keras_rmz.cli.presets'}; "
        f"rc = m.main(['presets', 'verify', {str(preset_dir)!r}]); "
        "print(rc, sorted(x for x in ('keras', 'tensorflow', 'jax', 'torch') if x in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 []"


def test_info_and_verify_of_a_hub_preset(run_cli, local_hub, preset_dir):
    commit = local_hub.add_repo("owner/tiny", preset_dir)
    code, out, _ = run_cli("info", "hf://owner/tiny@main")
    assert code == 0 and f"commit {commit}" in out and "num_inputs: 3" in out
    code, out, _ = run_cli("verify", "hf://owner/tiny")
    assert code == 0 and out.count("ok  ") == 3
    local_hub.add_repo("owner/other", preset_dir)
    local_hub.tamper("owner/other", "README.md", b"# another card\n")
    code, _, err = run_cli("verify", "hf://owner/other")
    # (the download's progress bar may precede it on stderr)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("keras-rmz presets: error:") and "README.md" in last and "sha256" in last
