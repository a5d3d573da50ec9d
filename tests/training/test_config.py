"""The training config of ``keras-rmz train``: defaults, checks and one-line errors."""

import dataclasses
import json
import pathlib

import pytest
import yaml

from keras_rmz.training import config as config_lib
from keras_rmz.training.config import (
    TrainingConfig,
    apply_overrides,
    load_training_config,
    parse_override,
    training_config_from_dict,
)


def minimal(**sections):
    """The smallest valid config (simulated beads, 10 steps), with sections replaced."""
    config = {
        "data": {"simulate": {"sample": "beads", "count": 4, "seed": 0}, "num_inputs": 3, "input_spacing_um": 3.0},
        "training": {"steps": 10},
    }
    config.update(sections)
    return config


def error_of(mapping, error=(ValueError, TypeError)):
    with pytest.raises(error) as info:
        training_config_from_dict(mapping)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- Defaults ---------------------------------------------------------------


def test_minimal_config_gets_the_papers_defaults():
    config = training_config_from_dict(minimal(), source="configs/beads.yaml")
    assert config.to_dict()["model"] == {"class": "RecurrentMZ", "config": {}, "init_preset": None}
    # Paper Methods: Adam 1e-5 for both networks; 3 BerHu + 1 (1 - MS-SSIM) + 0.5 adversarial, c = 0.1.
    assert config.optimizer.learning_rate == 1e-5
    assert config.optimizer.discriminator_learning_rate == 1e-5
    assert config.optimizer.schedule == "constant"
    assert config.to_dict()["loss"] == {
        "berhu_weight": 3.0,
        "ms_ssim_weight": 1.0,
        "adversarial_weight": 0.5,
        "berhu_c": 0.1,
        "berhu_adaptive": False,
    }
    assert config.adversarial is True
    assert config.data.order == "sorted" and config.data.patch_size == 256
    assert config.total_steps == 10 and config.steps_per_epoch == 10 and config.num_epochs == 1
    assert config.output == "runs/beads"
    # Validation by default: held-out simulated stacks, other seeds, same settings.
    validation = config.validation
    assert validation.simulate.seed == 0 + config_lib.VALIDATION_SEED_OFFSET
    assert validation.simulate.count == 1  # count // 8, at least 1
    assert validation.simulate.sample == "beads"
    assert validation.batch_size == config.data.batch_size
    assert validation.monitor == "val_psnr"
    # Everything is JSON (it goes into run.json and the preset's metadata).
    assert json.loads(config.dumps()) == config.to_dict()


def test_steps_per_epoch_defaults_to_at_most_500_and_epochs_multiply():
    assert training_config_from_dict(minimal(training={"steps": 2000})).steps_per_epoch == 500
    config = training_config_from_dict(minimal(training={"epochs": 3, "steps_per_epoch": 7}))
    assert config.total_steps == 21 and config.num_epochs == 3
    # A last epoch may be shorter.
    config = training_config_from_dict(minimal(training={"steps": 10, "steps_per_epoch": 4}))
    assert config.num_epochs == 3


def test_validation_simulate_inherits_from_data_and_null_disables_it():
    data = {
        "simulate": {"sample": "nuclei", "count": 16, "shape": [31, 64, 64], "z_step_um": 0.2, "seed": 5},
        "num_inputs": 2,
        "input_spacing_um": 2.0,
    }
    config = training_config_from_dict(minimal(data=data, validation={"simulate": {"count": 2}, "steps": 3}))
    simulate = config.validation.simulate
    assert simulate.count == 2 and simulate.seed == 5 + config_lib.VALIDATION_SEED_OFFSET
    assert simulate.shape == [31, 64, 64] and simulate.sample == "nuclei" and simulate.z_step_um == 0.2
    assert training_config_from_dict(minimal(validation=None)).validation is None


