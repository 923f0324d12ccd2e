"""The CAI paper's partitions: ``torch.save(TensorDataset(images, magnitudes, redshift))``.

Read with ``torch.load(weights_only=True)``, allowing only the TensorDataset class, so no code
from the file runs. Reached from the runtime's input reader only when torch is installed.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import TensorDataset

from cai_edge.io.npz_partitions import records_from_arrays
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.status import BAD_SHAPE, UNREADABLE


# torch.serialization.safe_globals edits one process-wide list: two reader threads entering and
# leaving it concurrently remove each other's entry, and a load then fails. One at a time.
_SAFE_LOAD_LOCK = threading.Lock()


def _check_archive_sizes(path: Path) -> None:
    """``torch.save`` stores tensors uncompressed: refuse archives whose members declare more than the limit."""
    import zipfile

    from cai_edge.io.limits import MAX_PARTITION_BYTES, MB, zip_bomb_reason

    if not zipfile.is_zipfile(path):
        return  # torch.load reports what it is
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    for info in infos:
        reason = zip_bomb_reason(info)
        if reason:
            raise OSError(reason)
    declared = sum(i.file_size for i in infos)
    if declared > MAX_PARTITION_BYTES:
        raise OSError(f"members declare {declared // MB} MB once decompressed, over the partition limit of "
                      f"{MAX_PARTITION_BYTES // MB} MB (a decompression bomb, or raise CAI_EDGE_MAX_PARTITION_MB)")


def read_torch_partition(path: str | Path) -> Iterator[GalaxyRecord]:
    path = Path(path)
    try:
        _check_archive_sizes(path)
        with _SAFE_LOAD_LOCK, torch.serialization.safe_globals([TensorDataset]):
            data = torch.load(path, map_location="cpu", weights_only=True)
        tensors = data.tensors if isinstance(data, TensorDataset) else tuple(data)
        if len(tensors) < 2:
            raise ValueError(f"expected (images, magnitudes[, redshift]) tensors, got {len(tensors)}")
        images = tensors[0].float().numpy()
        magnitudes = tensors[1].double().numpy()
        z = tensors[2].double().numpy().reshape(-1) if len(tensors) > 2 else np.full(len(images), math.nan)
    except Exception as exc:
        status = BAD_SHAPE if isinstance(exc, ValueError) else UNREADABLE
        yield GalaxyRecord.failed(path.name, str(path), status, f"partition unusable: {exc}")
        return
    if images.ndim != 4 or magnitudes.shape != (len(images), 5) or len(z) != len(images):
        yield GalaxyRecord.failed(path.name, str(path), BAD_SHAPE, f"partition arrays disagree: {images.shape}, {magnitudes.shape}")
        return
    # records_from_arrays crops larger cutouts to 32×32 through prepare_image
    ids = [f"{path.stem}:{i}" for i in range(len(images))]
    yield from records_from_arrays(path, images, magnitudes, ids, z)
