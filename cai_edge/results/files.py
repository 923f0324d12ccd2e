"""Prediction output files: read them back (ids always as text), merge rows by object, write atomically.

An output holds one row per input object. When several rows exist for one object (an earlier
output and the spool of a resumed run; or a spool segment still on disk after the output that
holds its rows was renamed into place) they are merged by :func:`merge_key` with one rule:
**the latest ``ok`` row wins; if none is ``ok``, the latest row wins**. Merging is therefore
idempotent: merging the same rows again changes nothing.
"""

from __future__ import annotations

import csv
import gc
import io
import itertools
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from cai_edge.io.atomic import atomic_path
from cai_edge.io.crashpoints import crash_point
from cai_edge.results.formats import OutputError, OutputFormat, ecsv_keeps_lines, output_format
from cai_edge.results.rows import (COLUMN_INFO, COLUMNS, DIMENSIONLESS, FLOAT_COLUMNS, INT_COLUMNS, PDF_COLUMN, complete_row,
                                   format_quantiles, kept_columns, output_columns, write_csv_rows)
from cai_edge.results.csv_sidecar import csv_metadata, write_sidecar
from cai_edge.io.safe_files import open_regular_file
from cai_edge.flags import describe_bits
from cai_edge.io.status import DUPLICATE_ID, OK

if TYPE_CHECKING:  # astropy.table takes ~0.2 s to import: only the commands that read tables pay it
    from astropy.table import Table

    from cai_edge.results.chunked_tables import TableShape

__all__ = ["OutputError", "read_results", "read_identity", "merge_key", "RowMerger", "write_results"]

# FITS keywords are 8 characters: the identity keys get names of their own.
FITS_META_KEYS = {"bundle": "BUNDLE", "variant": "VARIANT", "bundle_sha256": "BUNDLSHA", "calibration_sha256": "CALIBSHA",
                  "cai_edge_version": "CAIEDGEV", "created": "CREATED", "engine": "ENGINE"}
_FITS_LEGACY_KEYS = {"BUNDLE_S": "bundle_sha256", "CAI_EDGE": "cai_edge_version"}

Row = dict  # {column: text}, as in a spool segment


def merge_key(row: Row) -> tuple[str, str]:
    """One object per id; a ``duplicate_id`` row is an object of its own, told apart by its source."""
    return (row["id"], row["source"] if row["status"] == DUPLICATE_ID else "")


def _text(value) -> str:
    if np.ma.is_masked(value):
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _number_text(value) -> str:
    if np.ma.is_masked(value):
        return ""
    number = float(value)
    return "" if math.isnan(number) else f"{number:.6f}"


# The largest field the writer may write (an id, a source, a message, a p(z) of MAX_LEVELS quantiles)
# is far below this; the csv module's default (131,072) is not, for p(z) rows of many levels.
_CSV_FIELD_LIMIT = 1 << 24


def _after_comments(fh) -> Iterator[str]:
    """The lines of ``fh`` after the ``#`` provenance lines at its top (a quoted id may start with # further down)."""
    for line in fh:
        if not line.startswith("#"):
            yield line
            break
    yield from fh


