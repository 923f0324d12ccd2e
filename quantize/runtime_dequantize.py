"""Which quantized layers ONNX Runtime would still run in float, dequantizing their weights every call.

ORT turns a QDQ layer into an integer kernel only when one of its fusions matches; a layer it
cannot fuse keeps ``DequantizeLinear`` on its int8 weights and runs the float kernel, so the
weights are expanded to float on **every** call. For AstroMAE's largest Linear
(``concat_block.0``, 1024 × 3216) that was 3.3 M weights per call: ~1.3 ms of a 7.4 ms batch-1
latency, and no int8 arithmetic in return. ``quantize`` writes such layers out as an explicit
``MatMulInteger`` (:mod:`cai_edge.quantize.integer_layers`), or, where that form does not apply,
computes them in float.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort


def runtime_dequantized_weights(quantized: onnx.ModelProto) -> set[str]:
    """Names of int8 weight initializers that survive ORT's graph optimizations as a runtime ``DequantizeLinear``."""
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(optimized)
        options.log_severity_level = 3
        ort.InferenceSession(quantized.SerializeToString(), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(optimized).graph
    rank = {init.name: len(init.dims) for init in graph.initializer}
    # Matrices only: a bias's or scale's DequantizeLinear is small and expected.
    return {node.input[0] for node in graph.node if node.op_type == "DequantizeLinear" and rank.get(node.input[0], 0) >= 2}


def layers_run_in_float(original: onnx.ModelProto, quantized: onnx.ModelProto) -> list[str]:
    """Nodes of ``original`` whose weights ORT would dequantize on every call in ``quantized``."""
    dequantized = runtime_dequantized_weights(quantized)
    # The QDQ quantizer names a weight's int8 copy ``<weight>_quantized``.
    weights = {name.removesuffix("_quantized") for name in dequantized}
    return [node.name for node in original.graph.node if len(node.input) > 1 and node.input[1] in weights]
