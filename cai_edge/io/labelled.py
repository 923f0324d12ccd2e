"""Labelled galaxies from files: the prepared arrays of every readable object that has a ``z_spec``."""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from cai_edge.errors import CaiEdgeError
from cai_edge.io.catalog import Catalog
from cai_edge.io.inputs import iter_galaxies


class NoLabelledGalaxiesError(CaiEdgeError):
    """The inputs hold no readable galaxy with a spectroscopic redshift."""


def labelled_arrays(inputs: Sequence[str | os.PathLike], catalog: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images, magnitudes, z_spec)`` of the ``ok`` objects in ``inputs`` that carry ``z_spec``."""
    records = [r for r in iter_galaxies(inputs, Catalog.read(catalog) if catalog else None, workers=2)
               if r.ok and not math.isnan(r.z_spec)]
    if not records:
        raise NoLabelledGalaxiesError(f"no readable galaxies with z_spec in {' '.join(map(str, inputs))}")
    return np.stack([r.image for r in records]), np.stack([r.magnitudes for r in records]), np.array([r.z_spec for r in records])
