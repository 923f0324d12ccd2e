"""Result rows as CSV text, with the standard library only (the Lambda handler writes them too).

Columns: ``id``, ``source``, ``z_pred``, ``z_spec``, ``status``, ``message`` — one row per input
object. Every value is text here; :mod:`cai_edge.io.results` gives them types and units.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Iterable

from cai_edge.io.records import GalaxyRecord

COLUMNS = ("id", "source", "z_pred", "z_spec", "status", "message")
FLOAT_COLUMNS = ("z_pred", "z_spec")


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
