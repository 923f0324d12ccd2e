"""Named points where a test can kill this process with SIGKILL, to prove crash safety.

``CAI_EDGE_CRASH_AT=NAME[:N]`` kills the process the N-th time (default 1st) it passes
``crash_point("NAME")``; ``CAI_EDGE_PAUSE_AT=NAME:SECONDS`` sleeps there once instead (to hold a
run at a known point while a test starts another). Unset (always, outside the test suite)
each call is a string comparison.
The points sit between the steps of the result pipeline where a crash matters most: after a
spool write, before and after the final rename, between deleting spool segments.
"""

from __future__ import annotations

import os
import signal
import time

_SPEC = os.environ.get("CAI_EDGE_CRASH_AT", "")
_NAME, _, _COUNT = _SPEC.partition(":")
_remaining = int(_COUNT) if _COUNT.isdigit() else 1
_PAUSE_NAME, _, _PAUSE_SECONDS = os.environ.get("CAI_EDGE_PAUSE_AT", "").partition(":")


def crash_point(name: str) -> None:
    """SIGKILL this process here if ``CAI_EDGE_CRASH_AT`` names this point (and its count is reached)."""
    global _remaining, _PAUSE_NAME
    if _PAUSE_NAME and name == _PAUSE_NAME:
        _PAUSE_NAME = ""
        time.sleep(float(_PAUSE_SECONDS or 1))
    if _NAME and name == _NAME:
        _remaining -= 1
        if _remaining <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
