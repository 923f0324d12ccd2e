"""Photometric-redshift metrics, the one definition used everywhere in cai-edge.

With Δz = (z_pred − z_spec) / (1 + z_spec):

* ``bias``: mean Δz;
* ``sigma_nmad``: 1.4826 × median of the absolute deviation of Δz from its median (the normalized
  median absolute deviation; 1.4826 makes it σ for a Gaussian — the CAI code's 1.48 is a rounded
  constant);
* ``eta_05`` and ``eta_15``: outlier fractions, absolute Δz above 0.05 and 0.15;
* ``mae``: mean absolute z_pred − z_spec; ``r2``: coefficient of determination of z_pred on z_spec.
"""

from __future__ import annotations

import numpy as np

NMAD_SCALE = 1.4826
OUTLIER_CUTS = {"eta_05": 0.05, "eta_15": 0.15}
METRIC_NAMES = ("n", "bias", "sigma_nmad", "eta_05", "eta_15", "mae", "r2")


def delta_z(z_pred: np.ndarray, z_spec: np.ndarray) -> np.ndarray:
    """The normalised residual Δz = (z_pred − z_spec) / (1 + z_spec).

    Parameters
    ----------
    z_pred, z_spec : array_like
        Predicted and spectroscopic redshifts, the same shape.

    Returns
    -------
    numpy.ndarray
        Δz, float64.
    """
    z_pred = np.asarray(z_pred, dtype=np.float64)
    z_spec = np.asarray(z_spec, dtype=np.float64)
    return (z_pred - z_spec) / (1.0 + z_spec)


def sigma_nmad(dz: np.ndarray) -> float:
    """σ_NMAD: 1.4826 × the median absolute deviation of ``dz`` from its median.

    Parameters
    ----------
    dz : array_like
        Normalised residuals (:func:`delta_z`).

    Returns
    -------
    float
        σ_NMAD.
    """
    dz = np.asarray(dz, dtype=np.float64)
    return float(NMAD_SCALE * np.median(np.abs(dz - np.median(dz))))


def photoz_metrics(z_pred: np.ndarray, z_spec: np.ndarray) -> dict[str, float]:
    """All photo-z metrics of finite (z_pred, z_spec) pairs; NaN predictions are an error, not silently dropped.

    Parameters
    ----------
    z_pred, z_spec : array_like
        Predicted and spectroscopic redshifts, the same shape, all finite.

    Returns
    -------
    dict
        ``n``, ``bias``, ``sigma_nmad``, ``eta_05``, ``eta_15``, ``mae``, ``r2``.

    Raises
    ------
    ValueError
        Shapes differ, there are no galaxies, or a value is not finite.
    """
    z_pred = np.asarray(z_pred, dtype=np.float64)
    z_spec = np.asarray(z_spec, dtype=np.float64)
    if z_pred.shape != z_spec.shape:
        raise ValueError(f"z_pred {z_pred.shape} and z_spec {z_spec.shape} differ in shape")
    if z_pred.size == 0:
        raise ValueError("no galaxies to compute metrics on")
    if not (np.isfinite(z_pred).all() and np.isfinite(z_spec).all()):
        raise ValueError("z_pred and z_spec must be finite; drop failed objects explicitly first")
    dz = delta_z(z_pred, z_spec)
    residual = np.sum((z_pred - z_spec) ** 2)
    total = np.sum((z_spec - z_spec.mean()) ** 2)
    metrics = {
        "n": int(z_pred.size),
        "bias": float(dz.mean()),
        "sigma_nmad": sigma_nmad(dz),
        **{name: float(np.mean(np.abs(dz) > cut)) for name, cut in OUTLIER_CUTS.items()},
        "mae": float(np.mean(np.abs(z_pred - z_spec))),
        "r2": float(1.0 - residual / total) if total > 0 else float("nan"),
    }
    return metrics


def bootstrap_errors(
    z_pred: np.ndarray, z_spec: np.ndarray, n_boot: int = 200, seed: int = 0
) -> dict[str, float]:
    """Standard deviation of each metric over bootstrap resamples of the galaxies.

    Parameters
    ----------
    z_pred, z_spec : array_like
        Predicted and spectroscopic redshifts, as for :func:`photoz_metrics`.
    n_boot : int, optional
        Resamples (default 200).
    seed : int, optional
        Seed of the resampling (default 0).

    Returns
    -------
    dict
        The bootstrap standard deviation of each metric but ``n``.
    """
    z_pred = np.asarray(z_pred, dtype=np.float64)
    z_spec = np.asarray(z_spec, dtype=np.float64)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        idx = rng.integers(0, z_pred.size, z_pred.size)
        samples.append(photoz_metrics(z_pred[idx], z_spec[idx]))
    return {k: float(np.std([s[k] for s in samples], ddof=1)) for k in METRIC_NAMES if k != "n"}


# --- uncertainty: how well the intervals and p(z) describe the truth ------------------------------

