"""Atomic writes (keras_rmz.io.atomic): all or nothing, and no temporary left
behind, not even by a writer that was killed."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from keras_rmz.io.atomic import atomic_write, remove_stale, write_json, write_text


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_finished_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.json"  # the folder is made on demand
    write_json(path, {"step": 1})
    write_json(path, {"step": 2})
    assert path.read_text() == '{\n  "step": 2\n}\n'
    assert _hidden(path.parent) == []


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_write(path) as temporary:
            temporary.write_text("half a fi")
            raise RuntimeError("disk on fire")
    assert path.read_text() == "old" and _hidden(tmp_path) == []


def test_the_temporary_ends_as_the_writer_needs_and_has_the_umask_permissions(tmp_path):
    with atomic_write(tmp_path / "best.weights.h5", suffix=".weights.h5") as temporary:
        assert temporary.name.endswith(".tmp.weights.h5") and temporary.parent == tmp_path
        mode = os.stat(temporary).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    path = tmp_path / "volume.ome.tif"
    script = textwrap.dedent(f"""
        import os, time
        from keras_rmz.io.atomic import atomic_write
        with atomic_write({str(path)!r}) as temporary:
            temporary.write_bytes(b"x" * 1000)
            print(temporary, flush=True)
            time.sleep(60)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    left = writer.stdout.readline().strip()
    # A live writer's temporary is not touched.
    assert remove_stale(path) == [] and os.path.exists(left)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert os.path.exists(left) and not path.exists()
    write_text(path, "new")
    assert path.read_text() == "new" and _hidden(tmp_path) == []


def test_only_temporaries_of_the_same_target_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    mine = tmp_path / f".a.txt.{dead}.0123abcd.tmp"
    other = tmp_path / f".b.txt.{dead}.0123abcd.tmp"
    unrelated = tmp_path / ".a.txt.notes"
    for p in (mine, other, unrelated):
        p.write_text("x")
    assert remove_stale(tmp_path / "a.txt") == [mine]
    assert _hidden(tmp_path) == sorted([other.name, unrelated.name])
