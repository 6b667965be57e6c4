"""This process's memory: its peak, and giving freed memory back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def release_free_memory() -> bool:
    """Collect garbage, then ask glibc to return its free heap pages (`malloc_trim(0)`).

    glibc keeps freed pages for later allocations, so a one-off burst (an int8 export traces, quantizes and
    calibrates a model) would otherwise stay in the process's resident set for the rest of a long ingest.
    Returns False where there is no glibc (musl, macOS): nothing to do there.
    """
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)  # type: ignore[arg-type]  # name None: CDLL(None) is this process
    except (OSError, AttributeError):
        return False
    return True


def peak_rss_mb() -> float | None:
    """The resident-set high-water mark (VmHWM) in MB; None where there is no /proc. Not getrusage: Linux
    carries ru_maxrss over fork and exec, so a child reports its parent's peak; VmHWM is per image."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None