def coverage(z_spec: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Fraction of galaxies whose ``z_spec`` lies inside ``[lo, hi]`` (68 % intervals should give ≈ 0.68).

    Parameters
    ----------
    z_spec : array_like
        Spectroscopic redshifts.
    lo, hi : array_like
        Each galaxy's interval, e.g. the ``z_lo68`` and ``z_hi68`` columns.

    Returns
    -------
    float
        The covered fraction.
    """
    z_spec, lo, hi = (np.asarray(a, dtype=np.float64) for a in (z_spec, lo, hi))
    return float(np.mean((z_spec >= lo) & (z_spec <= hi)))


def pit_histogram(pit: np.ndarray, bins: int = 10) -> dict[str, object]:
    """PIT counts in ``bins`` equal bins, and how far from flat they are.

    ``chi2`` is Pearson's statistic against a flat histogram (``bins − 1`` degrees of freedom;
    flat within what the sample allows when it is near ``bins − 1``); ``ks`` the Kolmogorov–Smirnov
    distance to the uniform distribution; ``outside`` the fraction at PIT 0 or 1 (z_spec beyond the
    whole p(z), catastrophic outliers).

    Parameters
    ----------
    pit : array_like
        Each galaxy's probability integral transform, its p(z)'s CDF at z_spec.
    bins : int, optional
        Histogram bins (default 10).

    Returns
    -------
    dict
        ``counts``, ``chi2``, ``dof``, ``ks``, ``outside``.
    """
    pit = np.asarray(pit, dtype=np.float64)
    counts, _ = np.histogram(pit, bins=bins, range=(0.0, 1.0))
    expected = len(pit) / bins
    ordered = np.sort(pit)
    n = len(ordered)
    ks = float(np.max(np.maximum(np.arange(1, n + 1) / n - ordered, ordered - np.arange(n) / n))) if n else float("nan")
    return {"counts": counts.tolist(), "chi2": float(np.sum((counts - expected) ** 2 / expected)), "dof": bins - 1,
            "ks": ks, "outside": float(np.mean((pit <= 0.0) | (pit >= 1.0)))}


def crps(cdf: np.ndarray, grid: np.ndarray, z_spec: np.ndarray) -> float:
    """Mean continuous ranked probability score, ∫ (F(z) − 1[z ≥ z_spec])² dz, over the galaxies.

    Parameters
    ----------
    cdf : array_like
        ``(N, G)``: each galaxy's CDF on ``grid``.
    grid : array_like
        ``(G,)`` redshifts, evenly spaced.
    z_spec : array_like
        ``(N,)`` spectroscopic redshifts.

    Returns
    -------
    float
        The mean CRPS (in units of redshift).
    """
    grid = np.asarray(grid, dtype=np.float64)
    step = np.diff(grid, prepend=grid[0] - (grid[1] - grid[0]))
    heaviside = (grid[None, :] >= np.asarray(z_spec, dtype=np.float64)[:, None]).astype(np.float64)
    return float(np.mean(np.sum((np.asarray(cdf) - heaviside) ** 2 * step[None, :], axis=1)))


def cde_loss(pdf: np.ndarray, grid: np.ndarray, z_spec: np.ndarray) -> float:
    """The conditional density estimation loss, mean ∫ p(z)² dz − 2 mean p(z_spec) (lower is better; as RAIL's).

    Parameters
    ----------
    pdf : array_like
        ``(N, G)``: each galaxy's density on ``grid``.
    grid : array_like
        ``(G,)`` redshifts, evenly spaced.
    z_spec : array_like
        ``(N,)`` spectroscopic redshifts.

    Returns
    -------
    float
        The loss (in units of 1/redshift).
    """
    pdf, grid = np.asarray(pdf, dtype=np.float64), np.asarray(grid, dtype=np.float64)
    at_truth = np.array([np.interp(z, grid, row, left=0.0, right=0.0) for z, row in zip(np.asarray(z_spec, np.float64), pdf)])
    return float(np.mean(np.sum(pdf**2, axis=1) * (grid[1] - grid[0])) - 2 * np.mean(at_truth))


def density_maxima(pdf: np.ndarray, floor: float = 0.05) -> np.ndarray:
    """How many local maxima each density has above ``floor`` × its peak (a plateau counts once).

    Parameters
    ----------
    pdf : array_like
        ``(N, G)``: densities on a grid.
    floor : float, optional
        Maxima lower than this fraction of the row's peak are not counted (default 0.05).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` counts; a unimodal p(z) has 1.
    """
    pdf = np.pad(np.asarray(pdf, dtype=np.float64), ((0, 0), (1, 1)))
    left, mid, right = pdf[:, :-2], pdf[:, 1:-1], pdf[:, 2:]
    return np.sum((mid > left) & (mid >= right) & (mid > floor * pdf.max(axis=1, keepdims=True)), axis=1)
