"""The one-HDU FITS fast path agrees with astropy on every file it accepts, and hands the rest to astropy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cai_edge.io.fits_cutouts import cutout_hdul, read_cutout
from cai_edge.io.fits_single_hdu import NotSimpleFits, parse_header, read_single_hdu_image
from cai_edge.io.inputs import iter_galaxies

DTYPES = ["float32", "float64", "int16", "int32", "uint8", "int64"]
TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
VALUES = st.one_of(
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    TEXT,
)


def _astropy_image(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path, memmap=False) as hdul:
            for hdu in hdul:
                if hdu.is_image and hdu.data is not None and hdu.data.ndim >= 2:
                    return np.array(hdu.data), hdu.header.copy()
    return None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.sampled_from([(5, 32, 32), (5, 33, 40), (32, 32), (3, 32, 32), (5, 1, 64)]),
    scaling=st.sampled_from([None, (1.0, 0.0), (0.01, 0.0), (2.5, -100.0), (1.0, 32768.0), (1.0, 2**31), (1.0, -128.0)]),
    cards=st.dictionaries(st.sampled_from(["BUNIT", "BANDS", "MAGSYS", "MAG_U", "MAG_R", "Z_SPEC", "NMGY", "OBJECT", "EXPTIME", "FLAG1", "BAND1"]), VALUES, max_size=8),
    history=st.lists(TEXT, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_agrees_with_astropy_on_generated_files(tmp_path, dtype, shape, scaling, cards, history, seed):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        data = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(max(info.min, -(2**40)), min(info.max, 2**40), size=shape, dtype=dtype)
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    for line in history:
        hdu.header["HISTORY"] = line
    if scaling is not None and np.dtype(dtype).kind != "f":
        hdu.header["BSCALE"], hdu.header["BZERO"] = scaling
    path = tmp_path / "cutout.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hdu.writeto(path, overwrite=True)

    fast = read_single_hdu_image(path)
    if fast is None:
        # Declined files must be ones the fast path leaves to astropy by design.
        assert (dtype == "int64" and scaling not in (None, (1.0, 0.0))) or (scaling is not None and scaling[0] == 1.0 and scaling[1] in (32768.0, 2**31, -128.0)) \
            or any(isinstance(v, str) and len(v) > 60 for v in cards.values()) or any(isinstance(v, str) and v.endswith("&") for v in cards.values()), (dtype, scaling, cards)
        return
    data_ref, _ = _astropy_image(path)
    header_ref = fits.getheader(path)  # as written: astropy rewrites BITPIX/BSCALE in memory once it scales the data
    assert fast.data.shape == data_ref.shape
    np.testing.assert_array_equal(np.asarray(fast.data, dtype=np.float64), np.asarray(data_ref, dtype=np.float64))
    assert fast.data.dtype.kind == data_ref.dtype.kind and fast.data.dtype.itemsize == data_ref.dtype.itemsize
    for key, value in fast.header.items():
        assert key in header_ref
        assert type(value) is type(header_ref[key]), (key, value, header_ref[key])
        assert value == header_ref[key], (key, value, header_ref[key])
    for key in cards:
        assert key in fast.header


def test_the_common_cutout_takes_the_fast_path_and_gives_astropys_record(tmp_path):
    cube = np.random.default_rng(1).standard_normal((5, 40, 40)).astype(np.float32) + 1.0
    path = tmp_path / "J1.fits"
    cutout_hdul(cube, np.array([19.1, 18.0, 17.5, 17.2, 17.0]), {"Z_SPEC": 0.12, "MAGSYS": "SDSS model"}).writeto(path)
    assert read_single_hdu_image(path) is not None
    fast = read_cutout(path)
    data, header = _astropy_image(path)
    slow = read_cutout(path, preread=None)
    assert fast.status == slow.status == "ok"
    np.testing.assert_array_equal(fast.image, slow.image)
    np.testing.assert_array_equal(fast.magnitudes, slow.magnitudes)
    assert fast.z_spec == slow.z_spec == pytest.approx(0.12) and fast.magnitude_system == "SDSS model"


def _write(path, hdul):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hdul.writeto(path, overwrite=True)


@pytest.mark.parametrize("case", ["compressed", "extension", "primary_plus_extension", "blank", "truncated", "continue", "hierarch",
                                  "not_fits", "garbage_header", "empty"])
def test_files_it_does_not_fully_understand_go_to_astropy(tmp_path, case):
    cube = np.ones((5, 32, 32), np.float32)
    mags = np.array([19.0, 18.0, 17.5, 17.2, 17.0])
    path = tmp_path / f"{case}.fits"
    if case == "compressed":
        _write(path, cutout_hdul(cube, mags, compress=True))
    elif case == "extension":
        _write(path, fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube, header=cutout_hdul(cube, mags)[0].header)]))
    elif case == "primary_plus_extension":
        hdul = cutout_hdul(cube, mags)
        hdul.append(fits.ImageHDU(cube))
        _write(path, hdul)
    elif case == "blank":
        hdu = fits.PrimaryHDU(np.ones((5, 32, 32), np.int16))
        hdu.header["BLANK"] = -32768
        _write(path, fits.HDUList([hdu]))
    elif case == "truncated":
        _write(path, cutout_hdul(cube, mags))
        path.write_bytes(path.read_bytes()[:-3000])
    elif case == "continue":
        hdul = cutout_hdul(cube, mags)
        hdul[0].header["OBJECT"] = "x" * 200
        _write(path, hdul)
    elif case == "hierarch":
        hdul = cutout_hdul(cube, mags)
        hdul[0].header["HIERARCH ESO DET CHIP NAME"] = "chip"
        _write(path, hdul)
    elif case == "not_fits":
        path.write_bytes(b"hello" * 1000)
    elif case == "garbage_header":
        path.write_bytes(b"SIMPLE  =                    T" + b"\xff" * 5000)
    else:
        path.write_bytes(b"")
    assert read_single_hdu_image(path) is None
    # The file still gets exactly one row, from astropy's reading.
    records = list(iter_galaxies([path]))
    assert len(records) == 1
    if case in ("compressed", "extension", "primary_plus_extension", "continue", "hierarch"):
        assert records[0].status == "ok", records[0].message
    elif case in ("not_fits", "garbage_header", "empty"):
        assert records[0].status == "unreadable"


@pytest.mark.parametrize("value_field", [
    "                   12 / an integer", "                  +12", "                 -0.5", "                   .5", "                   1.",
    "              1.5D-03 / a D exponent", "              2.5e+10", "                    T / true", "                    F",
    "'nanomaggy'          / unit", "'it''s a / slash'    / quotes and a slash", "'trailing   '", "''", "'   '",
    "'no comment'", "                      / undefined value", "             (1.0, 2.0) / complex", "'unterminated",
    "'x' junk after", "                   1 2", "                    t",
])
def test_each_card_value_is_typed_as_astropy_types_it_or_left_to_astropy(value_field):
    card = f"{'KEY':8s}= {value_field}".ljust(80)
    simple = f"{'SIMPLE':8s}= {'T':>20s}".ljust(80) + f"{'BITPIX':8s}= {'8':>20s}".ljust(80) + f"{'NAXIS':8s}= {'0':>20s}".ljust(80)
    raw = (simple + card + "END".ljust(80)).ljust(2880).encode("ascii")
    try:
        header, length = parse_header(raw)
    except NotSimpleFits:
        header = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = fits.Card.fromstring(card).value
    except fits.VerifyError:  # astropy cannot parse it either: the fast path must not have
        assert header is None, (value_field, header)
        return
    if header is None:  # declined: only for values that are not a plain str, int, float or bool in astropy
        assert not isinstance(reference, (str, int, float, bool)), (value_field, reference)
        return
    assert length == 2880
    assert type(header["KEY"]) is type(reference) and header["KEY"] == reference, (value_field, header["KEY"], reference)


def test_a_file_larger_than_any_cutout_is_left_to_astropy_without_reading_it_whole(tmp_path, monkeypatch):
    import cai_edge.io.fits_single_hdu as fast_path

    path = tmp_path / "big.fits"
    cutout_hdul(np.ones((5, 32, 32), np.float32), np.array([19.0, 18.0, 17.5, 17.2, 17.0])).writeto(path)
    assert read_single_hdu_image(path) is not None
    monkeypatch.setattr(fast_path, "MAX_CUTOUT_BYTES", path.stat().st_size - 1)
    assert read_single_hdu_image(path) is None
    assert read_cutout(path).status == "ok"  # astropy reads it


def test_read_at_most_gathers_short_reads_and_never_reads_past_its_limit():
    """The bounded read both fast paths use (FITS cutouts, stored bundle members): a pipe hands
    its bytes over in pieces, so several reads make up one result, and the limit is a hard stop."""
    import os
    import threading
    import time

    from cai_edge.io.limits import read_at_most

    read_fd, write_fd = os.pipe()
    pieces = [b"a" * 1000, b"b" * 3000, b"c" * 500]

    def writer():
        for piece in pieces:
            os.write(write_fd, piece)
            time.sleep(0.05)  # the reader gets each piece on its own
        os.close(write_fd)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert read_at_most(read_fd, 4200) == b"".join(pieces)[:4200]
        assert read_at_most(read_fd, 1000) == b"c" * 300  # what is left: fewer only at end of file
        assert read_at_most(read_fd, 10) == b""
    finally:
        thread.join()
        os.close(read_fd)


def test_parsed_cards_are_remembered_within_a_bound():
    """A folder's headers repeat most cards, which are parsed once; the unique ones (magnitudes, ids)
    must not grow the memory without end, and a card left to astropy is refused every time."""
    import cai_edge.io.fits_single_hdu as fast_path

    fast_path._PARSED_CARDS.clear()
    for i in range(fast_path._MAX_PARSED_CARDS + 10):
        fast_path._card(f"{'MAG_R':8s}= {17 + i / 1e5:>20.5f}".ljust(80))
    assert 0 < len(fast_path._PARSED_CARDS) <= fast_path._MAX_PARSED_CARDS
    card = f"{'NAXIS1':8s}= {64:>20d}".ljust(80)
    assert fast_path._card(card) == ("NAXIS1", 64) and card in fast_path._PARSED_CARDS
    assert fast_path._card(card) == ("NAXIS1", 64)
    left = "CONTINUE  'more text'".ljust(80)
    for _ in range(2):
        with pytest.raises(NotSimpleFits):
            fast_path._card(left)
    assert left not in fast_path._PARSED_CARDS


def test_an_end_card_with_text_after_it_is_left_to_astropy():
    simple = "".join(f"{k:8s}= {v:>20s}".ljust(80) for k, v in (("SIMPLE", "T"), ("BITPIX", "8"), ("NAXIS", "0")))
    for _ in range(2):  # the second time from the parsed-card cache
        with pytest.raises(NotSimpleFits, match="END card with text"):
            parse_header((simple + "END     x".ljust(80)).ljust(2880).encode("ascii"))
    header, length = parse_header((simple + "END".ljust(80)).ljust(2880).encode("ascii"))
    assert header == {"SIMPLE": True, "BITPIX": 8, "NAXIS": 0} and length == 2880


def test_a_cutouts_source_is_its_path_as_rows_name_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cutout_hdul(np.ones((5, 32, 32), np.float32), np.array([19.0, 18.0, 17.5, 17.2, 17.0])).writeto("a.fits")
    assert read_cutout("./a.fits").source == "a.fits" and read_cutout(tmp_path / "." / "a.fits").source == str(tmp_path / "a.fits")
