"""A fast reader for the common cutout file: one uncompressed image HDU and nothing else.

astropy parses every card into a ``Header`` and builds an ``HDUList`` (~0.4 ms a file, GIL held);
a folder of 20,000 cutouts spends more time there than in the model. This module reads the file
once, parses just the header cards, and views the data with ``np.frombuffer`` (~0.03 ms). It
answers only for files it fully understands and returns ``None`` for everything else — extensions,
compression, ``BLANK``, long-string ``CONTINUE`` cards, ``HIERARCH`` keys, a value it cannot
parse, a size that does not add up — and the caller then reads the file with astropy, so every
unusual or broken file keeps astropy's behaviour and its error. A property test checks that
data and header values agree with astropy's.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np

from cai_edge.io.limits import read_at_most
from cai_edge.io.safe_files import open_regular

BLOCK = 2880
CARD = 80
MAX_HEADER_BLOCKS = 64  # 2,304 cards; a cutout's header has tens (a larger one goes to astropy)
MAX_CUTOUT_BYTES = 64 << 20  # bigger files (partitions, whole frames) go to astropy
_UNCOMPRESSED_SUFFIXES = (".fits", ".fit", ".fts")
_WHOLE_FILE_SUFFIXES = (*_UNCOMPRESSED_SUFFIXES, ".fz")
_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_KEYWORD = re.compile(r"^[A-Z0-9_-]{1,8}$")
_NO_VALUE_KEYS = {"COMMENT", "HISTORY", ""}


@dataclass(frozen=True)
class SingleHduImage:
    data: np.ndarray
    header: dict  # keyword → value (str, int, float or bool), as astropy would give them


class NotSimpleFits(Exception):
    """The file is valid or invalid FITS in a form this reader leaves to astropy."""


# One match per card for the value forms a cutout header uses: a quoted string ('' escapes a
# quote), T/F, an integer or a float (D exponents allowed), then blanks or a /comment.
_CARD_VALUE = re.compile(
    r"\s*(?:'(?P<str>(?:[^']|'')*)'|(?P<bool>[TF])|(?P<int>[+-]?\d+)|(?P<float>[+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?))"
    r"\s*(?:/.*)?",
    re.DOTALL,
)


def _value(text: str) -> str | int | float | bool:
    """A card's value field (after ``= ``), typed as astropy types it; raises :class:`NotSimpleFits` if unsure."""
    match = _CARD_VALUE.fullmatch(text)
    if match is None:  # undefined (astropy's Undefined), complex, unterminated string, text after a string …
        raise NotSimpleFits(f"value {text.strip()!r}")
    kind = match.lastgroup
    if kind == "str":
        return match["str"].replace("''", "'").rstrip()
    if kind == "bool":
        return match["bool"] == "T"
    if kind == "int":
        return int(match["int"])
    return float(match["float"].replace("D", "E").replace("d", "e"))


def parse_header(raw: bytes) -> tuple[dict, int]:
    """The cards of the header at the start of ``raw`` → (keyword → value, header length in bytes)."""
    header: dict = {}
    for block in range(MAX_HEADER_BLOCKS):
        chunk = raw[block * BLOCK : (block + 1) * BLOCK]
        if len(chunk) < BLOCK:
            raise NotSimpleFits("header shorter than a block")
        try:
            text = str(chunk, "ascii")
        except UnicodeDecodeError:
            raise NotSimpleFits("non-ASCII header") from None
        for start in range(0, BLOCK, CARD):
            parsed = _card(text[start : start + CARD])
            if parsed is None:
                continue
            if parsed is _END:
                return header, (block + 1) * BLOCK
            key, value = parsed
            if key in header:
                raise NotSimpleFits(f"keyword {key!r} twice")
            header[key] = value
    raise NotSimpleFits("header longer than the fast reader reads")


# Cards already parsed. A folder's headers repeat most of their cards (SIMPLE, BITPIX, NAXISn, BUNIT,
# the band order …): parsing those once took a third off the header's time. Values are immutable.
_PARSED_CARDS: dict[str, tuple[str, str | int | float | bool] | object | None] = {}
_MAX_PARSED_CARDS = 4096
_NOT_PARSED = object()
_END = object()  # the END card


def _card(card: str) -> tuple[str, str | int | float | bool] | object | None:
    """``(keyword, value)`` of one 80-character card typed as astropy types it, None for commentary
    cards, :data:`_END` for the END card; :class:`NotSimpleFits` for anything this parser leaves to astropy."""
    parsed = _PARSED_CARDS.get(card, _NOT_PARSED)
    if parsed is _NOT_PARSED:
        parsed = _parse_card(card)
        if len(_PARSED_CARDS) >= _MAX_PARSED_CARDS:  # the unique cards (magnitudes, ids) would grow it without end
            _PARSED_CARDS.clear()
        _PARSED_CARDS[card] = parsed
    return parsed


