"""Partitions: many prepared galaxies per file, for bulk work on one machine or many Lambdas.

NPZ: ``images (N,5,32,32)`` float32, ``magnitudes (N,5)`` float32, optional ``ids (N,)``
(fixed-width unicode) and ``z_spec (N,)``; always read with ``allow_pickle=False``.
FITS: an ``IMAGES`` image HDU ``(N,5,32,32)`` and a ``GALAXIES`` table HDU (``id``,
``mag_u … mag_z``, ``z_spec``).
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from astropy.io import fits
from astropy.table import Table

from cai_edge.errors import InputError
from cai_edge.io.atomic import atomic_path
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.status import BAD_SHAPE, UNREADABLE
from cai_edge.photometry import BANDS, MAG_COLUMNS
from cai_edge.preprocessing import CROP, prepare_image, prepare_magnitudes

IMAGES_HDU = "IMAGES"
TABLE_HDU = "GALAXIES"


def records_from_arrays(
    path: Path, images: np.ndarray, magnitudes: np.ndarray, ids: Sequence[str], z_spec: np.ndarray
) -> Iterator[GalaxyRecord]:
    """Validate and prepare row by row: one record per row, failed rows keep their id and reason."""
    for i in range(images.shape[0]):
        gid = str(ids[i])
        z = float(z_spec[i])
        try:
            yield GalaxyRecord(gid, f"{path}[{i}]", prepare_image(images[i]), prepare_magnitudes(magnitudes[i]), z)
        except InputError as exc:
            yield GalaxyRecord.failed(gid, f"{path}[{i}]", exc.status, str(exc), z)


def _check_arrays(images: np.ndarray, magnitudes: np.ndarray, ids: Sequence[str] | None, z_spec: np.ndarray | None) -> None:
    n = images.shape[0] if images.ndim else -1
    if images.ndim != 4 or images.shape[1:] != (len(BANDS), CROP, CROP):
        raise InputError(BAD_SHAPE, f"images must be (N,{len(BANDS)},{CROP},{CROP}), got {images.shape}")
    if magnitudes.shape != (n, len(BANDS)):
        raise InputError(BAD_SHAPE, f"magnitudes must be ({n},{len(BANDS)}), got {magnitudes.shape}")
    for name, arr in (("ids", ids), ("z_spec", z_spec)):
        if arr is not None and len(arr) != n:
            raise InputError(BAD_SHAPE, f"{name} has {len(arr)} entries for {n} images")


def _partition_failure(path: Path, exc: Exception) -> GalaxyRecord:
    status = exc.status if isinstance(exc, InputError) else UNREADABLE
    return GalaxyRecord.failed(path.name, str(path), status, f"partition unusable: {exc}")


def read_npz_partition(path: str | os.PathLike) -> Iterator[GalaxyRecord]:
    """Records of an NPZ partition; an unusable file yields one failed record named after the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("images", "magnitudes") if k not in npz.files]
            if missing:
                raise InputError(BAD_SHAPE, f"missing array(s) {missing}; has {npz.files}")
            images, magnitudes = npz["images"], npz["magnitudes"]
            ids = npz["ids"].astype(str) if "ids" in npz.files else None
            z_spec = npz["z_spec"].astype(np.float64) if "z_spec" in npz.files else None
        _check_arrays(images, magnitudes, ids, z_spec)
    except (InputError, OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        yield _partition_failure(path, exc)
        return
    n = images.shape[0]
    ids = ids if ids is not None else [f"{path.stem}:{i}" for i in range(n)]
    z_spec = z_spec if z_spec is not None else np.full(n, math.nan)
    yield from records_from_arrays(path, images, magnitudes, ids, z_spec)


def read_fits_partition(path: str | os.PathLike) -> Iterator[GalaxyRecord]:
    """Records of a FITS partition (``IMAGES`` cube + ``GALAXIES`` table)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                images = np.array(hdul[IMAGES_HDU].data)
                table = Table(hdul[TABLE_HDU].data)
        magnitudes = np.stack([np.asarray(table[c], dtype=np.float64) for c in MAG_COLUMNS], axis=1)
        ids = [str(v).strip() for v in table["id"]]
        z_spec = np.asarray(table["z_spec"], dtype=np.float64) if "z_spec" in table.colnames else np.full(len(ids), math.nan)
        _check_arrays(images, magnitudes, ids, z_spec)
    except Exception as exc:  # astropy's many error types on corrupt input
        yield _partition_failure(path, exc)
        return
    yield from records_from_arrays(path, images, magnitudes, ids, z_spec)


def is_fits_partition(path: Path) -> bool:
    """True when a FITS file has the ``IMAGES`` and ``GALAXIES`` HDUs of a partition."""
    try:
        with fits.open(path, memmap=False) as hdul:
            names = {h.name for h in hdul}
    except Exception:
        return False
    return {IMAGES_HDU, TABLE_HDU} <= names


def _validated(images, magnitudes, ids, z_spec) -> tuple[np.ndarray, np.ndarray]:
    images = np.ascontiguousarray(images, dtype=np.float32)
    magnitudes = np.ascontiguousarray(magnitudes, dtype=np.float32)
    _check_arrays(images, magnitudes, ids, z_spec)
    return images, magnitudes


def write_npz_partition(
    path: str | os.PathLike,
    images: np.ndarray,
    magnitudes: np.ndarray,
    ids: Sequence[str] | None = None,
    z_spec: np.ndarray | None = None,
) -> Path:
    """Write an NPZ partition atomically (temporary file, then rename). Ids are stored as unicode, never pickled."""
    path = Path(path)
    images, magnitudes = _validated(images, magnitudes, ids, z_spec)
    arrays = {"images": images, "magnitudes": magnitudes}
    if ids is not None:
        arrays["ids"] = np.asarray([str(i) for i in ids], dtype=str)
    if z_spec is not None:
        arrays["z_spec"] = np.asarray(z_spec, dtype=np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def write_fits_partition(
    path: str | os.PathLike,
    images: np.ndarray,
    magnitudes: np.ndarray,
    ids: Sequence[str],
    z_spec: np.ndarray | None = None,
) -> Path:
    """Write a FITS partition atomically."""
    path = Path(path)
    images, magnitudes = _validated(images, magnitudes, ids, z_spec)
    table = Table({"id": [str(i) for i in ids]})
    for j, col in enumerate(MAG_COLUMNS):
        table[col] = magnitudes[:, j]
        table[col].unit = "mag"
    table["z_spec"] = np.asarray(z_spec if z_spec is not None else np.full(len(ids), np.nan), dtype=np.float32)
    cube = fits.ImageHDU(images, name=IMAGES_HDU)
    cube.header["BUNIT"] = "nanomaggy"
    cube.header["BANDS"] = "".join(BANDS)
    hdul = fits.HDUList([fits.PrimaryHDU(), cube, fits.BinTableHDU(table, name=TABLE_HDU)])
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)
    return path
