"""Reading what users bring: each bad-input class gets a status, and no object is ever dropped."""

import json

import numpy as np
import pytest
from astropy.io import fits

from cai_edge.cli import main
from cai_edge.io import status
from cai_edge.io.catalog import Catalog, CatalogError
from cai_edge.io.fits_cutouts import cutout_hdul, read_cutout
from cai_edge.io.inputs import iter_galaxies
from cai_edge.io.partition_writer import sha256_file
from cai_edge.io.npz_partitions import read_npz_partition, write_npz_partition
from cai_edge.io.partitions import read_fits_partition, write_fits_partition

MAGS = np.array([19.0, 17.5, 16.7, 16.3, 16.0], dtype=np.float32)


def cube(shape=(5, 64, 64), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.03, shape).astype(np.float32)


def write_cutout(path, data=None, mags=MAGS, **kw):
    data = cube() if data is None else data
    hdul = cutout_hdul(data, mags, **kw) if mags is not None else fits.HDUList([fits.PrimaryHDU(data)])
    hdul.writeto(path)
    return path


def test_good_cutout_is_cropped_to_the_centre(tmp_path):
    data = cube()
    rec = read_cutout(write_cutout(tmp_path / "J1.fits", data))
    assert rec.ok and rec.id == "J1"
    assert rec.image.dtype == np.float32 and rec.image.shape == (5, 32, 32)
    assert np.array_equal(rec.image, data[:, 16:48, 16:48])
    assert np.allclose(rec.magnitudes, MAGS)


def test_odd_sized_and_minimum_size_cutouts(tmp_path):
    rec = read_cutout(write_cutout(tmp_path / "a.fits", cube((5, 32, 32))))
    assert rec.ok
    data = cube((5, 45, 40))
    rec = read_cutout(write_cutout(tmp_path / "b.fits", data))
    assert rec.ok and np.array_equal(rec.image, data[:, 6:38, 4:36])


@pytest.mark.parametrize(
    "data, expected",
    [
        (cube((3, 64, 64)), status.BAD_SHAPE),  # wrong band count
        (cube((5, 20, 20)), status.BAD_SHAPE),  # too small
        (cube((64, 64)), status.BAD_SHAPE),  # a single plane
        (cube((2, 3, 64, 64)), status.BAD_SHAPE),  # N galaxies, but 3 bands
    ],
)
def test_wrong_shapes_are_reported(tmp_path, data, expected):
    rec = read_cutout(write_cutout(tmp_path / "x.fits", data))
    assert rec.status == expected and rec.image is None
    assert "shape" in rec.message or "px" in rec.message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_pixels_in_the_crop_are_reported(tmp_path, bad):
    data = cube()
    data[2, 30, 30] = bad
    rec = read_cutout(write_cutout(tmp_path / "n.fits", data))
    assert rec.status == status.NONFINITE_PIXELS and "1 NaN/inf" in rec.message


def test_nonfinite_pixels_outside_the_crop_do_not_matter(tmp_path):
    data = cube()
    data[:, 0, 0] = np.nan
    assert read_cutout(write_cutout(tmp_path / "edge.fits", data)).ok


def test_corrupt_and_truncated_fits_are_unreadable(tmp_path):
    (tmp_path / "junk.fits").write_bytes(b"this is not FITS" * 200)
    good = write_cutout(tmp_path / "good.fits")
    raw = good.read_bytes()
    (tmp_path / "trunc.fits").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "empty.fits").write_bytes(b"")
    for name in ("junk", "trunc", "empty"):
        rec = read_cutout(tmp_path / f"{name}.fits")
        assert rec.status == status.UNREADABLE, name
        assert rec.id == name and rec.message


def test_missing_and_sentinel_magnitudes(tmp_path):
    rec = read_cutout(write_cutout(tmp_path / "nomag.fits", mags=None))
    assert rec.status == status.MISSING_MAGNITUDES
    rec = read_cutout(write_cutout(tmp_path / "sentinel.fits", mags=np.array([-9999, 17.5, 16.7, 16.3, 16.0])))
    assert rec.status == status.MISSING_MAGNITUDES and "band(s) u" in rec.message
    rec = read_cutout(write_cutout(tmp_path / "absurd.fits", mags=np.array([19, 17.5, 160.7, 16.3, 16.0])))
    assert rec.status == status.BAD_MAGNITUDES


