"""Turns a finished training run into a shipped preset folder under weights/.

`keras-rmz train` writes `runs/<name>/preset/` (config, weights, metadata
with the exact commands, budget and versions). This script scores that
preset on held-out simulated volumes against the baselines, adds the scores
to its metadata, writes the model card (README.md) and saves the folder
atomically to `weights/<name>/` (sha256 of every file in metadata.json):

    python examples/presets/publish_preset.py recurrent_mz_beads_m3 \\
        --deep-z runs/deep_z_beads/preset --unet3d runs/unet3d_beads/preset
    python examples/presets/publish_preset.py deep_z_beads
    python examples/presets/publish_preset.py recurrent_mz_plus_nuclei_m3

Then register it (`keras-rmz presets entry weights/<name>`, pasted into
keras_rmz/models/<model>/<model>_presets.py) so that the name loads.

    python examples/presets/publish_preset.py --refresh-use-sections --docs

rewrites only the "Use" section of every shipped card (its sha256 in the
preset's metadata.json with it; weights untouched) and the cards in
docs/presets.md; then re-pin the registry entries the same way.

Scores (held-out seeds from 900000; the demo's convention: volumes
normalized by the noise-free truth, data range 1):
- bead presets: `examples/reproduce_paper.py`'s `compare_methods` (the
  paper's Fig. 3: Recurrent-MZ, Deep-Z from the nearest input, 3D U-Net,
  nearest input plane, linear interpolation; PSNR, NRMSE, SSIM, bead FWHM);
- nuclei presets: the model against the nearest input plane and linear
  interpolation, at the planes between the inputs (Recurrent-MZ+: against
  the confocal truth).
"""

import argparse
import importlib.util
import json
import pathlib
import sys

import numpy as np

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))


