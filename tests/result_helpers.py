"""Shared pieces of the crash-safety and hostile-input tests: partitions on disk, predict as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from cai_edge.io.npz_partitions import write_npz_partition

MAGS = np.array([19.0, 17.5, 16.7, 16.3, 16.0], dtype=np.float32)


def write_partitions(folder: Path, n_parts: int, rows: int, seed: int = 0, bad_every: int = 0) -> list[str]:
    """``n_parts`` NPZ partitions of ``rows`` galaxies (ids ``p<k>-<i>``); every ``bad_every``-th row has a NaN pixel."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = []
    for k in range(n_parts):
        images = rng.normal(0, 0.05, (rows, 5, 32, 32)).astype(np.float32)
        names = [f"p{k:03d}-{i:04d}" for i in range(rows)]
        if bad_every:
            images[::bad_every, 2, 16, 16] = np.nan
        mags = MAGS + rng.uniform(-0.5, 0.5, (rows, 5)).astype(np.float32)
        write_npz_partition(folder / f"part-{k:03d}.npz", images, mags, names, rng.uniform(0.02, 0.3, rows))
        ids += names
    return ids


def predict_process(*args, env: dict | None = None, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """``cai-edge predict ARGS`` in its own Python process (so it can be SIGKILLed for real)."""
    cmd = [sys.executable, "-m", "cai_edge", "predict", *map(str, args), "--threads", "1", "--quiet"]
    return subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout, **popen)


def predict_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "cai_edge", "predict", *map(str, args), "--threads", "1", "--quiet"]


def peak_rss_of(code: str, timeout: float = 300) -> tuple[float, str]:
    """Run ``code`` in a fresh Python; returns (its peak RSS in MB, its stdout). ``code`` must not exit early."""
    wrapped = code + "\nfrom cai_edge.machine import peak_rss_mb\nprint('PEAK_RSS_MB', peak_rss_mb())\n"
    proc = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PEAK_RSS_MB")][-1]
    return float(line.split()[1]), proc.stdout
