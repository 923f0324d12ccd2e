"""The result spool: rows already finished by this and earlier (crashed) runs of one ``--out``.

The spool is a hidden folder beside the output, ``.<out name>.spool/``, holding numbered
*segments*, one per run. A segment is created atomically with a one-line header
(``#cai-edge-spool 2 {json}``: the bundle that made its rows, the columns, and whether the run
started afresh), then rows are appended, one JSON array of strings per line, flushed and fsynced
per batch. JSON escapes every character, so any id (newline, NUL, any Unicode) reads back
exactly as it was written; segments of format 1 (CSV lines) left by an older cai-edge are still read,
and rows of older versions get the columns they lack as older outputs do (:func:`complete_row`).

Reading tolerates whatever a SIGKILL leaves: a cut-off last line is dropped. A segment whose
header fails its checks (a wrong type, no ``id`` column) is kept, reported and not used.
cai-edge deletes only what it wrote: segment files and its own temporary files, by their names,
in a real folder it made (never through a link); a spool path that is a link or a file stops the
run before anything is written.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from cai_edge.io.atomic import TMP_SUFFIX, atomic_path, fsync_path
from cai_edge.io.crashpoints import crash_point
from cai_edge.io.safe_files import UnsafePathError, is_own_regular_file, is_real_folder, kind_of, open_regular_file, remove_own_file
from cai_edge.io.status import OK
from cai_edge.results.rows import COLUMNS, complete_row

MAGIC = "#cai-edge-spool 2 "
_MAGIC_V1 = "#cai-edge-spool 1 "
_SEGMENT = re.compile(r"^segment-(\d{6,})\.csv$")
_SEGMENT_TMP = re.compile(r"^\.segment-\d{6,}\.csv\.\d+" + re.escape(TMP_SUFFIX) + "$")
MAX_HEADER_BYTES = 65536
REQUIRED_COLUMNS = ("id", "source", "status")
_HEADER_TYPES = {"columns": list, "fresh": bool, "bundle": str, "bundle_sha256": str, "calibration_sha256": str, "engine": str}


def spool_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.spool")


@dataclass(frozen=True)
class Segment:
    path: Path
    number: int
    header: dict
    version: int = 2
    # rows of the last full read that were left out, by reason (see :meth:`rows`): for the run's report
    left_out: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def fresh(self) -> bool:
        """True when the run that wrote it started afresh: nothing older belongs to its result."""
        return self.header["fresh"] is True

    @property
    def bundle_sha256(self) -> str:
        return self.header["bundle_sha256"]

    @property
    def columns(self) -> list[str]:
        """The columns its rows have as read (:func:`complete_row`): those of older versions upgraded."""
        return list(complete_row(dict.fromkeys(self.header["columns"], "")))

    def rows(self) -> Iterator[dict[str, str]]:
        """The segment's complete rows, as ``{column: text}``, upgraded as outputs of older versions are
        (:func:`complete_row`); format 2 is streamed line by line (a 200,000-row segment is never held whole).

        A last line cut off by a kill is left out. So is a complete line that is not a row of the header's
        columns, and an ``ok`` row without a ``z_pred`` (a segment listing only ``id, source, status``): their
        objects are not done, so the run predicts them again; each full read counts them in :attr:`left_out`.
        """
        columns = self.header["columns"]
        upgrade = self.columns[: len(COLUMNS)] != columns[: len(COLUMNS)]  # rows of an older version (a few µs a row)
        left_out = {WRONG_FIELDS: 0, OK_WITHOUT_Z: 0}
        for fields in self._fields():
            if fields is None or len(fields) != len(columns):
                left_out[WRONG_FIELDS] += 1
                continue
            row = complete_row(dict(zip(columns, fields))) if upgrade else dict(zip(columns, fields))
            if row["status"] == OK and not _is_number(row["z_pred"]):
                left_out[OK_WITHOUT_Z] += 1
                continue
            yield row
        self.left_out.clear()
        self.left_out.update({reason: n for reason, n in left_out.items() if n})

    def _fields(self) -> Iterator[list[str] | None]:
        """Each complete line's fields, or None for one that is not a list of texts."""
        if self.version != 1:
            with open_regular_file(self.path) as fh:
                fh.readline()  # the header
                lines = (line.decode("utf-8", errors="surrogatepass") for line in fh if line.endswith(b"\n"))
                yield from _json_fields(lines)
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n")
        if end < 0:
            return
        lines = data[: end + 1].decode("utf-8", errors="surrogatepass").split("\n")[1:]  # after the header line
        yield from _v1_fields(lines)


