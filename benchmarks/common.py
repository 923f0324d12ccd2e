"""Shared helpers for the benchmark scripts: machine record, subprocess runs, result files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cai_edge.machine import machine_info

RESULTS = Path(__file__).with_name("results")

# `cai-edge predict` in a fresh interpreter, timed from its start; prints one JSON line.
PREDICT_CODE = r"""
import time
t0 = time.perf_counter()
import json, sys
from cai_edge.machine import peak_rss_mb
from cai_edge.cli import main
code = main(["predict", *sys.argv[1:], "--quiet"])
print(json.dumps({"seconds": time.perf_counter() - t0, "exit": code, "peak_rss_mb": peak_rss_mb()}))
"""


def run_json(code: str, *args: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter (clean RSS, honest load time); it prints one JSON line."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def save(name: str, result: dict, markdown: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": machine_info(), **result}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    header = (f"Machine: {m['cpu_model']} ({', '.join(m.get('simd') or ['no AVX2'])}), {m['usable_cores']} usable cores, "
              f"{m.get('memory_gb', '?')} GB, Python {m['python']}.\n\n")
    (RESULTS / f"{name}.md").write_text(header + markdown + "\n")
    print(header + markdown)
