"""glibc's malloc kept from trimming freed memory (monokd.training.allocator): the mallopt
calls made, the opt-out, and, on glibc, no page faults when freed buffers are allocated
again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from monokd.training import allocator


class FakeLibc:
    def __init__(self, answer: int = 1):
        self.calls, self.answer = [], answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


def test_sets_the_mmap_threshold_to_its_maximum_and_the_trim_threshold(monkeypatch):
    monkeypatch.delenv("MONOKD_MALLOC", raising=False)
    libc = FakeLibc()
    assert allocator.keep_freed_memory(trim_mib=512, libc=libc) is True
    assert libc.calls == [(-3, 32 * 1024 * 1024), (-1, 512 * 1024 * 1024)]
    assert allocator.keep_freed_memory(libc=FakeLibc(answer=0)) is False  # glibc refused


def test_opt_out_and_bad_sizes(monkeypatch):
    monkeypatch.setenv("MONOKD_MALLOC", "default")
    libc = FakeLibc()
    assert allocator.keep_freed_memory(libc=libc) is False and libc.calls == []
    monkeypatch.delenv("MONOKD_MALLOC")
    for trim in (0, 2048):
        with pytest.raises(ValueError, match="trim_mib"):
            allocator.keep_freed_memory(trim_mib=trim, libc=FakeLibc())


FAULTS = """
import ctypes, resource, sys
from monokd.training.allocator import glibc, keep_freed_memory
libc = glibc()
if sys.argv[1] == "kept":
    assert keep_freed_memory(libc=libc)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
size = 8 * 1024 * 1024
def cycle():  # three 8 MiB buffers written, then freed: 24 MiB free at the top of the heap
    blocks = [libc.malloc(size) for _ in range(3)]
    for block in blocks:
        libc.memset(block, 1, size)
    for block in blocks:
        libc.free(block)
cycle()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    cycle()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) // 5)
"""


@pytest.mark.skipif(allocator.glibc() is None, reason="glibc only")
def test_freed_buffers_come_back_without_page_faults():
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    pages = 3 * 8 * 1024 * 1024 // 4096
    assert faults("default") > pages // 2  # glibc maps (or trims and grows) them again every cycle
    assert faults("kept") < pages // 100
