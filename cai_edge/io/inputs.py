"""From what a user names on the command line to a stream of :class:`GalaxyRecord`.

Inputs may be folders (searched recursively), glob patterns, FITS cutouts (a 5-band cube, one
band per extension, or single-band files by name or band folder: :func:`plan_units`), FITS files
of many galaxies, NPZ partitions, and — when torch is
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
from cai_edge.io.fits_cutouts import (band_file_parts, band_file_pattern, band_files_source, galaxy_id, is_fits, read_band_files,
                                      read_fits_file)
from cai_edge.io.fits_single_hdu import read_as_bytes, read_whole
from cai_edge.io.limits import MAX_PARTITION_BYTES
from cai_edge.io.npz_partitions import npz_rows, read_npz_partition
from cai_edge.io.read_ahead import PageCacheReadAhead
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.safe_files import NotRegularFileError, check_regular
from cai_edge.io.status import DUPLICATE_ID, UNREADABLE
from cai_edge.photometry import BANDS

PARTITION_SIZE_HINT = 4 << 20  # a FITS file this large may be a partition: its count is not known cheaply


def _read_torch_partition(path: Path) -> Iterable[GalaxyRecord]:
    try:
        reader = importlib.import_module("cai_edge.models.cai_partitions")
    except ImportError:
        return [GalaxyRecord.failed(path.name, str(path), UNREADABLE, "reading CAI .pt partitions needs torch (from a cai-edge checkout: pip install -e \".[export]\")")]
    return reader.read_torch_partition(path)


@dataclass(frozen=True, slots=True)
class ReadUnit:
    """One thing to read: a file, or the single-band files of one galaxy (``kind == "bands"``, ``where`` = folder/id).

    Paths are kept as text: a run over 200,000 cutouts holds 200,000 units, and a ``Path`` with its
    cached parts costs three times a string (~100 MB more peak memory).
    """

    kind: str  # "npz", "pt", "fits" or "bands"
    where: str
    bands: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "where", os.fspath(self.where))
        object.__setattr__(self, "bands", tuple((b, os.fspath(p)) for b, p in self.bands))

    @property
    def path(self) -> Path:
        return Path(self.where)

    @property
    def galaxy_id(self) -> str:
        """The id of the one galaxy this unit is expected to hold (a file's stem; a band group's id)."""
        return os.path.basename(self.where) if self.kind == "bands" else galaxy_id(self.where)

    @property
    def source(self) -> str:
        """The ``source`` its galaxy's row will carry when the unit holds one galaxy."""
        return band_files_source(os.path.basename(self.where), self.bands) if self.kind == "bands" else self.where


def _band_candidates(path: str) -> list[tuple[tuple[str, str, str], str]]:
    """The band groups a FITS file could belong to, as ``((folder, id, naming), band)``, most specific first.

    ``naming`` is ``folders``, or the files' :func:`band_file_pattern`: ``h_u.fits`` … and ``h-u.fits`` …
    in one folder are two groups (two galaxies of one id), never one merged or hidden by the other.
    """
    folder = os.path.dirname(path)
    folder_name = os.path.basename(folder)
    found = []
    if len(folder_name) == 1 and folder_name.lower() in BANDS:  # band folders: u/<id>.fits … z/<id>.fits
        found.append(((os.path.dirname(folder), galaxy_id(path), "folders"), folder_name.lower()))
    parts = band_file_parts(path, strict=False)
    if parts:
        found.append(((folder, parts[0], band_file_pattern(parts[0], path)), parts[1]))
    return found


def _documented_naming(key: tuple[str, str, str]) -> bool:
    """A group named ``<id>_u.fits`` … (lower-case band after ``_``): band files even when alone."""
    return key[2] == f"{key[1]}_[{''.join(BANDS)}]"


