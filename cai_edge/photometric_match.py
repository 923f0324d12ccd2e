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
* **flux level** (``image_out_of_domain``): log10 of the crop's flux over the catalog flux
  (median of g, r, i), less what the light profile's concentration predicts for training images
  (a quadratic in two window-to-box flux ratios, fitted by least squares); it must lie between the
  training images' 0.15th and 99.85th percentiles.

Measured on simulated images (2,000 test-split galaxies, each given the next one's pixels): the
two together flag about 85 % of such cutouts at about 0.5 % of in-domain ones. Another galaxy of
nearly the same colours and brightness passes: nothing in five fluxes tells it from this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cai_edge.image_content import frame_sky, gaussian_rows
from cai_edge.photometry import mag_to_nanomaggies

COLOUR_WINDOW_PX = 4.0  # σ of the Gaussian window of the colour fluxes
CONCENTRATION_WINDOWS_PX = (2.0, COLOUR_WINDOW_PX)  # σ of the windows whose flux over the crop's describes the profile (the wide one is the colour window, computed once)
COLOUR_FLOOR = 0.0276  # fraction of a band's flux (0.03 mag) added to its noise: colour gradients, PSF differences
COLOUR_BANDS = (0, 1, 3, 4)  # u, g, i, z, each against r
REFERENCE_BAND = 2
LEVEL_BANDS = slice(1, 4)  # g, r, i
QUANTILE = 0.997  # the colour threshold; the level's range holds the training images' central 99.7 %
BANDS = "ugriz"
# A colour threshold is in noise units: training images give ~5; below 1 every galaxy trips it, above 1000 none.
COLOUR_THRESHOLD_LIMITS = (1.0, 1000.0)
# The level's bounds are log10 of a flux ratio: a crop holds 10 %–100 % of a galaxy's light (−1 to 0); beyond ±3 dex
# (a factor 1000) the pixels are not in the magnitudes' unit, which the flux check says.
LEVEL_LIMITS = (-3.0, 3.0)
_LEVEL_TERMS = 6  # 1, c2, c4, c2², c4², c2·c4
MIN_GALAXIES = 100


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
    wy = np.stack([gaussian_rows(centre[0], h, s) if s is not None else np.ones((len(images), h), np.float32) for s in sigmas], axis=-1)
    wx = np.stack([gaussian_rows(centre[1], w, s) if s is not None else np.ones((len(images), w), np.float32) for s in sigmas], axis=-1)
    across = np.matmul(images, wx[:, None])  # (N, bands, H, windows): Σx w(x) I
    flux = np.einsum("nbhk,nhk->nbk", across, wy).astype(np.float64)
    total = wy.sum(axis=1, dtype=np.float64) * wx.sum(axis=1, dtype=np.float64)  # (N, windows)
    squares = (wy.astype(np.float64) ** 2).sum(axis=1) * (wx.astype(np.float64) ** 2).sum(axis=1)
    return flux - sky[:, :, None] * total[:, None, :], squares


@dataclass(frozen=True)
class MatchStatistics:
    """Per galaxy: the worst colour deviation (noise units) and its band, and the flux level's residual (dex)."""

    colour: np.ndarray
    colour_band: np.ndarray
    colour_deviation_mag: np.ndarray  # (N, 4): image − catalog colour of u, g, i, z against r, less the training median
    level: np.ndarray


def _level_design(box: np.ndarray, narrow: np.ndarray, wide: np.ndarray) -> np.ndarray:
    """The level model's terms (1, c2, c4, c2², c4², c2·c4) from the crop's, the σ 2 px and the σ 4 px window's g+r+i flux."""
    ratios = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for flux in (narrow, wide):
            ratios.append(np.log10(np.clip(flux / box, 1e-3, 10.0)))
    c2, c4 = (np.where(np.isfinite(r), r, 1.0) for r in ratios)  # no light in the crop: a profile no galaxy has
    return np.stack([np.ones_like(c2), c2, c4, c2**2, c4**2, c2 * c4], axis=1)


def _raw_statistics(images: np.ndarray, magnitudes: np.ndarray, noise: np.ndarray, centre, colour_offsets: np.ndarray,
                    sky: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Colour deviations (noise units and magnitudes), the flux level (dex), the level model's terms, and which crops have light in r."""
    images = np.asarray(images, dtype=np.float32)
    catalog = mag_to_nanomaggies(np.asarray(magnitudes, dtype=np.float64))
    sky = np.asarray(frame_sky(images) if sky is None else sky, dtype=np.float64)
    windows, squares = window_fluxes(images, centre, (COLOUR_WINDOW_PX, CONCENTRATION_WINDOWS_PX[0], None), sky)
    flux, narrow, box = windows[..., 0], windows[..., 1], windows[..., 2]
    design = _level_design(box[:, LEVEL_BANDS].sum(axis=1), narrow[:, LEVEL_BANDS].sum(axis=1), flux[:, LEVEL_BANDS].sum(axis=1))
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
        k = np.median(box[:, LEVEL_BANDS] / catalog[:, LEVEL_BANDS], axis=1)
    lit = (flux[:, ref] > 0) & np.all(np.isfinite(deviation), axis=1)
    deviation = np.where(lit[:, None], deviation, np.inf)
    level = np.where(k > 0, np.log10(np.where(k > 0, k, 1.0)), -np.inf)
    return deviation, colour_mag, level, design, lit


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
        The level model's six coefficients (1, c2, c4, c2², c4², c2·c4).
    level_range : tuple of float
        The level residual's allowed range, dex.
    """

    colour_offsets_mag: tuple[float, ...]
    colour_threshold: float
    level_coefficients: tuple[float, ...]
    level_range: tuple[float, float]

    def statistics(self, images: np.ndarray, magnitudes: np.ndarray, noise: np.ndarray, centre,
                   sky: np.ndarray | None = None) -> MatchStatistics:
        """The colour deviation and flux-level residual of each crop.

        ``noise``: its measured band noise; ``centre``: its galaxy's; ``sky``: its frame sky, when already computed.
        """
        deviation, colour_mag, level, design, _ = _raw_statistics(images, magnitudes, noise, centre,
                                                                  np.asarray(self.colour_offsets_mag), sky)
        worst = np.argmax(np.where(np.isnan(deviation), np.inf, deviation), axis=1)
        return MatchStatistics(deviation[np.arange(len(worst)), worst], worst, colour_mag,
                               level - design @ np.asarray(self.level_coefficients))

    def mismatched(self, s: MatchStatistics) -> np.ndarray:
        """``(N,)`` bool: the galaxies whose pixels are not their magnitudes' galaxy (colour or flux level out of range)."""
        lo, hi = self.level_range
        return ~(s.colour <= self.colour_threshold) | ~((s.level >= lo) & (s.level <= hi))  # NaN is out of range

    def reason(self, s: MatchStatistics, j: int) -> str:
        """Why galaxy ``j``'s pixels are not its magnitudes' galaxy: each check that tripped, its value and threshold."""
        lo, hi = self.level_range
        parts = []
        if not s.colour[j] <= self.colour_threshold:
            band = BANDS[COLOUR_BANDS[s.colour_band[j]]]
            parts.append(f"{band}−r colour of the pixels {s.colour_deviation_mag[j, s.colour_band[j]]:+.2f} mag from the magnitudes' "
                         f"({s.colour[j]:.1f}σ, threshold {self.colour_threshold:.1f}σ)")
        if not lo <= s.level[j] <= hi:
            parts.append(f"pixel flux {s.level[j]:+.2f} dex from what the magnitudes and the light profile predict "
                         f"(allowed {lo:+.2f} to {hi:+.2f})")
        return "pixels unlike the galaxy the magnitudes describe (another object's cutout?): " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"colour_offsets_mag": dict(zip((BANDS[b] for b in COLOUR_BANDS), self.colour_offsets_mag)),
                "colour_threshold_sigma": self.colour_threshold, "colour_window_sigma_px": COLOUR_WINDOW_PX,
                "colour_floor_fraction": COLOUR_FLOOR, "colour_quantile": QUANTILE,
                "level_coefficients": list(self.level_coefficients), "level_terms": "1, c2, c4, c2^2, c4^2, c2*c4 "
                "(c = log10 of the g+r+i flux in Gaussian windows of sigma 2 and 4 px over the crop's)",
                "level_range_dex": list(self.level_range)}

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
        coefficients = data["level_coefficients"]
        level_range = data["level_range_dex"]
        if not isinstance(coefficients, list) or len(coefficients) != _LEVEL_TERMS:
            raise ValueError(f"photometric_match.level_coefficients must be {_LEVEL_TERMS} numbers")
        if not isinstance(level_range, list) or len(level_range) != 2:
            raise ValueError("photometric_match.level_range_dex must be two numbers")
        match = cls(tuple(record_number(offsets[b]) for b in names), record_number(data["colour_threshold_sigma"]),
                    tuple(record_number(c) for c in coefficients), (record_number(level_range[0]), record_number(level_range[1])))
        problem = match.range_problem()
        if problem:
            raise ValueError(problem)
        return match

    def range_problem(self) -> str:
        """Why these values cannot describe training images, or ``""``."""
        problems = []
        lo, hi = COLOUR_THRESHOLD_LIMITS
        if not lo <= self.colour_threshold <= hi:
            problems.append(f"colour threshold {self.colour_threshold:.3g} outside {lo:g}–{hi:g}")
        if not all(abs(v) <= 2.5 for v in self.colour_offsets_mag):  # NaN fails too
            problems.append("aperture colour offsets beyond ±2.5 mag")
        a, b = self.level_range
        lo, hi = LEVEL_LIMITS
        if not (lo <= a < b <= hi):
            problems.append(f"flux level range {a:.3g} to {b:.3g} not an interval inside {lo:g}–{hi:g}")
        if not all(np.isfinite(self.level_coefficients)):
            problems.append("level coefficients not finite")
        return "; ".join(problems)


def fit_photometric_match(images: np.ndarray, magnitudes: np.ndarray, noise: np.ndarray, centre) -> PhotometricMatch:
    """The reference of training-like crops and their magnitudes (noise: each crop's measured band noise; centre: its galaxy's)."""
    magnitudes = np.asarray(magnitudes, dtype=np.float64)
    zero = np.zeros(len(COLOUR_BANDS))
    _, colour_mag, level, design, lit = _raw_statistics(images, magnitudes, noise, centre, zero)
    good = lit & np.all(np.isfinite(magnitudes), axis=1) & np.isfinite(level) & np.all(np.isfinite(colour_mag), axis=1)
    if good.sum() < MIN_GALAXIES:
        raise TooFewGalaxies(f"{int(good.sum())} images have light in every band and finite magnitudes; at least {MIN_GALAXIES} are needed")
    typical = float(np.median(level[good]))
    if not LEVEL_LIMITS[0] <= typical <= LEVEL_LIMITS[1]:
        raise TooFewGalaxies(f"the crops hold 10^{typical:.1f} of their magnitudes' flux (typically; galaxies' crops hold 10–100 %): "
                             "not galaxies, or not in the magnitudes' unit")
    offsets = np.median(colour_mag[good], axis=0)
    deviation, _, _, _, _ = _raw_statistics(images[good], magnitudes[good], np.asarray(noise)[good], (centre[0][good], centre[1][good]), offsets)
    coefficients, *_ = np.linalg.lstsq(design[good], level[good], rcond=None)
    residual = level[good] - design[good] @ coefficients
    tail = (1 - QUANTILE) / 2
    return PhotometricMatch(tuple(float(v) for v in offsets), float(np.quantile(deviation.max(axis=1), QUANTILE)),
                            tuple(float(c) for c in coefficients),
                            (float(np.quantile(residual, tail)), float(np.quantile(residual, 1 - tail))))
