"""Every example in the documentation runs: the Python blocks and the
``keras-rmz`` commands of README.md, docs/*.md and the preset cards
weights/*/README.md.

How it works:

- ``DOC_PAGES`` finds the pages by glob, so a new page (a new
  docs/finetuning.md, a new preset card) is tested without touching this file.
- Python blocks (```python) of one page run in order, in one namespace, in a
  temporary folder that ``make_workdir`` fills with tiny files under the
  names the docs use (``beads.ome.tif``, ``stack.ome.tif``, ``my_preset/``,
  ...). ``PYTHON_SETUP`` defines, per page, the names the page's blocks use
  without defining them (``stacks``, ``images``, ...), explicitly.
- Shell blocks (```bash, ```console, ```sh or a bare ```) are read as
  commands: lines joined at ``\\``, a ``$ `` prompt marks a transcript (then
  only the prompted lines are commands and the lines after one are its
  output), ``# ...`` comments dropped. ``keras-rmz`` commands of a page run in
  order in this process (``keras_rmz.cli.main.main``; in a subprocess when
  they set an environment other than ``KERAS_BACKEND=...``: a command that
  names a backend runs on the backend under test) in that page's
  folder, after ``rewrite_command`` (``COMMAND_REWRITES``: a reviewed table
  shrinking what cannot run at its real size in a test: training budgets,
  simulated stack sizes). A transcript whose output says ``error:`` must
  fail with exit code 2 and print that line (``...`` matches anything).
- A usage synopsis (``[--opt ...]``, ``{a,b}``, ``NAME|DIR``) is not run:
  every ``--option`` it names must appear in the command's ``--help``.
- What truly cannot run is listed in ``NOT_RUN_PYTHON`` /
  ``NOT_RUN_COMMANDS`` with the reason. Every block and command is run,
  checked or listed, or the test fails; a table entry that matches nothing
  fails too, so the tables cannot go stale.

Slow (it loads every preset and trains each card's recipe for a few
steps): it runs once per CI run (``run_once``, see
tests/conftest.py); the backends' own behaviour is tested elsewhere.
"""

import contextlib
import dataclasses
import io
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def _doc_pages():
    pages = [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md")),
             *sorted((REPOSITORY / "weights").glob("*/README.md"))]
    return [page.relative_to(REPOSITORY).as_posix() for page in pages if page.is_file()]


DOC_PAGES = _doc_pages()

SHELL_LANGUAGES = ("bash", "console", "sh", "shell", "")

# --- What is not run, and why (reviewed) ----------------------------------

# (page, a piece of text found in exactly one Python block of the page) ->
# why the block does not run.
NOT_RUN_PYTHON = {
    ("docs/presets.md", 'from_preset("hf://owner/repo")'): "loads from the Hugging Face Hub (network); "
    "tests/presets/test_hub.py tests hf:// handles against a local Hub server",
    ("docs/presets.md", "push_to_hub("): "uploads to the Hugging Face Hub (network, a token); "
    "tests/presets/test_hub.py tests push_to_hub against a local Hub server",
    ("docs/models.md", "volume = model.reconstruct(images (M, H, W)"): "a summary of shapes, not code",
    ("docs/inference.md", "keras_rmz.inference.reconstruct_volume(model, images, input_z=None, output_z=None, *,"):
        "a signature, not code",
    ("docs/training.md", 'resolve_distribution("data_parallel", batch_size=8)'): "needs the JAX backend, and the "
    "docs' Python blocks run on the backend under test; tests/training/test_data_parallel.py runs the same under "
    "JAX with two devices",
}

