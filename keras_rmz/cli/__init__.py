"""The ``keras-rmz`` command line. Each subcommand lives in its own module
with ``add_parser(subparsers)`` and ``run(args)``."""
