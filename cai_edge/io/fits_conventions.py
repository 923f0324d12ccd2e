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

Pixel size. The model saw SDSS's 0.396″ pixels. A cutout declaring its pixel scale — ``PIXSCALE``
(arcsec), or a celestial WCS (``CD1_1`` …, or ``CDELT1``/``CDELT2`` with ``PC``, in degrees) — more
than 1.3× larger or smaller (DECaLS' 0.262″, HSC's 0.168″) is predicted but flagged
``image_out_of_domain``, with a note to resample it: galaxies of another apparent size move the
redshift, and no statistic of the pixels alone can tell (``benchmarks/image_shifts.py``).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from cai_edge.errors import InputError
from cai_edge.flags import IMAGE_OUT_OF_DOMAIN
from cai_edge.io.status import BAD_BANDS, BAD_SHAPE, WRONG_UNITS
from cai_edge.photometry import BANDS, PIXEL_SCALE_ARCSEC

PIXEL_SCALE_RATIO_LIMIT = 1.3  # within it (0.7×–1.25× measured) the intervals hold; at 1.4× and 0.5× they do not

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
    """``data`` (planes in ``bands`` order) in nanomaggies, or :class:`InputError` ``wrong_units``."""
    raw = header.get("BUNIT", "")
    unit = normalize_unit(raw)
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


def declared_bands(header: Mapping[str, Any], n_planes: int) -> tuple[str, ...] | None:
    """The bands along the cube's planes as the header declares them, or None when it does not."""
    value = header.get("BANDS")
    if isinstance(value, str) and value.strip():
        text = value.strip()
        parts = re.split(r"[,\s;]+", text) if re.search(r"[,\s;]", text) else list(text)
        names = tuple(band_name(p) for p in parts if p.strip())
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


def declared_pixel_scale(header: Mapping[str, Any]) -> float | None:
    """Arcseconds per pixel the header declares (``PIXSCALE``, or a celestial WCS), or None."""
    value = header.get("PIXSCALE")
    if _is_number(value) and value > 0:
        return float(value)
    ctype = str(header.get("CTYPE1", "") or "").upper()
    if not ctype.startswith(("RA", "DEC", "GLON", "GLAT", "ELON", "ELAT")):
        return None  # a WCS that is not on the sky (or none): nothing to say
    cd = [header.get(k) for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2")]
    if all(_is_number(v) for v in cd):
        det = cd[0] * cd[3] - cd[1] * cd[2]
    elif _is_number(header.get("CDELT1")) and _is_number(header.get("CDELT2")):
        pc = [header.get(k, d) for k, d in (("PC1_1", 1.0), ("PC1_2", 0.0), ("PC2_1", 0.0), ("PC2_2", 1.0))]
        if not all(_is_number(v) for v in pc):
            return None
        det = header["CDELT1"] * header["CDELT2"] * (pc[0] * pc[3] - pc[1] * pc[2])
    else:
        return None
    scale = float(np.sqrt(abs(det))) * 3600.0
    return scale if np.isfinite(scale) and scale > 0 else None


def pixel_scale_check(header: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    """``(flags, note)`` for every galaxy of an image HDU: ``image_out_of_domain`` and a note when the header
    declares a pixel scale far from the model's, else ``((), "")``."""
    scale = declared_pixel_scale(header)
    if scale is None or 1 / PIXEL_SCALE_RATIO_LIMIT <= scale / PIXEL_SCALE_ARCSEC <= PIXEL_SCALE_RATIO_LIMIT:
        return (), ""
    return (IMAGE_OUT_OF_DOMAIN,), (f"the header declares {scale:.3g}″ pixels; the model was trained on SDSS's "
                                    f"{PIXEL_SCALE_ARCSEC}″ pixels, so galaxies look {PIXEL_SCALE_ARCSEC / scale:.2g}× their "
                                    f"trained size: resample the cutout to {PIXEL_SCALE_ARCSEC}″/px")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
