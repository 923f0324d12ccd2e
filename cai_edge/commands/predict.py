"""``cai-edge predict``: redshifts for every galaxy in folders, files or partitions.

reader (a small thread pool decoding files ahead) → batcher (prepared galaxies only) → ONNX
Runtime session → this run's spool segment (fsynced per batch) → the output file, merged and
written atomically at the end. Memory is bounded by the read-ahead window and the batch size.

Crash safety, in order: the output lock (one writer per ``--out``), then the spool (rows are
durable once a batch returns), then the atomic rename of the output; spool segments are deleted
only after that rename. ``--resume`` merges the output and every surviving segment by object
(latest ``ok`` wins), so it can be killed and resumed any number of times.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from cai_edge._version import __version__
from cai_edge.errors import CaiEdgeError, UsageError
from cai_edge.io.atomic import TMP_SUFFIX
from cai_edge.io.catalog import Catalog
from cai_edge.io.inputs import InputPlan, iter_galaxies, plan_inputs, skip_done, unit_records
from cai_edge.results.formats import SUFFIXES, OutputError, OutputFormat, output_format
from cai_edge.results.lock import OutputLock
from cai_edge.io.records import GalaxyRecord
from cai_edge.estimates import check_magnitude_system, estimate
from cai_edge.results.rows import COLUMNS, PDF_COLUMN, STATUS_INDEX, kept_columns, output_columns
from cai_edge.results.csv_sidecar import check_sidecar, sidecar_path, written_by_cai_edge
from cai_edge.results.files import RowMerger, engines_of, iter_result_rows, read_identity, write_results
from cai_edge.io.safe_files import check_write_target, remove_own_file
from cai_edge.results.spool import Segment, SegmentWriter, Spool
from cai_edge.io.status import OK
from cai_edge.memory import return_large_blocks_to_the_system
from cai_edge.predictor import Predictor

READER_THREADS = 2  # partitions decoded ahead (cutouts are decoded in the main thread: cai_edge.io.inputs._read_ahead)
PENDING_LIMIT = 4096  # rows held back to keep input order while a batch fills (failures between galaxies)


class ResumeMismatchError(CaiEdgeError):
    """``--resume`` would mix rows of two different bundles."""


def positive_int(text: str) -> int:
    """argparse type for counts that must be ≥ 1 (``--batch-size``, ``--threads``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _is_result_file(path: Path, fmt: OutputFormat) -> bool:
    if fmt.name == "csv":
        return written_by_cai_edge(path)
    try:
        return bool(read_identity(path, fmt)["bundle_sha256"])
    except OutputError:
        return False


def _check_out(out: Path, fmt: OutputFormat, plan: InputPlan, inputs: list[str]) -> None:
    """Refuse an output that is not a regular file, is one of the inputs, or is a file cai-edge did not write.

    ``--out`` must be absent or a regular file (never a link, a folder, a device, a FIFO or a
    socket). An existing file is replaced only when it is an earlier cai-edge output (it records
    the bundle that made it); an earlier output found inside an input folder is not an input.
    """
    if out.is_dir() and not out.is_symlink():
        raise UsageError(f"--out {out} is a folder; give a file name such as {out / 'predictions.csv'}")
    _check_name_length(out, fmt)
    if fmt.name == "csv":
        check_sidecar(out)
    if check_write_target(out, "--out") is None:
        return
    named = [p for p in inputs if os.path.exists(p) and os.path.samefile(p, out)]
    read = [u.path for u in plan.units if u.path.exists() and os.path.samefile(u.path, out)]
    if named or read or (plan.excluded and not _is_result_file(out, fmt)):
        raise UsageError(f"--out {out} is one of the inputs; refusing to overwrite it. Choose another output file.")
    if not _is_result_file(out, fmt):
        recorded = (f"no result header, or no sidecar {sidecar_path(out).name} recording a bundle" if fmt.name == "csv"
                    else "no bundle recorded in it")
        raise UsageError(f"--out {out} exists and is not a cai-edge result ({recorded}); cai-edge replaces only "
                         "an output it wrote. Move it away or choose another output file"
                         + (" (a CSV cai-edge wrote keeps its sidecar: move or copy the two together)." if fmt.name == "csv" else "."))


def _check_name_length(out: Path, fmt: OutputFormat) -> None:
    """The longest name a run makes beside ``--out`` (a temporary ``.NAME[-metadata.json].PID.tmp``) must fit the
    folder's limit: refused now, not after every galaxy is predicted (when --resume would fail the same way)."""
    written = sidecar_path(out).name if fmt.name == "csv" else out.name
    longest = len(f".{written}.{'9' * 10}{TMP_SUFFIX}".encode())
    try:
        limit = os.pathconf(out.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if longest > limit:
        raise UsageError(f"--out {out.name[:60]}… is too long a name: cai-edge writes {written[:20]}… beside it under a "
                         f"temporary name {longest - limit} bytes over this folder's limit of {limit}; choose a shorter name")


def _check_ids(plan: InputPlan, fmt: OutputFormat) -> None:
    """Ids taken from file names are known before the run: an id the format cannot hold stops it now."""
    for unit in plan.units:
        # the id alone first: a folder of 200,000 cutouts took 1.7 s here when each unit built its Path and message
        if unit.kind in ("fits", "bands") and fmt.id_problem(unit.galaxy_id):
            fmt.check_id(unit.galaxy_id, str(unit.path))


def _remove_stale_temporaries(out: Path, spool: Spool) -> None:
    """Temporary files of killed runs on this output (we hold its lock, so none is live): only by our own names."""
    names = "|".join(re.escape(f".{p.name}.") for p in (out, sidecar_path(out)))
    ours = re.compile(f"(?:{names})" + r"\d+" + re.escape(TMP_SUFFIX) + "$")  # atomic_path's temporary_name(out), and its sidecar's
    for entry in out.parent.iterdir():
        if ours.match(entry.name):
            remove_own_file(entry)
    spool.remove_stale_temporaries()


def _earlier_columns(out: Path, fmt: OutputFormat, segments: list, counts_output: bool) -> list[tuple[str, list[str]]]:
    """``(where, columns)`` of each earlier part of the run: the output (when it counts and has a row) and each segment."""
    parts = [(f"the spool segment {s.path.name}", s.columns) for s in segments]
    if counts_output:
        first = next(iter(iter_result_rows(out, fmt)), None)  # one row tells the columns; read once
        if first is not None:
            parts.insert(0, (str(out), list(first)))
    return parts


def _check_columns_match(parts: list[tuple[str, list[str]]], with_pdf: bool, keep: tuple[str, ...]) -> None:
    """``--resume`` keeps every column: an earlier part with p(z) and a run without (or the reverse), or
    one written with other ``--keep-columns``, is refused."""
    for where, columns in parts:
        has = PDF_COLUMN in columns
        if has != with_pdf:
            raise UsageError(f"--resume: {where} was written {'with' if has else 'without'} p(z) (--pdf), and this run is "
                             f"{'with' if with_pdf else 'without'}; resuming would {'drop the earlier p(z)' if has else 'leave earlier rows without p(z)'}. "
                             f"Resume {'with' if has else 'without'} --pdf, or rerun without --resume.")
    for where, columns in parts:
        kept = kept_columns(columns)
        if kept != keep:
            shown = ",".join(kept) or "none"
            raise UsageError(f"--resume: {where} was written with --keep-columns {shown}, and this run keeps "
                             f"{','.join(keep) or 'none'}; resume with --keep-columns {shown}, or rerun without --resume.")


def _earlier_sources(out: Path, fmt: OutputFormat, spool: Spool, identity: dict, resume: bool, with_pdf: bool,
                     keep: tuple[str, ...] = ()) -> tuple[list, list[Segment], list[str]]:
    """Row sources of the run being resumed, oldest first, after checking they come from this run's bundle;
    the spool segments among them; and the engine each source recorded.

    The earlier output counts unless a segment since then started afresh (a run without --resume).
    """
    if not resume:
        return [], [], []
    segments = spool.current()
    counts_output = out.exists() and not (segments and segments[0].fresh)
    _check_columns_match(_earlier_columns(out, fmt, segments, counts_output), with_pdf, keep)
    sources, made_by, engines = [], [], []
    if counts_output:
        found = read_identity(out, fmt)
        made_by.append((str(out), found.get("bundle", ""), found.get("bundle_sha256", ""), found.get("calibration_sha256", "")))
        engines.append(found.get("engine", ""))
        sources.append(lambda: iter_result_rows(out, fmt))
    for segment in segments:
        made_by.append((f"the spool of an interrupted run ({segment.path.name})", segment.header.get("bundle", ""),
                        segment.bundle_sha256, str(segment.header.get("calibration_sha256", ""))))
        engines.append(segment.header.get("engine", ""))
        sources.append(segment.rows)
    for where, name, sha, calibration in made_by:
        if (sha, calibration) != (identity["bundle_sha256"], identity["calibration_sha256"]):
            earlier = f"bundle {name or '?'} (model sha256 {sha[:12] or 'not recorded'}, calibration {calibration[:12] or 'none'})"
            raise ResumeMismatchError(
                f"--resume: rows in {where} were made by {earlier}, but this run uses bundle {identity['bundle']} "
                f"(model sha256 {identity['bundle_sha256'][:12]}, calibration {identity['calibration_sha256'][:12] or 'none'}). Refusing to mix them: rerun without --resume to "
                f"recompute every object with {identity['bundle']}, or resume with --bundle {name or 'the earlier bundle'}."
            )
    return sources, segments, engines


def _say_what_is_left_out(segments: list[Segment]) -> None:
    """Rows of earlier segments that were not used (:meth:`Segment.rows`): their objects are predicted again."""
    for segment in segments:
        for reason, count in segment.left_out.items():
            print(f"note: spool segment {segment.path.name}: {count} {reason} left out: their objects are not done, "
                  "so this run predicts them again", file=sys.stderr)


def _predict_batch(predictor: Predictor, batch: list[GalaxyRecord], batch_size: int, with_pdf: bool,
                   keep: tuple[str, ...] = ()) -> list[list[str]]:
    """The batch's rows in :func:`output_columns` order (result columns, kept input columns, p(z))."""
    rows = []
    for record, e in zip(batch, estimate(predictor, batch, batch_size, with_quantiles=with_pdf)):
        fields = e.row(with_pdf)
        rows.append(fields[: len(COLUMNS)] + [record.extra.get(c, "") for c in keep] + fields[len(COLUMNS):])
    return rows


def _with_kept_values(record: GalaxyRecord, catalog: Catalog | None, keep: tuple[str, ...], found: set[str]) -> GalaxyRecord:
    """The record with its ``--keep-columns`` values: the catalog's (joined on id) over its own table's."""
    values = {c: record.extra[c] for c in keep if c in record.extra}
    if catalog is not None:
        values.update(catalog.kept.get(record.id, {}))
    found.update(c for c, v in values.items() if v != "")
    record.extra = values
    return record


def _predict_into(segment: SegmentWriter, predictor: Predictor, plan: InputPlan, catalog: Catalog | None,
                  merger: RowMerger, fmt: OutputFormat, args: argparse.Namespace, load_ahead: bool = False) -> dict[str, int]:
    """Read every input not done yet, predict in batches and append the rows to ``segment``; returns the counts.

    ``load_ahead``: have the predictor load the model for its first batch while the first inputs are read, where
    more than one galaxy is left to predict (:func:`_galaxies_to_predict`).
    """
    done = merger.done_ids()
    plan, done_units = skip_done(plan, merger.done_inputs())  # never even opened
    if load_ahead:  # one galaxy's model loads on its call as fast as here, and a helper costs ~5 MB of peak RSS
        galaxies = _galaxies_to_predict(plan, len(done), args.batch_size)
        if galaxies is None or galaxies > 1:
            predictor.load_in_background(args.batch_size if galaxies is None else min(galaxies, args.batch_size))
    counts = {"ok": 0, "failed": 0, "skipped": len(done_units)}
    keep, found = tuple(args.keep_columns), set()
    pending: list[GalaxyRecord] = []  # in input order, failures too: rows are written as they were read
    waiting = 0  # prepared galaxies in pending

    def flush() -> None:
        nonlocal waiting
        if pending:
            rows = _predict_batch(predictor, pending, args.batch_size, args.pdf, keep)
            segment.write(rows)
            for r in rows:
                counts["ok" if r[STATUS_INDEX] == OK else "failed"] += 1
            pending.clear()
            waiting = 0

    records = iter_galaxies(plan, catalog, workers=READER_THREADS, already_read=done_units)
    model_system = predictor.preprocessing.magnitude_system
    try:
        if args.quiet:
            bar = records  # no bar, and no tqdm import (~50 ms of a one-galaxy run)
        else:
            from tqdm import tqdm

            bar = tqdm(records, total=plan.object_count(), unit=" galaxies", disable=None, smoothing=0.1)
        for record in bar:
            problem = fmt.id_problem(record.id)
            if problem:  # an id from inside a partition or catalog: this galaxy alone fails
                record = record.with_unwritable_id(problem)
            record = check_magnitude_system(record, model_system, args.magnitude_system)
            if keep:
                record = _with_kept_values(record, catalog, keep, found)
            if record.ok and record.id in done:
                counts["skipped"] += 1
                continue
            pending.append(record)
            waiting += record.ok
            if waiting >= args.batch_size or len(pending) >= PENDING_LIMIT:
                flush()
        flush()
    finally:
        segment.close()
    counts["kept_found"] = found
    return counts


def _galaxies_to_predict(plan: InputPlan, done: int, enough: int) -> int | None:
    """At least how many galaxies this run will predict, counted cheaply and only up to about ``enough``; None
    where a unit's count is not cheap to know (a ``.pt`` file, a FITS file large enough to be a partition).

    Cutouts and band groups left in the plan are not done (:func:`skip_done` dropped those that are); a
    partition's rows may be, so the ``done`` ids are taken off theirs.
    """
    cutouts, rows = 0, 0
    for unit in plan.units:
        records = unit_records(unit)
        if records is None:
            return None
        if unit.kind == "npz":
            rows += records
        else:
            cutouts += records
        if cutouts + max(rows - done, 0) >= enough:
            break
    return cutouts + max(rows - done, 0)


def _run_locked(args: argparse.Namespace, out: Path, fmt: OutputFormat, plan: InputPlan, started: float,
                predictor: Predictor | None = None) -> int:
    own = predictor is None  # not a Dask worker's, which is loaded already
    predictor = predictor or Predictor(args.bundle, threads=args.threads, providers=args.provider, backend=args.backend)
    catalog = Catalog.read(args.catalog, args.columns, tuple(args.keep_columns)) if args.catalog else None
    identity = predictor.bundle.identity()
    calibration = predictor.bundle.calibration
    if args.pdf and calibration is None:
        raise UsageError(f"--pdf: bundle {predictor.bundle.name} has no uncertainty calibration; run `cai-edge calibrate` first")
    columns = output_columns(args.pdf, tuple(args.keep_columns))
    spool = Spool(out)
    spool.check()
    _remove_stale_temporaries(out, spool)

    sources, segments, earlier_engines = _earlier_sources(out, fmt, spool, identity, args.resume, args.pdf, tuple(args.keep_columns))
    merger = RowMerger(sources)  # merged at the end
    _say_what_is_left_out(segments)
    header = {**identity, "engine": predictor.engine, "columns": list(columns), "fresh": not args.resume, "pid": os.getpid(),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    segment: SegmentWriter = spool.open_segment(header)
    if not args.resume:
        spool.remove_older_than(segment.segment)  # a fresh run: what older runs left is not part of its result

    try:
        counts = _predict_into(segment, predictor, plan, catalog, merger, fmt, args, load_ahead=own)
    except KeyboardInterrupt:
        _say_how_to_resume(args, spool)
        return EXIT_INTERRUPTED
    # The model's memory (weights, activation arena: ~110 MB) is not needed to merge and write
    # the rows; let it go first, so that step does not add to the run's peak RSS.
    bundle_name, providers, engine = predictor.bundle.name, ", ".join(predictor.providers), predictor.engine
    del predictor

    # this run's engine where it made rows (a resume with nothing left to do made none), or where nothing earlier counts
    made_rows = counts["ok"] + counts["failed"] > 0 or not earlier_engines
    meta = {**identity, "engine": engines_of(earlier_engines + ([engine] if made_rows else [])), "cai_edge_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if args.pdf:
        meta["z_quantile_levels"] = " ".join(str(v) for v in calibration.levels)
    # this run's rows, the newest, indexed only now, with the model gone: indexed as they were written, the index
    # sat beside the model (+21 MB peak RSS over 100,000 galaxies, measured) to save 0.12 s of reading back
    merger.add(segment.segment.rows)
    written = write_results(out, fmt, merger.rows(), meta, len(calibration.levels) if args.pdf else 0, tuple(args.keep_columns),
                            catalog.kept_units if catalog is not None else None)
    # every row of a fresh run is an object of its own: two merged into one would be a row lost
    assert args.resume or written.rows == counts["ok"] + counts["failed"], (written.rows, counts)
    for column in args.keep_columns:
        if column not in counts["kept_found"]:
            print(f"warning: --keep-columns {column}: no input of this run has it (not in --catalog, nor in a table beside "
                  "the images); its column is empty", file=sys.stderr)
    spool.remove(spool.segments())  # only now: the output that holds every segment's rows is in place
    for problem in spool.problems:
        print(f"warning: spool segment {problem}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    print(
        f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped (already done) "
        f"in {elapsed:.1f} s ({counts['ok'] / elapsed:.0f} predictions/s) → {getattr(args, 'shown_out', out)}: {written.rows} rows: "
        f"{written.usable} usable, {written.flagged} flagged, {written.failed} not ok [{bundle_name}, {providers}]",
        file=sys.stderr,
    )
    return 1 if written.failed else 0


EXIT_INTERRUPTED = 130


def _say_how_to_resume(args: argparse.Namespace, spool: Spool) -> None:
    """After Ctrl-C: how many rows are kept, and the exact command that continues the run."""
    import shlex

    kept = sum(1 for s in spool.segments() for _ in s.rows())
    argv = list(getattr(args, "argv", None) or sys.argv[1:])
    command = shlex.join(["cai-edge", *argv, *([] if "--resume" in argv else ["--resume"])])
    print(f"\ninterrupted: {kept} finished rows are kept in {spool.dir}; continue with:\n  {command}", file=sys.stderr)


def run(args: argparse.Namespace, predictor: Predictor | None = None) -> int:
    """``cai-edge predict``; ``predictor``: one already built (a Dask worker's), instead of ``--bundle``'s."""
    if getattr(args, "dask", None):
        from cai_edge.scale_out.dask_engine import run_predict

        return run_predict(args)
    if args.out == "-":
        return _run_to_stdout(args)
    started = time.perf_counter()
    if predictor is None:  # this command owns its process (not a Dask worker's task): partitions must not fragment the heap
        return_large_blocks_to_the_system()
    out = Path(args.out)
    if not args.format and out.suffix.lower() not in SUFFIXES:
        print(f"note: --out {out} has no extension cai-edge knows ({', '.join(SUFFIXES)}): writing CSV "
              "(--format names another)", file=sys.stderr)
    fmt = output_format(out, args.format)
    fmt.check_available()
    fmt.check_column_names(args.keep_columns)
    catalog_path = [Path(args.catalog)] if args.catalog else []  # a catalog inside an input folder is not a galaxy
    plan = plan_inputs(args.inputs, args.shard, exclude=[out, *catalog_path])
    if args.shard and not plan.units:
        index, count = args.shard
        print(f"note: shard {index}/{count} has nothing to read: the inputs hold fewer read units (files, band groups) "
              f"than {count} shards", file=sys.stderr)
    _check_out(out, fmt, plan, list(map(str, args.inputs)))
    _check_ids(plan, fmt)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder of --out {out}: {exc}") from exc
    try:
        with OutputLock(out):
            return _run_locked(args, out, fmt, plan, started, predictor)
    except OSError as exc:  # the output's folder: permissions, a full disk …; the spool keeps what was done
        spool = Spool(out)
        kept = (f"; finished rows stay in {spool.dir} for `--resume`" if spool.holds_rows() else "")
        raise OutputError(f"cannot write {out} or its spool ({type(exc).__name__}: {exc}){kept}") from exc


def _run_to_stdout(args: argparse.Namespace) -> int:
    """``--out -``: the rows as CSV on standard output (the summary stays on standard error), as Unix tools do."""
    import shutil
    import tempfile

    if args.resume:
        raise UsageError("--out - writes to standard output: there is no earlier output to --resume; give a file name")
    if args.format not in (None, "csv"):
        raise UsageError(f"--out - writes CSV; --format {args.format} needs a file name")
    with tempfile.TemporaryDirectory(prefix="cai-edge-stdout-") as folder:
        args.out, args.shown_out = str(Path(folder) / "predictions.csv"), "standard output"
        code = run(args)
        with open(args.out, encoding="utf-8", newline="") as fh:
            shutil.copyfileobj(fh, sys.stdout)
        sys.stdout.flush()
    return code
