"""Catalogs as archives hand them out: VOTable (astroquery, TAP) and SkyServer CSV (``#Table1``), same rules as CSV/FITS."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from cai_edge.io.catalog import Catalog, CatalogError
from cai_edge.results.files import read_results
from result_helpers import predict_process

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OBJIDS = [1237645879551066262, 1237645879551066263, 1237645879551066264]


def _sdss_table(names: list[str]) -> Table:
    """The first three examples' magnitudes under SDSS column names, with 19-digit objIDs as SkyServer gives them."""
    headers = [fits.getheader(p, 1) for p in sorted(EXAMPLES.glob("*.fits"))[:3]]
    table = Table({"objID": np.array(OBJIDS, dtype=np.int64)})
    for name, band in zip(names, "ugriz"):
        table[name] = [h[f"MAG_{band.upper()}"] for h in headers]
    table["z"] = [0.05, 0.06, 0.07]
    return table


def _skyserver_csv(table: Table, path: Path) -> Path:
    table.write(path, format="ascii.csv", overwrite=True)
    path.write_text("#Table1\n" + path.read_text())  # the line SkyServer's CSV download opens with
    return path


@pytest.mark.parametrize("suffix", ["xml", "vot", "skyserver.csv"])
def test_votable_and_skyserver_csv_give_the_same_catalog_as_fits(tmp_path, suffix):
    table = _sdss_table([f"modelMag_{b}" for b in "ugriz"])
    table.write(tmp_path / "ref.fits")
    path = tmp_path / f"cat.{suffix}"
    _skyserver_csv(table, path) if suffix.endswith("csv") else table.write(path, format="votable")
    got, ref = Catalog.read(path), Catalog.read(tmp_path / "ref.fits")
    assert sorted(got.entries) == sorted(ref.entries) == sorted(str(i) for i in OBJIDS)  # 19-digit ids exact, as text
    for gid, entry in ref.entries.items():
        assert np.array_equal(got.entries[gid].magnitudes, entry.magnitudes) and got.entries[gid].z_spec == entry.z_spec
        assert got.entries[gid].magnitude_system == "sdss_model"  # modelMag_u … imply SDSS model magnitudes


@pytest.mark.parametrize("suffix", ["xml", "skyserver.csv"])
def test_archive_catalogs_refuse_ambiguous_columns_as_the_other_formats_do(tmp_path, suffix):
    table = _sdss_table([f"modelMag_{b}" for b in "ugriz"])
    for b in "ugriz":
        table[f"petroMag_{b}"] = table[f"modelMag_{b}"] + 0.1
    path = tmp_path / f"cat.{suffix}"
    _skyserver_csv(table, path) if suffix.endswith("csv") else table.write(path, format="votable")
    with pytest.raises(CatalogError, match="2 sets of columns could be the magnitudes .* Say which with --columns mag_u=modelMag_u"):
        Catalog.read(path)
    assert Catalog.read(path, {f"mag_{b}": f"petroMag_{b}" for b in "ugriz"}).entries[str(OBJIDS[0])].magnitude_system == ""


def test_predict_reads_a_votable_catalog_for_its_cutouts(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    paths = sorted(EXAMPLES.glob("*.fits"))[:3]
    for path, objid in zip(paths, OBJIDS):
        shutil.copy(path, folder / f"{objid}.fits")
    _sdss_table([f"modelMag_{b}" for b in "ugriz"]).write(tmp_path / "cat.xml", format="votable")
    proc = predict_process(folder, "--catalog", tmp_path / "cat.xml", "--out", tmp_path / "z.csv")
    assert proc.returncode == 0, proc.stderr
    rows = read_results(tmp_path / "z.csv")
    assert sorted(rows["id"]) == sorted(str(i) for i in OBJIDS) and set(rows["status"]) == {"ok"}
    assert np.allclose(sorted(rows["z_spec"]), [0.05, 0.06, 0.07])


def _cubes(n: int = 3) -> np.ndarray:
    return np.stack([fits.getdata(p, 1).astype(np.float32) for p in sorted(EXAMPLES.glob("*.fits"))[:n]])


def test_the_python_api_says_how_to_map_columns_in_python_not_on_the_command_line():
    from cai_edge.errors import InputError
    from cai_edge.predictor import Predictor

    table = _sdss_table([f"modelMag_{b}" for b in "ugriz"])
    for b in "ugriz":
        table[f"petroMag_{b}"] = table[f"modelMag_{b}"]
    with pytest.raises(InputError, match=r"Say which with columns=\{'mag_u': 'modelMag_u', .*'mag_z': 'modelMag_z'\}") as info:
        Predictor().predict_table(_cubes(), table)
    assert "--columns" not in str(info.value)


def test_cmodel_magnitudes_are_refused_with_a_word_on_what_they_are():
    from cai_edge.predictor import Predictor

    rows = Predictor().predict_table(_cubes(), _sdss_table([f"cModelMag_{b}" for b in "ugriz"]))
    assert set(rows["status"]) == {"wrong_magnitude_system"}
    assert all("SDSS cModel magnitudes" in m and "SDSS model magnitudes as observed" in m and "magnitude_system='sdss_model'" in m
               for m in rows["message"])


def test_a_votable_naming_a_column_twice_is_refused_as_a_csv_header_is(tmp_path):
    """Two FIELDs named modelMag_u: astropy renamed the second modelMag_u2 and the first was read silently."""
    path = tmp_path / "cat.xml"
    table = _sdss_table([f"modelMag_{b}" for b in "ugriz"])
    table["modelMag_u_again"] = table["modelMag_u"] + 3.0
    table.write(path, format="votable", overwrite=True)
    path.write_text(path.read_text().replace('name="modelMag_u_again"', 'name="modelMag_u"'))
    with pytest.raises(CatalogError, match="names column\\(s\\) modelMag_u more than once"):
        Catalog.read(path)
