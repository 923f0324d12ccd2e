"""How unlike the training images a cutout is: three statistics of its 32×32 crop.

The magnitude-colour domain (:mod:`cai_edge.domain`) and the flux check (:mod:`cai_edge.flux_check`)
cannot see an image that is deeper or shallower than the training images, that holds a neighbour
or an artefact, or whose pixels were clipped or masked. These can:

* **sky noise** (``image_noise``): each band's noise, measured robustly in the crop's outer
  5-pixel frame (≥ 11 px from the centre) from pixel-to-pixel differences (1.4826 × median |Δ| / √2,
  so galaxy light and gradients hardly count), divided by the training images' typical noise in
  that band; the median over bands is compared with the training images' own 99.7th percentile. Deeper noise than the
  training images trips it; lower noise (or correlated noise, as after extra blurring) does not,
  since neither was seen to hurt the intervals.
* **point asymmetry** (``image_out_of_domain``): a galaxy looks alike rotated by 180° about its
  centre; a neighbour, a cosmic ray or a satellite trail does not. The centre is the brightest
  point of the 3×3-smoothed g+r+i image within 8 px of the crop centre (so a mis-centred cutout is
  not penalised), refined to the half pixel by a parabola through its neighbours; the asymmetry
  Σ|I − I₁₈₀| minus what the measured noise alone gives, over Σ I, is compared with the training
  images' 99.7th percentile.
* **flat runs** (``image_out_of_domain``): four or more equal pixels in a row or a column
  (saturated cores, masks filled with a constant, dead columns), counted against how many the
  band's own quantisation would make by chance (from how often neighbouring pixels of the outer
  frame are equal), so quantised or compressed data are not penalised.

:mod:`cai_edge.image_content` adds whether the planes are one galaxy at all: each band's offset
against r (misregistered band files), a source at the centre, constant planes and planes identical
to another (all ``image_out_of_domain``); :mod:`cai_edge.photometric_match` whether the pixels' colours
and flux are those of the galaxy its magnitudes describe (``image_out_of_domain``).

Rotations and flips leave all of them unchanged. The reference (each band's noise and the fitted
thresholds) is fitted on training-like images by ``cai-edge calibrate`` and kept in the bundle
manifest as ``image_domain``; a flagged row's message names each check that tripped, its measured
value and its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from cai_edge.domain import record_number
from cai_edge.errors import CaiEdgeError
from cai_edge.flags import IMAGE_NOISE, IMAGE_OUT_OF_DOMAIN, IMAGE_UNCHECKED
from cai_edge.image_content import (BANDS, FRAME, IDENTICAL_TOLERANCE, NEAR_CONSTANT, REFERENCE_BAND, TAPER_PX, WINDOW_PX,
                                    GalaxyCentre, band_offsets, central_gram, central_source, constant_planes,
                                    frame_sky, galaxy_centre, identical_planes)
from cai_edge.photometric_match import MatchStatistics, PhotometricMatch, TooFewGalaxies, fit_photometric_match

QUANTILE = 0.997  # of the training images' own statistics: ~0.3 % of them trip each check
RUN = 4  # equal pixels in a row or column that make a flat run
RUN_SIGMAS = 4.0  # flat runs beyond chance (Poisson) that trip the check
_MIN_IMAGES = 100
# What a reference may hold (outside it, loading refuses the bundle). SDSS's own sky noise is 0.02–0.17 nanomaggies
# per 0.396″ pixel (the shipped reference); a band noise 100× below or 1000× above that describes no survey's
# images at this scale, and a zero, negative, tiny or huge value would flag every cutout or none.
BAND_NOISE_LIMITS = (1e-4, 100.0)  # nanomaggies per pixel
# The noise threshold is the 99.7th percentile of ratios whose median is ~1 (1.77 in the shipped reference): below 1
# it flags the typical training image, above 100 it flags nothing a survey would take.
NOISE_THRESHOLD_LIMITS = (1.0, 100.0)
# Asymmetry is ~0–2 for galaxies (0.16 at the shipped reference's 99.7th percentile); noise-only images reach hundreds.
ASYMMETRY_THRESHOLD_LIMITS = (0.01, 1000.0)
OFFSET_BANDS = "ugiz"  # offsets are measured against r
# Each band's offset threshold is the training images' 1 − 0.003/4 quantile (the four bands together flag ~0.3 % of them):
# 0.2–2 px in the shipped reference. Below 0.02 px it flags every registered image; an offset is measured up to the
# centroid window's half (8 px, a band without light), so above that it flags nothing. Images of noise alone give ~8.
OFFSET_QUANTILE = 1 - (1 - QUANTILE) / len(OFFSET_BANDS)
OFFSET_THRESHOLD_LIMITS = (0.02, WINDOW_PX / 2)
# The centre source's S/N threshold is the training images' 0.3th percentile (~28 in the shipped reference, median ~280);
# images of noise alone give ~1.5–4. Below 1 nothing is flagged; above 1000 most galaxies a survey would take are.
CENTRE_SNR_THRESHOLD_LIMITS = (1.0, 1000.0)
_DIFF_TO_SIGMA = 1.4826 / np.sqrt(2.0)  # median |a − b| of two N(0, σ) pixels is σ√2 / 1.4826
_ABS_DIFF_MEAN = np.sqrt(2.0) * np.sqrt(2.0 / np.pi)  # mean |a − b| of two N(0, σ) pixels, in σ
_ASYMMETRY_BANDS = slice(1, 4)  # g, r, i: the deepest SDSS bands


class ImageDomainError(CaiEdgeError, ValueError):
    """An image-domain record cannot be fitted or read."""


def _frame_parts(plane: np.ndarray) -> tuple[np.ndarray, ...]:
    """The top, bottom, left and right strips of ``(..., H, W)`` planes' outer :data:`FRAME`-pixel frame."""
    f = FRAME
    return plane[..., :f, :], plane[..., -f:, :], plane[..., f:-f, :f], plane[..., f:-f, -f:]


