"""Issue 34, item 2: what the last graph rewrites found can still take from a batch, on every engine.

    python benchmarks/graph_rewrites.py [--fp32 BUNDLE] [--rounds 5] [--seconds 1.5] [--galaxies 256] [--work DIR]

Each rewrite works on the shipped graphs as they are (fp32, or int8 QDQ), the bundle resealed around
the new graph with its manifest otherwise unchanged, and each is timed through the ``Predictor`` on
every engine installed (``attention_forms.measure``: batch 256 and batch 1, interleaved rounds,
the largest |Δz| against the shipped graph on the same engine; rendered validation galaxies,
SIMULATED images of real SDSS galaxies):

* ``attention scale folded`` — each head's scores are multiplied by 1/√64 = 0.125 after q·kᵀ; the
  factor goes into the q columns of the qkv projection instead (the weights' per-channel
  dequantization scales in int8, the weights in fp32, and the bias), and the 36 multiplies go. A
  power of two commutes with every rounding, so the redshifts are the same bit for bit.
* ``pool before first conv`` — the Inception branch's first layer, a 1×1 convolution of the 5 bands
  to 32 channels at 32×32, followed by a 2×2 average pool: both are linear, so pooling the 5 bands
  first and convolving at 16×16 is the same function with a quarter of the convolution's work
  (not the same rounding).
* ``LayerNorm affine removed`` — every LayerNorm's scale set to 1 and shift to 0. **Not the model**
  (its redshifts are not the model's): an upper bound on what folding the affine into the next layer (which
  would need the int8 bundle quantized again) could take.
* ``all three``.

Writes results/graph_rewrites.{json,md}; the bundles go to ``--work`` (default: a temporary folder),
and OpenVINO's compiled models to an optimized-graph cache inside it unless ``CAI_EDGE_OPTIMIZED_GRAPHS``
says otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from attention_forms import measure
from common import at_least_one, save

REWRITES = ("attention scale folded", "pool before first conv", "LayerNorm affine removed", "all three")


def _maps(proto):
    """Initializers by name, each tensor's producer, and each tensor's consumers."""
    inits = {i.name: i for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return inits, producer, consumers


def _constant(name: str, inits: dict, producer: dict):
    """The value of an initializer or a Constant node's output, else None."""
    from onnx import numpy_helper

    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = producer.get(name)
    if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
        return numpy_helper.to_array(node.attribute[0].t)
    return None


def _replace(proto, name: str, array: np.ndarray) -> None:
    from onnx import numpy_helper

    for init in proto.graph.initializer:
        if init.name == name:
            init.CopyFrom(numpy_helper.from_array(array.astype(numpy_helper.to_array(init).dtype), name))
            return
    raise KeyError(name)


def _rewire(proto, old: str, new: str, consumers: dict) -> None:
    for node in consumers.get(old, []):
        node.input[:] = [new if i == old else i for i in node.input]


def _refuse(where: str, why: str) -> ValueError:
    return ValueError(f"{where}: {why}; not rewriting")