def _parse_card(card: str) -> tuple[str, str | int | float | bool] | None:
    keyword = card[:8].rstrip()
    if keyword == "END":
        if card[3:].strip():
            raise NotSimpleFits("END card with text")
        return _END
    if keyword in _NO_VALUE_KEYS:
        return None
    if card[8:10] != "= ":  # CONTINUE, HIERARCH, or a card astropy reads its own way
        raise NotSimpleFits(keyword)
    if not _KEYWORD.match(keyword):
        raise NotSimpleFits(f"keyword {keyword!r}")
    value = _value(card[10:CARD])
    if isinstance(value, str) and value.endswith("&"):
        raise NotSimpleFits("long string")
    return keyword, value


def _int_key(header: dict, key: str) -> int:
    value = header.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise NotSimpleFits(f"{key} = {value!r}")
    return value


def _scaled(raw: np.ndarray, bitpix: int, header: dict) -> np.ndarray:
    """Apply ``BSCALE``/``BZERO`` in the dtype astropy uses, so the values agree bit for bit."""
    bscale, bzero = header.get("BSCALE", 1), header.get("BZERO", 0)
    for value in (bscale, bzero):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise NotSimpleFits("BSCALE/BZERO")
    if bscale == 1 and bzero == 0:
        return raw
    if bitpix < 0:
        raise NotSimpleFits("scaled floats")  # rare; astropy's float handling decides
    if bitpix == 64:
        raise NotSimpleFits("scaled 64-bit integers")  # not exact in float64
    if bscale == 1 and bzero == {8: -128, 16: 32768, 32: 2**31}[bitpix]:
        raise NotSimpleFits("pseudo-unsigned integers")  # astropy gives an integer dtype; leave it to astropy
    data = np.array(raw, dtype=np.float32 if bitpix in (8, 16) else np.float64)
    if bscale != 1:
        np.multiply(data, bscale, out=data, casting="unsafe")
    if bzero != 0:
        data += bzero
    return data


def read_whole(path: str | os.PathLike, limit: int | None = None) -> bytes | None:
    """The file's bytes, or None when it is larger than a cutout can be; :func:`open_regular`'s
    errors (not a regular file, over ``limit`` bytes) and ``OSError`` are raised.

    It asks for the size the file has, plus one byte to see whether it grew: ``read(64 MB)`` would
    allocate 64 MB for every 86 kB cutout, which cost more than parsing the header.
    """
    fd = open_regular(path, limit)  # never blocks on a FIFO; a device is refused
    try:
        size = os.fstat(fd).st_size
        if size > MAX_CUTOUT_BYTES:
            return None
        raw = read_at_most(fd, size + 1)
    finally:
        os.close(fd)
    return None if len(raw) > MAX_CUTOUT_BYTES else raw


def read_as_bytes(path: str | os.PathLike) -> bool:
    """Whether the fast readers take this file as bytes: an uncompressed or fpack (``.fz``) FITS suffix."""
    return os.fspath(path).lower().endswith(_WHOLE_FILE_SUFFIXES)


def read_bytes(path: str | os.PathLike) -> bytes | None:
    """An uncompressed-suffix FITS file's bytes for the fast readers, or None (too large, gzipped, unreadable)."""
    if not read_as_bytes(path):
        return None
    try:
        return read_whole(path)
    except OSError:
        return None


_NO_IMAGE = re.compile(rb"NAXIS   = +[01] ")  # the mandatory third card: no image in the primary HDU


def read_single_hdu_image(path: str | os.PathLike, raw: bytes | None = None) -> SingleHduImage | None:
    """Data and header of a one-HDU uncompressed FITS image, or None to have astropy read the file.

    ``raw`` is the file's bytes when already read (:func:`read_bytes`).
    """
    if not os.fspath(path).lower().endswith(_UNCOMPRESSED_SUFFIXES):
        return None
    try:
        raw = read_whole(path) if raw is None else raw
        if raw is None or not raw.startswith(b"SIMPLE  =                    T") or _NO_IMAGE.match(raw, 160, 240):
            return None
        header, start = parse_header(raw)
        bitpix, naxis = _int_key(header, "BITPIX"), _int_key(header, "NAXIS")
        if bitpix not in _DTYPES or not 2 <= naxis <= 3 or "BLANK" in header or header.get("GROUPS") is True:
            return None
        shape = tuple(_int_key(header, f"NAXIS{axis}") for axis in range(naxis, 0, -1))
        if min(shape) <= 0:
            return None
        nbytes = abs(bitpix) // 8 * math.prod(shape)
        padded = -(-nbytes // BLOCK) * BLOCK
        if not start + nbytes <= len(raw) <= start + padded:  # truncated, or more HDUs follow
            return None
        data = np.frombuffer(raw, dtype=_DTYPES[bitpix], count=math.prod(shape), offset=start).reshape(shape)
        return SingleHduImage(_scaled(data, bitpix, header), header)
    except (NotSimpleFits, OSError, ValueError):
        return None
