"""Do a cutout's pixels belong to the galaxy its magnitudes describe? Two fitted checks.

``cai_edge.flux_check`` catches pixels in the wrong unit or band order with fixed, generous
tolerances. A cutout of *another* galaxy (a cross-match to the wrong object, a cutout service
given the wrong coordinates, catalogs and images joined by row number after a sort) passes it,
and the model, which leans on its pixels, then gives that other galaxy's redshift with this one's
magnitudes. Both checks below are fitted on training-like images and their magnitudes by
``cai-edge calibrate`` and kept in the image reference:

* **colours** (``image_out_of_domain``): each band's flux in a Gaussian window of σ
  ``COLOUR_WINDOW_PX`` px about the galaxy's centre, against what the magnitudes' colours and
  the r-band window flux predict (after the training images' own median aperture colour), in units
  of its noise plus a floor of ``COLOUR_FLOOR`` of the flux (colour gradients, PSF); the worst
  of u, g, i, z against the training images' 99.7th percentile.
* **flux level** (``image_out_of_domain``): log10 of the g+r+i flux in the colour window over
  the catalog's, less what the light profile predicts (a quadratic in the window's flux ratios to
  windows of σ 1, 2 and 6 px, each kept within the training images' range of it), in units of the
  spread expected where that prediction lies (log-linear in it: a compact galaxy, whose window holds
  most of its light, has its level known to ~0.02 dex, an extended one to ~0.1); it must lie
  between the training images' 0.15th and 99.85th percentiles. A profile outside the training
  images' range is judged as their nearest one: a galaxy sharper than any of them is held to their
  tightest spread.

Measured on simulated images (3,000 test-split galaxies, each given the next one's pixels; a
reference of 4,000 training images): the two together flag 90.3 % of such cutouts at 0.9 % of
in-domain ones (with one spread for every profile, 84 %; ``benchmarks/image_shifts.py``, every image
check: 90.7 %). Another galaxy of
nearly the same colours and brightness passes: nothing in five fluxes tells it from this one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from cai_edge.image_content import frame_sky, window_rows
from cai_edge.photometry import mag_to_nanomaggies

COLOUR_WINDOW_PX = 4.0  # σ of the Gaussian window of the colour fluxes (and of the level's)
PROFILE_WINDOWS_PX = (1.0, 2.0, 6.0)  # σ of the windows whose flux over the colour window's describes the light profile
COLOUR_FLOOR = 0.0276  # fraction of a band's flux (0.03 mag) added to its noise: colour gradients, PSF differences
COLOUR_BANDS = (0, 1, 3, 4)  # u, g, i, z, each against r
REFERENCE_BAND = 2
LEVEL_BANDS = slice(1, 4)  # g, r, i
QUANTILE = 0.997  # the colour threshold; the level's range holds the training images' central 99.7 %
BANDS = "ugriz"
# A colour threshold is in noise units: training images give ~5; below 1 every galaxy trips it, above 100 hardly any.
COLOUR_THRESHOLD_LIMITS = (1.0, 100.0)
# log10 of the window's flux over the catalog's: beyond ±3 dex (a factor 1000) the pixels are not in the magnitudes' unit.
LEVEL_LIMITS = (-3.0, 3.0)
# The level's range is in units of its predicted spread: training images give about −9 to +5. Its bounds lie beyond ±1
# (narrower flags most galaxies) and within ±50 (wider flags hardly any).
LEVEL_RANGE_LIMITS = (-50.0, 50.0)
LEVEL_RANGE_MIN = 1.0
SPREAD_LIMITS_DEX = (1e-3, 3.0)  # a predicted spread outside this range describes no galaxies' images
# For a typical profile the level's allowed range (its range in spreads times the typical spread) must lie within ±1 dex:
# wider, pixels holding a tenth of the magnitudes' flux would pass (training images: about −0.2 to +0.1 dex).
TYPICAL_RANGE_LIMIT_DEX = 1.0
PROFILE_LIMITS = (-3.0, 1.0)  # log10 of a window's flux over the σ 4 px window's, as measured (clipped to 1e-3–10)
LEVEL_MODEL = ("quadratic in log10 of the sigma 1, 2 and 6 px windows' g+r+i flux over the sigma 4 px window's (each within "
               "the training range); spread log-linear in the predicted level")
_LEVEL_TERMS = 10  # 1, p1, p2, p6, and their six products
_SPREAD_TERMS = 2  # ln(spread / dex) = a + b * predicted level
_PAIRS = np.triu_indices(len(PROFILE_WINDOWS_PX))  # the products' factors: p1², p1·p2, p1·p6, p2², p2·p6, p6²
MIN_GALAXIES = 100
PROFILE_QUANTILE = 0.001  # the profile ratios' range: the training images' 0.1th to 99.9th percentiles


class TooFewGalaxies(ValueError):
    """Too few reference images hold their magnitudes' light for the match to be fitted (images of sky, say)."""


