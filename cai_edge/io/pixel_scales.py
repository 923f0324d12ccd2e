"""The pixel size a galaxy's headers declare, read from every one of them, and what it means for the model.

Each header may declare it as ``PIXSCALE`` (arcsec per pixel; a number, or a string holding one)
and as a celestial WCS (``CTYPE1`` ``RA…``/``DEC…``/``GLON…``…): the ``CDi_j`` matrix (a term
that is absent is 0, as the FITS standard says), or ``CDELTi`` with ``PCi_j`` (once any is given,
an absent ``CDELTi`` is 1 and absent ``PCi_j`` the unit matrix, as the standard says), in the units
``CUNITi`` names (``deg``, the default, ``arcmin``, ``arcsec``, ``mas``, ``rad``). The scale is
``sqrt(|det|)``.

What is flagged ``image_out_of_domain``, each with a note naming the check, the value and the
threshold:

* a declared scale more than :data:`PIXEL_SCALE_RATIO_LIMIT` × larger or smaller than SDSS's 0.396″
  (DECaLS' 0.262″, HSC's 0.168″): galaxies of another apparent size move the redshift, and no
  statistic of the pixels alone can tell (``benchmarks/image_shifts.py``);
* declarations that disagree — ``PIXSCALE`` against the WCS, or one header against another — by
  more than :data:`PIXEL_SCALE_AGREEMENT` (relative);
* a ``PIXSCALE`` that is not a positive number (``-0.396``, ``0``, ``'fine'``), or a WCS whose
  ``CUNIT`` is not an angle or whose matrix is singular: the pixel size is then unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from cai_edge.flags import IMAGE_OUT_OF_DOMAIN
from cai_edge.io.header_values import has_value, header_number
from cai_edge.photometry import PIXEL_SCALE_ARCSEC

PIXEL_SCALE_RATIO_LIMIT = 1.3  # within it (0.7×–1.25× measured) the intervals hold; at 1.4× and 0.5× they do not
PIXEL_SCALE_AGREEMENT = 0.05  # two declarations of one galaxy's pixels may differ by this much (relative)

ARCSEC_PER_UNIT = {"deg": 3600.0, "degree": 3600.0, "degrees": 3600.0, "arcmin": 60.0, "arcsec": 1.0,
                   "mas": 1e-3, "rad": 180.0 / math.pi * 3600.0}
_SKY_AXES = ("RA", "DEC", "GLON", "GLAT", "ELON", "ELAT")


@dataclass
class Declared:
    """One header's pixel-scale declarations: ``scales`` (``PIXSCALE`` or ``WCS`` → arcsec) and ``problems`` (text)."""

    scales: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _wcs_scale(header: Mapping[str, Any], found: Declared) -> None:
    if not str(header.get("CTYPE1", "") or "").upper().startswith(_SKY_AXES):
        return  # a WCS not on the sky (or none): nothing declared
    units = []
    for axis in (1, 2):
        unit = str(header.get(f"CUNIT{axis}", "deg") or "deg").strip().lower()
        if unit not in ARCSEC_PER_UNIT:
            found.problems.append(f"CUNIT{axis} = {unit!r} is not an angle unit, so the WCS pixel size is unknown")
            return
        units.append(ARCSEC_PER_UNIT[unit])
    cd_keys = ("CD1_1", "CD1_2", "CD2_1", "CD2_2")
    if any(k in header for k in cd_keys):
        matrix = [header_number(header.get(k, 0.0)) for k in cd_keys]
    elif any(k in header for k in ("CDELT1", "CDELT2", "PC1_1", "PC1_2", "PC2_1", "PC2_2")):  # absent ones: their defaults
        cdelt = [header_number(header.get("CDELT1", 1.0)), header_number(header.get("CDELT2", 1.0))]
        pc = [header_number(header.get(k, d)) for k, d in (("PC1_1", 1.0), ("PC1_2", 0.0), ("PC2_1", 0.0), ("PC2_2", 1.0))]
        if None in cdelt or None in pc:
            matrix = [None]
        else:
            matrix = [cdelt[0] * pc[0], cdelt[0] * pc[1], cdelt[1] * pc[2], cdelt[1] * pc[3]]
    else:
        return
    if None in matrix:
        found.problems.append("the WCS matrix (CD/CDELT/PC) holds a value that is not a number")
        return
    size = max(abs(v) for v in matrix)  # scaled by its largest term, a huge or tiny matrix neither overflows nor underflows
    unit = [v / size for v in matrix] if 0 < size < math.inf else [0.0] * 4
    det = unit[0] * unit[3] - unit[1] * unit[2]
    scale = size * math.sqrt(abs(det) * units[0] * units[1])
    if det == 0 or not math.isfinite(scale):
        found.problems.append("the WCS matrix (CD/CDELT/PC) is singular or not finite, so the pixel size is unknown")
        return
    found.scales["WCS"] = scale