def plan_units(files: Sequence[str | os.PathLike]) -> list[ReadUnit]:
    """Files → read units in a stable order; single-band files are grouped per galaxy.

    ``<id>_u.fits`` … (lower-case band after ``_``, the documented form) are always a galaxy's band
    files. Other names (``<id>-g``, ``<id>_G``, ``<id>.g``) and band folders (``u/<id>.fits`` …)
    are grouped only when two or more bands of one id are present; otherwise such a file is read
    as a cutout of its own, so a cube that happens to be named ``NGC1-g.fits`` is not split. A group's
    files share one naming (folders, or separator and case): ``h_u`` … and ``h-u`` … are two galaxies.
    """
    files = [os.fspath(f) for f in files]
    bands_of: dict[tuple[str, str, str], set[str]] = {}  # group → the bands its files name
    for path in files:
        if is_fits(path):
            for key, band in _band_candidates(path):
                bands_of.setdefault(key, set()).add(band)
    real = {key for key, bands in bands_of.items() if _documented_naming(key) or len(bands) >= 2}
    del bands_of
    units: list[ReadUnit] = []
    placed: dict[tuple[str, str, str], int] = {}
    members: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for path in files:
        key_band = next(((k, b) for k, b in _band_candidates(path) if k in real), None) if real and is_fits(path) else None
        name = path.lower()
        if key_band:
            key, band = key_band
            if key not in placed:
                placed[key] = len(units)
                units.append(ReadUnit("bands", os.path.join(key[0], key[1])))
                members[key] = []
            members[key].append((band, path))
        elif name.endswith(".npz"):
            units.append(ReadUnit("npz", path))
        elif name.endswith(".pt"):
            units.append(ReadUnit("pt", path))
        else:
            units.append(ReadUnit("fits", path))
    for key, index in placed.items():
        units[index] = ReadUnit("bands", units[index].where, tuple(sorted(members[key], key=lambda bp: (BANDS.index(bp[0]), bp[1]))))
    return units


def read_unit(unit: ReadUnit, catalog: Catalog | None = None) -> list[GalaxyRecord]:
    """Every record of one unit; a unit that breaks its reader fails alone, as one ``unreadable`` record."""
    try:
        return _read_unit(unit, catalog)
    except Exception as exc:  # MemoryError, or a reader's bug on a hostile file: this unit only
        return [GalaxyRecord.failed(unit.galaxy_id, unit.source, UNREADABLE, f"cannot read ({type(exc).__name__}: {exc})")]


# A data file larger than this is refused unread: a partition's arrays are bounded by
# MAX_PARTITION_BYTES, and a file holds them plus headers (or less, compressed).
MAX_DATA_FILE_BYTES = MAX_PARTITION_BYTES + (64 << 20)


def _unit_files(unit: ReadUnit) -> list[str]:
    return [p for _, p in unit.bands] if unit.kind == "bands" else [unit.where]


def _check_files(unit: ReadUnit) -> bytes | None:
    """Check, on the open file and without blocking, that every file of ``unit`` can be read: a
    regular file (not a FIFO, a device such as a link to /dev/zero, a socket) of at most
    :data:`MAX_DATA_FILE_BYTES` (:class:`NotRegularFileError` or ``OSError`` otherwise). A FITS
    file the fast readers take whole is read in the same open, and its bytes returned."""
    if unit.kind == "fits" and read_as_bytes(unit.where):
        return read_whole(unit.where, MAX_DATA_FILE_BYTES)
    for path in _unit_files(unit):
        check_regular(path, MAX_DATA_FILE_BYTES)
    return None


