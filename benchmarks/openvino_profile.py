"""Where OpenVINO's time goes on cai-edge's graph: its own per-node profile, grouped by region and by the precision each kernel ran in.

    python benchmarks/openvino_profile.py [--fp32 BUNDLE] [--batches 256 1] [--runs 5] [--threads 2]

Where the ``openvino`` extra is installed the default engine (``auto``) usually runs the model on
OpenVINO, so this is the profile of what users run; ``benchmarks/profile_ops.py`` is ONNX
Runtime's. Each bundle is compiled exactly as :class:`cai_edge.openvino_session.OpenVINOSession`
compiles it for the engine ``auto`` chose on this machine (precision hint, threads, throughput
streams for a batch, latency for fewer galaxies than threads), plus ``PERF_COUNT``, and run as the
session runs it (the batch split over one request per stream). After a warm-up call, the nodes'
own times of ``--runs`` calls are summed over the requests and divided by the calls: for a batch
run on single-threaded streams that is thread-time (two streams: about twice the wall time); for
one galaxy (one request on all threads) it is the nodes' wall time. Counting every node costs
time of its own, most at batch 1: read the shares.

Regions follow the graph OpenVINO executes after its fusions: int8 GEMMs (``FullyConnected``
nodes running an ``I8`` kernel), other GEMMs, attention (the fused per-head ``Subgraph``s under
``/attn/``), other fused elementwise subgraphs (GELU, Q/DQ arithmetic), LayerNorm (``MVN``),
convolutions and pools (the Inception branch), split/concat/layout, elementwise, other. A kernel
whose type starts with ``ref`` is OpenVINO's reference (not JIT-compiled) implementation. The GEMMs'
time is also split between the ViT blocks' (17 rows a galaxy) and the dense layers after the encoder
(the magnitude MLP, the Inception and ViT heads, the concat block: one row a galaxy, ~10 MB of int8
weights read once per call), which differ most at batch 1. Inputs are
rendered validation galaxies (simulated images of real SDSS galaxies).
Writes benchmarks/results/openvino_profile.{json,md}.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import numpy as np

from common import profile_setup, save_profiles

GEMM_REGIONS = ("int8 GEMMs", "other GEMMs")
REGIONS = (*GEMM_REGIONS, "attention (fused per-head subgraphs)", "other fused subgraphs (GELU, Q/DQ)",
           "LayerNorm (MVN)", "convolutions + pools", "split/concat/layout", "elementwise", "other")
LAYOUT = {"VariadicSplit", "Split", "Concat", "Reorder", "Transpose", "Reshape", "Slice", "StridedSlice", "Gather",
          "Broadcast", "ShapeOf", "Squeeze", "Unsqueeze"}
ELEMENTWISE = {"Add", "MulAdd", "Multiply", "Subtract", "Divide", "PowerStatic", "Eltwise", "Select", "FakeQuantize",
               "ReduceMean", "Convert"}


def region(node_type: str, exec_type: str, name: str) -> str:
    """The region of one executed node, from OpenVINO's node type, kernel type and node name."""
    if node_type.startswith(("FullyConnected", "MatMul")):
        return "int8 GEMMs" if exec_type.endswith("_I8") else "other GEMMs"
    if node_type == "Subgraph":
        return "attention (fused per-head subgraphs)" if "/attn/" in name else "other fused subgraphs (GELU, Q/DQ)"
    if node_type == "MVN":
        return "LayerNorm (MVN)"
    if node_type in ("Convolution", "MaxPool", "AvgPool", "Pooling"):
        return "convolutions + pools"
    if node_type in LAYOUT:
        return "split/concat/layout"
    if node_type in ELEMENTWISE:
        return "elementwise"
    return "other"


def gemm_part(name: str) -> str:
    """Which GEMMs a GEMM node belongs to: the ViT blocks' (17 rows a galaxy) or the dense layers around them (one row)."""
    return "ViT blocks (17 rows a galaxy)" if name.startswith("/blocks.") else "dense layers (1 row a galaxy)"


def precision(exec_type: str) -> str:
    """The precision a kernel ran in (its type's last part: I8, bf16, f32 …)."""
    return exec_type.rsplit("_", 1)[-1].lower() if "_" in exec_type else exec_type


