"""Process-level tuning for CPU inference."""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
_MMAP_MAX = 32 * 1024 * 1024  # glibc's largest allowed mmap threshold on 64-bit


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed activation buffers instead of returning them to the OS.

    Every rendered frame allocates and frees the same ~100 MB of activations; by default glibc
    unmaps large blocks on free, so each frame page-faults them in again (measured ~15% of CPU
    time at 256²). Returns False where this is not glibc (macOS, Windows, musl): nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, _MMAP_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, 2 ** 30))
