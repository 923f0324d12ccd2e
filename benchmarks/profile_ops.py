"""Where a model call's time goes: ONNX Runtime's own per-op profile, grouped by op type and by graph region.

    python benchmarks/profile_ops.py [--fp32 BUNDLE] [--batches 256 1] [--runs 5] [--threads 2]

Each bundle (the shipped int8 default, and the fp32 bundle when one is found) runs in a session
built as cai-edge builds it (same options, the bundle's verified ``model.onnx``) with ONNX
Runtime's profiler on (``SessionOptions.enable_profiling``). The first call is a warm-up and is
left out; the kernel times of the following ``--runs`` calls are summed per op type and per
region of the graph, and divided by the calls. The preprocessing cai-edge does in numpy before
each call (``Preprocessing.network_inputs``) is timed beside it on the same galaxies.

Regions: Q/DQ (Quantize/DequantizeLinear), weight GEMMs (the Linear layers, integer or float),
attention MatMul (the per-head score and value products) and Softmax, layout ops (transposes,
reshapes, splits, concats, NCHWc reorders), adds (residual and bias), LayerNorm and GELU,
convolutions and pools (the Inception branch), other. The profiler's own overhead is a few
percent; shares are what to read, absolute times are the profiled session's. Inputs are
rendered validation galaxies (simulated images of real SDSS galaxies).
Writes benchmarks/results/profile_ops.{json,md}.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from common import profile_setup, save_profiles

QDQ = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
INT8_GEMMS = {"MatMulIntegerToFloat", "MatMulInteger", "QGemm", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulNBits"}
FLOAT_GEMMS = {"MatMul", "FusedMatMul", "Gemm", "FusedGemm"}
LAYOUT = {"Transpose", "Reshape", "Split", "Concat", "Slice", "Gather", "Squeeze", "Unsqueeze", "Expand", "Shape",
          "Flatten", "ReorderInput", "ReorderOutput", "Identity", "Cast"}
NORM_GELU = {"LayerNormalization", "SkipLayerNormalization", "BiasGelu", "Gelu", "FastGelu", "Erf"}
CONV_POOL = {"Conv", "FusedConv", "QLinearConv", "ConvInteger", "MaxPool", "AveragePool", "GlobalAveragePool", "Relu"}
REGIONS = ("Q/DQ", "weight GEMMs", "attention MatMul (per head)", "attention Softmax", "layout (transpose/reshape/split/concat/reorder)",
           "adds (residual, bias)", "LayerNorm + GELU", "convolutions + pools", "other")


def region(op: str, node: str) -> str:
    """The graph region a profiled node belongs to, from its op type and (for MatMuls) its name."""
    if op in QDQ:
        return "Q/DQ"
    if op in INT8_GEMMS:
        return "weight GEMMs"
    if op in FLOAT_GEMMS:
        # the per-head products are named /blocks.N/attn/MatMul, MatMul_1 …; the weight layers qkv/proj/fc1/fc2/Gemm
        return "attention MatMul (per head)" if "/attn/MatMul" in node else "weight GEMMs"
    if op == "Softmax":
        return "attention Softmax"
    if op in LAYOUT:
        return "layout (transpose/reshape/split/concat/reorder)"
    if op == "Add":
        return "adds (residual, bias)"
    if op in NORM_GELU:
        return "LayerNorm + GELU"
    if op in CONV_POOL:
        return "convolutions + pools"
    return "other"


def profile_session(model: bytes, feed: dict, threads: int, runs: int) -> dict:
    """Kernel time per call (ms) by op type and by region, calls per op type, and the wall time of each call."""
    from cai_edge.session import _session_options

    with tempfile.TemporaryDirectory() as tmp:
        options = _session_options(threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            session.run(["redshift"], feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    calls = sorted((e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"), key=lambda e: e["ts"])
    if len(calls) != runs + 1:
        raise RuntimeError(f"the profile holds {len(calls)} model runs, expected {runs + 1}")
    after_warmup = calls[1]["ts"]
    by_op: dict[str, float] = defaultdict(float)
    by_region: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < after_warmup:
            continue
        op = e["args"]["op_name"]
        by_op[op] += e["dur"] / 1000 / runs
        by_region[region(op, e["name"])] += e["dur"] / 1000 / runs
        count[op] += 1
    return {
        "kernel_ms": sum(by_op.values()),
        "call_ms": [c["dur"] / 1000 for c in calls[1:]],
        "by_op_ms": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
        "by_region_ms": {r: by_region.get(r, 0.0) for r in REGIONS},
        "calls_per_run": {op: n // runs for op, n in count.items()},
    }


def preprocessing_ms(preprocessing, images: np.ndarray, magnitudes: np.ndarray, repeats: int) -> float:
    """Median time of the numpy preprocessing cai-edge does before each model call."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        preprocessing.network_inputs(images, magnitudes)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def profile_bundle(bundle, images: np.ndarray, magnitudes: np.ndarray, batch: int, threads: int, runs: int) -> dict:
    """The profile of one bundle at one batch size, with its preprocessing time added as its own region."""
    imgs, mags = images[:batch], magnitudes[:batch]
    image, magnitude = bundle.preprocessing.network_inputs(imgs, mags)
    result = profile_session(bundle.model_bytes, {"image": image, "magnitude": magnitude}, threads, runs)
    result["preprocessing_ms"] = preprocessing_ms(bundle.preprocessing, imgs, mags, max(runs, 5))
    result.update(bundle=bundle.name, batch=batch, threads=threads, runs=runs)
    return result


def markdown(profiles: list[dict]) -> str:
    """One table of region shares (a column per bundle and batch), then the top op types of each."""
    head = [f"{p['bundle']} b{p['batch']}" for p in profiles]
    lines = ["| region | " + " | ".join(head) + " |", "|---|" + "---|" * len(profiles)]
    totals = [p["kernel_ms"] + p["preprocessing_ms"] for p in profiles]
    for name in (*REGIONS, "preprocessing (numpy)"):
        cells = []
        for p, total in zip(profiles, totals):
            ms = p["preprocessing_ms"] if name == "preprocessing (numpy)" else p["by_region_ms"][name]
            cells.append(f"{ms:.2f} ms ({100 * ms / total:.1f} %)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **total** (kernels + preprocessing) | " + " | ".join(f"**{t:.2f} ms**" for t in totals) + " |")
    lines.append("| model call, wall (median) | " + " | ".join(f"{statistics.median(p['call_ms']):.2f} ms" for p in profiles) + " |")
    lines += ["", "Top op types (ms per call, calls per call):", ""]
    for p in profiles:
        top = list(p["by_op_ms"].items())[:8]
        lines.append(f"- {p['bundle']} batch {p['batch']}: " + ", ".join(f"{op} {ms:.2f} ({p['calls_per_run'][op]})" for op, ms in top))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args, bundles, data, load_before = profile_setup(__doc__.splitlines()[0], argv)
    profiles = [profile_bundle(b, data.images, data.magnitudes, batch, args.threads, args.runs) for b in bundles for batch in args.batches]
    save_profiles("profile_ops", args, profiles, markdown(profiles), load_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
