"""The result spool: rows already finished by this and earlier (crashed) runs of one ``--out``.

The spool is a hidden folder beside the output, ``.<out name>.spool/``, holding numbered
*segments*, one per run. A segment is created atomically with a one-line header
(``#cai-edge-spool 1 {json}``: the bundle that made its rows, the columns, and whether the run
started afresh), then rows are appended, one CSV line each, flushed and fsynced per batch.

Reading tolerates whatever a SIGKILL leaves: a cut-off last line is dropped, an empty or
header-less file holds no rows. Segments are deleted only after the final output that holds
their rows has been renamed into place; until then they are the only copy.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from cai_edge.io.atomic import atomic_path, fsync_path
from cai_edge.io.crashpoints import crash_point

MAGIC = "#cai-edge-spool 1 "
_SEGMENT = re.compile(r"^segment-(\d{6})\.csv$")


def spool_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.spool")


def clean_field(value: str) -> str:
    """One line per row: line breaks inside a field (exception texts) become spaces."""
    return value.replace("\r", " ").replace("\n", " ")


@dataclass(frozen=True)
class Segment:
    path: Path
    number: int
    header: dict

    @property
    def fresh(self) -> bool:
        """True when the run that wrote it started afresh: nothing older belongs to its result."""
        return bool(self.header.get("fresh"))

    @property
    def bundle_sha256(self) -> str:
        return str(self.header.get("bundle_sha256", ""))

    def rows(self) -> Iterator[dict[str, str]]:
        """The segment's complete rows, as ``{column: text}``."""
        columns = list(self.header.get("columns", []))
        data = self.path.read_bytes()
        end = data.rfind(b"\n")
        if end < 0:
            return
        text = data[: end + 1].decode("utf-8", errors="replace")
        lines = text.split("\n")[1:]  # the header line
        for fields in csv.reader(line for line in lines if line):
            if len(fields) == len(columns):
                yield dict(zip(columns, fields))


def _read_header(path: Path) -> dict | None:
    try:
        with open(path, "rb") as fh:
            first = fh.readline(65536)
    except OSError:
        return None
    if not first.endswith(b"\n") or not first.startswith(MAGIC.encode()):
        return None
    try:
        header = json.loads(first[len(MAGIC) :].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return header if isinstance(header, dict) and isinstance(header.get("columns"), list) else None


class Spool:
    """The spool folder of one output; only the holder of the output lock may use it."""

    def __init__(self, out: Path):
        self.dir = spool_dir(out)

    def segments(self) -> list[Segment]:
        """Readable segments, oldest first."""
        if not self.dir.is_dir():
            return []
        found = []
        for entry in self.dir.iterdir():
            match = _SEGMENT.match(entry.name)
            if match:
                header = _read_header(entry)
                if header is not None:
                    found.append(Segment(entry, int(match[1]), header))
        return sorted(found, key=lambda s: s.number)

    def current(self) -> list[Segment]:
        """The segments of the run being resumed: from the last one that started afresh on."""
        segments = self.segments()
        starts = [i for i, s in enumerate(segments) if s.fresh]
        return segments[starts[-1] :] if starts else segments

    def _next_number(self) -> int:
        numbers = [int(m[1]) for m in (_SEGMENT.match(e.name) for e in self.dir.iterdir()) if m]
        return max(numbers, default=0) + 1

    def open_segment(self, header: dict) -> "SegmentWriter":
        """A new segment, created atomically with its header, for this run's rows."""
        self.dir.mkdir(parents=True, exist_ok=True)
        number = self._next_number()
        path = self.dir / f"segment-{number:06d}.csv"
        with atomic_path(path) as tmp:
            tmp.write_text(MAGIC + json.dumps(header) + "\n", encoding="utf-8")
        return SegmentWriter(Segment(path, number, header))

    def remove_older_than(self, keep: Segment) -> None:
        """Delete every segment before ``keep`` (a fresh run's first act, once its own segment exists)."""
        for segment in self.segments():
            if segment.number < keep.number:
                segment.path.unlink(missing_ok=True)

    def remove(self, segments: Sequence[Segment | Path] | None = None) -> None:
        """Delete segments (all when None), then the folder if it is empty. Call only after the output is in place."""
        if not self.dir.is_dir():
            return
        paths = [s.path if isinstance(s, Segment) else s for s in segments] if segments is not None else list(self.dir.iterdir())
        for path in paths:
            path.unlink(missing_ok=True)
            crash_point("spool-segment-deleted")
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
        self._fh = open(segment.path, "a", newline="", encoding="utf-8")

    def write(self, rows: Sequence[Sequence[str]]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            writer.writerow([clean_field(str(v)) for v in row])
        self._fh.write(buffer.getvalue())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        crash_point("spool-written")

    def close(self) -> None:
        self._fh.close()
