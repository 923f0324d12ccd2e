"""Bundle variants against the PyTorch eager model (the CAI inference path), side by side, in one run.

    python benchmarks/bundle_speed.py --bundles DIR   (DIR holds astromae-sdss-{fp32,fp16,int8-dynamic,int8}/)

fp32, fp16, int8-dynamic and int8-static ONNX, and PyTorch eager fp32 from the reference weights,
at batch 1, 64 and 256 with 1 and 2 threads: galaxies/s, latency per batch, session (or model)
load time, peak RSS, file size. Each cell runs in a fresh process. Inputs are rendered validation
galaxies (simulated images of real SDSS galaxies). Writes benchmarks/results/bundle_speed.{json,md}.
Targets at batch 256, 2 threads: int8-static ≥ 4× and fp32 ONNX ≥ 2× PyTorch eager fp32.

A shared 2-core VM drifts by ±15 % within minutes, so a single pass can put the baseline and a
variant in different weather. The run is repeated ``--rounds`` times; within a round every model
runs the cell back to back, each ratio is taken against the eager run of the same round, and the
tables report medians (galaxies/s and ratio) with the ratio's range over rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from common import run_json, save

VARIANTS = {"fp32": "astromae-sdss-fp32", "fp16": "astromae-sdss-fp16", "int8-dynamic": "astromae-sdss-int8-dynamic", "int8-static": "astromae-sdss-int8"}
BATCHES = (1, 64, 256)
THREADS = (1, 2)
SECONDS = 3.0

_CELL = r"""
import json, sys
import time
from cai_edge.machine import peak_rss_mb
kind, path, batch, threads, seconds, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
import numpy as np
arrays = np.load(data, allow_pickle=False)
images, mags = arrays["image"][:batch], arrays["magnitude"][:batch]
t0 = time.perf_counter()
if kind == "torch":
    import torch
    torch.set_num_threads(threads)
    from cai_edge.models.reference import load_reference_with_preprocessing
    model, _ = load_reference_with_preprocessing(path)
    x, m = torch.from_numpy(images), torch.from_numpy(mags)
    def run():
        with torch.no_grad():
            return model(x, m)
else:  # "onnx": ONNX Runtime as cai-edge builds its session; "default": the engine a default Predictor runs
    from cai_edge.backends import create_backend_session
    from cai_edge.bundle import open_bundle
    session, backend = create_backend_session(open_bundle(path), threads, backend="onnxruntime" if kind == "onnx" else "auto")
    feed = {"image": images, "magnitude": mags}
    def run():
        return session.run(["redshift"], feed)
load_s = time.perf_counter() - t0
run()
times = []
start = time.perf_counter()
while time.perf_counter() - start < seconds or len(times) < 5:
    t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
elapsed = sum(times)
print(json.dumps({"galaxies_per_s": batch * len(times) / elapsed, "latency_ms": 1000 * sorted(times)[len(times) // 2],
                  "load_s": load_s, "peak_rss_mb": peak_rss_mb(), "backend": "torch" if kind == "torch" else backend}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", required=True, help="folder with the four bundle directories")
    parser.add_argument("--weights", help="reference weights for the PyTorch baseline (default: the shipped ones)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians are reported (default 3)")
    args = parser.parse_args()

    import numpy as np

    from cai_edge.bundle import open_bundle
    from cai_edge.models.datasets import rendered_split
    from cai_edge.models.reference import REFERENCE_WEIGHTS

    fp32 = open_bundle(Path(args.bundles) / VARIANTS["fp32"])
    data = rendered_split("validation", 0, 256)
    image, magnitude = fp32.preprocessing.network_inputs(data.images, data.magnitudes)
    data_path = Path(args.bundles) / "bench-inputs.npz"
    np.savez(data_path, image=image, magnitude=magnitude)
    weights = Path(args.weights or REFERENCE_WEIGHTS)

    models = [("pytorch-eager-fp32", "torch", str(weights), weights.stat().st_size)]
    for variant, name in VARIANTS.items():
        path = Path(args.bundles) / name
        if path.exists():
            models.append((f"onnx-{variant}", "onnx", str(path), open_bundle(path).size_bytes))
    load_before = os.getloadavg()
    runs: dict[tuple[str, int, int], list[dict]] = {}
    for round_no in range(args.rounds):
        for threads in THREADS:
            for batch in BATCHES:
                for label, kind, path, _ in models:
                    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                    result = run_json(_CELL, kind, path, str(batch), str(threads), str(SECONDS), str(data_path), env=env)
                    runs.setdefault((label, threads, batch), []).append(result)
                    print(f"round {round_no + 1} {label:22s} threads {threads} batch {batch:3d}: {result['galaxies_per_s']:8.1f} galaxies/s")
    os.unlink(data_path)
    cells = []
    for label, _, _, size in models:
        for threads in THREADS:
            for batch in BATCHES:
                mine, eager = runs[(label, threads, batch)], runs[("pytorch-eager-fp32", threads, batch)]
                ratios = [m["galaxies_per_s"] / e["galaxies_per_s"] for m, e in zip(mine, eager)]
                cells.append({
                    "model": label, "threads": threads, "batch": batch, "size_mb": size / 1e6,
                    **{key: statistics.median(r[key] for r in mine) for key in mine[0]},
                    "speedup_vs_eager": statistics.median(ratios), "speedup_range": [min(ratios), max(ratios)],
                    "rounds": mine,
                })
    rows = ["| model | threads | batch | galaxies/s | × eager (range) | latency/batch (ms) | load (s) | peak RSS (MB) | size (MB) |",
            "|---|---|---|---|---|---|---|---|---|"]
    rows += [f"| {c['model']} | {c['threads']} | {c['batch']} | {c['galaxies_per_s']:.0f} | "
             f"{c['speedup_vs_eager']:.2f} ({c['speedup_range'][0]:.2f}–{c['speedup_range'][1]:.2f}) | "
             f"{c['latency_ms']:.1f} | {c['load_s']:.2f} | {c['peak_rss_mb']:.0f} | {c['size_mb']:.1f} |" for c in cells]
    key = {c["model"]: c["speedup_vs_eager"] for c in cells if c["threads"] == 2 and c["batch"] == 256}
    targets = {
        "int8_static_vs_eager_b256_t2": key.get("onnx-int8-static"), "int8_static_target": 4.0,
        "fp32_onnx_vs_eager_b256_t2": key.get("onnx-fp32"), "fp32_onnx_target": 2.0,
    }
    summary = (f"\n\nMedians of {args.rounds} interleaved rounds; load average {load_before[0]:.2f} before, "
               f"{os.getloadavg()[0]:.2f} after.")
    summary += (f" At batch 256, 2 threads: int8-static {targets['int8_static_vs_eager_b256_t2']:.2f}× eager (target ≥ 4×), "
               f"fp32 ONNX {targets['fp32_onnx_vs_eager_b256_t2']:.2f}× eager (target ≥ 2×). Inputs: rendered validation galaxies "
               "(simulated images of real SDSS galaxies).")
    save("bundle_speed", {"rounds": args.rounds, "load_average_before": load_before, "cells": cells, "targets": targets}, "\n".join(rows) + summary)


if __name__ == "__main__":
    main()
