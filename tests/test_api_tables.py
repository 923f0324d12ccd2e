"""The Python API speaks astropy: Tables and QTables in and out, units converted, masks honoured
(images simulated from real SDSS photometry: the shipped examples)."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import MaskedColumn, QTable, Table

from cai_edge.errors import InputError
from cai_edge.io import status
from cai_edge.photometry import BANDS
from cai_edge.predictor import Predictor

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def data():
    cubes, mags = [], []
    for path in sorted(EXAMPLES.glob("*.fits"))[:12]:
        with fits.open(path) as hdul:
            cubes.append(np.array(hdul[1].data, dtype=np.float32))
            mags.append([hdul[1].header[f"MAG_{b.upper()}"] for b in BANDS])
    return np.stack(cubes), np.asarray(mags, dtype=np.float32)


@pytest.fixture(scope="module")
def p():
    return Predictor()


@pytest.fixture(scope="module")
def reference(p, data):
    return p.predict(*data)


def _qtable(mags) -> QTable:
    t = QTable()
    t["objID"] = np.arange(len(mags), dtype=np.int64) + 1237650000000000000
    t["ra"] = np.linspace(150, 151, len(mags)) * u.deg
    t["dec"] = np.linspace(2, 3, len(mags)) * u.deg
    for j, b in enumerate(BANDS):
        t[f"modelMag_{b}"] = mags[:, j] * u.mag
    t["z"] = np.linspace(0.05, 0.2, len(mags))
    return t


def test_a_qtable_in_a_table_out_with_its_columns_passed_through(p, data, reference):
    images, mags = data
    t = _qtable(mags)
    out = p.predict_table(images, t)
    assert list(out["id"]) == [str(i) for i in t["objID"]] and np.allclose(out["z_spec"], t["z"])
    assert np.max(np.abs(out["z_pred"] - reference)) <= 1e-6
    assert out["ra"].unit == u.deg and np.allclose(out["ra"], t["ra"].value) and "objID" not in out.colnames
    # the images may be a column of the table itself; keep_columns narrows what passes through
    t["image"] = images
    both = p.predict_table(t, keep_columns=["dec"])
    assert np.max(np.abs(both["z_pred"] - reference)) <= 1e-6
    assert "dec" in both.colnames and "ra" not in both.colnames and "image" not in both.colnames
    # a plain Table with catalog-style names works the same, and predict takes it too
    plain = Table({"id": [f"g{i}" for i in range(len(mags))], **{b: mags[:, j] for j, b in enumerate(BANDS)}})
    assert np.max(np.abs(p.predict(images, plain) - reference)) <= 1e-6
    assert np.max(np.abs(p.predict_table(images, plain)["z_pred"] - reference)) <= 1e-6


def test_image_units_are_converted_not_stripped(p, data, reference):
    images, mags = data
    images = images.astype(np.float64)  # the conversions round-trip exactly in float64
    for quantity in (images * 3.631 * u.uJy, images * 3.631e-6 * u.Jy, images * u.nanomaggy, images * 1e-9 * u.maggy):
        assert np.max(np.abs(p.predict(quantity, mags) - reference)) <= 1e-6
        assert np.max(np.abs(p.predict_table(quantity, mags)["z_pred"] - reference)) <= 1e-6
    with pytest.raises(InputError, match="unit s, which is not a flux") as err:
        p.predict(images * u.s, mags)
    assert err.value.status == status.WRONG_UNITS


def test_magnitude_units_are_honoured(p, data, reference):
    images, mags = data
    assert np.max(np.abs(p.predict(images, mags * u.mag) - reference)) <= 1e-6
    assert np.max(np.abs(p.predict(images, mags * u.ABmag) - reference)) <= 1e-6
    with pytest.raises(InputError, match="a flux, not a magnitude"):
        p.predict(images, (mags * u.ABmag).to(u.uJy))
    t = _qtable(mags)
    t["modelMag_r"] = (mags[:, 2] * u.ABmag).to(u.uJy)
    with pytest.raises(InputError, match="modelMag_r has unit uJy"):
        p.predict_table(images, t)


def test_masked_magnitudes_and_pixels_are_missing_not_used(p, data):
    images, mags = data
    t = Table({"id": [f"g{i}" for i in range(len(mags))], **{f"mag_{b}": mags[:, j] for j, b in enumerate(BANDS)}})
    t["mag_r"] = MaskedColumn(mags[:, 2], mask=np.arange(len(mags)) == 3)
    out = p.predict_table(images, t)
    assert out["status"][3] == status.MISSING_MAGNITUDES and np.isnan(out["z_pred"][3])
    assert set(out["status"][np.arange(len(mags)) != 3]) == {status.OK}
    with pytest.raises(InputError, match="magnitudes row 3"):
        p.predict(images, t)
    with pytest.raises(InputError, match="magnitudes row 5"):
        p.predict(images, np.ma.masked_array(mags, mask=np.arange(mags.size).reshape(mags.shape) == 5 * 5 + 1))
    masked = np.ma.masked_array(images, mask=np.zeros(images.shape, bool))
    masked.mask[7, 2, 30, 30] = True  # inside the central 32×32
    masked.mask[8, 2, 0, 0] = True  # outside it: harmless
    rows = p.predict_table(masked, mags)
    assert rows["status"][7] == status.NONFINITE_PIXELS and rows["status"][8] == status.OK
    with pytest.raises(InputError, match=r"rows \[7\]"):
        p.predict(masked, mags)


def test_a_table_without_images_or_magnitudes_says_what_is_missing(p, data):
    _, mags = data
    with pytest.raises(InputError, match="no images"):
        p.predict_table(_qtable(mags))
    with pytest.raises(InputError, match="keep_columns names"):
        p.predict_table(data[0], _qtable(mags), keep_columns=["nope"])
    assert len(repr(p)) < 1000 and len(repr(p.bundle)) < 1000


# --- issue 30, item 10: units that are not nanomaggies or AB magnitudes are refused; bytes ids are decoded ------------

def test_st_magnitudes_and_dimensionless_quantities_are_refused_not_read_as_ab(p, data):
    images, mags = data
    with pytest.raises(InputError, match="another system than AB") as err:
        p.predict(images, mags * u.STmag)
    assert err.value.status == status.BAD_MAGNITUDES
    with pytest.raises(InputError, match="dimensionless Quantity") as err:
        p.predict_table(images, mags * u.dimensionless_unscaled)
    assert err.value.status == status.BAD_MAGNITUDES
    with pytest.raises(InputError, match="dimensionless Quantity") as err:
        p.predict(images * u.dimensionless_unscaled, mags)
    assert err.value.status == status.WRONG_UNITS
    t = _qtable(mags)
    t["modelMag_g"] = mags[:, 1] * u.STmag  # a table column in ST magnitudes is refused as well
    with pytest.raises(InputError, match="modelMag_g has unit mag\\(ST\\)"):
        p.predict_table(images, t)
    # a catalog column with an empty unit is read as --catalog reads the file: the same redshifts
    plain = Table({b: mags[:, j] for j, b in enumerate(BANDS)})
    for b in BANDS:
        plain[b].unit = u.dimensionless_unscaled
    assert np.array_equal(p.predict(images, plain), p.predict(images, mags))


def test_bytes_ids_are_decoded_as_the_catalogs_decode_them(p, data):
    images, mags = data
    ids = [f"x{i}".encode() for i in range(len(mags))]
    assert list(p.predict_table(images, mags, ids=ids)["id"]) == [f"x{i}" for i in range(len(mags))]
    assert list(p.predict_table(images, mags, ids=np.array(ids))["id"]) == [f"x{i}" for i in range(len(mags))]
    catalog = Table({"id": np.array(ids), **{b: mags[:, j] for j, b in enumerate(BANDS)}})
    assert list(p.predict_table(images, catalog)["id"]) == [f"x{i}" for i in range(len(mags))]
