"""From what a user names on the command line to a stream of :class:`GalaxyRecord`.

Inputs may be folders (searched recursively), glob patterns, FITS cutouts (one 5-band cube,
or five single-band ``<id>_<band>.fits`` files), NPZ or FITS partitions, and — when torch is
installed — the CAI paper's TensorDataset ``.pt`` partitions. Every object yields exactly
one record; unreadable inputs yield a failed record rather than disappearing.
"""

from __future__ import annotations

import importlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from cai_edge.io.catalog import Catalog
from cai_edge.io.discovery import find_data_files
from cai_edge.io.fits_cutouts import band_file_parts, galaxy_id, is_fits, read_band_files, read_cutout
from cai_edge.io.fits_single_hdu import read_single_hdu_image
from cai_edge.io.limits import MAX_PARTITION_BYTES
from cai_edge.io.npz_partitions import npz_rows, read_npz_partition
from cai_edge.io.partitions import is_fits_partition, read_fits_partition
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.safe_files import NotRegularFileError, check_regular
from cai_edge.io.status import DUPLICATE_ID, UNREADABLE

PARTITION_SIZE_HINT = 4 << 20  # a FITS file this large may be a partition: its count is not known cheaply


def _read_torch_partition(path: Path) -> Iterable[GalaxyRecord]:
    try:
        reader = importlib.import_module("cai_edge.models.cai_partitions")
    except ImportError:
        return [GalaxyRecord.failed(path.name, str(path), UNREADABLE, "reading CAI .pt partitions needs torch (from a cai-edge checkout: pip install -e \".[export]\")")]
    return reader.read_torch_partition(path)


@dataclass(frozen=True)
class ReadUnit:
    """One thing to read: a file, or the five single-band files of one galaxy."""

    kind: str  # "npz", "pt", "fits" or "bands"
    path: Path
    bands: tuple[tuple[str, Path], ...] = ()


def plan_units(files: list[Path]) -> list[ReadUnit]:
    """Files → read units in a stable order; single-band files are grouped per galaxy."""
    units: list[ReadUnit] = []
    groups: dict[Path, dict[str, Path]] = {}
    for path in files:
        name = path.name.lower()
        parts = band_file_parts(path) if is_fits(path) else None
        if parts:
            key = path.parent / parts[0]
            if key not in groups:
                groups[key] = {}
                units.append(ReadUnit("bands", key))
            groups[key][parts[1]] = path
        elif name.endswith(".npz"):
            units.append(ReadUnit("npz", path))
        elif name.endswith(".pt"):
            units.append(ReadUnit("pt", path))
        else:
            units.append(ReadUnit("fits", path))
    return [ReadUnit(u.kind, u.path, tuple(sorted(groups[u.path].items()))) if u.kind == "bands" else u for u in units]


def read_unit(unit: ReadUnit, catalog: Catalog | None = None) -> list[GalaxyRecord]:
    """Every record of one unit; a unit that breaks its reader fails alone, as one ``unreadable`` record."""
    try:
        return _read_unit(unit, catalog)
    except Exception as exc:  # MemoryError, or a reader's bug on a hostile file: this unit only
        name = unit.path.name if unit.kind == "bands" else galaxy_id(unit.path)
        return [GalaxyRecord.failed(name, str(unit.path), UNREADABLE, f"cannot read ({type(exc).__name__}: {exc})")]


# A data file larger than this is refused unread: a partition's arrays are bounded by
# MAX_PARTITION_BYTES, and a file holds them plus headers (or less, compressed).
MAX_DATA_FILE_BYTES = MAX_PARTITION_BYTES + (64 << 20)


def _unit_files(unit: ReadUnit) -> list[Path]:
    return [p for _, p in unit.bands] if unit.kind == "bands" else [unit.path]


def _not_readable(unit: ReadUnit) -> str | None:
    """Why a unit's file cannot be read, checked on the open file without blocking: not a regular file
    (a FIFO, a device such as a link to /dev/zero, a socket) or over :data:`MAX_DATA_FILE_BYTES`."""
    for path in _unit_files(unit):
        try:
            check_regular(path, MAX_DATA_FILE_BYTES)
        except NotRegularFileError as exc:
            return str(exc)
        except OSError as exc:
            return f"cannot open {path} ({type(exc).__name__}: {exc.strerror or exc})"
    return None


def _read_unit(unit: ReadUnit, catalog: Catalog | None = None) -> list[GalaxyRecord]:
    """Every record of one unit (a partition is read whole: its size bounds the memory)."""
    problem = _not_readable(unit)
    if problem:
        name = unit.path.name if unit.kind == "bands" else galaxy_id(unit.path)
        return [GalaxyRecord.failed(name, str(unit.path), UNREADABLE, problem)]
    if unit.kind == "npz":
        return list(read_npz_partition(unit.path))
    if unit.kind == "pt":
        return list(_read_torch_partition(unit.path))
    if unit.kind == "bands":
        return [read_band_files(unit.path.name, dict(unit.bands), catalog)]
    if not is_fits(unit.path):
        return [GalaxyRecord.failed(galaxy_id(unit.path), str(unit.path), UNREADABLE, "unsupported file type (expected FITS, NPZ or .pt)")]
    simple = read_single_hdu_image(unit.path)  # one HDU cannot be a partition: no second open
    if simple is None and is_fits_partition(unit.path):
        return list(read_fits_partition(unit.path))
    return [read_cutout(unit.path, catalog, simple)]


