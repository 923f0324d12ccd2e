"""Which catalog columns hold the id, the five magnitudes and the redshift, under the names people use.

Recognised (exact name first, then ignoring case):

* id: ``id``, ``objID``/``objid``, ``obj_id``, ``galaxy_id``;
* magnitudes, with the system each name implies when the catalog declares none:
  ``mag_u … mag_z``, ``u … z``, ``MAG_U … MAG_Z`` (undeclared), ``modelMag_u …`` (``sdss_model``),
  ``dered_u …`` (``dereddened``), ``cModelMag_u …`` (``cmodel``), ``petroMag_u …`` (``petrosian``);
* redshift: ``z_spec``, ``zspec``, ``specz``, ``z``, ``redshift``.

Anything else is mapped with ``--columns id=OBJ,mag_u=MU,…,z_spec=ZS``; a name given there must exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from cai_edge.errors import CaiEdgeError
from cai_edge.photometry import BANDS, MAG_COLUMNS

ID_NAMES = ("id", "objID", "obj_id", "galaxy_id")
Z_NAMES = ("z_spec", "zspec", "specz", "z", "redshift")
MAGNITUDE_NAMES: tuple[tuple[str, str], ...] = (
    ("mag_{b}", ""),
    ("{b}", ""),
    ("MAG_{B}", ""),
    ("modelMag_{b}", "sdss_model"),
    ("dered_{b}", "dereddened"),
    ("cModelMag_{b}", "cmodel"),
    ("petroMag_{b}", "petrosian"),
)


class CatalogColumnsError(CaiEdgeError):
    """The catalog's columns cannot be mapped onto id, magnitudes and z_spec."""


@dataclass(frozen=True)
class CatalogColumns:
    id: str | None
    magnitudes: tuple[str, ...]
    z_spec: str | None
    implied_system: str  # what the magnitude column names say about the system ("" when nothing)


def parse_column_map(text: str | None) -> dict[str, str]:
    """``"id=objid,mag_u=MU"`` → ``{"id": "objid", "mag_u": "MU"}`` (keys: id, z_spec, mag_u … mag_z)."""
    if not text:
        return {}
    allowed = {"id", "z_spec", *MAG_COLUMNS}
    mapping = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in allowed or not value:
            raise CatalogColumnsError(f"--columns takes NAME=COLUMN pairs with NAME in {', '.join(sorted(allowed))}; got {part!r}")
        mapping[key] = value
    return mapping


def _find(names: Sequence[str], candidates: Sequence[str]) -> str | None:
    for candidate in candidates:
        if candidate in names:
            return candidate
    lower = {n.lower(): n for n in names}
    for candidate in candidates:
        if candidate.lower() in lower:
            return lower[candidate.lower()]
    return None


def id_candidates(overrides: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Column names that may hold ids (so a CSV reader can keep them as text)."""
    extra = (overrides or {}).get("id")
    names = {*ID_NAMES, *(n.lower() for n in ID_NAMES), *(n.upper() for n in ID_NAMES)}
    return tuple(sorted(names | ({extra} if extra else set())))


def resolve_columns(colnames: Sequence[str], where: str | Path, overrides: Mapping[str, str] | None = None,
                    need_id: bool = True) -> CatalogColumns:
    overrides = dict(overrides or {})
    missing = [v for v in overrides.values() if v not in colnames]
    if missing:
        raise CatalogColumnsError(f"{where}: --columns names {missing}, which the catalog does not have; columns found: {list(colnames)}")
    id_col = overrides.get("id") or _find(colnames, ID_NAMES)
    if need_id and id_col is None:
        raise CatalogColumnsError(f"{where}: no id column ({', '.join(ID_NAMES)}; or --columns id=NAME); columns found: {list(colnames)}")
    mags, implied = None, ""
    if all(c in overrides for c in MAG_COLUMNS):
        mags = tuple(overrides[c] for c in MAG_COLUMNS)
    else:
        for pattern, system in MAGNITUDE_NAMES:
            found = [_find(colnames, [pattern.format(b=b, B=b.upper())]) for b in BANDS]
            if all(found):
                mags, implied = tuple(found), system
                break
    if mags is None:
        raise CatalogColumnsError(
            f"{where}: no magnitude columns (mag_u … mag_z, u … z, MAG_U …, modelMag_u …, dered_u …; "
            f"or --columns mag_u=NAME,…); columns found: {list(colnames)}"
        )
    rest = [c for c in colnames if c not in mags]  # a catalog with u … z columns: "z" is a band there
    z_col = overrides.get("z_spec") or _find(rest, Z_NAMES)
    return CatalogColumns(id_col, mags, z_col, implied)
