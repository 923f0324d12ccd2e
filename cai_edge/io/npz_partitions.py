"""NPZ partitions: ``images (N,5,H,W)`` float32 (H, W ≥ 32; centre-cropped as cutouts are), ``magnitudes (N,5)`` float32, optional ``ids (N,)``
(fixed-width unicode) and ``z_spec (N,)``; always read with ``allow_pickle=False``.

numpy only, so the Lambda handler can read partitions without astropy.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from cai_edge.errors import InputError
from cai_edge.io.atomic import atomic_path
from cai_edge.io.limits import MAX_PARTITION_BYTES, MB, zip_bomb_reason
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.safe_files import open_regular_file
from cai_edge.io.status import BAD_SHAPE, UNREADABLE
from cai_edge.photometry import BANDS
from cai_edge.preprocessing import CROP, crop_note, prepare_image, prepare_magnitudes


def records_from_arrays(
    path: Path, images: np.ndarray, magnitudes: np.ndarray, ids: Sequence[str], z_spec: np.ndarray, magnitude_system: str = ""
) -> Iterator[GalaxyRecord]:
    """Validate and prepare row by row: one record per row, failed rows keep their id and reason."""
    note = crop_note(np.shape(images))
    for i in range(images.shape[0]):
        gid = str(ids[i])
        z = float(z_spec[i])
        try:
            image, mags = prepare_image(images[i]), prepare_magnitudes(magnitudes[i])
        except InputError as exc:
            yield GalaxyRecord.failed(gid, f"{path}[{i}]", exc.status, str(exc), z)
            continue
        yield GalaxyRecord(gid, f"{path}[{i}]", image, mags, z, magnitude_system=magnitude_system, message=note)


def check_partition_arrays(images: np.ndarray, magnitudes: np.ndarray, ids: Sequence[str] | None, z_spec: np.ndarray | None) -> None:
    n = images.shape[0] if images.ndim else -1
    if images.ndim != 4 or images.shape[1] != len(BANDS) or min(images.shape[2:]) < CROP:
        raise InputError(BAD_SHAPE, f"images must be (N,{len(BANDS)},H≥{CROP},W≥{CROP}), got {images.shape}")
    if magnitudes.shape != (n, len(BANDS)):
        raise InputError(BAD_SHAPE, f"magnitudes must be ({n},{len(BANDS)}), got {magnitudes.shape}")
    for name, arr in (("ids", ids), ("z_spec", z_spec)):
        if arr is not None and len(arr) != n:
            raise InputError(BAD_SHAPE, f"{name} has {len(arr)} entries for {n} images")


def partition_failure(path: Path, exc: Exception) -> GalaxyRecord:
    status = exc.status if isinstance(exc, InputError) else UNREADABLE
    return GalaxyRecord.failed(path.name, str(path), status, f"partition unusable: {exc}")


def _npy_declared_bytes(fh, name: str) -> int:
    """Bytes the ``.npy`` header at ``fh`` declares for its array (object arrays refused)."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise InputError(UNREADABLE, f"{name}: unsupported .npy format version {version}")
    if dtype.hasobject:
        raise InputError(UNREADABLE, f"{name}: holds Python objects (dtype {dtype}); partitions are never unpickled")
    count = 1
    for dim in shape:
        count *= int(dim)
    return count * dtype.itemsize


def npz_rows(path: Path) -> int | None:
    """Rows of an NPZ partition from its ``images`` header alone (None when it cannot tell): for progress totals."""
    try:
        with open_regular_file(path) as raw, zipfile.ZipFile(raw) as archive, archive.open("images.npy") as fh:
            version = np.lib.format.read_magic(fh)
            shape = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0) else np.lib.format.read_array_header_2_0(fh))[0]
        return int(shape[0]) if shape else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return 1  # an unreadable partition gives one failed record


def check_npz_sizes(archive: zipfile.ZipFile, where: str) -> None:
    """Refuse an NPZ whose members declare more than they hold, or more than :data:`MAX_PARTITION_BYTES` in all.

    Runs on the zip directory and the ``.npy`` headers only, before any array is allocated.
    """
    total = 0
    for info in archive.infolist():
        total += info.file_size
        reason = zip_bomb_reason(info)
        if reason:
            raise InputError(UNREADABLE, f"{where}: {reason}; refusing")
        if total > MAX_PARTITION_BYTES:
            raise InputError(
                UNREADABLE,
                f"{where}: members declare more than {MAX_PARTITION_BYTES // MB} MB once decompressed; refusing "
                "(a decompression bomb, or a partition too large for one read: split it, or raise CAI_EDGE_MAX_PARTITION_MB)",
            )
        if not info.filename.endswith(".npy"):
            continue
        with archive.open(info) as fh:
            declared = _npy_declared_bytes(fh, info.filename)
            available = info.file_size - fh.tell()
        if declared > available:
            raise InputError(
                UNREADABLE, f"{where}: {info.filename} declares {declared:,} bytes of data but holds {max(available, 0):,}; truncated or forged"
            )


def load_npz_partition(path: str | os.PathLike, data: bytes | None = None) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """``(images, magnitudes, ids, z_spec)`` of a whole partition, or :class:`InputError` saying why it is unusable.

    ``data`` holds the file's bytes when it was fetched from object storage. Ids default to
    ``<stem>:<row>``; ``z_spec`` to NaN.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(io.BytesIO(data) if data is not None else path) as archive:
            check_npz_sizes(archive, path.name)
        with np.load(io.BytesIO(data) if data is not None else path, allow_pickle=False) as npz:
            missing = [k for k in ("images", "magnitudes") if k not in npz.files]
            if missing:
                raise InputError(BAD_SHAPE, f"missing array(s) {missing}; has {npz.files}")
            images, magnitudes = npz["images"], npz["magnitudes"]
            ids = npz["ids"].astype(str) if "ids" in npz.files else None
            z_spec = npz["z_spec"].astype(np.float64) if "z_spec" in npz.files else None
        check_partition_arrays(images, magnitudes, ids, z_spec)
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, MemoryError, zlib.error, RuntimeError) as exc:
        raise InputError(UNREADABLE, f"{type(exc).__name__}: {exc}") from exc
    n = images.shape[0]
    ids = [str(i) for i in ids] if ids is not None else [f"{path.stem}:{i}" for i in range(n)]
    z_spec = z_spec if z_spec is not None else np.full(n, math.nan)
    return images, magnitudes, ids, z_spec


def read_npz_partition(path: str | os.PathLike, data: bytes | None = None) -> Iterator[GalaxyRecord]:
    """Records of an NPZ partition; an unusable file yields one failed record named after it."""
    path = Path(path)
    try:
        images, magnitudes, ids, z_spec = load_npz_partition(path, data)
    except InputError as exc:
        yield partition_failure(path, exc)
        return
    yield from records_from_arrays(path, images, magnitudes, ids, z_spec)


def validated_arrays(images, magnitudes, ids, z_spec) -> tuple[np.ndarray, np.ndarray]:
    images = np.ascontiguousarray(images, dtype=np.float32)
    magnitudes = np.ascontiguousarray(magnitudes, dtype=np.float32)
    check_partition_arrays(images, magnitudes, ids, z_spec)
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
    images, magnitudes = validated_arrays(images, magnitudes, ids, z_spec)
    arrays = {"images": images, "magnitudes": magnitudes}
    if ids is not None:
        arrays["ids"] = np.asarray([str(i) for i in ids], dtype=str)
    if z_spec is not None:
        arrays["z_spec"] = np.asarray(z_spec, dtype=np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path


