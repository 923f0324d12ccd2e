"""Atomic, durable file writes: write a temporary file beside the target, then rename over it.

A reader (or a resumed run) therefore sees either the old file or the complete new one,
never half a file, even if the process is killed mid-write. The temporary file is fsynced
before the rename and the folder after it, so a power loss cannot leave a renamed but empty file.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """The hidden temporary name used while ``path`` is being written (``.<name>.<pid>.tmp``)."""
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's) contents to disk; a no-op where the OS cannot (e.g. folders on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    from cai_edge.io.safe_files import check_write_target

    path = Path(path)
    check_write_target(path, "the file")  # a link, a folder, a device, a FIFO or a socket is never replaced
    tmp = temporary_name(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