def _frame(plane: np.ndarray) -> np.ndarray:
    """The values of ``(..., H, W)`` planes that lie in their outer frame, flattened."""
    return np.concatenate([p.reshape(*p.shape[:-2], -1) for p in _frame_parts(plane)], axis=-1)


def border_noise(images: np.ndarray) -> np.ndarray:
    """``(N, bands)``: each band's sky noise in the crop's outer frame, robust to galaxy light."""
    images = np.asarray(images, dtype=np.float32)
    n, bands, h, w = images.shape
    # every pixel-to-pixel difference along the rows at once (contiguous runs: cheaper than the frame's four strips
    # one by one, whose 4-pixel-wide sides made tiny inner loops), then the frame's own picked out
    across = np.subtract(images[..., 1:], images[..., :-1])
    diffs = np.take(across.reshape(n, bands, -1), _frame_differences(h, w), axis=-1)
    np.abs(diffs, out=diffs)
    diffs.sort(axis=-1)  # sorting beats np.partition at this size
    return diffs[..., diffs.shape[-1] // 2] * _DIFF_TO_SIGMA


@lru_cache(maxsize=4)
def _frame_differences(h: int, w: int) -> np.ndarray:
    """Indices, into an ``(h, w)`` plane's ``(h, w − 1)`` differences along its rows, of those within the outer frame."""
    index = np.arange(h * (w - 1)).reshape(h, w - 1)
    # the differences between a strip's own pixels: the top and bottom strips' whole rows, the sides' width less one
    out = np.concatenate([index[:FRAME].ravel(), index[-FRAME:].ravel(), index[FRAME:-FRAME, : FRAME - 1].ravel(),
                          index[FRAME:-FRAME, -(FRAME - 1):].ravel()])
    out.flags.writeable = False
    return out


def asymmetry(images: np.ndarray, centre: GalaxyCentre | None = None) -> np.ndarray:
    """``(N,)``: noise-corrected 180° asymmetry of the g+r+i image about the galaxy's own centre.

    The noise correction uses the spread of pixel *values* in the outer frame (not of differences),
    so noise correlated by resampling or blurring is not taken for structure; the spread is read
    below the median (median − 15.87th percentile), which light from a neighbour or the galaxy's
    wings, always positive, hardly reaches. A galaxy with no positive flux gets inf.
    """
    w = np.asarray(images, dtype=np.float32)[:, _ASYMMETRY_BANDS].sum(axis=1)
    n, size = w.shape[0], w.shape[-1]
    sky = np.sort(_frame(w), axis=-1)
    low, mid = int(0.1587 * (sky.shape[-1] - 1)), (sky.shape[-1] - 1) // 2
    sigma = (sky[:, mid] - sky[:, low]).astype(np.float64)
    cy2, cx2 = (galaxy_centre(images) if centre is None else centre).doubled
    # the mirror of pixel y about centre c is 2c − y
    my, mx = cy2[:, None] - np.arange(size), cx2[:, None] - np.arange(size)
    vy, vx = (my >= 0) & (my < size), (mx >= 0) & (mx < size)
    # one flat gather (3× faster than indexing with three broadcast index arrays)
    flat = ((np.minimum(np.maximum(my, 0), size - 1) * size + (np.arange(n) * size * size)[:, None])[:, :, None]
            + np.minimum(np.maximum(mx, 0), size - 1)[:, None, :])
    mirrored = np.take(w.ravel(), flat)
    # pixels whose mirror falls outside the crop do not count: the mask is an outer product of rows and columns
    rows, cols = vy.astype(np.float32), vx.astype(np.float32)
    residual = np.matmul(rows[:, None, :], np.matmul(np.abs(w - mirrored), cols[:, :, None]))[:, 0, 0].astype(np.float64)
    flux = np.matmul(rows[:, None, :], np.matmul(w, cols[:, :, None]))[:, 0, 0].astype(np.float64)
    count = rows.sum(axis=1) * cols.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, (residual - count * sigma * _ABS_DIFF_MEAN) / flux, np.inf)


