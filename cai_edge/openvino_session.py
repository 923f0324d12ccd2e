"""OpenVINO as a second CPU backend: the bundle's verified ``model.onnx`` compiled by OpenVINO, run like an ONNX Runtime session.

Only the bytes the bundle verified (checksum, schema) are handed to OpenVINO, never a file of
their own, and its interface is checked against the runtime's contract as ONNX Runtime's is.
Optional: ``pip install "cai-edge[openvino]"``; nothing imports this module unless an
``openvino`` backend is asked for or probed. Not in the Lambda package (see docs/speed.md).
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import numpy as np

from cai_edge.bundle import Bundle
from cai_edge.bundle.interface import check_session_interface
from cai_edge.errors import BackendUnavailableError, BundleError
from cai_edge.machine import usable_cores

# backend name → OpenVINO's inference precision hint on the CPU
PRECISIONS = {"openvino": "f32", "openvino-bf16": "bf16"}


def _port(port: Any, ov: Any) -> SimpleNamespace:
    """An OpenVINO model port described as ONNX Runtime describes its inputs (name, type, shape)."""
    shape = port.get_partial_shape()
    dims = [] if shape.rank.is_dynamic else [d.get_length() if d.is_static else None for d in shape]
    kind = "tensor(float)" if port.get_element_type() == ov.Type.f32 else str(port.get_element_type())
    return SimpleNamespace(name=port.get_any_name(), type=kind, shape=dims)


class OpenVINOSession:
    """A compiled OpenVINO model with ONNX Runtime's ``run(output_names, feed)``; one infer request per thread."""

    def __init__(self, bundle: Bundle, threads: int | None = None, backend: str = "openvino"):
        try:
            import openvino as ov
        except ImportError:
            raise BackendUnavailableError(f"backend {backend!r} needs OpenVINO: pip install \"cai-edge[openvino]\"") from None
        self.backend, self.precision = backend, PRECISIONS[backend]
        core = ov.Core()
        try:
            model = core.read_model(bundle.model_bytes, ov.Tensor(np.empty(0, np.uint8)))
        except Exception as exc:  # OpenVINO raises its own RuntimeError subtypes for a model it cannot read
            raise BundleError(f"{bundle.path}: model.onnx cannot be read by OpenVINO ({str(exc).strip()[:300]})") from exc
        check_session_interface([_port(p, ov) for p in model.inputs], [_port(p, ov) for p in model.outputs], str(bundle.path))
        self._compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": self.precision,
            "INFERENCE_NUM_THREADS": threads or usable_cores(),
            "PERFORMANCE_HINT": "LATENCY",  # one stream on all the threads: a batch at a time, as ONNX Runtime runs it
        })
        self._local = threading.local()

    def run(self, output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The named outputs for ``feed``, as new arrays (the request's buffers are reused by its next call)."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        results = request.infer(feed)
        return [np.array(results[self._compiled.output(name)]) for name in output_names]

    def get_providers(self) -> list[str]:
        """What runs the model, named as ONNX Runtime names its providers."""
        return [f"OpenVINO CPU ({self.precision})"]