# regular expression (full match of a command, comments dropped) -> why it
# does not run. Every entry must match at least one command of the docs.
NOT_RUN_COMMANDS = {
    r"pip install .*": "installs the package (network); CI installs it",
    r"bash \.ci/test": "the whole test suite",
    r"KERAS_BACKEND=jax python benchmarks/distributed\.py.*": "a benchmark of about 50 minutes; "
    "tests/test_benchmarks_smoke.py runs it on tiny sizes",
    r"python benchmarks/.*": "benchmarks take minutes; tests/test_benchmarks_smoke.py runs each script on tiny sizes "
    "(benchmarks/finetune_real.py: tests/training/test_finetune.py)",
    r"keras-rmz finetune \.\./shared/data/\S+ .*": "the project's real stacks live outside the checkout and take "
    "9 minutes each; the same command runs on the tiny embryo.ome.tif of the Quick start",
    r"python examples/presets/publish_preset\.py .*": "publishes a finished multi-hour training run from runs/; "
    "tests/test_publish_preset.py tests the card and docs it writes",
    r"""python -c "import keras_rmz; keras_rmz\.RecurrentMZ\.from_preset\('hf://.*'\)\"""": "downloads from the Hub "
    "(network)",
    r"HF_HUB_OFFLINE=1 python my_script\.py": "stands for the user's own script",
    r"KERAS_BACKEND=jax napari": "opens napari's window; tests/test_napari_plugin.py runs the plugin in a real "
    "viewer where a display exists",
    r"python examples/reconstruct_figure\.py": "rewrites docs/images/inference_tiling.png (about a minute)",
    r"python examples/finetune\.py .*": "fine-tunes for thousands of steps; "
    "tests/cli/test_train_cli.py::test_finetune_example_trains_and_saves_a_preset runs the script on tiny stacks",
    r"keras-rmz presets entry \S+ --hub \S+ --revision <commit>": "needs the commit of a Hub upload (network); "
    "tests/presets/test_cli_presets.py runs `presets entry` with and without --hub",
    r"KERAS_BACKEND=jax keras-rmz (train examples/train_beads_m3\.yaml|finetune embryo\.ome\.tif "
    r"--preset recurrent_mz_nuclei_m2 -o my_embryo_preset/) (--set training\.distribution=|--distribution )data_parallel":
    "tests/training/test_data_parallel.py runs these two commands (tiny) on two JAX devices, where data "
    "parallelism is more than one device's work",
}

# --- Rewrites (reviewed): real sizes that cannot run in a test -----------

# A training run of a few steps on one tiny simulated stack; the model,
# loss, optimizer and every other key stay as the config has them.
TINY_TRAINING = [
    "--set", "training.steps=2", "--set", "training.steps_per_epoch=2", "--set", "training.checkpoint_every=2",
    "--set", "data.simulate.count=1", "--set", "data.simulate.shape=[81,32,32]", "--set", "data.patch_size=32",
    "--set", "data.batch_size=1", "--set", "validation.steps=1", "--set", "validation.simulate.count=1",
    "--set", "optimizer.warmup_steps=0", "-q",
]

# subcommand -> arguments appended (later arguments win in argparse and
# in `--set`); [] runs it as the docs write it. A subcommand not listed here
# fails the test until it is reviewed (a new `keras-rmz finetune`, say, needs
# its tiny budget here).
COMMAND_REWRITES = {
    "reconstruct": [],  # the docs' stacks are tiny files (make_workdir)
    "evaluate": [],
    "presets": [],
    "export": [],  # a real export of the preset (seconds)
    "train": TINY_TRAINING,
    "simulate": ["--shape", "101", "32", "32"],  # the documented z range, tiny planes
    "demo": ["--shape", "81", "32", "32", "-q"],
    # Two steps of 16-pixel patches instead of a 7-minute budget.
    "finetune": ["--steps", "2", "--patch-size", "16", "--batch-size", "2", "--eval-every", "2", "-q"],  # 8 µm at 0.1 µm: room for M = 3 inputs 3 µm apart
}
# `--max-minutes 50`: a session budget; the tiny run ends first anyway.

# --- Names the Python blocks of a page use without defining them --------

