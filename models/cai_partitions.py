"""The CAI paper's partitions: ``torch.save(TensorDataset(images, magnitudes, redshift))``.

Read with ``torch.load(weights_only=True)``, allowing only the TensorDataset class, so no code
from the file runs. Reached from the runtime's input reader only when torch is installed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import TensorDataset

from cai_edge.io.npz_partitions import records_from_arrays
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.status import BAD_SHAPE, UNREADABLE


def read_torch_partition(path: str | Path) -> Iterator[GalaxyRecord]:
    path = Path(path)
    try:
        with torch.serialization.safe_globals([TensorDataset]):
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
