"""Crafted galaxies whose pixels hold their magnitudes' flux: image references that the photometric match can be fitted on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cai_edge.photometry import nanomaggies_to_mag
from cai_edge.preprocessing import SDSS_NOISE_NANOMAGGIES

NOISE = np.asarray(SDSS_NOISE_NANOMAGGIES, dtype=np.float32)


def galaxies(n: int, seed: int, sizes: tuple[float, float] = (1.0, 3.0)) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 32×32 exponential galaxies of varied size (scale length in ``sizes``, px), brightness and colour with sky
    noise, and their total magnitudes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:32, :32] - 16.0
    images = np.empty((n, 5, 32, 32), dtype=np.float32)
    flux = np.empty((n, 5))
    for i in range(n):
        size, q, angle = rng.uniform(*sizes), rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
        u = x * np.cos(angle) + y * np.sin(angle)
        v = -x * np.sin(angle) + y * np.cos(angle)
        profile = np.exp(-np.hypot(u, v / q) / size)
        total = profile.sum() / (1 - np.exp(-16 / size) * (1 + 16 / size))  # light outside the crop counts in the magnitude
        flux[i] = 10 ** rng.uniform(1.4, 2.2) * np.array([0.15, 0.5, 1.0, 1.4, 1.7]) * 10 ** (0.4 * rng.normal(0, 0.3, 5))
        images[i] = profile[None] / total * flux[i][:, None, None] + rng.standard_normal((5, 32, 32)) * NOISE[:, None, None]
    return images, nanomaggies_to_mag(flux)


def write_galaxy_partition(path: Path, n: int, seed: int) -> Path:
    """An NPZ partition of ``n`` such galaxies with a z_spec each (for ``calibrate --domain-data``)."""
    from cai_edge.io.npz_partitions import write_npz_partition

    images, mags = galaxies(n, seed)
    z = np.random.default_rng(seed).uniform(0.02, 0.3, n)
    write_npz_partition(path, images, mags.astype(np.float32), [f"g{seed}-{i}" for i in range(n)], z)
    return path
