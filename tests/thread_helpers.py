"""Which threads a piece of code starts, recorded as they start (no sampling, so none is missed)."""

from __future__ import annotations

import sys
import threading
from typing import Callable


def threads_started_while(action: Callable[[], object]) -> set[str]:
    """The names (less a ``_N`` suffix, as a pool numbers its workers) of the threads started while ``action()``
    runs: each new thread notes its name at its first call and then stops profiling."""
    started: set[str] = set()

    def note(frame, event, arg):
        started.add(threading.current_thread().name.rsplit("_", 1)[0])
        sys.setprofile(None)

    threading.setprofile(note)
    try:
        action()
    finally:
        threading.setprofile(None)
    return started