READ_AHEAD_SLOTS = 512  # about two batches of cutouts, or two partitions


def _slots(unit: ReadUnit) -> int:
    """A cutout (tens of kB) takes one slot; a partition (~25 MB raw, plus its records) half of them."""
    if unit.kind in ("npz", "pt"):
        return READ_AHEAD_SLOTS // 2
    if unit.kind == "fits":
        try:
            large = unit.path.stat().st_size >= PARTITION_SIZE_HINT  # a FITS partition, or a whole frame
        except OSError:
            large = False  # unreadable: its reader reports it
        return READ_AHEAD_SLOTS // 2 if large else 1
    return 1


def _read_ahead(units: list[ReadUnit], catalog: Catalog | None, workers: int) -> Iterator[GalaxyRecord]:
    """Records in unit order, decoded by ``workers`` threads at most ``READ_AHEAD_SLOTS`` ahead.

    The window is deep enough for the readers to fill the next batch of cutouts while the model
    runs on this one (with four cutouts ahead, a FITS folder waited on its readers after every
    batch), and shallow enough to bound memory: ~10 MB of cutouts, or two partitions (a third
    bought no speed and cost ~40 MB of peak RSS).
    """
    if workers <= 1:
        for unit in units:
            yield from read_unit(unit, catalog)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cai-edge-read") as pool:
        pending: deque = deque()  # (future, slots)
        used = 0
        queue = ((unit, _slots(unit)) for unit in units)  # each unit sized once (a FITS unit costs a stat)
        nxt = next(queue, None)

        def fill() -> None:
            nonlocal nxt, used
            while nxt is not None and (not pending or used + nxt[1] <= READ_AHEAD_SLOTS):
                unit, slots = nxt
                pending.append((pool.submit(read_unit, unit, catalog), slots))
                used += slots
                nxt = next(queue, None)

        fill()
        while pending:
            future, slots = pending.popleft()
            records = future.result()
            used -= slots
            fill()
            yield from records


@dataclass(frozen=True)
class InputPlan:
    """What a run will read: its read units (after sharding) and the inputs that name nothing usable."""

    units: list[ReadUnit]
    problems: list[GalaxyRecord]
    excluded: list[Path] = field(default_factory=list)  # files the search found but ``exclude`` named

    def object_count(self) -> int | None:
        """How many records reading will give, when cheap to know (cutouts, NPZ headers); else None."""
        total = len(self.problems)
        for unit in self.units:
            if unit.kind == "bands" or (unit.kind == "fits" and unit.path.stat().st_size < PARTITION_SIZE_HINT):
                total += 1
            elif unit.kind == "npz":
                rows = npz_rows(unit.path)
                if rows is None:
                    return None
                total += rows
            else:
                return None
        return total


def plan_inputs(
    inputs: Sequence[str | os.PathLike], shard: tuple[int, int] | None = None, exclude: Iterable[Path] = ()
) -> InputPlan:
    """Find the files and group them into read units; ``shard=(i, n)`` keeps every n-th unit starting at i."""
    excluded: list[Path] = []
    files, problems = find_data_files(inputs, exclude, excluded)
    units = plan_units(files)
    if shard is not None:
        index, count = shard
        units = units[index::count]
        problems = problems if index == 0 else []
    return InputPlan(units, problems, excluded)


def iter_galaxies(
    inputs: Sequence[str | os.PathLike] | InputPlan,
    catalog: Catalog | None = None,
    shard: tuple[int, int] | None = None,
    workers: int = 1,
) -> Iterator[GalaxyRecord]:
    """One record per galaxy in ``inputs``; a repeated id is reported as ``duplicate_id``, not predicted twice.

    ``shard=(i, n)`` keeps every n-th read unit starting at i (files, or single-band groups), so n
    machines or Slurm array tasks split the work deterministically without overlap. ``inputs`` may
    also be an :class:`InputPlan` made beforehand (``shard`` is then already applied).
    """
    plan = inputs if isinstance(inputs, InputPlan) else plan_inputs(inputs, shard)
    yield from plan.problems
    seen: dict[str, str] = {}
    for record in _read_ahead(plan.units, catalog, workers):
        first = seen.setdefault(record.id, record.source)
        if first != record.source:
            yield GalaxyRecord.failed(record.id, record.source, DUPLICATE_ID, f"id also read from {first}", record.z_spec)
        else:
            yield record
