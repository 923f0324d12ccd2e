"""PyTorch ↔ ONNX Runtime parity on rendered real-catalog galaxies."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from cai_edge.export.errors import ExportParityError, ExportShapeError
from cai_edge.preprocessing import Preprocessing

PARITY_TOLERANCE = 1e-4


def check_parity(
    model: torch.nn.Module,
    onnx_bytes: bytes,
    images: np.ndarray,
    magnitudes: np.ndarray,
    preprocessing: Preprocessing,
    tolerance: float = PARITY_TOLERANCE,
) -> dict:
    """Max |Δz| between the two on the same prepared inputs; raises :class:`ExportParityError` above ``tolerance``."""
    image, mag = preprocessing.network_inputs(images, magnitudes)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    onnx_z = session.run(["redshift"], {"image": image, "magnitude": mag})[0]
    with torch.no_grad():
        torch_z = model.eval()(torch.from_numpy(image), torch.from_numpy(mag)).numpy()
    if onnx_z.shape != torch_z.shape or onnx_z.shape != (len(images),):
        raise ExportShapeError(f"redshift output has shape {onnx_z.shape}; PyTorch gives {torch_z.shape}, expected ({len(images)},)")
    diff = np.abs(onnx_z.astype(np.float64) - torch_z.astype(np.float64))
    worst = int(np.argmax(diff)) if diff.size else 0
    max_diff = float(diff.max()) if diff.size else 0.0
    if not np.isfinite(max_diff) or max_diff > tolerance:
        raise ExportParityError(max_diff, tolerance, len(images), worst)
    return {"n": len(images), "max_abs_dz": max_diff, "tolerance": tolerance, "data": "rendered real-catalog galaxies"}
