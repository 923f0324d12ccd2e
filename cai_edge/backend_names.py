"""The engines a bundle can run on and the environment's default, without importing any engine (the CLI checks them first)."""

from __future__ import annotations

import os

BACKENDS = ("auto", "onnxruntime", "openvino", "openvino-bf16")
ENV = "CAI_EDGE_BACKEND"  # the default backend of this environment (a cluster's, a test suite's), where set


def default_backend() -> str:
    """The backend used when none is given: ``$CAI_EDGE_BACKEND`` where set (one of :data:`BACKENDS`), else ``auto``."""
    backend = os.environ.get(ENV, "").strip() or "auto"
    if backend not in BACKENDS:
        raise ValueError(f"{ENV}={backend!r}: it must be one of {', '.join(BACKENDS)}")
    return backend
