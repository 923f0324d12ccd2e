"""Reading ahead: storage is asked for the next files within a bounded window; cutouts are decoded in
the caller's thread (their decoding holds the GIL), partitions in reader threads."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

from cai_edge.io.fits_cutouts import cutout_hdul
from cai_edge.io.page_cache import in_page_cache
from cai_edge.io.read_ahead import WARM_SAMPLE, WARM_UNITS, PageCacheReadAhead, ask_storage_for
from thread_helpers import threads_started_while


def write_cutout(path, data: np.ndarray, mags: np.ndarray) -> None:
    cutout_hdul(data, mags).writeto(path)


def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class _Asked:
    """``files_of`` that records which units the read-ahead thread asked for."""

    def __init__(self, paths: list[str]) -> None:
        self.paths, self.units = paths, []

    @classmethod
    def over_files(cls, folder, n: int, size: int) -> _Asked:
        """``n`` files of ``size`` bytes in ``folder``, unit i being file i."""
        for i in range(n):
            (folder / f"{i}.fits").write_bytes(b"x" * size)
        return cls([str(folder / f"{i}.fits") for i in range(n)])

    def __call__(self, unit: int) -> list[str]:
        self.units.append(unit)
        return [self.paths[unit]]


def _settled(asked: _Asked, expected: int) -> None:
    _until(lambda: len(asked.units) >= expected)
    time.sleep(0.2)  # had the window leaked, the thread would ask for more in this time
    assert len(asked.units) == expected


def test_ask_storage_for_answers_regular_files_only_and_never_blocks(tmp_path):
    regular = tmp_path / "a.fits"
    regular.write_bytes(b"x" * 5000)
    fifo = tmp_path / "pipe.fits"
    os.mkfifo(fifo)  # no writer: a blocking open would hang this test
    assert ask_storage_for(str(regular)) == 5000
    assert ask_storage_for(str(regular), limit=4999) == 0  # a file cai-edge will not read is not read ahead
    assert ask_storage_for(str(fifo)) == 0
    assert ask_storage_for(str(tmp_path)) == 0  # a folder
    assert ask_storage_for(str(tmp_path / "missing.fits")) == 0


def test_window_in_units_is_kept_and_refilled_by_halves(tmp_path):
    asked = _Asked.over_files(tmp_path, 40, 100)
    with PageCacheReadAhead(range(40), asked, max_units=8, max_bytes=1 << 30) as ahead:
        _settled(asked, 8)  # nothing decoded: eight units ahead, no more
        for _ in range(4):
            ahead.decoded()
        _settled(asked, 8)  # half the window still ahead: the thread still waits
        ahead.decoded()
        _settled(asked, 13)  # under half ahead: it fills the window again (5 decoded + 8 ahead)
        assert asked.units == list(range(13))  # in order, each once


def test_window_in_bytes_is_kept(tmp_path):
    asked = _Asked.over_files(tmp_path, 20, 1000)
    with PageCacheReadAhead(range(20), asked, max_units=100, max_bytes=3000) as ahead:
        _settled(asked, 3)  # 3,000 bytes ahead: the bound
        ahead.decoded()
        _settled(asked, 3)  # 2,000 bytes ahead: not under half the bound yet
        ahead.decoded()
        _settled(asked, 5)  # 1,000: under half; it asks until the bound again (2 decoded + 3 ahead)


def test_units_the_decoder_passed_are_skipped_and_close_stops_the_thread(tmp_path):
    (tmp_path / "a.fits").write_bytes(b"x")
    asked = _Asked([str(tmp_path / "a.fits")] * 1000)
    ahead = PageCacheReadAhead(range(1000), asked, max_units=4, max_bytes=1 << 30)
    _settled(asked, 4)
    for _ in range(500):  # the decoder runs far past the thread
        ahead.decoded()
    _settled(asked, 8)
    assert asked.units == [0, 1, 2, 3, 500, 501, 502, 503]  # units 4 … 499 were never asked for
    ahead.close()
    assert not ahead._thread.is_alive()
    assert not any(t.name == "cai-edge-read-ahead" for t in threading.enumerate())


def test_cutouts_are_decoded_here_and_partitions_by_reader_threads(tmp_path):
    """Decoding cutouts beside the model in threads cost more than it gave (GIL): with ``workers=2`` a
    folder of cutouts starts no reader thread, only the one that asks storage ahead; partitions are
    decoded ahead by reader threads."""
    from cai_edge.io.inputs import iter_galaxies
    from cai_edge.io.npz_partitions import write_npz_partition

    rng = np.random.default_rng(0)
    cutouts, parts = tmp_path / "cutouts", tmp_path / "parts"
    cutouts.mkdir(), parts.mkdir()
    for i in range(12):
        write_cutout(cutouts / f"g{i}.fits", rng.uniform(0.1, 1, (5, 64, 64)).astype(np.float32), np.full(5, 19.0))
    for p in range(3):
        write_npz_partition(parts / f"p{p}.npz", rng.uniform(0.1, 1, (4, 5, 64, 64)).astype(np.float32),
                            np.full((4, 5), 19.0, np.float32), [f"p{p}-{i}" for i in range(4)], np.full(4, 0.1))
    records: list = []
    started = threads_started_while(lambda: records.extend(iter_galaxies([cutouts], workers=2)))
    assert len(records) == 12 and started == {"cai-edge-read-ahead"}
    records.clear()
    started = threads_started_while(lambda: records.extend(iter_galaxies([parts], workers=2)))
    assert len(records) == 12 and "cai-edge-read" in started


class _Opens:
    """Every ``open`` audit event (``os.open``, ``open``) while listening, with the opening thread's name.
    An audit hook cannot be removed: one is added for the session and listens only inside ``with``."""

    _listener: _Opens | None = None
    _hooked = False

    def __init__(self, on_open=None) -> None:
        self.events: list[tuple[str, str]] = []
        self.on_open = on_open

    def __enter__(self) -> _Opens:
        if not _Opens._hooked:
            sys.addaudithook(_Opens._hook)
            _Opens._hooked = True
        _Opens._listener = self
        return self

    def __exit__(self, *exc: object) -> None:
        _Opens._listener = None

    @staticmethod
    def _hook(event: str, args: tuple) -> None:
        listener = _Opens._listener
        if event == "open" and listener is not None and isinstance(args[0], str):
            name = threading.current_thread().name
            listener.events.append((name, args[0]))
            if listener.on_open is not None:
                listener.on_open(name, args[0])


def test_a_cutout_is_opened_once_by_its_decoder(tmp_path):
    from cai_edge.io.inputs import iter_galaxies

    rng = np.random.default_rng(2)
    paths = [str(tmp_path / f"g{i}.fits") for i in range(5)]
    for path in paths:
        write_cutout(path, rng.uniform(0.1, 1, (5, 64, 64)).astype(np.float32), np.full(5, 19.0))
    with _Opens() as opens:
        records = list(iter_galaxies([tmp_path], workers=2))
    assert [r.status for r in records] == ["ok"] * 5
    decoder = [path for name, path in opens.events if name == threading.current_thread().name]
    assert sorted(decoder) == sorted(paths)  # one open each: the safety check and the read share it


def test_storage_is_looked_at_as_the_decoder_moves_on(tmp_path):
    """The decoder tells the read-ahead thread what it has finished: here it waits, before opening a
    file, until the thread has looked at that file, so a thread stuck at its first window (512 units) fails it."""
    from cai_edge.io.inputs import iter_galaxies

    n = 700
    for i in range(n):
        (tmp_path / f"x{i:04d}.fits").write_bytes(b"not FITS")
    asked: dict[str, threading.Event] = {}
    lock = threading.Lock()
    waited_in_vain: list[str] = []
    here = threading.current_thread().name

    def looked_at(path: str) -> bool:  # the files are cached (just written): after WARM_UNITS of them, one in WARM_SAMPLE
        index = int(os.path.basename(path)[1:5])
        return index < WARM_UNITS or index % WARM_SAMPLE == 0

    def on_open(name: str, path: str) -> None:
        if not path.startswith(str(tmp_path)) or not looked_at(path):
            return
        with lock:
            event = asked.setdefault(path, threading.Event())
        if name == "cai-edge-read-ahead":
            event.set()
        elif name == here and not waited_in_vain and not event.wait(10):  # once in vain is enough
            waited_in_vain.append(path)

    with _Opens(on_open):
        records = list(iter_galaxies([tmp_path], workers=1))
    assert len(records) == n and {r.status for r in records} == {"unreadable"}
    assert waited_in_vain == []


@pytest.mark.parametrize("workers", [1, 2])
def test_mixed_inputs_keep_their_order_and_rows(tmp_path, workers):
    from cai_edge.io.inputs import iter_galaxies
    from cai_edge.io.npz_partitions import write_npz_partition

    rng = np.random.default_rng(1)
    for i in range(6):
        write_cutout(tmp_path / f"a{i}.fits", rng.uniform(0.1, 1, (5, 64, 64)).astype(np.float32), np.full(5, 19.0 + i))
    write_npz_partition(tmp_path / "b.npz", rng.uniform(0.1, 1, (5, 5, 64, 64)).astype(np.float32),
                        np.full((5, 5), 20.0, np.float32), [f"b{i}" for i in range(5)], np.full(5, 0.1))
    for i in range(3):
        write_cutout(tmp_path / f"c{i}.fits", rng.uniform(0.1, 1, (5, 64, 64)).astype(np.float32), np.full(5, 21.0))
    (tmp_path / "d.fits").write_bytes(b"not FITS")
    ids = [r.id for r in iter_galaxies([tmp_path], workers=workers)]
    assert ids == [*(f"a{i}" for i in range(6)), *(f"b{i}" for i in range(5)), "c0", "c1", "c2", "d"]
    serial = [(r.id, r.status, r.image.tobytes() if r.image is not None else None) for r in iter_galaxies([tmp_path], workers=1)]
    ahead = [(r.id, r.status, r.image.tobytes() if r.image is not None else None) for r in iter_galaxies([tmp_path], workers=workers)]
    assert serial == ahead


def _drop_from_page_cache(paths: list[str]) -> None:
    """Evict the files' pages (synced: clean pages the kernel may drop). ``POSIX_FADV_DONTNEED`` is best-effort (a
    page still on a per-CPU list stays), so it is asked again until none is left; skips where the system keeps them
    or cannot say (tmpfs keeps its pages)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            for _ in range(100):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                if in_page_cache(fd) is False:
                    break
                time.sleep(0.01)
            else:
                pytest.skip("this file system keeps the files in the page cache (or cannot say): nothing cold to test")
        finally:
            os.close(fd)