def test_catalog_supplies_magnitudes_and_reports_bad_rows(tmp_path):
    for name in ("a", "b", "c", "d", "e"):
        write_cutout(tmp_path / f"{name}.fits", mags=None)
    cat = tmp_path / "cat.csv"
    cat.write_text(
        "id,mag_u,mag_g,mag_r,mag_i,mag_z,z_spec\n"
        "a,19.1,17.6,16.8,16.4,16.1,0.08\n"
        "b,19.1,abc,16.8,16.4,16.1,0.08\n"
        "c,-9999,17.6,16.8,16.4,16.1,0.08\n"
        "d,19.1,17.6,16.8,16.4,16.1,0.08\n"
        "d,19.2,17.7,16.9,16.5,16.2,0.09\n"
    )
    catalog = Catalog.read(cat)
    got = {r.id: r for r in iter_galaxies([tmp_path], catalog)}
    assert len(got) == 5
    assert got["a"].ok and got["a"].z_spec == pytest.approx(0.08) and got["a"].magnitudes[2] == pytest.approx(16.8)
    assert got["b"].status == status.BAD_MAGNITUDES and "abc" in got["b"].message
    assert got["c"].status == status.MISSING_MAGNITUDES
    assert got["d"].status == status.DUPLICATE_ID
    assert got["e"].status == status.MISSING_MAGNITUDES and "not in catalog" in got["e"].message


@pytest.mark.parametrize("suffix", ["ecsv", "fits"])
def test_catalog_formats(tmp_path, suffix):
    from astropy.table import Table

    t = Table({"id": ["a"], "mag_u": [19.1], "mag_g": [17.6], "mag_r": [16.8], "mag_i": [16.4], "mag_z": [16.1], "z_spec": [0.1]})
    t.write(tmp_path / f"c.{suffix}")
    entry = Catalog.read(tmp_path / f"c.{suffix}").lookup("a")
    assert entry.status == status.OK and entry.z_spec == pytest.approx(0.1)


def test_unusable_catalogs_raise_a_clear_error(tmp_path):
    (tmp_path / "noid.csv").write_text("name,mag_u\nx,1\n")
    with pytest.raises(CatalogError, match="no id column .* columns found: \\['name', 'mag_u'\\]"):
        Catalog.read(tmp_path / "noid.csv")
    (tmp_path / "bad.fits").write_bytes(b"garbage")
    with pytest.raises(CatalogError, match="cannot read catalog"):
        Catalog.read(tmp_path / "bad.fits")
    with pytest.raises(CatalogError, match="unknown catalog format"):
        Catalog.read(tmp_path / "c.txt")


def test_single_band_files_are_assembled_and_missing_bands_reported(tmp_path):
    data = cube()
    for k, band in enumerate("ugriz"):
        hdu = fits.PrimaryHDU(data[k])
        hdu.header[f"MAG_{band.upper()}"] = float(MAGS[k])
        hdu.writeto(tmp_path / f"NGC1_{band}.fits")
        if band != "z":
            hdu.writeto(tmp_path / f"NGC2_{band}.fits")
    got = {r.id: r for r in iter_galaxies([tmp_path])}
    assert set(got) == {"NGC1", "NGC2"}
    assert got["NGC1"].ok and np.array_equal(got["NGC1"].image, data[:, 16:48, 16:48])
    assert got["NGC2"].status == status.MISSING_BANDS and "z" in got["NGC2"].message