WRONG_FIELDS = "line(s) not a row of the segment's columns"
OK_WITHOUT_Z = "ok row(s) without a z_pred"


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _json_fields(lines: Iterable[str]) -> Iterator[list[str] | None]:
    for line in lines:
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except ValueError:
            yield None
            continue
        yield fields if isinstance(fields, list) and all(isinstance(f, str) for f in fields) else None


def _v1_fields(lines: list[str]) -> Iterator[list[str]]:
    return csv.reader(line for line in lines if line)


class SegmentHeaderError(ValueError):
    """A segment's header line is complete but not one cai-edge writes."""


def check_header(header: object) -> dict:
    """``header`` if every field has the type cai-edge writes; else :class:`SegmentHeaderError` (never reinterpreted)."""
    if not isinstance(header, dict):
        raise SegmentHeaderError("the header is not a JSON object")
    for key, kind in _HEADER_TYPES.items():
        if key in ("bundle", "calibration_sha256", "engine") and key not in header:
            continue  # absent in segments of older versions: the resume check compares them as "", the engine is not recorded
        if not isinstance(header.get(key), kind):
            raise SegmentHeaderError(f"header field {key!r} is {header.get(key)!r:.60}, not a {kind.__name__}")
    columns = header["columns"]
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        raise SegmentHeaderError("header 'columns' must be distinct names")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise SegmentHeaderError(f"header 'columns' lacks {', '.join(missing)}")
    return {"bundle": "", "calibration_sha256": "", **header}


def _cut_in_magic(data: bytes) -> bool:
    """Whether ``data`` (a file's start) is a header cut off inside its magic: all a killed writer can leave."""
    head = data[: len(MAGIC)]
    return MAGIC.encode().startswith(head) or _MAGIC_V1.encode().startswith(head)


def _read_header(path: Path) -> tuple[int, dict] | None:
    """``(format version, header)``; None when the file holds no complete header (what a kill can leave).

    Raises :class:`SegmentHeaderError` for a complete header line that fails its checks, and
    ``OSError`` for a file that cannot be read.
    """
    from cai_edge.io.safe_files import open_regular_file

    with open_regular_file(path) as fh:
        first = fh.readline(MAX_HEADER_BYTES)
    if not first.endswith(b"\n"):
        if _cut_in_magic(first):
            return None
        raise SegmentHeaderError("the first line is not a cai-edge spool header")
    for version, magic in ((2, MAGIC), (1, _MAGIC_V1)):
        if first.startswith(magic.encode()):
            try:
                return version, check_header(json.loads(first[len(magic):].decode("utf-8")))
            except (UnicodeDecodeError, ValueError) as exc:
                raise SegmentHeaderError(str(exc)) from None
    raise SegmentHeaderError("the first line is not a cai-edge spool header")


def _holds_nothing(path: Path) -> bool:
    """An empty file, or one cut inside the header's magic: what a killed writer may leave, and all it holds."""
    try:
        data = path.read_bytes()[: len(MAGIC) + 1]
    except OSError:
        return False
    return len(data) <= len(MAGIC) and _cut_in_magic(data)


