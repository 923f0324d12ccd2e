"""A tiny but real ONNX graph with the bundle interface, for bundle-format tests that need no torch."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from cai_edge.export.bundle_writer import write_bundle
from cai_edge.preprocessing import Preprocessing


def tiny_redshift_graph() -> onnx.ModelProto:
    """redshift = 0.01 · mean(image over bands and pixels) + 0.001 · sum(magnitude)."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 5, 32, 32])
    magnitude = helper.make_tensor_value_info("magnitude", TensorProto.FLOAT, ["batch", 5])
    redshift = helper.make_tensor_value_info("redshift", TensorProto.FLOAT, ["batch"])
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes_img"], ["img_mean"], keepdims=0),
        helper.make_node("ReduceSum", ["magnitude", "axes_mag"], ["mag_sum"], keepdims=0),
        helper.make_node("Mul", ["img_mean", "a"], ["t1"]),
        helper.make_node("Mul", ["mag_sum", "b"], ["t2"]),
        helper.make_node("Add", ["t1", "t2"], ["redshift"]),
    ]
    inits = [
        helper.make_tensor("axes_img", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("axes_mag", TensorProto.INT64, [1], [1]),
        helper.make_tensor("a", TensorProto.FLOAT, [], [0.01]),
        helper.make_tensor("b", TensorProto.FLOAT, [], [0.001]),
    ]
    graph = helper.make_graph(nodes, "tiny", [image, magnitude], [redshift], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_bundle(out, name: str = "tiny-fp32", variant: str = "fp32"):
    return write_bundle(out, tiny_redshift_graph(), {"name": name, "variant": variant, "preprocessing": Preprocessing().to_dict()})


def expected_tiny(images: np.ndarray, mags: np.ndarray) -> np.ndarray:
    return 0.01 * images.mean(axis=(1, 2, 3)) + 0.001 * mags.sum(axis=1)
