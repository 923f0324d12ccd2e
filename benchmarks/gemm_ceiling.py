"""How fast could any AstroMAE graph be on this CPU? A ceiling from its GEMMs and its float work.

    python benchmarks/gemm_ceiling.py [--bundles DIR] [--rounds 5]

Every Linear layer of the fp32 bundle (the weight layers the quantizers touch: 98 % of the
network's multiply-adds) is run at batch 256 with nothing else, in ONNX Runtime's own GEMM
kernels: fp32 MatMul, and int8 MatMulInteger (u8 × s8 → s32, the fastest int8 path ORT has, with
no requantization). A second set holds the ops the int8 recipe keeps in float (LayerNorm, softmax,
GELU — as fused ``com.microsoft.Gelu``, ORT's fastest form) at the model's shapes. A third is the
Inception branch cut out of the graph whole, in float, as the shipped int8 bundle keeps it (its
gate needs the first Inception block float, and the other blocks quantized ran slower than float
here). ``eager time / (sum of the parts)`` is the ceiling on the speed-up over PyTorch eager fp32
for a graph doing that work, with everything not named (residual adds, reshapes, Q/DQ) free.
Each part is timed alone, so the ceiling is an estimate, not a proof. The same parts for one galaxy
give a floor on the int8 model's batch-1 latency with these kernels.
Outputs are preallocated (IOBinding) so allocation does not pad the times.
The eager model, the parts and (with --bundles) the fp32 and int8-static bundles are timed
in interleaved rounds in one process; medians are reported.
Writes benchmarks/results/gemm_ceiling.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from common import save

BATCH = 256
THREADS = 2


def weight_gemms(proto: onnx.ModelProto, feed: dict) -> list[tuple[int, np.ndarray]]:
    """``(M, W (K, N))`` for every weight MatMul/Gemm (as the quantizers pick them), M measured at this batch."""
    from cai_edge.quantize.nodes import weight_nodes

    weights = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    picked = set(weight_nodes(proto, ("MatMul", "Gemm")))
    nodes = [n for n in proto.graph.node if n.name in picked]
    shapes = _probe_shapes(proto, [n.input[0] for n in nodes], feed)
    gemms = []
    for n in nodes:
        w = weights[n.input[1]]
        trans_b = n.op_type == "Gemm" and any(a.name == "transB" and a.i for a in n.attribute)
        w = w.T if trans_b else w
        gemms.append((int(np.prod(shapes[n.input[0]][:-1])), np.ascontiguousarray(w)))
    return gemms


def _probe_shapes(proto: onnx.ModelProto, tensors: list[str], feed: dict) -> dict[str, tuple[int, ...]]:
    """Shapes of intermediate ``tensors`` at this batch, by exposing them as graph outputs."""
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    known = {o.name for o in probe.graph.output}
    for name in dict.fromkeys(tensors):
        if name not in known:
            probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, (v.shape for v in session.run(None, feed))))


def float_ops(proto: onnx.ModelProto, feed: dict) -> list[tuple[str, tuple[int, ...]]]:
    """``(op, input shape)`` for each LayerNorm, Softmax and GELU (found by its Erf) of the graph."""
    wanted = [(n.op_type, n.input[0]) for n in proto.graph.node if n.op_type in ("LayerNormalization", "Softmax", "Erf")]
    shapes = _probe_shapes(proto, [t for _, t in wanted], feed)
    return [(op, tuple(shapes[t])) for op, t in wanted]


def float_session(ops: list[tuple[str, tuple[int, ...]]]) -> tuple[ort.InferenceSession, ort.IOBinding]:
    """One graph of independent LayerNorm / Softmax / Gelu nodes at the model's shapes."""
    rng = np.random.default_rng(0)
    nodes, inputs, outputs, inits, feeds = [], [], [], [], {}
    for i, (op, shape) in enumerate(ops):
        x, y = f"x{i}", f"y{i}"
        feeds[x] = rng.standard_normal(shape, dtype=np.float32)
        inputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, list(shape)))
        outputs.append(helper.make_tensor_value_info(y, TensorProto.FLOAT, list(shape)))
        if op == "LayerNormalization":
            inits += [numpy_helper.from_array(np.ones(shape[-1], np.float32), f"g{i}"), numpy_helper.from_array(np.zeros(shape[-1], np.float32), f"b{i}")]
            nodes.append(helper.make_node("LayerNormalization", [x, f"g{i}", f"b{i}"], [y], axis=-1, epsilon=1e-6))
        elif op == "Softmax":
            nodes.append(helper.make_node("Softmax", [x], [y], axis=-1))
        else:
            nodes.append(helper.make_node("Gelu", [x], [y], domain="com.microsoft"))
    graph = helper.make_graph(nodes, "float_ops", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    return _bound(model, feeds, {f"y{i}": (shape, np.float32) for i, (_, shape) in enumerate(ops)})


def inception_session(proto: onnx.ModelProto, feed: dict) -> tuple[ort.InferenceSession, ort.IOBinding]:
    """The Inception CNN branch, image → its last concat (convolutions, pools, ReLUs), in float.

    Cut out of the fp32 graph whole, so ONNX Runtime keeps its blocked (NCHWc) layout between the
    convolutions as it does in the full model; its Linear layers are already among the GEMMs.
    """
    flatten = next(n for n in proto.graph.node if n.op_type == "Flatten")
    branch = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(proto)).extract_model(["image"], [flatten.input[0]])
    shape = _probe_shapes(proto, [flatten.input[0]], feed)[flatten.input[0]]
    return _bound(branch, {"image": feed["image"]}, {flatten.input[0]: (shape, np.float32)})


