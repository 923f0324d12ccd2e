"""Process-wide memory settings for long runs, made only by commands that own their process."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
LARGE_BLOCK_BYTES = 4 << 20
KEPT_FREE_BYTES = 8 << 20
# how a user sets each in the environment (glibc reads these at start): such a choice is left as it is
_USER_SETTING = {M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
                 M_TRIM_THRESHOLD: ("MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold")}


def _set_by_user(parameter: int) -> bool:
    variable, tunable = _USER_SETTING[parameter]
    return variable in os.environ or tunable in os.environ.get("GLIBC_TUNABLES", "")


def return_large_blocks_to_the_system(threshold: int = LARGE_BLOCK_BYTES, kept_free: int = KEPT_FREE_BYTES) -> bool:
    """Have glibc serve every block of ``threshold`` bytes or more with its own mapping, unmapped on free.

    By default glibc raises that threshold to the size of the largest block freed so far (up to
    32 MB). Once the first NPZ partition (25 MB) has been freed, later ones come from the reader
    threads' heaps, which fragment: peak RSS grew by ~30 MB over 100,000 galaxies. A fixed
    threshold stops that.

    A fixed threshold also stops glibc adjusting its trim threshold, which then stays at 128 kB: every
    free at the top of a heap gave its pages back, and the next batch's arrays (and the engine's
    own buffers) faulted them in again, zeroed: 550,000–650,000 page faults and ~1.6–2 s of system
    time in a 20,000-galaxy run. Up to ``kept_free`` bytes free at a heap's top are kept for reuse
    instead (~150,000 faults; peak RSS within a few MB).

    A threshold the user set in the environment (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``
    or ``GLIBC_TUNABLES``) is left as it is. Returns True when both are in force, False where the C
    library has no ``mallopt`` (macOS, Windows, musl) or refused one (the mmap threshold may then be
    set and the trim threshold not).
    """
    for name, value in (("threshold", threshold), ("kept_free", kept_free)):
        if not 0 <= value < 2**31:  # mallopt takes a C int
            raise ValueError(f"{name} must be between 0 and 2**31 - 1 bytes, got {value}")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    for parameter, value in ((M_MMAP_THRESHOLD, threshold), (M_TRIM_THRESHOLD, kept_free)):
        if not _set_by_user(parameter) and mallopt(parameter, int(value)) != 1:
            return False
    return True
