"""Every cutout layout cai-edge reads, written with astropy the way cutout services and other tools
write them, gives the same redshifts as the same galaxies as plain 5-band cubes (images are
simulated from real SDSS photometry: the shipped examples)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from cai_edge.io import status
from cai_edge.io.catalog import Catalog, CatalogError
from cai_edge.io.inputs import iter_galaxies
from cai_edge.io.npz_partitions import write_npz_partition
from cai_edge.photometry import BANDS
from cai_edge.predictor import Predictor

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
N = 6


@pytest.fixture(scope="module")
def galaxies():
    """Six example galaxies: ids (19-digit SDSS-like objIDs), (5,64,64) nanomaggy cubes, magnitudes, z_spec."""
    cubes, mags, zs = [], [], []
    for path in sorted(EXAMPLES.glob("*.fits"))[:N]:
        with fits.open(path) as hdul:
            cubes.append(np.array(hdul[1].data, dtype=np.float32))
            mags.append([hdul[1].header[f"MAG_{b.upper()}"] for b in BANDS])
            zs.append(hdul[1].header["Z_SPEC"])
    ids = [str(1237657070631829514 + 7 * i) for i in range(N)]
    return ids, np.stack(cubes), np.asarray(mags, dtype=np.float64), np.asarray(zs)


@pytest.fixture(scope="module")
def predictor():
    return Predictor()


def redshifts(predictor, inputs, catalog=None) -> dict[str, float]:
    records = list(iter_galaxies(inputs, catalog))
    bad = [(r.id, r.status, r.message) for r in records if not r.ok]
    assert not bad, bad
    z = predictor.predict_prepared(np.stack([r.image for r in records]), np.stack([r.magnitudes for r in records]))
    return dict(zip([r.id for r in records], z.tolist()))


@pytest.fixture(scope="module")
def plain(tmp_path_factory, galaxies, predictor):
    """The reference: one plain (5,64,64) cube per file, magnitudes in the header."""
    ids, cubes, mags, zs = galaxies
    folder = tmp_path_factory.mktemp("plain")
    for gid, cube, m, z in zip(ids, cubes, mags, zs):
        hdu = fits.PrimaryHDU(cube)
        hdu.header["BUNIT"] = "nanomaggy"
        for b, v in zip(BANDS, m):
            hdu.header[f"MAG_{b.upper()}"] = v
        hdu.writeto(folder / f"{gid}.fits")
    z = redshifts(predictor, [folder])
    assert len(z) == N
    return z


def assert_same(found: dict[str, float], plain: dict[str, float]) -> None:
    assert sorted(found) == sorted(plain)
    assert max(abs(found[k] - plain[k]) for k in plain) <= 1e-6


def _mag_cards(header, m) -> None:
    for b, v in zip(BANDS, m):
        header[f"MAG_{b.upper()}"] = (float(v), f"{b} magnitude")


@pytest.mark.parametrize("named_by", ["EXTNAME", "FILTER", "BAND"])
def test_one_band_per_extension(tmp_path, galaxies, plain, predictor, named_by):
    ids, cubes, mags, _ = galaxies
    order = [3, 0, 4, 1, 2]  # services do not all write u first
    for gid, cube, m in zip(ids, cubes, mags):
        primary = fits.PrimaryHDU()
        _mag_cards(primary.header, m)
        hdus = [primary]
        for j in order:
            ext = fits.ImageHDU(cube[j], name=BANDS[j].upper() if named_by == "EXTNAME" else "SCI")
            if named_by != "EXTNAME":
                ext.header[named_by] = f"SDSS {BANDS[j]}" if named_by == "FILTER" else BANDS[j]
            ext.header["BUNIT"] = "nanomaggy"
            hdus.append(ext)
        fits.HDUList(hdus).writeto(tmp_path / f"{gid}.fits")
    assert_same(redshifts(predictor, [tmp_path]), plain)


def test_band_extensions_in_microjansky_are_converted(tmp_path, galaxies, plain, predictor):
    ids, cubes, mags, _ = galaxies
    for gid, cube, m in zip(ids, cubes, mags):
        primary = fits.PrimaryHDU()
        _mag_cards(primary.header, m)
        primary.header["BUNIT"] = "uJy"  # declared once, in the primary header
        exts = [fits.ImageHDU(cube[j].astype(np.float64) * 3.631, name=b) for j, b in enumerate(BANDS)]
        fits.HDUList([primary, *exts]).writeto(tmp_path / f"{gid}.fits")
    found = redshifts(predictor, [tmp_path])
    assert max(abs(found[k] - plain[k]) for k in plain) <= 1e-5  # float64 µJy → float32 nanomaggies rounds


def test_band_extensions_that_are_not_five_say_which_are_missing(tmp_path, galaxies):
    ids, cubes, mags, _ = galaxies
    primary = fits.PrimaryHDU()
    _mag_cards(primary.header, mags[0])
    fits.HDUList([primary, *(fits.ImageHDU(cubes[0][j], name=b) for j, b in enumerate(BANDS) if b in "gri")]).writeto(tmp_path / "x.fits")
    (record,) = iter_galaxies([tmp_path / "x.fits"])
    assert record.status == status.MISSING_BANDS
    assert "u,g,r,i,z" in record.message and "missing: u,z" in record.message


@pytest.mark.parametrize("pattern", ["{id}-{b}.fits", "{id}_{B}.fits", "{id}.{b}.fits", "{b}/{id}.fits", "{B}/{id}.fits"])
def test_band_files_by_name_or_folder(tmp_path, galaxies, plain, predictor, pattern):
    ids, cubes, mags, _ = galaxies
    for gid, cube, m in zip(ids, cubes, mags):
        for j, b in enumerate(BANDS):
            path = tmp_path / pattern.format(id=gid, b=b, B=b.upper())
            path.parent.mkdir(exist_ok=True)
            hdu = fits.PrimaryHDU(cube[j])
            hdu.header["FILTER"] = b
            _mag_cards(hdu.header, m)
            hdu.writeto(path)
    records = list(iter_galaxies([tmp_path]))
    assert len(records) == N and {r.status for r in records} == {status.OK}
    assert_same(redshifts(predictor, [tmp_path]), plain)
    if "/" in pattern:
        assert records[0].source.endswith(f"[ugriz]/{records[0].id}.fits")


def _band_file(path: Path, plane: np.ndarray, band: str, mags) -> None:
    path.parent.mkdir(exist_ok=True)
    hdu = fits.PrimaryHDU(plane)
    hdu.header["FILTER"] = band
    _mag_cards(hdu.header, mags)
    hdu.writeto(path)


def _summary_equals_output(err: str, out: Path) -> tuple[int, int]:
    """``(ok, failed)`` of the run's summary line, after checking that they are the rows its output holds."""
    import re

    from cai_edge.results.files import read_results

    ok, failed, rows = (int(v) for v in re.search(r"(\d+) ok, (\d+) failed, 0 skipped .* (\d+) rows:", err).groups())
    table = read_results(out)
    assert ok + failed == rows == len(table) and ok == sum(table["status"] == "ok"), (err, list(table["source"]))
    return ok, failed


