"""Build toolchain: the AstroMAE network, checkpoint import and reference weights.

Importing this package does not import torch; the names below load their modules (and
torch) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AstroMAE": "cai_edge.models.astromae",
    "MaskedAutoencoder": "cai_edge.models.mae",
    "load_checkpoint": "cai_edge.models.checkpoint",
    "read_state_dict": "cai_edge.models.checkpoint",
    "load_reference": "cai_edge.models.reference",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
