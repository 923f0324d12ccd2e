"""Labelled galaxy sets for training and evaluation: rendered splits (cached) or user data.

``rendered_split("train")`` renders the training split of the bundled catalogs once (simulated
images of real galaxies) and caches the centre-cropped arrays under ``$CAI_EDGE_CACHE``
(default ``~/.cache/cai-edge``), keyed by the renderer's source, so a changed renderer never
serves stale images.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cai_edge.io.inputs import iter_galaxies
from cai_edge.io.npz_partitions import write_npz_partition
from cai_edge.preprocessing import center_crop

_RENDER_SOURCES = ("galaxy_model.py", "render.py")


@dataclass
class GalaxySet:
    ids: np.ndarray  # (N,) str
    images: np.ndarray  # (N,5,32,32) float32 nanomaggies, prepared
    magnitudes: np.ndarray  # (N,5) float32
    z_spec: np.ndarray  # (N,) float64
    description: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index) -> "GalaxySet":
        return GalaxySet(self.ids[index], self.images[index], self.magnitudes[index], self.z_spec[index], self.description)


def cache_dir() -> Path:
    path = Path(os.environ.get("CAI_EDGE_CACHE", Path.home() / ".cache" / "cai-edge"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def renderer_version() -> str:
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in _RENDER_SOURCES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:12]


def rendered_split(split: str, seed: int = 0, limit: int | None = None, workers: int | None = None) -> GalaxySet:
    """The ``split`` galaxies (raw model magnitudes) of the bundled catalogs, rendered and cropped."""
    from cai_edge.machine import usable_cores
    from cai_edge.models.render import iter_rendered, load_render_catalog

    path = cache_dir() / f"rendered-{renderer_version()}-seed{seed}-{split}-{limit or 'all'}.npz"
    description = f"sdss:{split} (SIMULATED images of real SDSS galaxies; seed {seed}, {limit or 'all'} rows)"
    if not path.exists():
        cat = load_render_catalog(f"sdss:{split}", limit)
        images = np.empty((len(cat), 5, 32, 32), dtype=np.float32)
        from tqdm import tqdm

        with tqdm(total=len(cat), unit=" galaxies", desc=f"render {split}") as bar:
            for start, chunk in iter_rendered(cat, seed, True, workers or usable_cores()):
                images[start : start + len(chunk)] = center_crop(chunk)
                bar.update(len(chunk))
        write_npz_partition(path, images, cat.magnitudes, cat.ids, cat.z_spec)
    with np.load(path, allow_pickle=False) as npz:
        return GalaxySet(npz["ids"], npz["images"], npz["magnitudes"], npz["z_spec"].astype(np.float64), description)


def load_labelled(spec: str, seed: int = 0) -> GalaxySet:
    """``sdss:SPLIT[:N]`` (rendered) or files/folders readable by :func:`iter_galaxies` that carry ``z_spec``."""
    if spec.startswith("sdss:"):
        parts = spec.split(":")
        limit = int(parts[2]) if len(parts) > 2 else None
        return rendered_split(parts[1], seed, limit)
    ok = [r for r in iter_galaxies([spec]) if r.ok and not math.isnan(r.z_spec)]
    if not ok:
        raise ValueError(f"{spec}: no readable galaxies with z_spec")
    return GalaxySet(
        np.array([r.id for r in ok]),
        np.stack([r.image for r in ok]),
        np.stack([r.magnitudes for r in ok]),
        np.array([r.z_spec for r in ok]),
        spec,
    )