def flat_runs(images: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: a band holds more runs of :data:`RUN` equal pixels than its quantisation explains."""
    images = np.asarray(images)
    n, bands, h, w = images.shape
    found = np.zeros(n, dtype=bool)
    # first, over each plane as one run of pixels (contiguous, so cheap): its equal neighbours along the rows (with each
    # row's last pixel and the next row's first, a few more than there are) and down the columns
    plane = images.reshape(n, bands, h * w)
    across, down = plane[..., 1:] == plane[..., :-1], plane[..., w:] == plane[..., :-w]
    if not (across.any() or down.any()):  # float data almost never has equal neighbours
        return found
    # count runs only where a band has a few equal neighbours (a run of RUN pixels has RUN − 1 of them)
    equal = np.count_nonzero(across, axis=-1) + np.count_nonzero(down, axis=-1)
    candidates = np.flatnonzero((equal >= RUN - 1).any(axis=-1))
    if not len(candidates):
        return found
    chosen = images[candidates]
    across, down, size = chosen[..., :, 1:] == chosen[..., :, :-1], chosen[..., 1:, :] == chosen[..., :-1, :], w
    runs = _runs(across, axis=-1).sum(axis=(-2, -1)) + _runs(down, axis=-2).sum(axis=(-2, -1))
    chance = _frame(across).mean(axis=-1)  # how often two sky pixels are equal
    positions = 2 * size * (size - RUN + 1)
    expected = positions * chance ** (RUN - 1)
    # runs overlap and cluster, so chance runs vary more than Poisson: twice the expectation, plus a Poisson margin
    found[candidates] = np.any(runs > 2 * expected + RUN_SIGMAS * np.sqrt(expected) + 1, axis=-1)
    return found


def _runs(equal: np.ndarray, axis: int) -> np.ndarray:
    """Where ``RUN - 1`` neighbouring equalities along ``axis`` follow each other (a run of RUN pixels)."""
    k = equal.shape[axis] - RUN + 2
    out = np.take(equal, range(0, k), axis=axis)
    for j in range(1, RUN - 1):
        out = out & np.take(equal, range(j, j + k), axis=axis)
    return out


@dataclass(frozen=True)
class ImageStatistics:
    """Per galaxy: sky noise ratio to the training images, asymmetry, flat runs, and the checks of :mod:`cai_edge.image_content`."""

    noise_ratio: np.ndarray
    asymmetry: np.ndarray
    flat: np.ndarray
    band_offsets: np.ndarray  # (N, 5) px against r
    centre_snr: np.ndarray
    constant: np.ndarray  # (N, 5) bool
    identical: list[tuple[tuple[int, int], ...]]
    match: MatchStatistics | None = None  # with the magnitudes, where the reference has a photometric match


@dataclass(frozen=True)
class ImageDomain:
    """The training images' reference: each band's noise and the two fitted thresholds.

    Parameters
    ----------
    band_noise : tuple of float
        The training images' typical sky noise in u,g,r,i,z, nanomaggies per pixel.
    noise_threshold : float
        Noise ratio (median over bands of measured / ``band_noise``) above which a cutout is
        ``image_noise``.
    asymmetry_threshold : float
        Asymmetry above which a cutout is ``image_out_of_domain``.
    fitted_on : dict
        What the reference was fitted on (data, date, images).
    offset_threshold_px : tuple of float or None
        Offset against r (px) above which u, g, i, z are misregistered; None in a reference fitted
        before band registration was checked (its rows are ``image_unchecked``).
    centre_snr_threshold : float or None
        Signal-to-noise of the central source below which there is no galaxy; None as above.
    photometric_match : PhotometricMatch or None
        Whether pixels and magnitudes are one galaxy (``cai_edge.photometric_match``); None in a
        reference fitted before that was checked (its rows are ``image_unchecked``).
    """

    band_noise: tuple[float, ...]
    noise_threshold: float
    asymmetry_threshold: float
    fitted_on: dict[str, Any]
    offset_threshold_px: tuple[float, ...] | None = None
    centre_snr_threshold: float | None = None
    photometric_match: PhotometricMatch | None = None

    def statistics(self, images: np.ndarray, magnitudes: np.ndarray | None = None) -> ImageStatistics:
        """The statistics of each crop; the frame sky and the planes' central products are computed once and shared.

        Parameters
        ----------
        images : array_like
            ``(N, 5, 32, 32)`` nanomaggy crops, bands u,g,r,i,z.
        magnitudes : array_like, optional
            ``(N, 5)`` u,g,r,i,z magnitudes: with them (and a reference that has one) the photometric match too.

        Returns
        -------
        ImageStatistics
            Noise ratio, asymmetry, flat runs, band offsets, centre source, constant and identical planes, per galaxy.
        """
        images = np.ascontiguousarray(images, dtype=np.float32)
        noise = border_noise(images)
        reference = np.asarray(self.band_noise, dtype=np.float32)
        ratio = np.sort(noise / reference, axis=1)[:, len(reference) // 2]  # the median of five
        sky = frame_sky(images)
        found = galaxy_centre(images, sky)
        snr, centre = central_source(images, noise, sky, found)
        # never below the training images' noise: blurred or resampled images have correlated noise, which pixel
        # differences underestimate, and a deeper image is judged no more strictly than the training images were
        match = (self.photometric_match.statistics(images, magnitudes, np.maximum(noise, reference), centre, sky)
                 if magnitudes is not None and self.photometric_match is not None else None)
        gram = central_gram(images)
        return ImageStatistics(ratio, asymmetry(images, found), flat_runs(images), band_offsets(images, centre, sky), snr,
                               constant_planes(images, reference, gram), identical_planes(images, gram), match)

    def flag_reasons(self, images: np.ndarray, magnitudes: np.ndarray | None = None) -> list[dict[str, str]]:
        """Per galaxy: each image flag with why — which check tripped, the measured value and the threshold.

        Parameters
        ----------
        images : array_like
            ``(N, 5, 32, 32)`` nanomaggy crops, bands u,g,r,i,z.
        magnitudes : array_like, optional
            ``(N, 5)`` their u,g,r,i,z magnitudes. Without them the photometric match is not checked
            (the runtime always gives them).

        Returns
        -------
        list of dict of str to str
            Per galaxy, ``{flag: reason}`` (``image_noise``, ``image_out_of_domain``, or
            ``image_unchecked`` for a reference fitted before band registration was checked); empty
            when it has none.
        """
        s = self.statistics(images, magnitudes)
        if self.offset_threshold_px is None or self.centre_snr_threshold is None:
            note = "the bundle's image reference predates the band-registration and not-a-galaxy checks: recalibrate it"
            return [{IMAGE_UNCHECKED: note} for _ in range(len(s.noise_ratio))]
        if magnitudes is not None and self.photometric_match is None:
            note = ("the bundle's image reference predates the check that pixels and magnitudes are one galaxy (or its "
                    "current flux-level model): recalibrate it")
            return [{IMAGE_UNCHECKED: note} for _ in range(len(s.noise_ratio))]
        mismatched = self.photometric_match.mismatched(s.match) if s.match is not None else np.zeros(len(s.noise_ratio), bool)
        offset_limit = np.array([*self.offset_threshold_px[:REFERENCE_BAND], np.inf, *self.offset_threshold_px[REFERENCE_BAND:]])
        noisy = s.noise_ratio > self.noise_threshold
        asymmetric = s.asymmetry > self.asymmetry_threshold
        shifted = s.band_offsets > offset_limit
        no_source = ~(s.centre_snr >= self.centre_snr_threshold)
        flagged = (noisy | asymmetric | shifted.any(axis=1) | no_source | s.constant.any(axis=1) | s.flat | mismatched
                   | np.array([bool(p) for p in s.identical]))
        out: list[dict[str, str]] = [{} for _ in range(len(noisy))]
        for j in np.flatnonzero(flagged):  # most rows pass every check: only the flagged ones are written out
            reasons: dict[str, str] = {}
            if noisy[j]:
                reasons[IMAGE_NOISE] = f"sky noise {s.noise_ratio[j]:.2f}x the training images' (threshold {self.noise_threshold:.2f}x)"
            odd = []
            if s.constant[j].any():
                odd.append(f"constant plane(s) {_bands(np.flatnonzero(s.constant[j]))} (spread < {NEAR_CONSTANT:g}x the sky noise)")
            if s.identical[j]:
                odd.append("identical planes " + ", ".join(f"{BANDS[a]}={BANDS[b]}" for a, b in s.identical[j]))
            if no_source[j]:
                odd.append(f"no galaxy-like source at the centre: S/N {s.centre_snr[j]:.1f} (threshold {self.centre_snr_threshold:.1f})")
            if shifted[j].any():
                odd.append("bands misregistered against r: " + ", ".join(
                    f"{BANDS[b]} {s.band_offsets[j, b]:.2f} px (threshold {offset_limit[b]:.2f})" for b in np.flatnonzero(shifted[j])))
            if asymmetric[j]:
                odd.append(f"asymmetry {s.asymmetry[j]:.3f} (threshold {self.asymmetry_threshold:.3f}; a neighbour or an artefact?)")
            if s.flat[j]:
                odd.append("flat pixel runs beyond the data's quantisation (saturation, masks)")
            if mismatched[j]:
                odd.append(self.photometric_match.reason(s.match, j))
            if odd:
                reasons[IMAGE_OUT_OF_DOMAIN] = "; ".join(odd)
            out[j] = reasons
        return out

    def flags(self, images: np.ndarray, magnitudes: np.ndarray | None = None) -> list[tuple[str, ...]]:
        """Per galaxy: ``image_noise`` and/or ``image_out_of_domain``, or nothing (:meth:`cai_edge.image_domain.ImageDomain.flag_reasons` without the reasons).

        Parameters
        ----------
        images : array_like
            ``(N, 5, 32, 32)`` nanomaggy crops, bands u,g,r,i,z.
        magnitudes : array_like, optional
            ``(N, 5)`` their magnitudes, for the photometric match.

        Returns
        -------
        list of tuple of str
            The flags of each galaxy.
        """
        return [tuple(reasons) for reasons in self.flag_reasons(images, magnitudes)]

    def to_dict(self) -> dict[str, Any]:
        return {"method": "sky noise in the outer frame, 180-degree asymmetry about the galaxy centre, flat pixel runs"
                          + ("" if self.offset_threshold_px is None else ", band centroid offsets against r, a source at the "
                             "centre, constant and identical planes"),
                "band_noise_nanomaggies": list(self.band_noise), "noise_threshold": self.noise_threshold,
                "asymmetry_threshold": self.asymmetry_threshold, "threshold_quantile": QUANTILE,
                "frame_px": FRAME, "flat_run_px": RUN, "flat_run_sigmas": RUN_SIGMAS, "fitted_on": self.fitted_on,
                **({} if self.offset_threshold_px is None else {
                    "band_offset_threshold_px": dict(zip(OFFSET_BANDS, self.offset_threshold_px)),
                    "offset_threshold_quantile": OFFSET_QUANTILE, "centroid_window_sigma_px": TAPER_PX,
                    "centre_snr_threshold": self.centre_snr_threshold, "centre_snr_quantile": round(1 - QUANTILE, 6),
                    "near_constant_fraction": NEAR_CONSTANT, "identical_tolerance": IDENTICAL_TOLERANCE}),
                **({} if self.photometric_match is None else {"photometric_match": self.photometric_match.to_dict()})}

    @classmethod
    def from_dict(cls, data: Any) -> "ImageDomain":
        """Read and range-check an image-domain record: five band noises and two thresholds inside the documented limits.

        Parameters
        ----------
        data : dict
            The manifest's ``image_domain`` record.

        Returns
        -------
        ImageDomain
            The reference.

        Raises
        ------
        cai_edge.image_domain.ImageDomainError
            The record is malformed or out of range.
        """
        if not isinstance(data, dict):
            raise ImageDomainError("image_domain must be an object")
        try:
            noise = tuple(record_number(v) for v in data["band_noise_nanomaggies"])
            noise_threshold = record_number(data["noise_threshold"])
            asymmetry_threshold = record_number(data["asymmetry_threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ImageDomainError(f"image_domain is malformed ({type(exc).__name__}: {exc})") from None
        if len(noise) != 5:
            raise ImageDomainError(f"image_domain needs five band noises (u,g,r,i,z), got {len(noise)}")
        offsets, snr = _content_thresholds(data)
        reference_problem = range_problem(noise, noise_threshold, asymmetry_threshold, offsets, snr)
        if reference_problem:
            raise ImageDomainError(f"image_domain is out of range: {reference_problem}")
        match = None
        if _is_older_match(data.get("photometric_match")):
            pass  # its flux-level model predates the one this runtime reads: rows are image_unchecked until recalibrated
        elif data.get("photometric_match") is not None:
            try:
                match = PhotometricMatch.from_dict(data["photometric_match"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ImageDomainError(f"image_domain.photometric_match is malformed or out of range ({type(exc).__name__}: {exc})") from None
        from cai_edge.uncertainty import fitted_on_record

        return cls(noise, noise_threshold, asymmetry_threshold, fitted_on_record(data, ImageDomainError), offsets, snr, match)


def _is_older_match(record: Any) -> bool:
    """A photometric-match record written before the level's spread was fitted (issue #31's first version)."""
    return isinstance(record, dict) and "level_range_dex" in record and "level_spread_coefficients" not in record


def _bands(indices) -> str:
    return ", ".join(BANDS[i] for i in indices)


def _content_thresholds(data: dict) -> tuple[tuple[float, ...] | None, float | None]:
    """The band-offset and centre-source thresholds of a record: both, or neither (a reference from before them)."""
    present = [k in data for k in ("band_offset_threshold_px", "centre_snr_threshold")]
    if not any(present):
        return None, None
    try:
        offsets = data["band_offset_threshold_px"]
        if not isinstance(offsets, dict) or sorted(offsets) != sorted(OFFSET_BANDS):
            raise ValueError(f"band_offset_threshold_px must give {', '.join(OFFSET_BANDS)}")
        return tuple(record_number(offsets[b]) for b in OFFSET_BANDS), record_number(data["centre_snr_threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ImageDomainError(f"image_domain is malformed ({type(exc).__name__}: {exc})") from None


def range_problem(band_noise: tuple[float, ...], noise_threshold: float, asymmetry_threshold: float,
                  offset_threshold_px: tuple[float, ...] | None = None, centre_snr_threshold: float | None = None) -> str:
    """Why a reference's values cannot describe training images (outside the documented limits), or ''."""
    problems = []
    for name, values, (lo, hi) in (("band noise", band_noise, BAND_NOISE_LIMITS),
                                   ("noise threshold", (noise_threshold,), NOISE_THRESHOLD_LIMITS),
                                   ("asymmetry threshold", (asymmetry_threshold,), ASYMMETRY_THRESHOLD_LIMITS),
                                   ("band offset threshold", offset_threshold_px or (), OFFSET_THRESHOLD_LIMITS),
                                   ("centre S/N threshold", () if centre_snr_threshold is None else (centre_snr_threshold,),
                                    CENTRE_SNR_THRESHOLD_LIMITS)):
        bad = [v for v in values if not lo <= v <= hi]  # NaN fails both comparisons
        if bad:
            problems.append(f"{name} {', '.join(f'{v:.3g}' for v in bad)} outside {lo:g}–{hi:g}")
    return "; ".join(problems)


