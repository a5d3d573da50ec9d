"""Fine-tune Recurrent-MZ on your own z-stacks and save the result as a preset.

```
python examples/finetune.py "my_stacks/*.ome.tif" --preset recurrent_mz_beads_m3 \
    --steps 2000 --out my_preset
keras-rmz reconstruct my_stacks/a.ome.tif --input-z 3 6 9 --output-z 0:10:0.1 \
    --preset my_preset -o recon.ome.tif
```

Each stack is a z-stack of the same sample type as you will reconstruct
(TIFF, OME-TIFF or an ImageJ hyperstack; pass --z-step / --pixel-size when the
files do not record them). Items are M planes Δz apart from one stack and a
target plane at another z of the same stack, normalized as the paper does.

Two recipes:

- ``fast`` (default, fine on a CPU): no discriminator, Adam 1e-4, the paper's
  content loss 3·BerHu + 1·(1 − MS-SSIM).
- ``paper``: the paper's GAN recipe (Adam 1e-5, adversarial weight 0.5, the
  paper's discriminator); patches of at least 32 pixels.

For long runs with checkpoints, validation and resuming, use
``keras-rmz train CONFIG`` (examples/train_beads_m3.yaml) instead.
"""

import argparse
import glob
import sys

import keras

import keras_rmz as rmz


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Fine-tune Recurrent-MZ on your z-stacks; save a preset.")
    parser.add_argument("stacks", help="glob of z-stack files, e.g. 'data/*.ome.tif' (quote it)")
    parser.add_argument("--preset", help="preset to start from (name, folder or hf://...); default: a new RecurrentMZ")
    parser.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    parser.add_argument("--out", required=True, help="folder of the new preset")
    parser.add_argument("--recipe", choices=("fast", "paper"), default="fast", help="fast (CPU) or paper (GAN)")
    parser.add_argument("--num-inputs", type=int, default=3, help="M, input planes per item (default 3)")
    parser.add_argument("--input-spacing", type=float, default=3.0, help="Δz between input planes, µm (default 3)")
    parser.add_argument("--patch-size", type=int, default=128, help="patch side in pixels (default 128)")
    parser.add_argument("--batch-size", type=int, default=2, help="items per step (default 2)")
    parser.add_argument("--z-step", type=float, help="z step (µm) for files that do not record it")
    parser.add_argument("--pixel-size", type=float, help="pixel size (µm) for files that do not record it")
    parser.add_argument("--seed", type=int, default=0, help="seed of the item draws and of a new model")
    return parser, parser.parse_args(argv)


def main(argv=None):
    parser, args = parse_args(argv)
    paths = sorted(glob.glob(args.stacks))
    if not paths:
        parser.error(f"no files match {args.stacks!r}")
    keras.utils.set_random_seed(args.seed)

    # 1. The stacks, with their physical sizes.
    stacks = [rmz.io.read_stack(path, z_step_um=args.z_step, pixel_um=args.pixel_size) for path in paths]

    # 2. The model: a preset's weights, or the paper's network from scratch.
    model = rmz.presets.load_preset(args.preset) if args.preset else rmz.RecurrentMZ()

    # 3. Training items: M planes Δz apart and a target plane, normalized.
    data = rmz.data.VolumeDataset(
        stacks,
        num_inputs=args.num_inputs,
        input_spacing_um=args.input_spacing,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        steps_per_epoch=args.steps,
        seed=args.seed,
    )

    # 4. Compile and fit.
    if args.recipe == "paper":
        from keras_rmz.models.discriminator import Discriminator

        trainer = rmz.training.AdversarialTrainer(model, Discriminator())
        trainer.compile()  # Adam 1e-5, 3·BerHu + 1·(1 − MS-SSIM) + 0.5·(D(ŷ) − 1)²
    else:
        trainer = model
        trainer.compile(
            optimizer=keras.optimizers.Adam(1e-4),
            loss=rmz.losses.RecurrentMZLoss(),
            metrics=[rmz.metrics.PSNR(), rmz.metrics.SSIM()],
        )
    history = trainer.fit(data, epochs=1)

    # 5. Save the preset: what a user needs to reconstruct with it.
    first = stacks[0]
    folder = rmz.presets.save_preset(
        model,
        args.out,
        metadata={
            "description": f"RecurrentMZ fine-tuned on {len(stacks)} stack(s) ({args.recipe} recipe)",
            "pixel_um": first.pixel_um,
            "z_step_um": first.z_step_um,
            "num_inputs": args.num_inputs,
            "input_spacing_um": args.input_spacing,
            "normalization": {"method": "paper"},
            "training": {
                "started_from": args.preset or "a new RecurrentMZ",
                "stacks": paths,
                "recipe": args.recipe,
                "steps": args.steps,
                "patch_size": args.patch_size,
                "batch_size": args.batch_size,
                "final_loss": float(history.history["loss"][-1]),
                "backend": keras.backend.backend(),
            },
        },
    )
    print(f"saved {folder}; load it with keras_rmz.presets.load_preset({str(folder)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