def fold_attention_scale(proto) -> int:
    """Fold each block's constant score scale into the q columns of its qkv projection (in place); blocks folded.

    Expects the shipped per-head form: qkv MatMul with (K, N) weights → Add of a bias of N → Split on the last axis
    into 3·heads slices (q of each head, then k, then v) → per head MatMul(q, kᵀ) → Mul(constant) → Softmax. The
    scale must be a power of two, so that the folded graph gives the same redshifts bit for bit. Anything else —
    a tensor on the way used by another node or as a graph output, a Gemm, a bias or weights of another shape, a
    per-tensor dequantization — is refused before the graph is touched.
    """
    inits, producer, consumers = _maps(proto)
    outputs = {o.name for o in proto.graph.output}
    plans = []
    for split in [n for n in proto.graph.node if n.op_type == "Split" and n.name.endswith("/attn/Split")]:
        heads = len(split.output) // 3
        sizes = _constant(split.input[1], inits, producer) if len(split.input) > 1 else None
        if sizes is None or heads == 0 or len(split.output) != 3 * heads or len(sizes) != len(split.output):
            continue
        axis = next((a.i for a in split.attribute if a.name == "axis"), 0)
        if axis != -1:
            raise _refuse(split.name, f"split on axis {axis}, not the last")
        width, total = int(np.sum(sizes[:heads])), int(np.sum(sizes))
        muls, factors = [], set()
        for q in split.output[:heads]:
            users = consumers.get(q, [])
            if q in outputs or len(users) != 1 or users[0].op_type != "MatMul" or users[0].input[0] != q:
                raise _refuse(split.name, f"{q} is not used by its scores' MatMul alone")
            scores = users[0].output[0]
            users = consumers.get(scores, [])
            scale = _constant(users[0].input[1], inits, producer) if len(users) == 1 and users[0].op_type == "Mul" else None
            if scores in outputs or scale is None or scale.size != 1:
                raise _refuse(split.name, "expected MatMul → Mul(constant) on each head's scores")
            muls.append(users[0])
            factors.add(float(scale))
        if len(factors) != 1:
            raise _refuse(split.name, "heads scaled differently")
        (factor,) = factors
        if factor == 0 or abs(np.frexp(factor)[0]) != 0.5:
            raise _refuse(split.name, f"scale {factor} is not a power of two (the fold would change the rounding)")
        add = producer.get(split.input[0])
        if add is None or add.op_type != "Add" or len(consumers[split.input[0]]) != 1 or split.input[0] in outputs:
            raise _refuse(split.name, "the qkv output is not a bias Add used by the Split alone")
        bias_name, matmul_out = (add.input[0], add.input[1]) if add.input[0] in inits else (add.input[1], add.input[0])
        matmul = producer.get(matmul_out)
        bias = _constant(bias_name, inits, producer)
        if matmul is None or matmul.op_type != "MatMul" or len(consumers[matmul_out]) != 1 or matmul_out in outputs:
            raise _refuse(split.name, "the qkv projection is not a MatMul used by its bias Add alone")
        if bias_name not in inits or bias.shape != (total,) or len(consumers[bias_name]) != 1:
            raise _refuse(split.name, f"the bias is not a {total}-vector of its own")
        weight = matmul.input[1]
        if len(consumers[weight]) != 1:
            raise _refuse(split.name, f"{weight} is shared")
        if weight in inits:  # fp32: the weights themselves (K, N); q is the first `width` columns
            w = _constant(weight, inits, producer)
            if w.ndim != 2 or w.shape[1] != total:
                raise _refuse(split.name, f"weights of shape {w.shape}, not (K, {total})")
            target = weight
        else:  # int8 QDQ: the per-output-channel dequantization scale
            dq = producer.get(weight)
            quantized = _constant(dq.input[0], inits, producer) if dq is not None and dq.op_type == "DequantizeLinear" else None
            scale = _constant(dq.input[1], inits, producer) if quantized is not None else None
            dq_axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) if quantized is not None else None
            if (scale is None or dq.input[1] not in inits or quantized.ndim != 2 or quantized.shape[1] != total or scale.shape != (total,)
                    or dq_axis not in (1, -1) or len(consumers[dq.input[1]]) != 1):
                raise _refuse(split.name, "the weights are not a per-output-channel dequantization of their own")
            target = dq.input[1]
        plans.append((bias_name, target, weight in inits, width, factor, muls))
    for bias_name, target, is_weight, width, factor, muls in plans:  # everything checked: now change the graph
        bias = _constant(bias_name, inits, producer).copy()
        bias[:width] *= factor
        _replace(proto, bias_name, bias)
        values = _constant(target, inits, producer).copy()
        if is_weight:
            values[:, :width] *= factor
        else:
            values[:width] *= factor
        _replace(proto, target, values)
        for mul in muls:
            _rewire(proto, mul.output[0], mul.input[0], consumers)
            proto.graph.node.remove(mul)
    return len(plans)