@pytest.mark.parametrize("names", [("{id}_{b}", "{id}-{b}"), ("{id}-{b}", "{id}.{b}"), ("{id}_{b}", "{id}_{B}"), ("{id}_{b}", "{b}/{id}")])
def test_band_files_of_one_id_named_two_ways_are_two_galaxies_and_the_summary_is_the_output(tmp_path, galaxies, capsys, names):
    """Item 5 (issue 30): h_u … h_z (galaxy A) and h-u … h-z (galaxy B) in one folder were both read with the source
    h_[ugriz] and merged into one row (summary: 2 ok). Each naming is a group of its own with its own source; the
    second is a duplicate_id row naming the first; mixed namings inside one galaxy's files are two incomplete groups."""
    _, cubes, mags, _ = galaxies
    for k, pattern in enumerate(names):
        for j, b in enumerate(BANDS):
            _band_file(tmp_path / "two" / (pattern.format(id="h", b=b, B=b.upper()) + ".fits"), cubes[k][j], b, mags[k])
    for j, b in enumerate(BANDS):  # u, g named one way, r, i, z the other
        _band_file(tmp_path / "mixed" / (names[j > 1].format(id="h", b=b, B=b.upper()) + ".fits"), cubes[0][j], b, mags[0])
    sources = [str(tmp_path / "two" / p.format(id="h", b="[ugriz]", B="[UGRIZ]")) + (".fits" if "/" in p else "") for p in names]
    two = list(iter_galaxies([tmp_path / "two"]))
    assert sorted(r.status for r in two) == [status.DUPLICATE_ID, status.OK] and sorted(r.source for r in two) == sorted(sources)
    (ok,) = [r for r in two if r.ok]
    (duplicate,) = [r for r in two if not r.ok]
    assert np.allclose(ok.magnitudes, mags[sources.index(ok.source)])  # one galaxy's own five files, nothing mixed
    assert f"id also read from {ok.source}" in duplicate.message
    assert ("two galaxies: name the five files of one galaxy alike" in duplicate.message) == ("/" not in names[1])
    assert _cli(tmp_path / "two", "--out", tmp_path / "two.csv") == 1
    assert _summary_equals_output(capsys.readouterr().err, tmp_path / "two.csv") == (1, 1)
    mixed = list(iter_galaxies([tmp_path / "mixed"]))
    assert not any(r.ok for r in mixed) and len(mixed) == len({r.source for r in mixed}) == 2
    assert _cli(tmp_path / "mixed", "--out", tmp_path / "mixed.csv") == 1
    assert _summary_equals_output(capsys.readouterr().err, tmp_path / "mixed.csv") == (0, 2)


