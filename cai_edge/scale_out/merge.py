"""``cai-edge merge``: join the outputs of shards, array tasks, Dask tasks or Lambda partitions into one.

Every input must come from the same bundle and calibration and hold the same columns (p(z), kept
input columns); duplicate rows are settled by :mod:`cai_edge.scale_out.merge_rule`. Rows are read
with the result readers (:func:`cai_edge.results.files.iter_result_rows`, any format) and written
with :func:`cai_edge.results.files.write_results` (any format, atomically). Inputs are read and
outputs written a chunk at a time in every format, so memory does not grow with the row count.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from cai_edge.errors import CaiEdgeError
from cai_edge.results.rows import PDF_COLUMN, kept_columns
from cai_edge.scale_out.merge_rule import MergeCounts, RowSource, merged_rows

IDENTITY_KEYS = ("bundle_sha256", "calibration_sha256")


class MergeError(CaiEdgeError):
    """The inputs cannot be merged into one output (another bundle, other columns, an unsafe --out)."""


@dataclass(frozen=True)
class MergeInput:
    """One output to merge.

    Parameters
    ----------
    name : str
        How messages name it (a path or URI).
    identity : dict
        What it records: ``bundle``, ``variant``, ``bundle_sha256``, ``calibration_sha256``, ``z_quantile_levels``.
    rows : callable
        Returns a fresh iterator over its rows as ``{column: text}`` on each call (the merge reads twice).
    units : dict, optional
        ``{column: unit}`` as it records them (:func:`cai_edge.results.column_units.column_units`): kept
        input columns keep theirs in the merged output.
    """

    name: str
    identity: dict
    rows: RowSource
    units: dict = field(default_factory=dict)


def _columns(source: MergeInput) -> tuple[bool, tuple[str, ...]] | None:
    """(has p(z), kept columns) from the first row; None for an input without rows."""
    first = next(iter(source.rows()), None)
    return None if first is None else (PDF_COLUMN in first, kept_columns(list(first)))


def _describe(identity: dict) -> str:
    return (f"bundle {identity.get('bundle') or '?'} (model sha256 {identity.get('bundle_sha256', '')[:12] or 'not recorded'}, "
            f"calibration {identity.get('calibration_sha256', '')[:12] or 'none'})")


def check_same_run(inputs: Sequence[MergeInput]) -> tuple[dict, tuple[bool, tuple[str, ...]]]:
    """The identity and columns all inputs share; :class:`MergeError` naming the first input that differs."""
    if not inputs:
        raise MergeError("nothing to merge: name at least one output")
    first = inputs[0]
    for source in inputs:
        if not source.identity.get("bundle_sha256"):
            raise MergeError(f"{source.name} records no bundle: not a cai-edge output (merge reads only outputs of cai-edge)")
        if any(source.identity.get(k, "") != first.identity.get(k, "") for k in IDENTITY_KEYS):
            raise MergeError(f"{source.name} was made by {_describe(source.identity)}, but {first.name} by "
                             f"{_describe(first.identity)}; refusing to merge rows of two models. Rerun {source.name}'s "
                             "inputs with the same bundle, or merge it separately.")
    shapes = [(s, _columns(s)) for s in inputs]
    shapes = [(s, c) for s, c in shapes if c is not None]
    columns = shapes[0][1] if shapes else (bool(first.identity.get("z_quantile_levels")), ())
    for source, found in shapes:
        if found != columns:
            what = (lambda c: f"{'with' if c[0] else 'without'} p(z), --keep-columns {','.join(c[1]) or 'none'}")
            raise MergeError(f"{source.name} holds other columns than {shapes[0][0].name} ({what(found)} against "
                             f"{what(columns)}); merge outputs written with the same --pdf and --keep-columns.")
    return first.identity, columns


def kept_units(inputs: Sequence[MergeInput], kept: Sequence[str]) -> dict[str, str]:
    """The kept columns' units, as the inputs that record one give them; :class:`MergeError` when two give different ones."""
    units: dict[str, tuple[str, str]] = {}
    for source in inputs:
        for column in kept:
            unit = source.units.get(column, "")
            if not unit:
                continue  # a format or an input that records none (a column of text, say)
            seen = units.setdefault(column, (unit, source.name))
            if seen[0] != unit:
                raise MergeError(f"{source.name} gives column {column!r} the unit {unit!r}, but {seen[1]} {seen[0]!r}; "
                                 "merge outputs of catalogs in the same units.")
    return {column: unit for column, (unit, _) in units.items()}


def file_input(path: str | os.PathLike, fmt: str | None = None) -> MergeInput:
    """An output file as a merge input.

    Parameters
    ----------
    path : str or path
        An output of ``cai-edge predict`` or ``cai-edge merge``.
    fmt : str, optional
        ``csv``, ``ecsv``, ``fits`` or ``parquet``; default: from the extension.

    Returns
    -------
    MergeInput
        Its name, recorded identity and rows (read with ``cai_edge.results.files.iter_result_rows``).
    """
    from cai_edge.io.safe_files import check_regular
    from cai_edge.results.column_units import column_units
    from cai_edge.results.files import iter_result_rows, read_identity
    from cai_edge.results.formats import output_format

    path = Path(path)
    try:
        check_regular(path)
    except OSError as exc:
        raise MergeError(f"{path}: cannot read it ({exc})") from exc
    form = output_format(path, fmt)
    return MergeInput(str(path), read_identity(path, form), lambda: iter_result_rows(path, form), column_units(path, form))


