"""A FITS, ECSV or Parquet output read as a sequence of tables of at most :data:`CHUNK_ROWS` rows.

``cai-edge merge`` and ``--resume`` read earlier outputs row by row; reading one whole would hold
all its rows. FITS tables are read by row ranges with fitsio (astropy, whole, where fitsio is
not installed), Parquet files batch by batch with pyarrow, ECSV files as their header followed by
a run of whole records (a record ends at a line end outside double quotes).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

CHUNK_ROWS = 20_000


def iter_tables(path: Path, fmt_name: str, astropy_format: str) -> Iterator:
    """The rows of ``path`` as astropy Tables of at most :data:`CHUNK_ROWS` rows each (at least one table, maybe empty)."""
    reader = {"fits": _fits_tables, "parquet": _parquet_tables, "ecsv": _ecsv_tables}.get(fmt_name)
    if reader is not None:
        yield from reader(path, astropy_format)
    else:
        yield _whole(path, astropy_format)


def _whole(path: Path, astropy_format: str):
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Table.read(path, format=astropy_format)


def _fits_tables(path: Path, astropy_format: str):
    try:
        import fitsio
    except ImportError:  # no fitsio (Windows): astropy reads it whole
        yield _whole(path, astropy_format)
        return
    from astropy.table import Table

    with fitsio.FITS(str(path)) as f:
        hdu = f[1]
        rows = hdu.get_nrows()
        if rows == 0:
            yield _whole(path, astropy_format)
            return
        for start in range(0, rows, CHUNK_ROWS):
            table = Table(hdu[start : min(start + CHUNK_ROWS, rows)])
            for name in table.colnames:  # astropy reads a FITS table's NaNs as masked (empty cells): so do these
                if table[name].dtype.kind == "f" and table[name].ndim == 1:
                    table[name] = np.ma.masked_invalid(table[name])
            yield table
            del table  # before the next chunk is read: one in memory at a time


def _parquet_tables(path: Path, astropy_format: str):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import Table

    source = pq.ParquetFile(path)
    if source.metadata.num_rows == 0:
        yield _whole(path, astropy_format)
        return
    for batch in source.iter_batches(batch_size=CHUNK_ROWS):
        table = Table()
        for name, column in zip(batch.schema.names, batch.columns):
            if pa.types.is_fixed_size_list(column.type):  # p(z): a fixed number of quantiles per row
                table[name] = column.flatten().to_numpy(zero_copy_only=False).reshape(len(batch), column.type.list_size)
            elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                table[name] = np.asarray(column.to_pylist(), dtype=str)
            else:
                table[name] = column.to_numpy(zero_copy_only=False)
        yield table
        del table, batch


def _ecsv_tables(path: Path, astropy_format: str):
    from astropy.table import Table

    from cai_edge.io.safe_files import open_regular_file

    with open_regular_file(path) as raw:
        header = []
        for line in raw:
            header.append(line)
            if not line.startswith(b"#"):
                break  # the column-name line ends the header
        chunk, quotes, any_rows = [], 0, False
        for line in raw:
            chunk.append(line)
            quotes += line.count(b'"')
            if quotes % 2 == 0 and len(chunk) >= CHUNK_ROWS:
                any_rows = True
                yield _ecsv_table(header + chunk, Table)
                chunk, quotes = [], 0
        if chunk:
            yield _ecsv_table(header + chunk, Table)
        elif not any_rows:  # no rows: astropy reads it as it always did
            yield _whole(path, astropy_format)


def _ecsv_table(lines: list[bytes], Table):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # its lines, as astropy splits text it is given, but not as text: it would first try it as a file name (and
        # fail on a NUL in an id)
        return Table.read(b"".join(lines).decode("utf-8").splitlines(), format="ascii.ecsv")
