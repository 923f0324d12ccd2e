"""Is a calibration or image reference plausible for this model? What ``cai-edge calibrate`` warns about.

A reference or calibration can be well formed and still describe something the model never saw:
labels far outside the training redshifts, intervals far wider than the residuals justify, an
image reference whose noise is unlike the training images'. Each check gives a warning with its
reason (values outside the hard limits of :mod:`cai_edge.image_domain` are refused instead):

* **labels**: z_spec beyond the training redshift range (the source bundle's ``domain``, or
  the one fitted on ``--domain-data``) by more than :func:`range_margin` (a quarter of the range,
  at least 0.05 (1 + z)) — the model cannot predict them, and they widen every interval;
* **interval widths**: the median 95 % width above :data:`WIDTH_RATIO_LIMIT` × what Gaussian
  residuals of the same σ_NMAD would give (3.92 σ_NMAD (1 + z)); the shipped default's ratio is 1.25;
* **image reference**: a band's sky noise more than :data:`NOISE_FACTOR_LIMIT` × above or below
  the source bundle's reference (the training images'), or an asymmetry threshold more than
  :data:`ASYMMETRY_FACTOR_LIMIT` × the reference's (the check would pass what the training images' flags);
  likewise a band-offset threshold over that factor × the reference's, or a centre-source S/N
  threshold below 1 / that factor of it (misregistered bands or cutouts without a galaxy would pass).
"""

from __future__ import annotations

import numpy as np

from cai_edge.image_domain import OFFSET_BANDS, ImageDomain
from cai_edge.metrics import sigma_nmad

WIDTH_RATIO_LIMIT = 3.0
NOISE_FACTOR_LIMIT = 3.0
ASYMMETRY_FACTOR_LIMIT = 3.0
_GAUSSIAN_95_WIDTH = 2 * 1.959964  # in σ


def range_margin(z_range: tuple[float, float]) -> float:
    """How far beyond the training redshifts a label may lie before it warns: a sample's extremes are not hard edges."""
    return max(0.25 * (z_range[1] - z_range[0]), 0.05 * (1 + z_range[1]))


def label_warnings(z_spec: np.ndarray, z_range: tuple[float, float] | None) -> list[str]:
    """A warning when labels lie outside the training redshift range ``z_range`` (None: not known, no check)."""
    if z_range is None:
        return []
    z = np.asarray(z_spec, dtype=np.float64)
    margin = range_margin(z_range)
    outside = (z < z_range[0] - margin) | (z > z_range[1] + margin)
    if not outside.any():
        return []
    return [f"{int(outside.sum())} of {len(z)} labels have z_spec outside the training redshifts {z_range[0]:.3f}–"
            f"{z_range[1]:.3f} (by more than {margin:.3f}; from {z[outside].min():.3g} to {z[outside].max():.3g}): the model cannot predict such "
            "redshifts, and their residuals widen every interval; if they are label errors, remove them and calibrate again"]


def width_warnings(z_pred: np.ndarray, z_spec: np.ndarray, widths_95: np.ndarray) -> list[str]:
    """A warning when the median 95 % width is far beyond what the residuals' σ_NMAD gives."""
    z_pred, z_spec = np.asarray(z_pred, np.float64), np.asarray(z_spec, np.float64)
    scatter = sigma_nmad((z_spec - z_pred) / (1 + z_pred))
    expected = _GAUSSIAN_95_WIDTH * scatter * (1 + float(np.median(z_pred)))
    width = float(np.median(widths_95))
    if not width > WIDTH_RATIO_LIMIT * expected:
        return []
    return [f"the median 95 % interval is {width:.3g} wide, {width / expected:.0f}x what residuals of σ_NMAD {scatter:.4f} "
            f"give ({expected:.3g}; over {WIDTH_RATIO_LIMIT:g}x warns): a few labels far from their predictions "
            "(wrong z_spec, or galaxies unlike the training set) set these intervals"]


def image_reference_warnings(fitted: ImageDomain, training: ImageDomain | None) -> list[str]:
    """Warnings when a fitted image reference is far from the training images' (None: not known, no check)."""
    if training is None:
        return []
    warnings = []
    ratio = np.asarray(fitted.band_noise) / np.asarray(training.band_noise)
    off = [f"{band} {r:.3g}x" for band, r in zip("ugriz", ratio) if not 1 / NOISE_FACTOR_LIMIT <= r <= NOISE_FACTOR_LIMIT]
    if off:
        warnings.append(f"the image reference's sky noise differs from the training images' by more than "
                        f"{NOISE_FACTOR_LIMIT:g}x ({', '.join(off)}): the images are deeper, shallower or scaled unlike "
                        "those the model was trained on, and the image_noise check will flag accordingly")
    if fitted.asymmetry_threshold > ASYMMETRY_FACTOR_LIMIT * training.asymmetry_threshold:
        warnings.append(f"the image reference's asymmetry threshold {fitted.asymmetry_threshold:.3g} is over "
                        f"{ASYMMETRY_FACTOR_LIMIT:g}x the training images' ({training.asymmetry_threshold:.3g}): "
                        "cutouts with neighbours or artefacts would pass as usable")
    return warnings + _content_warnings(fitted, training)


def _content_warnings(fitted: ImageDomain, training: ImageDomain) -> list[str]:
    """Band-offset and centre-source thresholds far looser than the training images' (either unknown: no check)."""
    if fitted.offset_threshold_px is None or training.offset_threshold_px is None:
        return []
    warnings = []
    loose = [f"{band} {f:.2f} px against {t:.2f}" for band, f, t in
             zip(OFFSET_BANDS, fitted.offset_threshold_px, training.offset_threshold_px) if f > ASYMMETRY_FACTOR_LIMIT * t]
    if loose:
        warnings.append(f"the image reference's band-offset thresholds are over {ASYMMETRY_FACTOR_LIMIT:g}x the training "
                        f"images' ({', '.join(loose)}): misregistered bands would pass as usable")
    if fitted.centre_snr_threshold < training.centre_snr_threshold / ASYMMETRY_FACTOR_LIMIT:
        warnings.append(f"the image reference's centre-source S/N threshold {fitted.centre_snr_threshold:.1f} is under "
                        f"1/{ASYMMETRY_FACTOR_LIMIT:g} of the training images' ({training.centre_snr_threshold:.1f}): "
                        "cutouts without a galaxy would pass as usable")
    fitted_match, training_match = fitted.photometric_match, training.photometric_match
    if fitted_match is not None and training_match is not None:
        width = fitted_match.typical_range_dex[1] - fitted_match.typical_range_dex[0]
        training_width = training_match.typical_range_dex[1] - training_match.typical_range_dex[0]
        if (fitted_match.colour_threshold > ASYMMETRY_FACTOR_LIMIT * training_match.colour_threshold
                or width > ASYMMETRY_FACTOR_LIMIT * training_width):
            warnings.append(f"the image reference's pixels-against-magnitudes thresholds (colours {fitted_match.colour_threshold:.1f}σ, "
                            f"flux level range {width:.2f} dex for a typical profile) are over {ASYMMETRY_FACTOR_LIMIT:g}x the "
                            f"training images' ({training_match.colour_threshold:.1f}σ, {training_width:.2f} dex): another galaxy's "
                            "cutout would pass as usable")
    return warnings
