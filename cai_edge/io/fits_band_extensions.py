"""One galaxy's bands, one per image extension (as many cutout services write them) or one per file.

An extension is a band's when its ``EXTNAME`` is the band (``U``, ``g``, ``SDSS_R``) or, failing
that, its ``FILTER`` or ``BAND`` keyword names it. Each plane is converted to nanomaggies with its
own header over the primary header (``BUNIT``, ``NMGY``); every header (primary, then each band's)
goes on to :func:`cai_edge.io.galaxy_headers.galaxy_record`, which reads magnitudes, ``Z_SPEC``,
``MAGSYS`` and the pixel size from all of them.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import numpy as np

from cai_edge.errors import InputError
from cai_edge.io.fits_conventions import band_name, check_band_file, to_nanomaggies
from cai_edge.io.fits_hdus import FitsHdu
from cai_edge.io.galaxy_headers import Headers, unit_header
from cai_edge.io.status import BAD_BANDS, BAD_SHAPE, MISSING_BANDS
from cai_edge.photometry import BANDS

T = TypeVar("T")


def band_of(hdu: FitsHdu) -> str | None:
    """The band an image extension holds, by ``EXTNAME``, then ``FILTER``/``BAND``; None when it names none."""
    if hdu.name and band_name(hdu.name) in BANDS:
        return band_name(hdu.name)
    for key in ("FILTER", "BAND"):
        value = hdu.header.get(key)
        if isinstance(value, str) and band_name(value) in BANDS:
            return band_name(value)
    return None


def band_extensions(hdus: Sequence[FitsHdu]) -> list[tuple[str, FitsHdu]]:
    """``(band, hdu)`` for each single-plane image extension that names a band; empty unless there are two or more."""
    found = []
    for hdu in hdus[1:]:
        if hdu.kind == "image" and len([d for d in hdu.shape if d > 1]) == 2:
            band = band_of(hdu)
            if band is not None:
                found.append((band, hdu))
    return found if len(found) >= 2 else []


def stack_bands(found: Sequence[tuple[str, T]], plane: Callable[[str, T], tuple[np.ndarray, Headers]],
                label: Callable[[T], str], what: str, shared: Headers = ()) -> tuple[np.ndarray, list]:
    """One galaxy's band planes — extensions of one file, or single-band files — as a ``(5,H,W)`` cube.

    ``plane(band, item)`` gives that band's nanomaggy plane and the headers it came with; they are
    listed after ``shared`` (the file's primary header), u to z. A band given twice is
    ``bad_bands``, one absent ``missing_bands``, planes of two shapes ``bad_shape``.
    """
    named = [b for b, _ in found]
    doubled = sorted({b for b in named if named.count(b) > 1})
    if doubled:
        raise InputError(BAD_BANDS, f"more than one {what} for band(s) {','.join(doubled)}: "
                                    f"{', '.join(label(item) for b, item in found if b in doubled)}")
    missing = [b for b in BANDS if b not in named]
    if missing:
        raise InputError(MISSING_BANDS, f"{what}s found for band(s) {','.join(b for b in BANDS if b in named) or 'none'}; "
                                        f"this model needs all five SDSS bands {','.join(BANDS)} (missing: {','.join(missing)})")
    by_band = dict(found)
    planes, headers = [], list(shared)
    for band in BANDS:
        data, own = plane(band, by_band[band])
        planes.append(data)
        headers.extend(own)
    shapes = sorted({p.shape for p in planes})
    if len(shapes) != 1:
        raise InputError(BAD_SHAPE, f"band {what}s differ in shape: {shapes}")
    return np.stack(planes), headers


def hdu_label(hdu: FitsHdu) -> str:
    """How a note names an HDU: ``HDU 2 (G)``."""
    return f"HDU {hdu.index}" + (f" ({hdu.name})" if hdu.name else "")


def _extension_plane(primary: FitsHdu) -> Callable[[str, FitsHdu], tuple[np.ndarray, Headers]]:
    def plane(band: str, hdu: FitsHdu) -> tuple[np.ndarray, Headers]:
        own = [(hdu_label(hdu), hdu.header)]
        data = to_nanomaggies(np.squeeze(hdu.read()), unit_header([(hdu_label(primary), primary.header), *own]), (band,))
        check_band_file(hdu.header, band)
        return data, own
    return plane


def read_band_extensions(primary: FitsHdu, found: list[tuple[str, FitsHdu]]) -> tuple[np.ndarray, Headers]:
    """The ``(5,H,W)`` nanomaggy cube in u,g,r,i,z order and every header that speaks for it (primary first)."""
    return stack_bands(found, _extension_plane(primary), lambda h: h.name or str(h.index), "extension",
                       [(hdu_label(primary), primary.header)])
