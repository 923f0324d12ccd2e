"""Issue 30, item 11: a thread count above the usable cores runs on those cores, with a warning, at every entry point.

``threads=100000`` once started 100,000 ONNX Runtime threads (4.2 GB after a minute, growing).
Each case runs in its own process under an address-space limit and a timeout, so a regression
fails quickly instead of taking the machine's memory.
"""

from __future__ import annotations

import resource
import subprocess
import sys

from cai_edge.machine import usable_cores
from cai_edge.results.files import read_results
from result_helpers import write_partitions

LIMIT_BYTES = 4 << 30


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=_limited)


API = """
import os, warnings
import numpy as np
from cai_edge.machine import peak_rss_mb
from cai_edge.predictor import Predictor
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    p = Predictor(threads=100000)
z = p.predict(np.full((1, 5, 32, 32), 0.1, np.float32), np.array([[19.0, 17.5, 16.7, 16.3, 16.0]], np.float32))
print("THREADS", p.threads, len(os.listdir("/proc/self/task")), peak_rss_mb(), np.isfinite(z).all())
print("WARNED", [str(w.message) for w in caught if w.category.__name__ == "CaiEdgeWarning"])
"""


def test_a_huge_thread_request_in_the_api_runs_on_the_usable_cores_and_warns():
    proc = _run([sys.executable, "-c", API])
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("THREADS")).split()
    threads, os_threads, peak_mb, finite = int(line[1]), int(line[2]), float(line[3]), line[4] == "True"
    cores = usable_cores()
    assert threads == cores and finite
    assert os_threads <= cores + 8, os_threads  # ONNX Runtime's pool, Python's own and a few helpers
    assert peak_mb < 1000, peak_mb
    warned = next(ln for ln in proc.stdout.splitlines() if ln.startswith("WARNED"))
    assert "100000 threads asked for" in warned and f"running {cores} thread(s)" in warned


def test_a_huge_threads_option_on_the_command_line_is_bounded_and_warns(tmp_path):
    write_partitions(tmp_path / "in", 1, 1)
    out = tmp_path / "z.csv"
    proc = _run([sys.executable, "-m", "cai_edge", "predict", str(tmp_path / "in"), "--out", str(out), "--quiet",
                 "--threads", "100000"])
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert f"warning: 100000 threads asked for, but this process may use {usable_cores()} core(s)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(read_results(out)["status"]) == ["ok"]


def test_sessions_sleep_between_loops_and_split_them_dynamically_unless_spinning_is_asked_for(monkeypatch):
    """Issue 34, item 4: spinning threads fell to 0.33–0.43 of their quiet speed beside one busy process (0.61–0.67 without)."""
    from cai_edge.predictor import Predictor
    from cai_edge.session import SPINNING_ENV

    monkeypatch.delenv(SPINNING_ENV, raising=False)
    options = Predictor(threads=2).session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.dynamic_block_base") == "4"
    monkeypatch.setenv(SPINNING_ENV, "1")
    options = Predictor(threads=2).session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
