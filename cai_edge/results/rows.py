"""Result rows as CSV text, with the standard library only (the Lambda handler writes them too).

Columns — one row per input object; :data:`COLUMN_INFO` gives each one's unit and meaning, and
every output format carries them (the CSV's sidecar, ECSV/Parquet metadata, FITS ``TUNIT``/``TCOMM``):

* ``id``, ``source``: the object and where it was read;
* ``z_pred``: the point estimate; ``z_err``: half the width of the central 68 % interval;
  ``z_lo68``, ``z_hi68``, ``z_lo95``, ``z_hi95``: the central 68 % and 95 % intervals (empty when
  the bundle has no uncertainty calibration: the flag ``uncalibrated`` says so);
* ``z_spec``: the spectroscopic redshift when the input has one;
* ``status``: ``ok`` or why there is no prediction;
* ``usable``: 1 when the status is ``ok`` and no flag is set — the one test for rows fit for
  science, the same in every library (``t["usable"] == 1``) — else 0;
* ``flag_bits``: why a prediction may not be trusted, as a bitmask (:data:`cai_edge.flags.BITS`);
  ``flag_names``: the same by name, comma-separated, or ``none``; ``message``: the same for a person.

Every value is text here; :mod:`cai_edge.results.files` gives them types and units.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Iterable, Iterator, Mapping, Sequence

from cai_edge.flags import BITS, NO_FLAGS, UNCALIBRATED, bits_of, describe_bits, join_flags
from cai_edge.results.ids import MAX_MESSAGE_CHARS, MAX_SOURCE_CHARS, bounded, printable_line
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.status import OK

COLUMNS = ("id", "source", "z_pred", "z_err", "z_lo68", "z_hi68", "z_lo95", "z_hi95", "z_spec", "status", "usable", "flag_bits",
           "flag_names", "message")
INTERVAL_COLUMNS = ("z_err", "z_lo68", "z_hi68", "z_lo95", "z_hi95")
FLOAT_COLUMNS = ("z_pred", *INTERVAL_COLUMNS, "z_spec")
INT_COLUMNS = ("usable", "flag_bits")
STATUS_INDEX = COLUMNS.index("status")
USABLE_INDEX = COLUMNS.index("usable")
# With ``--pdf``: each galaxy's redshift at the calibration's cumulative probabilities (its p(z) as
# quantiles; the levels are in the output's metadata as ``z_quantile_levels``).
PDF_COLUMN = "z_quantiles"

DIMENSIONLESS = "dimensionless"
# column → (unit, one line for a person: at most 68 characters, a FITS TCOMM value)
COLUMN_INFO: dict[str, tuple[str, str]] = {
    "id": ("", "the object's id, exactly as given (file stem or catalog id)"),
    "source": ("", "where the object was read: file, or partition[row]"),
    "z_pred": (DIMENSIONLESS, "predicted redshift (point estimate)"),
    "z_err": (DIMENSIONLESS, "half the width of the central 68 % interval of z"),
    "z_lo68": (DIMENSIONLESS, "lower end of the central 68 % interval of z"),
    "z_hi68": (DIMENSIONLESS, "upper end of the central 68 % interval of z"),
    "z_lo95": (DIMENSIONLESS, "lower end of the central 95 % interval of z"),
    "z_hi95": (DIMENSIONLESS, "upper end of the central 95 % interval of z"),
    "z_spec": (DIMENSIONLESS, "spectroscopic redshift from the input, when known"),
    "status": ("", "ok, or why there is no prediction"),
    "usable": ("", "1: status ok and no flag set, the row can be used; else 0"),
    "flag_bits": ("", "flags as a bitmask, bits as in flag_names; see FLAGBITS / flag_bits"),
    "flag_names": ("", "the flags set, by name, comma-separated; none when none"),
    "message": ("", "why the row is not ok or is flagged, for a person"),
    PDF_COLUMN: (DIMENSIONLESS, "z at each cumulative probability of z_quantile_levels"),
}


KEPT_COLUMN_INFO = ("", "carried from the input's catalog or table (--keep-columns)")


def output_columns(with_pdf: bool = False, kept: Sequence[str] = ()) -> tuple[str, ...]:
    """An output's columns in order: the result columns, the kept input columns, then p(z) when written."""
    return (*COLUMNS, *kept, *((PDF_COLUMN,) if with_pdf else ()))


def kept_columns(columns: Sequence[str]) -> tuple[str, ...]:
    """The ``--keep-columns`` among an output's or spool segment's columns."""
    return tuple(c for c in columns if c not in COLUMNS and c != PDF_COLUMN)


