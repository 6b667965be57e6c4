"""release_free_memory hands glibc's freed heap pages back to the OS."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import pytest

from common.memory import peak_rss_mb, release_free_memory


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("c"), reason="glibc only")
def test_freed_heap_pages_go_back_to_the_os() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4096) for _ in range(40_000)]  # 160 MB in small blocks: heap, not mmap
    for b in blocks:
        ctypes.memset(b, 1, 4096)  # touched, so resident
    keep = libc.malloc(64)  # a live block above them: the heap cannot simply shrink from its top
    for b in blocks:
        libc.free(b)
    held = _rss_mb()
    assert release_free_memory()
    assert held - _rss_mb() > 100
    libc.free(keep)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_peak_is_at_least_the_current_resident_set() -> None:
    block = bytearray(200 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])
    current = _rss_mb()
    assert peak_rss_mb() >= round(current, 1) and current >= 200  # peak_rss_mb rounds to 0.1 MB
