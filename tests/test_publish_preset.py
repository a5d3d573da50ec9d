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
