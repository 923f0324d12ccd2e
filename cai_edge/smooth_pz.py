"""The p(z) that a row's quantiles describe: a smooth, shape-preserving curve, truncated at z = 0.

A p(z) is stored as redshifts at fixed cumulative probabilities (levels). Drawn through every
stored quantile with straight CDF segments (a piecewise-constant density), the calibration's
close tail quantiles — a 300-galaxy cell's 0.5 % quantile is its smallest residual — become
isolated spikes that read as multimodality. Here the quantile function is instead a monotone
cubic (Fritsch–Carlson PCHIP) in the Gaussian score u = Φ⁻¹(level) through the **anchors**:
the quantiles at 0.025, 0.16, 0.5, 0.84 and 0.975 (the interval bounds and the median, so the
68 % and 95 % intervals are exactly the calibrated ones). Beyond the outer anchors it goes on
with the end slope, bending outwards (quadratically in u) just enough to reach the outermost
stored quantiles (0.005 and 0.995 for the shipped calibration), so heavy calibrated tails stay
heavy while the density stays continuous and falls steadily into each tail. Levels 0 and 1 are
u = ∓:data:`U_MAX` (cut where 10⁻⁴ is left on either side). The density has, on the shipped
calibration, one maximum: ``benchmarks/pz_smoothness.py`` measures it.

The distribution is then truncated at z = 0 (:data:`Z_MIN`) and
renormalised. Applied to the quantiles this module wrote for a p(z) that z = 0 does not cut, the
rule gives back the same curve (the anchors and tail knots are on it), so a reader of an output and
the writer agree; for a cut one, the reader's curve is within a few 0.001 in z of the writer's.
"""

from __future__ import annotations

from functools import lru_cache
from statistics import NormalDist

import numpy as np

Z_MIN = 0.0  # no galaxy has a negative redshift: every p(z) is truncated here
ANCHOR_LEVELS = (0.025, 0.16, 0.5, 0.84, 0.975)
TAIL_MASS = 1e-4  # Gaussian-score tails are cut where this much probability is left on either side
_NORMAL = NormalDist()
U_MAX = -_NORMAL.inv_cdf(TAIL_MASS)
_U_GRID = np.linspace(-U_MAX, U_MAX, 1501)  # 0.005 apart in u: far finer than any redshift resolution
_P_GRID = np.clip((np.array([_NORMAL.cdf(u) for u in _U_GRID]) - TAIL_MASS) / (1 - 2 * TAIL_MASS), 0.0, 1.0)
_P_GRID[0], _P_GRID[-1] = 0.0, 1.0
_CHUNK = 4096  # rows evaluated on the u grid at once (~50 MB)


def gaussian_score(levels) -> np.ndarray:
    """u for each cumulative probability: Φ⁻¹ of the level, mapped so that 0 and 1 are ∓:data:`U_MAX`."""
    return _scores(tuple(float(p) for p in levels)).copy()


