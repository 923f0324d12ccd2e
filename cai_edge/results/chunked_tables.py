"""FITS, ECSV and Parquet outputs written in chunks, so memory does not grow with the row count.

astropy writes a table it holds whole. Above :data:`CHUNK_ROWS` rows (a merge of array tasks, a
long run) the rows are spooled to a temporary CSV while each column's type and widest value are
noted; the spool is then written in chunks of :data:`CHUNK_ROWS` rows, every chunk with those
same column types and widths, by the same code that writes a small output whole; and the chunks
are joined into one file: a FITS binary table's rows are fixed-width records (the first chunk's
header with the total row count, then each chunk's records), an ECSV's rows follow its header
(the first chunk's header, then each chunk's data lines), a Parquet file takes each chunk's row
groups. The temporary files live in a folder of their own beside the output, removed afterwards.
"""

from __future__ import annotations

import csv
import gc
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

CHUNK_ROWS = 20_000  # rows as Python dicts take ~1.5 kB each: ~30 MB a chunk, and its table
_BLOCK = 2880  # FITS
_COPY = 1 << 20

Row = Mapping[str, str]


@dataclass
class TableShape:
    """What every chunk's columns must be: text widths (characters) and each kept column's kind (bool, float, str)."""

    widths: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)


def write_in_chunks(tmp: Path, fmt_name: str, rows: Iterable[Row], columns: Sequence[str], text_columns: Sequence[str],
                    kept: Sequence[str], convert: Callable[[Row], Row], write_chunk: Callable[[Path, list, TableShape], object]) -> list:
    """Write ``rows`` to ``tmp`` as one ``fmt_name`` file, :data:`CHUNK_ROWS` at a time; the chunk writers' results, in order.

    Parameters
    ----------
    tmp : path
        The file to write (the output's temporary name).
    fmt_name : str
        ``fits``, ``ecsv`` or ``parquet``.
    rows : iterable of dict
        The rows, as text.
    columns : sequence of str
        Every column of a row.
    text_columns : sequence of str
        The result columns written as text (their widths are noted).
    kept : sequence of str
        Kept input columns (their kinds and widths are noted).
    convert : callable
        What the chunk writer does to a row's text before writing it (the widths are of that).
    write_chunk : callable
        ``write_chunk(path, rows, shape)`` writes one chunk as a whole file.
    """
    work = Path(tempfile.mkdtemp(prefix=".cai-edge-chunks-", dir=tmp.parent))
    try:
        spool = work / "rows.csv"
        shape = _spool(rows, spool, columns, text_columns, kept, convert)
        parts, results = [], []
        chunks = _chunks(spool, columns)
        while (chunk := next(chunks, None)) is not None:
            parts.append(work / f"part-{len(parts)}.{fmt_name}")
            results.append(write_chunk(parts[-1], chunk, shape))
            del chunk  # before the next is read: one chunk's rows in memory at a time, not two
            gc.collect()  # and its astropy table, whose reference cycles would otherwise wait for a full collection
        {"fits": _join_fits, "ecsv": _join_ecsv, "parquet": _join_parquet}[fmt_name](parts, tmp)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _spool(rows: Iterable[Row], spool: Path, columns: Sequence[str], text_columns: Sequence[str], kept: Sequence[str],
           convert: Callable[[Row], Row]) -> TableShape:
    widths = {c: 1 for c in (*text_columns, *kept)}
    boolean = {c: True for c in kept}
    numeric = {c: True for c in kept}
    with open(spool, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        writer = csv.writer(fh)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])
            shown = convert(row)
            for c in widths:
                widths[c] = max(widths[c], len(shown.get(c, "")))
            for c in kept:
                value = row.get(c, "")
                boolean[c] = boolean[c] and value in ("True", "False")
                if numeric[c] and value.strip():
                    try:
                        float(value)
                    except ValueError:
                        numeric[c] = False
    kinds = {c: "bool" if boolean[c] else "float" if numeric[c] else "str" for c in kept}
    return TableShape(widths, kinds)


def _chunks(spool: Path, columns: Sequence[str]) -> Iterator[list[dict[str, str]]]:
    with open(spool, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        chunk: list[dict[str, str]] = []
        for fields in csv.reader(fh):
            chunk.append(dict(zip(columns, fields)))
            if len(chunk) == CHUNK_ROWS:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _copy(src, dst, size: int) -> None:
    while size > 0:
        block = src.read(min(size, _COPY))
        if not block:
            raise OSError("a chunk file ended early")
        dst.write(block)
        size -= len(block)


def _join_fits(parts: list[Path], out: Path) -> None:
    """One binary table: the first chunk's primary HDU and table header (row count set to the total), then every chunk's rows."""
    from astropy.io import fits

    spans = []
    for part in parts:
        with fits.open(part) as hdul:
            header, info = hdul[1].header, hdul.fileinfo(1)
            if int(header.get("PCOUNT", 0)) != 0:
                raise OSError(f"{part}: a FITS table with a heap cannot be joined by rows")
            spans.append((info["hdrLoc"], info["datLoc"], int(header["NAXIS1"]) * int(header["NAXIS2"]), header.copy()))
    first_header = spans[0][3]
    first_header["NAXIS2"] = sum(int(s[3]["NAXIS2"]) for s in spans)
    with open(out, "wb") as dst:
        with open(parts[0], "rb") as src:
            _copy(src, dst, spans[0][0])  # the primary HDU
        dst.write(first_header.tostring().encode("ascii"))
        written = 0
        for part, (_, data_at, size, _) in zip(parts, spans):
            with open(part, "rb") as src:
                src.seek(data_at)
                _copy(src, dst, size)
            written += size
        dst.write(b"\0" * (-written % _BLOCK))


def _join_ecsv(parts: list[Path], out: Path) -> None:
    """The first chunk whole, then each other chunk's data lines (its ``#`` header and column-name line left out)."""
    with open(out, "wb") as dst:
        for k, part in enumerate(parts):
            with open(part, "rb") as src:
                if k:
                    line = src.readline()
                    while line.startswith(b"#"):
                        line = src.readline()
                    # that line names the columns; the data follow
                shutil.copyfileobj(src, dst, _COPY)


def _join_parquet(parts: list[Path], out: Path) -> None:
    """The first chunk's schema (with astropy's metadata), then every chunk's row groups."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(parts[0])
    with pq.ParquetWriter(out, schema, version="2.4") as writer:
        for part in parts:
            source = pq.ParquetFile(part)
            for group in range(source.num_row_groups):
                writer.write_table(source.read_row_group(group))
