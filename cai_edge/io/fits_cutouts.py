"""FITS cutouts: one galaxy per file, or per five single-band files; files of many galaxies are handed on.

A galaxy's file holds a ``(5, H, W)`` cube (primary HDU or the first image extension, so fpack/
RICE-compressed files work) in u,g,r,i,z order (or as ``BANDS`` declares), or one image
extension per band (``EXTNAME`` ``U`` … ``Z``, or a ``FILTER``/``BAND`` keyword: see
:mod:`cai_edge.io.fits_band_extensions`). A file whose image is ``(N, 5, H, W)``, or that has an
``IMAGES`` HDU, holds many galaxies (:mod:`cai_edge.io.partitions`). ``H, W ≥ 32``; pixels in
nanomaggies or a ``BUNIT`` with a defined conversion. Magnitudes come from the header keys
``MAG_U … MAG_Z`` or, when given, a catalog joined on ``id`` = file stem (the catalog wins:
:mod:`cai_edge.io.magnitude_sources`).

Single-band files of one galaxy are named ``<id>_u.fits`` … ``<id>_z.fits`` (also ``<id>-u``,
``<id>_U``, ``<id>.u``), or live in band folders ``u/<id>.fits`` … ``z/<id>.fits``; see
:func:`cai_edge.io.inputs.plan_units` for how they are grouped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from cai_edge.errors import InputError
from cai_edge.io.atomic import atomic_path
from cai_edge.io.catalog import Catalog
from cai_edge.io.fits_band_extensions import band_extensions, hdu_label, read_band_extensions, stack_bands
from cai_edge.io.fits_conventions import check_band_file, to_nanomaggies, to_ugriz
from cai_edge.io.fits_hdus import FitsHdu, open_fits
from cai_edge.io.fits_single_hdu import SingleHduImage, read_bytes, read_single_hdu_image
from cai_edge.io.galaxy_headers import Headers, galaxy_record, unit_header
from cai_edge.io.partitions import galaxies_hdus, read_galaxy_cube
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.status import BAD_BANDS, BAD_SHAPE, UNREADABLE
from cai_edge.photometry import BANDS, HEADER_MAG_KEYS, PIXEL_SCALE_ARCSEC
from cai_edge.preprocessing import CROP

if TYPE_CHECKING:  # astropy is imported where it is used: a plain cutout folder never needs it
    from astropy.io import fits

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz")
_BAND_FILE = re.compile(r"^(?P<id>.+)_(?P<band>[ugriz])$")
_OTHER_BAND_FILE = re.compile(r"^(?P<id>.+)[-_.](?P<band>[ugrizUGRIZ])$")
_NEAR_BAND_FILE = re.compile(r"^(?P<id>.+?)[-._ ]?(?P<band>[ugrizUGRIZ])$")


_SUFFIXES_LONGEST_FIRST = sorted(FITS_SUFFIXES, key=len, reverse=True)


def is_fits(path: str | os.PathLike) -> bool:
    return os.path.basename(os.fspath(path)).lower().endswith(FITS_SUFFIXES)


def galaxy_id(path: str | os.PathLike) -> str:
    """The file name without its FITS suffix(es): ``J1234+5678.fits.gz`` → ``J1234+5678``."""
    name = os.path.basename(os.fspath(path))
    lower = name.lower()
    for suffix in _SUFFIXES_LONGEST_FIRST:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def band_file_parts(path: str | os.PathLike, strict: bool = True) -> tuple[str, str] | None:
    """``(id, band)`` for a single-band file name: ``<id>_<band>.fits``; with ``strict=False`` also
    ``<id>-g``, ``<id>_G``, ``<id>.g`` (which are grouped only when a galaxy has two or more)."""
    match = (_BAND_FILE if strict else _OTHER_BAND_FILE).match(galaxy_id(path))
    return (match["id"], match["band"].lower()) if match else None


def _one_galaxy(hdus: Sequence[FitsHdu]) -> tuple[np.ndarray, Headers, bool, tuple[int, ...]]:
    """``(data, headers, converted, shape)`` of a one-galaxy file: ``converted`` when already u,g,r,i,z
    nanomaggies; ``shape`` the cutout's own (a valid cube is read as its central 32×32 only)."""
    found = band_extensions(hdus)
    if found:
        cubes = [h for h in hdus if h.kind == "image" and len([d for d in h.shape if d > 1]) == 3]
        if cubes:
            raise InputError(BAD_BANDS, f"the file holds a cube of shape {cubes[0].shape} in {hdu_label(cubes[0])} and band "
                                        f"extensions {', '.join(hdu_label(h) for _, h in found)}; cai-edge cannot tell "
                                        "which is the galaxy: keep one of them")
        data, headers = read_band_extensions(hdus[0], found)
        return data, headers, True, data.shape
    image, headers = _first_image_hdu(hdus)
    if len(image.shape) == 3 and image.shape[0] == len(BANDS) and min(image.shape[1:]) >= CROP:
        return image.read_central(CROP), headers, False, image.shape
    data = image.read()
    return data, headers, False, data.shape