def _read_unit(unit: ReadUnit, catalog: Catalog | None = None) -> list[GalaxyRecord]:
    """Every record of one unit (a partition is read whole: its size bounds the memory)."""
    try:
        raw = _check_files(unit)
    except NotRegularFileError as exc:
        return [GalaxyRecord.failed(unit.galaxy_id, unit.source, UNREADABLE, str(exc))]
    except OSError as exc:
        what = f"cannot open {exc.filename}" if exc.filename is not None else f"cannot read {unit.where}"
        return [GalaxyRecord.failed(unit.galaxy_id, unit.source, UNREADABLE, f"{what} ({type(exc).__name__}: {exc.strerror or exc})")]
    if unit.kind == "npz":
        return list(read_npz_partition(unit.path))
    if unit.kind == "pt":
        return list(_read_torch_partition(unit.path))
    if unit.kind == "bands":
        return [read_band_files(os.path.basename(unit.where), unit.bands, catalog)]
    if not is_fits(unit.where):
        return [GalaxyRecord.failed(galaxy_id(unit.where), unit.where, UNREADABLE, "unsupported file type (expected FITS, NPZ or .pt)")]
    return read_fits_file(unit.where, catalog, raw=raw)  # read once, for the fast path and the HDU headers


READ_AHEAD_SLOTS = 512  # units queued ahead of the decoder: about two batches of cutouts, or two partitions


def _slots(unit: ReadUnit) -> int:
    """A cutout (tens of kB) takes one slot; a partition (~25 MB raw, plus its records) half of them."""
    if unit.kind in ("npz", "pt"):
        return READ_AHEAD_SLOTS // 2
    if unit.kind == "fits":
        try:
            large = os.stat(unit.where).st_size >= PARTITION_SIZE_HINT  # a FITS partition, or a whole frame
        except OSError:
            large = False  # unreadable: its reader reports it
        return READ_AHEAD_SLOTS // 2 if large else 1
    return 1


def _read_ahead(units: list[ReadUnit], catalog: Catalog | None, workers: int) -> Iterator[tuple[ReadUnit, GalaxyRecord]]:
    """``(unit, record)`` in unit order, partitions decoded by ``workers`` threads ahead, cutouts in this thread.

    A partition's decoding is mostly copying arrays, which releases the GIL: up to two are decoded
    ahead while the model runs (a third bought no speed and cost ~40 MB of peak RSS). A cutout's is
    Python holding the GIL: decoding cutouts in threads beside the model slowed a folder of 20,000
    by 4–13 % on two cores, so they are decoded here, between batches, while
    :class:`~cai_edge.io.read_ahead.PageCacheReadAhead` asks storage for the next files (on a cold
    page cache that made the folder 12–18 % faster than without it).
    """
    with PageCacheReadAhead(units, _unit_files, MAX_DATA_FILE_BYTES) as storage, \
            ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="cai-edge-read") as pool:
        pending: deque = deque()  # (future, or None to decode here; slots; unit)
        used = 0
        queue = ((unit, _slots(unit)) for unit in units)  # each unit sized once (a FITS unit costs a stat)
        nxt = next(queue, None)

        def fill() -> None:
            nonlocal nxt, used
            while nxt is not None and (not pending or used + nxt[1] <= READ_AHEAD_SLOTS):
                unit, slots = nxt
                ahead = workers > 1 and slots > 1
                pending.append((pool.submit(read_unit, unit, catalog) if ahead else None, slots, unit))
                used += slots
                nxt = next(queue, None)

        fill()
        while pending:
            future, slots, unit = pending.popleft()
            records = future.result() if future is not None else read_unit(unit, catalog)
            storage.decoded()
            used -= slots
            fill()
            for record in records:
                yield unit, record


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
            records = unit_records(unit)
            if records is None:
                return None
            total += records
        return total


def unit_records(unit: ReadUnit) -> int | None:
    """How many records reading ``unit`` gives, when cheap to know: one for a band group or a cutout-sized FITS
    file, an NPZ partition's rows from its header; None for a ``.pt`` file or a FITS file large enough to be a
    partition."""
    if unit.kind == "bands":
        return 1
    if unit.kind == "fits":
        try:
            return 1 if os.stat(unit.where).st_size < PARTITION_SIZE_HINT else None
        except OSError:  # reading it will say what is wrong, in one failed record
            return 1
    if unit.kind == "npz":
        return npz_rows(unit.path)
    return None


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


