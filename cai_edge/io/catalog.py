"""User catalogs (CSV, ECSV, FITS or VOTable tables) that give magnitudes and redshifts by galaxy ``id``.

Catalogs as archives hand them out are read as they come: a VOTable (``.xml``, ``.vot``: what
astroquery and TAP services return) and a SkyServer CSV, whose header line follows ``#`` lines
(``#Table1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cai_edge.errors import CaiEdgeError, InputError
from cai_edge.io.safe_files import check_regular
from cai_edge.io.status import BAD_MAGNITUDES, DUPLICATE_ID, MISSING_MAGNITUDES, OK
from cai_edge.photometry import BANDS, MAG_COLUMNS
from cai_edge.preprocessing import prepare_magnitudes

if TYPE_CHECKING:  # astropy.table takes ~0.2 s to import: only the commands that read tables pay it
    from astropy.table import Table


class CatalogError(CaiEdgeError):
    """The catalog as a whole cannot be used (unreadable file, no id column, no magnitude columns)."""


_FORMATS = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits", ".fits.gz": "fits", ".xml": "votable",
            ".vot": "votable", ".votable": "votable"}


def table_format(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in _FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise CatalogError(f"{path}: unknown catalog format (use .csv, .ecsv, .fits, or a VOTable .xml / .vot)")


ID_COLUMN = "id"
MAX_CATALOG_BYTES = 4 << 30  # a catalog larger than this is refused unread


def read_table(path: str | Path, text_columns: tuple[str, ...] = (ID_COLUMN,)) -> Table:
    """Read a catalog table; every failure is a :class:`CatalogError` naming the file.

    ``text_columns`` of a CSV are read as text, never guessed as numbers: ids such as ``001``,
    ``1e3`` or 19-digit SDSS objIDs must come back exactly as written.
    """
    from astropy.table import Table

    path = Path(path)
    fmt = table_format(path)
    try:
        check_regular(path, MAX_CATALOG_BYTES)  # a FIFO or a device is refused at once, never waited on
        if fmt == "ascii.csv":
            above = _check_csv_header(path)  # SkyServer's CSV opens with "#Table1": the header follows such lines
            return Table.read(path, format=fmt, converters={c: str for c in text_columns}, header_start=above, data_start=above + 1)
        if fmt == "votable":
            return _read_votable(path)
        return Table.read(path, format=fmt)
    except CatalogError:
        raise
    except Exception as exc:  # astropy raises many types for malformed files
        raise CatalogError(f"{path}: cannot read catalog ({type(exc).__name__}: {exc})") from exc


def _read_votable(path: Path) -> Table:
    """The first table of a VOTable; its warnings (astropy's about loose VOTable dialects) are not the user's problem."""
    import warnings

    from astropy.io.votable import parse_single_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        votable = parse_single_table(path)
    _refuse_doubled([field.name for field in votable.fields], path)  # astropy would rename the second u to u2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return votable.to_table(use_names_over_ids=True)


def _refuse_doubled(names: list[str], path: Path) -> None:
    """A header naming one column twice is ambiguous: refused, whatever the format."""
    doubled = sorted({h.strip() for h in names if [x.strip() for x in names].count(h.strip()) > 1})
    if doubled:
        raise CatalogError(f"{path}: the header names column(s) {', '.join(doubled)} more than once; give each column one name")


def _check_csv_header(path: Path) -> int:
    """How many ``#`` lines come before the header; a header naming one column twice is refused (astropy
    would rename the second ``u_1`` and read on)."""
    import csv
    import io

    from cai_edge.io.safe_files import open_regular_file

    with open_regular_file(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as fh:
        line, above = fh.readline(1 << 20), 0
        while line.startswith("#") or (line and not line.strip()):
            above += line.startswith("#")  # astropy counts the header line past non-blank lines only
            line = fh.readline(1 << 20)
    _refuse_doubled(next(csv.reader([line]), []), path)
    return above


def magnitude_columns(table: Table, where: str | Path = "catalog") -> tuple[str, ...]:
    """The five magnitude columns: ``mag_u … mag_z``, or plain ``u … z``."""
    for names in (MAG_COLUMNS, BANDS):
        if all(n in table.colnames for n in names):
            return names
    raise CatalogError(f"{where}: no magnitude columns ({', '.join(MAG_COLUMNS)}, or {', '.join(BANDS)}); columns found: {table.colnames}")


def cell_text(value: Any) -> str:
    """A table cell (an id, a declared system) as text: bytes decoded, surrounding blanks (FITS padding) removed."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).strip()


def _cell_float(value: Any) -> float:
    """A table cell as float; masked or non-numeric cells become NaN or raise ValueError."""
    if np.ma.is_masked(value):
        return math.nan
    return float(value)


def column_texts(table: Table, column: str) -> list[str]:
    """A column's cells as text for ``--keep-columns``: masked cells empty, bytes decoded, numbers as Python prints them."""
    texts = []
    for cell in table[column]:
        if np.ma.is_masked(cell):
            texts.append("")
        elif isinstance(cell, np.ndarray):
            texts.append(" ".join(str(v) for v in cell.ravel()))
        else:
            texts.append(cell_text(cell.item() if isinstance(cell, np.generic) else cell))
    return texts


