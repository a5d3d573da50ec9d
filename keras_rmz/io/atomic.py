"""Atomic writes for every file the package writes (stacks, figures, CSV
tables, checkpoints, run records).

A file is written under a hidden temporary name in its own folder,
``.<name>.<pid>.<random>.tmp[<suffix>]``, and moved over the target with one
``os.replace``: a reader never sees a half-written file, and an interrupted
write (an exception, Ctrl-C) leaves the old file and no temporary. A process
killed outright (SIGKILL, power loss) cannot clean up, so the next write to
the same target removes the temporaries that processes which no longer run
left for it (`remove_stale`): a killed ``write_stack`` of a 1.5 GB volume
leaves no hidden 1.5 GB file behind for long.

On a folder shared by several machines a process id says nothing about
another machine's processes; there, a temporary of a live writer elsewhere
could be removed, which makes that write fail with an error (the target file
is never touched).

Example:

```python
from keras_rmz.io.atomic import atomic_write, write_json

with atomic_write("runs/a/checkpoint.h5") as temporary:
    with h5py.File(temporary, "w") as handle:
        ...
write_json("runs/a/run.json", {"state": "done"})
```
"""

import contextlib
import json
import os
import pathlib
import re
import shutil
import uuid


def process_running(pid):
    """Whether process ``pid`` runs on this machine (signal 0: nothing is sent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale(path):
    """Removes the temporaries of ``path`` that processes which no longer run
    left beside it; returns the paths removed."""
    path = pathlib.Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]{{8}}\.tmp")
    removed = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.iterdir():
        match = pattern.match(candidate.name)
        if match and int(match.group(1)) != os.getpid() and not process_running(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                if candidate.is_dir() and not candidate.is_symlink():
                    shutil.rmtree(candidate)
                else:
                    candidate.unlink()
                removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_write(path, suffix=""):
    """Yields a temporary path beside ``path`` to write the file to; when the
    block ends without an error the temporary replaces ``path``, otherwise
    it is removed. The folder is created when missing.

    Args:
        path: the file to write.
        suffix: how the temporary's name must end, for writers that insist
            (Keras's ``save_weights`` wants ``.weights.h5``).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
    # Created here with the user's umask (tempfile.mkstemp would give 0600).
    with open(temporary, "xb"):
        pass
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a new, empty temporary folder beside ``path`` to write a folder
    store into (OME-Zarr); when the block ends without an error it takes the
    place of ``path``, otherwise it is removed.

    A folder cannot be swapped with one ``os.replace``: an existing ``path``
    is first renamed to a hidden temporary name, the new folder renamed into
    place, then the old one removed. A reader sees the old folder or the new
    one, never a half-written one; a process killed between the two renames
    leaves the old folder under its hidden name (the next write to ``path``
    removes it, `remove_stale`).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    temporary.mkdir()
    try:
        yield temporary
        old = None
        if path.exists() or path.is_symlink():
            old = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            os.replace(path, old)
        try:
            os.replace(temporary, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def check_writable(path, what="the output"):
    """Raises ``PermissionError`` (naming ``what``, the path and the reason)
    when no file could be written at ``path``, found by creating and
    removing a probe file in the nearest existing folder above it: it works
    for read-only mounts and for root as well, where ``os.access`` says yes.
    Call it before long work whose result goes to ``path``."""
    path = pathlib.Path(path).absolute()
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    probe = folder / f".keras-rmz-probe.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as error:
        raise PermissionError(
            f"cannot write {what} {str(path)!r}: the folder {folder} is not writable ({error.strerror or error}); "
            "choose another place"
        ) from None


def write_text(path, text):
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path) as temporary:
        temporary.write_text(text, encoding="utf-8", newline="")


def _json_default(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def write_json(path, value):
    """Writes ``value`` as indented JSON to ``path`` atomically (numpy values
    and paths as their plain equivalents)."""
    write_text(path, json.dumps(value, indent=2, ensure_ascii=False, default=_json_default) + "\n")
