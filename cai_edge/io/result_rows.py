"""Result rows as CSV, with the standard library only (the Lambda handler writes them too).

Columns: ``id``, ``source``, ``z_pred``, ``z_spec``, ``status``, ``message`` — one row per input object.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Iterable

from cai_edge.io.records import GalaxyRecord

COLUMNS = ("id", "source", "z_pred", "z_spec", "status", "message")


def format_number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"


def row(record: GalaxyRecord, z_pred: float = math.nan) -> list[str]:
    return [record.id, record.source, format_number(z_pred), format_number(record.z_spec), record.status, record.message]


def rows_to_csv(records: Iterable[GalaxyRecord], z_pred: dict[int, float] | None = None) -> str:
    """A complete CSV document (header + one row per record)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for i, record in enumerate(records):
        writer.writerow(row(record, (z_pred or {}).get(i, math.nan)))
    return buffer.getvalue()


class ResultSpool:
    """Append-only CSV of finished rows, flushed after every batch."""

    def __init__(self, path: Path):
        self.path = path
        new = not path.exists() or path.stat().st_size == 0
        self._fh = open(path, "a", newline="")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(COLUMNS)
        self.rows = 0

    def write(self, records: Iterable[GalaxyRecord], z_pred: dict[int, float] | None = None) -> None:
        for i, record in enumerate(records):
            self._writer.writerow(row(record, (z_pred or {}).get(i, math.nan)))
            self.rows += 1
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()
