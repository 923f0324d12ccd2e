"""QDQ Linear layers that ONNX Runtime cannot fuse, rewritten as an explicit integer matrix product.

ORT turns ``DQ(x) · DQ(W) + b`` into an integer kernel only when a fusion matches; AstroMAE's
largest Linear (``concat_block.0``, 1024 × 3216: half the bytes a batch-1 call reads) matches
none, so ORT would dequantize its weights on every call. Written out as the standard ONNX ops

    MatMulInteger(x_q, W_q) → Cast → Mul(x_scale · w_scale) → Add(b)

it runs u8 × s8 with no per-call dequantization. It computes what the QDQ form specifies: the
same calibrated activation scale (so a galaxy's result does not depend on its batch, as it would
with dynamic quantization), the same int8 weights, exact integer sums.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Skip(Exception):
    """This layer is not in a form the rewrite handles; it is left to the caller's fallback."""


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _dequantize_inputs(node: onnx.NodeProto | None, inits: dict[str, np.ndarray]) -> tuple[str, np.ndarray, np.ndarray, int]:
    """``(quantized input name, scale, zero point, axis)`` of a DequantizeLinear with constant scale/zero point."""
    if node is None or node.op_type != "DequantizeLinear" or len(node.input) < 3:
        raise _Skip("input is not a DequantizeLinear with a zero point")
    if node.input[1] not in inits or node.input[2] not in inits:
        raise _Skip("scale or zero point is not constant")
    return node.input[0], inits[node.input[1]], inits[node.input[2]], _attr(node, "axis", 1)


def _rewrite(node: onnx.NodeProto, producers: dict, inits: dict[str, np.ndarray]) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], set[str]]:
    """New nodes and initializers for one layer, and the DequantizeLinear nodes it no longer needs."""
    if node.op_type == "Gemm":
        if _attr(node, "transA", 0) or _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0:
            raise _Skip("Gemm with transA, alpha or beta")
        trans_b = bool(_attr(node, "transB", 0))
    elif node.op_type == "MatMul":
        trans_b = False
    else:
        raise _Skip(node.op_type)
    a_dq, b_dq = producers.get(node.input[0]), producers.get(node.input[1])
    x_q, x_scale, x_zp, _ = _dequantize_inputs(a_dq, inits)
    w_name, w_scale, w_zp, w_axis = _dequantize_inputs(b_dq, inits)
    if x_scale.size != 1 or x_zp.size != 1 or x_zp.dtype not in (np.uint8, np.int8):
        raise _Skip("activation not per-tensor 8-bit")
    if w_name not in inits or inits[w_name].dtype != np.int8 or inits[w_name].ndim != 2 or np.any(w_zp != 0):
        raise _Skip("weights not constant symmetric int8")
    w = inits[w_name]
    out_axis = 0 if trans_b else 1
    if w_scale.size != 1 and (w_axis % 2 != out_axis or w_scale.size != w.shape[out_axis]):
        raise _Skip("weight scales not per output channel")
    w_kn = np.ascontiguousarray(w.T if trans_b else w)  # (K, N), as MatMulInteger takes it
    scale = (np.float32(x_scale.reshape(())) * w_scale.reshape(-1).astype(np.float32)).astype(np.float32)

    prefix = node.name or node.output[0]
    new_inits = [numpy_helper.from_array(w_kn, f"{prefix}_w_int8"), numpy_helper.from_array(scale, f"{prefix}_scale")]
    accumulate, scaled = f"{prefix}_int32", f"{prefix}_as_float"
    product = f"{prefix}_product" if (node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]) else node.output[0]
    nodes = [
        helper.make_node("MatMulInteger", [x_q, f"{prefix}_w_int8", a_dq.input[2]], [accumulate], name=f"{prefix}_MatMulInteger"),
        helper.make_node("Cast", [accumulate], [scaled], name=f"{prefix}_Cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", [scaled, f"{prefix}_scale"], [product], name=f"{prefix}_Scale"),
    ]
    unused = {b_dq.output[0]}
    if product != node.output[0]:
        bias_producer = producers.get(node.input[2])
        if node.input[2] in inits:
            bias = inits[node.input[2]].astype(np.float32)
        elif bias_producer is not None and bias_producer.op_type == "DequantizeLinear" and all(i in inits for i in bias_producer.input[:3]):
            b_q, b_scale, b_zp = (inits[i] for i in bias_producer.input[:3])
            bias = ((b_q.astype(np.float64) - b_zp.astype(np.float64)) * b_scale.astype(np.float64)).astype(np.float32)
            unused.add(bias_producer.output[0])
        else:
            raise _Skip("bias is neither constant nor a constant DequantizeLinear")
        new_inits.append(numpy_helper.from_array(bias.reshape(-1), f"{prefix}_bias"))
        nodes.append(helper.make_node("Add", [product, f"{prefix}_bias"], [node.output[0]], name=f"{prefix}_Bias"))
    unused.add(a_dq.output[0])  # dropped below only if nothing else reads it
    return nodes, new_inits, unused


def as_integer_matmuls(quantized: onnx.ModelProto, node_names: Sequence[str]) -> tuple[onnx.ModelProto, list[str]]:
    """``quantized`` with the named QDQ Gemm/MatMul layers written as MatMulInteger; and the names rewritten.

    A layer not in the handled form (per-tensor 8-bit activation, symmetric int8 weights per output
    channel, constant bias) is left as it was and not named in the result.
    """
    proto = onnx.ModelProto.FromString(quantized.SerializeToString())
    graph = proto.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    wanted = set(node_names)
    done: list[str] = []
    replaced: dict[int, list[onnx.NodeProto]] = {}
    maybe_unused: set[str] = set()
    for position, node in enumerate(graph.node):
        if node.name not in wanted:
            continue
        try:
            nodes, new_inits, unused = _rewrite(node, producers, inits)
        except _Skip:
            continue
        replaced[position] = nodes
        graph.initializer.extend(new_inits)
        maybe_unused |= unused
        done.append(node.name)
    kept: list[onnx.NodeProto] = []
    for position, node in enumerate(graph.node):
        kept.extend(replaced.get(position, [node]))
    # Drop the DequantizeLinear nodes (and then initializers) nothing reads any more.
    while True:
        read = {i for n in kept for i in n.input} | {o.name for o in graph.output}
        dead = {id(n) for n in kept if n.op_type == "DequantizeLinear" and n.output[0] in maybe_unused and n.output[0] not in read}
        if not dead:
            break
        kept = [n for n in kept if id(n) not in dead]
    read = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    live_inits = [i for i in graph.initializer if i.name in read]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(live_inits)
    return proto, done
