"""AstroMAE → ONNX (opset 17, dynamic batch), with the graph's interface checked."""

from __future__ import annotations

import io
import warnings

import onnx
import torch

from cai_edge.bundle.manifest import IO_SPEC
from cai_edge.export.errors import ExportShapeError

OPSET = 17


def export_onnx(model: torch.nn.Module, opset: int = OPSET) -> onnx.ModelProto:
    """Trace ``model`` to an ONNX graph with inputs ``image (N,5,32,32)``, ``magnitude (N,5)`` → ``redshift (N,)``.

    Uses the TorchScript-based exporter (``dynamo=False``): on this network it yields a plain
    opset-17 graph in seconds, which the ORT quantizers handle; torch 2.13's dynamo exporter
    takes ~10× longer here and fails its down-conversion to opset 17.
    """
    model = model.eval()
    example = (torch.zeros(2, 5, 32, 32), torch.full((2, 5), 17.0))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            example,
            buffer,
            input_names=["image", "magnitude"],
            output_names=["redshift"],
            opset_version=opset,
            dynamic_axes={"image": {0: "batch"}, "magnitude": {0: "batch"}, "redshift": {0: "batch"}},
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    check_interface(proto)
    return proto


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_interface(proto: onnx.ModelProto) -> None:
    """Raise :class:`ExportShapeError` unless the graph's I/O is exactly the bundle interface, batch dynamic."""
    for kind, values in (("inputs", proto.graph.input), ("outputs", proto.graph.output)):
        got = [
            (v.name, _dims(v), onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name)
            for v in values
        ]
        expected = [(spec["name"], spec["shape"], spec["dtype"]) for spec in IO_SPEC[kind]]
        matches = len(got) == len(expected) and all(
            name == e_name and dtype == e_dtype and isinstance(dims[0], str) and dims[1:] == e_shape[1:]
            for (name, dims, dtype), (e_name, e_shape, e_dtype) in zip(got, expected)
        )
        if not matches:
            raise ExportShapeError(f"ONNX {kind} are {got}; expected {expected} with a dynamic batch dimension")