def _cached(path) -> bool | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return in_page_cache(fd)
    finally:
        os.close(fd)


def _skip_where_the_system_cannot_say(path) -> None:
    if _cached(path) is None:
        pytest.skip("this system cannot say what is in the page cache (no mincore)")


def test_in_page_cache_tells_cached_files_from_dropped_and_partly_read_ones(tmp_path):
    path = tmp_path / "a.fits"
    path.write_bytes(os.urandom(300_000))
    _skip_where_the_system_cannot_say(path)
    assert _cached(path) is True  # just written
    _drop_from_page_cache([str(path)])
    fd = os.open(path, os.O_RDONLY)
    try:
        assert in_page_cache(fd) is False
        assert in_page_cache(fd) is False  # looking reads nothing
        os.pread(fd, 3 * 4096, 0)
        assert in_page_cache(fd) is False  # its start only
        os.pread(fd, 300_000, 0)
        assert in_page_cache(fd) is True
    finally:
        os.close(fd)
    (tmp_path / "empty.fits").write_bytes(b"")
    assert _cached(tmp_path / "empty.fits") is True  # nothing to read


_LOOK_FROM_A_CHILD = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("page_cache", sys.argv[1])
page_cache = importlib.util.module_from_spec(spec)
spec.loader.exec_module(page_cache)
fd = os.open(sys.argv[2], os.O_RDONLY)
if sys.argv[3] == "nobody":
    try:
        os.seteuid(65534)
    except OSError:
        print("cannot")
        raise SystemExit
