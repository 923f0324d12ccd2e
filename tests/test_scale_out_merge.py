"""`cai-edge merge` (issue 32 item 1): shards in any format → one output; one bundle; the duplicate rule; streaming."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cai_edge.cli import main
from cai_edge.results.files import iter_result_rows, read_identity, read_results, write_results
from cai_edge.results.formats import output_format
from cai_edge.results.rows import COLUMNS
from result_helpers import peak_rss_of, write_partitions

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three shard outputs of the shipped examples with p(z), in three formats, and a plain run over all of them."""
    work = tmp_path_factory.mktemp("merge")
    outs = []
    for k, suffix in enumerate(("csv", "fits", "parquet")):
        out = work / f"z-{k}.{suffix}"
        assert main(["predict", str(EXAMPLES), "--shard", f"{k}/3", "--pdf", "--out", str(out), "--quiet", "--threads", "1"]) in (0, 1)
        outs.append(out)
    plain = work / "plain.csv"
    assert main(["predict", str(EXAMPLES), "--pdf", "--out", str(plain), "--quiet", "--threads", "1"]) in (0, 1)
    return work, outs, plain


@pytest.mark.parametrize("suffix", ["csv", "fits", "ecsv"])
def test_merge_of_shards_equals_a_plain_run_in_any_format(shards, suffix, capsys):
    work, outs, plain = shards
    merged = work / f"merged.{suffix}"
    code = main(["merge", *map(str, outs), "--out", str(merged)])
    assert code in (0, 1)
    said = capsys.readouterr().err
    a, m = read_results(plain), read_results(merged)
    assert f"merged 3 outputs: {len(a)} rows in, {len(a)} rows out" in said
    a.sort("id"), m.sort("id")
    assert list(a["id"]) == list(m["id"]) and len(set(m["id"])) == len(m)
    assert int((m["usable"] == 1).sum()) == int((a["usable"] == 1).sum()) > 150
    np.testing.assert_allclose(m["z_pred"], a["z_pred"], atol=1e-6)
    quantiles = lambda path: {r["id"]: np.array(r["z_quantiles"].split(), dtype=float) for r in iter_result_rows(path)}
    qa, qm = quantiles(plain), quantiles(merged)
    assert all(len(qm[i]) == 19 and np.allclose(qm[i], qa[i], atol=1e-6) for i in qa)
    assert str(m["z_pred"].unit) == "" and m["z_pred"].description  # dimensionless, with its meaning
    identity, first = read_identity(merged), read_identity(outs[0])
    assert identity == first and identity["z_quantile_levels"]