def test_target_normalization_auto():
    noise_free = minimal()
    noise_free["data"]["simulate"]["noise_free_targets"] = True
    assert training_config_from_dict(noise_free).target_normalization == "inputs"
    confocal = minimal()
    confocal["data"]["targets"] = "confocal"
    assert training_config_from_dict(confocal).target_normalization == "own"
    assert training_config_from_dict(minimal()).target_normalization == "own"
    explicit = minimal()
    explicit["data"]["target_normalization"] = "inputs"
    assert training_config_from_dict(explicit).target_normalization == "inputs"


def test_normalization_source_defaults_to_the_stack_and_accepts_inputs():
    assert training_config_from_dict(minimal()).data.normalization_source == "stack"
    inputs = minimal()
    inputs["data"]["normalization_source"] = "inputs"
    assert training_config_from_dict(inputs).data.normalization_source == "inputs"
    wrong = minimal()
    wrong["data"]["normalization_source"] = "planes"
    message = error_of(wrong)
    assert "normalization_source" in message and "'stack'" in message and "'inputs'" in message


def test_yaml_float_without_dot_is_read_as_a_number():
    # YAML 1.1 reads "1e-4" (no dot) as a string.
    text = "data: {simulate: {count: 2}, num_inputs: 1, output_margin_um: 1.5}\ntraining: {steps: 5}\n"
    text += "optimizer: {learning_rate: 1e-4}\n"
    mapping = yaml.safe_load(text)
    assert mapping["optimizer"]["learning_rate"] == "1e-4"
    assert training_config_from_dict(mapping).optimizer.learning_rate == 1e-4


# --- Files and overrides ------------------------------------------------------


def test_yaml_and_json_files_give_the_same_config(tmp_path):
    mapping = minimal(output=str(tmp_path / "run"))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(mapping))
    (tmp_path / "a.json").write_text(json.dumps(mapping))
    from_yaml = load_training_config(tmp_path / "a.yaml")
    from_json = load_training_config(tmp_path / "a.json")
    assert from_yaml.to_dict() == from_json.to_dict()
    assert from_yaml.output == str(tmp_path / "run")


def test_overrides_and_output_replace_keys(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(minimal()))
    config = load_training_config(
        tmp_path / "a.yaml",
        overrides=["training.steps=100", "data.patch_size=[64, 32]", "loss.adversarial_weight=0",
                   "optimizer.schedule=cosine"],
        output=tmp_path / "elsewhere",
    )
    assert config.total_steps == 100
    assert config.data.patch_size == [64, 32]
    assert config.adversarial is False
    assert config.optimizer.schedule == "cosine"
    assert config.output == str(tmp_path / "elsewhere")


def test_parse_override():
    assert parse_override("data.simulate.count=4") == (["data", "simulate", "count"], 4)
    assert parse_override("validation=null") == (["validation"], None)
    assert apply_overrides({}, ["a.b.c=x"]) == {"a": {"b": {"c": "x"}}}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_override("training.steps")
    with pytest.raises(ValueError, match="not a section"):
        apply_overrides({"training": 5}, ["training.steps=3"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("data: [unclosed\n", "not valid YAML at line"),
        ("", "is empty"),
        ("- a\n- b\n", "must hold a mapping"),
    ],
)
def test_unreadable_files(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=expected):
        load_training_config(path)


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training config"):
        load_training_config(tmp_path / "nope.yaml")
    (tmp_path / "a.txt").write_text("training: {steps: 1}")
    with pytest.raises(ValueError, match=r"\.yaml, \.yml or \.json"):
        load_training_config(tmp_path / "a.txt")


# --- Errors: one line, naming the key and what is accepted -----------------------


def test_unknown_top_level_key_lists_the_sections():
    message = error_of(minimal(trainig={"steps": 3}))
    assert "unknown key 'trainig' at the top level" in message
    for section in ("output", "model", "discriminator", "data", "validation", "training", "optimizer", "loss"):
        assert section in message