_STACKS = """
import numpy as np
import keras_rmz
stacks = [keras_rmz.io.read_stack(name) for name in ("beads_00.ome.tif", "beads_01.ome.tif")]
val_stacks = [keras_rmz.io.read_stack("beads_val.ome.tif")]
"""
_REQUEST = """
import numpy as np
import keras_rmz
_stack = keras_rmz.io.read_stack("beads.ome.tif")
images, input_z, output_z = _stack.data[[20, 50, 80]], _stack.z[[20, 50, 80]], _stack.z[5:96:5]
"""
PYTHON_SETUP = {
    "docs/dataset.md": _STACKS + """
from keras_rmz.data import VolumeDataset
stacks = [keras_rmz.io.read_stack("stack.ome.tif")]  # 18 µm: room for 3 inputs 6 µm apart
model = keras_rmz.RecurrentMZ(base_filters=4, depth=2)
model.compile()
widefield_paths = ["nuclei_widefield.ome.tif"]
confocal_paths = ["nuclei_confocal.ome.tif"]
""",
    "docs/training.md": _STACKS + _REQUEST + """
import keras
from keras_rmz import RecurrentMZ
from keras_rmz.models.discriminator import Discriminator
from keras_rmz.training import AdversarialTrainer
""",
    "docs/inference.md": """
import numpy as np
batch = {"images": np.random.rand(2, 3, 32, 32, 1).astype("float32"),
         "input_z": np.array([[2.0, 5.0, 8.0]] * 2, "float32"), "output_z": np.array([3.0, 4.0], "float32")}
import keras_rmz
_stack = keras_rmz.io.read_stack("beads.ome.tif")
_order = [50, 20, 80]  # planes in acquisition order (M <= 3, as the preset), and their z
planes, z = _stack.data[_order], _stack.z[_order]
output_z = np.arange(0.0, 10.01, 0.1)
""",
    "docs/models.md": """
import keras_rmz
stack = keras_rmz.io.read_stack("beads.ome.tif")
target_patches = np.random.rand(2, 64, 64, 1).astype("float32")
""",
    "docs/metrics.md": """
import keras_rmz
model = keras_rmz.RecurrentMZ.from_preset("recurrent_mz_beads_m3")
truth_fwhm = np.random.default_rng(0).normal(0.45, 0.05, 40)
recon_fwhm = np.random.default_rng(1).normal(0.48, 0.05, 40)
""",
    "docs/presets.md": _REQUEST + """
norm = keras_rmz.data.compute_normalization(_stack)
""",
    "docs/export.md": """
import numpy as np
import keras_rmz
_embryo = keras_rmz.io.read_stack("embryo.ome.tif")
images = _embryo.data[[30, 60]]                     # z = 6 and 12 µm, as the page's input_z
input_z, z = [6.0, 12.0], np.arange(6.0, 12.01, 0.5)
output_z = z
keras_model = keras_rmz.RecurrentMZ.from_preset("recurrent_mz_nuclei_m2")
""",
}

# (page, old text) -> new text, in the page's Python blocks: sizes that
# cannot run in a test. Every entry must be used.
PYTHON_REWRITES = {
    ("README.md", "shape=(101, 128, 128)"): "shape=(101, 32, 32)",
    ("docs/simulation.md", 'simulate_stack("beads", seed=0)'): 'simulate_stack("beads", shape=(101, 32, 32), seed=0)',
    ("docs/simulation.md", 'simulate_stack("nuclei", "widefield", seed=7)'):
        'simulate_stack("nuclei", "widefield", shape=(91, 32, 32), seed=7)',
    ("docs/simulation.md", 'simulate_stack("nuclei", "confocal", seed=7)'):
        'simulate_stack("nuclei", "confocal", shape=(91, 32, 32), seed=7)',
    ("docs/dataset.md", "patch_size=256"): "patch_size=32",
    ("docs/dataset.md", "epochs=50"): "epochs=1, steps_per_epoch=1, validation_steps=1",
    ("docs/dataset.md", "patch_size=128"): "patch_size=32",
    ("docs/dataset.md", "min_signal=0.2)"): "min_signal=0.2, patch_size=32)",
    ("docs/dataset.md", "input_spacing_um=6.0,"): "input_spacing_um=6.0, patch_size=32,",
    ("docs/training.md", "patch_size=256"): "patch_size=32",
    ("docs/training.md", "rmz.RecurrentMZ()"): "rmz.RecurrentMZ(base_filters=4, depth=2)",
    ("docs/training.md", "epochs=100"): "epochs=1, steps_per_epoch=1",
    ("docs/training.md", "AdversarialTrainer(RecurrentMZ(), Discriminator())"):
        "AdversarialTrainer(RecurrentMZ(base_filters=4, depth=2), Discriminator())",
    ("docs/models.md", "(1, 1, 256, 256, 1)"): "(1, 1, 32, 32, 1)",
    ("docs/finetuning.md", '"my_embryo_preset/")'):
        '"my_embryo_preset/", steps=2, patch_size=16, batch_size=2, eval_every=2, verbose=0)',
    ("docs/presets.md", "keras_rmz.data.VolumeDataset(...), epochs=10"):
        'keras_rmz.data.VolumeDataset(["beads.ome.tif"], num_inputs=3, input_spacing_um=3.0, patch_size=32, '
        "batch_size=1, steps_per_epoch=1), epochs=1",
}