def test_a_lone_cube_named_like_a_band_file_is_still_a_cube(tmp_path, galaxies, plain, predictor):
    ids, cubes, mags, _ = galaxies
    hdu = fits.PrimaryHDU(cubes[0])
    _mag_cards(hdu.header, mags[0])
    hdu.writeto(tmp_path / "NGC4-g.fits")
    (record,) = iter_galaxies([tmp_path])
    assert record.ok and record.id == "NGC4-g"


def _galaxy_table(ids, mags, zs, mag_name="modelMag_{b}", with_mags=True, z_name="z") -> Table:
    table = Table()
    table["objID"] = np.asarray([int(i) for i in ids], dtype=np.int64)
    table["ra"] = np.linspace(150.0, 150.1, len(ids))
    table["dec"] = np.linspace(2.0, 2.1, len(ids))
    if with_mags:
        for j, b in enumerate(BANDS):
            table[mag_name.format(b=b)] = mags[:, j]
            table[mag_name.format(b=b)].unit = "mag"
    table[z_name] = zs
    return table


def test_an_n_galaxy_cube_with_its_catalog_table(tmp_path, galaxies, plain, predictor):
    ids, cubes, mags, zs = galaxies
    image = fits.PrimaryHDU(cubes)
    image.header["BUNIT"] = "nanomaggy"
    fits.HDUList([image, fits.table_to_hdu(_galaxy_table(ids, mags, zs))]).writeto(tmp_path / "field.fits")
    records = list(iter_galaxies([tmp_path / "field.fits"]))
    assert [r.id for r in records] == ids and [r.source for r in records][1].endswith("field.fits[1]")
    assert np.allclose([r.z_spec for r in records], zs)
    assert_same(redshifts(predictor, [tmp_path]), plain)


def test_an_n_galaxy_cube_with_magnitudes_from_the_catalog(tmp_path, galaxies, plain, predictor):
    ids, cubes, mags, zs = galaxies
    data = tmp_path / "data"
    data.mkdir()
    table = _galaxy_table(ids, mags, zs, with_mags=False)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cubes, name="CUTOUTS"), fits.table_to_hdu(table)]).writeto(data / "field.fits")
    catalog = _galaxy_table(ids, mags, zs, mag_name="dered_{b}")
    catalog.rename_column("objID", "objid")
    catalog.meta["MAGSYS"] = "sdss_model"
    catalog.write(tmp_path / "cat.ecsv")
    assert_same(redshifts(predictor, [data], Catalog.read(tmp_path / "cat.ecsv")), plain)
    # without the catalog, every galaxy says where magnitudes can come from
    records = list(iter_galaxies([data]))
    assert len(records) == N and all(r.status == status.MISSING_MAGNITUDES and "--catalog" in r.message for r in records)


def test_a_partition_written_by_another_tool_with_catalog_style_columns(tmp_path, galaxies, plain, predictor):
    ids, cubes, mags, zs = galaxies
    table = _galaxy_table(ids, mags, zs, mag_name="{b}", z_name="redshift")  # u … z columns: "z" is a band here
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cubes, name="IMAGES"),
                  fits.table_to_hdu(table)]).writeto(tmp_path / "part-000.fits")
    records = list(iter_galaxies([tmp_path]))
    assert [r.id for r in records] == ids and np.allclose([r.z_spec for r in records], zs)
    assert_same(redshifts(predictor, [tmp_path]), plain)