def table_column_floats(table: Table, column: str) -> np.ndarray:
    """A table column as float64: masked, empty or non-numeric cells become NaN (then missing, per row).

    A Quantity column (a QTable's) gives its values in its own unit; an astropy ``Masked`` one its mask.
    """
    data = table[column]
    mask = np.broadcast_to(np.asarray(getattr(data, "mask", False), dtype=bool), (len(table),))
    values = np.full(len(table), math.nan)
    for i, cell in enumerate(getattr(data, "unmasked", None) if hasattr(data, "unmasked") else getattr(data, "value", data)):
        if mask[i]:
            continue
        try:
            values[i] = _cell_float(cell)
        except (TypeError, ValueError):
            pass
    return values


@dataclass(frozen=True)
class CatalogEntry:
    magnitudes: np.ndarray | None
    z_spec: float
    status: str
    message: str
    magnitude_system: str = ""


SYSTEM_COLUMN = "mag_system"
SYSTEM_META_KEYS = ("MAGSYS", "mag_system", "magnitude_system")


def declared_system(table: Table) -> str:
    """The magnitude system a table's metadata declares (``MAGSYS`` …), or ``""``."""
    for key in SYSTEM_META_KEYS:
        for k, v in table.meta.items():
            if str(k).lower() == key.lower() and isinstance(v, str):
                return v.strip()
    return ""


class Catalog:
    """Magnitudes (validated per row) and ``z_spec`` by id; every bad row keeps a status and message."""

    def __init__(self, entries: dict[str, CatalogEntry], path: str = "", kept: dict[str, dict[str, str]] | None = None,
                 kept_units: dict[str, str] | None = None):
        self.entries = entries
        self.path = path
        self.kept = kept or {}  # id → {column: text} for the columns asked for with ``keep``
        self.kept_units = kept_units or {}  # column → its unit, where the catalog declares one

    @classmethod
    def read(cls, path: str | Path, columns: str | dict | None = None, keep: tuple[str, ...] = ()) -> "Catalog":
        """Read a catalog; ``columns`` maps id/mag_u…mag_z/z_spec to other column names (``--columns``);
        ``keep`` names columns to carry into the output (``--keep-columns``; those it lacks are left to the data files)."""
        from cai_edge.io.catalog_columns import (CatalogColumnsError, check_magnitude_units, id_candidates, parse_column_map,
                                                 resolve_columns)

        try:
            overrides = parse_column_map(columns) if isinstance(columns, str) or columns is None else dict(columns)
            table = read_table(path, text_columns=id_candidates(overrides))
            mapped = resolve_columns(table.colnames, path, overrides)
            check_magnitude_units(table, mapped.magnitudes, path)
        except CatalogColumnsError as exc:
            raise CatalogError(str(exc)) from None
        mag_cols = mapped.magnitudes
        table_system = declared_system(table) or mapped.implied_system
        row_systems = [cell_text(v) for v in table[SYSTEM_COLUMN]] if SYSTEM_COLUMN in table.colnames else None
        has_z = mapped.z_spec is not None
        z_col = mapped.z_spec
        ids = [cell_text(v) for v in table[mapped.id]]
        counts: dict[str, int] = {}
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
        entries: dict[str, CatalogEntry] = {}
        for row, gid in enumerate(ids):
            z = math.nan
            if has_z:
                try:
                    z = _cell_float(table[z_col][row])
                except (TypeError, ValueError):
                    z = math.nan
            if counts[gid] > 1:
                entries[gid] = CatalogEntry(None, z, DUPLICATE_ID, f"id {gid!r} appears {counts[gid]} times in the catalog")
                continue
            try:
                raw = [_cell_float(table[c][row]) for c in mag_cols]
            except (TypeError, ValueError):
                cells = [str(table[c][row]) for c in mag_cols]
                entries[gid] = CatalogEntry(None, z, BAD_MAGNITUDES, f"non-numeric magnitude in catalog row: {cells}")
                continue
            system = (row_systems[row] if row_systems else "") or table_system
            try:
                entries[gid] = CatalogEntry(prepare_magnitudes(raw), z, OK, "", system)
            except InputError as exc:
                entries[gid] = CatalogEntry(None, z, exc.status, f"catalog: {exc}")
        texts = {c: column_texts(table, c) for c in keep if c in table.colnames}
        kept = {gid: {c: values[row] for c, values in texts.items()} for row, gid in enumerate(ids)} if texts else {}
        units = {c: table[c].unit.to_string() for c in texts if getattr(table[c], "unit", None) is not None}
        return cls(entries, str(path), kept, units)

    def lookup(self, galaxy_id: str) -> CatalogEntry:
        entry = self.entries.get(galaxy_id)
        if entry is None:
            return CatalogEntry(None, math.nan, MISSING_MAGNITUDES, f"id {galaxy_id!r} is not in catalog {self.path}")
        return entry

    def __len__(self) -> int:
        return len(self.entries)
