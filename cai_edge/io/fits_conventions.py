"""What a FITS header says about its pixels: their unit (``BUNIT``), band order (``BANDS``) and size.

Units. The model takes nanomaggies (SDSS: m = 22.5 − 2.5 log10 f). ``BUNIT`` is read and
normalised (case, blanks and a ``/pixel`` suffix ignored):

* nanomaggies — ``nanomaggy``, ``nanomaggies``, ``nmgy``, ``nMgy`` — are taken as they are; so is
  a cutout without ``BUNIT`` (undeclared; the flux–magnitude check still looks at it);
* ``maggy``/``maggies`` (×10⁹) and AB flux densities ``Jy``, ``mJy``, ``uJy``/``µJy``, ``nJy``
  (1 nanomaggy = 3.631 µJy) are converted;
* counts (``count``, ``counts``, ``DN``, ``ADU``) are converted only with the SDSS frame keyword
  ``NMGY`` (nanomaggies per count; or ``NMGY_U`` … ``NMGY_Z`` per band);
* anything else is refused with status ``wrong_units``.

Band order. A cube's planes are u,g,r,i,z unless the header says otherwise: ``BANDS`` holds the
bands along NAXIS3 (``'ugriz'``, ``'g,r,i,z,u'`` or ``'sdss_g ...'``), or ``BAND1`` … ``BAND5``
(also ``FILTER1`` …) name each plane. Declared orders are reordered to u,g,r,i,z; a band name
that is not one of them, or a band given twice, is refused with status ``bad_bands``.

Pixel size: :mod:`cai_edge.io.pixel_scales`. Other surveys' conventions that are not units
cai-edge converts (HSC's ``FLUXMAG0`` counts, Pan-STARRS' asinh scaling): :mod:`cai_edge.io.other_surveys`.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping

import numpy as np

from cai_edge.errors import InputError
from cai_edge.io.header_values import REPEATED
from cai_edge.io.other_surveys import other_survey
from cai_edge.io.status import BAD_BANDS, BAD_SHAPE, WRONG_UNITS
from cai_edge.photometry import BANDS

NANOMAGGY_UNITS = {"", "nanomaggy", "nanomaggies", "nmgy", "nanomgy", "nmaggy", "nmaggies"}
JY_PER_NANOMAGGY = 3.631e-6
_SCALED_UNITS = {
    "maggy": 1e9,
    "maggies": 1e9,
    "jy": 1.0 / JY_PER_NANOMAGGY,
    "mjy": 1e-3 / JY_PER_NANOMAGGY,
    "ujy": 1e-6 / JY_PER_NANOMAGGY,
    "µjy": 1e-6 / JY_PER_NANOMAGGY,
    "microjy": 1e-6 / JY_PER_NANOMAGGY,
    "njy": 1e-9 / JY_PER_NANOMAGGY,
}
_COUNT_UNITS = {"count", "counts", "dn", "adu", "data number"}


def normalize_unit(text: Any) -> str:
    unit = str(text).strip().lower().replace(" ", "")
    for suffix in ("/pixel", "/pix", "perpixel", "/px"):
        if unit.endswith(suffix):
            unit = unit[: -len(suffix)]
    return unit


def _counts_scale(header: Mapping[str, Any], bands: tuple[str, ...]) -> np.ndarray | None:
    per_band = [header.get(f"NMGY_{b.upper()}") for b in bands]
    if all(isinstance(v, (int, float)) and v > 0 for v in per_band):
        return np.asarray(per_band, dtype=np.float64)
    one = header.get("NMGY")
    if isinstance(one, (int, float)) and not isinstance(one, bool) and one > 0:
        return np.full(len(bands), float(one))
    return None


def to_nanomaggies(data: np.ndarray, header: Mapping[str, Any], bands: tuple[str, ...] = BANDS) -> np.ndarray:
    """``data`` (planes in ``bands`` order) in nanomaggies, or :class:`InputError` ``wrong_units``
    (another survey's convention: :func:`cai_edge.io.other_surveys.other_survey`)."""
    raw = header.get("BUNIT", "")
    unit = normalize_unit(raw)
    again = [(k, v) for k, v in header.get(REPEATED, ()) if k == "BUNIT" or k.startswith("NMGY")]
    if again:
        key, value = again[0]
        raise InputError(WRONG_UNITS, f"the header gives {key} twice, {header.get(key)!r} and {value!r}: cai-edge cannot "
                                      "tell which unit the pixels are in; keep one")
    foreign = other_survey(header, flux_declared=unit in _SCALED_UNITS or unit in NANOMAGGY_UNITS - {""})
    if foreign is not None:
        raise foreign
    if unit in NANOMAGGY_UNITS:
        return data
    if unit in _SCALED_UNITS:
        return np.asarray(data, dtype=np.float64) * _SCALED_UNITS[unit]
    if unit in _COUNT_UNITS:
        scale = _counts_scale(header, bands)
        if scale is None:
            raise InputError(
                WRONG_UNITS,
                f"pixels are in {raw!r} with no NMGY keyword (nanomaggies per count) to convert them; "
                "give cutouts in nanomaggies (BUNIT = 'nanomaggy')",
            )
        if np.ndim(data) >= 3:  # (..., bands, H, W)
            return np.asarray(data, dtype=np.float64) * scale.reshape(-1, 1, 1)
        return np.asarray(data, dtype=np.float64) * scale[0]
    raise InputError(WRONG_UNITS, f"pixel unit BUNIT = {raw!r} cannot be converted to nanomaggies; give cutouts in nanomaggies")


def band_name(text: Any) -> str:
    """A band as headers and names write it (``g``, ``G``, ``sdss_g``, ``SDSS-G``) in lower case."""
    name = re.sub(r"^(sdss)[_\-\s]*", "", str(text).strip().lower())
    return name.strip(" '\"_-")


@functools.lru_cache(maxsize=256)  # a folder's cutouts write their band order alike ('ugriz'): read it once
def _bands_written(value: str) -> tuple[str, ...]:
    """The bands a ``BANDS`` value names: ``ugriz``, ``u,g,r,i,z``, ``SDSS_U SDSS_G …``."""
    text = value.strip()
    parts = re.split(r"[,\s;]+", text) if re.search(r"[,\s;]", text) else list(text)
    return tuple(band_name(p) for p in parts if p.strip())


def declared_bands(header: Mapping[str, Any], n_planes: int) -> tuple[str, ...] | None:
    """The bands along the cube's planes as the header declares them, or None when it does not."""
    value = header.get("BANDS")
    if isinstance(value, str) and value.strip():
        names = _bands_written(value)
    else:
        for key in ("BAND", "FILTER"):
            found = [header.get(f"{key}{i}") for i in range(1, n_planes + 1)]
            if all(v is not None for v in found):
                names = tuple(band_name(v) for v in found)
                break
        else:
            return None
    return names


def to_ugriz(data: np.ndarray, header: Mapping[str, Any]) -> np.ndarray:
    """A ``(..., 5, H, W)`` cube reordered to u,g,r,i,z as its header declares, or :class:`InputError` ``bad_bands``."""
    if np.ndim(data) < 3:
        return data
    planes = data.shape[-3]
    names = declared_bands(header, planes)
    if names is None or names == BANDS:
        return data
    if planes != len(BANDS) and len(names) == planes and len(set(names)) == planes:
        missing = ",".join(b for b in BANDS if b not in names) or "none"
        raise InputError(BAD_SHAPE, f"the cube holds {planes} bands ({','.join(names)}); this model needs all five SDSS bands "
                                    f"{','.join(BANDS)} (missing: {missing}). Cutouts in other bands (such as Legacy Survey "
                                    "g,r,z) cannot be used: get u,g,r,i,z cutouts, e.g. from the SDSS cutout service")
    if len(names) != planes or sorted(names) != sorted(BANDS):
        raise InputError(BAD_BANDS, f"the header declares bands {list(names)} for {planes} planes; "
                                    f"cai-edge needs u,g,r,i,z, each once")
    return data[..., [names.index(b) for b in BANDS], :, :]


def check_band_file(header: Mapping[str, Any], band: str) -> None:
    """A single-band file whose header names another band than its file name is refused (``bad_bands``)."""
    for key in ("BAND", "FILTER"):
        value = header.get(key)
        if isinstance(value, str) and value.strip() and band_name(value) != band:
            raise InputError(BAD_BANDS, f"the file is named for band {band} but its header says {key} = {value!r}")
