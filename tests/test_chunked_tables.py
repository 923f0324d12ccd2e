"""FITS, ECSV and Parquet outputs above a chunk's rows are written in chunks (issue 32: a merge's memory does not grow
with its rows) and read back exactly as the same rows written whole."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from cai_edge.results import chunked_tables
from cai_edge.results.files import iter_result_rows, read_results, write_results
from cai_edge.results.formats import output_format
from cai_edge.results.rows import COLUMNS, PDF_COLUMN

LEVELS = "0.16 0.5 0.84"
META = {"bundle": "b", "bundle_sha256": "a" * 64, "calibration_sha256": "c" * 64, "z_quantile_levels": LEVELS}


def _rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        row = {c: "" for c in COLUMNS}
        ok = i % 5 != 3
        row.update(id=f"g{i:03d}" + ("-long-id" if i == 17 else ""), source=f"part-{i % 3}.npz[{i}]" + (" Ωmega" if i == 11 else ""),
                   status="ok" if ok else "read_error", z_pred=f"{0.05 + i / 1000:.6f}" if ok else "", usable="1" if ok and i % 4 else "0",
                   flag_bits="0", flag_names="none", message="" if ok else "x" * (i + 1))
        row[PDF_COLUMN] = " ".join(f"{0.05 + i / 1000 + d:.6f}" for d in (-0.01, 0, 0.01)) if ok else ""
        row.update(flag=("True", "False")[i % 2], ra=f"{150 + i / 100:.4f}" if i != 20 else "", survey="SDSS" if i < 25 else "BOSS-northern cap")
        rows.append(row)
    return rows


@pytest.mark.parametrize("suffix", ["fits", "ecsv", "parquet"])
def test_rows_written_in_chunks_read_back_as_the_same_rows_written_whole(tmp_path, monkeypatch, suffix):
    rows = _rows(31)
    whole, chunked = tmp_path / f"whole.{suffix}", tmp_path / f"chunked.{suffix}"
    kept = ("flag", "ra", "survey")
    write_results(whole, output_format(whole), iter(rows), META, 3, kept, {"ra": "deg"})
    monkeypatch.setattr(chunked_tables, "CHUNK_ROWS", 7)  # 5 chunks, the last of 3 rows
    counts = write_results(chunked, output_format(chunked), iter(rows), META, 3, kept, {"ra": "deg"})
    assert (counts.rows, counts.failed) == (31, 6)
    assert list(iter_result_rows(chunked)) == list(iter_result_rows(whole))
    a, b = read_results(whole), read_results(chunked)
    assert a.colnames == b.colnames and all(np.array_equal(a[c], b[c], equal_nan=a[c].dtype.kind == "f") for c in a.colnames)
    ta, tb = Table.read(whole), Table.read(chunked)
    assert tb["ra"].unit == "deg" and tb["flag"].dtype == bool and tb[PDF_COLUMN].shape == (31, 3)
    assert ta.meta == tb.meta and [str(ta[c].unit) for c in ta.colnames] == [str(tb[c].unit) for c in tb.colnames]
    if suffix == "fits":
        assert fits.getheader(chunked, 1) == fits.getheader(whole, 1)  # the widest text of any chunk, every keyword
    assert not list(tmp_path.glob(".cai-edge-chunks-*"))  # its temporary files are gone


@pytest.mark.parametrize("suffix", ["fits", "ecsv", "parquet"])
def test_outputs_read_a_chunk_at_a_time_give_the_rows_read_whole(tmp_path, monkeypatch, suffix):
    from cai_edge.results import table_chunks

    rows = _rows(31)
    rows[9]["survey"] = 'a "quoted"\nsurvey'  # a record of two lines in ECSV, a quote in it
    out = tmp_path / f"z.{suffix}"
    write_results(out, output_format(out), iter(rows), META, 3, ("flag", "ra", "survey"), {"ra": "deg"})
    whole = list(iter_result_rows(out))
    with monkeypatch.context() as m:  # astropy reading the whole file, as outputs were read before
        m.setattr(table_chunks, "iter_tables", lambda path, name, form: iter([table_chunks._whole(path, form)]))
        assert list(iter_result_rows(out)) == whole
    monkeypatch.setattr(table_chunks, "CHUNK_ROWS", 4)
    assert len(list(table_chunks.iter_tables(out, suffix, output_format(out).astropy_format))) > 5
    assert list(iter_result_rows(out)) == whole
    assert [r["survey"] for r in whole][9] == 'a "quoted"\nsurvey' or suffix == "ecsv"  # ECSV keeps or escapes it, never loses it
