"""Which graph nodes the quantizers touch.

Only layers with weights are quantized: Conv, Gemm, and MatMul whose second input is an
initializer. LayerNorm, Softmax, GELU (Erf), residual Adds and the attention score MatMuls
(activation × activation) stay float.
"""

from __future__ import annotations

import onnx

# Layers the accuracy gate may need kept in float: the patch embedding, the first magnitude
# layer (5 inputs carry all the photometry) and the last Linear (the redshift itself).
SENSITIVE_NODES = (
    "/patch_embed/proj/Conv",
    "/inception_model/magnitude_block/magnitude_block.0/Gemm",
    "/concat_block/concat_block.2/Gemm",
)


def weight_nodes(proto: onnx.ModelProto, op_types: tuple[str, ...] = ("Conv", "Gemm", "MatMul")) -> list[str]:
    initializers = {init.name for init in proto.graph.initializer}
    names = []
    for node in proto.graph.node:
        if node.op_type not in op_types:
            continue
        if node.op_type == "MatMul" and not (len(node.input) > 1 and node.input[1] in initializers):
            continue
        names.append(node.name)
    return names