def window_fluxes(images: np.ndarray, centre: tuple[np.ndarray, np.ndarray], sigmas: Sequence[float | None],
                  sky: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each band's sky-subtracted flux in Gaussian windows about ``centre`` (None: the whole crop), and each window's Σ w².

    All windows in one pair of matrix products.

    Parameters
    ----------
    images : array_like
        ``(N, 5, H, W)`` nanomaggy crops.
    centre : tuple of numpy.ndarray
        Each galaxy's centre pixel (rows, columns), as ``cai_edge.image_content.galaxy_centre`` finds it.
    sigmas : sequence of float or None
        Each window's σ in pixels; None for the whole crop.
    sky : numpy.ndarray, optional
        ``(N, bands)`` sky per pixel, when already known (:func:`cai_edge.image_content.frame_sky`).

    Returns
    -------
    flux : numpy.ndarray
        ``(N, bands, windows)`` in nanomaggies.
    weight_squares : numpy.ndarray
        ``(N, windows)``: Σ w² of each window (its noise is the pixel noise times the square root of this).
    """
    images = np.asarray(images, dtype=np.float32)
    h, w = images.shape[-2:]
    sky = np.asarray(frame_sky(images) if sky is None else sky, dtype=np.float64)
    sigmas = tuple(sigmas)
    wy, sy, qy = window_rows(centre[0], h, sigmas)
    wx, sx, qx = window_rows(centre[1], w, sigmas)
    across = np.matmul(images, wx[:, None])  # (N, bands, H, windows): Σx w(x) I
    flux = np.einsum("nbhk,nhk->nbk", across, wy).astype(np.float64)
    return flux - sky[:, :, None] * (sy * sx)[:, None, :], qy * qx


@dataclass(frozen=True)
class MatchStatistics:
    """Per galaxy: the worst colour deviation (noise units) and its band; the flux level's residual in dex and in spreads."""

    colour: np.ndarray
    colour_band: np.ndarray
    colour_deviation_mag: np.ndarray  # (N, 4): image − catalog colour of u, g, i, z against r, less the training median
    level: np.ndarray  # the residual in units of its predicted spread
    level_dex: np.ndarray
    lit: np.ndarray  # (N,) bool: light in r's window and in the g+r+i window (else there is no colour or level to give)


def _profile(fluxes: np.ndarray) -> np.ndarray:
    """``(N, 3)``: log10 of the σ 1, 2 and 6 px windows' g+r+i flux over the σ 4 px window's (``fluxes``: ``(N, windows)``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.log10(np.minimum(np.maximum(fluxes[:, 1:] / fluxes[:, :1], 1e-3), 10.0))
    return np.where(np.isfinite(ratios), ratios, PROFILE_LIMITS[1])  # no light in the window: a profile no galaxy has


def _level_design(p: np.ndarray) -> np.ndarray:
    """The level model's terms: 1, the three profile ratios and their products."""
    return np.concatenate([np.ones((len(p), 1)), p, p[:, _PAIRS[0]] * p[:, _PAIRS[1]]], axis=1)


def _raw_statistics(images: np.ndarray, magnitudes: np.ndarray, noise: np.ndarray, centre, colour_offsets: np.ndarray,
                    sky: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Colour deviations (noise units and magnitudes), the flux level (dex), the profile ratios (:func:`_profile`), and
    which crops have light in r's window and in the g+r+i window."""
    images = np.asarray(images, dtype=np.float32)
    catalog = mag_to_nanomaggies(np.asarray(magnitudes, dtype=np.float64))
    sky = np.asarray(frame_sky(images) if sky is None else sky, dtype=np.float64)
    windows, squares = window_fluxes(images, centre, (COLOUR_WINDOW_PX, *PROFILE_WINDOWS_PX), sky)
    flux = windows[..., 0]
    profile = windows[:, LEVEL_BANDS].sum(axis=1)  # (N, windows): g+r+i
    sigma = np.asarray(noise, dtype=np.float64) * np.sqrt(squares[:, :1])
    ref = REFERENCE_BAND
    bands = list(COLOUR_BANDS)
    # what each band's window flux should be, from r's and the catalog colour (and the training images' aperture colour)
    expected = flux[:, ref : ref + 1] * catalog[:, bands] / catalog[:, ref : ref + 1] * np.power(10.0, -0.4 * colour_offsets)
    spread = np.sqrt(sigma[:, bands] ** 2 + (COLOUR_FLOOR * expected) ** 2
                     + (expected / np.where(flux[:, ref : ref + 1] > 0, flux[:, ref : ref + 1], np.inf) * sigma[:, ref : ref + 1]) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = np.abs(flux[:, bands] - expected) / spread
        colour_mag = -2.5 * np.log10(flux[:, bands] / expected)
        k = profile[:, 0] / catalog[:, LEVEL_BANDS].sum(axis=1)
    lit = (flux[:, ref] > 0) & np.all(np.isfinite(deviation), axis=1)
    deviation = np.where(lit[:, None], deviation, np.inf)
    level = np.where(k > 0, np.log10(np.where(k > 0, k, 1.0)), -np.inf)
    return deviation, colour_mag, level, _profile(profile), lit & (k > 0)


def _clamp(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """``values`` (N, k) kept within ``bounds`` ((k, 2) lows and highs)."""
    return np.minimum(np.maximum(values, bounds[:, 0]), bounds[:, 1])


@dataclass(frozen=True)
class PhotometricMatch:
    """The training images' photometric agreement with their magnitudes: aperture colours, thresholds, level model.

    Parameters
    ----------
    colour_offsets_mag : tuple of float
        The training images' median window colour minus catalog colour, u, g, i, z against r.
    colour_threshold : float
        Worst band's deviation (noise units) above which the pixels' colours are not the magnitudes'.
    level_coefficients : tuple of float
        The level model's ten coefficients (:func:`_level_design`'s terms).
    level_range : tuple of float
        The level residual's allowed range, in units of its predicted spread.
    level_spread_coefficients : tuple of float
        ``(a, b)``: the natural log of the level residual's spread (dex) is ``a + b ×`` the predicted level.
    typical_spread_dex : float
        The training images' median predicted spread, dex: the range's width in dex for a typical profile.
    profile_range : tuple of tuple of float
        The training images' range (0.1th to 99.9th percentile) of each profile ratio; a ratio beyond it is taken at it.
    predicted_level_range : tuple of float
        The training images' range of the predicted level (dex); the spread is read within it.
    """

    colour_offsets_mag: tuple[float, ...]
    colour_threshold: float
    level_coefficients: tuple[float, ...]
    level_range: tuple[float, float]
    level_spread_coefficients: tuple[float, ...]
    typical_spread_dex: float
    profile_range: tuple[tuple[float, float], ...]
    predicted_level_range: tuple[float, float]

    def predicted(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The level (dex) and its spread (dex) the model predicts for profile ratios ``p`` ((N, 3), as measured)."""
        level = _level_design(_clamp(p, np.asarray(self.profile_range))) @ np.asarray(self.level_coefficients)
        a, b = self.level_spread_coefficients
        lo, hi = self.predicted_level_range
        spread = np.exp(a + b * np.minimum(np.maximum(level, lo), hi))
        return level, np.minimum(np.maximum(spread, SPREAD_LIMITS_DEX[0]), SPREAD_LIMITS_DEX[1])

    @property
    def typical_range_dex(self) -> tuple[float, float]:
        """The level's allowed range in dex for a typical training profile."""
        return (self.level_range[0] * self.typical_spread_dex, self.level_range[1] * self.typical_spread_dex)

    def statistics(self, images: np.ndarray, magnitudes: np.ndarray, noise: np.ndarray, centre,
                   sky: np.ndarray | None = None) -> MatchStatistics:
        """The colour deviation and flux-level residual of each crop.

        ``noise``: its measured band noise; ``centre``: its galaxy's; ``sky``: its frame sky, when already computed.
        """
        deviation, colour_mag, level, profile, lit = _raw_statistics(images, magnitudes, noise, centre,
                                                                     np.asarray(self.colour_offsets_mag), sky)
        worst = np.argmax(np.where(np.isnan(deviation), np.inf, deviation), axis=1)
        predicted, spread = self.predicted(profile)
        residual = level - predicted
        return MatchStatistics(deviation[np.arange(len(worst)), worst], worst, colour_mag, residual / spread, residual, lit)

    def mismatched(self, s: MatchStatistics) -> np.ndarray:
        """``(N,)`` bool: the galaxies whose pixels are not their magnitudes' galaxy (colour or flux level out of range)."""
        lo, hi = self.level_range
        return ~(s.colour <= self.colour_threshold) | ~((s.level >= lo) & (s.level <= hi))  # NaN is out of range

    def reason(self, s: MatchStatistics, j: int) -> str:
        """Why galaxy ``j``'s pixels are not its magnitudes' galaxy: each check that tripped, its value and threshold."""
        if not s.lit[j]:
            return ("pixels unlike the galaxy the magnitudes describe: no light in the r or g+r+i window "
                    f"(σ {COLOUR_WINDOW_PX:g} px) about the centre, where the magnitudes have a galaxy")
        lo, hi = self.level_range
        parts = []
        colour_off = not s.colour[j] <= self.colour_threshold
        if colour_off:
            band = BANDS[COLOUR_BANDS[s.colour_band[j]]]
            parts.append(f"{band}−r colour of the pixels {s.colour_deviation_mag[j, s.colour_band[j]]:+.2f} mag from the magnitudes' "
                         f"({s.colour[j]:.2f}σ, threshold {self.colour_threshold:.2f}σ)")
        if not lo <= s.level[j] <= hi:
            parts.append(f"pixel flux {s.level_dex[j]:+.2f} dex from what the magnitudes and the light profile predict, "
                         f"{s.level[j]:+.2f} times its spread for this profile (allowed {lo:+.2f} to {hi:+.2f})")
        # a flux level alone is off also when the light is spread unlike any training image's (seeing far worse than theirs)
        hint = "another object's cutout?" if colour_off else "another object's cutout, or a PSF unlike the training images'?"
        return f"pixels unlike the galaxy the magnitudes describe ({hint}): " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"colour_offsets_mag": dict(zip((BANDS[b] for b in COLOUR_BANDS), self.colour_offsets_mag)),
                "colour_threshold_sigma": self.colour_threshold, "colour_window_sigma_px": COLOUR_WINDOW_PX,
                "colour_floor_fraction": COLOUR_FLOOR, "colour_quantile": QUANTILE,
                "level_model": LEVEL_MODEL, "level_coefficients": list(self.level_coefficients),
                "level_terms": "1, p1, p2, p6, p1^2, p1*p2, p1*p6, p2^2, p2*p6, p6^2 (p = log10 of the g+r+i flux in Gaussian "
                "windows of sigma 1, 2 and 6 px over the sigma 4 px window's, each within profile_range)",
                "profile_range": [list(r) for r in self.profile_range],
                "level_spread_coefficients": list(self.level_spread_coefficients),
                "level_spread_terms": "ln(spread / dex) = a + b * predicted level (dex, within predicted_level_range)",
                "predicted_level_range_dex": list(self.predicted_level_range),
                "level_range_spreads": list(self.level_range), "level_typical_spread_dex": self.typical_spread_dex}

    @classmethod
    def from_dict(cls, data: Any) -> "PhotometricMatch":
        """Read and range-check a ``photometric_match`` record (:class:`ValueError` when malformed or out of range)."""
        from cai_edge.domain import record_number

        if not isinstance(data, dict):
            raise ValueError("photometric_match must be an object")
        offsets = data["colour_offsets_mag"]
        names = [BANDS[b] for b in COLOUR_BANDS]
        if not isinstance(offsets, dict) or sorted(offsets) != sorted(names):
            raise ValueError(f"photometric_match.colour_offsets_mag must give {', '.join(names)}")
        pairs = {"level_range_spreads": data["level_range_spreads"], "predicted_level_range_dex": data["predicted_level_range_dex"]}
        lists = {"level_coefficients": (data["level_coefficients"], _LEVEL_TERMS),
                 "level_spread_coefficients": (data["level_spread_coefficients"], _SPREAD_TERMS),
                 "profile_range": (data["profile_range"], len(PROFILE_WINDOWS_PX)), **{k: (v, 2) for k, v in pairs.items()}}
        for name, (values, size) in lists.items():
            if not isinstance(values, list) or len(values) != size:
                raise ValueError(f"photometric_match.{name} must be a list of {size}")
        bounds = data["profile_range"]
        if not all(isinstance(b, list) and len(b) == 2 for b in bounds):
            raise ValueError("photometric_match.profile_range must hold a [low, high] pair per profile ratio")
        number = lambda values: tuple(record_number(v) for v in values)  # noqa: E731
        match = cls(number(offsets[b] for b in names), record_number(data["colour_threshold_sigma"]),
                    number(data["level_coefficients"]), number(pairs["level_range_spreads"]),
                    number(data["level_spread_coefficients"]), record_number(data["level_typical_spread_dex"]),
                    tuple(number(b) for b in bounds), number(pairs["predicted_level_range_dex"]))
        problem = match.range_problem()
        if problem:
            raise ValueError(problem)
        return match

    def range_problem(self) -> str:
        """Why these values cannot describe training images, or ``""``: no record can make every row pass, or fail, this check."""
        problems = []
        lo, hi = COLOUR_THRESHOLD_LIMITS
        if not lo <= self.colour_threshold <= hi:
            problems.append(f"colour threshold {self.colour_threshold:.3g} outside {lo:g}–{hi:g}")
        if not all(abs(v) <= 2.5 for v in self.colour_offsets_mag):  # NaN fails too
            problems.append("aperture colour offsets beyond ±2.5 mag")
        a, b = self.level_range
        lo, hi = LEVEL_RANGE_LIMITS
        if not (lo <= a <= -LEVEL_RANGE_MIN and LEVEL_RANGE_MIN <= b <= hi):
            problems.append(f"flux level range {a:.3g} to {b:.3g} spreads: its bounds must lie between ±{LEVEL_RANGE_MIN:g} and ±{hi:g}")
        numbers = (*self.level_coefficients, *self.level_spread_coefficients, *(v for r in self.profile_range for v in r),
                   *self.predicted_level_range, self.typical_spread_dex)
        if not all(np.isfinite(numbers)):
            return "; ".join(problems + ["level model values not finite"])
        plo, phi = PROFILE_LIMITS
        if not all(plo <= r[0] < r[1] <= phi for r in self.profile_range):
            problems.append(f"profile ranges not intervals inside {plo:g} to {phi:g}")
        ylo, yhi = self.predicted_level_range
        if not LEVEL_LIMITS[0] <= ylo < yhi <= LEVEL_LIMITS[1]:
            problems.append(f"predicted level range {ylo:.3g} to {yhi:.3g} dex not an interval inside {LEVEL_LIMITS[0]:g} to {LEVEL_LIMITS[1]:g}")
        else:
            centre = np.array([[(r[0] + r[1]) / 2 for r in self.profile_range]])
            with np.errstate(all="ignore"):
                middle = float((_level_design(centre) @ np.asarray(self.level_coefficients))[0])
                a_, b_ = self.level_spread_coefficients
                spreads = np.exp(a_ + b_ * np.array([ylo, yhi]))
            if not LEVEL_LIMITS[0] <= middle <= LEVEL_LIMITS[1]:  # NaN fails too
                problems.append("level coefficients predict a level no galaxy's window holds for a middling profile")
            smin, smax = SPREAD_LIMITS_DEX
            if not np.all((spreads >= smin) & (spreads <= smax)):
                problems.append(f"level spread {np.nanmin(spreads):.3g}–{np.nanmax(spreads):.3g} dex outside {smin:g}–{smax:g}")
            elif not spreads.min() * 0.999 <= self.typical_spread_dex <= spreads.max() * 1.001:
                problems.append(f"typical flux-level spread {self.typical_spread_dex:.3g} dex outside the model's "
                                f"{spreads.min():.3g}–{spreads.max():.3g}")
            elif max(-self.typical_range_dex[0], self.typical_range_dex[1]) > TYPICAL_RANGE_LIMIT_DEX:
                problems.append(f"flux level allowed {self.typical_range_dex[0]:+.2f} to {self.typical_range_dex[1]:+.2f} dex for a "
                                f"typical profile, beyond ±{TYPICAL_RANGE_LIMIT_DEX:g} dex")
        return "; ".join(problems)


def fit_photometric_match(images: np.ndarray, magnitudes: np.ndarray, noise: np.ndarray, centre) -> PhotometricMatch:
    """The reference of training-like crops and their magnitudes (noise: each crop's measured band noise; centre: its galaxy's)."""
    magnitudes = np.asarray(magnitudes, dtype=np.float64)
    zero = np.zeros(len(COLOUR_BANDS))
    _, colour_mag, level, profile, lit = _raw_statistics(images, magnitudes, noise, centre, zero)
    good = lit & np.all(np.isfinite(magnitudes), axis=1) & np.isfinite(level) & np.all(np.isfinite(colour_mag), axis=1)
    if good.sum() < MIN_GALAXIES:
        raise TooFewGalaxies(f"{int(good.sum())} images have light in every band and finite magnitudes; at least {MIN_GALAXIES} are needed")
    typical = float(np.median(level[good]))
    if not LEVEL_LIMITS[0] <= typical <= LEVEL_LIMITS[1]:
        raise TooFewGalaxies(f"the galaxies' central windows (σ {COLOUR_WINDOW_PX:g} px) hold 10^{typical:.1f} of their magnitudes' flux "
                             "(typically; a galaxy's holds 10–100 %): "
                             "not galaxies, or not in the magnitudes' unit")
    offsets = np.median(colour_mag[good], axis=0)
    deviation, _, _, _, _ = _raw_statistics(images[good], magnitudes[good], np.asarray(noise)[good], (centre[0][good], centre[1][good]), offsets)
    level, profile = level[good], profile[good]
    bounds = np.quantile(profile, [PROFILE_QUANTILE, 1 - PROFILE_QUANTILE], axis=0).T
    bounds[:, 1] = np.maximum(bounds[:, 1], bounds[:, 0] + 1e-6)  # an interval even when every image has one profile
    design = _level_design(_clamp(profile, bounds))
    coefficients, *_ = np.linalg.lstsq(design, level, rcond=None)
    predicted = design @ coefficients
    residual = level - predicted
    # the spread: log |residual| is log σ plus a constant for any one distribution, which the quantiles below absorb
    spread_design = np.stack([np.ones_like(predicted), predicted], axis=1)
    spread, *_ = np.linalg.lstsq(spread_design, np.log(np.abs(residual) + SPREAD_LIMITS_DEX[0] / 10), rcond=None)
    lo_hi = (float(predicted.min()), float(max(predicted.max(), predicted.min() + 1e-6)))
    match = PhotometricMatch(tuple(float(v) for v in offsets), float(np.quantile(deviation.max(axis=1), QUANTILE)),
                             tuple(float(c) for c in coefficients), (0.0, 0.0), tuple(float(c) for c in spread), 0.0,
                             tuple((float(a), float(b)) for a, b in bounds), lo_hi)
    _, spreads = match.predicted(profile)
    scaled = residual / spreads
    tail = (1 - QUANTILE) / 2
    return replace(match, level_range=(float(np.quantile(scaled, tail)), float(np.quantile(scaled, 1 - tail))),
                   typical_spread_dex=float(np.median(spreads)))
