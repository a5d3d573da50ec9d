"""Attributes of a package imported on first use (PEP 562), so that
importing ``keras_rmz.models`` registers the built-in presets without
importing Keras and a backend."""

import importlib


def lazy_attributes(package, names):
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps each public
    name to the module that defines it."""

    def __getattr__(name):
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(names)

    return __getattr__, __dir__
