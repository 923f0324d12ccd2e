"""Header checks at the depth where a galaxy's planes and headers are assembled, in every layout; other
surveys' files named for what they are. Real FITS files written with astropy; images simulated from
real SDSS photometry (the shipped examples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from cai_edge.estimates import estimate
from cai_edge.io import status
from cai_edge.io.inputs import iter_galaxies
from cai_edge.photometry import BANDS
from cai_edge.predictor import Predictor
from layout_writers import FITS_LAYOUTS, example_galaxy, write_extensions, write_n_galaxy_cube

WCS = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN"}
PER_GALAXY_LAYOUTS = [name for name in FITS_LAYOUTS if name != "cube" and not name.startswith("N-galaxy")]


@pytest.fixture(scope="module")
def predictor():
    return Predictor()


def read_one(paths) -> "object":
    records = list(iter_galaxies(paths))
    assert len(records) == 1, [(r.id, r.status, r.message) for r in records]
    return records[0]


# item 1: the pixel-scale check runs on band headers (files, folders, extensions), not only on cubes
@pytest.mark.parametrize("layout", PER_GALAXY_LAYOUTS)
@pytest.mark.parametrize("cards, scale", [
    ({"PIXSCALE": 0.262}, "0.262″"),
    ({**WCS, "CD1_1": -0.25 / 3600, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 0.25 / 3600}, "0.25″"),
    ({**WCS, "CDELT1": -0.168 / 3600, "CDELT2": 0.168 / 3600}, "0.168″"),
])
def test_a_pixel_scale_in_band_headers_is_flagged_in_every_layout(tmp_path, layout, cards, scale):
    galaxy = example_galaxy(0)
    galaxy.cards = {"BUNIT": "nanomaggy", **cards}
    record = read_one(FITS_LAYOUTS[layout](tmp_path, galaxy))
    assert record.ok and record.flags == ("image_out_of_domain",), (record.flags, record.message)
    assert f"declares {scale} pixels" in record.message and "more than 1.3× from the 0.396″" in record.message
    assert "resample the cutout to 0.396″/px" in record.message


# item 2: an N-galaxy cube in an extension reads the primary header too
@pytest.mark.parametrize("scale, flagged", [(0.262, True), (0.396, False)])
def test_an_n_galaxy_cube_in_an_extension_reads_pixscale_from_the_primary_header(tmp_path, predictor, scale, flagged):
    galaxy = example_galaxy(1)
    galaxy.cards = {"PIXSCALE": scale, "BUNIT": "nanomaggy"}
    path = write_n_galaxy_cube(tmp_path, galaxy, in_extension=True)[0]
    with fits.open(path) as hdul:  # the keywords are in the primary header only
        assert "PIXSCALE" in hdul[0].header and "PIXSCALE" not in hdul[1].header and hdul[1].data.ndim == 4
    record = read_one([path])
    assert record.ok and ("image_out_of_domain" in record.flags) == flagged
    [row] = estimate(predictor, [record], 8)
    assert (row.row()[10] == "1") == (not flagged)


def test_units_in_the_primary_header_of_an_n_galaxy_cube_in_an_extension_are_read(tmp_path):
    galaxy = example_galaxy(1)
    galaxy.cards = {"BUNIT": "counts"}  # no NMGY: cannot be converted, so never read as nanomaggies
    (record,) = iter_galaxies(write_n_galaxy_cube(tmp_path, galaxy, in_extension=True))
    assert record.status == status.WRONG_UNITS and "'counts'" in record.message


# item 3: every legal way of writing a pixel size is read; bad ones are flagged with a note, never silent
@pytest.mark.parametrize("cards, flagged, note", [
    ({**WCS, "CD1_1": -0.168 / 3600, "CD2_2": 0.168 / 3600}, True, "declares 0.168″ pixels (WCS)"),  # off-diagonal absent = 0
    ({**WCS, "CD1_1": -0.396 / 3600, "CD2_2": 0.396 / 3600}, False, ""),
    ({**WCS, "CDELT1": -0.396, "CDELT2": 0.396, "CUNIT1": "arcsec", "CUNIT2": "arcsec"}, False, ""),
    ({**WCS, "CDELT1": -0.0066, "CDELT2": 0.0066, "CUNIT1": "arcmin", "CUNIT2": "arcmin"}, False, ""),
    ({**WCS, "CDELT1": -0.262, "CDELT2": 0.262, "CUNIT1": "arcsec", "CUNIT2": "arcsec"}, True, "declares 0.262″ pixels (WCS)"),
    ({**WCS, "CDELT1": -0.396, "CDELT2": 0.396, "CUNIT1": "pixel", "CUNIT2": "pixel"}, True, "CUNIT1 = 'pixel' is not an angle unit"),
    ({"PIXSCALE": "0.262"}, True, "declares 0.262″ pixels (PIXSCALE)"),
    ({"PIXSCALE": "0.396"}, False, ""),
    ({"PIXSCALE": "fine"}, True, "PIXSCALE = 'fine' is not a positive number"),
    ({"PIXSCALE": -0.396}, True, "PIXSCALE = -0.396 is not a positive number"),
    ({"PIXSCALE": 0.0}, True, "PIXSCALE = 0.0 is not a positive number"),
    ({"PIXSCALE": 0.396, **WCS, "CD1_1": -0.262 / 3600, "CD2_2": 0.262 / 3600}, True,
     "the header declares different pixel sizes, 0.396″ (PIXSCALE) and 0.262″ (WCS), more than 5% apart"),
    ({"PIXSCALE": 0.396, **WCS, "CD1_1": -0.40 / 3600, "CD2_2": 0.40 / 3600}, False, ""),  # within 5%: one scale
    ({**WCS, "PC1_1": -0.262 / 3600, "PC2_2": 0.262 / 3600}, True, "declares 0.262″ pixels (WCS)"),  # CDELT absent: 1
    ({**WCS, "PC1_1": -0.396 / 3600, "PC2_2": 0.396 / 3600}, False, ""),
])
def test_pixel_scale_keywords_are_read_as_the_fits_standard_says(tmp_path, cards, flagged, note):
    galaxy = example_galaxy(2)
    galaxy.cards = cards
    record = read_one(FITS_LAYOUTS["cube"](tmp_path, galaxy))
    assert record.ok and ("image_out_of_domain" in record.flags) == flagged, (record.flags, record.message)
    assert note in record.message and (record.message == "") == (not flagged), record.message


# item 4: headers of one galaxy that disagree are a flag with both values, never "last wins"
@pytest.mark.parametrize("layout", ["extensions, cards in every band's header", "band files {id}_{b}.fits", "band files {b}/{id}.fits"])
def test_band_headers_disagreeing_on_a_magnitude_flag_a_conflict(tmp_path, predictor, layout):
    galaxy = example_galaxy(3)
    galaxy.cards = {"BUNIT": "nanomaggy"}
    FITS_LAYOUTS[layout](tmp_path, galaxy)
    last = sorted(tmp_path.rglob("*.fits"))[-1]  # one band's header says MAG_G is 0.3 mag fainter
    with fits.open(last, mode="update") as hdul:
        hdul[-1].header["MAG_G"] = galaxy.mags[1] + 0.3
    record = read_one([tmp_path])
    assert record.ok and "magnitude_conflict" in record.flags
    assert f"the headers disagree on MAG_G: {galaxy.mags[1]!r}" in record.message and f"{galaxy.mags[1] + 0.3!r}" in record.message
    assert "more than 0.01 mag apart; the first was used" in record.message
    assert np.isclose(record.magnitudes[1], galaxy.mags[1])  # not the last header's
    [row] = estimate(predictor, [record], 8)
    assert row.row()[10] == "0"


def test_headers_disagreeing_on_z_spec_or_magsys_flag_a_conflict(tmp_path):
    galaxy = example_galaxy(3)
    write_extensions(tmp_path, galaxy)
    with fits.open(tmp_path / "gal.fits", mode="update") as hdul:
        hdul[0].header["MAGSYS"] = "sdss_model"
        hdul["R"].header["MAGSYS"] = "dereddened"
        hdul["I"].header["Z_SPEC"] = galaxy.z_spec + 0.1
    record = read_one([tmp_path])
    assert record.ok and record.flags == ("magnitude_conflict",)
    assert "the headers disagree on MAGSYS: 'sdss_model' (HDU 0 (PRIMARY)) and 'dereddened' (HDU 2 (R))" in record.message
    assert "the headers disagree on Z_SPEC" in record.message and "z_spec is left empty" in record.message
    assert np.isnan(record.z_spec)


def test_tiny_rounding_between_headers_is_not_a_conflict(tmp_path):
    galaxy = example_galaxy(3)
    write_extensions(tmp_path, galaxy)
    with fits.open(tmp_path / "gal.fits", mode="update") as hdul:
        hdul["G"].header["MAG_G"] = float(np.float32(galaxy.mags[1]))  # float32-rounded copy
    record = read_one([tmp_path])
    assert record.ok and record.flags == () and record.message == ""


def test_a_cube_and_band_extensions_in_one_file_is_refused(tmp_path):
    galaxy = example_galaxy(4)
    primary = fits.PrimaryHDU(galaxy.cube)
    for b, m in zip(BANDS, galaxy.mags):
        primary.header[f"MAG_{b.upper()}"] = m
    fits.HDUList([primary, *(fits.ImageHDU(galaxy.cube[j] * 2, name=b.upper()) for j, b in enumerate(BANDS))]).writeto(tmp_path / "both.fits")
    record = read_one([tmp_path / "both.fits"])
    assert record.status == status.BAD_BANDS
    assert "a cube of shape (5, 64, 64) in HDU 0 (PRIMARY) and band extensions" in record.message and "keep one" in record.message


# item 15: other surveys' files are named for what they are, never read as nanomaggies
def _hsc_file(path: Path, band: str, plane: np.ndarray) -> None:
    primary = fits.PrimaryHDU()
    primary.header["FLUXMAG0"] = 63095734448.0194  # zero point 27 AB mag, in counts
    image = fits.ImageHDU((plane * 1e3).astype(np.float32), name="IMAGE")
    image.header["FILTER"] = f"HSC-{band.upper()}"
    mask = fits.ImageHDU(np.zeros(plane.shape, dtype=np.int32), name="MASK")
    variance = fits.ImageHDU(np.ones(plane.shape, dtype=np.float32), name="VARIANCE")
    fits.HDUList([primary, image, mask, variance]).writeto(path)


def _ps1_file(path: Path, band: str, plane: np.ndarray) -> None:
    hdu = fits.PrimaryHDU(np.arcsinh(plane / 2).astype(np.float32))
    hdu.header.update({"FILTER": f"{band}.00000", "BSOFTEN": 23.35, "BOFFSET": 1.4, "ZPT_OBS": 25.0})
    hdu.writeto(path)


def test_hsc_and_pan_starrs_files_say_what_they_are(tmp_path):
    galaxy = example_galaxy(5)
    for j, band in enumerate("griz"):
        _hsc_file(tmp_path / f"cutout-HSC-{band.upper()}-9813-pdr2_wide.fits", band, galaxy.cube[j + 1])
        _ps1_file(tmp_path / f"rings.v3.skycell.1234.056.stk.{band}.unconv.fits", band, galaxy.cube[j + 1])
    records = list(iter_galaxies([tmp_path]))
    assert len(records) == 8 and {r.status for r in records} == {status.WRONG_UNITS}, [(r.id, r.status, r.message) for r in records]
    for record in records:
        assert "this model needs SDSS u,g,r,i,z cutouts at 0.396″/px in nanomaggies" in record.message
        assert "no u" in record.message
        if "HSC" in record.id:
            assert "HSC-style" in record.message and "FLUXMAG0" in record.message and "0.168″" in record.message
        else:
            assert "Pan-STARRS-style" in record.message and "asinh" in record.message and "BSOFTEN" in record.message


def test_a_renamed_hsc_set_is_one_clear_row_not_nanomaggies(tmp_path, capsys):
    from cai_edge.cli import main

    galaxy = example_galaxy(5)
    for j, band in enumerate(BANDS):  # HSC files renamed <id>_u.fits … as if they were SDSS band files
        _hsc_file(tmp_path / f"gal_{band}.fits", "grizy"[j], galaxy.cube[j])
    record = read_one([tmp_path])
    assert record.status == status.WRONG_UNITS and "HSC-style" in record.message and "FLUXMAG0" in record.message
    out = tmp_path.parent / "hsc.csv"
    assert main(["predict", str(tmp_path), "--out", str(out), "--quiet"]) == 1
    text = out.read_text()
    assert "wrong_units" in text and "HSC-style" in text


def test_fluxmag0_beside_a_declared_flux_unit_is_that_unit(tmp_path):
    galaxy = example_galaxy(5)
    galaxy.cards = {"BUNIT": "nanomaggy", "FLUXMAG0": 1e9}
    record = read_one(FITS_LAYOUTS["cube"](tmp_path, galaxy))
    assert record.ok, record.message



def test_an_n_galaxy_cube_reads_magsys_from_its_headers_and_flags_a_table_that_disagrees(tmp_path):
    galaxy = example_galaxy(1)
    galaxy.cards = {"MAGSYS": "dereddened"}
    (record,) = iter_galaxies(write_n_galaxy_cube(tmp_path, galaxy, in_extension=True, system_in_table=False))
    assert record.ok and record.magnitude_system == "dereddened"  # then refused by the system check, as a cube's
    with fits.open(tmp_path / "field.fits", mode="update") as hdul:
        hdul[2].header["MAGSYS"] = "sdss_model"
    (record,) = iter_galaxies([tmp_path / "field.fits"])
    assert record.ok and record.flags == ("magnitude_conflict",)
    assert "the headers disagree on MAGSYS: 'sdss_model' (the table, HDU 2)" in record.message and "'dereddened' (HDU 0 (PRIMARY))" in record.message


# values as writers store them: numbers as text, keywords with no value, extreme WCS matrices
@pytest.mark.parametrize("layout", ["cube", "extensions, cards in the primary header", "band files {id}_{b}.fits"])
def test_numbers_written_as_text_are_numbers_in_every_check(tmp_path, layout):
    galaxy = example_galaxy(0)
    galaxy.cards = {"BUNIT": "nanomaggy"}
    FITS_LAYOUTS[layout](tmp_path, galaxy)
    for path in tmp_path.rglob("*.fits"):
        with fits.open(path, mode="update") as hdul:
            hdul[0].header["Z_SPEC"] = "0.0823"
            hdul[0].header["MAG_G"] = f"{galaxy.mags[1] + 0.001:.4f}"  # within 0.01 mag of any float copy
    if layout.startswith("extensions"):
        with fits.open(tmp_path / "gal.fits", mode="update") as hdul:
            hdul["G"].header["MAG_G"] = galaxy.mags[1]
            hdul["R"].header["Z_SPEC"] = 0.08232
    record = read_one([tmp_path])
    assert record.ok and record.flags == () and record.message == "", (record.flags, record.message)
    assert record.z_spec == pytest.approx(0.0823) and record.magnitudes[1] == pytest.approx(galaxy.mags[1], abs=2e-3)


def test_a_keyword_with_no_value_says_nothing(tmp_path):
    galaxy = example_galaxy(0)
    write_extensions(tmp_path, galaxy)
    with fits.open(tmp_path / "gal.fits", mode="update") as hdul:
        hdul["G"].header["MAG_G"] = fits.card.UNDEFINED  # `MAG_G =` with no value, beside the primary's MAG_G
        hdul["R"].header["PIXSCALE"] = fits.card.UNDEFINED
    record = read_one([tmp_path])
    assert record.ok and record.flags == () and record.message == "", (record.flags, record.message)
    single = tmp_path / "single"
    single.mkdir()
    header = fits.Header({f"MAG_{b.upper()}": m for b, m in zip(BANDS, galaxy.mags)})
    header["MAG_G"] = fits.card.UNDEFINED
    fits.PrimaryHDU(galaxy.cube, header=header).writeto(single / "gal.fits")
    record = read_one([single])
    assert record.status == status.MISSING_MAGNITUDES and record.message == "missing magnitude in band(s) g", record.message


@pytest.mark.parametrize("size, note", [
    (1e300, "declares 3.6e+303″ pixels (WCS)"),  # its determinant overflows a float
    (1e-300, "declares 3.6e-297″ pixels (WCS)"),  # its determinant underflows to 0
    (0.0, "the WCS matrix (CD/CDELT/PC) is singular or not finite"),
])
def test_an_extreme_wcs_matrix_gets_a_true_note(tmp_path, size, note):
    galaxy = example_galaxy(2)
    galaxy.cards = {**WCS, "CD1_1": -size, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": size}
    record = read_one(FITS_LAYOUTS["cube"](tmp_path, galaxy))
    assert record.ok and record.flags == ("image_out_of_domain",) and note in record.message, record.message


@pytest.mark.parametrize("pattern, u_name, i_name", [
    ("{b}/{id}.fits", "u/gal.fits", "i/gal.fits"),
    ("{id}_{b}.fits", "gal_u.fits", "gal_i.fits"),
    ("{id}_{b}.fits.gz", "gal_u.fits.gz", "gal_i.fits.gz"),  # read by astropy, not the one-HDU reader: named alike
])
def test_notes_name_each_band_file_as_the_user_sees_it(tmp_path, pattern, u_name, i_name):
    galaxy = example_galaxy(3)
    for j, b in enumerate(BANDS):
        path = tmp_path / pattern.format(id="gal", b=b)
        path.parent.mkdir(exist_ok=True)
        header = fits.Header({f"MAG_{c.upper()}": m for c, m in zip(BANDS, galaxy.mags)})
        header["PIXSCALE"] = 0.262 if b == "i" else 0.396
        fits.PrimaryHDU(galaxy.cube[j], header=header).writeto(path)
    record = read_one([tmp_path])
    assert record.ok and record.flags == ("image_out_of_domain",)
    assert (f"the headers declare different pixel sizes, 0.396″ (PIXSCALE, {u_name}) and 0.262″ (PIXSCALE, {i_name})"
            in record.message), record.message


def test_a_header_conflict_note_says_catalog_values_were_used_when_they_were(tmp_path):
    from cai_edge.io.catalog import Catalog

    galaxy = example_galaxy(3)
    write_extensions(tmp_path, galaxy)
    with fits.open(tmp_path / "gal.fits", mode="update") as hdul:
        hdul["G"].header["MAG_G"] = galaxy.mags[1] + 0.3
        hdul["G"].header["Z_SPEC"] = 0.5
    catalog_path = tmp_path.parent / "catalog.csv"
    catalog_path.write_text("id,mag_u,mag_g,mag_r,mag_i,mag_z,z_spec\ngal," + ",".join(map(str, galaxy.mags)) + ",0.0823\n")
    (record,) = iter_galaxies([tmp_path / "gal.fits"], catalog=Catalog.read(catalog_path))
    assert record.ok and record.flags == ("magnitude_conflict",)  # two planes' headers disagree: still flagged
    assert record.z_spec == pytest.approx(0.0823)
    assert "more than 0.01 mag apart; --catalog's values were used" in record.message
    assert "more than 0.0001 apart; --catalog's values were used" in record.message
    assert "the first was used" not in record.message and "left empty" not in record.message
    field = tmp_path.parent / "field"
    field.mkdir()
    galaxy.cards = {"MAGSYS": "dereddened"}
    write_n_galaxy_cube(field, galaxy, in_extension=True, system_in_table=False)
    with fits.open(field / "field.fits", mode="update") as hdul:
        hdul[2].header["MAGSYS"] = "sdss_model"
    (record,) = iter_galaxies([field / "field.fits"], catalog=Catalog.read(catalog_path))
    assert record.ok and record.flags == ("magnitude_conflict",) and record.message.endswith("--catalog's values were used"), record.message


def test_units_an_n_galaxy_cube_cannot_read_fail_each_galaxy_by_its_id(tmp_path):
    galaxies = [example_galaxy(i, gid=f"gal{i}") for i in range(3)]
    table = Table({"id": [g.gid for g in galaxies], **{f"mag_{b}": [g.mags[j] for g in galaxies] for j, b in enumerate(BANDS)},
                   "z_spec": [g.z_spec for g in galaxies], "ra": [1.0, 2.0, 3.0]})
    primary = fits.PrimaryHDU(header=fits.Header({"BUNIT": "counts"}))  # no NMGY: cannot be converted
    cube = fits.ImageHDU(np.stack([g.cube for g in galaxies]), name="CUTOUTS")
    fits.HDUList([primary, cube, fits.table_to_hdu(table)]).writeto(tmp_path / "field.fits")
    records = list(iter_galaxies([tmp_path / "field.fits"]))
    assert [r.id for r in records] == ["gal0", "gal1", "gal2"]  # one row per galaxy, as each cube gives
    assert [r.source for r in records] == [f"{tmp_path / 'field.fits'}[{i}]" for i in range(3)]
    galaxies[0].cards = {"BUNIT": "counts"}
    (tmp_path / "cube").mkdir()
    single = read_one(FITS_LAYOUTS["cube"](tmp_path / "cube", galaxies[0]))
    for record in records:
        assert record.status == status.WRONG_UNITS and record.message == single.message
        assert record.extra["ra"] in ("1.0", "2.0", "3.0")


@pytest.mark.parametrize("key, first, again, expected", [
    ("PIXSCALE", 0.396, 0.262, "0.396″ (PIXSCALE, HDU 0 (PRIMARY)) and 0.262″ (PIXSCALE, HDU 0 (PRIMARY), PIXSCALE written again)"),
    ("MAG_G", None, 25.0, "25.0 (HDU 0 (PRIMARY), MAG_G written again), more than 0.01 mag apart"),
    ("BUNIT", "Jy", "nanomaggy", "the header gives BUNIT twice, 'Jy' and 'nanomaggy'"),
])
@pytest.mark.parametrize("layout", ["cube", "extensions, cards in the primary header"])
def test_a_keyword_written_twice_with_two_values_is_never_one_silently(tmp_path, layout, key, first, again, expected):
    galaxy = example_galaxy(1)
    FITS_LAYOUTS[layout](tmp_path, galaxy)
    with fits.open(tmp_path / "gal.fits", mode="update") as hdul:  # e.g. PIXSCALE appended after a resampling
        if first is not None:
            hdul[0].header[key] = first
        hdul[0].header.append((key, again), bottom=True)
        assert [c.value for c in hdul[0].header.cards if c.keyword == key][-1] == again
    record = read_one([tmp_path / "gal.fits"])
    assert expected in record.message, record.message
    assert record.status == (status.WRONG_UNITS if key == "BUNIT" else status.OK)
    assert record.status != status.OK or record.flags in (("image_out_of_domain",), ("magnitude_conflict",))
