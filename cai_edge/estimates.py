"""From prepared galaxies to finished result rows: redshift, uncertainty, flags.

Per batch: the network's redshift, the calibrated interval (:mod:`cai_edge.uncertainty`), and
the flags — flux–magnitude mismatch (:mod:`cai_edge.flux_check`), training domain
(:mod:`cai_edge.domain`), images unlike the training images (:mod:`cai_edge.image_domain`),
``uncalibrated``. All vectorised over the batch.

``cai-edge predict``, the Lambda handler and :meth:`Predictor.predict_table` all go through
:func:`estimate` and :func:`check_magnitude_system`, so every row means the same wherever it was
made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from cai_edge.flags import FLUX_MISMATCH, IMAGE_UNCHECKED, UNCALIBRATED
from cai_edge.flux_check import flux_mismatch_reasons
from cai_edge.io.records import GalaxyRecord
from cai_edge.results.rows import row
from cai_edge.io.status import NONFINITE_PREDICTION, WRONG_MAGNITUDE_SYSTEM
from cai_edge.magnitude_systems import mismatch
from cai_edge.overlap import alongside


@dataclass
class Estimate:
    """One galaxy's result: the record (possibly turned into a failure), z, its interval and added flags.

    Parameters
    ----------
    record : GalaxyRecord
        The galaxy as read; a ``nonfinite_prediction`` failure when the model gave no finite z.
    z_pred : float
        The predicted redshift (NaN when the record is not ``ok``).
    interval : dict of str to float
        ``z_lo68``, ``z_hi68``, ``z_lo95``, ``z_hi95``, ``z_err``; empty when the bundle is uncalibrated.
    flags : tuple of str
        Flags added by the estimate (:mod:`cai_edge.flags`); the record's own come on top.
    quantiles : numpy.ndarray or None
        The galaxy's redshift at the calibration's levels (its p(z)), when asked for.
    """

    record: GalaxyRecord
    z_pred: float = math.nan
    interval: dict[str, float] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    quantiles: np.ndarray | None = None  # z at the calibration's levels (its p(z)), when asked for

    def row(self, with_pdf: bool = False) -> list[str]:
        """The output row for this galaxy, as text in the order of the output columns.

        Parameters
        ----------
        with_pdf : bool, optional
            Append the ``z_quantiles`` cell (the ``--pdf`` column).

        Returns
        -------
        list of str
            The row's cells.
        """
        return row(self.record, self.z_pred, self.interval, self.flags, self.quantiles, with_pdf)


UNCALIBRATED_REASON = "the bundle has no uncertainty calibration, so no intervals (cai-edge calibrate makes one)"
IMAGE_UNCHECKED_REASON = ("the bundle has no training-image reference, so the image checks could not run "
                          "(cai-edge calibrate --domain-data makes one)")


def with_reasons(record: GalaxyRecord, reasons: dict[str, str]) -> GalaxyRecord:
    """``record`` with each flag's reason (``flag: why``) after its own message: every flagged row says why."""
    if not reasons:
        return record
    said = "; ".join(f"{flag}: {why}" for flag, why in reasons.items())
    return replace(record, message=f"{record.message}; {said}" if record.message else said)


def check_magnitude_system(record: GalaxyRecord, model_system: str, override: str | None = None) -> GalaxyRecord:
    """The record, or a ``wrong_magnitude_system`` failure when its declared system is not the model's.

    Parameters
    ----------
    record : GalaxyRecord
        The galaxy as read.
    model_system : str
        The bundle's magnitude system (``Preprocessing.magnitude_system``).
    override : str, optional
        What the caller says the magnitudes are (``--magnitude-system``), over the record's own.

    Returns
    -------
    GalaxyRecord
        ``record`` itself, or a failed record saying which systems differ.
    """
    if not record.ok:
        return record
    problem = mismatch(override or record.magnitude_system, model_system)
    if problem is None:
        return record
    return GalaxyRecord.failed(record.id, record.source, WRONG_MAGNITUDE_SYSTEM, problem, record.z_spec)


def estimate(predictor, records: list[GalaxyRecord], batch_size: int, with_quantiles: bool = False) -> list[Estimate]:
    """Predict every ``ok`` record (others pass through) and attach intervals and flags.

    The one path from prepared galaxies to result rows: ``cai-edge predict``, the Lambda handler and
    :meth:`cai_edge.predictor.Predictor.predict_table` all call it.

    Parameters
    ----------
    predictor : Predictor
        The :class:`~cai_edge.predictor.Predictor` whose bundle predicts, calibrates and flags.
    records : list of GalaxyRecord
        Galaxies as read (:func:`cai_edge.io.inputs.iter_galaxies`).
    batch_size : int
        Galaxies per model call.
    with_quantiles : bool, optional
        Also give each galaxy's p(z) as redshifts at the calibration's levels.

    Returns
    -------
    list of Estimate
        One per record, in order.
    """
    out = [Estimate(r) for r in records]
    ok = [i for i, r in enumerate(records) if r.ok]
    if not ok:
        return out
    mags = np.stack([records[i].magnitudes for i in ok])
    images = np.stack([records[i].image for i in ok])
    calibration, domain, image_domain = predictor.bundle.calibration, predictor.bundle.domain, predictor.bundle.image_domain

    def pixel_checks() -> tuple[list, list]:  # need no redshift: they run while the model does (cai_edge.overlap)
        return (flux_mismatch_reasons(images, mags), image_domain.flag_reasons(images, mags) if image_domain is not None
                else [{IMAGE_UNCHECKED: IMAGE_UNCHECKED_REASON}] * len(ok))

    def model() -> np.ndarray:
        return predictor.predict_prepared(images, mags, batch_size)

    # beside the model only when there are image checks: waking a helper for the flux check alone costs more than it saves
    z, (mismatched, image_flags) = alongside(model, pixel_checks) if image_domain is not None else (model(), pixel_checks())
    z = z.astype(np.float64)
    finite = np.isfinite(z)
    intervals = calibration.intervals(np.where(finite, z, 0.0), mags) if calibration is not None else None
    domain_flags = domain.flag_reasons(mags, np.where(finite, z, 0.0)) if domain is not None else [{}] * len(ok)
    quantiles = calibration.redshift_quantiles(np.where(finite, z, 0.0), mags) if with_quantiles and calibration is not None else None
    # Python floats and bools once per batch (tolist), not a numpy scalar per row and column
    columns = {k: v.tolist() for k, v in intervals.items()} if intervals is not None else None
    z_values, finite_values = z.tolist(), finite.tolist()
    for j, i in enumerate(ok):
        r = records[i]
        if not finite_values[j]:
            out[i] = Estimate(GalaxyRecord.failed(r.id, r.source, NONFINITE_PREDICTION, "the model returned NaN or inf for this galaxy", r.z_spec))
            continue
        interval = {k: v[j] for k, v in columns.items()} if columns is not None else {}
        reasons = {**domain_flags[j], **image_flags[j], **({} if intervals is not None else {UNCALIBRATED: UNCALIBRATED_REASON}),
                   **({FLUX_MISMATCH: mismatched[j]} if mismatched[j] else {})}
        out[i] = Estimate(with_reasons(r, reasons), z_values[j], interval, tuple(reasons), quantiles[j] if quantiles is not None else None)
    return out