def declared_scales(header: Mapping[str, Any]) -> Declared:
    """What one header declares about its pixel size (``PIXSCALE``, a celestial WCS), and what it gets wrong."""
    found = Declared()
    if has_value(header.get("PIXSCALE")):
        raw = header["PIXSCALE"]
        value = header_number(raw)
        if value is None or value <= 0:
            found.problems.append(f"PIXSCALE = {raw!r} is not a positive number of arcsec, so the pixel size is unknown")
        else:
            found.scales["PIXSCALE"] = value
    _wcs_scale(header, found)
    return found


def _agree(a: float, b: float) -> bool:
    return abs(a - b) <= PIXEL_SCALE_AGREEMENT * min(a, b)


def pixel_scale_check(headers: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[tuple[str, ...], str]:
    """``(flags, note)`` from every header that speaks for a galaxy's pixels, each ``(where, header)``.

    ``image_out_of_domain`` and a note when a declaration is unusable, when declarations disagree, or
    when the scale is far from the model's; else ``((), "")``. The note names keywords, values and the
    threshold, not where they sat, so one galaxy gets one note in every layout.
    """
    notes: list[str] = []
    values: list[tuple[float, str, str]] = []  # (arcsec, keyword kind, where)
    for where, header in headers:
        found = declared_scales(header)
        notes.extend(p for p in found.problems if p not in notes)
        values.extend((v, kind, where) for kind, v in found.scales.items())
    distinct: list[tuple[float, str, str]] = []
    for value in values:
        if not any(_agree(value[0], d[0]) for d in distinct):
            distinct.append(value)
    if len(distinct) > 1:
        one_header = len({where for _, _, where in distinct}) == 1  # then where it sat is left out: the same in any layout
        listed = " and ".join(f"{v:.3g}″ ({kind}{'' if one_header else ', ' + where})" for v, kind, where in distinct)
        notes.append(f"the {'header declares' if one_header else 'headers declare'} different pixel sizes, {listed}, "
                     f"more than {PIXEL_SCALE_AGREEMENT:.0%} apart")
    for scale, _, _ in distinct:
        ratio = scale / PIXEL_SCALE_ARCSEC
        if not 1 / PIXEL_SCALE_RATIO_LIMIT <= ratio <= PIXEL_SCALE_RATIO_LIMIT:
            kinds = ", ".join(sorted({k for v, k, _ in values if _agree(v, scale)}))
            notes.append(f"the header declares {scale:.3g}″ pixels ({kinds}), more than {PIXEL_SCALE_RATIO_LIMIT}× from the "
                         f"{PIXEL_SCALE_ARCSEC}″ pixels the model was trained on (SDSS), so galaxies look "
                         f"{1 / ratio:.2g}× their trained size: resample the cutout to {PIXEL_SCALE_ARCSEC}″/px")
    return ((IMAGE_OUT_OF_DOMAIN,), "; ".join(notes)) if notes else ((), "")
