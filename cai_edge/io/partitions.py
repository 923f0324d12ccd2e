"""FITS partitions: an ``IMAGES`` image HDU ``(N,5,32,32)`` and a ``GALAXIES`` table HDU (``id``,
``mag_u … mag_z``, ``z_spec``). NPZ partitions live in :mod:`cai_edge.io.npz_partitions`.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from cai_edge.errors import InputError
from cai_edge.io.atomic import atomic_path
from cai_edge.io.fits_conventions import to_nanomaggies, to_ugriz
from cai_edge.io.limits import MAX_PARTITION_BYTES, MB
from cai_edge.io.status import UNREADABLE
from cai_edge.io.npz_partitions import check_partition_arrays, partition_failure, records_from_arrays, validated_arrays
from cai_edge.io.records import GalaxyRecord
from cai_edge.photometry import BANDS, MAG_COLUMNS

if TYPE_CHECKING:  # astropy is imported where it is used, to keep a cutout-only start fast
    from astropy.io import fits

IMAGES_HDU = "IMAGES"
TABLE_HDU = "GALAXIES"


def read_fits_partition(path: str | os.PathLike) -> Iterator[GalaxyRecord]:
    """Records of a FITS partition (``IMAGES`` cube + ``GALAXIES`` table)."""
    from astropy.io import fits
    from astropy.table import Table

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                header = hdul[IMAGES_HDU].header
                _check_declared_size(header, path)
                images = to_nanomaggies(to_ugriz(np.array(hdul[IMAGES_HDU].data), header), header)
                system = str(hdul[TABLE_HDU].header.get("MAGSYS", "") or "").strip()
                table = Table(hdul[TABLE_HDU].data)
        magnitudes = np.stack([np.asarray(table[c], dtype=np.float64) for c in MAG_COLUMNS], axis=1)
        ids = [str(v).strip() for v in table["id"]]
        z_spec = np.asarray(table["z_spec"], dtype=np.float64) if "z_spec" in table.colnames else np.full(len(ids), math.nan)
        check_partition_arrays(images, magnitudes, ids, z_spec)
    except Exception as exc:  # astropy's many error types on corrupt input
        yield partition_failure(path, exc)
        return
    yield from records_from_arrays(path, images, magnitudes, ids, z_spec, system)


def _check_declared_size(header: fits.Header, path: Path) -> None:
    """Refuse a cube whose header declares more data than the file holds (or than a partition may hold)."""
    declared = abs(int(header.get("BITPIX", 8))) // 8
    for axis in range(1, int(header.get("NAXIS", 0)) + 1):
        declared *= int(header.get(f"NAXIS{axis}", 0))
    if declared > os.path.getsize(path):
        raise InputError(UNREADABLE, f"{IMAGES_HDU} declares {declared:,} bytes but the file has {os.path.getsize(path):,}; truncated or forged")
    if declared > MAX_PARTITION_BYTES:
        raise InputError(UNREADABLE, f"{IMAGES_HDU} holds {declared // MB} MB, over the partition limit of "
                         f"{MAX_PARTITION_BYTES // MB} MB (raise CAI_EDGE_MAX_PARTITION_MB)")


def is_fits_partition(path: Path) -> bool:
    """True when a FITS file has the ``IMAGES`` and ``GALAXIES`` HDUs of a partition."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            names = {h.name for h in hdul}
    except Exception:
        return False
    return {IMAGES_HDU, TABLE_HDU} <= names


def write_fits_partition(
    path: str | os.PathLike,
    images: np.ndarray,
    magnitudes: np.ndarray,
    ids: Sequence[str],
    z_spec: np.ndarray | None = None,
) -> Path:
    """Write a FITS partition atomically."""
    from astropy.io import fits
    from astropy.table import Table

    path = Path(path)
    images, magnitudes = validated_arrays(images, magnitudes, ids, z_spec)
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