class Spool:
    """The spool folder of one output; only the holder of the output lock may use it."""

    def __init__(self, out: Path):
        self.dir = spool_dir(out)
        self.problems: list[str] = []  # segments kept but not used, for the run's report

    def check(self) -> None:
        """Raise :class:`UnsafePathError` if the spool path exists and is not a real folder (a link, a file)."""
        if os.path.lexists(self.dir) and not is_real_folder(self.dir):
            raise UnsafePathError(f"{self.dir} is {kind_of(os.lstat(self.dir).st_mode)}, not the spool folder cai-edge makes; "
                                  "cai-edge does not write through links or delete what it did not make. Move it away or choose another --out.")

    def _entries(self) -> list[Path]:
        if not is_real_folder(self.dir):
            return []
        return sorted(self.dir.iterdir())

    def segments(self) -> list[Segment]:
        """Readable segments, oldest first; those whose header fails its checks are listed in :attr:`problems`."""
        found, self.problems = [], []
        for entry in self._entries():
            match = _SEGMENT.match(entry.name)
            if not match or not is_own_regular_file(entry):
                continue
            try:
                read = _read_header(entry)
            except (SegmentHeaderError, OSError) as exc:
                self.problems.append(f"{entry}: kept but not used ({exc})")
                continue
            if read is not None:
                found.append(Segment(entry, int(match[1]), read[1], read[0]))
        return sorted(found, key=lambda s: s.number)

    def current(self) -> list[Segment]:
        """The segments of the run being resumed: from the last one that started afresh on."""
        segments = self.segments()
        starts = [i for i, s in enumerate(segments) if s.fresh]
        return segments[starts[-1] :] if starts else segments

    def holds_rows(self) -> bool:
        """Whether the spool holds segments (finished rows for ``--resume``)."""
        return any(_SEGMENT.match(e.name) for e in self._entries())

    def _next_number(self) -> int:
        numbers = [int(m[1]) for m in (_SEGMENT.match(e.name) for e in self._entries()) if m]
        return max(numbers, default=0) + 1

    def open_segment(self, header: dict) -> "SegmentWriter":
        """A new segment, created atomically with its header, for this run's rows."""
        self.check()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.check()
        number = self._next_number()
        path = self.dir / f"segment-{number:06d}.csv"
        with atomic_path(path) as tmp:
            tmp.write_text(MAGIC + json.dumps(check_header(header)) + "\n", encoding="utf-8")
        return SegmentWriter(Segment(path, number, header))

    def remove_stale_temporaries(self) -> None:
        """Temporary files of killed runs (the lock holder alone calls this, so none is live)."""
        for entry in self._entries():
            if _SEGMENT_TMP.match(entry.name):
                remove_own_file(entry)

    def remove_older_than(self, keep: Segment) -> None:
        """Delete every segment before ``keep`` (a fresh run's first act, once its own segment exists)."""
        for segment in self.segments():
            if segment.number < keep.number:
                remove_own_file(segment.path)

    def remove(self, segments: Sequence[Segment]) -> None:
        """Delete the segments whose rows the output now holds, and what held nothing; then the folder if it is empty.
        Call only after the output is in place. Segments kept as problems stay, with the folder."""
        if not is_real_folder(self.dir):
            return
        for segment in segments:
            remove_own_file(segment.path)
            crash_point("spool-segment-deleted")
        for entry in self._entries():
            if _SEGMENT.match(entry.name) and is_own_regular_file(entry) and _holds_nothing(entry):
                remove_own_file(entry)
        try:
            self.dir.rmdir()
        except OSError:
            pass
        fsync_path(self.dir.parent)


class SegmentWriter:
    """Append rows to one segment; each :meth:`write` is flushed and fsynced before it returns."""

    def __init__(self, segment: Segment):
        self.segment = segment
        self.path = segment.path
        fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
        self._fh = os.fdopen(fd, "a", encoding="utf-8", errors="surrogatepass", newline="")

    def write(self, rows: Sequence[Sequence[str]]) -> None:
        self._fh.write("".join(json.dumps([str(v) for v in row]) + "\n" for row in rows))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        crash_point("spool-written")

    def close(self) -> None:
        self._fh.close()
