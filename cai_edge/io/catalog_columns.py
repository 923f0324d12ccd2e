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


def _matches(names: Sequence[str], candidates: Sequence[str]) -> list[str]:
    """Every column that one of ``candidates`` names: exactly, or else ignoring case (in catalog order)."""
    exact = [n for n in names if n in candidates]
    if exact:
        return exact
    lower = {c.lower() for c in candidates}
    return [n for n in names if n.lower() in lower]


def say_columns(mapping: Mapping[str, str], api: bool = False) -> str:
    """How to map columns, as the caller writes it: ``--columns id=NAME`` on the command line, ``columns={'id': 'NAME'}`` in Python."""
    if api:
        return "columns={" + ", ".join(f"'{k}': '{v}'" if v != "…" else "…" for k, v in mapping.items()) + "}"
    return "--columns " + ",".join(f"{k}={v}" if v != "…" else "…" for k, v in mapping.items())


def _one(names: Sequence[str], candidates: Sequence[str], role: str, key: str, where: str | Path, api: bool) -> str | None:
    """The single column for ``role``; several → :class:`CatalogColumnsError` naming them and the mapping that settles it."""
    found = list(dict.fromkeys(_matches(names, candidates)))
    if len(found) > 1:
        raise CatalogColumnsError(f"{where}: {len(found)} columns could be the {role}: {', '.join(found)}. Say which with "
                                  f"{say_columns({key: 'NAME'}, api)} (e.g. {say_columns({key: found[0]}, api)})")
    return found[0] if found else None


def _magnitudes(names: Sequence[str], where: str | Path, api: bool) -> tuple[tuple[str, ...], str] | None:
    """The five magnitude columns and the system their names imply; several complete sets → ambiguous."""
    sets: dict[tuple[str, ...], str] = {}
    for pattern, system in MAGNITUDE_NAMES:
        found = [_matches(names, [pattern.format(b=b, B=b.upper())]) for b in BANDS]
        if all(len(f) == 1 for f in found):
            sets.setdefault(tuple(f[0] for f in found), system)
        elif all(found):  # Mag_U beside MAG_U: two columns for one band
            doubled = next(f for f in found if len(f) > 1)
            raise CatalogColumnsError(f"{where}: {len(doubled)} columns could be one band's magnitude: {', '.join(doubled)}. "
                                      f"Say which with {say_columns({'mag_u': 'NAME', '…': '…', 'mag_z': 'NAME'}, api)}")
    if len(sets) > 1:
        listed = "; ".join(", ".join(cols) for cols in sets)
        first = next(iter(sets))
        raise CatalogColumnsError(f"{where}: {len(sets)} sets of columns could be the magnitudes ({listed}). Say which with "
                                  f"{say_columns(dict(zip(MAG_COLUMNS, first)), api)}")
    return next(iter(sets.items()), None)


def id_candidates(overrides: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Column names that may hold ids (so a CSV reader can keep them as text)."""
    extra = (overrides or {}).get("id")
    names = {*ID_NAMES, *(n.lower() for n in ID_NAMES), *(n.upper() for n in ID_NAMES)}
    return tuple(sorted(names | ({extra} if extra else set())))


def resolve_columns(colnames: Sequence[str], where: str | Path, overrides: Mapping[str, str] | None = None,
                    need_id: bool = True, need_magnitudes: bool = True, api: bool = False) -> CatalogColumns:
    """Map the catalog's columns onto id, the five magnitudes and z_spec; ambiguity is an error, never a guess.

    With ``need_magnitudes=False`` (a table inside a data file, whose magnitudes may come from
    ``--catalog``) a table without magnitude columns gives ``magnitudes == ()``. ``api``: errors say
    how to map columns in Python (``columns={...}``), not on the command line.
    """
    overrides = dict(overrides or {})
    option = "columns=" if api else "--columns"
    missing = [v for v in overrides.values() if v not in colnames]
    if missing:
        raise CatalogColumnsError(f"{where}: {option} names {missing}, which the catalog does not have; columns found: {list(colnames)}")
    doubled = sorted({v for v in overrides.values() if list(overrides.values()).count(v) > 1})
    if doubled:
        roles = "; ".join(v + ": " + ", ".join(k for k, c in overrides.items() if c == v) for v in doubled)
        raise CatalogColumnsError(f"{where}: {option} gives one column more than one role ({roles})")
    given = [c for c in MAG_COLUMNS if c in overrides]
    if given and len(given) != len(MAG_COLUMNS):
        raise CatalogColumnsError(f"{where}: {option} maps {', '.join(given)} but not {', '.join(c for c in MAG_COLUMNS if c not in given)}: "
                                  "map all five magnitudes or none")
    id_col = overrides.get("id") or _one(colnames, ID_NAMES, "galaxy id", "id", where, api)
    if need_id and id_col is None:
        raise CatalogColumnsError(f"{where}: no id column ({', '.join(ID_NAMES)}; or {say_columns({'id': 'NAME'}, api)}); columns found: {list(colnames)}")
    if given:
        mags, implied = tuple(overrides[c] for c in MAG_COLUMNS), ""
    else:
        found = _magnitudes(colnames, where, api)
        if found is None and not need_magnitudes:
            found = ((), "")
        elif found is None:
            raise CatalogColumnsError(
                f"{where}: no magnitude columns (mag_u … mag_z, u … z, MAG_U …, modelMag_u …, dered_u …; "
                f"or {say_columns({'mag_u': 'NAME', '…': '…'}, api)}); columns found: {list(colnames)}"
            )
        mags, implied = found
    rest = [c for c in colnames if c not in mags and c != id_col]  # a catalog with u … z columns: "z" is a band there
    z_col = overrides.get("z_spec") or _one(rest, Z_NAMES, "spectroscopic redshift", "z_spec", where, api)
    return CatalogColumns(id_col, mags, z_col, implied)


def magnitude_unit_problem(unit, column: str) -> str | None:
    """Why a magnitude column with astropy ``unit`` cannot be read as magnitudes, or None.

    No unit, ``mag`` and AB magnitudes (``ABmag``, ``mag(AB)``) are magnitudes; a flux density
    (``uJy``, ``nanomaggy`` …), another magnitude system (``STmag``, ``mag(ct)``) or any other unit
    is refused, never read as an AB magnitude.
    """
    if unit is None:
        return None
    import astropy.units as u

    if unit == u.mag or unit == u.dimensionless_unscaled or unit == u.ABmag:
        return None
    text = unit.to_string()
    if isinstance(unit, u.MagUnit):
        return (f"column {column} has unit {text}, magnitudes of another system than AB; give AB magnitudes "
                "(mag, ABmag): cai-edge does not convert between magnitude systems")
    if unit.is_equivalent(u.Jy) or unit.is_equivalent(u.nanomaggy):
        return (f"column {column} has unit {text}, a flux, not a magnitude: give AB magnitudes "
                f"(m = 23.9 - 2.5 log10(f / uJy) = 22.5 - 2.5 log10(f / nanomaggy)) or point --columns at magnitude columns")
    return f"column {column} has unit {text}, which is not a magnitude (mag, ABmag)"


def check_magnitude_units(table, columns: Sequence[str], where: str | Path) -> None:
    """Refuse magnitude columns whose declared unit is not a magnitude (:class:`CatalogColumnsError`)."""
    for column in columns:
        problem = magnitude_unit_problem(getattr(table[column], "unit", None), column)
        if problem:
            raise CatalogColumnsError(f"{where}: {problem}")
