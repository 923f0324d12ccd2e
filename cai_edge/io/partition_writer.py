"""Split a stream of galaxies into partitions of a target size, with a manifest.

The CAI paper measured partitions of 25, 50, 75 and 100 MB. The manifest lists every
partition (file, rows, bytes, sha256) and every rejected object (id, status, message),
so no object is lost silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from cai_edge.io.atomic import atomic_path
from cai_edge.io.npz_partitions import write_npz_partition
from cai_edge.io.partitions import write_fits_partition
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.safe_files import check_output_folder, json_file_has
from cai_edge.preprocessing import CROP, Preprocessing
from cai_edge.photometry import BANDS

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1
# Bytes per galaxy in a partition: the float32 image and magnitudes, plus id and z_spec.
_ROW_BYTES = len(BANDS) * CROP * CROP * 4 + len(BANDS) * 4 + 4 + 32


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def rows_per_partition(size_mb: float) -> int:
    return max(1, int(size_mb * 1_000_000 // _ROW_BYTES))


def write_json_atomic(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def check_partition_folder(out: Path) -> None:
    """``--out`` must be new, empty, or an earlier partition folder (its ``manifest.json``): no user file is replaced."""
    check_output_folder(out, lambda folder: json_file_has(folder / MANIFEST_NAME, ("partitions", "rows")), "partition folder")


def write_partitions(
    records: Iterable[GalaxyRecord],
    out_dir: str | os.PathLike,
    size_mb: float = 25,
    fmt: str = "npz",
    prefix: str = "part",
) -> dict:
    """Write ``<prefix>-NNNNN.<fmt>`` partitions of about ``size_mb`` MB and ``manifest.json``; returns the manifest."""
    if fmt not in ("npz", "fits"):
        raise ValueError(f"partition format must be npz or fits, not {fmt!r}")
    out = Path(out_dir)
    check_partition_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    limit = rows_per_partition(size_mb)
    manifest: dict = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "format": fmt,
        "target_size_mb": size_mb,
        "rows_per_partition": limit,
        "preprocessing": Preprocessing().to_dict(),
        "partitions": [],
        "rejected": [],
    }
    batch: list[GalaxyRecord] = []

    def flush() -> None:
        if not batch:
            return
        path = out / f"{prefix}-{len(manifest['partitions']):05d}.{fmt}"
        images = np.stack([r.image for r in batch])
        mags = np.stack([r.magnitudes for r in batch])
        ids = [r.id for r in batch]
        z = np.array([r.z_spec for r in batch], dtype=np.float64)
        writer = write_npz_partition if fmt == "npz" else write_fits_partition
        writer(path, images, mags, ids, z)
        manifest["partitions"].append(
            {"file": path.name, "rows": len(batch), "bytes": path.stat().st_size, "sha256": sha256_file(path)}
        )
        batch.clear()

    for record in records:
        if record.ok:
            batch.append(record)
            if len(batch) >= limit:
                flush()
        else:
            manifest["rejected"].append(
                {"id": record.id, "source": record.source, "status": record.status, "message": record.message}
            )
    flush()
    manifest["rows"] = sum(p["rows"] for p in manifest["partitions"])
    write_json_atomic(out / MANIFEST_NAME, manifest)
    return manifest