def _bound(model: onnx.ModelProto, feeds: dict, outputs: dict) -> tuple[ort.InferenceSession, ort.IOBinding]:
    session = ort.InferenceSession(model.SerializeToString(), _options(), providers=["CPUExecutionProvider"])
    binding = session.io_binding()
    for name, value in feeds.items():
        binding.bind_cpu_input(name, value)
    for name, (shape, dtype) in outputs.items():
        binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(np.empty(shape, dtype=dtype)))
    return session, binding


def gemm_session(gemms: list[tuple[int, np.ndarray]], int8: bool) -> tuple[ort.InferenceSession, ort.IOBinding]:
    """One graph of independent GEMMs (the model's shapes), outputs bound to preallocated buffers.

    GEMMs of the same input shape read one shared input, so it is as cache-warm as a layer's input
    (just written by the layer before) is in the model.
    """
    rng = np.random.default_rng(0)
    nodes, inputs, outputs, inits, feeds = [], [], [], [], {}
    for i, (m, w) in enumerate(gemms):
        k, n = w.shape
        x = f"x{m}_{k}"
        if x not in feeds:
            feeds[x] = rng.integers(0, 255, (m, k), dtype=np.uint8) if int8 else rng.standard_normal((m, k), dtype=np.float32)
            inputs.append(helper.make_tensor_value_info(x, TensorProto.UINT8 if int8 else TensorProto.FLOAT, [m, k]))
        if int8:
            inits.append(numpy_helper.from_array(rng.integers(-127, 127, (k, n), dtype=np.int8), f"w{i}"))
            nodes.append(helper.make_node("MatMulInteger", [x, f"w{i}"], [f"y{i}"]))
            outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.INT32, [m, n]))
        else:
            inits.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))
            nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"y{i}"]))
            outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [m, n]))
    graph = helper.make_graph(nodes, "gemms", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    dtype = np.int32 if int8 else np.float32
    return _bound(model, feeds, {f"y{i}": ((m, w.shape[1]), dtype) for i, (m, w) in enumerate(gemms)})


def _options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    return options


def _seconds_per_call(run, repeats: int = 4) -> float:
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", help="folder with astromae-sdss-fp32/ and astromae-sdss-int8/ to time beside the bound")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fp32", default="astromae-sdss-fp32", help="the fp32 bundle whose GEMMs are timed (name or path)")
    args = parser.parse_args()

    import torch

    from cai_edge.bundle import open_bundle, resolve_bundle
    from cai_edge.machine import machine_info
    from cai_edge.models.datasets import rendered_split
    from cai_edge.models.reference import load_reference_with_preprocessing
    from cai_edge.session import create_session

    torch.set_num_threads(THREADS)
    model, prep = load_reference_with_preprocessing()
    data = rendered_split("validation", 0, BATCH)
    image, magnitude = prep.network_inputs(data.images, data.magnitudes)
    feed = {"image": image, "magnitude": magnitude}
    fp32 = open_bundle(Path(args.bundles) / "astromae-sdss-fp32") if args.bundles else resolve_bundle(args.fp32)
    proto = onnx.load_from_string(fp32.model_bytes)
    gemms = weight_gemms(proto, feed)
    floats = float_ops(proto, feed)
    macs = sum(m * w.shape[0] * w.shape[1] for m, w in gemms)

    x, mag = torch.from_numpy(image), torch.from_numpy(magnitude)

    def eager():
        with torch.no_grad():
            model(x, mag)

    timed = {"pytorch-eager-fp32": eager}
    for label, int8 in (("gemms-fp32", False), ("gemms-int8", True)):
        session, binding = gemm_session(gemms, int8)
        timed[label] = lambda s=session, b=binding: s.run_with_iobinding(b)
    session, binding = float_session(floats)
    timed["float-only ops (LayerNorm, softmax, GELU)"] = lambda s=session, b=binding: s.run_with_iobinding(b)
    session, binding = inception_session(proto, feed)
    timed["Inception branch (float)"] = lambda s=session, b=binding: s.run_with_iobinding(b)
    # The same parts for one galaxy: a floor on batch-1 latency (what an alert broker calling one galaxy at a time waits)
    feed1 = {name: value[:1] for name, value in feed.items()}
    single: dict[str, object] = {}
    session, binding = gemm_session(weight_gemms(proto, feed1), True)
    single["gemms-int8, batch 1"] = lambda s=session, b=binding: s.run_with_iobinding(b)
    session, binding = float_session(float_ops(proto, feed1))
    single["float-only ops, batch 1"] = lambda s=session, b=binding: s.run_with_iobinding(b)
    session, binding = inception_session(proto, feed1)
    single["Inception branch (float), batch 1"] = lambda s=session, b=binding: s.run_with_iobinding(b)
    if args.bundles:
        for label, name in (("onnx-fp32", "astromae-sdss-fp32"), ("onnx-int8-static", "astromae-sdss-int8")):
            session = create_session(open_bundle(Path(args.bundles) / name), threads=THREADS)
            timed[label] = lambda s=session: s.run(["redshift"], feed)

    times: dict[str, list[float]] = {label: [] for label in (*timed, *single)}
    for _ in range(args.rounds):
        for label, run in timed.items():
            times[label].append(_seconds_per_call(run))
        for label, run in single.items():
            times[label].append(_seconds_per_call(run, repeats=100))
    ms = {label: 1000 * statistics.median(values) for label, values in times.items() if label in timed}
    ms_b1 = {label: 1000 * statistics.median(values) for label, values in times.items() if label in single}
    eager_ms = ms["pytorch-eager-fp32"]
    rows = ["| what runs (batch 256, 2 threads) | ms per batch | galaxies/s | eager ms ÷ this |", "|---|---|---|---|"]
    for label, value in ms.items():
        rows.append(f"| {label} | {value:.1f} | {BATCH / value * 1000:.0f} | {eager_ms / value:.2f} |")
    floor_ms = ms["float-only ops (LayerNorm, softmax, GELU)"]
    conv_ms = ms["Inception branch (float)"]
    bounds = {
        "fp32_gemms_only": eager_ms / ms["gemms-fp32"], "int8_gemms_only": eager_ms / ms["gemms-int8"],
        "fp32_with_float_ops": eager_ms / (ms["gemms-fp32"] + floor_ms), "int8_with_float_ops": eager_ms / (ms["gemms-int8"] + floor_ms),
        "fp32_with_float_ops_and_convs": eager_ms / (ms["gemms-fp32"] + floor_ms + conv_ms),
        "int8_with_float_ops_and_float_convs": eager_ms / (ms["gemms-int8"] + floor_ms + conv_ms),
    }
    bounds["int8_batch1_floor_ms"] = sum(ms_b1.values())
    rows_b1 = ["| what runs (one galaxy, 2 threads) | ms |", "|---|---|"]
    rows_b1 += [f"| {label} | {value:.3f} |" for label, value in ms_b1.items()]
    rows_b1.append(f"| **sum: a floor on int8 batch-1 latency** | **{bounds['int8_batch1_floor_ms']:.3f}** |")
    simd = machine_info().get("simd", [])
    text = (
        "\n".join(rows)
        + f"\n\n{len(gemms)} weight GEMMs, {macs / BATCH / 1e6:.1f} M multiply-adds per galaxy "
        f"({2 * macs / 1e9 / (ms['gemms-fp32'] / 1000):.0f} GFLOP/s fp32, {2 * macs / 1e9 / (ms['gemms-int8'] / 1000):.0f} GOP/s int8); "
        f"{len(floats)} float-only ops. Ceilings for the speed-up over eager (each part timed alone, everything not named counted as free) — GEMMs alone: fp32 {bounds['fp32_gemms_only']:.2f}×, "
        f"int8 {bounds['int8_gemms_only']:.2f}×; GEMMs plus the float-only ops: fp32 {bounds['fp32_with_float_ops']:.2f}×, "
        f"int8 {bounds['int8_with_float_ops']:.2f}× (convolutions, residual adds, attention reshapes and Q/DQ counted as free); "
        f"adding the Inception branch's convolutions and pools in float (as the shipped int8 keeps them): fp32 {bounds['fp32_with_float_ops_and_convs']:.2f}×, "
        f"int8 {bounds['int8_with_float_ops_and_float_convs']:.2f}×. "
        f"SIMD: {', '.join(simd) or 'unknown'}. Medians of {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.2f}."
        + "\n\n" + "\n".join(rows_b1)
        + "\n\nFor one galaxy the same parts, each a graph of its own in ONNX Runtime (every op of the graph still pays its "
        "dispatch, as in the model): the int8 model's batch-1 latency cannot go below their sum with these kernels, and "
        "residual adds, reshapes and Q/DQ come on top."
    )
    save("gemm_ceiling", {"batch": BATCH, "threads": THREADS, "gemms": len(gemms), "macs_per_galaxy": macs / BATCH, "float_ops": len(floats), "bounds": bounds,
                          "ms_per_batch": ms, "ms_batch1": ms_b1, "all_ms": {k: [1000 * v for v in vs] for k, vs in times.items()}}, text)


if __name__ == "__main__":
    main()
