"""The package's imports run one way, floor by floor (docs/architecture.md).

Parsed from the source (``ast``), so it sees the imports inside functions
too, and ``importlib.import_module("keras_rmz...")`` with a literal name.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_rmz"

# Each top-level part of the package and its floor: a module may import its
# own floor (without a cycle) and the floors below, never a floor above.
FLOORS = {
    "version": 0,
    "backend": 0,
    "io": 0,
    "layers": 0,
    "losses": 0,
    "simulate": 0,
    "precision": 0,
    "data": 1,
    "inference": 1,
    "metrics": 1,
    "out_of_distribution": 1,
    "plot": 1,
    "presets": 1,
    "models": 2,
    "export": 2,
    "evaluation": 3,
    "bioimageio_export": 3,
    "distributed": 3,
    "training": 3,
    "cli": 4,
    "napari": 4,
}

def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name, path, modules):
    """The keras_rmz modules ``name`` imports (anywhere in the file)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()

    def add(target):
        # ``from keras_rmz.x import y`` imports the module keras_rmz.x.y when
        # there is one, else the name y of keras_rmz.x.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_rmz"):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.startswith("keras_rmz"):
                for alias in node.names:
                    add(f"{source}.{alias.name}")
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.startswith("keras_rmz")
        ):
            add(node.args[0].value)
    found.discard(name)
    return found


def _floor(module):
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package root: a lazy facade over every floor
    return FLOORS[parts[1]]


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_part_of_the_package_has_a_floor():
    parts = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in PACKAGE.rglob("*.py")}
    parts.discard("__init__")
    assert parts == set(FLOORS), "a new top-level module or folder needs a floor here and in docs/architecture.md"


def test_no_import_runs_upward(graph):
    upward = sorted(
        (source, target)
        for source, targets in graph.items()
        for target in targets
        if _floor(source) is not None
        and _floor(target) is not None
        and _floor(target) > _floor(source)
    )
    assert not upward, "imports that run upward: " + ", ".join(f"{s} -> {t}" for s, t in upward)


def test_each_command_module_stays_small():
    # cli/ parses arguments and calls the library (docs/architecture.md); a
    # module that grows past this has library work to move out.
    long = {path.name: n for path in (PACKAGE / "cli").glob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 260}
    assert not long, f"cli modules over 260 lines: {long}"


def test_the_package_root_imports_only_its_version_and_the_models(graph):
    # keras_rmz.models registers each model's presets; it loads no class.
    assert graph["keras_rmz"] == {"keras_rmz.version", "keras_rmz.models"}


def test_importing_the_package_imports_no_backend_and_registers_the_presets():
    import subprocess
    import sys

    code = (
        "import sys, keras_rmz\n"
        "from keras_rmz.presets import registry\n"
        "assert registry.PRESETS, 'no preset registered'\n"
        "loaded = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


BACKEND_LIBRARIES = ("tensorflow", "jax", "jaxlib", "torch")


def test_only_the_backend_package_imports_a_backend_library():
    importers = []
    for name, path in _modules().items():
        if name == "keras_rmz.backend" or name.startswith("keras_rmz.backend."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            importers += [f"{name} imports {n}" for n in names if n.split(".")[0] in BACKEND_LIBRARIES]
    assert not importers, "backend libraries imported outside keras_rmz/backend: " + ", ".join(importers)


def test_no_import_cycle(graph):
    edges = {
        source: {t for t in targets if t != "keras_rmz"}
        for source, targets in graph.items()
        if source != "keras_rmz"
    }
    # A package's __init__ importing its own modules is how Python packages
    # work, not a cycle: a module importing its own package is what closes one.
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_checker_sees_lazy_and_string_imports(tmp_path):
    source = tmp_path / "keras_rmz" / "io" / "probe.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "def f():\n"
        "    from keras_rmz.models import RecurrentMZ\n"
        "    import importlib\n"
        "    importlib.import_module('keras_rmz.training')\n"
        "from ..layers import dpm\n"
    )
    modules = {name: None for name in ("keras_rmz.models", "keras_rmz.training", "keras_rmz.layers.dpm")}
    found = _imports("keras_rmz.io.probe", source, modules)
    assert found == {"keras_rmz.models", "keras_rmz.training", "keras_rmz.layers.dpm"}
