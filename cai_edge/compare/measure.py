"""Measurements of one bundle on one tier: throughput, batch-1 latency, cold start, peak RSS."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cai_edge.bundle import Bundle
from cai_edge.compare.tiers import Tier
from cai_edge.optimized_graphs import ENV as OPTIMIZED_GRAPHS_ENV
from cai_edge.predictor import Predictor

MIN_SECONDS = 2.0
LATENCY_RUNS = 30

# Run in a fresh interpreter: import + session + first batch, then peak RSS after a full batch.
_COLD_START = r"""
import time
t0 = time.perf_counter()
import json, sys
import numpy as np
from cai_edge.bundle import open_bundle
from cai_edge.predictor import Predictor
bundle_path, data_path, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = np.load(data_path, allow_pickle=False)
p = Predictor(open_bundle(bundle_path), threads=threads, backend="onnxruntime")
p.predict_prepared(data["images"][:1], data["magnitudes"][:1])
cold_ms = (time.perf_counter() - t0) * 1000.0
p.predict_prepared(data["images"][:batch], data["magnitudes"][:batch], batch)
from cai_edge.machine import peak_rss_mb
from cai_edge.session import started_from_cache
print(json.dumps({"cold_start_ms": cold_ms, "peak_rss_mb": peak_rss_mb(), "cold_start_from_cached_graph": started_from_cache(p.session)}))
"""


def throughput(predictor: Predictor, images: np.ndarray, magnitudes: np.ndarray, batch: int, seconds: float = MIN_SECONDS) -> float:
    """Galaxies per second through the session at ``batch``, after a warm-up batch, repeated for at least ``seconds``."""
    predictor.predict_prepared(images[:batch], magnitudes[:batch], batch)  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        predictor.predict_prepared(images, magnitudes, batch)
        done += len(images)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def latency_ms(predictor: Predictor, images: np.ndarray, magnitudes: np.ndarray) -> float:
    """Median time for one galaxy."""
    predictor.predict_prepared(images[:1], magnitudes[:1], 1)
    times = []
    for i in range(LATENCY_RUNS):
        k = i % len(images)
        start = time.perf_counter()
        predictor.predict_prepared(images[k : k + 1], magnitudes[k : k + 1], 1)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def cold_start_and_rss(bundle: Bundle, images: np.ndarray, magnitudes: np.ndarray, tier: Tier) -> dict:
    """Cold start in a fresh process. Laptop and edge tiers start as they would on a second run there,
    from the optimized-graph cache; a Lambda cold start has no such cache, so its rows are measured without."""
    env = {**os.environ, OPTIMIZED_GRAPHS_ENV: "off"} if tier.kind == "lambda" else None
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        np.savez(data, images=images[: tier.batch_size], magnitudes=magnitudes[: tier.batch_size])
        bundle_path = bundle.path
        proc = subprocess.run(
            [sys.executable, "-c", _COLD_START, str(bundle_path), str(data), str(tier.threads_here()), str(tier.batch_size)],
            capture_output=True, text=True, check=True, env=env,
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(bundle: Bundle, tier: Tier, images: np.ndarray, magnitudes: np.ndarray) -> dict:
    predictor = Predictor(bundle, threads=tier.threads_here(), backend="onnxruntime")  # what every tier, Lambda included, runs
    sample = slice(0, max(tier.batch_size * 4, 512))
    return {
        "galaxies_per_s": throughput(predictor, images[sample], magnitudes[sample], tier.batch_size),
        "latency_ms_b1": latency_ms(predictor, images, magnitudes),
        **cold_start_and_rss(bundle, images, magnitudes, tier),
    }
