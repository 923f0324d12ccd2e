"""Photometric-redshift metrics, the one definition used everywhere in cai-edge.

With Δz = (z_pred − z_spec) / (1 + z_spec):

* ``bias``: mean Δz;
* ``sigma_nmad``: 1.4826 × median |Δz − median Δz| (the normalized median absolute deviation;
  1.4826 makes it σ for a Gaussian — the CAI code's 1.48 is a rounded constant);
* ``eta_05`` and ``eta_15``: outlier fractions, |Δz| > 0.05 and > 0.15;
* ``mae``: mean |z_pred − z_spec|; ``r2``: coefficient of determination of z_pred on z_spec.
"""

from __future__ import annotations

import numpy as np

NMAD_SCALE = 1.4826
OUTLIER_CUTS = {"eta_05": 0.05, "eta_15": 0.15}
METRIC_NAMES = ("n", "bias", "sigma_nmad", "eta_05", "eta_15", "mae", "r2")


def delta_z(z_pred: np.ndarray, z_spec: np.ndarray) -> np.ndarray:
    z_pred = np.asarray(z_pred, dtype=np.float64)
    z_spec = np.asarray(z_spec, dtype=np.float64)
    return (z_pred - z_spec) / (1.0 + z_spec)


def sigma_nmad(dz: np.ndarray) -> float:
    dz = np.asarray(dz, dtype=np.float64)
    return float(NMAD_SCALE * np.median(np.abs(dz - np.median(dz))))


def photoz_metrics(z_pred: np.ndarray, z_spec: np.ndarray) -> dict[str, float]:
    """All metrics for finite (z_pred, z_spec) pairs; NaN predictions are an error, not silently dropped."""
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
    """Standard deviation of each metric over ``n_boot`` bootstrap resamples of the galaxies."""
    z_pred = np.asarray(z_pred, dtype=np.float64)
    z_spec = np.asarray(z_spec, dtype=np.float64)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        idx = rng.integers(0, z_pred.size, z_pred.size)
        samples.append(photoz_metrics(z_pred[idx], z_spec[idx]))
    return {k: float(np.std([s[k] for s in samples], ddof=1)) for k in METRIC_NAMES if k != "n"}