def pool_before_first_conv(proto) -> int:
    """Swap every 1×1 Conv (stride 1, no padding) whose only consumer is an unpadded AveragePool (in place); pairs swapped.

    Both are linear and the pool has no padding, so pooling first and convolving after is the same function (an
    average of a constant bias is the bias). In the shipped graphs the only such pair is the Inception branch's first.
    """
    inits, producer, consumers = _maps(proto)
    outputs = {o.name for o in proto.graph.output}
    nodes = list(proto.graph.node)
    position = {n.output[0]: i for i, n in enumerate(nodes) if n.output}  # by first output: unique in a valid graph
    pairs = []
    for conv in [n for n in nodes if n.op_type == "Conv"]:
        attrs = {a.name: a for a in conv.attribute}
        weight = _constant(conv.input[1], inits, producer)
        kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else (list(weight.shape[2:]) if weight is not None else None)
        if kernel != [1, 1] or any(k in attrs and set(attrs[k].ints) - {1} for k in ("strides", "dilations")):
            continue
        if ("pads" in attrs and any(attrs["pads"].ints)) or ("auto_pad" in attrs and attrs["auto_pad"].s not in (b"", b"NOTSET", b"VALID")):
            continue
        users = consumers.get(conv.output[0], [])
        if len(users) != 1 or users[0].op_type != "AveragePool" or conv.output[0] in outputs:
            continue
        pool = users[0]
        pool_attrs = {a.name: a for a in pool.attribute}
        if ("pads" in pool_attrs and any(pool_attrs["pads"].ints)) or (
                "auto_pad" in pool_attrs and pool_attrs["auto_pad"].s not in (b"", b"NOTSET", b"VALID")):
            continue
        pairs.append((position[conv.output[0]], position[pool.output[0]]))
    if not pairs:
        return 0
    order = list(range(len(nodes)))
    stale = set()  # tensors whose recorded shapes no longer hold
    for i, j in pairs:
        conv, pool = nodes[i], nodes[j]
        source, mid, out = conv.input[0], conv.output[0], pool.output[0]
        pool.input[0], pool.output[0] = source, mid
        conv.input[0], conv.output[0] = mid, out
        order[i], order[j] = j, i  # topological order: each pool takes its conv's place
        stale.add(mid)
    ordered = [copy.deepcopy(nodes[k]) for k in order]
    del proto.graph.node[:]
    proto.graph.node.extend(ordered)
    for value in [v for v in proto.graph.value_info if v.name in stale]:
        proto.graph.value_info.remove(value)
    return len(pairs)


def remove_layernorm_affine(proto) -> int:
    """Set every LayerNorm's scale to 1 and shift to 0 (in place): a speed bound, NOT the model; LayerNorms changed."""
    inits, producer, _ = _maps(proto)
    changed = 0
    for ln in [n for n in proto.graph.node if n.op_type == "LayerNormalization"]:
        _replace(proto, ln.input[1], np.ones_like(_constant(ln.input[1], inits, producer)))
        if len(ln.input) > 2 and ln.input[2]:
            _replace(proto, ln.input[2], np.zeros_like(_constant(ln.input[2], inits, producer)))
        changed += 1
    return changed


STEPS = {"attention scale folded": (fold_attention_scale,), "pool before first conv": (pool_before_first_conv,),
         "LayerNorm affine removed": (remove_layernorm_affine,),
         "all three": (fold_attention_scale, pool_before_first_conv, remove_layernorm_affine)}


def rewritten(model: bytes, rewrite: str) -> tuple[bytes, dict[str, int]]:
    """``model`` with ``rewrite`` applied, and how many places each step changed (a step that changes nothing fails)."""
    import onnx

    proto = onnx.load_from_string(model)
    counts = {}
    for step in STEPS[rewrite]:
        counts[step.__name__] = step(proto)
        if not counts[step.__name__]:
            raise ValueError(f"{step.__name__} found nothing to rewrite")
    onnx.checker.check_model(proto)
    return proto.SerializeToString(), counts


