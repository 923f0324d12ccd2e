"""Each column's unit as an output records it, read from its header or sidecar alone (never its rows).

``cai-edge merge`` carries kept input columns' units (``--keep-columns ra`` from a catalog that
declares degrees) from its inputs to its output with these, in every format.
"""

from __future__ import annotations

import os
from pathlib import Path

from cai_edge.results.formats import OutputFormat, output_format


def column_units(path: str | os.PathLike, fmt: OutputFormat | str | None = None) -> dict[str, str]:
    """``{column: unit}`` for the columns of an output that record one (an empty dict when none do or it cannot tell).

    Parameters
    ----------
    path : str or path
        An output of ``cai-edge predict`` or ``cai-edge merge``.
    fmt : str, optional
        ``csv``, ``ecsv``, ``fits`` or ``parquet``; default: from the extension.

    Returns
    -------
    dict of str to str
        Units as their FITS/VOUnit text.
    """
    path = Path(path)
    fmt = fmt if isinstance(fmt, OutputFormat) else output_format(path, fmt)
    try:
        reader = {"csv": _csv_units, "fits": _fits_units, "ecsv": _ecsv_units, "parquet": _parquet_units}[fmt.name]
        units = reader(path)
    except (OSError, ValueError, KeyError, TypeError, ImportError):
        return {}
    return {str(k): str(v) for k, v in units.items() if v not in (None, "")}


def _csv_units(path: Path) -> dict[str, str]:
    from cai_edge.results.csv_sidecar import _opening, sidecar_json, sidecar_path

    meta = _opening(path)[0]
    if meta:  # an output of an earlier version: "# column NAME: [unit] meaning" lines
        return {k[len("column "):]: v[1:].partition("]")[0] for k, v in meta.items() if k.startswith("column ") and v.startswith("[")}
    document = sidecar_json(sidecar_path(path))  # None (unreadable) raises TypeError below: no units
    return {c["name"]: c.get("schema:unitText", "") for c in document["tableSchema"]["columns"]}


def _fits_units(path: Path) -> dict[str, str]:
    from astropy.io import fits

    header = fits.getheader(path, ext=1)
    return {header[f"TTYPE{i}"]: header.get(f"TUNIT{i}", "") for i in range(1, int(header["TFIELDS"]) + 1)}


def ecsv_header(path: str | os.PathLike) -> dict:
    """An ECSV file's YAML header (``datatype`` with units, and ``meta``), read without its data."""
    from astropy.table.meta import get_header_from_yaml

    from cai_edge.io.safe_files import open_regular_file

    lines = []
    with open_regular_file(path) as raw:
        for line in raw:
            if not line.startswith(b"#"):
                break
            text = line.decode("utf-8")[1:].rstrip("\r\n")
            if not text.strip().startswith("%ECSV"):
                lines.append(text[1:] if text.startswith(" ") else text)
    return get_header_from_yaml(lines)


def parquet_header(path: str | os.PathLike) -> dict:
    """The header astropy writes into a Parquet file's schema (``datatype`` with units, and ``meta``), read without its rows."""
    import pyarrow.parquet as pq
    from astropy.table.meta import get_header_from_yaml

    metadata = pq.read_schema(path).metadata or {}
    return get_header_from_yaml(metadata[b"table_meta_yaml"].decode("utf-8").splitlines())


def _ecsv_units(path: Path) -> dict[str, str]:
    return {c["name"]: c.get("unit", "") for c in ecsv_header(path)["datatype"]}


def _parquet_units(path: Path) -> dict[str, str]:
    return {c["name"]: c.get("unit", "") for c in parquet_header(path)["datatype"]}
