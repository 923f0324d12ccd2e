"""The HDUs of a FITS file — name, kind, shape, header, data on demand — read by cfitsio or astropy.

Tile-compressed cutouts (RICE, GZIP, HCOMPRESS, PLIO: fpack's ``.fz`` and the examples cai-edge
ships) decode about 10× faster through `fitsio <https://github.com/esheldon/fitsio>`_ (cfitsio,
the reader DES and LSST tools use) than through astropy. fitsio answers only for files of image
HDUs it reads exactly as astropy does; everything else — a table HDU, ``BLANK``/``BSCALE``/``BZERO``
scaling, a gzipped file (cfitsio would inflate it whole before any size check), a path cfitsio
would parse as its extended-filename syntax, fitsio not installed, or any error — is read by
astropy, so unusual and broken files keep astropy's behaviour and its messages. A property test
checks data and header values against astropy over the compression types.

Headers are plain ``keyword → value`` dicts of what the file says about its pixels; the keywords
that only describe the storage (``NAXISn``, ``PCOUNT``, the ``Z…``/``T…`` keywords of a compressed
HDU, checksums) are left out, so both readers give the same dict.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from cai_edge.errors import InputError
from cai_edge.io.fits_single_hdu import typed_cards
from cai_edge.io.limits import MAX_PARTITION_BYTES, MB
from cai_edge.io.status import UNREADABLE

_STORAGE_KEYS = re.compile(
    r"(SIMPLE|EXTEND|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|DISP)\d+|THEAP"
    r"|CHECKSUM|DATASUM|ZIMAGE|ZTENSION|ZBITPIX|ZNAXIS\d*|ZPCOUNT|ZGCOUNT|ZTILE\d+|ZCMPTYPE|ZNAME\d+|ZVAL\d+|ZQUANTIZ"
    r"|ZDITHER0|ZSIMPLE|ZEXTEND|ZBLOCKED|ZHECKSUM|ZDATASUM|ZMASKCMP|ZBLANK|ZSCALE|ZZERO)"
)
_SKIPPED = {"", "COMMENT", "HISTORY", "EXTNAME"}  # the name is FitsHdu.name
_SCALING_KEYS = ("BLANK", "BSCALE", "BZERO")
# cfitsio reads "file.fits[1]", "mem://…", "-" and "!name" as instructions: only plain names go to it.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+-]+")
_FITSIO_SUFFIXES = (".fits", ".fit", ".fts", ".fz")
READER_VARIABLE = "CAI_EDGE_FITS_READER"  # "astropy": never fitsio (to compare, or to step round a cfitsio problem)


@dataclass
class FitsHdu:
    """One HDU: ``kind`` is ``"image"`` or ``"table"``; ``shape`` in numpy order (``()`` when empty)."""

    index: int
    name: str
    kind: str
    shape: tuple[int, ...]
    header: dict
    compressed: bool
    bytes_per_value: int
    _read: Callable[[], np.ndarray]
    _raw: object = None  # astropy's HDU, for tables
    reader: str = "astropy"  # or "fitsio"

    @property
    def declared_bytes(self) -> int:
        """What the data will take decoded, from the header alone."""
        return math.prod(self.shape) * self.bytes_per_value if self.shape else 0

    def read(self, limit: int = MAX_PARTITION_BYTES) -> np.ndarray:
        """The HDU's data, refused before decoding when it would decode to more than ``limit`` bytes."""
        if self.declared_bytes > limit:
            raise InputError(UNREADABLE, f"HDU {self.index} ({self.name or 'unnamed'}) declares {self.shape} values, "
                             f"over {limit // MB} MB decoded (raise CAI_EDGE_MAX_PARTITION_MB)")
        return self._read()

    def table(self):
        """A table HDU as an astropy ``Table`` (units from ``TUNITn``, masks from ``TNULLn``)."""
        from astropy.table import Table

        try:
            return Table.read(self._raw)
        except Exception as exc:
            raise InputError(UNREADABLE, f"cannot read table HDU {self.index} ({type(exc).__name__}: {exc})") from exc


def _hdu_name(extname, index: int) -> str:
    """``EXTNAME`` in upper case; an unnamed primary HDU is ``PRIMARY`` (as astropy names it)."""
    name = str(extname or "").strip().upper()
    return name or ("PRIMARY" if index == 0 else "")


def user_header(cards) -> dict:
    """``(keyword, value)`` pairs → the dict of what the header says, storage keywords left out (first value kept)."""
    header: dict = {}
    for key, value in cards:
        if key in _SKIPPED or _STORAGE_KEYS.fullmatch(key):
            continue
        header.setdefault(key, value)
    return header


