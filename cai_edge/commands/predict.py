"""``cai-edge predict``: redshifts for every galaxy in folders, files or partitions.

reader (a small thread pool decoding files ahead) → batcher (prepared galaxies only) → ONNX
Runtime session → result spool (flushed per batch) → the output file, written atomically at
the end. Memory is bounded by the read-ahead window and the batch size, whatever the input size.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from astropy.table import Table
from tqdm import tqdm

from cai_edge._version import __version__
from cai_edge.io.catalog import Catalog
from cai_edge.io.inputs import iter_galaxies
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.result_rows import ResultSpool
from cai_edge.io.results import finalize, output_format, read_results, spool_path
from cai_edge.io.status import OK
from cai_edge.predictor import Predictor

READER_THREADS = 2


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)`` with ``0 ≤ I < N``."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes I/N, e.g. 0/4; got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 ≤ I < N")
    return index, count


def _earlier_rows(out: Path, fmt: str, spool: Path) -> Table | None:
    """Rows of an earlier run: the finished output and whatever a crashed run left in its spool."""
    from astropy.table import vstack

    parts = []
    if out.exists():
        parts.append(read_results(out, fmt))
    if spool.exists():
        parts.append(read_results(spool, "csv"))
        spool.unlink()
    return vstack(parts, metadata_conflicts="silent") if parts else None


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    predictor = Predictor(args.bundle, threads=args.threads, providers=args.provider)
    catalog = Catalog.read(args.catalog) if args.catalog else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = output_format(out, args.format)
    spool = spool_path(out)

    earlier, done = None, set()
    if args.resume:
        earlier = _earlier_rows(out, fmt, spool)
        if earlier is not None:
            done = {i for i, s in zip(earlier["id"], earlier["status"]) if s == OK}
    elif spool.exists():
        spool.unlink()  # a stale spool from another run; this run starts afresh

    spooler = ResultSpool(spool)
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    batch: list[GalaxyRecord] = []

    def flush() -> None:
        if batch:
            z = predictor.predict_prepared(np.stack([r.image for r in batch]), np.stack([r.magnitudes for r in batch]), args.batch_size)
            spooler.write(batch, dict(enumerate(z.tolist())))
            counts["ok"] += len(batch)
            batch.clear()

    records = iter_galaxies(args.inputs, catalog, args.shard, workers=READER_THREADS)
    try:
        for record in tqdm(records, unit=" galaxies", disable=args.quiet or None, smoothing=0.1):
            if record.id in done:
                counts["skipped"] += 1
            elif not record.ok:
                spooler.write([record])
                counts["failed"] += 1
            else:
                batch.append(record)
                if len(batch) >= args.batch_size:
                    flush()
        flush()
    finally:
        spooler.close()

    if earlier is not None and len(earlier):
        # keep earlier successes; an earlier failure is kept only if this run did not retry that id
        retried = set(read_results(spool, "csv")["id"]) if spool.exists() else set()
        keep = [s == OK or i not in retried for i, s in zip(earlier["id"], earlier["status"])]
        earlier = earlier[np.asarray(keep, dtype=bool)]
    meta = {
        "bundle": predictor.bundle.name,
        "variant": predictor.bundle.variant,
        "bundle_sha256": predictor.bundle.sha256,
        "cai_edge_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "z_pred": "predicted redshift, dimensionless",
    }
    n_failed = counts["failed"] + (int(np.sum(earlier["status"] != OK)) if earlier is not None and len(earlier) else 0)
    finalize(out, fmt, spool, earlier, meta)
    elapsed = time.perf_counter() - started
    processed = counts["ok"] + counts["failed"]
    print(
        f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped (already done) "
        f"in {elapsed:.1f} s ({processed / elapsed:.0f} galaxies/s) → {out} "
        f"[{predictor.bundle.name}, {', '.join(predictor.providers)}]",
        file=sys.stderr,
    )
    return 1 if n_failed else 0
