"""Which threads a piece of code starts, recorded as they start (no sampling, so none is missed)."""

from __future__ import annotations

import sys
import threading
from typing import Callable


def threads_started_while(action: Callable[[], object], daemons: set[str] | None = None) -> set[str]:
    """The names (less a ``_N`` suffix, as a pool numbers its workers) of the threads started while ``action()``
    runs: each new thread notes its name at its first call and then stops profiling. The names of daemon
    threads are also added to ``daemons`` where given."""
    started: set[str] = set()

    def note(frame, event, arg):
        thread = threading.current_thread()
        started.add(thread.name.rsplit("_", 1)[0])
        if daemons is not None and thread.daemon:
            daemons.add(thread.name.rsplit("_", 1)[0])
        sys.setprofile(None)

    threading.setprofile(note)
    try:
        action()
    finally:
        threading.setprofile(None)
    return started
