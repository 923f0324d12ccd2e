"""cai-edge's default Predictor against OpenVINO's hints on the same ``model.onnx``, in one process, interleaved.

Used by speed_targets.py (``compare_engines`` runs in a fresh process there). Per bundle, batch 256:
the default ``Predictor`` (preprocessing included, as users call it), the ``Predictor`` pinned to
ONNX Runtime and to each OpenVINO hint, and OpenVINO compiled from the bundle's verified model with
its ``f32`` and ``bf16`` inference precision hints (the engine alone, on prepared inputs); for the
first bundle also batch 1, and the default Predictor with one competing busy process.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from thread_spinning import Competitor

HINTS = ("openvino", "openvino-bf16")


def _seconds_per_call(run, seconds: float) -> float:
    run()
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def compare_engines(bundles: dict[str, str], data: str, rounds: int, seconds: float, threads: int) -> dict:
    """Galaxies/s (batch 256) and ms (batch 1) of each engine per bundle; medians over interleaved rounds."""
    from cai_edge.bundle import open_bundle
    from cai_edge.predictor import Predictor

    arrays = np.load(data, allow_pickle=False)
    crops, mags = arrays["crops"], arrays["mags"]
    try:
        from cai_edge.openvino_session import OpenVINOSession
        import openvino  # noqa: F401
        have_openvino = True
    except ImportError:
        have_openvino = False
    timed: dict[str, dict] = {}
    result: dict = {"openvino_installed": have_openvino, "bundles": {}}
    for label, path in bundles.items():
        bundle = open_bundle(path)
        default = Predictor(bundle, threads=threads)
        ort_only = Predictor(bundle, threads=threads, backend="onnxruntime")
        image, magnitude = bundle.preprocessing.network_inputs(crops, mags)
        calls = {"default Predictor": lambda n, p=default: p.predict_prepared(crops[:n], mags[:n], batch_size=n),
                 "Predictor(backend='onnxruntime')": lambda n, p=ort_only: p.predict_prepared(crops[:n], mags[:n], batch_size=n)}
        if have_openvino:
            for hint in HINTS:  # the whole Predictor on OpenVINO too: preprocessing and all, as users would run it
                pinned = Predictor(bundle, threads=threads, backend=hint)
                calls[f"Predictor(backend='{hint}')"] = lambda n, p=pinned: p.predict_prepared(crops[:n], mags[:n], batch_size=n)
            for hint in HINTS:
                session = OpenVINOSession(bundle, threads, hint)
                calls[f"OpenVINO {session.precision} hint"] = (
                    lambda n, s=session: s.run(["redshift"], {"image": image[:n], "magnitude": magnitude[:n]}))
        timed[label] = calls
        result["bundles"][label] = {"default_backend": default.backend, "b256_per_s": {k: [] for k in calls}, "b1_ms": {k: [] for k in calls}}
    first = next(iter(bundles))
    competing: list[float] = []
    for _ in range(rounds):
        for label, calls in timed.items():
            for name, call in calls.items():
                result["bundles"][label]["b256_per_s"][name].append(256 / _seconds_per_call(lambda: call(256), seconds))
                if label == first:
                    result["bundles"][label]["b1_ms"][name].append(1000 * _seconds_per_call(lambda: call(1), seconds / 3))
        with Competitor():
            competing.append(256 / _seconds_per_call(lambda: timed[first]["default Predictor"](256), seconds))
    for label, r in result["bundles"].items():
        r["median_b256_per_s"] = {k: statistics.median(v) for k, v in r["b256_per_s"].items()}
        r["median_b1_ms"] = {k: statistics.median(v) for k, v in r["b1_ms"].items() if v}
        hints = {k: v for k, v in r["median_b256_per_s"].items() if k.startswith("OpenVINO")}
        if hints:
            best = max(hints, key=hints.__getitem__)
            r["best_openvino"] = best
            r["default_over_best_openvino"] = r["median_b256_per_s"]["default Predictor"] / hints[best]
            r["onnxruntime_over_best_openvino"] = r["median_b256_per_s"]["Predictor(backend='onnxruntime')"] / hints[best]
    quiet = result["bundles"][first]["median_b256_per_s"]["default Predictor"]
    result["competing_per_s"] = competing
    result["competing_over_quiet"] = statistics.median(competing) / quiet
    return result


CODE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from engines import compare_engines
print(json.dumps(compare_engines(json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]))))
"""
BENCHMARKS = str(Path(__file__).resolve().parent)
