"""Dask: ``cai-edge predict INPUTS --dask ADDRESS`` and :func:`predict_on_dask`.

The inputs are cut into shards exactly as ``--shard k/N`` cuts them; task k runs ``cai-edge
predict INPUTS --shard k/N --resume`` into its own output, ``.<out name>.dask/part-k-of-N.csv``
beside ``--out`` (so workers must share that folder's file system, as Slurm and PBS clusters do).
A task whose worker dies is rerun by Dask elsewhere and resumes from the rows its spool already
holds: nothing is lost or doubled. The parts are then joined by :func:`cai_edge.scale_out.merge.merge_to`,
the merge of ``cai-edge merge``, and removed.

Each worker process holds one :class:`~cai_edge.predictor.Predictor`: tasks carry its reference as
plain data (bundle path, name, checksums: :meth:`~cai_edge.predictor.Predictor.reference`); it is
rebuilt and verified on its first task there and kept for the next.
Needs the ``dask`` extra (dask, distributed; dask-jobqueue for SLURMCluster and PBSCluster).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from cai_edge.errors import UsageError

LOCAL = re.compile(r"^local:(\d+)$")
TASKS_PER_WORKER = 4  # enough tasks for a dead worker's share to spread over the others
_PREDICTORS: dict[tuple, Any] = {}  # this worker process's Predictor, by its reference


def parts_dir(out: Path) -> Path:
    """The folder of one run's part outputs, beside ``out``."""
    return out.with_name(f".{out.name}.dask")


def _predictor(reference: tuple):
    """The Predictor this worker process already built for ``reference``, or a new one (built once per process)."""
    from cai_edge.predictor import rebuild_predictor

    if reference not in _PREDICTORS:
        _PREDICTORS[reference] = rebuild_predictor(*reference)
    return _PREDICTORS[reference]


def predict_part(reference: tuple, argv: Sequence[str]) -> int:
    """One Dask task: ``cai-edge predict *argv`` with this worker's Predictor; returns its exit code."""
    from cai_edge.cli import build_parser
    from cai_edge.commands.predict import run

    args = build_parser().parse_args(["predict", *argv])
    args.argv = ["predict", *argv]
    return run(args, predictor=_predictor(reference))


