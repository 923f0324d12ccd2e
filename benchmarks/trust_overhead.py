"""What the uncertainty and flags cost: throughput of the bare model call vs the full row estimate.

Side by side in one run, interleaved rounds, batch 256, the shipped default bundle on the rendered
validation split (SIMULATED images): ``Predictor.predict_prepared`` (redshift only, as before the
trust columns) against :func:`cai_edge.estimates.estimate` (redshift + flux check + calibrated
interval + domain flags), the path ``cai-edge predict`` and the Lambda handler take.

    python benchmarks/trust_overhead.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cai_edge.estimates import estimate
from cai_edge.io.npz_partitions import records_from_arrays
from cai_edge.machine import cpu_model, simd_flags
from cai_edge.predictor import Predictor

BATCH = 256
RESULTS = Path(__file__).with_name("results")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--galaxies", type=int, default=2048)
    args = parser.parse_args()
    from cai_edge.models.datasets import rendered_split

    data = rendered_split("validation").subset(slice(0, args.galaxies))
    predictor = Predictor("default", threads=args.threads)
    records = list(records_from_arrays(Path("validation"), data.images, data.magnitudes, list(data.ids), data.z_spec))
    batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]
    predictor.predict_prepared(data.images[:BATCH], data.magnitudes[:BATCH])  # warm-up
    times = {"model only": [], "model + uncertainty + flags": []}
    for _ in range(args.rounds):
        t = time.perf_counter()
        for batch in batches:
            predictor.predict_prepared(np.stack([r.image for r in batch]), np.stack([r.magnitudes for r in batch]), BATCH)
        times["model only"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for batch in batches:
            estimate(predictor, batch, BATCH)
        times["model + uncertainty + flags"].append(time.perf_counter() - t)
    ratios = [a / b for a, b in zip(times["model only"], times["model + uncertainty + flags"])]
    result = {
        "machine": {"cpu": cpu_model(), "simd": simd_flags(), "threads": args.threads},
        "bundle": predictor.bundle.name, "galaxies": len(records), "batch": BATCH, "rounds": args.rounds,
        "galaxies_per_s": {k: len(records) / float(np.median(v)) for k, v in times.items()},
        "throughput_kept": {"median": float(np.median(ratios)), "min": float(min(ratios)), "max": float(max(ratios))},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "trust_overhead.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
