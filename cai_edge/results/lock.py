"""One writer per output file: an exclusive lock beside ``--out``.

The lock is ``.<out name>.lock`` in the output's folder, held with ``flock`` for the whole run
and naming its holder (PID, host, start time). The kernel drops a ``flock`` when its process
dies, so a lock left by a killed run is simply taken over. Where ``flock`` is missing or
unsupported (Windows, some network file systems) the file is created with ``O_EXCL`` instead
and a lock whose holder is a dead process on this host is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

from cai_edge.errors import CaiEdgeError
from cai_edge.io.safe_files import UnsafePathError, check_write_target, kind_of

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class OutputLockedError(CaiEdgeError):
    """Another live run is writing the same output."""


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


def _holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _describe(raw: bytes) -> str:
    try:
        info = json.loads(raw)
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "an unknown process"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class OutputLock:
    """``with OutputLock(out): ...`` — raises :class:`OutputLockedError` if another live run holds ``out``."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.path = lock_path(self.out)
        self._fd: int | None = None

    def _refuse(self, raw: bytes) -> OutputLockedError:
        return OutputLockedError(
            f"{self.out} is being written by another cai-edge run ({_describe(raw)}; lock {self.path}). "
            "Wait for it to finish, or choose another --out."
        )

    def _open(self, flags: int) -> int:
        """Open the lock file, never through a link and never anything but a regular file."""
        try:
            fd = os.open(self.path, flags | _NOFOLLOW | _NONBLOCK, 0o644)
        except OSError as exc:
            if os.path.islink(self.path):
                raise UnsafePathError(f"the lock path {self.path} is a symbolic link; cai-edge never writes through a link. "
                                      "Remove the link (it is not cai-edge's) or choose another --out.") from None
            raise exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            kind = kind_of(os.fstat(fd).st_mode)
            os.close(fd)
            raise UnsafePathError(f"the lock path {self.path} is {kind}, not a lock file cai-edge made; move it away or choose another --out.")
        return fd

    def _acquire_flock(self) -> bool:
        """True when locked; False when flock is unsupported here."""
        for _ in range(20):
            fd = self._open(os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raw = os.pread(fd, 4096, 0)
                os.close(fd)
                raise self._refuse(raw) from None
            except OSError:
                os.close(fd)
                return False
            # The holder before us may have unlinked the file between our open and our flock:
            # then we hold a lock on a name nobody sees. Only a lock on the current file counts.
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                os.close(fd)
                continue
            mine = os.fstat(fd)
            if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_holder()).encode(), 0)
            self._fd = fd
            return True
        raise OutputLockedError(f"{self.path}: could not take the output lock (it keeps changing hands)")

    def _acquire_exclusive_create(self) -> None:
        for _ in range(20):
            try:
                fd = self._open(os.O_RDWR | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                check_write_target(self.path, "the lock path")
                try:
                    raw = self.path.read_bytes()[:4096]
                except FileNotFoundError:
                    continue
                try:
                    info = json.loads(raw)
                    stale = info["host"] == socket.gethostname() and not _pid_alive(int(info["pid"]))
                except (ValueError, KeyError, TypeError):
                    # half-written by a holder killed at once, or garbage: stale once it is old
                    stale = time.time() - self.path.stat().st_mtime > 60
                if not stale:
                    raise self._refuse(raw) from None
                self.path.unlink(missing_ok=True)
                continue
            os.write(fd, json.dumps(_holder()).encode())
            self._fd = fd
            return
        raise OutputLockedError(f"{self.path}: could not take the output lock")

    def acquire(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None or not self._acquire_flock():
            self._acquire_exclusive_create()
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            mine, now = os.fstat(self._fd), os.lstat(self.path)
            if (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino):  # only our own file, never one put in its place
                self.path.unlink()  # while still holding it: nobody can take a lock we then drop
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