def test_partitions_of_cutouts_larger_than_32_are_centre_cropped(tmp_path, galaxies, plain, predictor):
    ids, cubes, mags, zs = galaxies
    write_npz_partition(tmp_path / "p.npz", cubes, mags.astype(np.float32), ids, zs)
    assert_same(redshifts(predictor, [tmp_path / "p.npz"]), plain)
    from cai_edge.io.partitions import write_fits_partition

    write_fits_partition(tmp_path / "p.fits", cubes, mags.astype(np.float32), ids, zs)
    assert_same(redshifts(predictor, [tmp_path / "p.fits"]), plain)


def test_a_cube_of_three_bands_says_the_model_needs_ugriz(tmp_path, galaxies):
    _, cubes, mags, _ = galaxies
    for name, declared in (("grz", "grz"), ("plain3", None)):
        hdu = fits.PrimaryHDU(cubes[0][[1, 2, 4]])
        if declared:
            hdu.header["BANDS"] = declared
        _mag_cards(hdu.header, mags[0])
        hdu.writeto(tmp_path / f"{name}.fits")
    for record in iter_galaxies([tmp_path]):
        assert record.status == status.BAD_SHAPE
        assert "u,g,r,i,z" in record.message and "Legacy Survey" in record.message
        if record.id == "grz":
            assert "missing: u,i" in record.message


def test_an_odd_sized_cutout_is_read_with_a_note(tmp_path, galaxies):
    _, cubes, mags, _ = galaxies
    for size in (33, 34):
        hdu = fits.PrimaryHDU(cubes[0][:, :size, :size])
        _mag_cards(hdu.header, mags[0])
        hdu.writeto(tmp_path / f"c{size}.fits")
    records = {r.id: r for r in iter_galaxies([tmp_path])}
    assert records["c33"].ok and "half a pixel off" in records["c33"].message and "34×34" in records["c33"].message
    assert records["c34"].ok and records["c34"].message == ""


def test_a_magnitude_column_in_flux_units_is_refused(tmp_path, galaxies):
    ids, cubes, mags, zs = galaxies
    catalog = _galaxy_table(ids, mags, zs, mag_name="mag_{b}")
    catalog["mag_r"] = 10 ** ((23.9 - mags[:, 2]) / 2.5)
    catalog["mag_r"].unit = "uJy"
    catalog.write(tmp_path / "cat.ecsv")
    with pytest.raises(CatalogError, match="mag_r has unit uJy, a flux, not a magnitude"):
        Catalog.read(tmp_path / "cat.ecsv")
    # the same in a table beside an N-galaxy cube: the file's galaxies are refused, with the reason
    fits.HDUList([fits.PrimaryHDU(cubes), fits.table_to_hdu(catalog)]).writeto(tmp_path / "field.fits")
    (record,) = iter_galaxies([tmp_path / "field.fits"])
    assert record.status == status.BAD_SHAPE and "uJy" in record.message


def test_header_and_catalog_magnitudes_that_disagree_are_flagged(tmp_path, galaxies, predictor):
    from cai_edge.estimates import estimate

    ids, cubes, mags, zs = galaxies
    for gid, cube, m in zip(ids[:3], cubes, mags):
        hdu = fits.PrimaryHDU(cube)
        _mag_cards(hdu.header, m)
        hdu.writeto(tmp_path / f"{gid}.fits")
    shifted = mags[:3].copy()
    shifted[1, 2] += 0.6  # galaxy 1: r differs by 0.6 mag
    shifted[2] += 0.3  # galaxy 2: every band 0.3 mag fainter, within the tolerance
    table = Table({"id": ids[:3], **{f"mag_{b}": shifted[:, j] for j, b in enumerate(BANDS)}})
    table.write(tmp_path / "cat.csv")
    records = list(iter_galaxies([tmp_path / f"{i}.fits" for i in ids[:3]], Catalog.read(tmp_path / "cat.csv")))
    assert [r.flags for r in records] == [(), ("magnitude_conflict",), ()]
    assert "differ from --catalog's by up to 0.60 mag (r band); --catalog's were used" in records[1].message
    assert np.allclose(records[1].magnitudes, shifted[1], atol=1e-5)  # the catalog wins
    rows = [e.row() for e in estimate(predictor, records, 8)]
    assert [r[10] for r in rows] == ["1", "0", "1"] and "magnitude_conflict" in rows[1][12], [r[12] for r in rows]


