"""What a p(z) read back from an output file must be before anything is built from it.

An output is a file on someone's disk: its ``z_quantile_levels`` and ``z_quantiles`` may have been
edited. The levels must be cumulative probabilities, strictly increasing within [0, 1]; each
galaxy's quantiles finite, non-decreasing (a CDF never falls) and inside the physical redshift
range [:data:`~cai_edge.smooth_pz.Z_MIN`, :data:`Z_MAX`]; and a shared redshift grid is never
larger than :data:`MAX_GRID_BINS` bins, whatever the values. A row that fails is named and left
out by the reader, never turned into negative densities or a grid of millions of bins.
"""

from __future__ import annotations

import numpy as np

from cai_edge.domain import Z_LIMITS
from cai_edge.errors import CaiEdgeError
from cai_edge.smooth_pz import Z_MIN

Z_MAX = Z_LIMITS[1]  # the largest redshift a cai-edge record may hold
MAX_GRID_BINS = 50_000  # z = 0 … 20 in 0.0004-wide bins; 0.4 MB per galaxy in float64


class QuantileError(CaiEdgeError, ValueError):
    """The quantile levels of an output, or a grid asked of them, are not usable."""


def check_levels(levels: np.ndarray) -> None:
    """Raise :class:`QuantileError` unless ``levels`` are finite, strictly increasing and within [0, 1]."""
    levels = np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or len(levels) < 2 or not np.all(np.isfinite(levels)):
        raise QuantileError(f"z_quantile_levels must be at least two finite numbers, got {levels.tolist()[:20]}")
    if not np.all(np.diff(levels) > 0) or levels[0] < 0 or levels[-1] > 1:
        raise QuantileError(f"z_quantile_levels must be strictly increasing cumulative probabilities within [0, 1], "
                            f"got {' '.join(f'{v:g}' for v in levels[:20])}")


def row_problem(quantiles: np.ndarray) -> str:
    """Why one galaxy's quantiles are not a distribution's ('' when they are)."""
    q = np.asarray(quantiles, dtype=np.float64)
    if not np.all(np.isfinite(q)):
        return "a quantile is not a finite number"
    if np.any(np.diff(q) < 0):
        return "the quantiles decrease (a CDF never falls)"
    if q[0] < Z_MIN or q[-1] > Z_MAX:
        return f"a quantile lies outside z = {Z_MIN:g} … {Z_MAX:g} ({q[0]:.6g} … {q[-1]:.6g})"
    return ""


def check_grid(top: float, bin_width: float) -> None:
    """Raise :class:`QuantileError` unless a grid of ``bin_width``-wide bins from z = 0 to ``top`` is at most :data:`MAX_GRID_BINS`."""
    if isinstance(bin_width, bool) or not isinstance(bin_width, (int, float, np.floating)) or not np.isfinite(bin_width) \
            or bin_width <= 0:
        raise QuantileError(f"bin_width must be a positive number, got {bin_width!r:.40}")
    bins = int(np.ceil(top / bin_width)) + 2
    if bins > MAX_GRID_BINS:
        raise QuantileError(f"a grid of {bin_width:g}-wide bins up to z = {top:.6g} has {bins:,} bins, over the "
                            f"{MAX_GRID_BINS:,} allowed; give a larger bin_width")