def _first_image(path: Path, label: str) -> tuple[np.ndarray, Headers]:
    """Data and headers of a one-band file; :class:`InputError` if unreadable. Notes name its primary
    header ``label`` and an image extension's ``label HDU 1 (NAME)``, however the file is read.

    A plain one-HDU file is read by :mod:`cai_edge.io.fits_single_hdu`; anything else by
    :func:`cai_edge.io.fits_hdus.open_fits` (fitsio when it reads the file exactly, else astropy).
    """
    raw = read_bytes(path)  # read once: for the fast path, then for the HDU headers
    simple = read_single_hdu_image(path, raw) if raw is not None else None
    if simple is not None:
        return simple.data, [(label, simple.header)]
    with open_fits(path, raw=raw) as hdus:
        image, headers = _first_image_hdu(hdus)  # the primary header first
        return image.read(), [(label, headers[0][1]), *((f"{label} {where}", header) for where, header in headers[1:])]


def _first_image_hdu(hdus: Sequence[FitsHdu]) -> tuple[FitsHdu, Headers]:
    """The first HDU holding an image, and the headers that speak for it: the primary's, then its own."""
    image = next((h for h in hdus if h.kind == "image" and len(h.shape) >= 2), None)
    if image is None:
        raise InputError(UNREADABLE, "no image HDU in the FITS file")
    return image, [(hdu_label(h), h.header) for h in ((hdus[0], image) if image.index else (image,))]


def _to_cube(data: np.ndarray, header: Mapping) -> np.ndarray:
    """A cube reordered to u,g,r,i,z and in nanomaggies; a single plane is converted too, so another survey's
    convention is named before its shape is refused."""
    if data.ndim == 3:
        data = to_ugriz(data, header)
    if data.ndim == 2 or (data.ndim == 3 and data.shape[0] == len(BANDS)):
        data = to_nanomaggies(data, header)
    return data


def read_fits_file(path: str | os.PathLike, catalog: Catalog | None = None, preread: SingleHduImage | None = None,
                   raw: bytes | None = None) -> list[GalaxyRecord]:
    """Every galaxy of one FITS file: one record for a cutout, one per galaxy for a many-galaxy file.

    ``preread`` is the file already read by :func:`read_single_hdu_image`, or ``raw`` its bytes
    (:func:`~cai_edge.io.fits_single_hdu.read_whole`), so it is not read twice (without either the
    file is read once here and its bytes shared by the readers). Never raises for bad input: a
    record's status says why.
    """
    path = str(Path(path))  # the source as rows have always named it (``./a.fits`` → ``a.fits``)
    gid = galaxy_id(path)
    data = None
    if preread is None:
        raw = read_bytes(path) if raw is None else raw
        preread = read_single_hdu_image(path, raw) if raw is not None else None
    try:
        if preread is not None:  # one 2- or 3-D image HDU
            data, headers, converted = preread.data, [("HDU 0 (PRIMARY)", preread.header)], False
            shape = data.shape
        else:
            with open_fits(path, raw=raw) as hdus:
                many = galaxies_hdus(hdus)
                if many is not None:
                    return list(read_galaxy_cube(Path(path), *many, catalog, primary=hdus[0]))
                data, headers, converted, shape = _one_galaxy(hdus)
        cube = data if converted else _to_cube(data, unit_header(headers))
        return [galaxy_record(gid, path, cube, headers, catalog, shape)]
    except InputError as exc:
        message = str(exc)
        near = _NEAR_BAND_FILE.match(gid)
        if exc.status == BAD_SHAPE and near and data is not None and np.ndim(data) == 2:
            message += (f"; if this is the {near['band'].lower()} band of galaxy {near['id']}, name the five files "
                        f"{near['id']}_u.fits … {near['id']}_z.fits (or put them in folders u/ … z/) to have them read as one galaxy")
        return [GalaxyRecord.failed(gid, path, exc.status, message)]


def read_cutout(path: str | os.PathLike, catalog: Catalog | None = None, preread: SingleHduImage | None = None) -> GalaxyRecord:
    """One cutout file → a :class:`GalaxyRecord` (the first, for a file of many galaxies); never raises for bad input."""
    return read_fits_file(path, catalog, preread)[0]