@lru_cache(maxsize=64)
def _scores(levels: tuple[float, ...]) -> np.ndarray:
    """:func:`gaussian_score`, kept per set of levels: a calibration has one, asked for on every batch."""
    return np.array([_NORMAL.inv_cdf(TAIL_MASS + p * (1 - 2 * TAIL_MASS)) for p in levels])


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch–Carlson derivatives (as scipy's PchipInterpolator) at knots ``x`` of each row of ``y``."""
    h = np.diff(x)
    d = np.diff(y, axis=1) / h
    m = np.zeros_like(y)
    if len(x) > 2:
        w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
        left, right = d[:, :-1], d[:, 1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            harmonic = (w1 + w2) / (w1 / left + w2 / right)
        m[:, 1:-1] = np.where(left * right > 0, harmonic, 0.0)
        m[:, 0], m[:, -1] = _end_slope(h[0], h[1], d[:, 0], d[:, 1]), _end_slope(h[-1], h[-2], d[:, -1], d[:, -2])
    else:
        m[:] = d
    return m


def _end_slope(h0: float, h1: float, d0: np.ndarray, d1: np.ndarray) -> np.ndarray:
    s = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
    s = np.where(np.sign(s) != np.sign(d0), 0.0, s)
    return np.where((np.sign(d0) != np.sign(d1)) & (np.abs(s) > 3 * np.abs(d0)), 3 * d0, s)


def _on_piece(u: np.ndarray, x0: np.ndarray, h: np.ndarray, y0: np.ndarray, m0: np.ndarray, y1: np.ndarray,
              m1: np.ndarray) -> np.ndarray:
    """The cubic Hermite curve at scores ``u`` on pieces starting at ``x0``, ``h`` wide, with values ``y0``, ``y1`` and
    slopes ``m0``, ``m1`` at their ends.

    s³ and s² are computed once each (np.power with exponent 3 is a libm call per element: four of them were most
    of a batch's interval cost).
    """
    s = (u - x0) / h
    s2, s3 = s**2, s**3
    return (2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * h * m0 + (-2 * s3 + 3 * s2) * y1 + (s3 - s2) * h * m1


class SmoothQuantiles:
    """The smooth quantile function of each row of ``quantiles`` (``(N, L)`` redshifts at ``levels``).

    Parameters
    ----------
    levels : array_like
        ``(L,)`` cumulative probabilities from 0 to 1; must include 0.025, 0.16, 0.84 and 0.975.
    quantiles : array_like
        ``(N, L)`` redshifts, increasing along each row.
    """

    def __init__(self, levels, quantiles):
        levels = [float(v) for v in levels]
        q = np.asarray(quantiles, dtype=np.float64).reshape(-1, len(levels))
        anchors = [levels.index(a) for a in ANCHOR_LEVELS if a in levels]
        self.x = gaussian_score([levels[i] for i in anchors])
        self.y = q[:, anchors]
        self.m = _pchip_slopes(self.x, self.y)
        # Beyond the outer anchors: on with the end slope, bending outwards (c ≥ 0) as far as needed to reach the
        # outermost stored quantiles (0.005 and 0.995 for the shipped calibration), so heavy calibrated tails stay
        # heavy and the density stays continuous and falls monotonically into each tail.
        self.low_bend, self.high_bend = np.zeros(len(q)), np.zeros(len(q))
        inner = [i for i, p in enumerate(levels) if 0.0 < p < 1.0]
        if inner and levels[inner[0]] < ANCHOR_LEVELS[0]:
            d = self.x[0] - gaussian_score([levels[inner[0]]])[0]
            self.low_bend = np.maximum(0.0, (self.y[:, 0] - q[:, inner[0]] - self.m[:, 0] * d) / d**2)
        if inner and levels[inner[-1]] > ANCHOR_LEVELS[-1]:
            d = gaussian_score([levels[inner[-1]]])[0] - self.x[-1]
            self.high_bend = np.maximum(0.0, (q[:, inner[-1]] - self.y[:, -1] - self.m[:, -1] * d) / d**2)

    def __len__(self) -> int:
        return len(self.y)

    def at_scores(self, u: np.ndarray, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Redshifts at Gaussian scores ``u`` — ``(U,)`` for every chosen row, or ``(n, U)``, one line per row — ``(n, U)``, untruncated."""
        x, y, m = self.x, self.y[rows], self.m[rows]
        u = np.asarray(u, dtype=np.float64)
        if u.ndim == 1:  # the same scores for every row: the pieces and their Hermite weights are found once, per score
            k = np.clip(np.searchsorted(x, u, side="right") - 1, 0, len(x) - 2)
            z = _on_piece(u, x[k], x[k + 1] - x[k], y[:, k], m[:, k], y[:, k + 1], m[:, k + 1])
            u = u[None, :]
        else:
            u = np.broadcast_to(u, (len(y), u.shape[-1]))
            k = np.clip(np.searchsorted(x, u, side="right") - 1, 0, len(x) - 2)
            at = lambda a, i: np.take_along_axis(a, i, axis=1)  # noqa: E731
            z = _on_piece(u, x[k], x[k + 1] - x[k], at(y, k), at(m, k), at(y, k + 1), at(m, k + 1))
        low, high = np.maximum(x[0] - u, 0.0), np.maximum(u - x[-1], 0.0)
        z = np.where(u < x[0], y[:, :1] - m[:, :1] * low - self.low_bend[rows, None] * low**2, z)
        return np.where(u > x[-1], y[:, -1:] + m[:, -1:] * high + self.high_bend[rows, None] * high**2, z)

    def _score_at_z_min(self, rows: np.ndarray) -> np.ndarray:
        """The Gaussian score where each row's curve crosses z = 0: in the low tail (most rows), else by bisection."""
        y0, slope, bend = self.y[rows, 0] - Z_MIN, self.m[rows, 0], self.low_bend[rows]
        root = np.sqrt(np.maximum(slope**2 + 4 * bend * y0, 0.0))  # y0 − slope·d − bend·d² = 0, d ≥ 0
        u = np.clip(self.x[0] - 2 * y0 / np.maximum(slope + root, 1e-300), -U_MAX, self.x[0])
        inner = np.flatnonzero(y0 < Z_MIN)  # even the first anchor is below 0
        if len(inner):
            u[inner] = self._bisect_z_min(rows[inner])
        return u

    def _bisect_z_min(self, rows: np.ndarray) -> np.ndarray:
        """The score where the curve crosses z = 0, for rows whose first anchor is below it: 40 halvings of [x[0], U_MAX].

        The curve is monotone, so the crossing lies after the last knot below z = 0 and before the next
        (beyond the last knot when every one is below): below that knot each step's answer is known, and
        past it only that piece is evaluated, with :meth:`at_scores`' own arithmetic — a third of the cost
        of evaluating the whole curve at every step, and the same scores bit for bit except where the
        whole curve's rounding is not monotone: a knot within ~1e-18 of z = 0 with a flat end slope can
        evaluate to ≥ 0 just before itself, which this reads as below (quantiles then move by < 2e-9).
        """
        x, y, m = self.x, self.y[rows], self.m[rows]
        last = len(x) - 1
        k = np.count_nonzero(y < Z_MIN, axis=1) - 1  # the last knot below z = 0
        piece = np.minimum(k, last - 1)
        r = np.arange(len(rows))
        x0, x1 = x[piece], x[piece + 1]
        h = x1 - x0
        y0, y1, m0, m1 = y[r, piece], y[r, piece + 1], m[r, piece], m[r, piece + 1]
        start, tail = x[k], k == last
        top, top_slope, top_bend = y[:, -1], m[:, -1], self.high_bend[rows]
        lo, hi = np.full(len(rows), x[0]), np.full(len(rows), U_MAX)
        for _ in range(40):  # 2⁻⁴⁰ of the score range: far below any precision that matters
            mid = (lo + hi) / 2
            z = _on_piece(mid, x0, h, y0, m0, y1, m1)
            if tail.any():
                high = np.maximum(mid - x[-1], 0.0)
                z = np.where(mid > x[-1], top + top_slope * high + top_bend * high**2, z)
            below = (mid < start) | ((tail | (mid < x1)) & (z < Z_MIN))
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return (lo + hi) / 2

    def _chunks(self):
        for start in range(0, len(self), _CHUNK):
            rows = slice(start, min(start + _CHUNK, len(self)))
            curve = self.at_scores(_U_GRID, rows)
            below = np.array([np.interp(Z_MIN, row, _P_GRID, left=0.0, right=1.0) for row in curve])
            yield rows, curve, below

    def quantiles(self, levels) -> np.ndarray:
        """``(N, L)``: each row's redshift at each level, of the distribution truncated at z = 0 and renormalised."""
        levels = np.asarray(levels, dtype=np.float64)
        out = self.at_scores(gaussian_score(levels))
        rows = np.flatnonzero(self.at_scores(np.array([-U_MAX]))[:, 0] < Z_MIN)
        if len(rows):  # F⁻¹(F0 + p (1 − F0)), with F0 the mass below z = 0
            f0 = np.interp(self._score_at_z_min(rows), _U_GRID, _P_GRID)
            wanted = np.interp(f0[:, None] + levels[None, :] * (1.0 - f0[:, None]), _P_GRID, _U_GRID)
            out[rows] = np.maximum(self.at_scores(wanted, rows), Z_MIN)
        return out

    def cdf(self, grid) -> np.ndarray:
        """``(N, G)``: each row's truncated CDF at every redshift of ``grid``."""
        grid = np.asarray(grid, dtype=np.float64)
        out = np.zeros((len(self), len(grid)))
        for rows, curve, below in self._chunks():
            f = np.stack([np.interp(grid, row, _P_GRID, left=0.0, right=1.0) for row in curve])
            out[rows] = _truncate(f, below, grid >= Z_MIN)
        return out

    def pdf(self, grid) -> np.ndarray:
        """``(N, G)``: each row's density on the evenly spaced ``grid`` (its mass in each cell), normalised so that sum × Δz = 1."""
        grid = np.asarray(grid, dtype=np.float64)
        step = grid[1] - grid[0]
        mass = np.diff(self.cdf(np.concatenate([grid - step / 2, [grid[-1] + step / 2]])), axis=1)
        total = mass.sum(axis=1, keepdims=True)
        return np.divide(mass, total * step, out=np.zeros_like(mass), where=total > 0)

    def cdf_at(self, z) -> np.ndarray:
        """``(N,)``: each row's truncated CDF at its own redshift (the PIT when ``z`` is z_spec)."""
        z = np.asarray(z, dtype=np.float64)
        out = np.zeros(len(self))
        for rows, curve, below in self._chunks():
            f = np.array([np.interp(v, row, _P_GRID, left=0.0, right=1.0) for row, v in zip(curve, z[rows])])
            out[rows] = _truncate(f[:, None], below, z[rows, None] >= Z_MIN)[:, 0]
        return out


def _truncate(f: np.ndarray, below: np.ndarray, above_min: np.ndarray) -> np.ndarray:
    """(F − F(z_min)) / (1 − F(z_min)) above z_min, 0 below."""
    kept = np.maximum(1.0 - below, 1e-300)[:, None]
    return np.where(above_min, np.clip((f - below[:, None]) / kept, 0.0, 1.0), 0.0)