def _csv_rows(path: Path) -> Iterator[Row]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    with open_regular_file(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as fh:
        reader = csv.reader(_after_comments(fh))
        header = next(reader, None)
        if header is None:
            return
        missing = [c for c in ("id", "status") if c not in header]
        if missing:
            raise OutputError(f"{path}: not a cai-edge result table (no {', '.join(missing)} column)")
        for fields in reader:
            if len(fields) == len(header) and fields != header:  # the header again: outputs joined with cat
                yield complete_row(dict(zip(header, fields)))


def _table_rows(path: Path, fmt: OutputFormat) -> Iterator[Row]:
    """The rows of a FITS, ECSV or Parquet output, read a chunk at a time (:mod:`cai_edge.results.table_chunks`)."""
    from cai_edge.results.table_chunks import iter_tables

    tables = iter_tables(path, fmt.name, fmt.astropy_format)
    first = True
    while True:
        try:
            table = next(tables, None)
        except Exception as exc:  # astropy, fitsio and pyarrow raise many types on foreign files
            raise OutputError(f"{path}: cannot read earlier results ({type(exc).__name__}: {exc})") from exc
        if table is None:
            return
        if first:
            missing = [c for c in ("id", "status") if c not in table.colnames]
            if missing:
                raise OutputError(f"{path}: not a cai-edge result table (no {', '.join(missing)} column)")
            first = False
        has_pdf = PDF_COLUMN in table.colnames
        names = [c for c in table.colnames if c != PDF_COLUMN]
        for r in table:
            values = {c: _number_text(r[c]) if c in FLOAT_COLUMNS else _text(r[c]) for c in names}
            if has_pdf:
                quantiles = np.asarray(r[PDF_COLUMN], dtype=np.float64).ravel()
                values[PDF_COLUMN] = "" if np.all(np.isnan(quantiles)) else format_quantiles(quantiles)
            yield complete_row(values)
        table = r = None  # let go of this chunk before the next is read: astropy tables hold reference cycles,
        gc.collect()  # so chunks would pile up until the cycle collector's next full pass (~5 of them, measured)


def iter_result_rows(path: str | os.PathLike, fmt: OutputFormat | str | None = None) -> Iterator[Row]:
    """Rows of a result file as text, ids exactly as written (``001`` stays ``001``)."""
    path = Path(path)
    fmt = fmt if isinstance(fmt, OutputFormat) else output_format(path, fmt)
    if fmt.name == "csv":
        try:
            yield from _csv_rows(path)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise OutputError(f"{path}: cannot read earlier results ({type(exc).__name__}: {exc})") from exc
    else:
        yield from _table_rows(path, fmt)


def _kept_column(values: list[str], kind: str | None = None, width: int | None = None) -> np.ndarray:
    """A kept input column: booleans when every cell is ``True`` or ``False`` (as a boolean column is
    kept), numbers when every non-empty cell is one (empty → NaN), else text. A boolean column with
    an empty cell stays text: FITS has no missing boolean (astropy writes a masked one as True).
    ``kind`` (``bool``, ``float``, ``str``) and ``width`` impose what all rows of a chunked output have."""
    if kind in (None, "bool") and values and all(v in ("True", "False") for v in values):
        return np.asarray([v == "True" for v in values], dtype=bool)
    if kind in (None, "float"):
        try:
            return np.asarray([float(v) if v.strip() else math.nan for v in values], dtype=np.float64)
        except ValueError:
            pass
    return np.asarray(values, dtype=f"U{width}" if width else str)


def _float_cell(value: str, column: str, row: Row) -> float:
    """A redshift cell as a number (empty → NaN); text that is none is an :class:`OutputError` naming the row."""
    try:
        return float(value) if value not in ("", "nan") else math.nan
    except ValueError:
        raise OutputError(f"id {row.get('id', '')!r:.80}: column {column} holds {value!r:.40}, not a number; "
                          "the file was edited") from None


def rows_to_table(rows: Iterable[Row], n_quantiles: int = 0, kept: Sequence[str] = (),
                  kept_units: Mapping[str, str] | None = None, shape: "TableShape | None" = None) -> Table:
    """Text rows → an astropy Table: text columns as str, redshift columns as float64 (NaN when empty).

    ``kept`` input columns (``--keep-columns``) follow the result columns, as numbers when they all
    are; ``n_quantiles`` > 0 adds :data:`PDF_COLUMN` as an ``(N, n_quantiles)`` float64 array column.
    ``shape`` imposes text widths and kept columns' kinds (the chunks of one output all have them).
    """
    import astropy.units as u
    from astropy.table import Table

    columns: dict[str, list] = {c: [] for c in (*COLUMNS, *kept)}
    quantiles: list[np.ndarray] = []
    for r in rows:
        for c in COLUMNS:
            value = r.get(c, "")
            if c in FLOAT_COLUMNS:
                columns[c].append(_float_cell(value, c, r))
            elif c in INT_COLUMNS:
                columns[c].append(int(value) if value.lstrip("-").isdigit() else 0)
            else:
                columns[c].append(value)
        for c in kept:
            columns[c].append(r.get(c, ""))
        if n_quantiles:
            text = r.get(PDF_COLUMN, "")
            values = np.array([float(v) for v in text.split()]) if text else np.full(n_quantiles, np.nan)
            quantiles.append(values if len(values) == n_quantiles else np.full(n_quantiles, np.nan))
    table = Table()
    widths, kinds = (shape.widths, shape.kinds) if shape is not None else ({}, {})
    for c in COLUMNS:
        text = f"U{widths[c]}" if c in widths else str
        dtype = np.float64 if c in FLOAT_COLUMNS else (np.int16 if c == "usable" else np.int32) if c in INT_COLUMNS else text
        table[c] = np.asarray(columns[c], dtype=dtype)
    for c in kept:
        table[c] = _kept_column(columns[c], kinds.get(c), widths.get(c))
        if (kept_units or {}).get(c) and table[c].dtype.kind == "f":
            table[c].unit = u.Unit(kept_units[c], parse_strict="silent")
    if n_quantiles:
        table[PDF_COLUMN] = np.asarray(quantiles, dtype=np.float64).reshape(-1, n_quantiles)
    describe_columns(table)
    return table


def describe_columns(table: Table) -> None:
    """Unit and one-line meaning on every column (:data:`COLUMN_INFO`); redshifts are dimensionless."""
    import astropy.units as u

    for name in table.colnames:
        if name not in COLUMN_INFO:
            continue  # a kept input column: its own unit and description, if any
        unit, description = COLUMN_INFO[name]
        table[name].unit = u.dimensionless_unscaled if unit == DIMENSIONLESS else None
        table[name].description = description


def read_results(path: str | os.PathLike, fmt: str | None = None) -> Table:
    """An output of ``cai-edge predict`` as an astropy Table; ids are always text; kept input columns included.

    Parameters
    ----------
    path : str or path
        The output file.
    fmt : str, optional
        ``csv``, ``ecsv``, ``fits`` or ``parquet``; default: from the extension.

    Returns
    -------
    astropy.table.Table
        One row per galaxy, in the output's column order.
    """
    rows = iter(iter_result_rows(path, fmt))
    first = next(rows, None)  # its columns name the kept ones; the rest stream on
    return rows_to_table(itertools.chain([first], rows) if first is not None else [], kept=kept_columns(first or {}))


def read_identity(path: str | os.PathLike, fmt: OutputFormat | str | None = None) -> dict[str, str]:
    """The bundle identity recorded in an output: ``bundle``, ``variant``, ``bundle_sha256``, ``calibration_sha256``,
    ``engine`` (what computed the redshifts: :attr:`cai_edge.predictor.Predictor.engine`) and ``z_quantile_levels``
    when it holds p(z) (each empty when absent: older outputs record no engine)."""
    path = Path(path)
    fmt = fmt if isinstance(fmt, OutputFormat) else output_format(path, fmt)
    meta: dict[str, str] = {}
    try:
        if fmt.name == "csv":
            meta = csv_metadata(path)  # its sidecar, or the # lines of an output of an earlier version
        elif fmt.name == "fits":
            from astropy.io import fits

            header = fits.getheader(path, ext=1)
            names = {v: k for k, v in FITS_META_KEYS.items()} | _FITS_LEGACY_KEYS | {"ZQLEVELS": "z_quantile_levels"}
            meta = {names[k]: str(header[k]) for k in header if k in names}
        else:  # the header alone: a merge reads every input's identity before any rows
            from cai_edge.results.column_units import ecsv_header, parquet_header

            header_meta = (ecsv_header(path) if fmt.name == "ecsv" else parquet_header(path)).get("meta", {}) or {}
            meta = {str(k): str(v) for k, v in header_meta.items()}
    except Exception as exc:
        raise OutputError(f"{path}: cannot read earlier results ({type(exc).__name__}: {exc})") from exc
    return {k: meta.get(k, "") for k in ("bundle", "variant", "bundle_sha256", "calibration_sha256", "engine", "z_quantile_levels")}


ENGINE_NOT_RECORDED = "not recorded"
_ENGINE_CHARS = 64  # an engine's name is a few words; what an edited file claims is cut there


def engines_of(recorded: list[str]) -> str:
    """The ``engine`` record of rows made by several runs: each engine once, in order (``not recorded`` for an older output).

    Printable ASCII only (anything else, from an edited file, becomes ``?``): a FITS header card holds nothing else.
    """
    parts = (_printable(part.strip()[:_ENGINE_CHARS]) or ENGINE_NOT_RECORDED
             for text in recorded for part in (text if isinstance(text, str) else "").split(","))
    return ", ".join(dict.fromkeys(parts))


def _printable(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)


@dataclass(frozen=True, slots=True)  # one per object: 100,000 of them without a __dict__ each save ~10 MB
class _Winner:
    source: int
    index: int
    ok: bool


class RowMerger:
    """Merge rows from sources given oldest first (each a callable returning a fresh iterator).

    The first pass keeps only, per object, where its winning row is; the second streams the
    winners, so memory grows with the number of objects, not with the rows' text.
    """

    def __init__(self, sources: Sequence[Callable[[], Iterable[Row]]] = ()):
        self.sources: list[Callable[[], Iterable[Row]]] = []
        self.winners: dict[tuple[str, str], _Winner] = {}
        for source in sources:
            self.add(source)

    def add(self, source: Callable[[], Iterable[Row]]) -> None:
        """Index one more source, newer than every one added before."""
        s = len(self.sources)
        self.sources.append(source)
        for i, r in enumerate(source()):
            key, ok = merge_key(r), r["status"] == OK
            best = self.winners.get(key)
            if best is None or ok or not best.ok:
                self.winners[key] = _Winner(s, i, ok)

    def done_ids(self) -> set[str]:
        """Ids whose object already has an ``ok`` row."""
        return {key[0] for key, w in self.winners.items() if w.ok and not key[1]}

    def done_inputs(self) -> set[tuple[str, str]]:
        """``(id, source)`` of every object with an ``ok`` row: inputs a resumed run need not even read.

        A second pass over the sources, so the index does not hold every row's source text.
        """
        return {(r["id"], r["source"]) for r in self.rows() if r["status"] == OK}

    def __len__(self) -> int:
        return len(self.winners)

    def rows(self) -> Iterator[Row]:
        for s, source in enumerate(self.sources):
            for i, r in enumerate(source()):
                w = self.winners[merge_key(r)]
                if w.source == s and w.index == i:
                    yield r


def _fits_text(value: str) -> str:
    return value.encode("ascii", errors="backslashreplace").decode("ascii")


def _ecsv_text(value: str) -> str:
    """ECSV reads every line break but \\n as the end of a row, and \\n only between lines it keeps
    (:func:`ecsv_keeps_lines`): such line breaks are escaped (\\r, \\x0b, \\n …), never lost."""
    keeps_newlines = ecsv_keeps_lines(value)
    if keeps_newlines and len(("a" + value + "a").replace("\n", "").splitlines()) == 1:
        return value
    return "".join(c.encode("unicode_escape").decode() if (c != "\n" or not keeps_newlines) and len(("a" + c + "a").splitlines()) > 1
                   else c for c in value)


@dataclass
class RowCounts:
    """What an output holds: rows, those not ``ok`` (failed), ``ok`` but flagged, and usable."""

    rows: int = 0
    failed: int = 0
    flagged: int = 0
    usable: int = 0

    def add(self, status: str, usable: str) -> None:
        self.rows += 1
        self.failed += status != OK
        self.flagged += status == OK and usable != "1"
        self.usable += usable == "1"


def _write_csv(tmp: Path, rows: Iterable[Row], columns: Sequence[str]) -> RowCounts:
    """Plain CSV (a header line, then the rows): its provenance, units and meanings are in the sidecar."""
    counts = RowCounts()
    status, usable = columns.index("status"), columns.index("usable")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        # chained, not a list: the rows stream from the merger to the file, never all held at once
        lines = write_csv_rows(fh, itertools.chain([columns], ([r.get(c, "") for c in columns] for r in rows)))
        next(lines)
        for fields in lines:
            counts.add(fields[status], fields[usable])
    return counts


def _describe_fits_columns(path: Path) -> None:
    """``TCOMMn`` (each column's meaning) and ``FLAGBITS`` in the FITS table header, which astropy does not write."""
    from astropy.io import fits

    with fits.open(path, mode="update") as hdul:
        header = hdul[1].header
        for i in range(1, int(header["TFIELDS"]) + 1):
            name = header[f"TTYPE{i}"]
            if name in COLUMN_INFO:
                header[f"TCOMM{i}"] = COLUMN_INFO[name][1]
        header["FLAGBITS"] = (describe_bits(), "meaning of the bits of flag_bits")


def _write_table(tmp: Path, fmt: OutputFormat, rows: Iterable[Row], meta: dict, n_quantiles: int, kept: Sequence[str],
                 kept_units: Mapping[str, str]) -> RowCounts:
    """A FITS, ECSV or Parquet output: whole when small, else in chunks (:mod:`cai_edge.results.chunked_tables`)."""
    from cai_edge.results import chunked_tables

    rows = iter(rows)
    head = list(itertools.islice(rows, chunked_tables.CHUNK_ROWS + 1))
    if len(head) <= chunked_tables.CHUNK_ROWS:
        return _write_whole_table(tmp, fmt, head, meta, n_quantiles, kept, kept_units)
    text_columns = [c for c in COLUMNS if c not in FLOAT_COLUMNS and c not in INT_COLUMNS]
    stream = itertools.chain(head, rows)
    del head  # the chain lets go of these rows once it has passed them
    parts = chunked_tables.write_in_chunks(
        tmp, fmt.name, stream, output_columns(bool(n_quantiles), kept), text_columns, kept,
        lambda r: _shown(fmt, r, kept),
        lambda path, chunk, shape: _write_whole_table(path, fmt, chunk, meta, n_quantiles, kept, kept_units, shape))
    counts = RowCounts()
    for part in parts:
        for name in ("rows", "failed", "flagged", "usable"):
            setattr(counts, name, getattr(counts, name) + getattr(part, name))
    return counts


def _shown(fmt: OutputFormat, r: Row, kept: Sequence[str]) -> Row:
    """A row's text as ``fmt`` writes it."""
    if fmt.ascii_only:
        # sources, messages and kept text are for people: non-ASCII is escaped (\xe9), never lost
        return {**r, **{c: _fits_text(r.get(c, "")) for c in ("source", "message", *kept)}}
    if fmt.name == "ecsv":
        return {**r, **{c: _ecsv_text(r.get(c, "")) for c in ("source", *kept)}}
    return r


def _write_whole_table(tmp: Path, fmt: OutputFormat, rows: list, meta: dict, n_quantiles: int, kept: Sequence[str],
                       kept_units: Mapping[str, str], shape: "TableShape | None" = None) -> RowCounts:
    for r in rows:
        fmt.check_id(r["id"], r["source"])  # checked before: a last guard, never an altered id
    rows = [_shown(fmt, r, kept) for r in rows]
    table = rows_to_table(rows, n_quantiles, kept, kept_units, shape)
    if fmt.name == "fits":
        table.meta = {FITS_META_KEYS[k]: str(v) for k, v in meta.items() if k in FITS_META_KEYS}
        if "z_quantile_levels" in meta:
            table.meta["ZQLEVELS"] = str(meta["z_quantile_levels"])
    else:
        table.meta.update(meta)
        table.meta["flag_bits"] = describe_bits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table.write(tmp, format=fmt.astropy_format, overwrite=True)
        if fmt.name == "fits":
            _describe_fits_columns(tmp)
    counts = RowCounts()
    for status, usable in zip(table["status"], table["usable"]):
        counts.add(str(status), str(usable))
    return counts


def write_results(out: Path, fmt: OutputFormat, rows: Iterable[Row], meta: dict, n_quantiles: int = 0,
                  kept: Sequence[str] = (), kept_units: Mapping[str, str] | None = None) -> RowCounts:
    """Write ``rows`` to ``out`` atomically (fsynced temporary file, then rename); returns what it holds (:class:`RowCounts`).

    ``n_quantiles`` > 0 writes each galaxy's p(z) quantiles too (an array column; text in CSV);
    ``kept`` input columns (``--keep-columns``) follow the result columns, numbers with their
    ``kept_units`` (as the catalog declares them). A CSV's provenance, units and meanings go into
    its sidecar (:mod:`cai_edge.results.csv_sidecar`), written first.
    """
    fmt.check_available()
    columns = output_columns(bool(n_quantiles), kept)
    if fmt.name == "csv":
        write_sidecar(out, meta, columns, kept_units)
    with atomic_path(out) as tmp:
        counts = (_write_csv(tmp, rows, columns) if fmt.name == "csv"
                  else _write_table(tmp, fmt, rows, meta, n_quantiles, kept, kept_units or {}))
        crash_point("output-written")
    crash_point("output-renamed")
    return counts
