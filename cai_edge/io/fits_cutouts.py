"""FITS cutouts, one galaxy per file (a 5-band cube) or per five files (``<id>_u.fits`` …).

A cube lives in the primary HDU or the first image HDU (so fpack/RICE-compressed files work),
shaped ``(5, H, W)`` in u,g,r,i,z order with ``H, W ≥ 32``, in nanomaggies. Magnitudes come
from the header keys ``MAG_U … MAG_Z`` or, when given, a catalog joined on ``id`` = file stem.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from cai_edge.errors import InputError
from cai_edge.io.atomic import atomic_path
from cai_edge.io.catalog import Catalog
from cai_edge.io.fits_conventions import check_band_file, to_nanomaggies, to_ugriz
from cai_edge.io.fits_single_hdu import SingleHduImage, read_single_hdu_image
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.status import BAD_SHAPE, MISSING_BANDS, UNREADABLE
from cai_edge.photometry import BANDS, HEADER_MAG_KEYS, PIXEL_SCALE_ARCSEC
from cai_edge.preprocessing import prepare_image, prepare_magnitudes

if TYPE_CHECKING:  # astropy is imported where it is used: a plain cutout folder never needs it
    from astropy.io import fits

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz")
_BAND_FILE = re.compile(r"^(?P<id>.+)_(?P<band>[ugriz])$")
_NEAR_BAND_FILE = re.compile(r"^(?P<id>.+?)[-._ ]?(?P<band>[ugrizUGRIZ])$")


def is_fits(path: Path) -> bool:
    return path.name.lower().endswith(FITS_SUFFIXES)


def galaxy_id(path: Path) -> str:
    """The file name without its FITS suffix(es): ``J1234+5678.fits.gz`` → ``J1234+5678``."""
    name = path.name
    for suffix in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def band_file_parts(path: Path) -> tuple[str, str] | None:
    """``(id, band)`` for a single-band file named ``<id>_<band>.fits``, else None."""
    match = _BAND_FILE.match(galaxy_id(path))
    return (match["id"], match["band"]) if match else None


def _first_image(path: Path) -> tuple[np.ndarray, Mapping]:
    """Data and header of the first HDU that holds an image; :class:`InputError` if unreadable.

    A plain one-HDU file is read by :mod:`cai_edge.io.fits_single_hdu`; anything else by astropy.
    """
    simple = read_single_hdu_image(path)
    if simple is not None:
        return simple.data, simple.header
    try:
        from astropy.io import fits

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy warns on truncated files before raising
            with fits.open(path, memmap=False) as hdul:
                for hdu in hdul:
                    if getattr(hdu, "is_image", False) and hdu.data is not None and hdu.data.ndim >= 2:
                        return np.array(hdu.data), hdu.header.copy()
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError … on corrupt input
        raise InputError(UNREADABLE, f"cannot read FITS file ({type(exc).__name__}: {exc})") from exc
    raise InputError(UNREADABLE, "no image HDU in the FITS file")


def _header_magnitudes(header: Mapping) -> list[float] | None:
    if not all(k in header for k in HEADER_MAG_KEYS):
        return None
    return [header[k] for k in HEADER_MAG_KEYS]


def _magnitudes_and_z(gid: str, header: Mapping, catalog: Catalog | None) -> tuple[np.ndarray, float, str]:
    """Magnitudes, z_spec and the magnitude system the source declares (catalog first, then header ``MAGSYS``)."""
    z = float(header.get("Z_SPEC", math.nan)) if isinstance(header.get("Z_SPEC"), (int, float)) else math.nan
    if catalog is not None:
        entry = catalog.lookup(gid)
        if not math.isnan(entry.z_spec):
            z = entry.z_spec
        if entry.magnitudes is None:
            raise InputError(entry.status, entry.message)
        return entry.magnitudes, z, entry.magnitude_system
    return prepare_magnitudes(_header_magnitudes(header)), z, str(header.get("MAGSYS", "") or "").strip()


def _checked_record(gid: str, source: str, image: np.ndarray, mags: np.ndarray, z: float, system: str) -> GalaxyRecord:
    return GalaxyRecord(gid, source, image, mags, z, magnitude_system=system)


def read_cutout(path: str | os.PathLike, catalog: Catalog | None = None, preread: SingleHduImage | None = None) -> GalaxyRecord:
    """One 5-band cutout file → a :class:`GalaxyRecord` (never raises for bad input; the status says why).

    ``preread`` is the file already read by :func:`read_single_hdu_image`, so it is not read twice.
    """
    path = Path(path)
    gid = galaxy_id(path)
    data = None
    try:
        data, header = (preread.data, preread.header) if preread is not None else _first_image(path)
        if data.ndim == 3 and data.shape[0] == len(BANDS):
            data = to_nanomaggies(to_ugriz(data, header), header)
        image = prepare_image(data)
        mags, z, system = _magnitudes_and_z(gid, header, catalog)
    except InputError as exc:
        message = str(exc)
        near = _NEAR_BAND_FILE.match(gid)
        if exc.status == BAD_SHAPE and near and data is not None and np.ndim(data) == 2:
            message += (f"; if this is the {near['band'].lower()} band of galaxy {near['id']}, name the five files "
                        f"{near['id']}_u.fits … {near['id']}_z.fits to have them read as one galaxy")
        return GalaxyRecord.failed(gid, str(path), exc.status, message)
    return _checked_record(gid, str(path), image, mags, z, system)


def read_band_files(gid: str, files: Mapping[str, Path], catalog: Catalog | None = None) -> GalaxyRecord:
    """Five single-band files of one galaxy (``files`` maps band → path) → a :class:`GalaxyRecord`."""
    source = str(next(iter(files.values())).parent / f"{gid}_[{''.join(BANDS)}]") if files else gid
    missing = [b for b in BANDS if b not in files]
    if missing:
        return GalaxyRecord.failed(gid, source, MISSING_BANDS, f"no file for band(s) {','.join(missing)}")
    planes, headers = [], []
    try:
        for band in BANDS:
            data, header = _first_image(files[band])
            if data.ndim != 2:
                data = np.squeeze(data)
            check_band_file(header, band)
            planes.append(to_nanomaggies(data, header, (band,)))
            headers.append(header)
        shapes = {p.shape for p in planes}
        if len(shapes) != 1:
            raise InputError(BAD_SHAPE, f"band images differ in shape: {sorted(shapes)}")
        image = prepare_image(np.stack(planes))
        merged: dict = {}
        for header in headers:  # MAG_<B> may sit in each band's own header
            merged.update({k: header[k] for k in (*HEADER_MAG_KEYS, "Z_SPEC", "MAGSYS") if k in header})
        mags, z, system = _magnitudes_and_z(gid, merged, catalog)
    except InputError as exc:
        return GalaxyRecord.failed(gid, source, exc.status, str(exc))
    return _checked_record(gid, source, image, mags, z, system)


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