def test_unknown_nested_key_lists_the_keys_of_its_section():
    mapping = minimal()
    mapping["data"]["patchsize"] = 64
    message = error_of(mapping)
    assert "unknown key 'patchsize' in data" in message
    assert "patch_size" in message and "num_inputs" in message and "input_spacing_um" in message


@pytest.mark.parametrize(
    "section, key, value, words",
    [
        ("data", "batch_size", "four", ["data.batch_size", "an integer >= 1", "'four'"]),
        ("data", "batch_size", 0, ["data.batch_size", "an integer >= 1"]),
        ("data", "order", "backwards", ["data.order", "'sorted', 'random', 'descending_dz'"]),
        ("data", "patch_size", [64], ["data.patch_size", "[height, width]"]),
        ("data", "augment", "yes", ["data.augment", "true or false"]),
        ("model", "class", "ResNet", ["model.class", "'RecurrentMZ', 'RecurrentMZPlus', 'DeepZ', 'UNet3D'"]),
        ("optimizer", "learning_rate", -1.0, ["optimizer.learning_rate", "a number > 0"]),
        ("optimizer", "learning_rate", "fast", ["optimizer.learning_rate", "a number > 0"]),
        ("optimizer", "schedule", "step", ["optimizer.schedule", "'constant', 'cosine'"]),
        ("loss", "adversarial_weight", -0.5, ["loss.adversarial_weight", "a number >= 0"]),
        ("training", "steps", 2.5, ["training.steps", "an integer >= 1"]),
    ],
)
def test_wrong_values_name_the_key_and_the_accepted_values(section, key, value, words):
    mapping = minimal()
    mapping.setdefault(section, {})[key] = value
    message = error_of(mapping)
    for word in words:
        assert word in message, message


def test_nested_simulate_values_are_checked():
    mapping = minimal()
    mapping["data"]["simulate"]["shape"] = [101, 256]
    assert "data.simulate.shape must be three integers >= 1 [Z, Y, X]" in error_of(mapping)
    mapping = minimal()
    mapping["data"]["simulate"]["sample"] = "cells"
    assert "data.simulate.sample must be one of 'beads', 'nuclei'" in error_of(mapping)


@pytest.mark.parametrize(
    "mapping, words",
    [
        ({"training": {"steps": 3}}, ["data needs exactly one source", "data.folder", "data.simulate", "neither"]),
        (
            {"data": {"folder": "x", "simulate": {"count": 2}, "num_inputs": 1, "output_margin_um": 1.0},
             "training": {"steps": 3}},
            ["data needs exactly one source", "both"],
        ),
        (minimal(training={}), ["training needs exactly one of steps", "neither"]),
        (minimal(training={"steps": 5, "epochs": 2}), ["training needs exactly one of steps", "both"]),
        (minimal(training={"epochs": 2}), ["training.epochs needs training.steps_per_epoch"]),
        (
            {"data": {"simulate": {"count": 2}, "num_inputs": 3}, "training": {"steps": 3}},
            ["data.input_spacing_um", "required when num_inputs > 1"],
        ),
        (
            {"data": {"simulate": {"count": 2}, "num_inputs": 1}, "training": {"steps": 3}},
            ["data.num_inputs=1 without input_spacing_um needs output_margin_um"],
        ),
        (
            minimal(data={"simulate": {"count": 4}, "num_inputs": 3, "input_spacing_um": 3.0,
                          "spacing_jitter_um": 1.5}),
            ["data.spacing_jitter_um must be smaller than input_spacing_um / 2"],
        ),
        (minimal(model={"class": "DeepZ"}), ["DeepZ takes one input image", "data.num_inputs"]),
        (minimal(model={"class": "UNet3D", "config": {"num_inputs": 2}}), ["must equal data.num_inputs (3)"]),
        (minimal(model={"init_preset": "p", "config": {"depth": 2}}), ["model.config must be empty"]),
        (minimal(optimizer={"warmup_steps": 10}), ["optimizer.warmup_steps (10)", "10 training steps"]),
        (
            minimal(optimizer={"learning_rate": 1e-4, "min_learning_rate": 1e-3}),
            ["optimizer.min_learning_rate", "must not exceed"],
        ),
        (minimal(validation={"simulate": {"seed": 2}}), ["overlap the training seeds 0..3"]),
        (
            minimal(validation={"folder": "a", "simulate": {"count": 1}}),
            ["validation takes one source"],
        ),
    ],
)
def test_conflicting_or_missing_keys(mapping, words):
    message = error_of(mapping)
    for word in words:
        assert word in message, message


