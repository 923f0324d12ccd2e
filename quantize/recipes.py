"""The three ways to shrink an fp32 AstroMAE graph: fp16, int8-dynamic, int8-static (QDQ)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from cai_edge.quantize.nodes import weight_nodes

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds prepared network inputs to the calibrator in batches."""

    def __init__(self, image: np.ndarray, magnitude: np.ndarray, batch_size: int = 64):
        self._batches = [
            {"image": image[i : i + batch_size], "magnitude": magnitude[i : i + batch_size]}
            for i in range(0, len(image), batch_size)
        ]
        self._next = 0

    def get_next(self):
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return self._batches[self._next - 1]

    def rewind(self) -> None:
        self._next = 0


# 7-bit weights (±64). u8 × s8 on AVX2 and AVX-512 without VNNI adds pairs of products in 16 bits
# (vpmaddubsw), which saturate once 2 × 255 × |w| passes 32,767; with 8-bit weights the default
# gave Δz/(1+z) up to 1.1e-2 against exact integer arithmetic on an AVX2 CPU. With ±64
# (2 × 255 × 64 = 32,640) no pair can saturate, so every CPU computes the same integers.
REDUCE_RANGE = True


def to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Weights and compute in float16 (for GPUs and for size); inputs and outputs stay float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(proto, keep_io_types=True)


def gemms_to_matmuls(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite ``Gemm(A, W, b)`` with a constant ``W`` as ``MatMul(A, W') + b``, same numbers.

    ORT's dynamic quantizer handles MatMul but not Gemm; AstroMAE's Linear layers outside the ViT
    (10 M of its 15.8 M parameters) export as Gemm.
    """
    from onnx import helper, numpy_helper

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    inits = {i.name: i for i in proto.graph.initializer}
    nodes = []
    for node in proto.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        simple = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not simple or node.input[1] not in inits:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        name = node.input[1] + "_matmul"
        proto.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), name))
        if len(node.input) > 2 and node.input[2]:
            mid = node.output[0] + "_nobias"
            nodes.append(helper.make_node("MatMul", [node.input[0], name], [mid], name=node.name + "_MatMul"))
            nodes.append(helper.make_node("Add", [mid, node.input[2]], list(node.output), name=node.name + "_Add"))
        else:
            nodes.append(helper.make_node("MatMul", [node.input[0], name], list(node.output), name=node.name + "_MatMul"))
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    used = {i for n in proto.graph.node for i in n.input}
    kept = [i for i in proto.graph.initializer if i.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    return proto


def to_int8_dynamic(proto: onnx.ModelProto) -> onnx.ModelProto:
    """int8 weights, activations quantized on the fly; MatMul (and Gemm, rewritten) only — dynamic Convs are slower."""
    proto = gemms_to_matmuls(proto)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(proto, src)
        quantize_dynamic(
            src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], reduce_range=REDUCE_RANGE,
            nodes_to_quantize=weight_nodes(proto, ("MatMul",)),
        )
        return onnx.load(dst)


def to_int8_static(
    proto: onnx.ModelProto,
    reader: CalibrationDataReader,
    method: str = "minmax",
    exclude: tuple[str, ...] = (),
) -> onnx.ModelProto:
    """QDQ int8: per-channel symmetric int8 weights, uint8 activations calibrated on ``reader``."""
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = Path(tmp) / "in.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "out.onnx"
        onnx.save(proto, src)
        # Symbolic shape inference is skipped: it does not resolve this graph's dynamic reshapes.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        nodes = [n for n in weight_nodes(onnx.load(pre)) if n not in exclude]
        # Linear outputs stay float: ORT then runs DQ→MatMul as one MatMulIntegerToFloat (u8×s8 GEMM,
        # scaled straight to float) instead of QLinearMatMul + requantize + DequantizeLinear for the
        # LayerNorm/GELU/residual that follow in float anyway: faster, and one rounding fewer.
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True, "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        quantize_static(
            pre, dst, reader,
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=REDUCE_RANGE,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Gemm", "MatMul"], nodes_to_quantize=nodes,
            calibrate_method=CALIBRATION_METHODS[method], extra_options=extra,
        )
        return onnx.load(dst)


def store_weights_int8(proto: onnx.ModelProto, node_names: list[str] | tuple[str, ...]) -> onnx.ModelProto:
    """Store the weights of float-computed Gemm/MatMul layers as int8 (per output channel, symmetric).

    The stored ``Cast(int8) × scale`` is all constant, so ONNX Runtime folds it back into a float
    weight when the session is created: the layer computes in float, as the accuracy gate or the
    runtime needs, while the bundle carries a quarter of the bytes.
    """
    from onnx import helper, numpy_helper

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    inits = {i.name: i for i in proto.graph.initializer}
    used_by = {}
    for node in proto.graph.node:
        for name in node.input:
            used_by.setdefault(name, []).append(node)
    new_nodes, dropped = [], set()
    for node in proto.graph.node:
        if node.name not in node_names or node.op_type not in ("Gemm", "MatMul") or node.input[1] not in inits:
            continue
        name = node.input[1]
        if len(used_by[name]) != 1:
            continue
        weight = numpy_helper.to_array(inits[name]).astype(np.float32)
        trans_b = any(a.name == "transB" and a.i for a in node.attribute) if node.op_type == "Gemm" else False
        axis = 0 if trans_b else 1  # the output-channel axis of the stored weight
        scale = np.abs(weight).max(axis=1 - axis, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        quantized = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
        proto.graph.initializer.extend([numpy_helper.from_array(quantized, name + "_int8"),
                                        numpy_helper.from_array(scale.astype(np.float32), name + "_int8_scale")])
        new_nodes += [
            helper.make_node("Cast", [name + "_int8"], [name + "_int8_as_float"], name=name + "_Cast", to=onnx.TensorProto.FLOAT),
            helper.make_node("Mul", [name + "_int8_as_float", name + "_int8_scale"], [name], name=name + "_Scale"),
        ]
        dropped.add(name)
    kept = [i for i in proto.graph.initializer if i.name not in dropped]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    nodes = new_nodes + list(proto.graph.node)  # constants first: the graph stays topologically sorted
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return proto