def _cli(*args) -> int:
    from cai_edge.cli import main

    return main(["predict", *map(str, args), "--quiet"])


def test_keep_columns_carries_catalog_and_table_columns_into_every_format(tmp_path, galaxies, plain, capsys):
    ids, cubes, mags, zs = galaxies
    fits.HDUList([fits.PrimaryHDU(cubes[:3]), fits.table_to_hdu(_galaxy_table(ids[:3], mags[:3], zs[:3]))]).writeto(tmp_path / "field.fits")
    cutouts = tmp_path / "cutouts"
    cutouts.mkdir()
    for gid, cube, m in zip(ids[3:], cubes[3:], mags[3:]):
        hdu = fits.PrimaryHDU(cube)
        _mag_cards(hdu.header, m)
        hdu.writeto(cutouts / f"{gid}.fits")
    catalog = _galaxy_table(ids[3:], mags[3:], zs[3:], mag_name="mag_{b}")
    catalog["ra"] += 10  # told apart from the field's
    catalog["ra"].unit = catalog["dec"].unit = "deg"
    catalog["survey"] = ["SDSS", "SDSS", "BOSS"]
    catalog.write(tmp_path / "cat.ecsv")
    for suffix in ("csv", "fits", "ecsv", "parquet"):
        out = tmp_path / f"out.{suffix}"
        assert _cli(tmp_path / "field.fits", cutouts, "--catalog", tmp_path / "cat.ecsv", "--keep-columns", "ra,dec,survey", "--out", out) == 0
        table = Table.read(out) if suffix != "csv" else Table.read(out, converters={"id": str})
        table = table[np.argsort([str(i) for i in table["id"]])]
        assert [str(i) for i in table["id"]] == sorted(ids)
        expected_ra = {**dict(zip(ids[:3], np.linspace(150.0, 150.1, 3))), **dict(zip(ids[3:], np.linspace(160.0, 160.1, 3)))}
        assert np.allclose(np.asarray(table["ra"], dtype=float), [expected_ra[str(i)] for i in table["id"]])
        assert table.colnames[-3:] == ["ra", "dec", "survey"], table.colnames
        if suffix in ("fits", "ecsv", "parquet"):  # the catalog's unit comes along (CSV: in its sidecar)
            assert table["ra"].unit == "deg", (suffix, table["ra"].unit)
        else:
            assert '"schema:unitText": "deg"' in (tmp_path / "out.csv-metadata.json").read_text()
        by_id = dict(zip([str(i) for i in table["id"]], [str(s) for s in table["survey"]]))
        assert by_id[ids[5]] == "BOSS" and by_id[ids[0]] in ("", "--", "nan")  # the field's table has no survey
        assert np.max(np.abs(np.asarray(table["z_pred"], dtype=float) - [plain[str(i)] for i in table["id"]])) <= 1e-6
    # cai-edge merge (issue 32) carries the kept columns' units from every input format into every output format
    from cai_edge.cli import main

    outputs = [str(tmp_path / f"out.{suffix}") for suffix in ("csv", "fits", "ecsv", "parquet")]
    for suffix in ("csv", "fits", "ecsv", "parquet"):
        merged = tmp_path / f"merged.{suffix}"
        assert main(["merge", *outputs, "--out", str(merged)]) in (0, 1)
        if suffix == "csv":
            assert '"schema:unitText": "deg"' in (tmp_path / "merged.csv-metadata.json").read_text()
        else:
            assert Table.read(merged)["ra"].unit == "deg" and Table.read(merged)["dec"].unit == "deg", suffix
    capsys.readouterr()
    # --resume keeps the columns it was started with
    assert _cli(tmp_path / "field.fits", "--keep-columns", "ra", "--out", tmp_path / "out.csv", "--resume") == 2
    assert "--keep-columns ra,dec,survey" in capsys.readouterr().err
    # a name no input has: an empty column and a warning, not silence
    assert _cli(tmp_path / "field.fits", "--keep-columns", "nosuch", "--out", tmp_path / "w.csv") == 0
    assert "--keep-columns nosuch: no input of this run has it" in capsys.readouterr().err
    # a result column cannot be overwritten by an input column
    with pytest.raises(SystemExit) as exit_:
        _cli(tmp_path / "field.fits", "--keep-columns", "ra,z_pred", "--out", tmp_path / "x.csv")
    assert exit_.value.code == 2 and "z_pred is a result column" in capsys.readouterr().err


