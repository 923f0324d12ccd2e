"""``--debug``: per-tensor SQNR between the fp32 graph and its QDQ int8 version.

Uses ``onnxruntime.quantization.qdq_loss_debug``: both models are run on the same calibration
batches with every intermediate tensor exposed; a low SQNR (dB) marks where accuracy is lost.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
from onnxruntime.quantization.qdq_loss_debug import (
    collect_activations,
    compute_activation_error,
    create_activation_matching,
    modify_model_output_intermediate_tensors,
)

from cai_edge.quantize.recipes import ArrayCalibrationReader


def sqnr_report(fp32: onnx.ModelProto, qdq: onnx.ModelProto, reader: ArrayCalibrationReader, worst: int = 15) -> list[dict]:
    """The ``worst`` tensors by SQNR (lowest first): ``[{"tensor", "sqnr_db"}]``."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, proto in (("fp32", fp32), ("qdq", qdq)):
            src, aug = Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}.aug.onnx"
            onnx.save(proto, src)
            modify_model_output_intermediate_tensors(str(src), str(aug))
            paths[name] = aug
        reader.rewind()
        float_acts = collect_activations(str(paths["fp32"]), reader)
        reader.rewind()
        qdq_acts = collect_activations(str(paths["qdq"]), reader)
    matching = create_activation_matching(qdq_acts, float_acts)
    errors = compute_activation_error(matching)
    rows = [{"tensor": name, "sqnr_db": float(err["xmodel_err"])} for name, err in errors.items() if "xmodel_err" in err]
    return sorted(rows, key=lambda r: r["sqnr_db"])[:worst]
