"""Compressed FITS through fitsio (cfitsio) gives exactly what astropy gives: same HDUs, same header
values and types, same pixels and dtype; files fitsio does not read exactly go to astropy."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cai_edge.io.fits_cutouts import read_fits_file
from cai_edge.io.fits_hdus import open_fits

pytest.importorskip("fitsio")

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
KEYS = st.sampled_from(["MAG_U", "MAG_G", "MAG_R", "MAG_I", "MAG_Z", "Z_SPEC", "MAGSYS", "BUNIT", "OBJECT", "TELESCOP", "FLAGX", "EXPTIME"])
VALUES = st.one_of(st.booleans(), st.integers(-2**31, 2**31 - 1), st.floats(allow_nan=False, allow_infinity=False, width=64),
                   st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="'&"), max_size=40))


def _same(path) -> list:
    """Both readers' view of ``path``; asserts they agree and returns the fitsio side."""
    with open_fits(path) as fast, open_fits(path, prefer_fitsio=False) as slow:
        assert [(h.name, h.kind, h.shape, h.compressed) for h in fast] == [(h.name, h.kind, h.shape, h.compressed) for h in slow]
        for a, b in zip(fast, slow):
            assert a.header == b.header
            assert [type(v) for v in a.header.values()] == [type(v) for v in b.header.values()]
            if a.shape:
                x, y = a.read(), b.read()
                assert x.dtype.newbyteorder("=") == y.dtype.newbyteorder("=") and x.shape == y.shape  # astropy keeps FITS's big-endian order
                assert np.array_equal(x, y, equal_nan=True)
                if len(a.shape) >= 2 and min(a.shape[-2:]) >= 16:  # the central crop decodes only its tiles
                    from cai_edge.preprocessing import center_crop

                    assert np.array_equal(a.read_central(16), center_crop(y, 16), equal_nan=True)
                    assert np.array_equal(b.read_central(16), center_crop(y, 16), equal_nan=True)
        return [h.reader for h in fast]


@SETTINGS
@given(
    compression=st.sampled_from(["RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1"]),
    quantize=st.sampled_from([(16, 1), (16, 2), (4, 1), (-0.01, 1), (0, -1)]),  # (level, method): dithered, absolute, lossless
    seed=st.integers(0, 2**16),
    cards=st.dictionaries(KEYS, VALUES, max_size=6),
    suffix=st.sampled_from([".fits", ".fz"]),
)
def test_tile_compressed_floats_read_as_astropy_reads_them(tmp_path_factory, compression, quantize, seed, cards, suffix):
    rng = np.random.default_rng(seed)
    data = (rng.normal(0, 0.05, (5, 40, 40)) + rng.exponential(0.2, (5, 40, 40)) * (rng.random((5, 40, 40)) < 0.05)).astype(np.float32)
    level, method = quantize
    header = fits.Header()
    for k, v in cards.items():
        header[k] = v
    kwargs = {} if method == -1 else {"quantize_level": level, "quantize_method": method}
    if compression == "HCOMPRESS_1":
        kwargs["tile_shape"] = (1, 40, 40)
    hdu = fits.CompImageHDU(data if method != -1 or compression.startswith("GZIP") else data, header=header,
                            compression_type=compression, **kwargs)
    path = tmp_path_factory.mktemp("c") / f"cut{suffix}"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    readers = _same(path)
    if all(not isinstance(v, float) or v == 0 or abs(v) > 1e-300 for v in cards.values()):  # cfitsio refuses subnormals
        assert readers == ["fitsio", "fitsio"]


@SETTINGS
@given(compression=st.sampled_from(["RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1", "PLIO_1"]), seed=st.integers(0, 2**16),
       dtype=st.sampled_from(["int16", "int32", "uint8", "uint16"]))
def test_tile_compressed_integers_read_as_astropy_reads_them(tmp_path_factory, compression, seed, dtype):
    if compression == "PLIO_1" and dtype == "uint16":
        return  # astropy cannot write it
    rng = np.random.default_rng(seed)
    high = 2**12 if compression == "PLIO_1" else np.iinfo(dtype).max  # PLIO holds 0 … 2**24
    data = rng.integers(0, high, (3, 24, 24)).astype(dtype)
    kwargs = {"tile_shape": (1, 24, 24)} if compression == "HCOMPRESS_1" else {}
    path = tmp_path_factory.mktemp("i") / "ints.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type=compression, **kwargs)]).writeto(path)
    readers = _same(path)
    assert readers[1] == ("astropy" if dtype == "uint16" else "fitsio")  # uint16 is stored with BZERO = 32768: astropy's


def test_gzipped_and_scaled_files_are_read_by_astropy(tmp_path):
    data = np.arange(5 * 32 * 32, dtype=np.float32).reshape(5, 32, 32)
    fits.PrimaryHDU(data).writeto(tmp_path / "a.fits")
    with open(tmp_path / "a.fits", "rb") as src, gzip.open(tmp_path / "a.fits.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert set(_same(tmp_path / "a.fits.gz")) == {"astropy"}  # cfitsio would inflate it whole before any size check
    scaled = fits.ImageHDU(np.linspace(0, 100, 64 * 64).reshape(64, 64))
    scaled.scale("int16", bscale=0.01, bzero=10.0)
    fits.HDUList([fits.PrimaryHDU(), scaled]).writeto(tmp_path / "s.fits")
    assert _same(tmp_path / "s.fits") == ["astropy", "astropy"]
    odd = tmp_path / "name[1].fits"  # cfitsio would read "[1]" as an HDU selector
    shutil.copy(tmp_path / "a.fits", odd)
    assert set(_same(odd)) == {"astropy"}


def test_the_shipped_examples_decode_through_fitsio_to_the_same_records(tmp_path):
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.fits"))[:20]
    for path in examples:
        assert _same(path) == ["fitsio", "fitsio"]
        (fast,) = read_fits_file(path)
        with fits.open(path) as hdul:
            cube = np.array(hdul[1].data)
        assert fast.ok and np.array_equal(fast.image, cube[:, 16:48, 16:48])


def test_a_damaged_tile_gets_astropys_error(tmp_path):
    from pathlib import Path

    source = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.fits"))[0]
    raw = bytearray(source.read_bytes())
    raw[-14000:-2000] = b"\xff" * 12000  # most of the compressed heap, the central tiles included
    (tmp_path / "bad.fits").write_bytes(bytes(raw))
    (record,) = read_fits_file(tmp_path / "bad.fits")
    assert not record.ok and record.message