def test_ids_from_file_names_a_format_cannot_hold_are_refused_before_the_run(tmp_path, galaxies, capsys):
    """An id known from its file name (a cutout's stem, a band group's id) that the output format cannot hold stops the
    run before any galaxy is read, naming the id, its file and the formats that hold it; the same inputs to CSV run."""
    ids, cubes, mags, _ = galaxies
    cutouts, bands = tmp_path / "cutouts", tmp_path / "bands"
    cutouts.mkdir(), bands.mkdir()
    for name, cube, m in (("plain", cubes[0], mags[0]), ("déclinaison", cubes[1], mags[1])):
        hdu = fits.PrimaryHDU(cube)
        _mag_cards(hdu.header, m)
        hdu.writeto(cutouts / f"{name}.fits")
    for b, plane in zip(BANDS, cubes[2]):
        hdu = fits.PrimaryHDU(plane)
        _mag_cards(hdu.header, mags[2])
        hdu.writeto(bands / f"céleste_{b}.fits")
    for folder, gid, source in ((cutouts, "déclinaison", "cutouts/déclinaison.fits)"), (bands, "céleste", "bands/céleste)")):
        assert _cli(folder, "--out", tmp_path / "z.fits") == 2
        err = capsys.readouterr().err
        assert f"the id {ascii(gid)}" in err and source in err and "cannot be written to FITS" in err, err
        assert "Write .csv, .parquet, .ecsv instead" in err, err
        assert not (tmp_path / "z.fits").exists() and not (tmp_path / ".z.fits.spool").exists()
        assert _cli(folder, "--out", tmp_path / f"{folder.name}.csv") == 0
        assert gid in (tmp_path / f"{folder.name}.csv").read_text(encoding="utf-8")


def test_keep_columns_a_format_cannot_name_are_refused_before_the_run(tmp_path, galaxies, capsys):
    """Item 7 (issue 30): a non-ASCII or 90-character --keep-columns name with --out z.fits predicted every galaxy,
    then crashed (no output, the spool left, --resume the same). Refused now before any work, in every format
    that cannot hold it; the formats that can carry the column and read its name back exactly."""
    from cai_edge.results.files import read_results

    ids, cubes, mags, zs = galaxies
    for gid, cube, m in zip(ids[:2], cubes[:2], mags[:2]):
        hdu = fits.PrimaryHDU(cube)
        _mag_cards(hdu.header, m)
        hdu.writeto(tmp_path / f"{gid}.fits")
    catalog = _galaxy_table(ids[:2], mags[:2], zs[:2], mag_name="mag_{b}")
    long_name, accented = "x" * 90, "décl"
    catalog[long_name], catalog[accented] = [1.5, 2.5], ["a", "b"]
    catalog.write(tmp_path / "cat.ecsv")
    for name in (long_name, accented, "x" * 60 + "'" * 5):  # a quote takes two characters of the card
        for resume in ([], ["--resume"]):
            assert _cli(tmp_path, "--catalog", tmp_path / "cat.ecsv", "--keep-columns", f"ra,{name}", "--out", tmp_path / "z.fits", *resume) == 2
            err = capsys.readouterr().err
            assert "FITS cannot hold this column name" in err and "write .csv, .parquet, .ecsv instead" in err, err
            assert not (tmp_path / "z.fits").exists() and not (tmp_path / ".z.fits.spool").exists()
    for suffix in ("csv", "ecsv", "parquet"):
        out = tmp_path / f"z.{suffix}"
        assert _cli(tmp_path, "--catalog", tmp_path / "cat.ecsv", "--keep-columns", f"{long_name},{accented}", "--out", out) == 0
        table = read_results(out)
        assert table.colnames[-2:] == [long_name, accented] and list(table[accented]) == ["a", "b"], (suffix, table.colnames)
    assert _cli(tmp_path, "--keep-columns", "r\ta", "--out", tmp_path / "t.csv") == 2  # in no format
    assert "must be printable" in capsys.readouterr().err