def test_duplicate_ids_across_inputs_and_missing_paths(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    write_cutout(tmp_path / "one" / "G.fits")
    write_cutout(tmp_path / "two" / "G.fits")
    records = list(iter_galaxies([tmp_path / "one", tmp_path / "two", tmp_path / "nowhere", str(tmp_path / "*.nothing")]))
    assert [r.status for r in records].count(status.OK) == 1
    assert [r.status for r in records].count(status.DUPLICATE_ID) == 1
    assert [r.status for r in records].count(status.UNREADABLE) == 2


def test_globs_and_folders_skip_non_data_files(tmp_path):
    write_cutout(tmp_path / "a.fits")
    write_cutout(tmp_path / "b.fits")
    (tmp_path / "notes.md").write_text("hello")
    (tmp_path / "catalog.ecsv").write_text("# %ECSV 1.0\n")
    assert sorted(r.id for r in iter_galaxies([tmp_path])) == ["a", "b"]
    assert [r.id for r in iter_galaxies([str(tmp_path / "a*.fits")])] == ["a"]


def test_npz_partition_round_trip_and_bad_rows(tmp_path):
    images = cube((4, 5, 32, 32))
    images[2, 0, 3, 3] = np.nan
    mags = np.tile(MAGS, (4, 1))
    mags[3, 1] = -9999
    path = write_npz_partition(tmp_path / "p.npz", images, mags, ["w", "x", "y", "z"], np.array([0.1, 0.2, 0.3, 0.4]))
    records = list(read_npz_partition(path))
    assert [r.id for r in records] == ["w", "x", "y", "z"]
    assert [r.status for r in records] == [status.OK, status.OK, status.NONFINITE_PIXELS, status.MISSING_MAGNITUDES]
    assert np.array_equal(records[1].image, images[1]) and records[1].z_spec == pytest.approx(0.2)


def test_npz_partitions_never_unpickle(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, images=np.array([object()], dtype=object), magnitudes=np.zeros((1, 5)))
    records = list(read_npz_partition(path))
    assert len(records) == 1 and records[0].status == status.UNREADABLE
    assert "pickle" in records[0].message.lower()


def test_npz_partition_with_wrong_shapes_or_garbage(tmp_path):
    np.savez(tmp_path / "shape.npz", images=np.zeros((3, 5, 16, 16), np.float32), magnitudes=np.zeros((3, 5), np.float32))
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really")
    np.savez(tmp_path / "nomags.npz", images=np.zeros((3, 5, 32, 32), np.float32))
    for name, expected in (("shape", status.BAD_SHAPE), ("junk", status.UNREADABLE), ("nomags", status.BAD_SHAPE)):
        records = list(read_npz_partition(tmp_path / f"{name}.npz"))
        assert len(records) == 1 and records[0].status == expected, name


def test_fits_partition_round_trip(tmp_path):
    images = cube((3, 5, 32, 32))
    mags = np.tile(MAGS, (3, 1))
    path = write_fits_partition(tmp_path / "p.fits", images, mags, ["a", "b", "c"], np.array([0.1, 0.2, 0.3]))
    records = list(iter_galaxies([path]))
    assert [r.id for r in records] == ["a", "b", "c"] and all(r.ok for r in records)
    assert np.array_equal(records[2].image, images[2])
    (tmp_path / "bad.fits").write_bytes(path.read_bytes()[:3000])
    assert [r.status for r in read_fits_partition(tmp_path / "bad.fits")] == [status.UNREADABLE]


def test_partition_command_writes_sized_partitions_and_a_manifest(tmp_path):
    src = tmp_path / "cutouts"
    src.mkdir()
    for i in range(30):
        write_cutout(src / f"g{i:02d}.fits", cube(seed=i))
    data = cube()
    data[0, 32, 32] = np.nan
    write_cutout(src / "broken.fits", data)
    out = tmp_path / "parts"
    # 0.1 MB ≈ 4 galaxies of 20.5 kB per partition
    assert main(["partition", str(src), "--out", str(out), "--size-mb", "0.1", "--quiet"]) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 30 and manifest["rows_per_partition"] == 4
    assert len(manifest["partitions"]) == 8 and sum(p["rows"] for p in manifest["partitions"]) == 30
    assert [r["id"] for r in manifest["rejected"]] == ["broken"]
    for part in manifest["partitions"]:
        assert sha256_file(out / part["file"]) == part["sha256"]
        assert (out / part["file"]).stat().st_size == part["bytes"]
    ids = [r.id for r in iter_galaxies([out])]
    assert ids == [f"g{i:02d}" for i in range(30)]
    assert manifest["preprocessing"]["band_order"] == ["u", "g", "r", "i", "z"]


def test_cai_torch_partitions_are_read_with_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.utils.data import TensorDataset

    images = torch.from_numpy(cube((3, 5, 32, 32)))
    mags = torch.from_numpy(np.tile(MAGS, (3, 1)))
    torch.save(TensorDataset(images, mags, torch.tensor([0.1, 0.2, 0.3])), tmp_path / "resized_inference.pt")
    records = list(iter_galaxies([tmp_path / "resized_inference.pt"]))
    assert [r.id for r in records] == ["resized_inference:0", "resized_inference:1", "resized_inference:2"]
    assert all(r.ok for r in records) and records[2].z_spec == pytest.approx(0.3)

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    torch.save(Payload(), tmp_path / "evil.pt")
    records = list(iter_galaxies([tmp_path / "evil.pt"]))
    assert len(records) == 1 and records[0].status == status.UNREADABLE


def test_read_ahead_holds_two_partitions_or_many_cutouts(tmp_path):
    """Deep enough to fill the next batch of cutouts while the model runs; two partitions at most in memory."""
    from cai_edge.io.inputs import READ_AHEAD_SLOTS, ReadUnit, _slots

    small, large = tmp_path / "a.fits", tmp_path / "part.fits"
    small.write_bytes(b"\0" * 2880)
    with open(large, "wb") as fh:
        fh.truncate(8 << 20)
    assert READ_AHEAD_SLOTS >= 256 and _slots(ReadUnit("fits", small)) == 1
    for unit in (ReadUnit("npz", tmp_path / "p.npz"), ReadUnit("pt", tmp_path / "p.pt"), ReadUnit("fits", large)):
        assert 2 * _slots(unit) == READ_AHEAD_SLOTS  # a third partition never waits in memory
