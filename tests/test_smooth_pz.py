"""cai_edge.smooth_pz: where a p(z) crosses z = 0, found piece by piece, is the whole curve's bisection bit for bit."""

from __future__ import annotations

import numpy as np

from cai_edge.predictor import Predictor
from cai_edge.smooth_pz import U_MAX, Z_MIN, SmoothQuantiles


def _bisection_on_the_whole_curve(curve: SmoothQuantiles, rows: np.ndarray) -> np.ndarray:
    """The definition: 40 halvings of [x[0], U_MAX], each evaluating the whole curve (at_scores) at the midpoint."""
    lo, hi = np.full(len(rows), curve.x[0]), np.full(len(rows), U_MAX)
    for _ in range(40):
        mid = (lo + hi) / 2
        below = curve.at_scores(mid[:, None], rows)[:, 0] < Z_MIN
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def test_the_crossing_of_z_0_is_the_whole_curve_bisection_bit_for_bit():
    calibration = Predictor("default").bundle.calibration
    rng = np.random.default_rng(3)
    # low redshifts (the crossing between anchors), negative predictions (every anchor below 0: the high tail), and the rest
    z = np.concatenate([rng.uniform(-0.05, 0.15, 4000), rng.uniform(0.0, 0.02, 2000), rng.uniform(-3.0, 0.5, 2000),
                        np.full(50, -0.3), np.full(50, -2.0)])
    r = rng.uniform(13.0, 19.0, len(z))
    magnitudes = np.stack([r + 1.5, r + 0.6, r, r - 0.3, r - 0.5], axis=1)
    raw = z[:, None] + (1 + z[:, None]) * calibration.residual_quantiles(z, magnitudes)
    curve = SmoothQuantiles(calibration.levels, raw)
    rows = np.flatnonzero(curve.y[:, 0] < Z_MIN)  # the rows that are bisected
    tail = np.flatnonzero(curve.y[:, -1] < Z_MIN)
    assert len(rows) > 1000 and len(tail) > 100  # both kinds of crossing are exercised
    found = curve._score_at_z_min(np.arange(len(z)))
    assert np.array_equal(found[rows], _bisection_on_the_whole_curve(curve, rows))
    # the curve is at z = 0 there (to the bisection's resolution), or, where it never rises to 0, at its end
    reaches = curve.at_scores(np.array([U_MAX]), rows)[:, 0] >= Z_MIN
    assert np.all(np.abs(curve.at_scores(found[rows][:, None], rows)[reaches, 0]) < 1e-6)
    assert np.all(U_MAX - found[rows][~reaches] < 1e-9) and (~reaches).any()