def write_variant(bundle, model: bytes, out: Path) -> Path:
    """``bundle`` resealed with ``model`` as its graph (every other file and the manifest as they are)."""
    from cai_edge.bundle.writer import write_bundle_dir

    files = {**bundle.files, "model.onnx": model}
    manifest = json.loads(json.dumps(bundle.manifest))
    return write_bundle_dir(out, manifest, files)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", help="the fp32 bundle too (name or path); default: the shipped int8 default only")
    parser.add_argument("--rewrites", nargs="+", default=list(REWRITES), choices=REWRITES)
    parser.add_argument("--rounds", type=at_least_one, default=5)
    parser.add_argument("--seconds", type=float, default=1.5, help="timing per cell and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--galaxies", type=at_least_one, default=256, help="galaxies per batch (and for |Δz|)")
    parser.add_argument("--work", help="folder for the rewritten bundles (default: a temporary one)")
    args = parser.parse_args(argv)
    from cai_edge.bundle.registry import resolve_bundle
    from cai_edge.optimized_graphs import ENV

    own_cache = ENV not in os.environ
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        if own_cache:  # the rewritten bundles' compiled models (~18 MB each) stay out of the user's cache
            os.environ[ENV] = str(work / "optimized-graphs")
        try:
            result: dict = {"threads": args.threads, "rounds": args.rounds, "galaxies": args.galaxies, "bundles": {}}
            for source in ["default", *([args.fp32] if args.fp32 else [])]:
                bundle = resolve_bundle(source)
                paths, counts = {"shipped": Path(bundle.path)}, {}
                for rewrite in args.rewrites:
                    model, counts[rewrite] = rewritten(bundle.files["model.onnx"], rewrite)
                    paths[rewrite] = write_variant(bundle, model, work / f"{bundle.name}-{REWRITES.index(rewrite)}")
                measured = measure(paths, args.rounds, args.seconds, args.threads, args.galaxies)
                result["bundles"][bundle.name] = {"counts": counts, **measured}
        finally:
            if own_cache:
                os.environ.pop(ENV, None)
    text = markdown(result)
    print(text)
    save("graph_rewrites", result, text)
    return result


def markdown(result: dict) -> str:
    """One row per bundle, graph and engine: speeds, the per-round ratio to the shipped graph (also recorded in each
    row of ``result``, as ``ratio_rounds``), and |Δz|."""
    lines = [f"| bundle | graph | engine | batch {result['galaxies']} galaxies/s | × shipped (same engine), median of the "
             "rounds' ratios (range) | batch 1 ms (range) | max \\|Δz\\| vs shipped |", "|---|---|---|---|---|---|---|"]
    for name, r in result["bundles"].items():
        rows = r["rows"]
        for row in rows.values():
            base = rows[f"shipped|{row['engine']}"]
            ratios = [a / b for a, b in zip(row["per_s_rounds"], base["per_s_rounds"])]
            row["ratio_rounds"] = ratios
            ms = row["batch1_ms_rounds"]
            lines.append(f"| {name} | {row['form']} | {row['engine']} | {row['per_s']:.0f} | {float(np.median(ratios)):.3f} "
                         f"({min(ratios):.3f}–{max(ratios):.3f}) | {row['batch1_ms']:.2f} ({min(ms):.2f}–{max(ms):.2f}) | "
                         f"{row['max_abs_dz']:.1e} |")
    return "\n".join(lines) + (
        f"\n\n{result['threads']} threads; Predictor with preprocessing; medians of {result['rounds']} interleaved rounds. The "
        "ratio is taken round by round against the shipped graph on the same engine, so it can differ from the ratio of the "
        "two medians shown; a range that spans 1 is no difference this run can show. 'LayerNorm affine removed' is not the "
        "model, only a bound on speed (the shipped model's affine is close to identity, so its |Δz| is small). Simulated images of real "
        "SDSS galaxies.")


if __name__ == "__main__":
    main()