def band_file_pattern(gid: str, path: str | os.PathLike) -> str:
    """How the band files of ``gid`` are named, as their rows' source shows it: ``<id>_[ugriz]`` (the documented
    form), else with the file's own separator and case (``<id>-[ugriz]``, ``<id>.[UGRIZ]``); the files of one
    band group share it, so two groups of one id in one folder never share a source."""
    stem, letters = galaxy_id(path), "".join(BANDS)
    if len(stem) == len(gid) + 2 and stem.startswith(gid) and stem[-2] in "-_." and stem[-1].lower() in BANDS:
        return f"{gid}{stem[-2]}[{letters.upper() if stem[-1].isupper() else letters}]"
    return f"{gid}_[{letters}]"


def band_files_source(gid: str, files: Sequence[tuple[str, str | os.PathLike]]) -> str:
    """How a galaxy's band files are named in its rows: ``dir/<id>_[ugriz]`` (:func:`band_file_pattern`) or ``dir/[ugriz]/<id>.fits``."""
    if not files:
        return gid
    files = [(b, Path(p)) for b, p in files]
    first = files[0][1]
    if len({p.parent for _, p in files}) > 1:  # band folders
        return str(first.parent.parent / f"[{''.join(BANDS)}]" / first.name)
    return str(first.parent / band_file_pattern(gid, first))


def read_band_files(gid: str, files: Mapping[str, str | os.PathLike] | Sequence[tuple[str, str | os.PathLike]],
                    catalog: Catalog | None = None) -> GalaxyRecord:
    """Single-band files of one galaxy (band → path, or ``(band, path)`` pairs) → a :class:`GalaxyRecord`."""
    pairs = [(b, Path(p)) for b, p in (files.items() if isinstance(files, Mapping) else files)]
    source = band_files_source(gid, pairs)
    labels = _file_labels([p for _, p in pairs])
    try:
        cube, headers = stack_bands(pairs, lambda band, path: _band_file_plane(band, path, labels[path]), str, "file")
        return galaxy_record(gid, source, cube, headers, catalog)
    except InputError as exc:
        return GalaxyRecord.failed(gid, source, exc.status, str(exc))


def _file_labels(paths: Sequence[Path]) -> dict[Path, str]:
    """How notes name a galaxy's band files: from their common folder (``g0_u.fits``, or ``u/g0.fits`` in band folders)."""
    try:
        folder = Path(os.path.commonpath([p.parent for p in paths]))
        return {p: str(p.relative_to(folder)) for p in paths}
    except ValueError:  # no common folder (relative and absolute paths mixed)
        return {p: str(p) for p in paths}


def _band_file_plane(band: str, path: Path, label: str) -> tuple[np.ndarray, Headers]:
    data, headers = _first_image(path, label)
    header = unit_header(headers)
    plane = to_nanomaggies(np.squeeze(data), header, (band,))
    check_band_file(header, band)
    return plane, headers


def cutout_hdul(
    cube: np.ndarray, magnitudes: np.ndarray, extra: Mapping[str, tuple] | None = None, compress: bool = False
) -> fits.HDUList:
    """A ``(5,H,W)`` nanomaggy cube with the header keys the readers expect.

    ``compress=True`` stores it RICE-compressed (fpack style, quantized at 1/16 of the noise)
    in the first extension, which the readers find like an uncompressed primary image.
    """
    from astropy.io import fits

    header = fits.Header()
    header["BUNIT"] = ("nanomaggy", "SDSS flux unit: m = 22.5 - 2.5 log10(f)")
    header["PIXSCALE"] = (PIXEL_SCALE_ARCSEC, "arcsec per pixel")
    header["BANDS"] = ("".join(BANDS), "band order along axis 3 (NAXIS3)")
    for key, band, mag in zip(HEADER_MAG_KEYS, BANDS, magnitudes):
        header[key] = (float(mag), f"catalog {band} magnitude")
    for key, value in (extra or {}).items():
        header[key] = value
    data = np.asarray(cube, dtype=np.float32)
    if compress:
        image = fits.CompImageHDU(data, header=header, compression_type="RICE_1", quantize_level=16, quantize_method=2)
        return fits.HDUList([fits.PrimaryHDU(), image])
    return fits.HDUList([fits.PrimaryHDU(data, header=header)])


def write_atomic(hdul: fits.HDUList, path: Path) -> None:
    """Write to a temporary name in the same folder, then rename: readers never see half a file."""
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)