def fit_image_domain(images: np.ndarray, fitted_on: dict[str, Any], magnitudes: np.ndarray | None) -> ImageDomain:
    """The reference of training-like ``(N, 5, 32, 32)`` nanomaggy crops (at least 100, all finite) and their ``(N, 5)`` magnitudes.

    Without magnitudes the reference has no photometric match, and rows it judges are ``image_unchecked``.
    """
    images = np.asarray(images, dtype=np.float32)
    finite = np.all(np.isfinite(images), axis=(1, 2, 3))
    images = images[finite]
    if magnitudes is not None:
        magnitudes = np.asarray(magnitudes, dtype=np.float64)[finite]
    if len(images) < _MIN_IMAGES:
        raise ImageDomainError(f"{len(images)} images; at least {_MIN_IMAGES} are needed to describe the training images")
    noise = border_noise(images)
    band_noise = np.median(noise, axis=0)
    if not np.all(band_noise > 0):
        raise ImageDomainError("the training images have no sky noise in some band (constant or quantised to zero): "
                               "the image-domain check cannot be fitted on them")
    ratio = np.median(noise / band_noise, axis=1)
    found = galaxy_centre(images)
    a = asymmetry(images, found)
    snr, centre = central_source(images, noise, centre=found)
    offsets = tuple(float(v) for v in np.quantile(np.delete(band_offsets(images, centre), REFERENCE_BAND, axis=1), OFFSET_QUANTILE, axis=0))
    thresholds = (float(np.quantile(ratio, QUANTILE)), float(np.quantile(a[np.isfinite(a)], QUANTILE)), offsets,
                  float(np.quantile(snr, 1 - QUANTILE)))
    # the images' own statistics first: noiseless or rescaled images are refused for what they are, before any match is fitted
    noise_record = tuple(float(v) for v in band_noise)
    problem = range_problem(noise_record, *thresholds)
    if problem:
        raise ImageDomainError(f"these images cannot be a training-image reference: {problem} (noiseless, rescaled "
                               "or not in nanomaggies?)")
    match, not_fitted = None, "no magnitudes given"
    if magnitudes is not None:
        try:
            match = fit_photometric_match(images, magnitudes, np.maximum(noise, band_noise), centre)
        except TooFewGalaxies as exc:  # images of sky (test data, say): no match, so every row it judges is image_unchecked
            not_fitted = str(exc)
        except ValueError as exc:
            raise ImageDomainError(f"the pixels-and-magnitudes check cannot be fitted: {exc}") from None
        problem = match.range_problem() if match is not None else ""
        if problem:
            raise ImageDomainError(f"these images and magnitudes cannot be a training reference: {problem} (pixels not in the "
                                   "magnitudes' unit, or magnitudes of other galaxies?)")
    noise_threshold, asymmetry_threshold, _, snr_threshold = thresholds
    return ImageDomain(noise_record, noise_threshold, asymmetry_threshold,
                       {**fitted_on, "images": int(len(images)), **({} if match else {"photometric_match_not_fitted": not_fitted})},
                       offsets, snr_threshold, match)
