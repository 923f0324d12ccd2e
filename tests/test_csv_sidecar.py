"""The default CSV opens with no arguments; its provenance is in a sidecar; the older ``#``-line form still resumes and reads."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from cai_edge.pdfs import read_quantiles
from cai_edge.results.csv_sidecar import csv_metadata, sidecar_path
from cai_edge.results.files import read_identity, read_results
from cai_edge.results.rows import provenance_lines
from result_helpers import predict_process, write_partitions


def _older_form(out: Path, keep_rows: int | None = None) -> Path:
    """The same output as an earlier cai-edge wrote it: ``# key: value`` lines (its own writer, still used by the
    Lambda summary) above the header, and no sidecar."""
    meta = {k: v for k, v in json.loads(sidecar_path(out).read_text())["cai_edge"].items() if k != "flag_bits"}
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    header = lines[0].strip().split(",")
    body = lines[: 1 + keep_rows] if keep_rows is not None else lines
    out.write_text(provenance_lines(meta, header) + "".join(body), encoding="utf-8", newline="")
    sidecar_path(out).unlink()
    return out


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _inputs(folder: Path) -> None:
    """10 example cutouts, 2 of them in counts (flagged), and one unreadable file (a row not ok)."""
    from astropy.io import fits

    folder.mkdir()
    for k, path in enumerate(sorted(EXAMPLES.glob("*.fits"))[:10]):
        with fits.open(path) as hdul:
            if k < 2:
                hdul[1].data = hdul[1].data * 200.0
            hdul.writeto(folder / path.name)
    (folder / "broken.fits").write_bytes(b"SIMPLE  = not a FITS file")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("csv")
    _inputs(tmp / "in")
    out = tmp / "z.csv"
    assert predict_process(tmp / "in", "--out", out, "--pdf").returncode in (0, 1)
    fits_out = tmp / "z.fits"
    assert predict_process(tmp / "in", "--out", fits_out, "--pdf").returncode in (0, 1)
    return tmp, out, fits_out


def test_pandas_and_astropy_open_the_default_csv_with_no_arguments_and_count_the_fits_usable_rows(run):
    import pandas as pd
    from astropy.table import Table

    _, out, fits_out = run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits_usable = int(np.sum(Table.read(fits_out)["usable"] == 1))
        table = Table.read(out)
    frame = pd.read_csv(out)
    assert 0 < fits_usable <= 8
    assert int(np.sum(table["usable"] == 1)) == int((frame["usable"] == 1).sum()) == fits_usable
    assert len(table) == len(frame) == 11 and not out.read_text().startswith("#")
    meta = csv_metadata(out)
    assert meta["bundle"] == "astromae-sdss-int8" and len(meta["bundle_sha256"]) == 64 and meta["z_quantile_levels"].startswith("0.0 ")


def test_ids_stay_text_in_every_reader(run):
    from astropy.table import Table

    _, out, fits_out = run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits_table = Table.read(fits_out)
    assert all(isinstance(i, str) for i in fits_table["id"])  # astropy decodes FITS text on access
    # FITS holds bytes: pandas gets text from astropy's documented switch (docs/results.md shows it)
    assert all(isinstance(i, str) for i in Table.read(fits_out, character_as_bytes=False).to_pandas()["id"])
    import pandas as pd

    assert all(isinstance(i, str) for i in pd.read_csv(out, dtype={"id": str})["id"])
    for path in (out, fits_out):
        assert all(isinstance(i, str) for i in read_results(path)["id"])


def _copy(out: Path, folder: Path) -> Path:
    folder.mkdir()
    (folder / out.name).write_bytes(out.read_bytes())
    sidecar_path(folder / out.name).write_bytes(sidecar_path(out).read_bytes())
    return folder / out.name


def test_older_form_csv_reads_and_resumes_into_the_new_form(run, tmp_path):
    tmp, out, _ = run
    new = read_results(out)
    old = _older_form(_copy(out, tmp_path / "old"))
    assert old.read_text().startswith("# bundle: astromae-sdss-int8") and not sidecar_path(old).exists()
    assert read_identity(old) == read_identity(out)
    assert list(read_results(old)["id"]) == list(new["id"]) and np.array_equal(read_results(old)["usable"], new["usable"])
    ids_old, levels_old, q_old = read_quantiles(old)
    ids_new, levels_new, q_new = read_quantiles(out)
    assert list(ids_old) == list(ids_new) and np.array_equal(levels_old, levels_new) and np.array_equal(q_old, q_new)
    partial = _older_form(_copy(out, tmp_path / "part"), keep_rows=4)
    proc = predict_process(tmp / "in", "--out", partial, "--pdf", "--resume")
    assert proc.returncode in (0, 1), proc.stderr
    assert "4 skipped (already done)" in proc.stderr
    assert not partial.read_text().startswith("#") and sidecar_path(partial).exists()  # rewritten in the new form
    assert sorted(read_results(partial)["id"]) == sorted(new["id"])


def test_a_file_where_the_sidecar_goes_that_cai_edge_did_not_write_is_never_replaced(tmp_path):
    write_partitions(tmp_path / "in", 1, 3)
    foreign = tmp_path / "z.csv-metadata.json"
    foreign.write_text('{"someone": "else"}')
    proc = predict_process(tmp_path / "in", "--out", tmp_path / "z.csv")
    assert proc.returncode == 2 and "is not metadata cai-edge wrote" in proc.stderr
    assert foreign.read_text() == '{"someone": "else"}' and not (tmp_path / "z.csv").exists()


def test_a_stale_sidecar_never_makes_someone_elses_csv_replaceable(tmp_path):
    """A sidecar left from an earlier output does not vouch for a CSV someone wrote there since; a cai-edge CSV moved
    without its sidecar is refused with the advice to move the two together, and with it is replaced as before."""
    write_partitions(tmp_path / "in", 1, 3)
    out = tmp_path / "z.csv"
    assert predict_process(tmp_path / "in", "--out", out).returncode in (0, 1)
    out.write_text("name,value\nmine,1\n")  # the user's own table, where the output was
    proc = predict_process(tmp_path / "in", "--out", out)
    assert proc.returncode == 2 and "not a cai-edge result" in proc.stderr, proc.stderr
    assert out.read_text() == "name,value\nmine,1\n"
    moved = tmp_path / "moved.csv"
    assert predict_process(tmp_path / "in", "--out", tmp_path / "y.csv").returncode in (0, 1)
    (tmp_path / "y.csv").rename(moved)
    proc = predict_process(tmp_path / "in", "--out", moved, "--resume")
    assert proc.returncode == 2 and "move or copy the two together" in proc.stderr, proc.stderr
    sidecar_path(tmp_path / "y.csv").rename(sidecar_path(moved))
    proc = predict_process(tmp_path / "in", "--out", moved, "--resume")
    assert proc.returncode in (0, 1) and "3 skipped (already done)" in proc.stderr, proc.stderr
    # killed between writing the sidecar and the CSV (this run adds p(z)): the sidecar's columns are not the CSV's yet
    killed = predict_process(tmp_path / "in", "--out", moved, "--pdf", env={"CAI_EDGE_CRASH_AT": "output-written"})
    assert killed.returncode == -9 and "z_quantiles" in sidecar_path(moved).read_text() and "z_quantiles" not in moved.read_text()
    proc = predict_process(tmp_path / "in", "--out", moved, "--pdf", "--resume")
    assert proc.returncode in (0, 1), proc.stderr
    assert "z_quantiles" in moved.read_text().splitlines()[0]


def test_a_pdf_csv_copied_without_its_sidecar_says_where_its_levels_are(run, tmp_path):
    """The p(z) levels travel in the sidecar: a CSV copied alone is not 'an output without --pdf'."""
    from cai_edge.pdfs import PdfError

    _, out, _ = run
    alone = tmp_path / "alone.csv"
    alone.write_bytes(out.read_bytes())
    with pytest.raises(PdfError, match="alone.csv-metadata.json, which is not beside it"):
        read_quantiles(alone)
    sidecar_path(alone).write_bytes(sidecar_path(out).read_bytes())
    assert list(read_quantiles(alone)[0]) == list(read_quantiles(out)[0])


def test_outputs_joined_with_cat_read_and_resume_without_a_header_row(run, tmp_path):
    """``cat a.csv b.csv``: the second header line is not an object (it became a row 'id' with status 'status', kept
    by --resume, and read_results raised a bare ValueError); a cell edited to text is a clear OutputError."""
    from cai_edge.results.formats import OutputError

    tmp, out, _ = run
    joined = tmp_path / "joined.csv"
    joined.write_bytes(out.read_bytes() + out.read_bytes())
    sidecar_path(joined).write_bytes(sidecar_path(out).read_bytes())
    table = read_results(joined)
    assert len(table) == 2 * len(read_results(out)) and "id" not in list(table["id"])
    proc = predict_process(tmp / "in", "--out", joined, "--pdf", "--resume")
    assert proc.returncode in (0, 1), proc.stderr
    assert list(read_results(joined)["id"]) == list(read_results(out)["id"])  # one row per object, no header row
    lines = out.read_text().splitlines(keepends=True)
    edited = tmp_path / "edited.csv"
    first, source, _, rest = lines[1].split(",", 3)
    edited.write_text(lines[0] + f"{first},{source},abc,{rest}")
    sidecar_path(edited).write_bytes(sidecar_path(out).read_bytes())
    with pytest.raises(OutputError, match="column z_pred holds 'abc', not a number"):
        read_results(edited)
