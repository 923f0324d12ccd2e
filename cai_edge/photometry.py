"""SDSS photometric conventions: band order, pixel scale, magnitudes ↔ nanomaggies."""

from __future__ import annotations

import numpy as np

BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")
PIXEL_SCALE_ARCSEC = 0.396
NANOMAGGY_ZEROPOINT = 22.5  # m = 22.5 - 2.5 log10(f / nanomaggy), SDSS convention
MAG_COLUMNS: tuple[str, ...] = tuple(f"mag_{b}" for b in BANDS)
MAGERR_COLUMNS: tuple[str, ...] = tuple(f"magerr_{b}" for b in BANDS)
HEADER_MAG_KEYS: tuple[str, ...] = tuple(f"MAG_{b.upper()}" for b in BANDS)

# Values catalogs use for "no measurement" (astroML's colour sample uses -9999).
MISSING_MAGNITUDE_SENTINELS = (-9999.0, -999.0, -99.0, 99.0, 999.0, 9999.0)
# A plausible apparent-magnitude range for a galaxy in a 64×64 SDSS cutout.
MAGNITUDE_RANGE = (5.0, 35.0)


def mag_to_nanomaggies(mag: np.ndarray | float) -> np.ndarray:
    return np.power(10.0, (NANOMAGGY_ZEROPOINT - np.asarray(mag, dtype=np.float64)) / 2.5)


def nanomaggies_to_mag(flux: np.ndarray | float) -> np.ndarray:
    return NANOMAGGY_ZEROPOINT - 2.5 * np.log10(np.asarray(flux, dtype=np.float64))
