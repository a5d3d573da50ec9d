"""``keras-rmz finetune``: a preset fine-tuned on your own z-stacks, with a
held-out report (``keras_rmz.training.finetune``).

Example:

```
keras-rmz finetune embryo.ome.tif --preset recurrent_mz_nuclei_m2 -o my_preset/
```
"""

import argparse

from keras_rmz.cli.arguments import add_precision_argument, positive_float, positive_int, positive_um

HELP = "fine-tune a preset on your own z-stacks; writes a new preset with a held-out report"

DESCRIPTION = """\
Fine-tunes --preset on the full z-stacks STACK (the sample you will
reconstruct, imaged on your microscope) and writes the result as a preset
folder. Part of the data is held out (a lateral region of each stack, or whole
stacks when several are given) and never trained on: the starting preset, the
fine-tuned model, linear interpolation and the nearest input plane are scored
there, at the planes between M inputs Δz apart, and the best weights on it are
kept. If training did not beat the starting preset, its weights are kept and
the report says so. The folder's README.md holds the table and two figures
(figures/). An interrupted run resumes when the same command is run again."""

EPILOG = """\
examples:
  keras-rmz finetune embryo.ome.tif --preset recurrent_mz_nuclei_m2 -o my_preset/
  keras-rmz finetune a.tif b.tif c.tif --pixel-um 0.065 --z-step 0.16 \\
      --preset recurrent_mz_nuclei_m2 --minutes 20 -o my_preset/
  keras-rmz reconstruct new_stack.tif --input-planes 10 47 --output-z 1.6:7.5:0.16 \\
      --preset my_preset/ -o volume.ome.tif"""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "finetune", help=HELP, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stacks", nargs="+", metavar="STACK", help="full z-stacks (TIFF / OME-TIFF / ImageJ)")
    parser.add_argument("--preset", required=True, metavar="NAME|DIR|hf://OWNER/REPO[@REV]",
                        help="preset to start from (a RecurrentMZ, or a RecurrentMZPlus with --targets)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder of the new preset")
    parser.add_argument("--targets", nargs="+", metavar="TARGET",
                        help="paired target stacks (e.g. confocal), one per STACK, same shape and z")
    budget = parser.add_argument_group("budget (default: 7 minutes of training, about 8 in all on a 2-core CPU)")
    budget.add_argument("--minutes", type=positive_float, metavar="N", help="training wall time (scoring not counted)")
    budget.add_argument("--steps", type=positive_int, metavar="N", help="training steps; with --minutes, whichever ends first")
    data = parser.add_argument_group("data")
    data.add_argument("--pixel-um", type=positive_um, metavar="UM",
                      help="lateral pixel size (µm), for files that do not record it (or to override it)")
    data.add_argument("--z-step", type=positive_um, metavar="UM", help="z step (µm), for files that do not record it")
    data.add_argument("--num-inputs", type=positive_int, metavar="M", help="input planes per reconstruction (default: the preset's)")
    data.add_argument("--input-spacing", type=positive_um, metavar="UM", help="Δz between inputs, µm (default: the preset's)")
    data.add_argument("--holdout", choices=("auto", "region", "stacks"), default="auto",
                      help="held-out part: a lateral region of each stack, or whole stacks (auto: stacks when several)")
    data.add_argument("--holdout-fraction", type=positive_float, default=0.5, metavar="F",
                      help="share held out (of the longer lateral axis, or of the stacks; default 0.5)")
    recipe = parser.add_argument_group("recipe")
    recipe.add_argument("--patch-size", type=positive_int, default=64, metavar="P", help="training patch side (default 64)")
    recipe.add_argument("--batch-size", type=positive_int, default=8, metavar="B", help="patches per step (default 8)")
    recipe.add_argument("--learning-rate", type=positive_float, default=3e-4, metavar="LR",
                        help="peak Adam learning rate, warm-up then cosine decay (default 3e-4)")
    recipe.add_argument("--eval-every", type=positive_int, default=200, metavar="N",
                        help="steps between held-out scores (default 200)")
    recipe.add_argument("--ema", type=float, default=None, metavar="MOMENTUM",
                        help="moving average of the weights, scored and kept (default 0.99; 0: none)")
    recipe.add_argument("--ms-ssim-weight", type=float, default=None, metavar="W",
                        help="weight of 1 − MS-SSIM beside 3·BerHu in the loss (default 0; the paper's 1)")
    recipe.add_argument("--seed", type=int, default=0, help="seed of the training draws (default 0)")
    add_precision_argument(recipe, what="training and the held-out scoring compute")
    recipe.add_argument("--distribution", choices=("data_parallel",),
                        help="train with keras.distribution.DataParallel over every device (JAX only; --batch-size a "
                        "multiple of the device count)")
    parser.add_argument("--overwrite", action="store_true", help="replace a preset already in --output")
    parser.add_argument("--restart", action="store_true", help="start over instead of resuming an interrupted run")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(func=run)
    return parser


def run(args):
    from keras_rmz.training.fine_tuning import DEFAULT_EMA, DEFAULT_MS_SSIM_WEIGHT, finetune

    result = finetune(
        args.stacks, args.preset, args.output, targets=args.targets, minutes=args.minutes, steps=args.steps,
        holdout=args.holdout, holdout_fraction=args.holdout_fraction, num_inputs=args.num_inputs,
        input_spacing_um=args.input_spacing, pixel_um=args.pixel_um, z_step_um=args.z_step,
        patch_size=args.patch_size, batch_size=args.batch_size, learning_rate=args.learning_rate,
        eval_every=args.eval_every, ema=DEFAULT_EMA if args.ema is None else args.ema,
        ms_ssim_weight=DEFAULT_MS_SSIM_WEIGHT if args.ms_ssim_weight is None else args.ms_ssim_weight,
        precision=args.precision, distribution=args.distribution, overwrite=args.overwrite,
        resume=not args.restart, seed=args.seed, verbose=0 if args.quiet else 1,
    )
    return 0 if result is not None else 1