def _reproduce_module():
    spec = importlib.util.spec_from_file_location("reproduce_paper", REPOSITORY / "examples" / "reproduce_paper.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bead_metrics(model, deep_z=None, unet3d=None, volumes=3, shape=(101, 256, 256)):
    """The Fig. 3 table of ``compare_methods`` (Recurrent-MZ ``model`` with
    the baselines given)."""
    reproduce = _reproduce_module()
    result = reproduce.compare_methods(model, deep_z=deep_z, unet3d=unet3d, volumes=volumes, shape=shape, log=print)
    return {"held_out": result["setting"], "table": result["table"]}


# The paper-like simulator's niche of each sample: its stacks' shape.
NICHE_SHAPES = {"nuclei": (91, 256, 256), "beads": (101, 256, 256)}


def niche_metrics(model, metadata, sample="nuclei", volumes=3, shape=None, first_seed=900000, others=None,
                  niche_preset=None):
    """Model vs nearest input vs linear interpolation on held-out volumes of
    the paper-like simulator's ``sample`` (one microscope), at the planes
    strictly between the inputs; ``others`` (name -> model) are scored beside.
    ``niche_preset``: the one-microscope preset this simulator made (named
    on the card)."""
    from keras_rmz.simulate import simulate_stack

    confocal = "confocal" in (metadata.get("modality") or "").split("->")[-1]
    z_step = float(metadata["z_step_um"])
    shape = tuple(shape or NICHE_SHAPES[sample])

    def pair(seed):
        measured = simulate_stack(sample, "widefield", shape=shape, z_step_um=z_step, seed=seed)
        truth = simulate_stack(sample, "confocal" if confocal else "widefield", shape=shape, z_step_um=z_step,
                               seed=seed, noise=False)
        return measured, truth

    seeds = list(range(first_seed, first_seed + volumes))
    held = {"sample": sample, "truth": "confocal (noise-free)" if confocal else "wide-field (noise-free)",
            "shape": list(shape), "z_step_um": z_step, "niche_preset": niche_preset}
    return _held_out_metrics(model, metadata, pair, seeds, held, confocal, others=others)


def nuclei_metrics(model, metadata, volumes=3, shape=(91, 256, 256), first_seed=900000):
    """``niche_metrics`` of nuclei."""
    return niche_metrics(model, metadata, "nuclei", volumes, shape, first_seed)


def randomized_metrics(model, metadata, volumes=8, shape=(91, 256, 256), first_seed=900000, others=None):
    """The same scores on held-out stacks of the preset's randomization
    distribution (seeds the training and validation never used); ``others``
    (name -> model) are scored beside."""
    from keras_rmz.simulate import randomized_pair

    from keras_rmz.simulate import randomized_stack

    name = metadata["training"]["data"]["randomization"]["name"]
    confocal = "confocal" in (metadata.get("modality") or "").split("->")[-1]
    z_step = float(metadata["z_step_um"])
    seeds = list(range(first_seed, first_seed + volumes))
    held = {"sample": f"domain-randomized ({name})", "truth": f"{'confocal' if confocal else 'wide-field'} (noise-free)",
            "shape": list(shape), "z_step_um": z_step}

    def pair(seed):
        if not confocal:
            return randomized_pair(name, shape=shape, z_step_um=z_step, seed=seed)
        # The same seed: the same microscope and object, imaged wide-field and confocal.
        return (randomized_stack(name, "widefield", shape=shape, z_step_um=z_step, seed=seed),
                randomized_stack(name, "confocal", shape=shape, z_step_um=z_step, seed=seed, noise=False))

    return _held_out_metrics(model, metadata, pair, seeds, held, confocal, others=others)


def _held_out_metrics(model, metadata, pair, seeds, held, confocal=False, others=None):
    """Model, nearest input and linear interpolation at the planes strictly
    between M inputs the trained spacing apart, in the middle of each
    held-out stack ``pair(seed) -> (measured, truth)``; volumes normalized
    by the noise-free truth (data range 1)."""
    from keras_rmz import metrics
    from keras_rmz.data import compute_normalization
    from keras_rmz.evaluation import linear_interpolation
    from keras_rmz.evaluation.demo import default_input_z

    num_inputs = int(metadata["num_inputs"])
    spacing = float(metadata["input_spacing_um"])
    others = dict(others or {})
    scores = {"model": [], **{name: [] for name in others}, "nearest input plane": [], "linear interpolation": []}
    for seed in seeds:
        measured, truth_stack = pair(seed)
        z = measured.z
        input_z = default_input_z(z, num_inputs, spacing)
        index = [int(np.argmin(np.abs(z - v))) for v in input_z]
        images = measured.data[index].astype(np.float32)
        between = [k for k in range(len(z)) if input_z.min() < z[k] < input_z.max() and k not in index]
        # Every plane is reconstructed (the arrays below are indexed by plane)
        # but only those between the inputs are scored: the planes beyond the
        # trained output range are extrapolated, with a warning.
        volumes = {name: network.reconstruct(images, input_z, z, batch_size=8, verbose=False,
                                             pixel_um=measured.pixel_um, extrapolate=True)
                   for name, network in {"model": model, **others}.items()}
        norm = compute_normalization(truth_stack)
        truth = norm.apply(truth_stack.data.astype(np.float32))
        # A confocal truth has other counts than the wide-field inputs: compare
        # in normalized units. reconstruct() normalizes by the input planes'
        # statistics and returns the network's output in the inputs' counts,
        # so those statistics bring the model's output (and the baselines)
        # back to the normalized units the network was trained to match.
        in_norm = compute_normalization(images)
        to_truth = (in_norm if confocal else norm).apply
        candidates = {
            **{name: to_truth(volume.astype(np.float32)) for name, volume in volumes.items()},
            "nearest input plane": to_truth(images[np.argmin(np.abs(z[:, None] - input_z[None]), axis=1)]),
            "linear interpolation": to_truth(linear_interpolation(images, input_z, z)),
        }
        for name, candidate in candidates.items():
            scores[name].append([metrics.psnr(truth[k], candidate[k], data_range=1.0) for k in between])
        print(f"{held['sample']} seed {seed}: " + ", ".join(f"{k} {np.mean(v[-1]):.2f} dB" for k, v in scores.items()))
    table = {name: {"psnr_between_db": float(np.mean(values))} for name, values in scores.items()}
    return {"held_out": {**held, "num_inputs": num_inputs, "input_spacing_um": spacing, "seeds": seeds},
            "table": table}


def real_metrics(model, metadata, data=REPOSITORY.parent / "shared" / "data"):
    """Zero-shot scores on the real wide-field stacks beside the checkout
    (``keras-rmz finetune``'s held-out scoring on whole fields: every plane
    between M inputs the trained spacing apart, up to three windows over the
    depth; PSNR with the truth's peak-to-peak range). None when absent."""
    from keras_rmz.io import read_stack
    from keras_rmz.training.fine_tuning import HeldOutScorer, _Region, scoring_windows

    rows = {}
    for name in ("celegans_cy3_widefield_crop.tif", "celegans_fitc_widefield_crop.tif"):
        path = pathlib.Path(data) / name
        if not path.is_file():
            continue
        stack = read_stack(path)
        regions = [_Region(name, stack, None)]
        windows = scoring_windows(regions, int(metadata["num_inputs"]), float(metadata["input_spacing_um"]))
        scorer = HeldOutScorer(regions, windows, stack.pixel_um, precision="float32")
        rows[name] = {method: scorer.score(model if method == "model" else method)["psnr_db"]
                      for method in ("model", "linear interpolation", "nearest plane")}
        print(f"{name}: " + ", ".join(f"{k} {v:.2f} dB" for k, v in rows[name].items()))
    return rows or None


def _table_markdown(table):
    names = {"psnr_between_db": "PSNR between inputs (dB)", "psnr_span_db": "PSNR over the input span (dB)",
             "nrmse_between": "NRMSE between inputs", "ssim_between": "SSIM between inputs",
             "fwhm_mean_um": "bead FWHM (µm)", "fwhm_rel_error": "FWHM error vs truth", "fwhm_kl": "FWHM KL"}
    keys = [k for k in names if any(row.get(k) is not None for row in table.values())]
    lines = ["| method | " + " | ".join(names[k] for k in keys) + " |", "| --- |" + " ---: |" * len(keys)]
    for method, row in table.items():
        cells = []
        for key in keys:
            value = row.get(key)
            if value is None:
                cells.append("—")
            elif key == "fwhm_rel_error":
                cells.append(f"{100 * value:+.1f}%")
            else:
                cells.append(f"{value:.2f}" if "psnr" in key else f"{value:.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _elapsed_hours(sessions, recorded_seconds):
    """Hours from the first session's start to the end of the last one (a
    session killed with SIGKILL records no wall time of its own)."""
    import datetime

    try:
        first = datetime.datetime.fromisoformat(sessions[0]["started_utc"])
        last = datetime.datetime.fromisoformat(sessions[-1]["started_utc"])
        return ((last - first).total_seconds() + (sessions[-1]["wall_time_s"] or 0.0)) / 3600
    except (IndexError, KeyError, TypeError, ValueError):
        return recorded_seconds / 3600


def _summary(scores, class_short):
    """One honest sentence: the preset against the baselines (PSNR between inputs)."""
    table = scores["table"]
    own = {"RecurrentMZ": "Recurrent-MZ", "RecurrentMZPlus": "model", "DeepZ": "Deep-Z (nearest input)"}.get(
        class_short, "model")
    if own not in table:
        own = "model" if "model" in table else None
    if own is None or "psnr_between_db" not in table[own]:
        return None
    mine = table[own]["psnr_between_db"]
    parts = [f"{other}: {mine - row['psnr_between_db']:+.2f} dB" for other, row in table.items()
             if other != own and row.get("psnr_between_db") is not None]
    return (f"**Result**: {own} {mine:.2f} dB PSNR at the planes between the inputs; difference to "
            + "; ".join(parts) + ".")


def _recipe_differences(config, base_config=None):
    """The recipe's departures from the paper, read off the training config
    (and, for a fine-tuned preset, the config of the run it started from)."""
    first = base_config or config
    model = first["model"]["config"] or {}
    data = config["data"]
    adversarial = bool(config["loss"].get("adversarial_weight")) or bool(
        base_config and base_config["loss"].get("adversarial_weight"))
    parts = ["a slimmer network" if model.get("base_filters", 20) < 20 or model.get("depth", 4) < 4 else None,
             "no batch normalization" if model.get("use_batch_norm") is False else None,
             f"{model['activation'].replace('_', ' ')} activations" if model.get("activation") not in (None, "relu")
             else None,
             "output = nearest input plane + correction" if model.get("input_residual") else None,
             "small patches" if min(np.atleast_1d(data["patch_size"])) < 256 else None,
             "items normalized from their drawn planes only, as `reconstruct` normalizes at inference"
             if data.get("normalization_source") == "inputs" else None,
             "a higher learning rate with cosine decay",
             "noise-free targets" if (data.get("simulate") or {}).get("noise_free_targets") else None,
             "no discriminator" if not adversarial else None,
             "the discriminator only in a short fine-tuning after a plain fit" if base_config and adversarial
             else None]
    return ", ".join(part for part in parts if part)


def cards_markdown(weights=REPOSITORY / "weights"):
    """Every preset card in ``weights/`` (its README.md without the Hub's
    front matter), headings moved two levels down, for docs/presets.md."""
    cards = []
    # Recurrent-MZ presets first, then the baselines.
    readmes = sorted(pathlib.Path(weights).glob("*/README.md"),
                     key=lambda path: (not path.parent.name.startswith("recurrent_mz"), path.parent.name))
    for readme in readmes:
        text = readme.read_text(encoding="utf-8")
        if text.startswith("---\n"):
            text = text.split("\n---\n", 1)[1]
        lines = ["##" + line if line.startswith("#") else line for line in text.strip().splitlines()]
        cards.append("\n".join(lines))
    return "\n\n".join(cards) + "\n"


def update_docs_cards(docs=REPOSITORY / "docs" / "presets.md", weights=REPOSITORY / "weights"):
    """Rewrites the cards at the end of docs/presets.md (after the intro of
    "## Preset cards") from weights/*/README.md."""
    docs = pathlib.Path(docs)
    text = docs.read_text(encoding="utf-8")
    start = text.index("## Preset cards")
    first = text.find("\n### ", start)
    head = text if first < 0 else text[: first + 1]
    docs.write_text(head.rstrip("\n") + "\n\n" + cards_markdown(weights), encoding="utf-8")
    print(f"updated the preset cards in {docs}")


def _stage_recipe(config, training):
    """One stage's recipe in a sentence: model, patches, optimizer, loss."""
    model = config["model"]
    architecture = (f"fine-tuned from `{model['init_preset']}`" if model.get("init_preset")
                    else f"model {model['config'] or 'paper defaults'}")
    optimizer = config["optimizer"]
    schedule = (f"cosine, {optimizer['warmup_steps']} warm-up steps, down to {optimizer['min_learning_rate']:g}"
                if optimizer["schedule"] == "cosine" else f"constant, {optimizer['warmup_steps']} warm-up steps")
    loss = config["loss"]
    return (f"{architecture}, {config['data']['patch_size']} px patches, batch {config['data']['batch_size']}, Adam "
            f"{optimizer['learning_rate']:g} ({schedule}), loss {loss['berhu_weight']:g}·BerHu + "
            f"{loss['ms_ssim_weight']:g}·(1 − MS-SSIM)"
            + (f" + {loss['adversarial_weight']:g}·(D(ŷ) − 1)² against a discriminator" if training.get("adversarial")
               else ", no discriminator") + ".")


def _within(recipe, recorded):
    """Whether every key and value of a recipe's section is in the run's
    recorded config (which also holds the defaults)."""
    if isinstance(recipe, dict):
        return isinstance(recorded, dict) and all(k in recorded and _within(v, recorded[k]) for k, v in recipe.items())
    if isinstance(recipe, float) or isinstance(recorded, float):
        return isinstance(recorded, (int, float)) and np.isclose(float(recipe), float(recorded), rtol=1e-12, atol=0)
    return recipe == recorded


def _committed_recipe(config):
    """The recipe in examples/presets/ that a run's recorded ``config`` ran,
    for a run started from a scratch copy of it (its output folder and
    starting preset may differ); None unless exactly one matches."""
    import yaml

    matches = []
    for path in sorted((REPOSITORY / "examples" / "presets").glob("*.yaml")):
        recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        model = {k: v for k, v in (recipe.get("model") or {}).items() if k != "init_preset"}
        sections = {**{k: v for k, v in recipe.items() if k not in ("output", "preset", "model")}, "model": model}
        if all(_within(v, config.get(k)) for k, v in sections.items()):
            matches.append(path.relative_to(REPOSITORY).as_posix())
    return matches[0] if len(matches) == 1 else None


def _training_stages(training, recipe_path):
    """[(what, training record, recipe)] from the first run to the last: a
    fine-tuned preset lists the run it started from first."""
    stages = [("fine-tuning" if training.get("fine_tuned_from") else "training", training, recipe_path)]
    base = training.get("fine_tuned_from")
    while base and base.get("training"):
        earlier = base["training"]
        # The last session's config: earlier ones may have run a scratch copy.
        command = (earlier.get("commands") or [""])[-1].split()
        recipe = command[2] if len(command) > 2 and command[:2] == ["keras-rmz", "train"] else "?"
        if not (REPOSITORY / recipe).is_file():  # a scratch copy: name the committed recipe it ran
            recipe = _committed_recipe(earlier.get("config") or {}) or recipe
        stages.insert(0, ("fine-tuning" if earlier.get("fine_tuned_from") else "plain fit", earlier, recipe))
        base = earlier.get("fine_tuned_from")
    return stages


def _typical_request(metadata):
    """(input_z, output_z start, stop, step) of a typical use of the preset:
    a stack of the held-out volumes' z extent and step, M inputs the trained
    spacing apart centred in it (as ``keras-rmz demo`` takes them), output
    planes where ``output_z - input_z`` stays in the trained range for every
    input (``keras_rmz.out_of_distribution``)."""
    from keras_rmz.evaluation.demo import default_input_z

    held = (metadata.get("metrics") or {}).get("held_out") or {}
    simulated = ((metadata.get("training") or {}).get("config") or {}).get("data", {}).get("simulate") or {}
    step = round(float(held.get("z_step_um") or metadata["z_step_um"]), 6)
    planes = int((held.get("shape") or simulated["shape"])[0])
    z = np.round(np.arange(planes) * step, 6)
    num_inputs = int(metadata.get("num_inputs") or 1)
    input_z = np.round(default_input_z(z, num_inputs, float(metadata.get("input_spacing_um") or 0.0)), 6)
    low, high = metadata.get("output_range_um") or (-z[-1], z[-1])
    first = max(z[0], np.ceil(round((input_z.max() + low) / step, 6)) * step)
    last = min(z[-1], np.floor(round((input_z.min() + high) / step, 6)) * step)
    return [float(v) for v in input_z], round(float(first), 6), round(float(last), 6), step


def use_section(name, metadata):
    """The card's "Use" section: Python and command line, both runnable as
    they are on a stack ``stack.ome.tif`` (tests/test_docs.py runs them)."""
    class_short = metadata["class_name"].split(">", 1)[-1]
    input_z, first, last, step = _typical_request(metadata)
    pixel = metadata.get("pixel_um")
    inputs = ", ".join(f"{z:g}" for z in input_z) + ("," if len(input_z) == 1 else "")
    spacing = metadata.get("input_spacing_um")
    what = f"M = {len(input_z)} plane{'s' if len(input_z) > 1 else ''}" + (
        f", {spacing:g} µm apart" if spacing and len(input_z) > 1 else "")
    stop = f"{last + step / 10:.6g}"
    return [
        "## Use", "",
        "```python", "import numpy as np", "import keras_rmz", "",
        f'model = keras_rmz.{class_short}.from_preset("{name}")',
        f"stack = keras_rmz.io.read_stack(\"stack.ome.tif\")                 # z (µm) and pixel size ({pixel:g} µm) from the file",
        f"inputs = stack.select([int(np.argmin(abs(stack.z - z))) for z in ({inputs})])   # {what}",
        f"volume = model.reconstruct(inputs, output_z=np.arange({first:g}, {stop}, {step:g}))   # (K, H, W), the stack's units",
        "```", "",
        "```bash",
        f"keras-rmz reconstruct stack.ome.tif --preset {name} --input-z {' '.join(f'{z:g}' for z in input_z)} "
        f"--output-z {first:g}:{last:g}:{step:g} --pixel-um {pixel:g} -o volume.ome.tif",
        "```", "",
        f"`--pixel-um` (µm per pixel) is needed only when the file does not record it; the preset resamples other "
        f"pixel sizes to its {pixel:g} µm. Output planes beyond the trained range of `output_z - input_z` "
        f"({metadata.get('output_range_um')} µm) are refused (docs/inference.md).", "",
    ]


def refresh_use_sections(weights=REPOSITORY / "weights"):
    """Rewrites the "Use" section of every card in ``weights/*/README.md``
    from ``use_section`` and re-pins the card's sha256 in that preset's
    metadata.json; the weights, config and the rest of the card stay as they
    are. Returns the names of the presets changed (re-pin them in
    keras_rmz/models/<model>/<model>_presets.py: ``keras-rmz presets entry weights/NAME``)."""
    from keras_rmz.presets.preset_io import sha256_file, verify_preset

    changed = []
    for readme in sorted(pathlib.Path(weights).glob("*/README.md")):
        folder = readme.parent
        verify_preset(folder)
        metadata_path = folder / "metadata.json"
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        text = readme.read_text(encoding="utf-8")
        start = text.index("\n## Use\n") + 1
        end = text.index("\n## ", start + 1) + 1
        new_text = text[:start] + "\n".join(use_section(folder.name, metadata)) + "\n" + text[end:]
        if new_text == text:
            continue
        readme.write_text(new_text, encoding="utf-8")
        metadata["sha256"]["README.md"] = sha256_file(readme)
        metadata_path.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        verify_preset(folder)
        changed.append(folder.name)
    return changed


def model_card(name, metadata, recipe_path, scores):
    class_short = metadata["class_name"].split(">", 1)[-1]
    training = metadata["training"]
    config = training["config"]
    optics = metadata.get("optics") or {}
    held = scores["held_out"]
    summary = _summary(scores, class_short)
    randomization = training["data"].get("randomization")
    if randomization:
        na, emission = optics["na"], optics["emission_wavelength_um"]
        sample_row = f"| sample | domain-randomized ({randomization['name']}): {randomization['description']} |"
        objective_row = f"| objective | NA {na[0]:g}-{na[1]:g}, {', '.join(optics['immersion'])} immersion |"
        emission_row = f"| emission wavelength | {emission[0] * 1000:.0f}-{emission[1] * 1000:.0f} nm |"
        pixel_row = (f"| pixel size | {metadata.get('pixel_um')} µm (trained on stacks of "
                     f"{randomization['pixel_um'][1]:g}-{randomization['pixel_um'][2]:g} µm pixels resampled to it) |")
    else:
        sample_row = f"| sample | {metadata.get('sample')} |"
        objective_row = f"| objective | NA {optics.get('na')}, immersion n = {optics.get('n_immersion')} |"
        emission_row = f"| emission wavelength | {optics.get('wavelength_um') or optics.get('emission_wavelength_um')} µm |"
        pixel_row = f"| pixel size | {metadata.get('pixel_um')} µm |"
    lines = [
        "---", "library_name: keras", f"license: {metadata.get('license') or 'apache-2.0'}", "tags:",
        "- keras", "- keras-rmz", "- microscopy", "- fluorescence", "- recurrent-mz", "---", "",
        f"# {name}", "", metadata["description"], "",
        *use_section(name, metadata),
        "## Data it was made for", "",
        "| | |", "| --- | --- |",
        f"| modality | {metadata.get('modality')} |",
        sample_row,
        objective_row,
        emission_row,
        pixel_row,
        f"| z step of the training stacks | {metadata.get('z_step_um'):.3g} µm |",
        f"| inputs | M = {metadata.get('num_inputs')}"
        + (f", Δz = {metadata.get('input_spacing_um')} µm apart" if metadata.get("input_spacing_um") else "") + " |",
        f"| output planes | {metadata.get('output_range_um')} |",
        f"| parameters | {metadata['num_parameters']:,} |",
        "",
        "Intensities are normalized as in the paper (background 0, foreground ~1, from the inputs) and returned in "
        "the inputs' units; `reconstruct` does this for you.",
        "",
        *(_distribution_section(randomization) if randomization else []),
        "## Training", "",
        f"- **Data**: {training['data'].get('simulated', training['data'])} — keras_rmz's simulator "
        + ("with the microscope, sample and camera of every stack drawn from the distribution above (docs/"
           "simulation.md#domain-randomization)" if randomization else
           "(Gibson-Lanni wide-field PSF, Poisson and read noise)") + ", not measured stacks"
        + ("; this is the last stage's data, the earlier stages' are on their presets' cards."
           if training.get("fine_tuned_from") else "."),
    ]
    stages = _training_stages(training, recipe_path)
    base = training.get("fine_tuned_from")
    for number, (stage, stage_training, stage_recipe) in enumerate(stages, 1):
        stage_config = stage_training["config"]
        prefix = f"Stage {number}, {stage}" if len(stages) > 1 else "Recipe"
        sessions = stage_training.get("run_sessions")
        # Elapsed time needs the sessions' start times (run.json); without
        # them only the sum of the sessions' wall times is known.
        span = (f"{_elapsed_hours(sessions, stage_training['wall_time_s']):.2f} h from the first session's start to "
                "the end" if sessions else f"{stage_training['wall_time_s'] / 3600:.2f} h of training time")
        lines += [
            f"- **{prefix}**: `{stage_recipe}` — " + _stage_recipe(stage_config, stage_training)
            + f" **Budget**: {stage_training['steps']} steps ({stage_training['sessions']} "
            f"session{'s' if stage_training['sessions'] != 1 else ''}, about "
            f"{span}, on "
            f"{stage_training['machine']['cpu_count']} CPU cores shared with other work, {stage_training['backend']} "
            f"backend); weights: {stage_training['weights']}.",
        ]
    if base:
        lines.append(f"- **Total budget**: {sum(t['steps'] for _, t, _ in stages)} steps, about "
                     f"{sum(t['wall_time_s'] for _, t, _ in stages) / 3600:.2f} h of training time.")
    lines += [
        "- **Commands** to reproduce it (a run folder resumes where a session stopped, so a run may take several "
        "sessions; each session's command is in `metadata.json`"
        + ("; each stage starts from the preset of the one before" if base else "") + "):",
        "",
        "```",
        *[f"KERAS_BACKEND={t['backend']} keras-rmz train {recipe}" for _, t, recipe in stages],
        "```",
        "",
        "Differences from the paper's recipe (Adam 1e-5 for days on a GPU, 256 px patches, adversarial loss): "
        # Against the first stage's config: the architecture is fixed there.
        + _recipe_differences(config, stages[0][1]["config"] if len(stages) > 1 else None)
        + ", so that training fits hours on a CPU.",
        "",
        "## Metrics on held-out simulated volumes", "",
        f"Held out: {json.dumps({k: v for k, v in held.items() if k in ('shape', 'z_step_um', 'input_z_um', 'seeds', 'sample', 'truth', 'num_inputs', 'input_spacing_um')})}. "
        "Volumes normalized by the noise-free truth (data range 1), as `keras-rmz demo` scores.",
        "",
        _table_markdown(scores["table"]),
        "",
        *([summary, ""] if summary else []),
    ]
    for sample, optics_text in (("nuclei", "NA 1.4 oil, 519 nm"), ("beads", "NA 1.4 oil, 615 nm, 0.1 µm pixels")):
        if not scores.get(sample):
            continue
        held = scores[sample]["held_out"]
        niche = held.get("niche_preset") or "recurrent_mz_nuclei_m2"
        beside = ", which is scored beside it" if niche in scores[sample]["table"] else ""
        lines += [
            f"On the paper-like {sample} simulator (one microscope: {optics_text}; seeds {held['seeds']}), the "
            f"niche of `{niche}`{beside}:", "", _table_markdown(scores[sample]["table"]), "",
        ]
    if scores.get("real"):
        lines += [
            "## Metrics on real stacks (not trained on)", "",
            "The C. elegans wide-field stacks of the project's test data (../shared/data; 0.0645 µm pixels, "
            "resampled to the preset's), whole fields, every plane between M inputs the trained spacing apart in "
            "three windows over the depth, as `keras-rmz finetune` scores its held-out part (PSNR with the "
            "measured plane's peak-to-peak range):", "",
            "| stack | model | linear interpolation | nearest plane |", "| --- | ---: | ---: | ---: |",
            *[f"| {stack} | {row['model']:.2f} dB ({row['model'] - row['linear interpolation']:+.2f}) | "
              f"{row['linear interpolation']:.2f} dB | {row['nearest plane']:.2f} dB |"
              for stack, row in scores["real"].items()],
            "", "Fine-tuning on the user's own stack is what closes the gap: docs/finetuning.md.", "",
        ]
    lines += [
        "## Limitations", "",
        ("Trained on simulated stacks only, with the ranges of optics above: a microscope, sample or camera outside "
         "them, or other z spacings, need fine-tuning (docs/finetuning.md)." if randomization else
         "Trained on simulated stacks only, with the optics above: other objectives, wavelengths, pixel sizes or "
         "z spacings need fine-tuning (docs/training.md).")
        + " The CPU budget is far below the paper's; see "
        "docs/reproduction.md for where results agree with the paper and where they do not.", "",
        "## Files", "",
        "`config.json` (architecture), `model.weights.h5` (weights), `metadata.json` (what the model was made for, "
        "training, metrics, versions, sha256 of the other files), `README.md` (this card).", "",
    ]
    return "\n".join(lines)


def _distribution_section(randomization):
    """The card's table of the training distribution (``describe_distribution``)."""
    def span(spec):
        # metadata.json holds the distribution as JSON: a range (low, high) or
        # ("log", low, high) and a choice [a, b] are all lists there.
        if isinstance(spec, str):
            return spec
        if spec[0] != "log" and all(isinstance(v, str) for v in spec):
            return " or ".join(spec)
        low, high = spec[-2:]
        return f"{low:g}-{high:g}" + (" (log-uniform)" if spec[0] == "log" else "")

    samples = "; ".join(
        f"{kind} {entry['weight']:.0%} (density {span(entry['density_per_um3'])}"
        + "".join(f", {key} {span(value)}" for key, value in (entry.get("options") or {}).items()) + ")"
        for kind, entry in randomization["samples"].items())
    immersion = "; ".join(f"{kind} {entry['weight']:.0%} (n {entry['n_immersion']}, NA {span(entry['na'])}, sample n "
                          f"{span(entry['n_sample'])})" for kind, entry in randomization["immersion"].items())
    rows = [("samples", samples), ("immersion", immersion)] + [
        (key.replace("_", " "), span(randomization[key]))
        for key in ("emission_wavelength_um", "stokes_shift_um", "depth_um", "pixel_um", "haze_fraction",
                    "axial_margin_um", "illumination", "bleaching", "brightness", "background_photons",
                    "offset_counts", "gain_counts_per_photon", "read_noise_counts")]
    return [f"## Training distribution: `{randomization['name']}`", "",
            "Each training stack draws these independently (keras_rmz.simulate.randomized_stack; docs/simulation.md):",
            "", "| parameter | range |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows], ""]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="preset name: reads runs/NAME/preset, writes weights/NAME")
    parser.add_argument("--run", default=None, help="preset folder of the run (default runs/NAME/preset)")
    parser.add_argument("--out", default=None, help="destination (default weights/NAME)")
    parser.add_argument("--recipe", default=None,
                        help="the run's training config, named in the card (default examples/presets/NAME.yaml)")
    parser.add_argument("--deep-z", default=None, help="Deep-Z preset folder to compare with (bead presets)")
    parser.add_argument("--unet3d", default=None, help="3D U-Net preset folder to compare with (bead presets)")
    parser.add_argument("--volumes", type=int, default=3, help="held-out volumes (default 3)")
    parser.add_argument("--scores", default=None,
                        help="reuse the scores another preset's publication saved (runs/NAME/scores.json), e.g. "
                             "the Fig. 3 table for the baselines")
    parser.add_argument("--docs", action="store_true",
                        help="then rewrite the preset cards in docs/presets.md from weights/*/README.md")
    parser.add_argument("--refresh-use-sections", action="store_true",
                        help="instead: rewrite only the \"Use\" section of every weights/*/README.md (and its sha256 "
                             "in metadata.json), then re-pin the registry with `keras-rmz presets entry`")
    args = parser.parse_args(argv)
    if args.refresh_use_sections:
        changed = refresh_use_sections()
        print("updated the Use section of " + (", ".join(changed) or "no card"))
        if args.docs:
            update_docs_cards()
        return
    if args.name is None:
        parser.error("the preset name is required")

    from keras_rmz.presets import load_preset, save_preset
    from keras_rmz.presets.preset_io import COMPUTED_FIELDS

    source = pathlib.Path(args.run or REPOSITORY / "runs" / args.name / "preset")
    destination = pathlib.Path(args.out or REPOSITORY / "weights" / args.name)
    model = load_preset(str(source))
    metadata = json.loads((source / "metadata.json").read_text(encoding="utf-8"))
    if args.scores:
        scores = json.loads(pathlib.Path(args.scores).read_text(encoding="utf-8"))
    elif (metadata.get("training") or {}).get("data", {}).get("randomization"):
        randomization = metadata["training"]["data"]["randomization"]
        confocal = "confocal" in (metadata.get("modality") or "").split("->")[-1]
        beads = all(kind.startswith("beads") for kind in randomization["samples"])
        # A bead or Recurrent-MZ+ preset is scored beside the one-microscope preset it started from, on the
        # randomized stacks and on that preset's niche (the real stacks have no confocal truth).
        niche = "recurrent_mz_beads_m3" if beads else "recurrent_mz_plus_nuclei_m3" if confocal else None
        others = {niche: load_preset(niche)} if niche else None
        scores = randomized_metrics(model, metadata, volumes=max(args.volumes, 8), others=others)
        if niche:
            scores["beads" if beads else "nuclei"] = niche_metrics(
                model, metadata, "beads" if beads else "nuclei", volumes=args.volumes, others=others,
                niche_preset=niche)
        else:
            scores["nuclei"] = nuclei_metrics(model, metadata, volumes=args.volumes)
            scores["real"] = real_metrics(model, metadata)
    elif "beads" in (metadata.get("sample") or ""):
        scores = bead_metrics(
            model,
            deep_z=load_preset(args.deep_z) if args.deep_z else None,
            unet3d=load_preset(args.unet3d) if args.unet3d else None,
            volumes=args.volumes,
        )
    else:
        scores = nuclei_metrics(model, metadata, volumes=args.volumes)
    (source.parent / "scores.json").write_text(json.dumps(scores, indent=1, default=float), encoding="utf-8")
    kept = {k: v for k, v in metadata.items() if k not in COMPUTED_FIELDS}
    kept["metrics"] = json.loads(json.dumps(scores, default=float))
    recipe = args.recipe or f"examples/presets/{args.name}.yaml"
    run_file = source.parent / "run.json"
    if run_file.is_file():
        kept["training"] = {**kept["training"],
                            "run_sessions": json.loads(run_file.read_text(encoding="utf-8"))["sessions"]}
    card = model_card(args.name, {**metadata, **kept}, recipe, scores)
    save_preset(model, destination, metadata=kept, model_card=card)
    print(_table_markdown(scores["table"]))
    print(f"wrote {destination}")
    if args.docs:
        update_docs_cards()


if __name__ == "__main__":
    main()
