"""Issue 34, item 2: graph changes against the shipped graphs, side by side. Measured; none shipped yet.

    python benchmarks/graph_variants.py [--fp32 BUNDLE] [--variant BUNDLE ...] [--rounds 9] [--threads 2]

* **Fused attention.** The shipped graphs compute each ViT block's attention head by head: the
  qkv output split into 9 slices, 3 × (MatMul, Softmax, MatMul), a Concat (``models/vit.py``
  exports it so, because the batched form's 5-D transposes cost more in ONNX Runtime). This script
  rewrites each block's part between the Split and the Concat into ONNX Runtime's fused
  ``com.microsoft.MultiHeadAttention`` (q, k, v as three slices of the same qkv output, 3 heads; the
  same scaled dot products), for the int8 default and the fp32 bundle (when found). The fused op is
  ONNX Runtime's own (OpenVINO cannot read it), so it could only ship as an ONNX Runtime-only graph.
* **Other bundles** (``--variant``), timed against the shipped int8 default: for example integer
  convolutions, ``cai-edge quantize FP32 --to int8-static --out DIR`` (without ``--float-convs``,
  with which the default is built).

Every graph runs in a session with cai-edge's options (threads, no spinning, full optimization), at
batch 256 and 1, in interleaved rounds, with the largest |Δz| against the graph it replaces.
Inputs: rendered validation galaxies (SIMULATED images of real SDSS galaxies). Needs ``onnx`` (the
``export`` extra). Writes results/graph_variants.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from common import save

HEADS = 3


def fuse_attention(proto, heads: int = HEADS):
    """A copy of ``proto`` with each ``/blocks.N/attn/`` Split…Concat replaced by Split(q, k, v) + MultiHeadAttention.

    Returns the new model and how many blocks were rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    graph = proto.graph
    nodes = list(graph.node)
    splits = [n for n in nodes if n.op_type == "Split" and n.name.endswith("/attn/Split") and len(n.output) == 3 * heads]
    replaced: dict[str, list] = {}
    removed: set[str] = set()
    widths = _widths(proto)
    for split in splits:
        prefix = split.name[: -len("Split")]
        concat = next(n for n in nodes if n.name.startswith(prefix) and n.op_type == "Concat" and len(n.input) == heads)
        between = _between(nodes, split, concat)
        width = widths[split.input[0]] // 3
        sizes = numpy_helper.from_array(np.array([width] * 3, dtype=np.int64), f"{prefix}fused_split_sizes")
        graph.initializer.append(sizes)
        q, k, v = (f"{prefix}fused_{t}" for t in "qkv")
        replaced[concat.name] = [
            helper.make_node("Split", [split.input[0], sizes.name], [q, k, v], name=f"{prefix}fused_split", axis=-1),
            helper.make_node("MultiHeadAttention", [q, k, v], [concat.output[0]], name=f"{prefix}fused_attention",
                             domain="com.microsoft", num_heads=heads),
        ]
        removed |= between
    kept = []
    for node in nodes:
        kept.extend(replaced.get(node.name, []))
        if node.name not in removed:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return proto, len(splits)


def _between(nodes: list, split, concat) -> set[str]:
    """The names of the split, the concat and every node fed (transitively) by the split before the concat."""
    seen, values = {split.name, concat.name}, set(split.output)
    changed = True
    while changed:
        changed = False
        for node in nodes:
            if node.name not in seen and any(i in values for i in node.input):
                seen.add(node.name)
                values.update(node.output)
                changed = True
    return seen


def _widths(proto) -> dict[str, int]:
    """The last dimension of every value whose shape inference knows it."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    out = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[-1].HasField("dim_value"):
            out[value.name] = dims[-1].dim_value
    return out


def _time(sessions: dict, feed: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each session, interleaved round by round."""
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for i in range(rounds):
        for name in (list(sessions) if i % 2 == 0 else list(sessions)[::-1]):
            t = time.perf_counter()
            sessions[name].run(["redshift"], feed)
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def measure(name: str, graphs: dict[str, bytes], preprocessing, rounds: int, threads: int, data) -> dict:
    """Side by side: each graph's galaxies/s at batch 256, ms at batch 1, and its largest |Δz| against the first."""
    import onnxruntime as ort

    from cai_edge.session import _session_options

    # each from its graph with cai-edge's options and full optimization (not from the optimized-graph cache, which
    # would start the shipped graph with optimization off)
    sessions = {form: ort.InferenceSession(g, _session_options(threads), providers=["CPUExecutionProvider"]) for form, g in graphs.items()}
    image, magnitude = preprocessing.network_inputs(data.images[:256], data.magnitudes[:256])
    feed = {"image": image, "magnitude": magnitude}
    z = {k: s.run(["redshift"], feed)[0] for k, s in sessions.items()}
    first = next(iter(z.values()))
    batch = _time(sessions, feed, rounds)
    one = {"image": image[:1], "magnitude": magnitude[:1]}
    single: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, v in _time(sessions, one, 50).items():
            single[k].append(v)
    return {"bundle": name, "max_abs_dz": {k: float(np.max(np.abs(v - first))) for k, v in z.items()},
            "galaxies_per_s_b256": {k: 256 / v for k, v in batch.items()},
            "ms_b1": {k: 1e3 * statistics.median(v) for k, v in single.items()}}


def _fused(bundle) -> bytes:
    import onnx

    fused, blocks = fuse_attention(onnx.load_from_string(bundle.files["model.onnx"]))
    if not blocks:
        raise SystemExit(f"{bundle.name}: no per-head attention found to fuse")
    return fused.SerializeToString()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", default="astromae-sdss-fp32", help="the fp32 bundle (name or path)")
    parser.add_argument("--variant", nargs="*", default=[], help="other int8 bundles to time against the shipped default")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from cai_edge.errors import BundleError
    from cai_edge.models.datasets import rendered_split
    from cai_edge.predictor import Predictor

    data = rendered_split("validation", 0, 256)
    default = Predictor("default").bundle
    int8 = {"shipped": default.files["model.onnx"], "fused attention": _fused(default)}
    for path in args.variant:
        variant = Predictor(path).bundle
        int8[f"{variant.name} from {Path(path).name}: {variant.manifest.get('quantization', {}).get('format', variant.variant)}, "
             f"{len(variant.manifest.get('quantization', {}).get('kept_float', []))} layers kept float"] = variant.files["model.onnx"]
    rows = [measure(default.name, int8, default.preprocessing, args.rounds, args.threads, data)]
    try:
        fp32 = Predictor(args.fp32).bundle
        rows.append(measure(fp32.name, {"shipped": fp32.files["model.onnx"], "fused attention": _fused(fp32)},
                            fp32.preprocessing, args.rounds, args.threads, data))
    except BundleError as exc:
        print(f"fp32 bundle not measured: {exc}")
    lines = ["| bundle | graph | batch 256 galaxies/s | batch 1 ms | max abs Δz |", "|---|---|---|---|---|"]
    for r in rows:
        for form in r["galaxies_per_s_b256"]:
            lines.append(f"| {r['bundle']} | {form} | {r['galaxies_per_s_b256'][form]:.0f} | {r['ms_b1'][form]:.2f} | "
                         f"{r['max_abs_dz'][form]:.1e} |")
    note = (f"\n\n{args.threads} threads; medians of {args.rounds} interleaved rounds (batch 1: of {args.rounds} medians of 50 calls); "
            "Δz against the shipped graph on 256 validation galaxies. Images are simulated (rendered from real SDSS photometry).\n")
    save("graph_variants", {"threads": args.threads, "rounds": args.rounds, "rows": rows}, "\n".join(lines) + note)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
