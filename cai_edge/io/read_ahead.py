"""Asking storage for the next files while the current ones are decoded, without decoding them ahead.

Decoding a cutout is Python that holds the GIL. On two cores a decoding thread beside the model cost
`predict` more than it gave: a 20,000-file folder ran 4–6 % slower with one such thread and 6–13 %
slower with two (they fight over the GIL: reading those files alone, two decoding threads spent
7.3–8.3 s of CPU where one spent 3.4–3.8 s), so ``predict`` decodes in its own thread, between
batches. Waiting on storage (a network file system, a cold disk) is what a thread does help with:
:class:`PageCacheReadAhead` opens the files of the next units and asks the kernel to read them
(``posix_fadvise(WILLNEED)``) without reading them into Python. The bytes then sit in the page
cache when the decoder opens the file; the process holds none of them. How much of a file the
kernel reads is its own setting (the device's ``read_ahead_kb``: 128 kB to a few MB): a cutout
whole, the start of a partition.

Where the files are in the page cache already (a folder read again, or just written), asking for
each one costs time and gives nothing: the thread's system calls and its turns at the GIL cost a
20,000-cutout run 2–3 % on two cores (``docs/speed.md``). So before asking, the thread looks
whether a file's pages are all cached (:func:`cai_edge.io.page_cache.in_page_cache`, which reads
nothing). After :data:`WARM_UNITS` units in a row found cached it only looks at every
:data:`WARM_SAMPLE`-th unit; the first one not cached puts it back to looking at every unit, and
it also asks for the units it passed over since the last one it looked at (those the decoder has
not reached). Where the system cannot say, every unit is asked for, as before.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Generic, Sequence, TypeVar

from cai_edge.io.page_cache import can_look, in_page_cache
from cai_edge.io.safe_files import open_regular_nonblocking

Unit = TypeVar("Unit")

MAX_UNITS_AHEAD = 512  # about two batches of cutouts
MAX_BYTES_AHEAD = 64 << 20  # the files' sizes, an upper bound on what the kernel is asked to read ahead
WARM_UNITS = 64  # units in a row found in the page cache before the thread only samples
WARM_SAMPLE = 16  # then every this-many-th unit is looked at: a cold stretch this long is found within it (a shorter
# one between two cached samples is read without being asked for, as without this thread)

_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)


def ask_storage_for(path: str, limit: int | None = None) -> int:
    """Open ``path`` (never blocking on a FIFO), ask the kernel to read a regular file of at most
    ``limit`` bytes into the page cache, and return its size (0 for anything else, a larger file, or
    on any error: the decoder reports those). A file cai-edge will not read is not read ahead either."""
    return _ask_file(path, limit, look_first=False)[0]


def _ask_file(path: str, limit: int | None, look_first: bool) -> tuple[int, bool | None]:
    """``(size, cached)``: :func:`ask_storage_for`, first looking whether the file is cached already when
    ``look_first`` (then it is not asked for). ``cached`` is None where the system cannot tell."""
    try:
        fd, st = open_regular_nonblocking(path, limit)  # the readers' own check (cai_edge.io.safe_files)
    except OSError:  # NotRegularFileError is one
        return 0, None
    try:
        cached = in_page_cache(fd, st) if look_first else None  # the size the limit was checked against
        if not cached and _WILLNEED is not None and st.st_size:
            os.posix_fadvise(fd, 0, 0, _WILLNEED)
        return st.st_size, cached
    except OSError:
        return 0, None
    finally:
        os.close(fd)


class PageCacheReadAhead(Generic[Unit]):
    """A daemon thread that asks storage for the files of ``units`` in order (those of at most ``limit``
    bytes), at most :data:`MAX_UNITS_AHEAD` units and :data:`MAX_BYTES_AHEAD` bytes ahead of the decoder.

    The decoder calls :meth:`decoded` after each unit and :meth:`close` when it stops (also when it
    stops early); a unit it has already passed is skipped. Use it as a context manager.
    """

    def __init__(self, units: Sequence[Unit], files_of: Callable[[Unit], Sequence[str]], limit: int | None = None,
                 max_units: int = MAX_UNITS_AHEAD, max_bytes: int = MAX_BYTES_AHEAD) -> None:
        self._units = units if isinstance(units, Sequence) else list(units)  # indexed to ask for units passed over
        self._files_of, self._limit = files_of, limit
        self._max_units, self._max_bytes = max_units, max_bytes
        self._decoded = 0  # units the decoder has finished
        self._bytes = {}  # unit index → bytes asked for and not yet decoded
        self._ahead = 0  # their sum
        self._stop = False
        self._next = 0  # the unit the thread is at
        self._waiting = False
        self._look = can_look()  # whether to look for cached files before asking
        self._last_looked = -1  # the last unit looked at (or asked for)
        self._warm = 0  # units in a row found cached
        self.asked = 0  # units not found cached, so asked for (cached ones are only looked at; sampled-over ones not even that)
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="cai-edge-read-ahead", daemon=True)
        self._thread.start()

    def decoded(self) -> None:
        """The decoder has finished the next unit."""
        with self._cond:
            self._ahead -= self._bytes.pop(self._decoded, 0)
            self._decoded += 1
            if self._waiting and not self._full(self._next, half=True):
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()

    def __enter__(self) -> PageCacheReadAhead[Unit]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _full(self, index: int, half: bool = False) -> bool:
        if index < self._decoded:
            return False
        units, size = (self._max_units // 2, self._max_bytes // 2) if half else (self._max_units, self._max_bytes)
        return index - self._decoded >= units or self._ahead >= size

    def _run(self) -> None:
        for index, unit in enumerate(self._units):
            with self._cond:
                self._next = index
                if self._full(index):  # wait until half the window is free: one wake-up per half window, not per unit
                    self._waiting = True
                    while not self._stop and self._full(index, half=True):
                        self._cond.wait()
                    self._waiting = False
                if self._stop:
                    return
                if index < self._decoded:  # the decoder got there first
                    continue
            size = self._ask_unless_cached(index, unit)
            with self._cond:
                if index >= self._decoded:
                    self._bytes[index] = size
                    self._ahead += size

    def _ask_unless_cached(self, index: int, unit: Unit) -> int:
        """Ask storage for ``unit``'s files unless they are cached; the bytes of the files looked at (the window's measure)."""
        sampling = self._warm >= WARM_UNITS
        if sampling and index % WARM_SAMPLE:
            return 0  # a warm stretch: only every WARM_SAMPLE-th unit is looked at
        size, cached = self._ask_files(unit, look=self._look)
        if sampling and not cached:  # a cold stretch may have begun among the units passed over: ask for them too
            for passed in range(max(self._last_looked + 1, self._decoded), index):
                if self._ahead + size >= self._max_bytes:  # the window's bound holds for these too
                    break
                size += self._ask_files(self._units[passed], look=False)[0]
                self.asked += 1
        self._last_looked = index
        self._warm = self._warm + 1 if cached else 0
        self.asked += not cached
        return size

    def _ask_files(self, unit: Unit, look: bool) -> tuple[int, bool]:
        """``(bytes, all cached)`` of ``unit``'s files, each asked for unless ``look`` finds it cached."""
        size, cached = 0, True
        for path in self._files_of(unit):
            bytes_, was_cached = _ask_file(path, self._limit, look_first=look)
            size += bytes_
            cached = cached and bool(was_cached)  # None (cannot say, e.g. another account's file): asked for
        return size, cached