def column_notes(columns: Sequence[str], kept_units: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{"column NAME": "[unit] meaning"}`` for each column, and what each flag bit means: the files' own documentation.

    ``kept_units``: the units of kept input columns, as their catalog declares them.
    """
    notes = {}
    for name in columns:
        unit, description = COLUMN_INFO.get(name, ((kept_units or {}).get(name, ""), KEPT_COLUMN_INFO[1]))
        notes[f"column {name}"] = (f"[{unit}] " if unit else "") + description
    notes["flag_bits"] = describe_bits()
    return notes


def provenance_lines(meta: Mapping[str, str], columns: Sequence[str], kept_units: Mapping[str, str] | None = None) -> str:
    """``# key: value`` lines (CRLF, as the rows): who made the rows, and what each column means.

    They open the Lambda fan-out's summary CSV, and opened ``cai-edge predict``'s CSV before its
    sidecar (:mod:`cai_edge.results.csv_sidecar`), whose reader still accepts them.
    """
    return "".join(f"# {key}: {value}\r\n" for key, value in {**meta, **column_notes(columns, kept_units)}.items())


def complete_row(values: Mapping[str, str]) -> dict[str, str]:
    """A row read back from any output or spool as ``{column: text}`` with every column of :data:`COLUMNS`
    (then its kept input columns and p(z), when it has them).

    Columns a row lacks are derived from those it has, never invented: rows written before
    ``usable``, ``flag_bits`` and ``flag_names`` existed (one ``flags`` column, empty when none) get
    them from their status and flags; rows from before flags existed had no uncertainty
    calibration, so an ``ok`` one is flagged ``uncalibrated`` (as a run with an uncalibrated bundle
    flags it now); a table whose ``usable``, ``flag_bits`` or ``flag_names`` column was removed gets
    it back from the other two (``usable``: status ``ok`` and no flag bit).
    """
    row = {c: values.get(c, "") for c in COLUMNS}
    ok = row["status"] == OK
    legacy = "flag_names" not in values and "flag_bits" not in values
    if legacy:
        names = values.get("flags", "") if "flags" in values else UNCALIBRATED
        row["flag_names"] = (names or NO_FLAGS) if ok else NO_FLAGS
    elif "flag_names" not in values:
        row["flag_names"] = join_flags(n for n, bit in BITS.items() if _int(row["flag_bits"]) & bit) or NO_FLAGS
    if legacy or "flag_bits" not in values:
        row["flag_bits"] = str(bits_of(row["flag_names"]))
    if legacy or "usable" not in values:
        row["usable"] = "1" if ok and _int(row["flag_bits"]) == 0 else "0"
    for key, value in values.items():  # kept input columns (--keep-columns), in their order
        if key not in row and key != PDF_COLUMN and not (legacy and key == "flags"):
            row[key] = value
    if PDF_COLUMN in values:
        row[PDF_COLUMN] = values[PDF_COLUMN]
    return row


def _int(text: str) -> int:
    """A ``flag_bits`` text as a number; anything else counts as every bit unknown (never usable)."""
    return int(text) if text.strip().lstrip("-").isdigit() else -1


def format_quantiles(values) -> str:
    return " ".join(f"{v:.6f}" for v in values)


def format_number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"


def row(record: GalaxyRecord, z_pred: float = math.nan, interval: Mapping[str, float] | None = None,
        flags: Iterable[str] = (), quantiles: Sequence[float] | None = None, with_pdf: bool = False) -> list[str]:
    """One output row; ``interval`` maps :data:`INTERVAL_COLUMNS` to numbers (absent: empty).

    ``with_pdf`` appends the :data:`PDF_COLUMN` field (``quantiles``, or empty).
    """
    interval = interval or {}
    names = (join_flags(record.flags, flags) if record.ok else "") or NO_FLAGS
    bits = bits_of(names)
    usable = record.ok and bits == 0
    # ids are checked against the output format by the writer's caller; sources and messages are bounded here
    fields = [record.id, bounded(record.source, MAX_SOURCE_CHARS), format_number(z_pred),
              *(format_number(interval.get(c, math.nan)) for c in INTERVAL_COLUMNS), format_number(record.z_spec),
              record.status, "1" if usable else "0", str(bits), names, bounded(printable_line(record.message), MAX_MESSAGE_CHARS)]
    if with_pdf:
        fields.append(format_quantiles(quantiles) if quantiles is not None else "")
    return fields


def write_csv_rows(fh, rows: Iterable[Sequence[str]]) -> Iterator[Sequence[str]]:
    """Write ``rows`` to the text file ``fh`` as RFC 4180 CSV (CRLF; fields with line breaks quoted), yielding each.

    A first field that starts with ``#`` is quoted too, so no reader takes that row for a comment line.
    """
    writer = csv.writer(fh)
    for r in rows:
        if r and r[0].startswith("#"):
            fh.write('"' + r[0].replace('"', '""') + '"' + (("," + _csv_tail(r[1:])) if len(r) > 1 else "\r\n"))
        else:
            writer.writerow(r)
        yield r


def _csv_tail(fields: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(fields)
    return buffer.getvalue()


def rows_to_csv(rows: Iterable[Sequence[str]]) -> str:
    """A complete CSV document: the header, then ``rows`` as :func:`row` makes them."""
    buffer = io.StringIO()
    for _ in write_csv_rows(buffer, [COLUMNS, *rows]):
        pass
    return buffer.getvalue()
