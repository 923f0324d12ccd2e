"""Which rows a merge keeps, decided on disk so memory does not grow with the number of rows.

The rule (documented in docs/scaling-out.md), applied to the rows of every input, inputs in the
order given:

* rows of one ``(id, source)`` are one galaxy: the latest ``ok`` row wins, else the latest row
  (what ``--resume`` does, so merging a task's output with its own rerun keeps the finished rows);
* one id read from several sources is several galaxies with one name: the source seen first keeps
  the id, and the winning row of every other source becomes a ``duplicate_id`` row (no
  prediction, ``usable`` 0), as a single run over all the inputs marks them;
* a row that is already ``duplicate_id`` stays one.

The first pass stores ``(id, source, position, ok, duplicate)`` per row in an SQLite file in a
temporary folder; SQL groups them on disk; the second pass streams the inputs again beside the
sorted decisions, so the rows' text is never held.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from cai_edge.flags import NO_FLAGS
from cai_edge.io.status import DUPLICATE_ID, OK
from cai_edge.results.rows import FLOAT_COLUMNS, PDF_COLUMN

Row = dict  # {column: text}, as the result readers give them
RowSource = Callable[[], Iterable[Row]]  # a fresh iterator over one input's rows on each call
_SHIFT = 40  # position = input number << 40 | row number: 2^40 rows per input, 2^23 inputs
_BATCH = 10_000
_CACHE_KIB = 8 * 1024  # SQLite's page cache: the merge's memory bound, whatever the row count


@dataclass
class MergeCounts:
    """What a merge read and wrote: rows per input, rows out, rows superseded by a better row of the
    same galaxy, and rows turned into ``duplicate_id`` (with up to 20 examples)."""

    rows_in: list[int] = field(default_factory=list)
    rows_out: int = 0
    superseded: int = 0
    duplicates: int = 0
    duplicate_examples: list[str] = field(default_factory=list)


def _pass_one(db: sqlite3.Connection, sources: Sequence[RowSource], counts: MergeCounts) -> None:
    db.execute("CREATE TABLE r (id TEXT, source TEXT, pos INTEGER, ok INTEGER, dup INTEGER)")
    for s, source in enumerate(sources):
        n = 0
        batch: list[tuple] = []
        for n, row in enumerate(source(), start=1):
            batch.append((row["id"], row["source"], (s << _SHIFT) | (n - 1), row["status"] == OK, row["status"] == DUPLICATE_ID))
            if len(batch) >= _BATCH:
                db.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?)", batch)
                batch.clear()
        db.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?)", batch)
        counts.rows_in.append(n)


def _decide(db: sqlite3.Connection) -> None:
    """``keep(pos, claim)``: the winning rows in input order; ``claim`` names the source that keeps the
    id when this row must become a ``duplicate_id`` row, else NULL."""
    db.executescript("""
        CREATE TABLE g AS
            SELECT id, source, MIN(pos) AS first, COALESCE(MAX(CASE WHEN ok THEN pos END), MAX(pos)) AS win
            FROM r GROUP BY id, source;
        CREATE TABLE w AS SELECT g.id, g.source, g.first, g.win, r.dup FROM g JOIN r ON r.pos = g.win;
        CREATE INDEX w_id ON w (id, dup, first);
        CREATE TABLE keep AS
            SELECT w.win AS pos,
                   CASE WHEN w.dup THEN NULL
                        ELSE (SELECT c.source FROM w AS c WHERE c.id = w.id AND c.dup = 0 ORDER BY c.first LIMIT 1)
                   END AS claim,
                   w.source AS source
            FROM w;
        CREATE INDEX keep_pos ON keep (pos);
    """)


def as_duplicate(row: Row, claimed_by: str) -> Row:
    """``row`` as the ``duplicate_id`` row a single run writes: no prediction, not usable, why in ``message``."""
    cleared = {c: "" for c in FLOAT_COLUMNS if c != "z_spec"}
    return {**row, **cleared, "status": DUPLICATE_ID, "usable": "0", "flag_bits": "0", "flag_names": NO_FLAGS,
            "message": f"id also read from {claimed_by}", **({PDF_COLUMN: ""} if PDF_COLUMN in row else {})}


def merged_rows(sources: Sequence[RowSource], counts: MergeCounts, workdir: str | Path | None = None) -> Iterator[Row]:
    """The rows the merge keeps, in input order, by the rule above; ``counts`` is filled as they stream.

    ``workdir``: where the temporary index goes (default: the system's temporary folder); it is
    deleted when the iterator finishes or is closed.
    """
    with tempfile.TemporaryDirectory(prefix=".cai-edge-merge-", dir=workdir) as folder:
        db = sqlite3.connect(str(Path(folder) / "index.sqlite"))
        try:
            db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            db.execute("PRAGMA temp_store = FILE")
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            _pass_one(db, sources, counts)
            _decide(db)
            yield from _pass_two(db, sources, counts)
        finally:
            db.close()


def _pass_two(db: sqlite3.Connection, sources: Sequence[RowSource], counts: MergeCounts) -> Iterator[Row]:
    decisions = db.execute("SELECT pos, claim, source FROM keep ORDER BY pos")
    nxt = decisions.fetchone()
    for s, source in enumerate(sources):
        for i, row in enumerate(source()):
            pos = (s << _SHIFT) | i
            if nxt is None or nxt[0] != pos:
                counts.superseded += 1
                continue
            claim, own = nxt[1], nxt[2]
            nxt = decisions.fetchone()
            if claim is not None and claim != own:
                counts.duplicates += 1
                if len(counts.duplicate_examples) < 20:
                    counts.duplicate_examples.append(f"{row['id']!r} from {own} (kept from {claim})")
                row = as_duplicate(row, claim)
            counts.rows_out += 1
            yield row
