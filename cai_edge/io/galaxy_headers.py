"""One galaxy's five planes and every header that speaks for them, checked once, whatever the layout.

Every FITS layout of one galaxy ends here: a single cube (its primary header and its image HDU's),
band extensions (the primary header and each band's), band files or band folders (each file's
headers). The readers convert each plane's units with that plane's own header over its file's
primary header (:func:`cai_edge.io.fits_conventions.to_nanomaggies`) and hand over the u,g,r,i,z
nanomaggy cube with the list of headers; :func:`galaxy_record` then runs the header checks:

* magnitudes (``MAG_U … MAG_Z``), ``Z_SPEC`` and ``MAGSYS`` are read from every header. Headers
  that give different values — magnitudes more than :data:`HEADER_MAG_TOLERANCE` mag apart,
  redshifts more than :data:`HEADER_Z_TOLERANCE`, two magnitude systems — flag the row
  ``magnitude_conflict`` with a note naming both values and where they sat; the first header's
  value (primary header first, then u … z) is the one used, and a conflicting ``Z_SPEC`` is left
  empty — unless ``--catalog`` lists the galaxy: its values are used, and the note says so (the flag
  stays: headers of one galaxy that disagree may be planes of two). Nothing is decided by which
  header came last. Numbers written as text are numbers; a keyword with no value says nothing
  (:mod:`cai_edge.io.header_values`);
* the pixel size from every header (:func:`cai_edge.io.pixel_scales.pixel_scale_check`);
* ``--catalog``'s magnitudes win over the headers' (:mod:`cai_edge.io.magnitude_sources`).

An N-galaxy cube (:mod:`cai_edge.io.partitions`) takes its pixel-size check from the same
function, over its primary header and its own, and its ``MAGSYS`` from its table and those headers
(:func:`header_system`, with the same conflict rule); its magnitudes and redshifts are its table's.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from cai_edge.flags import MAGNITUDE_CONFLICT
from cai_edge.io.catalog import Catalog
from cai_edge.io.header_values import REPEATED, has_value, header_number
from cai_edge.io.magnitude_sources import choose_magnitudes
from cai_edge.io.pixel_scales import pixel_scale_check
from cai_edge.io.records import GalaxyRecord
from cai_edge.magnitude_systems import canonical
from cai_edge.photometry import HEADER_MAG_KEYS
from cai_edge.preprocessing import crop_note, prepare_image

Headers = Sequence[tuple[str, Mapping[str, Any]]]  # (where, header), primary first
HEADER_MAG_TOLERANCE = 0.01  # mag: two headers' MAG_x of one galaxy agree within it (float32 rounding is ~1e-6)
HEADER_Z_TOLERANCE = 1e-4
_HEADER_MAGS = "the FITS header (MAG_U … MAG_Z)"
CATALOG_USED = "--catalog's values were used"  # how a conflict note ends when --catalog lists the galaxy (its values win)


def _differ(key: str, a: Any, b: Any) -> bool:
    if key == "MAGSYS":
        return canonical(str(a)) != canonical(str(b))
    x, y = header_number(a), header_number(b)
    if x is None or y is None:
        return x is not None or y is not None or str(a).strip() != str(b).strip()
    return not abs(x - y) <= (HEADER_Z_TOLERANCE if key == "Z_SPEC" else HEADER_MAG_TOLERANCE)


def _agreed(headers: Headers, key: str, notes: list[str], outcome: str = "the first was used") -> Any:
    """The first header's value of ``key`` (None when none has it); a note for each header that differs from it."""
    found = [(where, header[key]) for where, header in headers if has_value(header.get(key))]
    if not found:
        return None
    first_where, first = found[0]
    for where, value in found[1:]:
        if _differ(key, first, value):
            tolerance = {"MAGSYS": "", "Z_SPEC": f", more than {HEADER_Z_TOLERANCE:g} apart"}.get(
                key, f", more than {HEADER_MAG_TOLERANCE:g} mag apart")
            notes.append(f"the headers disagree on {key}: {first!r} ({first_where}) and {value!r} ({where}){tolerance}; "
                         f"{outcome}")
            break
    return first


def header_system(headers: Headers, notes: list[str], outcome: str = "the first was used") -> str:
    """The magnitude system the headers declare (``MAGSYS``; ``""`` when none), a note ending in ``outcome``
    added to ``notes`` when they disagree."""
    return str(_agreed(headers, "MAGSYS", notes, outcome) or "").strip()


def header_values(headers: Headers, catalog_z: float | None = None) -> tuple[list | None, float, str, list[str]]:
    """``(magnitudes, z_spec, magnitude system, conflict notes)`` read from every header of one galaxy.

    ``catalog_z``: when ``--catalog`` lists the galaxy, its ``z_spec`` (NaN if none); the notes then
    say that the catalog's values were used.
    """
    notes: list[str] = []
    listed = catalog_z is not None
    mags = [_agreed(headers, key, notes, CATALOG_USED if listed else "the first was used") for key in HEADER_MAG_KEYS]
    mags = [m if header_number(m) is None else header_number(m) for m in mags]  # text that is not a number: refused later, shown as written
    system = header_system(headers, notes, CATALOG_USED if listed else "the first was used")
    before = len(notes)
    z_outcome = CATALOG_USED if listed and not math.isnan(catalog_z) else "z_spec is left empty"
    z = header_number(_agreed(headers, "Z_SPEC", notes, z_outcome))
    z_spec = math.nan if len(notes) > before or z is None else z
    if all(m is None for m in mags):
        return None, z_spec, system, notes
    return [math.nan if m is None else m for m in mags], z_spec, system, notes  # a band without: "missing magnitude in band g"


def with_repeats(headers: Headers) -> list:
    """``headers`` and, after each header that gives a keyword twice with two values, that header with the later
    value (``where`` then says ``PIXSCALE written again``): the checks then see the disagreement."""
    out = []
    for where, header in headers:
        out.append((where, header))
        out.extend((f"{where}, {key} written again", {**header, key: value}) for key, value in header.get(REPEATED, ()))
    return out


def unit_header(headers: Headers) -> dict:
    """The keys a plane's units, band order and size are read from: its own header's over its file's primary's."""
    return {k: v for _, header in headers for k, v in header.items()}


def galaxy_record(gid: str, source: str, cube: np.ndarray, headers: Headers, catalog: Catalog | None,
                  shape: tuple[int, ...] | None = None) -> GalaxyRecord:
    """A record from a u,g,r,i,z nanomaggy cube (or its central crop, of a cutout of ``shape``) and every
    header that speaks for it, primary first (raises :class:`~cai_edge.errors.InputError`)."""
    image = prepare_image(cube)
    headers = with_repeats(headers)
    entry = catalog.entries.get(gid) if catalog is not None else None
    mags, z_spec, system, conflicts = header_values(headers, None if entry is None else entry.z_spec)
    chosen = choose_magnitudes(gid, mags, z_spec, system, catalog, _HEADER_MAGS)
    scale_flags, scale_note = pixel_scale_check(headers)
    conflict_flags = (MAGNITUDE_CONFLICT,) if conflicts else ()
    message = "; ".join(m for m in (chosen.note, *conflicts, crop_note(shape or np.shape(cube)), scale_note) if m)
    return GalaxyRecord(gid, source, image, chosen.magnitudes, chosen.z_spec, magnitude_system=chosen.system,
                        flags=tuple(dict.fromkeys(chosen.flags + conflict_flags + scale_flags)), message=message)
