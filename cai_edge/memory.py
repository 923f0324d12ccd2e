"""Process-wide memory settings for long runs, made only by commands that own their process."""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
LARGE_BLOCK_BYTES = 4 << 20


def return_large_blocks_to_the_system(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Have glibc serve every block of ``threshold`` bytes or more with its own mapping, unmapped on free.

    By default glibc raises that threshold to the size of the largest block freed so far (up to
    32 MB). Once the first NPZ partition (25 MB) has been freed, later ones come from the reader
    threads' heaps, which fragment: peak RSS grew by ~30 MB over 100,000 galaxies. A fixed
    threshold stops that. Returns False, changing nothing, where the C library has no ``mallopt``
    (macOS, Windows) or refuses it.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1
