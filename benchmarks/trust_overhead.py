"""What the uncertainty and flags cost: throughput of the bare model call vs the full row estimate.

Side by side in one run, interleaved rounds, batch 256, the shipped default bundle on the rendered
validation split (SIMULATED images): ``Predictor.predict_prepared`` (redshift only, as before the
trust columns) against :func:`cai_edge.estimates.estimate` (redshift + flux check + calibrated
interval + domain flags), the path ``cai-edge predict`` and the Lambda handler take — with the
image-domain check (:mod:`cai_edge.image_domain`) and without it (the same bundle with its
``image_domain`` record left out), in alternating order, so the check's own cost is a paired ratio.
Then the same at batch 1: single-galaxy calls with and without the check, interleaved call by call;
the paired difference is what the check adds to one call's latency. With and without the check run
on one ONNX Runtime session (the bundle without its image reference has the same model): two
sessions called in turn evict each other's weights from the cache, which moved a single call by
±0.2 ms either way and buried the check's own cost.

    python benchmarks/trust_overhead.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from cai_edge.bundle import resolve_bundle
from cai_edge.estimates import estimate
from cai_edge.io.npz_partitions import records_from_arrays
from cai_edge.machine import cpu_model, simd_flags
from cai_edge.predictor import Predictor

BATCH = 256
SINGLE_CALLS = 200  # single-galaxy calls per block of the batch-1 measurement
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
        without = _same_session(predictor, _without_image_domain(predictor.bundle, Path(tmp) / "bundle"))
        for p in (predictor, without):
            estimate(p, batches[0], BATCH)  # warm-up
        times = {"model only": [], "model + uncertainty + flags": [], "same, without the image check": []}

        def run(name: str, batch: list) -> float:
            t = time.perf_counter()
            if name == "model only":
                predictor.predict_prepared(np.stack([r.image for r in batch]), np.stack([r.magnitudes for r in batch]), BATCH)
            else:
                estimate(predictor if name == "model + uncertainty + flags" else without, batch, BATCH)
            return time.perf_counter() - t

        # interleaved batch by batch, not run by run: this VM's speed drifts by 10-20 % within seconds, which pairs of
        # whole passes (2 s each) did not cancel
        for i in range(args.rounds):
            spent = dict.fromkeys(times, 0.0)
            for k, batch in enumerate(batches):
                for name in (list(times) if (i + k) % 2 == 0 else list(times)[::-1]):
                    spent[name] += run(name, batch)
            for name, seconds in spent.items():
                times[name].append(seconds)
        single = _batch_one(predictor, without, records[:SINGLE_CALLS], args.rounds)
    ratios = [a / b for a, b in zip(times["model only"], times["model + uncertainty + flags"])]
    image = [a / b for a, b in zip(times["same, without the image check"], times["model + uncertainty + flags"])]
    result = {
        "machine": {"cpu": cpu_model(), "simd": simd_flags(), "threads": args.threads},
        "bundle": predictor.bundle.name, "galaxies": len(records), "batch": BATCH, "rounds": args.rounds,
        "galaxies_per_s": {k: len(records) / float(np.median(v)) for k, v in times.items()},
        "throughput_kept": {"median": float(np.median(ratios)), "min": float(min(ratios)), "max": float(max(ratios))},
        "throughput_kept_with_image_check": {"median": float(np.median(image)), "min": float(min(image)), "max": float(max(image))},
        "batch_1": single,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "trust_overhead.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


def _batch_one(predictor, without, records: list, rounds: int) -> dict:
    """Single-galaxy ``estimate`` calls (an alert broker's), with and without the image check, in interleaved blocks.

    Each round runs every galaxy once each way, call by call; the paired difference of a round's two
    totals is what the image check adds to one call.
    """
    blocks: dict[str, list[float]] = {"with": [], "without": []}
    for i in range(rounds):
        spent = {"with": 0.0, "without": 0.0}
        for k, r in enumerate(records):  # call by call, alternating which goes first
            for name in (("with", "without") if (i + k) % 2 == 0 else ("without", "with")):
                t = time.perf_counter()
                estimate(predictor if name == "with" else without, [r], 1)
                spent[name] += time.perf_counter() - t
        for name, seconds in spent.items():
            blocks[name].append(seconds / len(records) * 1e3)
    added = [a - b for a, b in zip(blocks["with"], blocks["without"])]
    return {"calls_per_block": len(records), "ms_per_call": {k: float(np.median(v)) for k, v in blocks.items()},
            "image_check_adds_ms": {"median": float(np.median(added)), "min": float(min(added)), "max": float(max(added))}}


def _same_session(predictor: Predictor, bundle_path: Path) -> Predictor:
    """``predictor`` with another bundle of the same model (checked): its session shared, only the records differ."""
    other = resolve_bundle(bundle_path)
    if other.sha256 != predictor.bundle.sha256:
        raise ValueError("the bundles' models differ: a session cannot be shared")
    shared = object.__new__(Predictor)
    shared.__dict__.update(vars(predictor))
    shared.bundle = other
    return shared


def _without_image_domain(bundle, out: Path) -> Path:
    """The same bundle with its image-domain record left out: a real bundle written to ``out``."""
    from cai_edge.bundle.writer import write_bundle_dir

    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("files", "image_domain")}
    return write_bundle_dir(out, manifest, dict(bundle.files))


if __name__ == "__main__":
    raise SystemExit(main())
