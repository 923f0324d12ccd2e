"""The file-system rules every cai-edge reader and writer follows (README, "Safety").

1. cai-edge never deletes or overwrites a file or folder it did not create;
2. it never writes through a symbolic link, and writes only regular files;
3. it reads only regular files, with a bounded size, and never blocks on opening one;
4. every value it writes it can read back exactly (see :mod:`cai_edge.results.ids`).

This module holds the checks behind rules 2 and 3; rule 1 is kept by each writer recognising
what it made (a bundle folder by its manifest, an output by its provenance, a spool segment by
its header and name) before it replaces or deletes anything.
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path
from typing import Callable

from cai_edge.errors import CaiEdgeError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class UnsafePathError(CaiEdgeError):
    """A path is a link, a device, a FIFO or another kind of file cai-edge must not read or write here."""


class NotRegularFileError(UnsafePathError, OSError):
    """A data file is not a regular file (a FIFO, a device, a socket) or is larger than its bound."""


def kind_of(mode: int) -> str:
    """A person's word for a file's type."""
    for test, word in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def open_regular(path: str | os.PathLike, limit: int | None = None) -> int:
    """A read-only descriptor on ``path`` after checking that the opened file is regular and at most
    ``limit`` bytes; raises :class:`NotRegularFileError` at once otherwise.

    ``O_NONBLOCK`` makes opening a FIFO return instead of waiting for a writer; the check is made
    on the open descriptor (``fstat``), so a file swapped in after a ``stat`` cannot slip through.
    Links to regular files are followed: a folder of links into a data store is common.
    """
    fd, _ = open_regular_nonblocking(path, limit)
    if _NONBLOCK:
        try:
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
    return fd


def open_regular_nonblocking(path: str | os.PathLike, limit: int | None = None) -> tuple[int, os.stat_result]:
    """:func:`open_regular`'s descriptor left non-blocking, with its ``fstat``: for a caller that only asks
    about the file (its size, ``posix_fadvise``) and reads nothing from it."""
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _BINARY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(f"{os.fspath(path)} is {kind_of(st.st_mode)}, not a regular file: not read")
        if limit is not None and st.st_size > limit:
            raise NotRegularFileError(f"{os.fspath(path)} is {st.st_size:,} bytes, over the {limit:,}-byte limit for this kind of file: not read")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def check_regular(path: str | os.PathLike, limit: int | None = None) -> None:
    """:func:`open_regular`'s checks alone, for a reader that opens the path itself (astropy, zipfile): at once, never blocking."""
    os.close(open_regular(path, limit))


def zip_holds(path: str | os.PathLike, member: str) -> bool:
    """Whether ``path`` is a readable zip with ``member`` in it: how a command recognises a zip it built."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return member in archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def open_regular_file(path: str | os.PathLike, limit: int | None = None):
    """:func:`open_regular` as a binary file object (for astropy, zipfile, numpy)."""
    return os.fdopen(open_regular(path, limit), "rb")


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes (the bound holds even if the file grows)."""
    from cai_edge.io.limits import read_at_most

    fd = open_regular(path, limit)
    try:
        data = read_at_most(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise NotRegularFileError(f"{os.fspath(path)} grew past the {limit:,}-byte limit while being read: not read")
    return data


def check_write_target(path: str | os.PathLike, what: str) -> os.stat_result | None:
    """The ``lstat`` of a file cai-edge is about to replace, or None when it does not exist.

    Refuses (:class:`UnsafePathError`) a symbolic link, a folder, a device, a FIFO or a socket:
    cai-edge writes only regular files and never through a link.
    """
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{what} {os.fspath(path)} is {kind_of(st.st_mode)}; cai-edge writes only regular files and "
                              "never through a link. Choose another path.")
    return st


def is_real_folder(path: str | os.PathLike) -> bool:
    """True for a folder that is not itself a symbolic link."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def is_own_regular_file(path: str | os.PathLike) -> bool:
    """True for a regular file (not a link) — the only kind of entry cai-edge deletes, and only by its own names."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def private_and_ours(st: os.stat_result) -> bool:
    """Owned by this user and writable by nobody else (the rule ssh applies to ``~/.ssh``)."""
    owner_ok = not hasattr(os, "geteuid") or st.st_uid == os.geteuid()
    return owner_ok and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def remove_own_file(path: Path) -> None:
    """Delete ``path`` if it is a regular file (never a link's target, never a folder); gone already is fine."""
    if is_own_regular_file(path):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def remove_stale_files(folder: Path, names: re.Pattern[str], older_than: float) -> None:
    """Delete the files in ``folder`` whose names match ``names`` and that last changed over ``older_than`` seconds ago
    (staging files a killed process left): chosen by name only, each removed as :func:`remove_own_file` removes."""
    now = time.time()
    try:
        entries = [name for name in os.listdir(folder) if names.match(name)]
    except OSError:
        return
    for name in entries:
        path = Path(folder) / name
        try:
            if now - os.lstat(path).st_mtime > older_than:
                remove_own_file(path)
        except OSError:
            pass


def check_output_folder(out: str | os.PathLike, made_by_us: Callable[[Path], bool], what: str) -> None:
    """A folder a command writes its files into (``--out`` of ``partition``, ``render``, ``compare``) must be
    absent, empty, or an earlier output of that command (``made_by_us``); else :class:`UnsafePathError`,
    before anything is written, so no file of the user's there is replaced."""
    out = Path(out)
    try:
        st = os.lstat(out)
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"--out {out} is {kind_of(st.st_mode)}, not a folder; give a new folder name for the {what}")
    if any(os.scandir(out)) and not made_by_us(out):
        raise UnsafePathError(f"--out {out} is a folder holding other files, not an earlier {what} of cai-edge's; "
                              "cai-edge does not write over files it did not make. Choose a new or empty folder.")


def json_file_has(path: Path, keys: tuple[str, ...]) -> bool:
    """Whether ``path`` is a small JSON object with all of ``keys`` (how a command recognises its own manifest or report)."""
    import json

    try:
        data = json.loads(read_regular(path, 64 << 20))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(k in data for k in keys)
