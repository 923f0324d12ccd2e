"""cai_edge.overlap: the image checks run beside the model call, and nothing is lost, reordered or left running."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cai_edge import overlap as overlap_module
from cai_edge.overlap import alongside


def test_both_results_come_back_and_the_side_work_runs_on_the_helper_thread():
    where = {}

    def main():
        where["main"] = threading.current_thread().name
        return 1

    def side():
        where["side"] = threading.current_thread().name
        return 2

    assert alongside(main, side) == (1, 2)
    assert where["main"] == threading.current_thread().name and where["side"] == "cai-edge-checks"


def test_the_side_work_overlaps_a_call_that_releases_the_gil():
    t = time.perf_counter()
    alongside(lambda: time.sleep(0.3), lambda: time.sleep(0.3))  # sleep releases the GIL, as ONNX Runtime's run does
    assert time.perf_counter() - t < 0.5


def test_an_error_on_either_side_reaches_the_caller_and_the_side_work_never_outlives_the_call():
    finished = []

    def slow_side():
        time.sleep(0.2)
        finished.append(True)

    def failing_main():
        raise KeyError("model")

    with pytest.raises(KeyError, match="model"):
        alongside(failing_main, slow_side)
    assert finished == [True]  # waited for before the error went on

    def failing_side():
        raise ValueError("checks")

    with pytest.raises(ValueError, match="checks"):
        alongside(lambda: 1, failing_side)
    assert alongside(lambda: 3, lambda: threading.current_thread().name) == (3, "cai-edge-checks")  # free again after both errors


def test_a_caller_that_finds_the_helper_busy_runs_its_checks_itself():
    release = threading.Event()
    started = threading.Event()
    results = {}

    def hold_the_helper():  # its checks keep the helper thread busy until released
        results["first"] = alongside(lambda: "model", lambda: started.set() or release.wait(5) and "checks")

    first = threading.Thread(target=hold_the_helper)
    first.start()
    assert started.wait(5)
    names = []
    second = alongside(lambda: "model 2", lambda: names.append(threading.current_thread().name) or "checks 2")
    assert second == ("model 2", "checks 2") and names == [threading.current_thread().name]  # ran here, not queued
    release.set()
    first.join(5)
    assert results["first"] == ("model", "checks")


def test_estimate_gives_the_same_rows_with_the_checks_beside_the_model_or_after_it(monkeypatch):
    from cai_edge.estimates import estimate
    from cai_edge.io.npz_partitions import records_from_arrays
    from cai_edge.predictor import Predictor
    from galaxy_helpers import galaxies

    images, mags = galaxies(96, 11)
    images[5] = np.roll(images[5], 3, axis=1)  # a misregistered band among them, so some rows carry image flags
    ids = [f"g{i}" for i in range(len(images))]
    records = list(records_from_arrays(Path("t"), images, mags.astype(np.float32), ids, np.full(len(images), np.nan)))
    predictor = Predictor("default", threads=1)
    beside = estimate(predictor, records, 32)
    monkeypatch.setattr("cai_edge.estimates.alongside", lambda main, side: (main(), side()))
    after = estimate(predictor, records, 32)
    assert [e.row() for e in beside] == [e.row() for e in after]
    assert any(e.flags for e in beside)


# The next three interrupt, fork or patch the threading module: each runs in a process of its own, so
# nothing it does (a SIGINT to the main thread, a patched Thread.start, a fork beside live threads)
# reaches the test runner's process or the tests after it.

def _isolated(body: str) -> str:
    """Run ``body`` (which prints ``OK`` at its end) in a fresh interpreter; return its output."""
    code = "import threading, time, signal\nfrom cai_edge import overlap\nfrom cai_edge.overlap import alongside\n" + textwrap.dedent(body)
    # the child imports the cai_edge this test imported, whatever the working folder or the installed copy
    root = str(Path(overlap_module.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform")
def test_a_forked_child_gets_a_helper_of_its_own_even_when_the_parent_s_was_busy():
    _isolated("""
        import multiprocessing

        def child(queue):
            queue.put(alongside(lambda: "model", lambda: ("checks", threading.current_thread().name)))

        if __name__ == "__main__":
            release, started = threading.Event(), threading.Event()
            holder = threading.Thread(target=lambda: alongside(lambda: None, lambda: started.set() or release.wait(30)))
            holder.start()
            assert started.wait(30)  # the parent's helper is busy (its lock taken) at the fork
            context = multiprocessing.get_context("fork")
            queue = context.Queue()
            proc = context.Process(target=child, args=(queue,))
            proc.start()
            assert queue.get(timeout=60) == ("model", ("checks", "cai-edge-checks"))
            proc.join(60)
            assert proc.exitcode == 0, proc.exitcode
            release.set()
            holder.join(30)
            assert alongside(lambda: 1, lambda: threading.current_thread().name) == (1, "cai-edge-checks")
            print("OK")
    """)


def test_the_helper_is_free_again_when_its_work_ends_even_if_the_caller_was_interrupted_while_waiting():
    _isolated("""
        done = threading.Event()

        def side():
            time.sleep(0.3)
            done.set()
            return "checks"

        def main():
            # a real SIGINT (Ctrl-C) arrives while the caller waits for the checks
            threading.Timer(0.05, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
            raise KeyError("model")

        try:
            alongside(main, side)
        except (KeyboardInterrupt, KeyError) as exc:
            print("raised", type(exc).__name__)
        else:
            raise AssertionError("no error reached the caller")
        assert done.wait(30)
        time.sleep(0.2)
        ran = []
        assert alongside(lambda: 1, lambda: ran.append(threading.current_thread().name) or 2) == (1, 2)
        assert ran == ["cai-edge-checks"], ran  # the overlap was not lost for good
        print("OK")
    """)


def test_a_process_that_cannot_start_a_thread_runs_the_checks_after_the_model_and_starts_the_helper_later():
    _isolated("""
        real_start, calls = threading.Thread.start, []

        def failing_start(self):
            threading.Thread.start = real_start  # only the first start fails
            raise RuntimeError("can't start new thread")

        threading.Thread.start = failing_start
        assert alongside(lambda: "model", lambda: calls.append(threading.current_thread().name) or "checks") == ("model", "checks")
        assert alongside(lambda: "model", lambda: calls.append(threading.current_thread().name) or "checks") == ("model", "checks")
        assert calls[0] == threading.current_thread().name and calls[1] == "cai-edge-checks" and len(calls) == 2, calls
        print("OK")
    """)
