"""glibc's malloc kept from handing a training's freed activations back to the kernel.

A CPU training step allocates and frees the same large activation buffers every step. By
default glibc serves blocks above a dynamic threshold with ``mmap`` and trims the top of
the heap once 128 KiB-2x that threshold lies free, so every step maps fresh pages again and
the kernel zero-fills each one on its first touch: on a 2-core EPYC, the demo's MonoDETR
(320x96, bf16) took ~15 700 minor page faults a step (0.020 s of system time), ADD on it
~35 500 (0.051 s); kept, their steps ran 1.12x faster (``benchmarks/cpu_levers.py``).

:func:`keep_freed_memory` raises the mmap threshold to glibc's maximum (32 MiB: larger
blocks are still mapped and unmapped) and the trim threshold to ``trim_mib``, so freed
buffers are reused from the heap instead. The cost: up to ``trim_mib`` of freed memory stays
with the process until it ends. Elsewhere (no glibc: macOS, Windows, musl) it does nothing.
``MONOKD_MALLOC=default`` in the environment turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt(3) parameter numbers, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: mallopt refuses more


def glibc():
    """The C library when it is glibc (it has ``mallopt``), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def keep_freed_memory(trim_mib: int = 1024, libc=None) -> bool:
    """Set glibc's mmap threshold to its maximum and its trim threshold to ``trim_mib`` MiB
    for this process; True when both took effect, False where there is no glibc, glibc
    refused, or ``MONOKD_MALLOC=default``. Safe to call more than once. ValueError for a
    ``trim_mib`` outside [1, 2047] (mallopt takes a C int of bytes)."""
    if not 1 <= int(trim_mib) <= 2047:
        raise ValueError(f"trim_mib {trim_mib}: expected 1 .. 2047 MiB")
    if os.environ.get("MONOKD_MALLOC", "") == "default":
        return False
    libc = glibc() if libc is None else libc
    if libc is None:
        return False
    mmap_ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
    trim_ok = libc.mallopt(M_TRIM_THRESHOLD, int(trim_mib) * 1024 * 1024)
    return bool(mmap_ok) and bool(trim_ok)