# --- Parsing ----------------------------------------------------------------


@dataclasses.dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    language: str
    text: str


def read_blocks(page):
    """The fenced code blocks of ``page`` (indented fences included)."""
    blocks, current, fence = [], None, None
    for number, line in enumerate((REPOSITORY / page).read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if current is None:
            match = re.match(r"^(\s*)(```+)\s*([\w+-]*)", line)
            if match:
                fence, indent = match.group(2), len(match.group(1))
                current = Block(page, number, match.group(3).lower(), "")
                lines = []
        elif stripped.startswith(fence) and stripped.strip("`") == "":
            current.text = "\n".join(lines) + "\n"
            blocks.append(current)
            current = None
        else:
            lines.append(line[indent:] if line[:indent].strip() == "" else line)
    return blocks


@dataclasses.dataclass
class Command:
    page: str
    line: int
    text: str  # as in the docs, continuations joined, comment dropped
    output: list  # the transcript lines after it


def _drop_comment(text):
    lexer = shlex.shlex(text, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError:
        return text.strip()
    if not words:
        return ""
    # Keep the original spelling up to the comment.
    index = text.find(" #")
    while index >= 0:
        head = text[:index]
        try:
            if shlex.split(head, comments=False) == words:
                return head.strip()
        except ValueError:
            pass
        index = text.find(" #", index + 1)
    return text.strip()


COMMAND_WORDS = ("keras-rmz", "python", "pip", "bash")


def _is_output(line):
    """A line a program printed (``keras-rmz train: error: ...``)."""
    return bool(re.match(r"^keras-rmz( [a-z-]+)?: ", line))


def _starts_a_command(line):
    if _is_output(line):
        return False
    line = line[2:] if line.startswith("$ ") else line
    words = line.split()
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words = words[1:]
    return bool(words) and words[0] in COMMAND_WORDS


def read_commands(block):
    """The commands of a shell block (see the module docstring). A bare
    block (no language) without a line that starts a command is text or
    program output, not commands."""
    raw = block.text.splitlines()
    if block.language == "" and not any(_starts_a_command(line) for line in raw):
        return []
    transcript = any(line.startswith("$ ") for line in raw)
    commands, pending, start = [], "", None
    for offset, line in enumerate(raw):
        number = block.line + 1 + offset
        if transcript and not pending and not line.startswith("$ "):
            if commands:
                commands[-1].output.append(line)
            continue
        if not pending and _is_output(line):
            if commands:
                commands[-1].output.append(line)
            continue
        if not pending and commands and start is None and line[:1].isspace() and line.strip():
            # An indented line continues the line before (a usage synopsis
            # wrapped without a backslash).
            commands[-1].text += " " + _drop_comment(line.strip())
            continue
        if transcript and not pending:
            line = line[2:]
        if start is None:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].rstrip() + " "
            continue
        text = _drop_comment((pending + line).strip())
        pending = ""
        # `a && b`: two commands (no doc quotes "&&").
        for part in text.split(" && ") if text else ():
            commands.append(Command(block.page, start, part.strip(), []))
        start = None
    return commands


def _words(text):
    return shlex.split(text)


def split_environment(words):
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        key, value = words[0].split("=", 1)
        env[key] = value
        words = words[1:]
    return env, words


def is_synopsis(text):
    """A usage line (``[--opt N]``, ``{a,b}``, ``NAME|DIR``, ``CONFIG``)
    rather than a command."""
    return bool(re.search(r"\[|\{|\||(^|\s)[A-Z][A-Z_]*(\s|$)", text))


# --- Files the docs name ---------------------------------------------------


@pytest.fixture(scope="session")
def _workdir_template(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("docs_workdir"))


@pytest.fixture
def workdir(_workdir_template, tmp_path):
    """A copy of ``make_workdir``'s folder, made once per test session
    (simulating its stacks takes seconds, and every page's tests need them)."""
    shutil.copytree(_workdir_template, tmp_path, symlinks=True, dirs_exist_ok=True)
    return tmp_path


def make_workdir(folder):
    """Tiny stacks and a preset under the names the docs use."""
    from keras_rmz.io import Stack, write_stack
    from keras_rmz.simulate import simulate_stack

    folder.mkdir(parents=True, exist_ok=True)
    beads = simulate_stack("beads", shape=(101, 32, 32), seed=0)  # z 0..10 µm, 0.1 µm, as the docs' examples
    for name in ("beads.ome.tif", "beads_val.ome.tif"):
        write_stack(folder / name, beads)
    # Six isolated beads 0.4-0.6 µm from z = 5.1 µm, where docs/metrics.md
    # measures their FWHM (its bins span 0.3-0.7 µm).
    positions = [[z, y, x] for z, (y, x) in zip((4.5, 4.6, 5.6, 5.7, 4.7, 5.5),
                                                 ((1.6, 1.6), (1.6, 4.8), (4.8, 1.6), (4.8, 4.8), (3.2, 3.2), (1.6, 3.2)))]
    write_stack(folder / "beads_scan.ome.tif", simulate_stack("beads", shape=(101, 64, 64), seed=0, positions_um=positions))
    for index, name in enumerate(("beads_00.ome.tif", "beads_01.ome.tif")):
        write_stack(folder / name, simulate_stack("beads", shape=(101, 32, 32), seed=index + 1))
    write_stack(folder / "beads.tif", beads)  # an ImageJ TIFF with physical sizes
    # A plain TIFF, without physical sizes.
    import tifffile

    tifffile.imwrite(folder / "bead_widefield_25pct.tif", beads.data[::2])
    # The preset cards' stack: 0..18 µm in 0.1 µm steps covers every card;
    # no optics recorded (beads for a nuclei card would warn of the wavelength).
    cards = simulate_stack("beads", shape=(181, 32, 32), seed=3)
    write_stack(folder / "stack.ome.tif", Stack(cards.data, cards.z, cards.pixel_um))
    write_stack(folder / "nuclei_widefield.ome.tif", simulate_stack("nuclei", "widefield", shape=(46, 32, 32), seed=4))
    write_stack(folder / "nuclei_confocal.ome.tif", simulate_stack("nuclei", "confocal", shape=(46, 32, 32), seed=4))
    # A full stack for docs/finetuning.md: 0..18 µm in 0.2 µm steps (room for
    # M = 2 inputs 6 µm apart), 64 x 64 pixels (a training and a held-out half).
    embryo = simulate_stack("nuclei", shape=(91, 64, 64), seed=5)
    write_stack(folder / "embryo.ome.tif", Stack(embryo.data, embryo.z, embryo.pixel_um))
    write_stack(folder / "embryo.ome.zarr", Stack(embryo.data, embryo.z, embryo.pixel_um))  # docs/data.md
    # docs/distributed.md: a time-lapse of 3 time points (the embryo drifting by a pixel a frame).
    from keras_rmz.io import TimeLapse, write_timelapse

    frames = np.stack([np.roll(embryo.data, t, axis=2) for t in range(3)])
    write_timelapse(folder / "movie.ome.zarr", TimeLapse(frames, embryo.z, embryo.pixel_um, [0, 1, 2]))
    shutil.copytree(REPOSITORY / "weights" / "recurrent_mz_beads_m3", folder / "my_preset")
    shutil.copy(REPOSITORY / "examples" / "train_beads_m3.yaml", folder / "my.yaml")
    (folder / "examples").symlink_to(REPOSITORY / "examples")
    (folder / "weights").symlink_to(REPOSITORY / "weights")
    return folder


@contextlib.contextmanager
def working_directory(path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


# --- The checks ------------------------------------------------------------

pytestmark = pytest.mark.run_once

# docs/presets.md ends with copies of the preset cards (publish_preset.py
# --docs): their blocks run on the cards' own pages, weights/*/README.md,
# once (test_preset_cards_in_the_docs_are_copies checks they are copies).
CARD_COPIES = ("docs/presets.md", "\n## Preset cards\n")


def _is_card_copy(block):
    page, heading = CARD_COPIES
    if block.page != page:
        return False
    text = (REPOSITORY / page).read_text(encoding="utf-8")
    return block.line > text[: text.index(heading)].count("\n") + 1


def _publish_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("publish_preset", REPOSITORY / "examples" / "presets" / "publish_preset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_preset_cards_in_the_docs_are_copies():
    page, _ = CARD_COPIES
    assert _publish_module().cards_markdown() in (REPOSITORY / page).read_text(encoding="utf-8"), (
        f"the preset cards in {page} differ from weights/*/README.md: "
        "python examples/presets/publish_preset.py --refresh-use-sections --docs"
    )


def _not_run_python(block):
    return [reason for (page, text), reason in NOT_RUN_PYTHON.items() if page == block.page and text in block.text]


def _rewrite_python(block, used):
    text = block.text
    for (page, old), new in PYTHON_REWRITES.items():
        if page == block.page and old in text:
            text = text.replace(old, new)
            used.add((page, old))
    return text


class TestPythonBlocks:
    """Each page's Python blocks (a class: a scope of its own for pytest-xdist's
    ``--dist loadscope``, so the pages' blocks and commands run on two workers)."""

    @pytest.mark.parametrize("page", DOC_PAGES)
    def test_python_blocks_run(self, page, request):
        blocks = [block for block in read_blocks(page) if block.language == "python" and not _is_card_copy(block)]
        if not blocks:
            pytest.skip(f"{page} has no Python block")
        folder = request.getfixturevalue("workdir")
        namespace = {"__name__": "__doc__", "np": np}
        used = set()
        with working_directory(folder), contextlib.redirect_stdout(io.StringIO()):
            if page in PYTHON_SETUP:
                exec(compile(PYTHON_SETUP[page], f"PYTHON_SETUP[{page!r}]", "exec"), namespace)
            for block in blocks:
                if _not_run_python(block):
                    continue
                source = _rewrite_python(block, used)
                try:
                    exec(compile(source, f"{page}:{block.line}", "exec"), namespace)
                except Exception as error:
                    raise AssertionError(f"the Python block at {page}:{block.line} fails: {error!r}\n{source}") from error


def test_tables_are_not_stale():
    blocks = {page: read_blocks(page) for page in DOC_PAGES}
    for (page, text), reason in NOT_RUN_PYTHON.items():
        found = [b for b in blocks.get(page, ()) if b.language == "python" and text in b.text]
        assert len(found) == 1, f"NOT_RUN_PYTHON {(page, text)!r} matches {len(found)} blocks, not 1"
    for (page, old), new in PYTHON_REWRITES.items():
        assert any(b.language == "python" and old in b.text for b in blocks.get(page, ())), (
            f"PYTHON_REWRITES {(page, old)!r} matches no Python block"
        )
    for page in PYTHON_SETUP:
        assert page in blocks, f"PYTHON_SETUP names {page}, which is not a doc page"
    commands = [c for page in DOC_PAGES for b in blocks[page] if b.language in SHELL_LANGUAGES for c in read_commands(b)]
    for pattern in NOT_RUN_COMMANDS:
        assert any(re.fullmatch(pattern, c.text) for c in commands), f"NOT_RUN_COMMANDS {pattern!r} matches no command"


def _cli(words, cwd, env=None, timeout=600):
    """Runs ``keras-rmz WORDS`` in ``cwd``, offline, in this process
    (``keras_rmz.cli.main.main``), which saves the seconds of importing the
    backend for every command; in a subprocess when ``env`` sets a variable
    other than ``KERAS_BACKEND``. A command that names a backend (a card's
    recipe names the one that trained the preset, docs/cli.md shows how to
    pick one) runs on the backend under test: the test checks that the
    command runs, and each subcommand on each backend is tests/cli/'s job."""
    env = {key: value for key, value in (env or {}).items() if key != "KERAS_BACKEND"}
    if env:
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
        return subprocess.run([sys.executable, "-m", "keras_rmz.cli.main", *words], cwd=cwd, env=full_env,
                              capture_output=True, text=True, timeout=timeout)
    return _cli_in_process(words, cwd)


def _cli_in_process(words, cwd):
    import huggingface_hub.constants

    from keras_rmz.cli.main import main

    stdout, stderr = io.StringIO(), io.StringIO()
    previous_dir, previous_offline = os.getcwd(), huggingface_hub.constants.HF_HUB_OFFLINE
    previous_env = os.environ.get("HF_HUB_OFFLINE")
    os.chdir(cwd)
    os.environ["HF_HUB_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            try:
                code = main(list(words))
            except SystemExit as exit_info:  # argparse errors and --help
                code = exit_info.code if isinstance(exit_info.code, int) else (0 if exit_info.code is None else 1)
    finally:
        os.chdir(previous_dir)
        huggingface_hub.constants.HF_HUB_OFFLINE = previous_offline
        if previous_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous_env
    return subprocess.CompletedProcess(["keras-rmz", *words], code, stdout.getvalue(), stderr.getvalue())


def rewrite_command(words):
    """The arguments a doc command runs with in the test (``COMMAND_REWRITES``)."""
    assert words and words[0] in COMMAND_REWRITES, (
        f"`keras-rmz {' '.join(words)}`: keras-rmz {words[0] if words else ''} is not in COMMAND_REWRITES; review "
        "what it costs and add it (with the arguments that make it tiny)"
    )
    return [*words, *COMMAND_REWRITES[words[0]]]


def _check_synopsis(command, cwd, helps):
    env, words = split_environment(_words(command.text.replace("|", " ")))
    subcommand = [w for w in words[1:3] if re.fullmatch(r"[a-z]+", w)]
    key = tuple(subcommand[:2])
    if key not in helps:
        result = _cli([*key, "--help"], cwd)
        if result.returncode != 0 and len(key) > 1:
            key = key[:1]
            result = _cli([*key, "--help"], cwd)
        assert result.returncode == 0, f"{command.page}:{command.line}: `keras-rmz {' '.join(key)} --help` fails"
        helps[key] = result.stdout
    for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command.text):
        assert option in helps[key], (
            f"{command.page}:{command.line}: the usage line names {option}, which `keras-rmz {' '.join(key)} --help` "
            f"does not list:\n{command.text}"
        )


def _expected_error(command):
    lines = [line for line in command.output if "error:" in line]
    return lines[0] if lines else None


# Commands that have already run (and passed) in this session on another page,
# whose result does not depend on the page: the shipped recipes (the preset
# cards list every stage of their recipe, so the same `keras-rmz train
# examples/presets/X.yaml` stands on several cards) and the export of a
# built-in preset (docs/cli.md and docs/export.md show the same ones).
_RUN_ON_ANOTHER_PAGE = set()
_RECIPE_COMMAND = re.compile(r"(KERAS_BACKEND=\w+ )?keras-rmz train examples/presets/[\w.]+\.yaml")
_PAGE_INDEPENDENT = re.compile(_RECIPE_COMMAND.pattern + r"|keras-rmz export [a-z0-9_]+ .*")


class TestCommands:
    """Each page's ``keras-rmz`` commands."""

    @pytest.mark.parametrize("page", DOC_PAGES)
    def test_commands_run(self, page, request):
        commands = [c for b in read_blocks(page) if b.language in SHELL_LANGUAGES and not _is_card_copy(b)
                    for c in read_commands(b)]
        if not commands:
            pytest.skip(f"{page} has no command")
        folder = request.getfixturevalue("workdir")
        helps, unhandled = {}, []
        for command in commands:
            if any(re.fullmatch(pattern, command.text) for pattern in NOT_RUN_COMMANDS):
                continue
            env, words = split_environment(_words(command.text))
            if not words or words[0] != "keras-rmz":
                unhandled.append(command)
                continue
            if is_synopsis(command.text):
                _check_synopsis(command, folder, helps)
                continue
            assert "..." not in words, f"{page}:{command.line}: a placeholder '...' in a command:\n{command.text}"
            if command.text in _RUN_ON_ANOTHER_PAGE:
                continue
            result = _cli(rewrite_command(words[1:]), folder, env)
            expected = _expected_error(command)
            where = f"{page}:{command.line}: `{command.text}`"
            if expected is None:
                assert result.returncode == 0, f"{where} fails (exit {result.returncode}):\n{result.stderr[-3000:]}"
                if _PAGE_INDEPENDENT.fullmatch(command.text):
                    _RUN_ON_ANOTHER_PAGE.add(command.text)
            else:
                assert result.returncode == 2, f"{where} should fail with exit code 2; got {result.returncode}"
                pattern = ".*".join(re.escape(part) for part in expected.strip().split("..."))
                assert re.fullmatch(pattern, result.stderr.strip().splitlines()[-1]), (
                    f"{where} prints\n{result.stderr.strip()}\nwhere the docs say\n{expected}"
                )
        assert not unhandled, "commands that are neither run nor listed in NOT_RUN_COMMANDS:\n" + "\n".join(
            f"{c.page}:{c.line}: {c.text}" for c in unhandled
        )
