"""examples/presets/publish_preset.py: the preset cards in docs/presets.md
come from weights/*/README.md, and the card states the recipe's departures
from the paper as the training config has them."""

import importlib.util
import pathlib

import pytest

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def publish():
    spec = importlib.util.spec_from_file_location("publish_preset", REPOSITORY / "examples" / "presets" / "publish_preset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _card(folder, name, body):
    (folder / name).mkdir(parents=True)
    text = f"---\nlibrary_name: keras\ntags:\n- keras\n---\n\n# {name}\n\n{body}\n\n## Use\n\ncode\n"
    (folder / name / "README.md").write_text(text, encoding="utf-8")


def test_cards_drop_front_matter_demote_headings_and_list_recurrent_mz_first(publish, tmp_path):
    weights = tmp_path / "weights"
    _card(weights, "deep_z_beads", "baseline")
    _card(weights, "recurrent_mz_beads_m3", "main")
    (weights / "no_card").mkdir()
    cards = publish.cards_markdown(weights)
    assert "library_name" not in cards and "---" not in cards
    assert cards.index("### recurrent_mz_beads_m3") < cards.index("### deep_z_beads")
    assert "#### Use" in cards and "\n# " not in cards and "\n## " not in cards


def test_update_docs_cards_keeps_the_page_and_the_intro(publish, tmp_path):
    weights = tmp_path / "weights"
    _card(weights, "recurrent_mz_beads_m3", "new numbers")
    docs = tmp_path / "presets.md"
    docs.write_text("# Presets\n\n## Loading\n\ntext\n\n## Preset cards\n\nIntro.\n\n### old_card\n\nold numbers\n",
                    encoding="utf-8")
    publish.update_docs_cards(docs, weights)
    text = docs.read_text(encoding="utf-8")
    assert text.startswith("# Presets\n\n## Loading\n\ntext\n\n## Preset cards\n\nIntro.\n\n### recurrent_mz_beads_m3")
    assert "old numbers" not in text and "old_card" not in text and "new numbers" in text


def test_recipe_differences_follow_the_config(publish):
    config = {
        "model": {"config": {"base_filters": 16, "depth": 3, "use_batch_norm": False, "activation": "leaky_relu"}},
        "data": {"patch_size": 64, "normalization_source": "inputs", "simulate": {"noise_free_targets": True}},
        "loss": {"adversarial_weight": 0.0},
    }
    text = publish._recipe_differences(config)
    for words in ("slimmer network", "no batch normalization", "leaky relu activations", "small patches",
                  "normalized from their drawn planes", "noise-free targets", "no discriminator"):
        assert words in text
    assert "nearest input plane" not in text
    paper = {"model": {"config": {}}, "data": {"patch_size": 256, "simulate": None}, "loss": {"adversarial_weight": 0.5}}
    text = publish._recipe_differences(paper)
    assert text == "a higher learning rate with cosine decay"


def _training(config, command, steps, fine_tuned_from=None):
    record = {"config": config, "commands": [command, command + " --max-minutes 60"], "steps": steps,
              "sessions": 2, "wall_time_s": 3600.0 * steps / 1000, "weights": "last", "backend": "tensorflow",
              "machine": {"cpu_count": 2}, "adversarial": bool(config["loss"]["adversarial_weight"])}
    if fine_tuned_from is not None:
        record["fine_tuned_from"] = {"preset": "runs/fit/preset", "training": fine_tuned_from}
    return record


def test_a_fine_tuned_preset_lists_its_stages_and_their_recipes(publish):
    fit = {"model": {"config": {"base_filters": 16}, "init_preset": None},
           "data": {"patch_size": 64, "batch_size": 8, "simulate": None},
           "optimizer": {"learning_rate": 1e-3, "schedule": "cosine", "warmup_steps": 100, "min_learning_rate": 1e-5},
           "loss": {"berhu_weight": 3.0, "ms_ssim_weight": 1.0, "adversarial_weight": 0.0}}
    tune = {**fit, "model": {"config": {}, "init_preset": "runs/fit/preset"},
            "optimizer": {**fit["optimizer"], "learning_rate": 1e-4, "schedule": "constant"},
            "loss": {**fit["loss"], "adversarial_weight": 0.1}}
    record = _training(tune, "keras-rmz train tune.yaml", 2000,
                       fine_tuned_from=_training(fit, "keras-rmz train fit.yaml", 10500))
    stages = publish._training_stages(record, "examples/presets/tune.yaml")
    assert [(what, recipe, training["steps"]) for what, training, recipe in stages] == [
        ("plain fit", "fit.yaml", 10500), ("fine-tuning", "examples/presets/tune.yaml", 2000)]
    assert "no discriminator" in publish._stage_recipe(fit, stages[0][1])
    second = publish._stage_recipe(tune, stages[1][1])
    assert "fine-tuned from `runs/fit/preset`" in second and "0.1·(D(ŷ) − 1)²" in second and "constant" in second
    # The architecture's departures come from the first stage; the
    # discriminator from the second.
    text = publish._recipe_differences(tune, fit)
    assert "slimmer network" in text and "no discriminator" not in text
    assert "the discriminator only in a short fine-tuning after a plain fit" in text
    # A run from scratch is one stage.
    assert [what for what, _, _ in publish._training_stages(_training(fit, "keras-rmz train fit.yaml", 10), "r")] == [
        "training"]


def test_the_shipped_cards_show_the_generated_use_section(publish):
    """The "Use" section of every card in weights/ is what ``use_section``
    makes (``publish_preset.py --refresh-use-sections`` rewrites it):
    a runnable command with --output-z and --pixel-um, no placeholder."""
    import json

    for readme in sorted((REPOSITORY / "weights").glob("*/README.md")):
        metadata = json.loads((readme.parent / "metadata.json").read_text(encoding="utf-8"))
        section = "\n".join(publish.use_section(readme.parent.name, metadata))
        assert section in readme.read_text(encoding="utf-8"), f"{readme}: run publish_preset.py --refresh-use-sections"
        assert "--output-z" in section and "--pixel-um" in section and "..." not in section


@pytest.mark.run_once
def test_niche_metrics_score_other_presets_on_the_same_volumes(publish):
    import numpy as np

    from keras_rmz.models import RecurrentMZ

    model = RecurrentMZ(base_filters=2, depth=1)
    metadata = {"z_step_um": 0.25, "num_inputs": 3, "input_spacing_um": 2.0, "modality": "widefield -> widefield"}
    scores = publish.niche_metrics(model, metadata, "beads", volumes=1, shape=(41, 16, 16), others={"same": model})
    table = scores["table"]
    assert list(table) == ["model", "same", "nearest input plane", "linear interpolation"]
    assert table["same"] == table["model"]
    assert scores["held_out"]["sample"] == "beads" and scores["held_out"]["seeds"] == [900000]
    assert all(np.isfinite(row["psnr_between_db"]) for row in table.values())
    # Interpolating between inputs 2 µm apart beats copying the nearest one on a bead stack.
    assert table["linear interpolation"]["psnr_between_db"] > table["nearest input plane"]["psnr_between_db"]


def test_a_stage_run_from_a_scratch_copy_names_its_committed_recipe(publish):
    import json

    metadata = json.loads((REPOSITORY / "weights" / "recurrent_mz_beads_m3" / "metadata.json").read_text())
    training = metadata["training"]
    assert training["commands"][-1] == "keras-rmz train /tmp/s9/berhu.yaml"  # a scratch copy, gone
    assert publish._committed_recipe(training["config"]) == "examples/presets/recurrent_mz_beads_m3_berhu.yaml"
    # A stage list built on top of it names the committed recipe, not the scratch path.
    child = {"fine_tuned_from": {"training": training}, "config": {}}
    recipes = [recipe for _, _, recipe in publish._training_stages(child, "examples/presets/x.yaml")]
    assert "/tmp/s9/berhu.yaml" not in recipes and "examples/presets/recurrent_mz_beads_m3_berhu.yaml" in recipes
    assert publish._committed_recipe({"model": {"class": "Nothing"}}) is None