print(page_cache.in_page_cache(fd))
"""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root, to look as other accounts")
def test_another_accounts_file_is_looked_at_only_by_a_process_the_kernel_would_tell(tmp_path):
    """Linux's mincore reports every page of a file the caller neither owns nor may write as resident: such a file
    must read as "cannot say" (so it is asked for), never as cached. A dropped file of uid 1000, mode 644, looked at
    from child processes: root (may write it: the real answer), root dropped to the account nobody, and root of a
    user namespace (uid 1000 is not mapped there: no write)."""
    import shutil
    import subprocess

    import cai_edge.io.page_cache as page_cache

    path = tmp_path / "theirs.fits"
    path.write_bytes(os.urandom(200_000))
    _skip_where_the_system_cannot_say(path)
    os.chown(path, 1000, 1000)
    path.chmod(0o644)
    _drop_from_page_cache([str(path)])

    def look(*prefix: str, who: str = "root") -> str:
        run = subprocess.run([*prefix, sys.executable, "-c", _LOOK_FROM_A_CHILD, page_cache.__file__, str(path), who],
                             capture_output=True, text=True)
        return run.stdout.strip() if run.returncode == 0 else f"failed: {run.stderr.strip()[-300:]}"

    assert look() == "False"  # root, which may write it: told, and it is cold
    as_nobody = look(who="nobody")
    if as_nobody != "cannot":  # no CAP_SETUID here
        assert as_nobody == "None"
    unshare = shutil.which("unshare")
    if unshare is not None:
        in_namespace = look(unshare, "-r")
        if not in_namespace.startswith("failed"):  # user namespaces not allowed here
            assert in_namespace == "None"
    assert _cached(path) is False  # nobody read it


def test_cached_files_are_sampled_and_a_cold_stretch_is_asked_for_from_before_its_first_sample(tmp_path):
    """A warm folder costs the thread almost nothing; the first cold file it samples puts it back to looking at every
    unit, and the units it passed over since the sample before are asked for too: every cold file ends up cached."""
    n, cold_from = 400, 200
    asked = _Asked.over_files(tmp_path, n, 64 << 10)
    _skip_where_the_system_cannot_say(asked.paths[0])
    _drop_from_page_cache(asked.paths[cold_from:])
    with PageCacheReadAhead(range(n), asked, max_units=10_000, max_bytes=1 << 40) as ahead:
        _until(lambda: n - 1 in asked.units)
    first_cold_sample = -(-cold_from // WARM_SAMPLE) * WARM_SAMPLE
    passed_over = range(first_cold_sample - WARM_SAMPLE + 1, first_cold_sample)
    looked_at = [*range(WARM_UNITS), *range(WARM_UNITS, first_cold_sample + 1, WARM_SAMPLE), *passed_over,
                 *range(first_cold_sample + 1, n)]
    assert asked.units == looked_at
    assert ahead.asked == n - passed_over[0]  # the warm files were only looked at
    _until(lambda: all(_cached(p) for p in asked.paths[cold_from:]))  # asked for, so read by the kernel: none missed


def test_an_unreadable_file_does_not_stop_the_looking_and_a_system_that_cannot_say_does(tmp_path, monkeypatch):
    import cai_edge.io.page_cache as page_cache

    asked = _Asked.over_files(tmp_path, 150, 100)
    _skip_where_the_system_cannot_say(asked.paths[0])
    asked.paths[0] = str(tmp_path / "missing.fits")
    with PageCacheReadAhead(range(150), asked, max_units=10_000, max_bytes=1 << 40) as ahead:
        _until(lambda: 144 in asked.units)
    assert ahead._look and ahead.asked == 1 and len(asked.units) < 150  # cached files after the missing one: sampled

    monkeypatch.setattr(page_cache, "_CALLS", None)  # as where there is no mincore (Windows)
    asked = _Asked.over_files(tmp_path, 150, 100)
    with PageCacheReadAhead(range(150), asked, max_units=10_000, max_bytes=1 << 40) as ahead:
        _until(lambda: 149 in asked.units)
    assert asked.units == list(range(150)) and ahead.asked == 150 and not ahead._look


def test_a_file_that_grows_after_its_size_check_is_looked_at_as_checked(tmp_path, monkeypatch):
    """The look maps the size the limit was checked against, not the size the file has by then: a cached 8 kB
    file that a writer extends (sparse, uncached) to 64 MB between the check and the look is found cached. The
    writer is simulated by extending the file right after the real check."""
    import cai_edge.io.read_ahead as read_ahead

    probe = tmp_path / "probe.fits"  # whether a grown file's new part reads uncached here (not on every file system)
    probe.write_bytes(os.urandom(8192))
    if _cached(probe) is not True:
        pytest.skip("this system cannot say what is in the page cache, or keeps a just-written file out of it")
    os.truncate(probe, 64 << 20)
    if _cached(probe) is not False:
        pytest.skip("a file extended here reads as cached (no sparse files): the sizes cannot be told apart")
    probe.unlink()

    path = tmp_path / "growing.fits"
    path.write_bytes(os.urandom(8192))
    checked = read_ahead.open_regular_nonblocking

    def check_then_grow(p, limit=None):
        fd, st = checked(p, limit)
        os.truncate(p, 64 << 20)  # what a concurrent writer could do
        return fd, st

    monkeypatch.setattr(read_ahead, "open_regular_nonblocking", check_then_grow)
    try:
        assert read_ahead._ask_file(str(path), 1 << 20, look_first=True) == (8192, True)
    finally:
        path.unlink()
