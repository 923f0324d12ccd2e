"""Which magnitudes a galaxy gets when its file and ``--catalog`` both give some.

Precedence: the ``--catalog`` the user names wins over magnitudes inside the data file (FITS
header keys ``MAG_U … MAG_Z``, or a table HDU beside an N-galaxy cube). A galaxy the catalog does
not list keeps the file's own magnitudes, and its row says so; with none in the file either it is
``missing_magnitudes``. When both give five finite magnitudes and they differ by more than
:data:`CONFLICT_MAG` in a band, the row is flagged ``magnitude_conflict``: one of them is for
another object, epoch or photometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cai_edge.errors import InputError
from cai_edge.flags import MAGNITUDE_CONFLICT
from cai_edge.io.catalog import Catalog
from cai_edge.photometry import BANDS
from cai_edge.preprocessing import prepare_magnitudes

CONFLICT_MAG = 0.5


@dataclass(frozen=True)
class ChosenMagnitudes:
    magnitudes: np.ndarray
    z_spec: float
    system: str
    flags: tuple[str, ...] = ()
    note: str = ""


def conflict_note(file_mags: Sequence[float] | None, chosen: np.ndarray, where: str) -> str:
    """A note when ``file_mags`` (all finite) differ from ``chosen`` by more than :data:`CONFLICT_MAG`, else ``""``."""
    if file_mags is None:
        return ""
    try:
        values = np.asarray(file_mags, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return ""
    if values.size != len(BANDS) or not np.isfinite(values).all():
        return ""
    diff = np.abs(values - chosen)
    worst = int(np.argmax(diff))
    if diff[worst] <= CONFLICT_MAG:
        return ""
    return (f"the magnitudes in {where} differ from --catalog's by up to {diff[worst]:.2f} mag ({BANDS[worst]} band); "
            f"--catalog's were used")


def choose_magnitudes(gid: str, file_mags: Sequence[float] | None, file_z: float, file_system: str,
                      catalog: Catalog | None, where: str = "the file") -> ChosenMagnitudes:
    """The magnitudes, z_spec and declared system to use for galaxy ``gid``, or :class:`InputError` saying why none."""
    if catalog is None:
        return ChosenMagnitudes(prepare_magnitudes(file_mags), file_z, file_system)
    if gid not in catalog.entries and file_mags is not None:
        return ChosenMagnitudes(prepare_magnitudes(file_mags), file_z, file_system,
                                note=f"not in --catalog {catalog.path}: the magnitudes in {where} were used")
    entry = catalog.lookup(gid)
    z = file_z if math.isnan(entry.z_spec) else entry.z_spec
    if entry.magnitudes is None:
        raise InputError(entry.status, entry.message)
    note = conflict_note(file_mags, entry.magnitudes, where)
    return ChosenMagnitudes(entry.magnitudes, z, entry.magnitude_system, (MAGNITUDE_CONFLICT,) if note else (), note)
