"""The training domain of a model: where in magnitude–colour space its training galaxies lie.

Features: r magnitude and the colours u−g, g−r, r−i, i−z, standardised with the training mean and
covariance; a galaxy's squared Mahalanobis distance to the training set decides. The threshold is
the 99th percentile of the training galaxies' own distances, so about 1 % of galaxies like the
training set are flagged. A galaxy whose r magnitude lies outside the training set's range (its 0.1–99.9 percentiles; the
Main Galaxy Sample is selected at r < 17.77) is out of the domain too, whatever its colours: the
Mahalanobis distance alone lets a faint galaxy with the colours of a brighter, higher-z one pass.
``z_pred`` outside the training redshift range is flagged apart.
Magnitudes only: an image unlike the training images is caught by the flux–magnitude check
(:mod:`cai_edge.flux_check`), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cai_edge.errors import CaiEdgeError
from cai_edge.flags import OUT_OF_DOMAIN, Z_OUT_OF_RANGE

FEATURES = ("r", "u-g", "g-r", "r-i", "i-z")
QUANTILE = 0.99
R_QUANTILES = (0.001, 0.999)  # the r range kept: a few catalog galaxies have r of 11 or 25 (bad photometry)


Z_LIMITS = (-0.1, 20.0)  # a training redshift range outside this is not a redshift range
R_LIMITS = (0.0, 40.0)
# The squared distance's 99th percentile: ~15 for Gaussian features, 27.5 in the shipped bundle (heavier tails). The
# mean squared distance of the fitting galaxies is 5 (five features), so below 1 it flags most of them; above 1,000 none.
THRESHOLD_LIMITS = (1.0, 1000.0)


class DomainError(CaiEdgeError, ValueError):
    """A domain record cannot be fitted or read."""


def features(magnitudes: np.ndarray) -> np.ndarray:
    m = np.asarray(magnitudes, dtype=np.float64)
    return np.stack([m[:, 2], m[:, 0] - m[:, 1], m[:, 1] - m[:, 2], m[:, 2] - m[:, 3], m[:, 3] - m[:, 4]], axis=1)


@dataclass(frozen=True)
class TrainingDomain:
    """Where the training galaxies lie in magnitude–colour space, and their redshift range.

    Parameters
    ----------
    mean : tuple of float
        Mean of the features (r, u−g, g−r, r−i, i−z) over the training galaxies.
    inverse_covariance : tuple of tuple of float
        Inverse of their covariance.
    threshold : float
        Squared Mahalanobis distance above which a galaxy is ``out_of_domain`` (the training
        galaxies' 99th percentile).
    z_range : tuple of float
        The training redshifts' range; ``z_pred`` outside it is ``z_out_of_range``.
    r_range : tuple of float
        The training r magnitudes' 0.1–99.9 percentiles; outside them is ``out_of_domain``.
    fitted_on : dict
        What the domain was fitted on.
    """
    mean: tuple[float, ...]
    inverse_covariance: tuple[tuple[float, ...], ...]
    threshold: float
    z_range: tuple[float, float]
    r_range: tuple[float, float]
    fitted_on: dict[str, Any]

    def distance2(self, magnitudes: np.ndarray) -> np.ndarray:
        d = features(magnitudes) - np.asarray(self.mean)
        return np.einsum("ni,ij,nj->n", d, np.asarray(self.inverse_covariance), d)

    def flags(self, magnitudes: np.ndarray, z_pred: np.ndarray) -> list[tuple[str, ...]]:
        """Per galaxy: ``out_of_domain`` and/or ``z_out_of_range``, or nothing.

        Parameters
        ----------
        magnitudes : array_like
            ``(N, 5)`` u,g,r,i,z magnitudes.
        z_pred : array_like
            ``(N,)`` predicted redshifts.

        Returns
        -------
        list of tuple of str
            The flags of each galaxy.
        """
        return [tuple(reasons) for reasons in self.flag_reasons(magnitudes, z_pred)]

    def flag_reasons(self, magnitudes: np.ndarray, z_pred: np.ndarray) -> list[dict[str, str]]:
        """Per galaxy: each flag of :meth:`flags` with why, in measured values (for the row's message).

        Parameters
        ----------
        magnitudes : array_like
            ``(N, 5)`` u,g,r,i,z magnitudes.
        z_pred : array_like
            ``(N,)`` predicted redshifts.

        Returns
        -------
        list of dict of str to str
            Per galaxy, ``{flag: reason}``; empty when it has none.
        """
        r = np.asarray(magnitudes, dtype=np.float64)[:, 2]
        distance2 = self.distance2(magnitudes)
        (z_lo, z_hi), (r_lo, r_hi) = self.z_range, self.r_range
        out = []
        for d2, r_mag, z in zip(distance2, r, np.asarray(z_pred, dtype=np.float64)):
            far = ([f"magnitude-colour distance² {d2:.1f} > {self.threshold:.1f} (the training galaxies' 99th percentile)"]
                   if d2 > self.threshold else [])
            if r_mag < r_lo or r_mag > r_hi:
                far.append(f"r = {r_mag:.2f} outside the training galaxies' {r_lo:.2f}–{r_hi:.2f}")
            reasons = {OUT_OF_DOMAIN: ", ".join(far)} if far else {}
            if z < z_lo or z > z_hi:
                reasons[Z_OUT_OF_RANGE] = f"z_pred {z:.4f} outside the training redshifts {z_lo:.4f}–{z_hi:.4f}"
            out.append(reasons)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"method": "Mahalanobis distance in standardised magnitude-colour space", "features": list(FEATURES),
                "mean": list(self.mean), "inverse_covariance": [list(r) for r in self.inverse_covariance],
                "threshold": self.threshold, "threshold_quantile": QUANTILE, "z_range": list(self.z_range),
                "r_range": list(self.r_range), "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, data: Any) -> "TrainingDomain":
        """Read and range-check a domain record: every number finite, ranges ordered and physical.

        Parameters
        ----------
        data : dict
            The manifest's ``domain`` record.

        Returns
        -------
        TrainingDomain
            The domain.

        Raises
        ------
        cai_edge.domain.DomainError
            The record is malformed or out of range.
        """
        if not isinstance(data, dict):
            raise DomainError("domain must be an object")
        try:
            mean = tuple(record_number(v) for v in data["mean"])
            inv = tuple(tuple(record_number(v) for v in r) for r in data["inverse_covariance"])
            threshold = record_number(data["threshold"])
            z_range = tuple(record_number(v) for v in data["z_range"])
            r_range = tuple(record_number(v) for v in data["r_range"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DomainError(f"domain is malformed ({type(exc).__name__}: {exc})") from None
        n = len(FEATURES)
        values = np.asarray([*mean, threshold, *z_range, *r_range], dtype=np.float64)
        if len(mean) != n or any(len(r) != n for r in inv) or len(inv) != n or len(z_range) != 2 or len(r_range) != 2:
            raise DomainError("domain record has the wrong shape")
        matrix = np.asarray(inv)
        if not np.all(np.isfinite(matrix)) or not np.all(np.isfinite(values)):
            raise DomainError("domain record has non-finite values")
        if not THRESHOLD_LIMITS[0] <= threshold <= THRESHOLD_LIMITS[1]:
            raise DomainError(f"domain threshold {threshold:.3g} is outside {THRESHOLD_LIMITS[0]:g}–{THRESHOLD_LIMITS[1]:g} "
                              "(it would flag most galaxies, or none)")
        if not Z_LIMITS[0] <= z_range[0] < z_range[1] <= Z_LIMITS[1] or not R_LIMITS[0] < r_range[0] < r_range[1] < R_LIMITS[1]:
            raise DomainError(f"domain ranges must be ordered and physical (z within {Z_LIMITS}, r within {R_LIMITS}); "
                              f"got z_range {z_range}, r_range {r_range}")
        from cai_edge.uncertainty import fitted_on_record

        return cls(mean, inv, threshold, (z_range[0], z_range[1]), (r_range[0], r_range[1]), fitted_on_record(data, DomainError))


def record_number(value: Any) -> float:
    """A manifest record's number: an int or float (never a bool or text), as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r:.40} is not a number")
    return float(value)


def fit_domain(magnitudes: np.ndarray, z_spec: np.ndarray, fitted_on: dict[str, Any]) -> TrainingDomain:
    x = features(magnitudes)
    x = x[np.all(np.isfinite(x), axis=1)]
    if len(x) < 100:
        raise DomainError(f"{len(x)} galaxies; at least 100 are needed to describe a training domain")
    mean = x.mean(axis=0)
    inv = np.linalg.inv(np.cov(x, rowvar=False))
    d2 = np.einsum("ni,ij,nj->n", x - mean, inv, x - mean)
    z = np.asarray(z_spec, dtype=np.float64)
    z = z[np.isfinite(z) & (z >= 0)]  # a negative or infinite z_spec is no redshift
    if len(z) < 2 or z.min() == z.max():
        raise DomainError(f"{len(z)} galaxies with a physical z_spec (finite, ≥ 0); a training redshift range needs more")
    return TrainingDomain(tuple(mean), tuple(tuple(r) for r in inv), float(np.quantile(d2, QUANTILE)),
                          (float(z.min()), float(z.max())), tuple(float(v) for v in np.quantile(x[:, 0], R_QUANTILES)),
                          {**fitted_on, "galaxies": int(len(x))})
