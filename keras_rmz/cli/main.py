"""Entry point of the ``keras-rmz`` console script.

Each subcommand is a module of this package that defines
``add_parser(subparsers)`` (registers its arguments and sets ``func``) and is
listed in ``SUBCOMMANDS``. Errors a user can cause (bad arguments, missing
files, unknown presets) end in one line on stderr and a non-zero exit code,
never a traceback; ``--debug`` shows the traceback. The backends' own log
lines stay off the terminal unless ``--verbose`` (``keras_rmz.cli.quiet``).
Options are never abbreviated: ``--out`` is not taken for ``--output-z``.
"""

import argparse
import importlib
import os
import sys

from keras_rmz.cli.quiet import quiet_backend_logs
from keras_rmz.version import __version__

# Subcommand name -> module in keras_rmz.cli.
SUBCOMMANDS = {
    "demo": "keras_rmz.cli.demo",
    "simulate": "keras_rmz.cli.simulate",
    "train": "keras_rmz.cli.train",
    "finetune": "keras_rmz.cli.finetune",
    "reconstruct": "keras_rmz.cli.reconstruct",
    "evaluate": "keras_rmz.cli.evaluate",
    "presets": "keras_rmz.cli.presets",
    "export": "keras_rmz.cli.export",
}

# Exceptions that mean "the user asked for something that cannot be done"
# (ImportError: an optional extra that is not installed, named in the message).
USER_ERRORS = (ValueError, FileNotFoundError, KeyError, OSError, TypeError, ImportError)


class CommandParser(argparse.ArgumentParser):
    """The parser of ``keras-rmz`` and of each command (``add_subparsers``
    makes its children of the same class):

    - bad arguments are reported in one line on stderr (exit code 2)
      instead of argparse's usage block, so every error of the command line
      looks the same: ``keras-rmz COMMAND: error: ...``;
    - options are never abbreviated (``--out`` is not taken for ``--output-z``);
    - ``--verbose`` works before or after the command.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        # SUPPRESS: a command's parser must not reset `keras-rmz --verbose COMMAND`.
        self.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                          help="also show the deep-learning backend's own log lines (TensorFlow, absl, XLA)")

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = CommandParser(
        prog="keras-rmz",
        description="Recurrent-MZ: volumetric fluorescence microscopy from a few 2D scans.",
    )
    parser.add_argument("--version", action="version", version=f"keras-rmz {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with quiet_backend_logs(enabled=not getattr(args, "verbose", False)):
            result = args.func(args)
    except KeyboardInterrupt:
        print("keras-rmz: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`keras-rmz presets | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except USER_ERRORS as error:
        if args.debug:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"keras-rmz {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0 if result is None else int(result)


if __name__ == "__main__":
    sys.exit(main())