def test_merge_refuses_another_bundle_naming_the_odd_input(shards, tmp_path, capsys):
    work, outs, _ = shards
    odd = tmp_path / "odd.csv"
    rows = list(iter_result_rows(outs[1]))
    meta = {**read_identity(outs[1]), "bundle": "other", "bundle_sha256": "f" * 64}
    write_results(odd, output_format(odd), rows, meta, n_quantiles=len(meta["z_quantile_levels"].split()))
    assert main(["merge", str(outs[0]), str(odd), "--out", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err
    assert f"{odd} was made by bundle other" in err and "refusing to merge" in err
    assert not (tmp_path / "m.csv").exists()


def test_merge_refuses_other_columns_and_unsafe_outputs(shards, tmp_path, capsys):
    work, outs, _ = shards
    no_pdf = tmp_path / "no-pdf.csv"
    assert main(["predict", str(EXAMPLES), "--shard", "1/3", "--out", str(no_pdf), "--quiet", "--threads", "1"]) in (0, 1)
    assert main(["merge", str(outs[0]), str(no_pdf), "--out", str(tmp_path / "m.csv")]) == 2
    assert "without p(z)" in capsys.readouterr().err
    mine = tmp_path / "mine.csv"
    mine.write_text("my notes\n")
    assert main(["merge", str(outs[0]), "--out", str(mine)]) == 2
    assert "not a cai-edge result" in capsys.readouterr().err and mine.read_text() == "my notes\n"
    assert main(["merge", str(outs[0]), str(no_pdf), "--out", str(no_pdf)]) == 2
    assert "one of the inputs" in capsys.readouterr().err
    link = tmp_path / "link.csv"
    link.symlink_to(mine)
    assert main(["merge", str(outs[0]), "--out", str(link)]) == 2 and mine.read_text() == "my notes\n"


def _row(gid: str, source: str, status: str = "ok", z: str = "0.100000") -> dict:
    row = {c: "" for c in COLUMNS}
    usable = "1" if status == "ok" else "0"
    row.update(id=gid, source=source, status=status, z_pred=z if status == "ok" else "", usable=usable, flag_bits="0",
               flag_names="none")
    return row


def test_the_duplicate_rule(tmp_path, capsys):
    """(id, source) rows: the ok row wins over a failed one, the later ok over an earlier; one id from two
    sources: the source met first keeps it, the other becomes duplicate_id (counted, reported)."""
    meta = {"bundle": "b", "bundle_sha256": "a" * 64, "calibration_sha256": ""}
    first, second = tmp_path / "first.csv", tmp_path / "second.fits"
    write_results(first, output_format(first), [_row("a", "p0[0]"), _row("b", "p0[1]", "unreadable"),
                                                _row("c", "p0[2]", z="0.200000"), _row("d", "p0[3]")], meta)
    write_results(second, output_format(second), [_row("b", "p0[1]", z="0.300000"), _row("c", "p0[2]", z="0.250000"),
                                                   _row("a", "p9[0]", z="0.900000"), _row("d", "p0[3]", "unreadable")], meta)
    out = tmp_path / "m.csv"
    assert main(["merge", str(first), str(second), "--out", str(out)]) == 1  # a duplicate_id row is not ok
    said = capsys.readouterr().err
    assert "8 rows in, 5 rows out" in said and "3 rows superseded" in said and "1 ids read from a second source" in said
    assert "'a' from p9[0] (kept from p0[0])" in said
    rows = {(r["id"], r["source"]): r for r in iter_result_rows(out)}
    assert rows[("a", "p0[0]")]["z_pred"] == "0.100000" and rows[("a", "p0[0]")]["usable"] == "1"
    assert rows[("a", "p9[0]")]["status"] == "duplicate_id" and rows[("a", "p9[0]")]["z_pred"] == ""
    assert rows[("a", "p9[0]")]["usable"] == "0" and "p0[0]" in rows[("a", "p9[0]")]["message"]
    assert rows[("b", "p0[1]")]["status"] == "ok" and rows[("b", "p0[1]")]["z_pred"] == "0.300000"  # ok beats failed
    assert rows[("c", "p0[2]")]["z_pred"] == "0.250000"  # the later ok row
    assert rows[("d", "p0[3]")]["status"] == "ok"  # a later failure does not replace an ok row
    # merging the merged output with its inputs changes nothing (the rule is idempotent)
    again = tmp_path / "again.csv"
    assert main(["merge", str(out), str(first), str(second), "--out", str(again)]) == 1
    assert sorted((r["id"], r["source"], r["status"], r["z_pred"]) for r in iter_result_rows(again)) == \
           sorted((r["id"], r["source"], r["status"], r["z_pred"]) for r in iter_result_rows(out))


def _merge_peaks(tmp_path: Path, sizes: tuple[int, int], inputs_as: str, out_as: str) -> dict[int, float]:
    """Peak RSS (MB) of a fresh process merging two ``inputs_as`` outputs of n rows each into ``out_as``, for each n."""
    meta = {"bundle": "b", "bundle_sha256": "a" * 64, "calibration_sha256": ""}
    peaks = {}
    for n in sizes:
        inputs = []
        for k in range(2):
            path = tmp_path / f"in-{n}-{k}.{inputs_as}"
            write_results(path, output_format(path), (_row(f"g{k}-{i:07d}", f"part-{k}.npz[{i}]") for i in range(n)), meta)
            inputs.append(str(path))
        out = tmp_path / f"m-{n}.{out_as}"
        code = f"from cai_edge.scale_out.merge import merge_outputs\nr = merge_outputs({inputs!r}, {str(out)!r})\nprint(r.counts.rows_out)"
        peaks[n], printed = peak_rss_of(code)
        assert str(2 * n) in printed and len(read_results(out)) == 2 * n
    return peaks


def test_merge_memory_does_not_grow_with_the_row_count(tmp_path):
    """Two CSV inputs of 10,000 and of 100,000 rows each: the merge's peak RSS differs by far less than the rows' size."""
    peaks = _merge_peaks(tmp_path, (10_000, 100_000), "csv", "csv")
    # 180,000 more rows (as Python dicts, ~1.5 kB each: ~270 MB if they were held) cost less than 20 MB more:
    # at most SQLite's page cache (8 MiB, merge_rule._CACHE_KIB) fills
    assert peaks[100_000] - peaks[10_000] < 20, peaks


def test_kept_columns_take_the_unit_their_inputs_record_and_two_units_are_refused():
    from cai_edge.scale_out.merge import MergeError, MergeInput, kept_units

    no_rows = lambda: iter(())  # noqa: E731
    a = MergeInput("a.fits", {}, no_rows, {"ra": "deg", "z_pred": ""})
    b = MergeInput("b.csv", {}, no_rows, {})  # a format or input that records none
    assert kept_units([b, a], ["ra", "survey"]) == {"ra": "deg"}
    with pytest.raises(MergeError, match="'ra' the unit 'rad', but a.fits 'deg'"):
        kept_units([a, MergeInput("c.ecsv", {}, no_rows, {"ra": "rad"})], ["ra"])


@pytest.mark.parametrize("suffix", ["fits", "ecsv", "parquet"])
def test_a_merge_into_fits_ecsv_or_parquet_is_written_in_chunks_so_memory_does_not_grow_with_the_rows(tmp_path, suffix):
    """60,000 and 300,000 merged rows (both above one 20,000-row chunk): peak RSS differs by far less than the rows' size."""
    peaks = _merge_peaks(tmp_path, (30_000, 150_000), "csv", suffix)
    # 240,000 more rows held as a table would be ~100 MB more; in chunks, the same one chunk's worth
    assert peaks[150_000] - peaks[30_000] < 25, peaks


@pytest.mark.parametrize("suffix", ["fits", "ecsv", "parquet"])
def test_fits_ecsv_and_parquet_inputs_are_read_a_chunk_at_a_time(tmp_path, suffix):
    """Two inputs of 40,000 and of 160,000 rows each in one format, merged to CSV: peak RSS hardly differs."""
    peaks = _merge_peaks(tmp_path, (40_000, 160_000), suffix, "csv")
    # each input held whole would be ~20 MB (FITS) to ~100 MB (ECSV, as astropy parses it) more at 160,000 rows
    assert peaks[160_000] - peaks[40_000] < 20, peaks
