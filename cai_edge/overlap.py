"""Run a row's image checks while the model runs: ONNX Runtime releases the GIL during a call.

The checks are a few hundred small numpy calls per batch: at batch 1 they cost about what their
count does (~0.4 ms of one core), at batch 256 about 5 % of a call. On one helper thread per process
they fill the time the model call spends outside Python: measured on a 2-core AMD EPYC (Zen 4, 2
threads, one session with and without the checks), the image check adds 0.05–0.11 ms to a
single-galaxy call instead of 0.53–0.56 ms after the model, and 2–3 % of throughput at batch 256
(`benchmarks/trust_overhead.py --rounds 15`).

One helper, not a pool: when it is busy (many threads predicting at once) the caller runs its
side work itself, so the helper never becomes the queue everyone waits in. The work is handed
over with two plain locks, the cheapest wake-up there is (~20–45 µs a round trip, against ~50–80
µs through a ThreadPoolExecutor's futures). A forked child (Dask, multiprocessing) starts with a
helper of its own; a process that cannot start a thread runs the checks after the model.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, TypeVar

Main = TypeVar("Main")
Side = TypeVar("Side")


class _Helper:
    """A thread that runs one piece of side work at a time: ``go`` is released to start it, ``done`` when it has ended."""

    def __init__(self) -> None:
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.work: Callable[[], Any] | None = None
        self.outcome: tuple[bool, Any] = (True, None)
        # a daemon: idle, it waits on ``go`` for ever, which must not keep the interpreter from exiting
        threading.Thread(target=self._loop, name="cai-edge-checks", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self.go.acquire()
            work, self.work = self.work, None
            try:
                self.outcome = (True, work())
            except BaseException as exc:  # handed to the caller, whatever it is
                self.outcome = (False, exc)
            work = None
            self.done.release()


_helper: _Helper | None = None
_lock = threading.Lock()
_free = threading.Lock()  # held while the helper has work: a plain lock (any thread may release it) costs less than a semaphore


def _reset_after_fork() -> None:
    """A child inherits no running helper thread, and a lock or semaphore may have been held at the fork: start afresh."""
    global _helper, _lock, _free
    _helper, _lock, _free = None, threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _get_helper() -> _Helper:
    """The process's helper, started on first use (:class:`RuntimeError` when no thread can be started)."""
    global _helper
    helper = _helper
    if helper is not None:
        return helper
    with _lock:
        if _helper is None:
            _helper = _Helper()
        return _helper


def alongside(main: Callable[[], Main], side: Callable[[], Side]) -> tuple[Main, Side]:
    """``(main(), side())``, with ``side`` run on the helper thread while ``main`` runs on this one.

    Both run here, one after the other, when the helper is busy with another caller's work or no
    thread can be started. The side work never outlives the call: when ``main`` raises, it is waited
    for before the error goes on; when ``side`` raises, its error is raised here. Interrupted while
    waiting (Ctrl-C), the call returns at once and the helper is free again when its work ends.
    """
    free = _free
    if not free.acquire(blocking=False):
        return main(), side()
    try:
        helper = _get_helper()
    except RuntimeError:  # no thread could be started (the interpreter is exiting, or the process is at its limit)
        free.release()
        return main(), side()
    helper.work = side
    helper.go.release()
    try:
        first = main()
    finally:
        try:
            ok, value = _collect(helper, free)
        except BaseException:  # interrupted while waiting: free the helper once its work has ended, not before
            threading.Thread(target=_collect, args=(helper, free), daemon=True).start()
            raise
    if not ok:
        raise value
    return first, value


def _collect(helper: _Helper, free: threading.Lock) -> tuple[bool, Any]:
    """Wait for the helper's work to end, take its outcome and free the helper for the next caller."""
    helper.done.acquire()
    outcome, helper.outcome = helper.outcome, (True, None)  # the helper keeps no reference to this call's results
    free.release()
    return outcome
