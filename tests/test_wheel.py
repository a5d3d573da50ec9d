"""A wheel built from the repository ships every built-in preset: installed
into a fresh virtual environment without network access, outside the
checkout, it lists each one as a verified local copy (sha256 against the
registry) and loads it offline."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from keras_rmz.presets import registry

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.large, pytest.mark.run_once]

CHECK = """
import json, pathlib, sys
import keras_rmz
from keras_rmz.presets import load_preset, registry
package = pathlib.Path(keras_rmz.__file__).resolve().parent
assert pathlib.Path(sys.prefix) in package.parents, (package, sys.prefix)
report = {}
for info in registry.list_presets():
    status, folder, error = registry.local_copy_status(info.name)
    model = load_preset(info.name)
    report[info.name] = {"status": status, "folder": str(folder), "class": type(model).__name__,
                         "parameters": model.count_params()}
print(json.dumps(report))
"""


def _tracked_copy(destination):
    """The files git tracks (a clean clone's tree, without build outputs)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPOSITORY, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPOSITORY / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def test_a_wheel_ships_every_built_in_preset(tmp_path):
    if shutil.which("git") is None or not (REPOSITORY / ".git").exists():
        pytest.skip("needs the git checkout to build from")
    source = _tracked_copy(tmp_path / "source")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "--no-index", "--quiet", "-w", str(tmp_path / "dist")], check=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("keras_rmz-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for info in registry.list_presets():
        for file in info.sha256:
            assert f"keras_rmz/weights/{info.name}/{file}" in names

    # A fresh environment that sees this one's dependencies (a .pth line adds
    # their folder to sys.path; this environment's editable keras_rmz is not
    # active there: .pth files are read only in site folders) but installs
    # keras_rmz from the wheel alone, with no index.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    pathlib.Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-deps",
                    "--quiet", str(wheel)], check=True, timeout=600)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", registry.WEIGHTS_DIR_ENV)}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = subprocess.run([str(python), "-c", CHECK], cwd=outside, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report) == {info.name for info in registry.list_presets()} and report
    for name, row in report.items():
        assert row["status"] == "verified", (name, row)
        assert pathlib.Path(row["folder"]).parent.name == "weights"
        assert pathlib.Path(site) in pathlib.Path(row["folder"]).parents, row
        assert row["class"] == registry.get_preset(name).class_short_name and row["parameters"] > 0
