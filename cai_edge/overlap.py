"""Run a row's image checks while the model runs: ONNX Runtime releases the GIL during a call.

The checks are a few hundred small numpy calls per batch: at batch 1 they cost about what their
count does (~0.5 ms), at batch 256 about 5 % of a call. On one helper thread per process they fill
the time the model call spends outside Python: measured on a 2-core AMD EPYC (Zen 4, 2 threads),
the image check adds 0.12–0.18 ms to a single-galaxy call instead of 1.0 ms, and costs 3.8 % of
throughput at batch 256 instead of 5–6 % (`benchmarks/trust_overhead.py --rounds 15`).

One helper, not a pool: when it is busy (many threads predicting at once) the caller runs its
side work itself, so the helper never becomes the queue everyone waits in. A forked child (Dask,
multiprocessing) starts with a helper of its own.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import wait
from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

Main = TypeVar("Main")
Side = TypeVar("Side")

_pool: "ThreadPoolExecutor | None" = None
_lock = threading.Lock()
_free = threading.Semaphore(1)


def _reset_after_fork() -> None:
    """A child inherits no running helper thread, and a lock or semaphore may have been held at the fork: start afresh."""
    global _pool, _lock, _free
    _pool, _lock, _free = None, threading.Lock(), threading.Semaphore(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _helper() -> "ThreadPoolExecutor":
    global _pool
    # imported here: concurrent.futures.thread registers an exit hook on import, which fails once the interpreter is exiting
    from concurrent.futures import ThreadPoolExecutor

    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(1, thread_name_prefix="cai-edge-checks")
        return _pool


def _drop(pool: "ThreadPoolExecutor") -> None:
    """Forget a helper whose thread could not start: the work queued in it must never run later."""
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def alongside(main: Callable[[], Main], side: Callable[[], Side]) -> tuple[Main, Side]:
    """``(main(), side())``, with ``side`` run on the helper thread while ``main`` runs on this one.

    Both run here, one after the other, when the helper is busy with another caller's work. The side
    work never outlives the call: when ``main`` raises, it is waited for before the error goes on;
    when ``side`` raises, its error is raised here.
    """
    free = _free
    if not free.acquire(blocking=False):
        return main(), side()
    pool = None
    try:
        pool = _helper()
        future = pool.submit(side)
    except RuntimeError:  # the interpreter is exiting, or no thread could be started
        if pool is not None:
            _drop(pool)
        free.release()
        return main(), side()
    # the helper is free again when the side work ends, whatever happens here meanwhile (an error, Ctrl-C while waiting)
    future.add_done_callback(lambda _: free.release())
    try:
        first = main()
    finally:
        wait((future,))
    return first, future.result()
