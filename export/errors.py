"""Typed export failures: an export either passes every check or raises one of these."""

from __future__ import annotations

from cai_edge.errors import CaiEdgeError


class ExportError(CaiEdgeError):
    """The ONNX export failed."""


class ExportShapeError(ExportError):
    """The exported graph's inputs or outputs have the wrong names, shapes or dtypes."""


class ExportParityError(ExportError):
    """ONNX Runtime and PyTorch disagree by more than the tolerance."""

    def __init__(self, max_abs_dz: float, tolerance: float, n: int, worst_index: int):
        super().__init__(
            f"ONNX and PyTorch redshifts differ by up to {max_abs_dz:.3g} (galaxy {worst_index} of {n}); "
            f"tolerance {tolerance:g}. The export is rejected."
        )
        self.max_abs_dz = max_abs_dz
        self.tolerance = tolerance
        self.n = n
        self.worst_index = worst_index