def profile_bundle(bundle, images: np.ndarray, magnitudes: np.ndarray, batch: int, threads: int, runs: int, backend: str) -> dict:
    """OpenVINO's per-node profile of ``bundle`` on ``backend`` at one batch size (see the module docstring)."""
    import openvino as ov

    from cai_edge.openvino_session import OpenVINOSession

    session = OpenVINOSession(bundle, threads, backend)
    kind = session._kind(batch)
    config = {**session._config(kind), "PERF_COUNT": True}
    core = ov.Core()
    compiled = core.compile_model(core.read_model(bundle.model_bytes, ov.Tensor(np.empty(0, np.uint8))), "CPU", config)
    requests = [compiled.create_infer_request() for _ in range(session.streams if kind == "batched" else 1)]
    image, magnitude = bundle.preprocessing.network_inputs(images[:batch], magnitudes[:batch])
    edges = np.linspace(0, batch, len(requests) + 1).astype(int)
    by_region: dict[str, float] = defaultdict(float)
    by_type: dict[str, float] = defaultdict(float)
    by_precision: dict[str, float] = defaultdict(float)
    reference: dict[str, float] = defaultdict(float)
    gemms: dict[str, float] = defaultdict(float)
    walls = []
    for call in range(runs + 1):
        start = time.perf_counter()
        for request, a, b in zip(requests, edges[:-1], edges[1:]):
            request.start_async({"image": image[a:b], "magnitude": magnitude[a:b]})
        for request in requests:
            request.wait()
        if call == 0:  # warm-up
            continue
        walls.append(1000 * (time.perf_counter() - start))
        for request in requests:
            for node in request.profiling_info:
                if node.status != node.Status.EXECUTED:
                    continue
                ms = node.real_time.total_seconds() * 1000 / runs
                where = region(node.node_type, node.exec_type, node.node_name)
                by_region[where] += ms
                if where in GEMM_REGIONS:
                    gemms[gemm_part(node.node_name)] += ms
                by_type[node.node_type] += ms
                by_precision[precision(node.exec_type)] += ms
                if node.exec_type.startswith("ref"):
                    reference[f"{node.node_type} ({node.exec_type})"] += ms
    return {
        "bundle": bundle.name, "backend": backend, "precision_hint": session.precision, "mode": kind, "requests": len(requests),
        "batch": batch, "threads": threads, "runs": runs, "node_ms": sum(by_type.values()), "call_ms": walls,
        "by_region_ms": {r: by_region.get(r, 0.0) for r in REGIONS},
        "by_node_type_ms": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
        "by_precision_ms": dict(sorted(by_precision.items(), key=lambda kv: -kv[1])),
        "reference_kernels_ms": dict(sorted(reference.items(), key=lambda kv: -kv[1])),
        "gemms_by_part_ms": dict(gemms),
    }


def markdown(profiles: list[dict]) -> str:
    """Region shares (a column per bundle and batch), then precisions, top node types and reference kernels."""
    head = [f"{p['bundle']} b{p['batch']} ({p['backend']})" for p in profiles]
    lines = ["| region (node time per call) | " + " | ".join(head) + " |", "|---|" + "---|" * len(profiles)]
    for name in REGIONS:
        lines.append(f"| {name} | " + " | ".join(f"{p['by_region_ms'][name]:.2f} ms ({100 * p['by_region_ms'][name] / p['node_ms']:.1f} %)"
                                                 for p in profiles) + " |")
    lines.append("| **all nodes** | " + " | ".join(f"**{p['node_ms']:.2f} ms**" for p in profiles) + " |")
    lines.append("| requests × threads each | " + " | ".join(f"{p['requests']} × {p['threads'] // p['requests'] if p['mode'] == 'batched' else p['threads']}"
                                                        for p in profiles) + " |")
    lines.append("| call, wall (median) | " + " | ".join(f"{statistics.median(p['call_ms']):.2f} ms" for p in profiles) + " |")
    lines += ["", "Kernel precision (share of node time), top node types (ms), reference kernels:", ""]
    for p in profiles:
        shares = ", ".join(f"{k} {100 * v / p['node_ms']:.0f} %" for k, v in p["by_precision_ms"].items() if v >= 0.005 * p["node_ms"])
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(p["by_node_type_ms"].items())[:8])
        ref = ", ".join(f"{k} {v:.2f}" for k, v in p["reference_kernels_ms"].items() if v >= 0.01) or "none above 0.01 ms"
        parts = ", ".join(f"{k} {v:.2f}" for k, v in p["gemms_by_part_ms"].items())
        lines.append(f"- {p['bundle']} batch {p['batch']}: precision {shares}; nodes {top}; reference kernels {ref}; GEMMs {parts}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args, bundles, data, load_before = profile_setup(__doc__.splitlines()[0], argv)
    from cai_edge.backends import create_backend_session

    profiles = []
    for bundle in bundles:
        chosen = create_backend_session(bundle, args.threads, backend="auto")[1]  # what `auto` runs here (probed once, cached)
        backend = chosen if chosen.startswith("openvino") else "openvino"
        profiles += [profile_bundle(bundle, data.images, data.magnitudes, batch, args.threads, args.runs, backend) for batch in args.batches]
    save_profiles("openvino_profile", args, profiles, markdown(profiles), load_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
