"""Prediction output: one row per input object, written crash-safely and atomically.

Rows are appended to a CSV spool beside the output as each batch finishes (flushed, so a killed
run loses at most the batch in flight); when the run ends, the spool (plus, with ``--resume``,
the rows of the earlier output) becomes the output in the requested format via a temporary file
and a rename. ``--resume`` reads both the output and any spool left by a crash, and skips
every id already there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

from cai_edge.errors import CaiEdgeError
from cai_edge.io.atomic import atomic_path
from cai_edge.io.result_rows import COLUMNS, format_number

FORMATS = {".csv": "csv", ".ecsv": "ecsv", ".fits": "fits", ".fit": "fits", ".parquet": "parquet"}
_ASTROPY_FORMAT = {"csv": "ascii.csv", "ecsv": "ascii.ecsv", "fits": "fits", "parquet": "parquet"}


class OutputError(CaiEdgeError):
    """The output cannot be written or read back."""


def output_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    return FORMATS.get(path.suffix.lower(), "csv")


def spool_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial.csv")


def _empty_table() -> Table:
    return Table(
        [np.array([], dtype=str), np.array([], dtype=str), np.array([], dtype=np.float64),
         np.array([], dtype=np.float64), np.array([], dtype=str), np.array([], dtype=str)],
        names=COLUMNS,
    )


def _normalize(table: Table) -> Table:
    table = table[[c for c in COLUMNS if c in table.colnames]]
    for col in ("id", "source", "status", "message"):
        table[col] = np.asarray([("" if np.ma.is_masked(v) else str(v)) for v in table[col]], dtype=str)
    for col in ("z_pred", "z_spec"):
        values = np.ma.filled(np.ma.asarray(table[col], dtype=np.float64), np.nan) if len(table) else np.array([], np.float64)
        table[col] = np.asarray(values, dtype=np.float64)
    return table


def read_results(path: Path, fmt: str | None = None) -> Table:
    """Rows of an earlier output (any supported format), or of a spool."""
    fmt = output_format(path, fmt)
    try:
        kwargs = {"comment": "#"} if fmt == "csv" else {}
        table = Table.read(path, format=_ASTROPY_FORMAT[fmt], **kwargs)
    except Exception as exc:
        raise OutputError(f"{path}: cannot read earlier results to resume ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in ("id", "status") if c not in table.colnames]
    if missing:
        raise OutputError(f"{path}: not a cai-edge result table (no {', '.join(missing)} column)")
    return _normalize(table) if len(table) else _empty_table()


def _finalize_csv_streaming(out: Path, spool: Path, earlier: Table | None, meta: dict) -> int:
    """CSV output without loading the rows: comment lines, header, earlier rows, then the spool copied line by line."""
    import csv

    rows = 0
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
        for key, value in meta.items():
            fh.write(f"# {key}: {value}\n")
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        if earlier is not None:
            for r in _normalize(earlier):
                writer.writerow([str(r["id"]), str(r["source"]), format_number(float(r["z_pred"])),
                                 format_number(float(r["z_spec"])), str(r["status"]), str(r["message"])])
                rows += 1
        if spool.exists():
            with open(spool, newline="") as src:
                next(src, None)  # the spool's own header
                for line in src:
                    fh.write(line)
                    rows += 1
    spool.unlink(missing_ok=True)
    return rows


def finalize(out: Path, fmt: str, spool: Path, earlier: Table | None, meta: dict) -> Table | None:
    """Write earlier rows + spooled rows to ``out`` atomically and remove the spool.

    CSV is streamed (memory stays flat however many rows); the other formats build one Table,
    which is returned.
    """
    if fmt == "csv":
        _finalize_csv_streaming(out, spool, earlier, meta)
        return None
    parts = [t for t in (earlier, read_results(spool, "csv") if spool.exists() else None) if t is not None and len(t)]
    table = vstack(parts, metadata_conflicts="silent") if parts else _empty_table()
    table = _normalize(table)
    table["z_pred"].unit = ""
    table["z_pred"].description = "predicted redshift (dimensionless)"
    table["z_spec"].description = "spectroscopic redshift from the input, when known"
    table.meta.update(meta)
    if fmt == "csv":
        table.meta["comments"] = [f"{k}: {v}" for k, v in meta.items()]
    if fmt == "fits":
        table.meta = {k[:8].upper(): str(v)[:68] for k, v in meta.items()}
    with atomic_path(out) as tmp:
        try:
            kwargs = {"comment": "# "} if fmt == "csv" else {}
            table.write(tmp, format=_ASTROPY_FORMAT[fmt], overwrite=True, **kwargs)
        except ImportError as exc:
            raise OutputError(f"writing {fmt} needs an optional package ({exc}); for parquet: pip install pyarrow") from exc
    spool.unlink(missing_ok=True)
    return table
