"""Whether an open file's pages are in the page cache, asked without reading the file.

``mincore(2)`` on a mapping of the file that is never touched: it reads nothing and starts no I/O
(a ``preadv(RWF_NOWAIT)`` that misses starts the kernel reading, so a second look, or a look racing
that read, can find a cold file cached). Since 5.0, Linux tells the page cache only for files the
caller owns or may write; for any other file it reports every page resident. So a file is looked
at only when this process owns it or may write it (``access(W_OK)`` with the effective ids, as the
kernel decides): root without ``CAP_DAC_OVERRIDE``, or root inside a user namespace, reading
another account's files gets None, cannot say, as where ``mincore`` or ``mmap`` is missing
(Windows). A shared, read-only data set owned by another account is then asked for as before.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import stat

_MAP_FAILED = ctypes.c_void_p(-1).value
_RESIDENT = bytes(b for b in range(256) if b & 1)  # mincore's byte per page: bit 0 set when resident


def _libc():
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mincore, mmap_, munmap = libc.mincore, libc.mmap, libc.munmap
    except (OSError, AttributeError):
        return None
    mmap_.restype = ctypes.c_void_p
    mmap_.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return mmap_, mincore, munmap


_CALLS = _libc()
_EFFECTIVE_ACCESS = os.access in os.supports_effective_ids


def can_look() -> bool:
    """Whether this system can say at all (``mincore`` and ``mmap`` are there)."""
    return _CALLS is not None


def in_page_cache(fd: int, st: os.stat_result | None = None) -> bool | None:
    """Whether every page of the open regular file ``fd`` is in the page cache; None where the system cannot
    say: no ``mincore``, not a regular file, a file the kernel would not tell this process about (see the
    module's docstring), or one that cannot be mapped. ``st``: the file's ``fstat`` when already taken (its
    size is the one mapped, so a file that grew since is not mapped larger)."""
    if _CALLS is None:
        return None
    st = os.fstat(fd) if st is None else st
    if not stat.S_ISREG(st.st_mode):
        return None
    if st.st_uid != os.geteuid() and not _may_write(fd):  # mincore would report every page resident
        return None
    size = st.st_size
    if size <= 0:
        return True
    mmap_, mincore, munmap = _CALLS
    address = mmap_(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if address in (None, _MAP_FAILED):
        return None
    try:
        pages = ctypes.create_string_buffer(-(-size // mmap.PAGESIZE))
        if mincore(address, size, pages) != 0:
            return None
        return not pages.raw.translate(None, _RESIDENT)  # nothing left once the resident pages' bytes are deleted
    finally:
        munmap(address, size)


def _may_write(fd: int) -> bool:
    """Whether the effective ids may write the file (Linux: through ``/proc/self/fd``); False where unknown."""
    if not _EFFECTIVE_ACCESS:
        return False
    try:
        return os.access(f"/proc/self/fd/{fd}", os.W_OK, effective_ids=True)
    except OSError:
        return False
