"""Ships the built-in presets in the wheel.

The preset folders live in the repository's top-level ``weights/`` (where
``keras_rmz.presets.registry`` finds them in a checkout or an editable
install). A wheel has no such folder, so building one copies each preset
folder into the package as ``keras_rmz/weights/<name>/``, where the
registry looks next; the registry's sha256 checks apply there as anywhere.
An editable install (``pip install -e .``) copies nothing: it reads
``weights/`` in place. Everything else is in ``pyproject.toml``.
"""

import pathlib
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = pathlib.Path(__file__).resolve().parent


class BuildWithPresets(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        source = ROOT / "weights"
        target = pathlib.Path(self.build_lib) / "keras_rmz" / "weights"
        for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
            shutil.copytree(folder, target / folder.name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".*"))


setup(cmdclass={"build_py": BuildWithPresets})