@dataclass
class MergeReport:
    """What a merge did.

    Parameters
    ----------
    out : str
        The merged output.
    inputs : int
        How many outputs were merged.
    counts : MergeCounts
        Rows per input, rows out, rows superseded, rows made ``duplicate_id`` (with examples).
    usable : int
        Rows with ``usable == 1`` in the output.
    failed : int
        Rows whose status is not ``ok``.
    """

    out: str
    inputs: int
    counts: MergeCounts
    usable: int
    failed: int

    def text(self) -> str:
        """The lines ``cai-edge merge`` prints."""
        c = self.counts
        lines = [f"merged {self.inputs} outputs: {sum(c.rows_in)} rows in, {c.rows_out} rows out → {self.out}: "
                 f"{self.usable} usable, {self.failed} not ok; {c.superseded} rows superseded by a later or ok row of "
                 f"the same galaxy, {c.duplicates} ids read from a second source written as duplicate_id"]
        lines += [f"  duplicate_id: {e}" for e in c.duplicate_examples]
        return "\n".join(lines)


def check_target(out: Path, inputs: Sequence[str]) -> None:
    """``--out``: absent, or an earlier cai-edge output that is not one of the inputs (nothing else is replaced)."""
    from cai_edge.io.safe_files import check_write_target
    from cai_edge.results.csv_sidecar import check_sidecar
    from cai_edge.results.files import OutputError, read_identity
    from cai_edge.results.formats import output_format

    if output_format(out).name == "csv":
        check_sidecar(out)  # a CSV's provenance goes beside it: that place must be free or ours too
    if check_write_target(out, "--out") is None:
        return
    if any(os.path.exists(p) and os.path.samefile(p, out) for p in inputs):
        raise MergeError(f"--out {out} is one of the inputs; refusing to overwrite it. Choose another output file.")
    try:
        ours = bool(read_identity(out)["bundle_sha256"])
    except OutputError:
        ours = False
    if not ours:
        raise MergeError(f"--out {out} exists and is not a cai-edge result (no bundle recorded in it); cai-edge replaces only "
                         "an output it wrote. Move it away or choose another output file.")


def merge_to(out: Path, sources: Sequence[MergeInput], fmt: str | None = None, workdir: str | Path | None = None) -> MergeReport:
    """Merge ``sources`` into ``out`` (checked for one run, written atomically): the step every engine ends with.

    Parameters
    ----------
    out : path
        The merged output; its format follows the extension unless ``fmt`` names one.
    sources : sequence of MergeInput
        The outputs to merge, in order (the first source of an id keeps it).
    fmt : str, optional
        ``csv``, ``ecsv``, ``fits`` or ``parquet``.
    workdir : path, optional
        Folder for the temporary index (default: the output's folder).

    Returns
    -------
    MergeReport
        Rows in and out, duplicates, usable rows.
    """
    from cai_edge._version import __version__
    from cai_edge.results.files import engines_of, write_results
    from cai_edge.results.formats import output_format

    identity, (with_pdf, kept) = check_same_run(sources)
    form = output_format(out, fmt)
    form.check_available()
    levels = identity.get("z_quantile_levels", "")
    if with_pdf and not levels:
        raise MergeError(f"{sources[0].name} holds p(z) but records no z_quantile_levels; it cannot be merged with its p(z)")
    meta = {k: identity[k] for k in ("bundle", "variant", "bundle_sha256", "calibration_sha256") if identity.get(k)}
    meta["engine"] = engines_of([s.identity.get("engine", "") for s in sources])  # one model; maybe more than one engine
    meta.update({"cai_edge_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "merged_from": f"{len(sources)} outputs"})
    if with_pdf:
        meta["z_quantile_levels"] = levels
    counts = MergeCounts()
    written = write_results(out, form, merged_rows([s.rows for s in sources], counts, workdir or out.parent), meta,
                            len(levels.split()) if with_pdf else 0, kept, kept_units(sources, kept))
    return MergeReport(str(out), len(sources), counts, written.usable, written.failed)


def merge_outputs(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, fmt: str | None = None) -> MergeReport:
    """Merge cai-edge outputs (any formats) into one file, under the output lock.

    Parameters
    ----------
    inputs : sequence of path
        Outputs of ``cai-edge predict`` (shards, array tasks, Dask tasks), in order.
    out : path
        The merged output: absent, or an earlier cai-edge output that is not an input.
    fmt : str, optional
        Output format (default: from the extension).

    Returns
    -------
    MergeReport
        Rows in and out, duplicates, usable rows.
    """
    from cai_edge.results.lock import OutputLock

    out = Path(out)
    names = [os.fspath(p) for p in inputs]
    check_target(out, names)
    sources = [file_input(p) for p in names]
    out.parent.mkdir(parents=True, exist_ok=True)
    with OutputLock(out):
        return merge_to(out, sources, fmt)


def run(args: argparse.Namespace) -> int:
    report = merge_outputs(args.inputs, args.out, args.format)
    print(report.text(), file=sys.stderr)
    return 1 if report.failed else 0