def skip_done(plan: InputPlan, done: set[tuple[str, str]]) -> tuple[InputPlan, list[ReadUnit]]:
    """The plan without the units whose galaxy already has an ``ok`` row ``(id, source)`` in ``done``, and
    those units: a resumed run skips them before reading a byte. Only a unit whose row names the unit
    itself as its source can match (a cutout file, a band group); the galaxies of a file of many carry
    ``file[i]`` as their source, so such files are read, and their done galaxies skipped, as before."""
    if not done:
        return plan, []
    keep, skipped = [], []
    for unit in plan.units:
        if unit.kind in ("fits", "bands") and (unit.galaxy_id, unit.source) in done:
            skipped.append(unit)
        else:
            keep.append(unit)
    return InputPlan(keep, plan.problems, plan.excluded), skipped


def _naming_hint(unit: ReadUnit, first: str) -> str:
    """For a second band group of one id in one folder: that each naming is a galaxy of its own."""
    if unit.kind != "bands" or os.path.dirname(first) != os.path.dirname(unit.where) or not first.endswith("]"):
        return ""
    return (f"; band files are grouped by their naming, so {os.path.basename(first)} and {os.path.basename(unit.source)} are two "
            "galaxies: name the five files of one galaxy alike")


def iter_galaxies(
    inputs: Sequence[str | os.PathLike] | InputPlan,
    catalog: Catalog | None = None,
    shard: tuple[int, int] | None = None,
    workers: int = 1,
    already_read: Iterable[ReadUnit] = (),
) -> Iterator[GalaxyRecord]:
    """One record per galaxy in ``inputs``, in order; bad input never disappears.

    Every object gives exactly one :class:`~cai_edge.io.records.GalaxyRecord`, ``ok`` or with the
    status that says why not; a repeated id is reported as ``duplicate_id``, not predicted twice.

    Parameters
    ----------
    inputs : sequence of str or path
        Files, folders and globs of cutouts and partitions (every layout of the inputs page), or an
        input plan made beforehand (``shard`` is then already applied).
    catalog : Catalog, optional
        Magnitudes (and z_spec) by id, as ``--catalog`` reads them; they win over the files' own.
    shard : tuple of int, optional
        ``(i, n)`` keeps every n-th read unit starting at i (files, or band groups), so n machines or
        Slurm array tasks split the work deterministically without overlap.
    workers : int, optional
        Reader threads decoding partitions ahead (default 1: none). Cutouts are always decoded in the
        calling thread (their decoding holds the GIL), while a thread asks storage for the next files.
    already_read : iterable of ReadUnit, optional
        Units left out of a resumed plan; their ids still count as seen.

    Yields
    ------
    GalaxyRecord
        One per galaxy.

    Examples
    --------
    >>> from cai_edge.io.inputs import iter_galaxies
    >>> for galaxy in iter_galaxies(["cutouts/"]):
    ...     galaxy.id, galaxy.status, galaxy.image, galaxy.magnitudes
    """
    plan = inputs if isinstance(inputs, InputPlan) else plan_inputs(inputs, shard)
    yield from plan.problems
    # id → where it was first read: the unit itself when its row names the unit (no second copy of
    # 200,000 paths), else the record's own source (a partition row, "file[i]")
    seen: dict[str, ReadUnit | str] = {u.galaxy_id: u for u in already_read}  # skipped units still claim their ids
    for unit, record in _read_ahead(plan.units, catalog, workers):
        claimed = seen.setdefault(record.id, unit if record.source == unit.where else record.source)
        first = claimed.source if isinstance(claimed, ReadUnit) else claimed
        if first != record.source:
            yield GalaxyRecord.failed(record.id, record.source, DUPLICATE_ID, f"id also read from {first}{_naming_hint(unit, first)}",
                                      record.z_spec)
        else:
            yield record
