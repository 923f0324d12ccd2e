"""A FITS keyword's value, read the same way by every header check: a number, or no value at all.

Writers store numbers as numbers or as text (``Z_SPEC = '0.0823'``), and a keyword may be written
with no value (``PIXSCALE =``, astropy's ``Undefined``): such a keyword says nothing, as if absent.
A keyword written twice in one header with two values (``PIXSCALE`` appended after a resampling)
keeps its first value, and the later ones are listed under :data:`REPEATED`, so the checks see the
disagreement (:func:`cai_edge.io.galaxy_headers.with_repeats`) rather than one value silently.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

REPEATED = "=repeated"  # a header dict's list of (keyword, later value); '=' is in no FITS keyword


def has_value(value: Any) -> bool:
    """Whether a keyword holds a value: not None, not blank text, not FITS' undefined value."""
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, (bool, int, float, complex, np.number, np.bool_))


def header_number(value: Any) -> float | None:
    """A keyword's value as a finite float (a number, or text holding one), else None; booleans are not numbers."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
