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
from cai_edge.io.fits_single_hdu import BLOCK, MAX_HEADER_BLOCKS, NotSimpleFits, parse_header, read_bytes
from cai_edge.io.header_values import REPEATED
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
    _section: Callable[[tuple], np.ndarray] | None = None  # a sub-array, decoding only what it needs

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

    def read_central(self, size: int) -> np.ndarray:
        """The central ``size``×``size`` pixels of every plane, by :func:`cai_edge.preprocessing.center_crop`'s
        rule. fitsio decodes only the tiles they lie in (a 64×64 RICE cutout: half the work); the values
        are those of :meth:`read`, cropped."""
        h, w = self.shape[-2:]
        top, left = (h - size) // 2, (w - size) // 2
        window = (Ellipsis, slice(top, top + size), slice(left, left + size))
        if self._section is not None and self.declared_bytes <= MAX_PARTITION_BYTES:
            try:
                return self._section(tuple(slice(None) for _ in self.shape[:-2]) + window[1:])
            except Exception:  # astropy decides, as for a full read
                pass
        return self.read()[window]

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
    """``(keyword, value)`` pairs → the dict of what the header says, storage keywords left out; a keyword
    given again with another value keeps the first, the later listed under :data:`~cai_edge.io.header_values.REPEATED`."""
    header: dict = {}
    for key, value in cards:
        if key in _SKIPPED or _STORAGE_KEYS.fullmatch(key):
            continue
        if key not in header:
            header[key] = value
        elif str(value) != str(header[key]):
            header.setdefault(REPEATED, []).append((key, value))
    return header


def _fitsio_usable(path: Path) -> bool:
    text = str(path.absolute())
    return text.lower().endswith(_FITSIO_SUFFIXES) and bool(_PLAIN_PATH.fullmatch(text))


def _unreadable(exc: Exception) -> InputError:
    """A FITS reader's failure as the ``unreadable`` error users see, in the reader's own words."""
    return InputError(UNREADABLE, f"cannot read FITS file ({type(exc).__name__}: {exc})")


def _astropy_read(path: Path, index: int) -> np.ndarray:
    """One image HDU's data read by astropy; a failure is an :class:`InputError` with astropy's words."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                return np.array(hdul[index].data)
    except Exception as exc:
        raise _unreadable(exc) from exc


def _fitsio_read(fits_file, path: Path, index: int) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        try:
            return fits_file[index].read()
        except Exception:  # a damaged tile: astropy decides, and its message is the one users know
            return _astropy_read(path, index)
    return read


def _data_bytes(header: dict) -> int:
    """The bytes of the data unit after ``header`` (FITS standard 4.4.1.1), padding excluded."""
    values = [header.get(k, d) for k, d in (("BITPIX", None), ("NAXIS", None), ("GCOUNT", 1), ("PCOUNT", 0))]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise NotSimpleFits("structure keywords")
    bitpix, naxis, gcount, pcount = values
    axes = [header.get(f"NAXIS{a}") for a in range(1, naxis + 1)]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in axes):
        raise NotSimpleFits("NAXISn")
    return abs(bitpix) // 8 * gcount * (pcount + math.prod(axes)) if naxis else 0


def _headers_from_bytes(path: Path, raw: bytes | None = None) -> list[dict] | None:
    """Every HDU's header, parsed from the file's bytes by the fast parser (typed as astropy types
    them), or None when a header, the file's size or its layout is beyond that parser."""
    raw = read_bytes(path) if raw is None else raw
    if raw is None:
        return None
    headers, offset = [], 0
    try:
        while offset < len(raw):
            header, length = parse_header(memoryview(raw)[offset : offset + MAX_HEADER_BLOCKS * BLOCK])
            headers.append(header)
            offset += length + -(-_data_bytes(header) // BLOCK) * BLOCK
    except NotSimpleFits:
        return None
    return headers if headers and offset == len(raw) else None


def _image_hdus(fits_file, path: Path, headers: list[dict]) -> list[FitsHdu] | None:
    """Image HDUs (plain or tile-compressed) described by ``headers``, read by fitsio; None when one needs astropy."""
    hdus = []
    for index, raw in enumerate(headers):
        compressed = raw.get("ZIMAGE") is True and raw.get("XTENSION") == "BINTABLE"
        if index and not compressed and raw.get("XTENSION") != "IMAGE":
            return None  # a table, or an extension astropy reads its own way
        if any(k in raw for k in _SCALING_KEYS):
            return None
        prefix = "Z" if compressed else ""
        naxis, bitpix = raw.get(f"{prefix}NAXIS"), raw.get(f"{prefix}BITPIX")
        axes = [raw.get(f"{prefix}NAXIS{a}") for a in range(naxis, 0, -1)] if isinstance(naxis, int) else None
        if axes is None or not all(isinstance(v, int) for v in (*axes, bitpix)):
            return None
        shape = tuple(axes) if axes and all(axes) else ()
        hdus.append(FitsHdu(index, _hdu_name(raw.get("EXTNAME"), index), "image", shape, user_header(raw.items()),
                            compressed, abs(bitpix) // 8, _fitsio_read(fits_file, path, index), reader="fitsio",
                            _section=lambda window, i=index: fits_file[i][window]))
    return hdus


def _astropy_data(hdu, is_image: bool) -> Callable[[], np.ndarray]:
    def read():
        try:
            return np.array(hdu.data) if is_image else hdu.data
        except Exception as exc:  # a truncated or damaged data unit
            raise _unreadable(exc) from exc
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


def _open_with_fitsio(path: Path, raw: bytes | None = None):
    """``(fitsio.FITS, hdus)`` when fitsio reads this file exactly as astropy would, else None."""
    if not _fitsio_usable(path):
        return None
    try:
        import fitsio
    except ImportError:
        return None
    headers = _headers_from_bytes(path, raw)
    if headers is None:
        return None
    fits_file = None
    try:
        fits_file = fitsio.FITS(str(path.absolute()))
        hdus = _image_hdus(fits_file, path, headers) if len(fits_file) == len(headers) else None
    except Exception:  # anything cfitsio dislikes: astropy reads it and says why
        hdus = None
    if hdus is None and fits_file is not None:
        fits_file.close()
    return (fits_file, hdus) if hdus is not None else None


@contextmanager
def open_fits(path: str | Path, prefer_fitsio: bool = True, raw: bytes | None = None) -> Iterator[list[FitsHdu]]:
    """The file's HDUs, open until the ``with`` ends; an unreadable file is an :class:`InputError`.

    ``raw``: the file's bytes when the caller has read them already (:func:`read_bytes`).
    """
    path = Path(path)
    opened = _open_with_fitsio(path, raw) if prefer_fitsio and os.environ.get(READER_VARIABLE, "") != "astropy" else None
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
        raise _unreadable(exc) from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield hdus
    finally:
        hdul.close()
