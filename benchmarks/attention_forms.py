"""Issue 34, item 2: does attention as one fused op beat the shipped per-head form? Measured, not shipped.

    python benchmarks/attention_forms.py [--fp32 BUNDLE] [--rounds 9] [--threads 2]

The shipped graphs compute each ViT block's attention head by head: the qkv output split into 9
slices, 3 × (MatMul, Softmax, MatMul), a Concat (``models/vit.py`` exports it so, because the
batched form's 5-D transposes cost more in ONNX Runtime). This script rewrites each block's part
between the Split and the Concat into ONNX Runtime's fused ``com.microsoft.MultiHeadAttention``
(q, k, v as three slices of the same qkv output, 3 heads; the same scaled dot products), and
times both graphs side by side in sessions built as cai-edge builds them, at batch 256 and 1, in
interleaved rounds, with the largest |Δz| between them. The int8 default and the fp32 bundle (when
found) are measured. The fused op is ONNX Runtime's own (OpenVINO cannot read it), so it could
only ship as an ONNX Runtime-only graph. Inputs: rendered validation galaxies (SIMULATED images
of real SDSS galaxies). Needs ``onnx`` (the ``export`` extra). Writes results/attention_forms.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time

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


def measure(bundle, rounds: int, threads: int, data) -> dict:
    import onnx
    import onnxruntime as ort

    from cai_edge.session import _session_options

    proto = onnx.load_from_string(bundle.files["model.onnx"])
    fused, blocks = fuse_attention(proto)
    # both from their graph with cai-edge's options and full optimization (not from the optimized-graph cache, which
    # would start the shipped graph with optimization off)
    shipped, rewritten = (ort.InferenceSession(g, _session_options(threads), providers=["CPUExecutionProvider"])
                          for g in (bundle.files["model.onnx"], fused.SerializeToString()))
    sessions = {"per head (shipped)": shipped, "MultiHeadAttention": rewritten}
    image, magnitude = bundle.preprocessing.network_inputs(data.images[:256], data.magnitudes[:256])
    feed = {"image": image, "magnitude": magnitude}
    z = {k: s.run(["redshift"], feed)[0] for k, s in sessions.items()}
    batch = _time(sessions, feed, rounds)
    one = {"image": image[:1], "magnitude": magnitude[:1]}
    single = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, v in _time(sessions, one, 50).items():
            single[k].append(v)
    return {"bundle": bundle.name, "blocks_rewritten": blocks,
            "max_abs_dz": float(np.max(np.abs(z["MultiHeadAttention"] - z["per head (shipped)"]))),
            "galaxies_per_s_b256": {k: 256 / v for k, v in batch.items()},
            "ms_b1": {k: 1e3 * statistics.median(v) for k, v in single.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", default="astromae-sdss-fp32", help="the fp32 bundle (name or path)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from cai_edge.errors import BundleError
    from cai_edge.models.datasets import rendered_split
    from cai_edge.predictor import Predictor

    data = rendered_split("validation", 0, 256)
    bundles = [Predictor("default").bundle]
    try:
        bundles.append(Predictor(args.fp32).bundle)
    except BundleError as exc:
        print(f"fp32 bundle not measured: {exc}")
    rows = [measure(b, args.rounds, args.threads, data) for b in bundles]
    lines = ["| bundle | form | batch 256 galaxies/s | batch 1 ms | max abs Δz |", "|---|---|---|---|---|"]
    for r in rows:
        for form in r["galaxies_per_s_b256"]:
            lines.append(f"| {r['bundle']} | {form} | {r['galaxies_per_s_b256'][form]:.0f} | {r['ms_b1'][form]:.2f} | "
                         f"{r['max_abs_dz'] if form != 'per head (shipped)' else 0:.1e} |")
    note = (f"\n\n{args.threads} threads; medians of {args.rounds} interleaved rounds (batch 1: of {args.rounds} medians of 50 calls). "
            "Images are simulated (rendered from real SDSS photometry).\n")
    save("attention_forms", {"threads": args.threads, "rounds": args.rounds, "rows": rows}, "\n".join(lines) + note)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