def _client(address: str):
    """A ``distributed.Client`` for a scheduler address, or for ``local:N`` (a LocalCluster of N one-thread processes)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError('--dask needs dask and distributed: from a cai-edge checkout, pip install -e ".[dask]"') from None
    match = LOCAL.match(address)
    if match:
        workers = int(match[1])
        if workers < 1:
            raise UsageError(f"--dask {address}: need at least one worker")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    return Client(address), None


_PART = re.compile(r"^\.?(part-\d{5}-of-(\d{5})\.csv)(\.spool|-metadata\.json)?$")  # the part, its spool, its sidecar


def _parts_left(folder: Path) -> dict[str, int]:
    """``{part name: N}`` of the parts (outputs or spools of killed tasks) an earlier run left in ``folder``."""
    from cai_edge.io.safe_files import is_real_folder

    if not is_real_folder(folder):
        return {}
    return {m[1]: int(m[2]) for m in map(_PART.match, (e.name for e in folder.iterdir())) if m}


def _clear_parts(folder: Path) -> None:
    """Remove the part outputs and their spools a run left, by the names cai-edge gives them (never a link or a stranger's file)."""
    from cai_edge.io.safe_files import is_own_regular_file, remove_own_file
    from cai_edge.results.csv_sidecar import sidecar_path
    from cai_edge.results.spool import Spool

    for name in _parts_left(folder):
        part = folder / name
        spool = Spool(part)
        spool.remove(spool.segments())
        for path in (part, sidecar_path(part)):
            if is_own_regular_file(path):
                remove_own_file(path)


def predict_on_dask(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, client: Any, *,
                    tasks: int | None = None, options: Sequence[str] = (), resume: bool = False, predictor: Any = None):
    """Predict ``inputs`` on a Dask cluster: N resumable tasks, then one merged output.

    Parameters
    ----------
    inputs : sequence of path
        What ``cai-edge predict`` reads (folders, globs, FITS cutouts, partitions).
    out : path
        The merged output (any format); the parts go to ``.<name>.dask/`` beside it.
    client : distributed.Client
        The cluster's client (``Client(LocalCluster(...))``, ``Client(SLURMCluster(...))``, ``Client("tcp://…")``).
    tasks : int, optional
        Number of tasks (shards); default: 4 per worker thread, at most one per input file.
    options : sequence of str
        More ``cai-edge predict`` options for every task (``["--pdf"]``, ``["--catalog", "mags.csv"]`` …).
    resume : bool
        Keep the parts an interrupted run left (their finished rows); else start afresh.
    predictor : Predictor, optional
        The Predictor every worker rebuilds (default: the shipped bundle, one thread).

    Returns
    -------
    cai_edge.scale_out.merge.MergeReport
        What the merge read and wrote.
    """
    from cai_edge.io.inputs import plan_inputs
    from cai_edge.predictor import Predictor
    from cai_edge.results.lock import OutputLock
    from cai_edge.scale_out.merge import check_target, file_input, merge_to

    out = Path(out)
    names = [os.fspath(p) for p in inputs]
    check_target(out, names)
    units = len(plan_inputs(names, exclude=[out]).units)
    threads = sum(client.nthreads().values()) or 1
    count = max(1, min(tasks or TASKS_PER_WORKER * threads, units or 1))
    folder = parts_dir(out)
    left = set(_parts_left(folder).values())
    if resume and len(left) == 1 and not tasks:
        count = left.pop()  # resume the interrupted run's shards, whatever this cluster's size
    out.parent.mkdir(parents=True, exist_ok=True)
    with OutputLock(out):
        if not resume:
            _clear_parts(folder)
        folder.mkdir(exist_ok=True)
        reference = (predictor if predictor is not None else Predictor(threads=1)).reference()
        parts = [folder / f"part-{k:05d}-of-{count:05d}.csv" for k in range(count)]
        futures = [client.submit(predict_part, reference, [*names, "--shard", f"{k}/{count}", "--out", str(part), "--resume",
                                                           "--quiet", *options], key=f"cai-edge-{out.name}-{k}-of-{count}", pure=False)
                   for k, part in enumerate(parts)]
        client.gather(futures)  # a task that raised raises here; its part and spool stay for --resume
        report = merge_to(out, [file_input(p) for p in parts])
        _clear_parts(folder)  # merged: the parts are ours and no longer needed
        try:
            folder.rmdir()
        except OSError:
            pass
    return report


def run_predict(args: argparse.Namespace) -> int:
    """``cai-edge predict … --dask ADDRESS``: the command line's options go to every task."""
    if args.out == "-" or args.shard:
        raise UsageError("--dask writes one merged --out file and makes its own shards; drop --shard and give --out a file name")
    from cai_edge.predictor import Predictor

    predictor = Predictor(args.bundle, threads=args.threads or 1, providers=args.provider, backend=args.backend)
    client, cluster = _client(args.dask)
    try:
        report = predict_on_dask(args.inputs, args.out, client, tasks=args.dask_tasks, options=task_options(args),
                                 resume=args.resume, predictor=predictor)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(report.text(), file=sys.stderr)
    return 1 if report.failed else 0


def task_options(args: argparse.Namespace) -> list[str]:
    """The ``predict`` options every task repeats; the engine gives --out, --shard, --resume and --quiet, and the
    Predictor carries --bundle, --threads, --provider and --backend."""
    options = ["--batch-size", str(args.batch_size)]
    for flag, value in (("--catalog", args.catalog), ("--columns", args.columns), ("--magnitude-system", args.magnitude_system),
                        ("--keep-columns", ",".join(args.keep_columns))):
        if value:
            options += [flag, str(value)]
    return options + (["--pdf"] if args.pdf else [])
