"""Other surveys' cutouts that look like images cai-edge reads but hold something else.

* **HSC** (Hyper Suprime-Cam) cutouts: ``PRIMARY`` + ``IMAGE``/``MASK``/``VARIANCE`` HDUs,
  ``FILTER = 'HSC-G'``, pixels in counts with the zero point ``FLUXMAG0`` (counts of a 0-mag
  source), 0.168″ pixels, bands g,r,i,z,y.
* **Pan-STARRS** (PS1) stack cutouts (``….stk.g.unconv.fits``): pixels asinh-compressed, with
  ``BSOFTEN``/``BOFFSET`` to undo it, 0.25″ pixels, bands g,r,i,z,y.

Neither is in nanomaggies, neither has SDSS's u band, and their pixels are not SDSS's 0.396″, so
a file of either is refused with status ``wrong_units`` and a message saying what it is and what
the model needs, before its shape is looked at (one plane would otherwise be ``bad_shape`` with
no hint). ``FLUXMAG0`` is taken as the counts convention unless ``BUNIT`` declares a flux unit
cai-edge converts; ``BSOFTEN`` with ``BOFFSET`` always means asinh-scaled pixels.
"""

from __future__ import annotations

from typing import Any, Mapping

from cai_edge.errors import InputError
from cai_edge.io.status import BAD_BANDS, WRONG_UNITS
from cai_edge.photometry import BANDS, PIXEL_SCALE_ARCSEC

NEEDED = (f"this model needs SDSS {','.join(BANDS)} cutouts at {PIXEL_SCALE_ARCSEC}″/px in nanomaggies "
          "(e.g. from the SDSS cutout service)")


def _filter(header: Mapping[str, Any]) -> str:
    value = header.get("FILTER", "")
    return value.strip() if isinstance(value, str) else ""


def other_survey(header: Mapping[str, Any], flux_declared: bool) -> InputError | None:
    """Why ``header`` is another survey's image cai-edge cannot read, or None.

    ``flux_declared``: whether ``BUNIT`` names a flux unit cai-edge converts (then ``FLUXMAG0`` is
    not taken as the counts convention).
    """
    filt = _filter(header)
    hsc = filt.upper().startswith("HSC")
    hsc_terms = ", at HSC's 0.168″/px in bands g,r,i,z,y with no u" if hsc else ""
    if "BSOFTEN" in header and "BOFFSET" in header:
        return InputError(WRONG_UNITS, (
            f"a Pan-STARRS-style image{' (FILTER = ' + repr(filt) + ')' if filt else ''}: its pixels are asinh-scaled "
            f"(BSOFTEN = {header['BSOFTEN']!r}, BOFFSET = {header['BOFFSET']!r}), not fluxes, at Pan-STARRS' 0.25″/px "
            f"in bands g,r,i,z,y with no u; " + NEEDED))
    if "FLUXMAG0" in header and not flux_declared:
        return InputError(WRONG_UNITS, (
            f"an HSC-style image{' (FILTER = ' + repr(filt) + ')' if filt else ''}: its pixels are counts with the zero point "
            f"FLUXMAG0 = {header['FLUXMAG0']!r}, not nanomaggies{hsc_terms}; " + NEEDED))
    if hsc:
        return InputError(BAD_BANDS, f"an HSC image (FILTER = {filt!r}){hsc_terms}; " + NEEDED)
    return None
