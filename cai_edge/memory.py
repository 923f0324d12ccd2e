"""Process-wide memory settings for long runs, made only by commands that own their process."""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
LARGE_BLOCK_BYTES = 4 << 20
KEPT_FREE_BYTES = 32 << 20


def return_large_blocks_to_the_system(threshold: int = LARGE_BLOCK_BYTES, kept_free: int = KEPT_FREE_BYTES) -> bool:
    """Have glibc serve every block of ``threshold`` bytes or more with its own mapping, unmapped on free.

    By default glibc raises that threshold to the size of the largest block freed so far (up to
    32 MB). Once the first NPZ partition (25 MB) has been freed, later ones come from the reader
    threads' heaps, which fragment: peak RSS grew by ~30 MB over 100,000 galaxies. A fixed
    threshold stops that. Returns False, changing nothing, where the C library has no ``mallopt``
    (macOS, Windows) or refuses it.

    A fixed threshold also stops glibc adjusting its trim threshold, which then stays at 128 kB: every
    free at the top of a heap gave its pages back, and the next batch's arrays (and the engine's
    own buffers) faulted them in again, zeroed: 650,000 page faults and ~2 s of system time in a
    20,000-galaxy run. Up to ``kept_free`` bytes free at a heap's top are kept for reuse instead
    (240,000 faults, ~1 s; peak RSS unchanged).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1 and mallopt(M_TRIM_THRESHOLD, int(kept_free)) == 1
