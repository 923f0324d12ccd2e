"""Row flags: what we know about a prediction that was made but should not be taken at face value.

``status`` says whether a galaxy was predicted at all; ``flags`` (comma-separated, empty when
none) say why a prediction may not be trusted. A row is fit for science when its status is
``ok`` and its flags are empty.
"""

from __future__ import annotations

from typing import Iterable

FLUX_MISMATCH = "flux_mismatch"  # the cutout's band fluxes disagree with the magnitudes (units, scaling, band order)
UNCALIBRATED = "uncalibrated"  # the bundle has no uncertainty calibration: intervals are empty
OUT_OF_DOMAIN = "out_of_domain"  # the galaxy is unlike the training data
Z_OUT_OF_RANGE = "z_out_of_range"  # z_pred outside the redshifts the model was trained on

ALL = (FLUX_MISMATCH, UNCALIBRATED, OUT_OF_DOMAIN, Z_OUT_OF_RANGE)


def join_flags(*groups: Iterable[str]) -> str:
    """Flags as the ``flags`` column writes them: unique, in a fixed order, comma-separated."""
    present = {f for group in groups for f in group if f}
    known = [f for f in ALL if f in present]
    return ",".join(known + sorted(present - set(known)))
