"""From what a user names on the command line to a stream of :class:`GalaxyRecord`.

Inputs may be folders (searched recursively), glob patterns, FITS cutouts (one 5-band cube,
or five single-band ``<id>_<band>.fits`` files), NPZ or FITS partitions, and — when torch is
installed — the CAI paper's TensorDataset ``.pt`` partitions. Every object yields exactly
one record; unreadable inputs yield a failed record rather than disappearing.
"""

from __future__ import annotations

import glob
import importlib
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from cai_edge.io.catalog import Catalog
from cai_edge.io.fits_cutouts import band_file_parts, galaxy_id, is_fits, read_band_files, read_cutout
from cai_edge.io.partitions import is_fits_partition, read_fits_partition, read_npz_partition
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.status import DUPLICATE_ID, UNREADABLE

_GLOB_CHARS = set("*?[")


def _is_data_file(path: Path) -> bool:
    name = path.name.lower()
    return not name.startswith(".") and (is_fits(path) or name.endswith((".npz", ".pt")))


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> tuple[list[Path], list[GalaxyRecord]]:
    """Sorted, de-duplicated data files named by ``inputs``, and a failed record per input that names nothing."""
    files: list[Path] = []
    problems: list[GalaxyRecord] = []
    for item in inputs:
        text = str(item)
        if _GLOB_CHARS & set(text) and not Path(text).exists():
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            found = [p for p in matches if p.is_file() and _is_data_file(p)]
        elif Path(text).is_dir():
            found = sorted(p for p in Path(text).rglob("*") if p.is_file() and _is_data_file(p))
        elif Path(text).is_file():
            found = [Path(text)]
        else:
            found = []
        if not found:
            problems.append(GalaxyRecord.failed(text, text, UNREADABLE, "no such file, or no FITS/NPZ/.pt files there"))
        files.extend(found)
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return unique, problems


def _read_torch_partition(path: Path) -> Iterable[GalaxyRecord]:
    try:
        reader = importlib.import_module("cai_edge.models.cai_partitions")
    except ImportError:
        return [GalaxyRecord.failed(path.name, str(path), UNREADABLE, "reading CAI .pt partitions needs torch (pip install 'cai-edge[export]')")]
    return reader.read_torch_partition(path)


def _records_for_files(files: list[Path], catalog: Catalog | None) -> Iterator[GalaxyRecord]:
    band_groups: dict[str, dict[str, Path]] = {}
    for path in files:
        parts = band_file_parts(path) if is_fits(path) else None
        if parts:
            band_groups.setdefault(str(path.parent / parts[0]), {})[parts[1]] = path
    emitted_groups: set[str] = set()
    for path in files:
        name = path.name.lower()
        if name.endswith(".npz"):
            yield from read_npz_partition(path)
        elif name.endswith(".pt"):
            yield from _read_torch_partition(path)
        elif is_fits(path):
            parts = band_file_parts(path)
            if parts:
                key = str(path.parent / parts[0])
                if key not in emitted_groups:
                    emitted_groups.add(key)
                    yield read_band_files(parts[0], band_groups[key], catalog)
            elif is_fits_partition(path):
                yield from read_fits_partition(path)
            else:
                yield read_cutout(path, catalog)
        else:
            yield GalaxyRecord.failed(galaxy_id(path), str(path), UNREADABLE, "unsupported file type (expected FITS, NPZ or .pt)")


def iter_galaxies(inputs: Sequence[str | os.PathLike], catalog: Catalog | None = None) -> Iterator[GalaxyRecord]:
    """One record per galaxy in ``inputs``; a repeated id is reported as ``duplicate_id``, not predicted twice."""
    files, problems = expand_inputs(inputs)
    yield from problems
    seen: dict[str, str] = {}
    for record in _records_for_files(files, catalog):
        first = seen.setdefault(record.id, record.source)
        if first != record.source:
            yield GalaxyRecord.failed(record.id, record.source, DUPLICATE_ID, f"id also read from {first}", record.z_spec)
        else:
            yield record