def test_a_boolean_kept_column_stays_boolean_in_every_format(tmp_path, galaxies):
    """Item 9 (issue 30): a boolean --keep-columns column came back as the text 'True'/'False' in Parquet and FITS.
    It is a boolean column in every format (CSV: True/False, read back as booleans); one with a missing cell
    stays text in every format, as FITS has no missing boolean (astropy would write it as True)."""
    from astropy.table import MaskedColumn

    from cai_edge.results.files import read_results

    ids, cubes, mags, zs = galaxies
    (tmp_path / "in").mkdir()
    for gid, cube, m in zip(ids[:3], cubes[:3], mags[:3]):
        hdu = fits.PrimaryHDU(cube)
        _mag_cards(hdu.header, m)
        hdu.writeto(tmp_path / "in" / f"{gid}.fits")
    catalog = _galaxy_table(ids[:3], mags[:3], zs[:3], mag_name="mag_{b}")
    catalog["sel"] = [True, False, True]
    catalog["part"] = MaskedColumn([True, False, True], mask=[False, False, True])
    catalog.write(tmp_path / "cat.ecsv")
    for suffix in ("csv", "ecsv", "fits", "parquet"):
        out = tmp_path / f"z.{suffix}"
        assert _cli(tmp_path / "in", "--catalog", tmp_path / "cat.ecsv", "--keep-columns", "sel,part", "--out", out) == 0
        table = read_results(out)
        table = table[np.argsort(list(table["id"]))]
        assert table["sel"].dtype == bool and list(table["sel"]) == [True, False, True], (suffix, table["sel"])
        assert table["part"].dtype.kind == "U" and list(table["part"]) == ["True", "False", ""], (suffix, table["part"])
        if suffix != "csv":
            assert Table.read(out)["sel"].dtype == bool, suffix  # as other tools read it


@pytest.mark.parametrize("cards, flagged", [
    ({"PIXSCALE": 0.262}, True),  # DECaLS pixels
    ({"PIXSCALE": 0.396}, False),
    ({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CD1_1": -0.168 / 3600, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 0.168 / 3600}, True),
    ({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CDELT1": -0.396 / 3600, "CDELT2": 0.396 / 3600}, False),
    ({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CDELT1": -0.6 / 3600, "CDELT2": 0.6 / 3600, "PC1_1": 1.0, "PC2_2": 1.0}, True),
    ({"CTYPE1": "PIXEL", "CDELT1": 5.0, "CDELT2": 5.0}, False),  # not a sky WCS: nothing declared
    ({}, False),
])
def test_a_declared_pixel_scale_far_from_sdss_is_flagged_with_a_note(tmp_path, galaxies, cards, flagged):
    from cai_edge.estimates import estimate

    ids, cubes, mags, _ = galaxies
    hdu = fits.PrimaryHDU(cubes[0])
    hdu.header["BUNIT"] = "nanomaggy"
    _mag_cards(hdu.header, mags[0])
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(tmp_path / "g.fits")
    [record] = list(iter_galaxies([tmp_path]))
    assert record.ok and (("image_out_of_domain" in record.flags) == flagged)
    assert ("resample the cutout to 0.396″/px" in record.message) == flagged
    [row] = estimate(Predictor(), [record], 8)
    assert row.record.ok and ("image_out_of_domain" in row.record.flags) == flagged


def test_an_n_galaxy_cube_declaring_decals_pixels_flags_every_galaxy(tmp_path, galaxies):
    """The pixel-scale check reads an N-galaxy cube's own header, as it does a single cutout's."""
    ids, cubes, mags, zs = galaxies
    for name, scale in (("decals.fits", 0.262), ("sdss.fits", 0.396)):
        image = fits.PrimaryHDU(cubes)
        image.header["BUNIT"], image.header["PIXSCALE"] = "nanomaggy", scale
        fits.HDUList([image, fits.table_to_hdu(_galaxy_table(ids, mags, zs))]).writeto(tmp_path / name)
        records = list(iter_galaxies([tmp_path / name]))
        assert len(records) == N and all(r.ok for r in records)
        flagged = ["image_out_of_domain" in r.flags and "resample the cutout" in r.message for r in records]
        assert flagged == [scale == 0.262] * N, name
