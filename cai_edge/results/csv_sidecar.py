"""A CSV output's provenance, units and meanings in a sidecar file beside it: ``NAME.csv-metadata.json``.

The CSV itself is plain RFC 4180 — a header line, then one line per object — so
``pd.read_csv(path)`` and ``Table.read(path)`` open it with no arguments. What a CSV cannot hold
(the bundle and its checksums, the cai-edge version, each column's unit and meaning, the flag
bits, the p(z) levels) goes into the sidecar, named and shaped as the W3C "CSV on the Web"
metadata a CSVW processor looks for beside ``NAME.csv``: ``tableSchema.columns`` with each
column's ``dc:description`` and ``schema:unitText``, and cai-edge's own record under
``cai_edge``. It is written atomically, before the CSV, and only over a sidecar cai-edge wrote.

Outputs of cai-edge before this change opened with ``# key: value`` lines instead;
:func:`csv_metadata` reads both forms.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from cai_edge.io.atomic import atomic_path
from cai_edge.io.safe_files import check_write_target, open_regular_file
from cai_edge.results.rows import COLUMNS, column_notes

SIDECAR_SUFFIX = "-metadata.json"
CSVW_CONTEXT = "http://www.w3.org/ns/csvw"
MAX_SIDECAR_BYTES = 16 << 20  # far above any real sidecar (one line per column)


def sidecar_path(csv_path: str | os.PathLike) -> Path:
    """Where the sidecar of a CSV output lives: ``NAME.csv`` → ``NAME.csv-metadata.json``."""
    path = Path(csv_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def sidecar_document(csv_name: str, meta: Mapping[str, str], columns: Sequence[str],
                     kept_units: Mapping[str, str] | None = None) -> dict:
    """The sidecar's JSON: CSVW table metadata, and cai-edge's record (``meta`` and the flag bits) under ``cai_edge``."""
    notes = column_notes(columns, kept_units)
    described = []
    for name in columns:
        text = notes[f"column {name}"]
        unit, _, description = text[1:].partition("] ") if text.startswith("[") else ("", "", text)
        described.append({"name": name, "titles": name, "dc:description": description, **({"schema:unitText": unit} if unit else {})})
    return {"@context": CSVW_CONTEXT, "url": csv_name, "dc:creator": f"cai-edge {meta.get('cai_edge_version', '')}".strip(),
            "cai_edge": {**{k: str(v) for k, v in meta.items()}, "flag_bits": notes["flag_bits"]},
            "tableSchema": {"columns": described}}


def write_sidecar(csv_path: Path, meta: Mapping[str, str], columns: Sequence[str], kept_units: Mapping[str, str] | None = None) -> None:
    """Write the sidecar of ``csv_path`` atomically (:func:`check_sidecar` has been called before the run)."""
    document = sidecar_document(csv_path.name, meta, columns, kept_units)
    with atomic_path(sidecar_path(csv_path)) as tmp:
        tmp.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def sidecar_json(path: Path) -> Any:
    """The sidecar file at ``path`` as parsed JSON, or None when it cannot be read or parsed."""
    try:
        with open_regular_file(path) as fh:
            return json.loads(fh.read(MAX_SIDECAR_BYTES).decode("utf-8"))
    except (OSError, ValueError):
        return None


def _read_sidecar(path: Path) -> dict | None:
    """The sidecar's ``cai_edge`` record, or None when there is none or it is not a cai-edge sidecar."""
    data = sidecar_json(path)
    record = data.get("cai_edge") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in record.items()} if isinstance(record, dict) else None


def _opening(csv_path: Path) -> tuple[dict[str, str], list[str], bool]:
    """The CSV's opening, read once: the ``# key: value`` lines of an older output (as a dict), the column
    names of the header line after them, and whether any ``#`` line came first."""
    meta: dict[str, str] = {}
    commented = False
    with open_regular_file(csv_path) as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as fh:
        while (line := fh.readline(1 << 20)).startswith("#"):
            commented = True
            key, sep, value = line[1:].strip().partition(": ")
            if sep:
                meta[key.strip()] = value.strip()
    return meta, next(csv.reader([line]), []), commented


def written_by_cai_edge(csv_path: str | os.PathLike) -> bool:
    """Whether the CSV at ``csv_path`` is a cai-edge output: its ``#`` lines record a bundle (older form), or its
    header line opens with the result columns and its sidecar records a bundle. A stale sidecar beside someone
    else's table does not count; one a killed run wrote just before its CSV (other ``--pdf`` or kept columns) does."""
    path = Path(csv_path)
    try:
        meta, columns, commented = _opening(path)
    except OSError:
        return False
    if commented:
        return bool(meta.get("bundle_sha256"))
    return columns[: len(COLUMNS)] == list(COLUMNS) and bool((_read_sidecar(sidecar_path(path)) or {}).get("bundle_sha256"))


def check_sidecar(csv_path: Path) -> None:
    """Refuse (:class:`cai_edge.errors.UsageError`) before the run when the sidecar's place holds something cai-edge did not write."""
    from cai_edge.errors import UsageError

    path = sidecar_path(csv_path)
    if check_write_target(path, "the CSV's metadata file") is not None and not (_read_sidecar(path) or {}).get("bundle_sha256"):
        raise UsageError(f"{path} exists and is not metadata cai-edge wrote; cai-edge writes a CSV's units and provenance there "
                         "and replaces only a file it wrote. Move it away or choose another output file.")


def csv_metadata(csv_path: str | os.PathLike) -> dict[str, str]:
    """A CSV output's record (bundle, checksums, version, ``z_quantile_levels`` …): from its sidecar, or the
    ``# key: value`` lines that opened outputs of earlier cai-edge versions. Empty when there is neither."""
    path = Path(csv_path)
    return _opening(path)[0] or _read_sidecar(sidecar_path(path)) or {}