def test_folder_data_needs_explicit_validation_or_null():
    data = {"folder": "stacks", "num_inputs": 3, "input_spacing_um": 3.0}
    message = error_of({"data": data, "training": {"steps": 3}})
    assert "validation.folder" in message and "validation: null" in message
    config = training_config_from_dict({"data": data, "training": {"steps": 3}, "validation": None})
    assert config.validation is None
    message = error_of({"data": data, "training": {"steps": 3}, "validation": {"folder": "stacks"}})
    assert "validation.folder is data.folder" in message


def test_patch_smaller_than_the_discriminator_accepts():
    mapping = minimal()
    mapping["data"]["patch_size"] = 16
    message = error_of(mapping)  # the paper's discriminator: 5 stride-2 blocks need 32 pixels
    assert "smaller than the discriminator accepts (32 pixels" in message
    mapping["discriminator"] = {"config": {"num_blocks": 2}}
    assert training_config_from_dict(mapping).data.patch_size == 16
    mapping = minimal(loss={"adversarial_weight": 0})
    mapping["data"]["patch_size"] = 16
    assert training_config_from_dict(mapping).adversarial is False


def _leaf_keys(section, prefix=""):
    """(dotted key, field or None for a section, default) of every key of a section dataclass."""
    for field in dataclasses.fields(section):
        key = config_lib._key(field)
        if key is None:
            continue
        nested = config_lib._kind(field)[0]
        if nested is not None:
            yield prefix + key, None, None
            yield from _leaf_keys(nested, prefix + key + ".")
        else:
            default = field.default_factory() if field.default is dataclasses.MISSING else field.default
            yield prefix + key, field, default


def test_the_docs_table_lists_every_key_with_its_default_and_what_it_accepts():
    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| `") and len(cells) == 4:
            rows[cells[0].strip("`")] = cells
    keys = list(_leaf_keys(TrainingConfig))
    assert sorted(rows) == sorted(key for key, _, _ in keys)
    for key, field, default in keys:
        _, shown_default, accepts, meaning = rows[key]
        assert meaning, key
        if field is None:
            continue
        assert accepts == config_lib.describe(field), key
        # A default that depends on other keys is written in words.
        if shown_default.startswith("`"):
            assert json.loads(shown_default.strip("`")) == default, key


def test_differences_names_changed_keys():
    a = training_config_from_dict(minimal())
    b = training_config_from_dict(minimal(training={"steps": 20}, loss={"berhu_weight": 2.0}))
    assert a.differences(b) == ["loss.berhu_weight", "training.steps", "training.steps_per_epoch"]
    assert a.differences(a.to_dict()) == []


EXAMPLES_DIR = pathlib.Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("**/*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_are_valid(path):
    config = load_training_config(path)
    assert config.output == f"runs/{path.stem}"
    assert config.total_steps >= config.steps_per_epoch
    assert config.validation is not None and config.preset.description


def test_the_presets_we_train_have_example_configs():
    names = {path.stem for path in EXAMPLES if path.parent.name == "configs"}
    assert names == {
        "recurrent_mz_beads_m3",
        "recurrent_mz_nuclei_m2",
        "recurrent_mz_plus_nuclei_m3",
        "deep_z_beads",
        "unet3d_beads",
    }
    plus = load_training_config(EXAMPLES_DIR / "configs" / "recurrent_mz_plus_nuclei_m3.yaml")
    assert plus.data.targets == "confocal" and plus.target_normalization == "own"
