"""What the uncertainty and flags cost: throughput of the bare model call vs the full row estimate.

Side by side in one run, interleaved rounds, batch 256, the shipped default bundle on the rendered
validation split (SIMULATED images): ``Predictor.predict_prepared`` (redshift only, as before the
trust columns) against :func:`cai_edge.estimates.estimate` (redshift + flux check + calibrated
interval + domain flags), the path ``cai-edge predict`` and the Lambda handler take — with the
image-domain check (:mod:`cai_edge.image_domain`) and without it (the same bundle with its
``image_domain`` record left out), in alternating order, so the check's own cost is a paired ratio.

    python benchmarks/trust_overhead.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
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
    parser.add_argument("--bundle", default="default")
    args = parser.parse_args()
    from cai_edge.models.datasets import rendered_split

    data = rendered_split("validation", 0, args.galaxies)
    predictor = Predictor(args.bundle, threads=args.threads)
    records = list(records_from_arrays(Path("validation"), data.images, data.magnitudes, list(data.ids), data.z_spec))
    batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]
    with tempfile.TemporaryDirectory() as tmp:
        without = Predictor(_without_image_domain(predictor.bundle, Path(tmp) / "bundle"), threads=args.threads)
        for p in (predictor, without):
            estimate(p, batches[0], BATCH)  # warm-up
        times = {"model only": [], "model + uncertainty + flags": [], "same, without the image check": []}

        def run(name: str) -> None:
            t = time.perf_counter()
            for batch in batches:
                if name == "model only":
                    predictor.predict_prepared(np.stack([r.image for r in batch]), np.stack([r.magnitudes for r in batch]), BATCH)
                else:
                    estimate(predictor if name == "model + uncertainty + flags" else without, batch, BATCH)
            times[name].append(time.perf_counter() - t)

        for i in range(args.rounds):
            for name in (list(times) if i % 2 == 0 else list(times)[::-1]):
                run(name)
    ratios = [a / b for a, b in zip(times["model only"], times["model + uncertainty + flags"])]
    image = [a / b for a, b in zip(times["same, without the image check"], times["model + uncertainty + flags"])]
    result = {
        "machine": {"cpu": cpu_model(), "simd": simd_flags(), "threads": args.threads},
        "bundle": predictor.bundle.name, "galaxies": len(records), "batch": BATCH, "rounds": args.rounds,
        "galaxies_per_s": {k: len(records) / float(np.median(v)) for k, v in times.items()},
        "throughput_kept": {"median": float(np.median(ratios)), "min": float(min(ratios)), "max": float(max(ratios))},
        "throughput_kept_with_image_check": {"median": float(np.median(image)), "min": float(min(image)), "max": float(max(image))},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "trust_overhead.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


def _without_image_domain(bundle, out: Path) -> Path:
    """The same bundle with its image-domain record left out: a real bundle written to ``out``."""
    from cai_edge.bundle.writer import write_bundle_dir

    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("files", "image_domain")}
    return write_bundle_dir(out, manifest, dict(bundle.files))


if __name__ == "__main__":
    raise SystemExit(main())
