"""FITS files of many galaxies: an ``(N,5,H,W)`` image cube and, beside it, a table of the galaxies.

cai-edge writes partitions as an ``IMAGES`` image HDU and a ``GALAXIES`` table HDU (``id``,
``mag_u … mag_z``, ``z_spec``). Files written by other tools are read the same way: the cube is
the ``IMAGES`` HDU or the first four-dimensional image; the table is ``GALAXIES`` or the first
table HDU, its columns found under the names and aliases ``--catalog`` accepts (``objID``,
``modelMag_u``, ``ra`` …). Without an id column a galaxy is ``<file stem>:<row>``; without magnitude
columns its magnitudes come from ``--catalog``. Cutouts larger than 32×32 are centre-cropped as
single cutouts are. NPZ partitions live in :mod:`cai_edge.io.npz_partitions`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from cai_edge.errors import InputError
from cai_edge.flags import MAGNITUDE_CONFLICT
from cai_edge.io.atomic import atomic_path
from cai_edge.io.catalog import Catalog, cell_text, column_texts, declared_system, table_column_floats
from cai_edge.io.catalog_columns import CatalogColumnsError, check_magnitude_units, resolve_columns
from cai_edge.io.fits_conventions import to_nanomaggies, to_ugriz
from cai_edge.io.fits_band_extensions import hdu_label
from cai_edge.io.fits_hdus import FitsHdu, open_fits
from cai_edge.io.galaxy_headers import CATALOG_USED, header_system, unit_header, with_repeats
from cai_edge.io.limits import MAX_PARTITION_BYTES, MB
from cai_edge.io.magnitude_sources import choose_magnitudes
from cai_edge.io.npz_partitions import partition_failure, validated_arrays
from cai_edge.io.pixel_scales import pixel_scale_check
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.status import BAD_SHAPE, MISSING_MAGNITUDES, UNREADABLE
from cai_edge.photometry import BANDS, MAG_COLUMNS
from cai_edge.preprocessing import crop_note, prepare_image

if TYPE_CHECKING:  # astropy is imported where it is used, to keep a cutout-only start fast
    from astropy.table import Table

IMAGES_HDU = "IMAGES"
TABLE_HDU = "GALAXIES"


def galaxies_hdus(hdus: Sequence[FitsHdu]) -> tuple[FitsHdu, FitsHdu | None] | None:
    """``(cube, table)`` when the file holds many galaxies (an ``IMAGES`` HDU or a 4-D image), else None."""
    images = [h for h in hdus if h.kind == "image"]
    cube = next((h for h in images if h.name == IMAGES_HDU), None) or next((h for h in images if len(h.shape) == 4), None)
    if cube is None:
        return None
    tables = [h for h in hdus if h.kind == "table"]
    table = next((h for h in tables if h.name == TABLE_HDU), None) or (tables[0] if tables else None)
    return cube, table


def read_fits_partition(path: str | os.PathLike, catalog: Catalog | None = None) -> Iterator[GalaxyRecord]:
    """Records of a FITS file of many galaxies (one failed record when it is not one, or is unusable)."""
    path = Path(path)
    try:
        with open_fits(path, prefer_fitsio=False) as hdus:
            found = galaxies_hdus(hdus)
            if found is None:
                raise InputError(UNREADABLE, f"no {IMAGES_HDU} HDU and no (N,5,H,W) image in the file (truncated, or not a partition)")
            records = list(read_galaxy_cube(path, *found, catalog, primary=hdus[0]))
    except Exception as exc:  # astropy's many error types on corrupt input
        yield partition_failure(path, exc)
        return
    yield from records


def read_galaxy_cube(path: Path, cube: FitsHdu, table_hdu: FitsHdu | None, catalog: Catalog | None,
                     primary: FitsHdu | None = None) -> Iterator[GalaxyRecord]:
    """One record per plane of ``cube``, described by the rows of ``table_hdu`` and ``catalog``.

    The cube's header is read over ``primary``'s (the file's primary HDU, when the cube is an
    extension): units, band order and pixel size may be declared in either. Units or bands cai-edge
    cannot read fail every galaxy's row with the status and message a cube of one would get; a file
    whose galaxies cannot be told apart (no 4-D image, a table of another length) is one failed row.
    """
    headers = [(hdu_label(h), h.header) for h in ((primary, cube) if primary is not None and primary.index != cube.index else (cube,))]
    header = unit_header(headers)
    headers = with_repeats(headers)
    shape_error = f"the {cube.name or 'image'} HDU must be (N,{len(BANDS)},H≥32,W≥32), got shape"
    try:
        _check_declared_size(cube, path)
        data = cube.read()
        if data.ndim != 4:
            raise InputError(BAD_SHAPE, f"{shape_error} {data.shape}")
        n = data.shape[0]
        table = table_hdu.table() if table_hdu is not None else None
        columns = _galaxy_columns(table, path) if table is not None else None
        if table is not None and len(table) != n:
            raise InputError(BAD_SHAPE, f"the table HDU {table_hdu.name or ''} has {len(table)} rows for {n} images")
    except CatalogColumnsError as exc:
        yield partition_failure(path, InputError(BAD_SHAPE, str(exc)))
        return
    except InputError as exc:
        yield partition_failure(path, exc)
        return
    ids = [cell_text(v) for v in table[columns.id]] if columns and columns.id else [f"{path.stem}:{i}" for i in range(n)]
    mags = np.stack([table_column_floats(table, c) for c in columns.magnitudes], axis=1) if columns and columns.magnitudes else None
    z_spec = table_column_floats(table, columns.z_spec) if columns and columns.z_spec else np.full(n, math.nan)
    table_system = (declared_system(table) or columns.implied_system) if columns else ""
    system_headers = [*([(f"the table, {hdu_label(table_hdu)}", {"MAGSYS": table_system})] if table_system else []), *headers]
    conflicts: list[str] = []
    system = header_system(system_headers, conflicts)
    catalog_conflicts: list[str] = []  # the same notes, for a galaxy --catalog lists (its system wins)
    header_system(system_headers, catalog_conflicts, CATALOG_USED)
    conflict_flags = (MAGNITUDE_CONFLICT,) if conflicts else ()
    used = {columns.id, *columns.magnitudes, columns.z_spec} if columns else set()
    others = {c: column_texts(table, c) for c in table.colnames if c not in used} if table is not None else {}
    try:
        images = to_nanomaggies(to_ugriz(data, header), header)
        if images.shape[1] != len(BANDS) or min(images.shape[2:]) < 32:
            raise InputError(BAD_SHAPE, f"{shape_error} {images.shape}")
    except InputError as exc:
        if n == 0:
            yield partition_failure(path, exc)
        for i in range(n):  # z_spec not echoed, as for a cube of one whose pixels cannot be read
            yield GalaxyRecord.failed(ids[i], f"{path}[{i}]", exc.status, str(exc), extra={c: v[i] for c, v in others.items()})
        return
    note = crop_note(images.shape)
    scale_flags, scale_note = pixel_scale_check(headers)
    where = f"the table HDU {table_hdu.name}" if table_hdu is not None else "the file"
    for i in range(n):
        source = f"{path}[{i}]"
        extra = {c: values[i] for c, values in others.items()}
        try:
            image = prepare_image(images[i])
            if mags is None and catalog is None:
                raise InputError(MISSING_MAGNITUDES, "no magnitudes: the file has no table HDU with magnitude columns; "
                                                       "give them with --catalog")
            chosen = choose_magnitudes(ids[i], None if mags is None else mags[i], float(z_spec[i]), system, catalog, where)
        except InputError as exc:
            yield GalaxyRecord.failed(ids[i], source, exc.status, str(exc), float(z_spec[i]), extra)
            continue
        listed = catalog is not None and ids[i] in catalog.entries
        message = "; ".join(m for m in (chosen.note, *(catalog_conflicts if listed else conflicts), note, scale_note) if m)
        flags = tuple(dict.fromkeys(chosen.flags + conflict_flags + scale_flags))
        yield GalaxyRecord(ids[i], source, image, chosen.magnitudes, chosen.z_spec, flags=flags, message=message,
                           magnitude_system=chosen.system, extra=extra)


def _galaxy_columns(table: Table, path: Path):
    columns = resolve_columns(table.colnames, f"{path} (table HDU)", need_id=False, need_magnitudes=False)
    check_magnitude_units(table, columns.magnitudes, f"{path} (table HDU)")
    return columns


def _check_declared_size(cube: FitsHdu, path: Path) -> None:
    """Refuse a cube whose header declares more data than the file holds (or than a partition may hold)."""
    declared = cube.declared_bytes
    size = os.path.getsize(path)
    if not cube.compressed and not str(path).lower().endswith(".gz") and declared > size:
        raise InputError(UNREADABLE, f"{cube.name or 'the image'} declares {declared:,} bytes but the file has {size:,}; truncated or forged")
    if declared > MAX_PARTITION_BYTES:
        raise InputError(UNREADABLE, f"{cube.name or 'the image'} holds {declared // MB} MB, over the partition limit of "
                         f"{MAX_PARTITION_BYTES // MB} MB (raise CAI_EDGE_MAX_PARTITION_MB)")


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
