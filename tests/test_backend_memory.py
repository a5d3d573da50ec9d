"""keras_rmz.backend.memory: large blocks stay on glibc's heap inside the block,
glibc's defaults come back after it. Checked with glibc's own accounting
(mallinfo2: bytes in mmapped chunks) and the process's resident pages, not
with timings."""

import contextlib
import ctypes
import os

import numpy as np
import pytest

from keras_rmz.backend import memory

BLOCK = 64 * 2**20  # above glibc's largest mmap threshold (32 MB)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc():
    libc = memory.glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    return libc


def _mmapped_by_malloc(libc):
    """Whether a large malloc gets its own mmap right now. The size exceeds
    all free heap memory, so no free chunk left by earlier work can serve it."""
    info = libc.mallinfo2()
    size, before = BLOCK + info.fordblks, info.hblkhd
    pointer = libc.malloc(size)
    assert pointer
    try:
        return libc.mallinfo2().hblkhd - before >= size
    finally:
        libc.free(pointer)


@pytest.fixture
def clean_environment(monkeypatch):
    for name in (memory.ENVIRONMENT_SWITCH, "GLIBC_TUNABLES", *memory._USER_MALLOC_SETTINGS):
        monkeypatch.delenv(name, raising=False)


def test_large_blocks_stay_on_the_heap_inside_and_are_mmapped_again_after(clean_environment):
    libc = _libc()
    assert _mmapped_by_malloc(libc)
    with memory.reuse_freed_memory(True) as active:
        assert active
        assert not _mmapped_by_malloc(libc)
    assert _mmapped_by_malloc(libc)


def _resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_freed_memory_is_kept_inside_and_returned_after(clean_environment):
    libc = _libc()
    with memory.reuse_freed_memory(True):
        pointer = libc.malloc(BLOCK)
        ctypes.memset(pointer, 1, BLOCK)  # resident
        touched = _resident_bytes()
        libc.free(pointer)
        kept = _resident_bytes()
        assert kept > touched - BLOCK // 2  # freed, but still resident for reuse
    assert _resident_bytes() < kept - BLOCK // 2  # malloc_trim gave it back


def test_nested_blocks_keep_the_setting_until_the_outermost_ends(clean_environment):
    libc = _libc()
    with memory.reuse_freed_memory(True):
        with memory.reuse_freed_memory(True):
            pass
        assert not _mmapped_by_malloc(libc)
    assert _mmapped_by_malloc(libc)


def test_restored_after_an_exception(clean_environment):
    libc = _libc()
    with contextlib.suppress(RuntimeError):
        with memory.reuse_freed_memory(True):
            raise RuntimeError("boom")
    assert _mmapped_by_malloc(libc)


def test_off_switches_leave_malloc_alone(clean_environment, monkeypatch):
    libc = _libc()
    with memory.reuse_freed_memory(False) as active:
        assert not active and _mmapped_by_malloc(libc)
    monkeypatch.setenv(memory.ENVIRONMENT_SWITCH, "0")
    with memory.reuse_freed_memory(True) as active:
        assert not active and _mmapped_by_malloc(libc)


def test_auto_is_opt_in_for_torch_only_and_respects_the_users_malloc_settings():
    on = {"KERAS_RMZ_REUSE_MEMORY": "1"}
    assert not memory.wanted("auto", backend="torch", environ={})  # opt-in
    assert memory.wanted("auto", backend="torch", environ=on)
    assert memory.wanted("auto", backend="torch", environ={"KERAS_RMZ_REUSE_MEMORY": "yes"})
    assert not memory.wanted("auto", backend="tensorflow", environ=on)
    assert not memory.wanted("auto", backend="jax", environ=on)
    assert memory.wanted(True, backend="jax", environ={})
    assert not memory.wanted(False, backend="torch", environ={})
    for environ in ({"KERAS_RMZ_REUSE_MEMORY": "0"}, {"KERAS_RMZ_REUSE_MEMORY": "off"},
                    {"MALLOC_MMAP_MAX_": "0"}, {"MALLOC_TRIM_THRESHOLD_": "1"},
                    {"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"}):
        assert not memory.wanted(True, backend="torch", environ=environ), environ
    assert memory.wanted("auto", backend="torch", environ={**on, "GLIBC_TUNABLES": "glibc.rtld.nns=2"})
    with pytest.raises(ValueError, match="'auto', True or False"):
        memory.wanted("yes", backend="torch", environ={})


def test_reconstruct_runs_under_it(monkeypatch):
    from keras_rmz import inference
    from keras_rmz.models import DeepZ

    calls = []

    @contextlib.contextmanager
    def recording(enabled="auto"):
        calls.append(enabled)
        yield False

    monkeypatch.setattr(inference, "reuse_freed_memory", recording)
    model = DeepZ(base_filters=4, depth=1)
    images = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    model.reconstruct(images, input_z=[0.0], output_z=[0.0, 1.0], normalize=None, verbose=False)
    assert calls == ["auto"]
