"""cai-edge's default Predictor against OpenVINO's hints on the same ``model.onnx``, in one process, interleaved.

Used by speed_targets.py (``compare_engines`` runs in a fresh process there). Per bundle, batch 256:
the default ``Predictor`` (preprocessing included, as users call it), the ``Predictor`` pinned to
ONNX Runtime and to each OpenVINO hint, and OpenVINO alone compiled from the bundle's verified model
by OpenVINO's own API, without cai-edge's code (``openvino_alone``), with its ``f32`` and ``bf16``
inference precision hints, each in its ``LATENCY`` and ``THROUGHPUT`` performance modes (on prepared
inputs); "OpenVINO's best hint" is the faster precision hint in OpenVINO's default (latency) mode, as
the issue that set the target measured it, and the fastest of all four is reported beside it. For the first bundle also batch 1, and the
default Predictor with one competing busy process.
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


def openvino_alone(bundle, image: np.ndarray, magnitude: np.ndarray, precision: str, mode: str, threads: int):
    """OpenVINO on the bundle's model as its own documentation runs it, without cai-edge's code: the ``LATENCY``
    hint (one request on all the threads), or ``THROUGHPUT`` (one stream per thread, the batch split over an
    ``AsyncInferQueue`` of as many requests)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(bundle.model_bytes, ov.Tensor(np.empty(0, np.uint8)))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
                                                 "PERFORMANCE_HINT": mode, **({"NUM_STREAMS": threads} if mode == "THROUGHPUT" else {})})
    if mode == "LATENCY":
        request = compiled.create_infer_request()
        return lambda n: request.infer({"image": image[:n], "magnitude": magnitude[:n]})
    queue = ov.AsyncInferQueue(compiled, threads)

    def run(n: int) -> None:
        edges = np.linspace(0, n, threads + 1).astype(int)
        for start, stop in zip(edges[:-1], edges[1:]):
            if stop > start:
                queue.start_async({"image": image[start:stop], "magnitude": magnitude[start:stop]})
        queue.wait_all()
    return run


def compare_engines(bundles: dict[str, str], data: str, rounds: int, seconds: float, threads: int) -> dict:
    """Galaxies/s (batch 256) and ms (batch 1) of each engine per bundle; medians over interleaved rounds."""
    from cai_edge.bundle import open_bundle
    from cai_edge.predictor import Predictor

    arrays = np.load(data, allow_pickle=False)
    crops, mags = arrays["crops"], arrays["mags"]
    try:
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
            for precision in ("f32", "bf16"):
                for mode in ("LATENCY", "THROUGHPUT"):
                    calls[f"OpenVINO {precision} hint, {mode.lower()}"] = openvino_alone(bundle, image, magnitude, precision, mode, threads)
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
            # OpenVINO's best precision hint in its default performance mode (latency), as the model loads with
            # core.compile_model(path, "CPU") and a hint; and its fastest configuration of any mode
            default_mode = {k: v for k, v in hints.items() if k.endswith("latency")}
            best, best_any = max(default_mode, key=default_mode.__getitem__), max(hints, key=hints.__getitem__)
            r["best_openvino"], r["best_openvino_any_mode"] = best, best_any
            r["default_over_best_openvino"] = r["median_b256_per_s"]["default Predictor"] / hints[best]
            r["default_over_best_openvino_any_mode"] = r["median_b256_per_s"]["default Predictor"] / hints[best_any]
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
