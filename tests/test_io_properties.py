"""Property-based tests of the FITS and NPZ readers: any array in, exactly one honest record per object out."""

import numpy as np
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cai_edge.io import status
from cai_edge.io.fits_cutouts import read_cutout
from cai_edge.io.npz_partitions import read_npz_partition

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def cutout_arrays(draw):
    ndim = draw(st.integers(2, 4))
    shape = tuple(draw(st.sampled_from([1, 3, 5, 6])) if i == 0 and ndim > 2 else draw(st.integers(1, 40)) for i in range(ndim))
    return draw(arrays(np.float32, shape, elements=FLOATS))


@SETTINGS
@given(
    data=cutout_arrays(),
    mags=st.lists(  # FITS headers cannot hold NaN; sentinels and text stand in for bad values
        st.one_of(st.floats(-1e5, 1e5, width=32), st.just(-9999.0), st.text("abc xyz-+.", max_size=6)),
        min_size=5,
        max_size=5,
    ),
)
def test_fits_reader_returns_one_consistent_record(tmp_path_factory, data, mags):
    path = tmp_path_factory.mktemp("h") / "G.fits"
    hdu = fits.PrimaryHDU(data)
    for band, m in zip("UGRIZ", mags):
        hdu.header[f"MAG_{band}"] = m
    hdu.writeto(path)
    rec = read_cutout(path)
    # a 4-D image is a file of N galaxies: its rows are G:0, G:1 …, or one row for the file when unusable
    assert (rec.id == "G" if data.ndim < 4 else rec.id in ("G.fits", "G:0")) and rec.status in status.ALL
    if rec.ok:
        assert data.ndim in (3, 4) and data.shape[-3] == 5 and min(data.shape[-2:]) >= 32
        assert rec.image.shape == (5, 32, 32) and np.isfinite(rec.image).all()
        assert np.isfinite(rec.magnitudes).all()
    else:
        assert rec.image is None and rec.message


@SETTINGS
@given(
    n=st.integers(0, 6),
    image_values=FLOATS,
    nan_row=st.one_of(st.none(), st.integers(0, 5)),
    mags=arrays(np.float32, 5, elements=st.floats(-10000, 40, width=32)),
)
def test_npz_reader_keeps_every_row(tmp_path_factory, n, image_values, nan_row, mags):
    images = np.full((n, 5, 32, 32), image_values if np.isfinite(image_values) else 0.0, dtype=np.float32)
    if nan_row is not None and nan_row < n:
        images[nan_row, 1, 16, 16] = np.nan
    path = tmp_path_factory.mktemp("h") / "p.npz"
    np.savez(path, images=images, magnitudes=np.tile(mags, (n, 1)))
    records = list(read_npz_partition(path))
    assert len(records) == n
    assert [r.id for r in records] == [f"p:{i}" for i in range(n)]
    for i, rec in enumerate(records):
        if nan_row == i:
            assert rec.status == status.NONFINITE_PIXELS
        assert rec.ok == (rec.status == status.OK)
        if rec.ok:
            assert np.array_equal(rec.image, images[i])
