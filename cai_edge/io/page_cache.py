"""Whether an open file's pages are in the page cache, asked without reading the file.

``mincore(2)`` on a mapping of the file that is never touched: it reads nothing and starts no I/O
(a ``preadv(RWF_NOWAIT)`` that misses starts the kernel reading, so a second look, or a look racing
that read, can find a cold file cached). Since 5.0, Linux tells the page cache only for files the
process owns or may write (or as root); for any other file it reports every page resident, so
such a file is not looked at: the answer is None, cannot say, as where ``mincore`` or ``mmap`` is
missing (Windows). A shared, read-only data set owned by another account is then asked for as
before.
"""

from __future__ import annotations

import ctypes
import mmap
import os

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


def in_page_cache(fd: int) -> bool | None:
    """Whether every page of the open regular file ``fd`` is in the page cache; None where the system cannot
    say (no ``mincore``, a file this process neither owns nor runs as root for, or one that cannot be mapped)."""
    if _CALLS is None:
        return None
    st = os.fstat(fd)
    euid = os.geteuid()
    if euid != 0 and st.st_uid != euid:  # mincore would report every page resident
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
        if mincore(address, size, pages) != 0:  # ENOMEM: the file shrank under the mapping
            return None
        return not pages.raw.translate(None, _RESIDENT)  # nothing left once the resident pages' bytes are deleted
    finally:
        munmap(address, size)
