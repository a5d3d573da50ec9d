"""Reuse of freed memory by glibc's malloc while keras_rmz computes on
PyTorch: opt in with ``KERAS_RMZ_REUSE_MEMORY=1`` (or ``with
reuse_freed_memory(True):``).

Eager PyTorch gives every intermediate result a new tensor. At RecurrentMZ's
full resolution these are tens of MB each (1024² × 20 channels × 4 bytes =
84 MB), above glibc malloc's mmap threshold (32 MB at most), so each one is
a fresh ``mmap`` whose pages the kernel faults in and zeroes on first touch,
and each ``free`` is an ``munmap``. The element-wise passes between the
convolutions then spend more time faulting pages than computing: an add of
two such tensors took 22 ms into a new tensor against 8 ms into an existing
one (``docs/performance.md``, session 9).

Measured: RecurrentMZ (M = 3, 1024²) on PyTorch ran 1.55× faster per plane
with it (3.91 → 2.52 s), with a 22 % higher peak resident memory (2.49 →
3.04 GB). TensorFlow and JAX manage their buffers themselves and gained
nothing.

``reuse_freed_memory()`` keeps large blocks on malloc's heap for the
duration of a ``with`` block (``mallopt(M_MMAP_MAX, 0)``) and keeps freed
memory there for reuse (``M_TRIM_THRESHOLD``); on leaving the outermost
block it sets both back to glibc's defaults and returns the free memory to
the operating system (``malloc_trim(0)``). This is what jemalloc or tcmalloc
(``LD_PRELOAD``) give PyTorch on a CPU, scoped to keras_rmz's own work.

It is opt-in because it changes a setting of the whole process, and one
that glibc cannot hand back entirely: setting ``M_TRIM_THRESHOLD`` at all
turns off glibc's dynamic adjustment of the mmap and trim thresholds for
the rest of the process (there is no ``mallopt`` that turns it back on).
``reconstruct`` runs under ``reuse_freed_memory("auto")``: on PyTorch, and
only when the environment variable ``KERAS_RMZ_REUSE_MEMORY`` is ``1`` (or
``true``, ``yes``, ``on``). It never acts where the C library is not glibc
or when the process already tunes malloc (``MALLOC_MMAP_MAX_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_`` or a ``glibc.malloc``
tunable in ``GLIBC_TUNABLES``), and ``KERAS_RMZ_REUSE_MEMORY=0`` turns it off
even for ``True``.
"""

import contextlib
import ctypes
import os
import threading

import keras

# mallopt parameters and glibc's defaults (malloc/malloc.c).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
GLIBC_DEFAULT_MMAP_MAX = 65536
GLIBC_DEFAULT_TRIM_THRESHOLD = 128 * 1024
# Free memory kept at the top of the heap while reusing (mallopt takes an int).
KEEP_FREE_BYTES = 2**31 - 1

ENVIRONMENT_SWITCH = "KERAS_RMZ_REUSE_MEMORY"
_USER_MALLOC_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
_OFF = ("0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")

_lock = threading.Lock()
_depth = 0
_libc = None


def glibc():
    """The process's glibc through ctypes, or None (another C library)."""
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL(None)
            libc.gnu_get_libc_version.restype = ctypes.c_char_p
            libc.gnu_get_libc_version()
            libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            libc.malloc_trim.argtypes = (ctypes.c_size_t,)
            _libc = libc
        except (OSError, AttributeError, TypeError):
            _libc = False
    return _libc or None


def user_tunes_malloc(environ=None):
    """True when the environment already sets glibc malloc's behaviour."""
    environ = os.environ if environ is None else environ
    if any(name in environ for name in _USER_MALLOC_SETTINGS):
        return True
    return "glibc.malloc" in environ.get("GLIBC_TUNABLES", "")


def wanted(enabled="auto", backend=None, environ=None):
    """Whether ``reuse_freed_memory(enabled)`` changes malloc's settings:
    ``"auto"`` on the PyTorch backend when ``KERAS_RMZ_REUSE_MEMORY=1``;
    ``True`` always; never when switched off by ``KERAS_RMZ_REUSE_MEMORY=0``
    or when the environment tunes malloc."""
    environ = os.environ if environ is None else environ
    if isinstance(enabled, bool):
        if not enabled:
            return False
    elif enabled != "auto":
        raise ValueError(f"enabled must be 'auto', True or False; got {enabled!r}")
    switch = environ.get(ENVIRONMENT_SWITCH, "").strip().lower()
    if switch in _OFF or user_tunes_malloc(environ):
        return False
    if enabled == "auto":
        return switch in _ON and (backend or keras.backend.backend()) == "torch"
    return True


@contextlib.contextmanager
def reuse_freed_memory(enabled="auto"):
    """Within the block, large freed blocks stay with malloc for reuse
    (see the module). Yields whether it took effect. Nested and concurrent
    blocks share one setting, restored when the last one ends.

    Example:

    ```python
    with reuse_freed_memory(True):    # large blocks reused (any backend)
        planes = model.predict_on_batch(batch)
    ```
    """
    global _depth
    libc = glibc() if wanted(enabled) else None
    if libc is None:
        yield False
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREE_BYTES)
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_MAX, GLIBC_DEFAULT_MMAP_MAX)
                libc.mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)
