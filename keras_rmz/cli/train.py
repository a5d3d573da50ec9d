"""``keras-rmz train``: train a model from a YAML/JSON config, resumably.

```
keras-rmz train examples/train_beads_m3.yaml
keras-rmz train examples/configs/recurrent_mz_beads_m3.yaml --max-minutes 50   # again to resume
```

The run itself (its folder, checkpoints, resuming, the preset it ends in)
is ``keras_rmz.training.train_from_config``; this module parses arguments.
"""

import argparse
import shlex

from keras_rmz.cli.arguments import positive_float as _positive_float
from keras_rmz.cli.arguments import positive_int as _positive_int

HELP = "train a model from a YAML/JSON config (resumable; writes a preset)"

DESCRIPTION = """\
Trains the model a config describes (see docs/training.md#command-line and
examples/train_beads_m3.yaml): RecurrentMZ, DeepZ or UNet3D, on a folder of
OME-TIFF stacks or on stacks simulated on the fly, with the paper's loss
(adversarial when loss.adversarial_weight > 0, else a plain fit), a CSV log,
checkpoints, the best weights on validation, and a preset folder
OUTPUT/preset/ at the end. Run the same command again after an interruption
and training resumes at the step it stopped."""

EPILOG = """\
examples:
  keras-rmz train examples/train_beads_m3.yaml
  keras-rmz train examples/configs/recurrent_mz_beads_m3.yaml --max-minutes 50
  keras-rmz train my.yaml --set training.steps=200 --set data.batch_size=2 -o runs/try
  keras-rmz train my.yaml --no-resume        # start over in the same folder"""

# --------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", metavar="CONFIG", help="training config (.yaml, .yml or .json)")
    parser.add_argument(
        "-o", "--output", metavar="DIR", help="run folder (replaces the config's output; default runs/<config name>)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set training.steps=200 --set data.patch_size=64 (value read as YAML)",
    )
    session = parser.add_argument_group("session")
    session.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue the run in the output folder where it stopped (default); --no-resume deletes its "
        "checkpoint, log and preset and starts over",
    )
    session.add_argument(
        "--max-minutes",
        type=_positive_float,
        metavar="N",
        help="stop cleanly before N minutes have passed (checkpoint saved; run again to resume)",
    )
    session.add_argument(
        "--max-steps",
        type=_positive_int,
        metavar="N",
        help="stop cleanly after N more training steps in this session (checkpoint saved; run again to resume)",
    )
    session.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def command_line(args):
    """The command, as a user would type it to repeat this run."""
    words = ["keras-rmz", "train", str(args.config)]
    if args.output:
        words += ["--output", str(args.output)]
    for item in args.set:
        words += ["--set", item]
    if not args.resume:
        words.append("--no-resume")
    if args.max_minutes:
        words += ["--max-minutes", f"{args.max_minutes:g}"]
    if args.max_steps:
        words += ["--max-steps", str(args.max_steps)]
    if args.quiet:
        words.append("--quiet")
    return shlex.join(words)


def run(args):
    from keras_rmz.training.config import load_training_config
    from keras_rmz.training.run import train_from_config

    config = load_training_config(args.config, overrides=args.set, output=args.output)
    result = train_from_config(
        config,
        command=command_line(args),
        resume=args.resume,
        max_minutes=args.max_minutes,
        max_steps=args.max_steps,
        verbose=0 if args.quiet else 1,
    )
    if result["state"] == "done":
        print(
            f"keras-rmz train: done, {result['steps_done']} steps; preset {result['preset']} "
            f"(load it with keras_rmz.presets.load_preset or --preset {result['preset']})"
        )
    else:
        print(
            f"keras-rmz train: stopped at step {result['steps_done']} of {result['total_steps']} "
            f"({result['stopped_by']}); checkpoint saved in {result['output']}. Run the same command again to resume."
        )
    return 0