def _fitsio_usable(path: Path) -> bool:
    text = str(path.absolute())
    return text.lower().endswith(_FITSIO_SUFFIXES) and bool(_PLAIN_PATH.fullmatch(text))


def _astropy_read(path: Path, index: int) -> np.ndarray:
    """One image HDU's data read by astropy; a failure is an :class:`InputError` with astropy's words."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                return np.array(hdul[index].data)
    except Exception as exc:
        raise InputError(UNREADABLE, f"cannot read FITS file ({type(exc).__name__}: {exc})") from exc


def _fitsio_read(hdu, path: Path, index: int) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        try:
            return hdu.read()
        except Exception:  # a damaged tile: astropy decides, and its message is the one users know
            return _astropy_read(path, index)
    return read


def _fitsio_hdus(fits_file, path: Path) -> list[FitsHdu] | None:
    """The HDUs as fitsio reads them, or None when one of them needs astropy."""
    hdus = []
    for index, hdu in enumerate(fits_file):
        if hdu.get_exttype() != "IMAGE_HDU":
            return None
        records = hdu.read_header().records()
        cards = typed_cards([r["card_string"].ljust(80)[:80] for r in records])  # typed by the card text, as astropy types it
        if cards is None or any(k in _SCALING_KEYS for k, _ in cards):
            return None
        header = user_header(cards)
        shape = tuple(int(d) for d in hdu.get_dims())
        bitpix = dict(cards).get("ZBITPIX" if hdu.is_compressed() else "BITPIX", 8)
        hdus.append(FitsHdu(index, _hdu_name(hdu.get_extname(), index), "image", shape, header,
                            bool(hdu.is_compressed()), abs(int(bitpix)) // 8, _fitsio_read(hdu, path, index), reader="fitsio"))
    return hdus


def _astropy_data(hdu, is_image: bool) -> Callable[[], np.ndarray]:
    def read():
        try:
            return np.array(hdu.data) if is_image else hdu.data
        except Exception as exc:  # a truncated or damaged data unit
            raise InputError(UNREADABLE, f"cannot read FITS file ({type(exc).__name__}: {exc})") from exc
    return read


def _astropy_hdus(hdul) -> list[FitsHdu]:
    hdus = []
    for index, hdu in enumerate(hdul):
        is_image = bool(getattr(hdu, "is_image", False))
        kind = "image" if is_image else "table" if hasattr(hdu, "columns") else "other"
        header = user_header((card.keyword, card.value) for card in hdu.header.cards)
        if is_image:
            shape = tuple(int(hdu.header.get(f"NAXIS{a}", 0)) for a in range(int(hdu.header.get("NAXIS", 0)), 0, -1))
        else:
            shape = (int(hdu.header.get("NAXIS2", 0)),)
        bitpix = hdu.header.get("BITPIX", 8) if is_image else 8
        hdus.append(FitsHdu(index, _hdu_name(hdu.name, index), kind, shape if all(shape) else (),
                            header, hdu.__class__.__name__ == "CompImageHDU", abs(int(bitpix)) // 8,
                            _astropy_data(hdu, is_image), hdu))
    return hdus


def _open_with_fitsio(path: Path):
    """``(fitsio.FITS, hdus)`` when fitsio reads this file exactly as astropy would, else None."""
    if not _fitsio_usable(path):
        return None
    try:
        import fitsio
    except ImportError:
        return None
    fits_file = None
    try:
        fits_file = fitsio.FITS(str(path.absolute()))
        hdus = _fitsio_hdus(fits_file, path)
    except Exception:  # anything cfitsio dislikes: astropy reads it and says why
        hdus = None
    if hdus is None and fits_file is not None:
        fits_file.close()
    return (fits_file, hdus) if hdus is not None else None


@contextmanager
def open_fits(path: str | Path, prefer_fitsio: bool = True) -> Iterator[list[FitsHdu]]:
    """The file's HDUs, open until the ``with`` ends; an unreadable file is an :class:`InputError`."""
    path = Path(path)
    opened = _open_with_fitsio(path) if prefer_fitsio and os.environ.get(READER_VARIABLE, "") != "astropy" else None
    if opened is not None:
        fits_file, hdus = opened
        try:
            yield hdus
        finally:
            fits_file.close()
        return
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy warns on truncated files before raising
            hdul = fits.open(path, memmap=False)
            hdus = _astropy_hdus(hdul)
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError … on corrupt input
        raise InputError(UNREADABLE, f"cannot read FITS file ({type(exc).__name__}: {exc})") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield hdus
    finally:
        hdul.close()
