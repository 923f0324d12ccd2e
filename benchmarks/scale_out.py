"""The engines past one machine against a plain run on the same cores, end to end from launch.

    python benchmarks/scale_out.py [--n 100000] [--workers 2] [--rounds R] [--work DIR] [--source PARTS] [--slurm test|existing]

N rendered galaxies (SIMULATED images of real SDSS training-split galaxies; 20,000 rendered once
and copied under new ids up to N) in 25 MB NPZ partitions, predicted four ways, each timed from
its launch to the merged output on disk:
  * plain: one ``cai-edge predict`` process with ``--threads W``;
  * Slurm: an array of W one-thread ``predict --shard slurm`` tasks and a dependent ``merge`` job
    (on a single-node Slurm started for the run, tests/slurm_cluster.py, or the machine's own with
    ``--slurm existing``), timed from the first ``sbatch`` until the merge job has left the queue;
  * Dask: ``predict_on_dask`` on a LocalCluster of W one-thread worker processes (``local:W``);
  * and the merge alone, for the Slurm outputs.
With peak RSS per task or worker. The engine overhead is its wall time over the plain run's, minus 1.
Writes benchmarks/results/scale_out.{json,md}. Target: overhead ≤ 10 % for each engine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PREDICT_CODE, run_json, save

ROOT = Path(__file__).resolve().parents[1]

# One Slurm task: cai-edge predict, then its peak RSS as one JSON line in the task's log.
_TASK = """#!/bin/bash
{python} -c '{code}' {parts} --shard slurm --threads 1 --out "z-task${{SLURM_ARRAY_TASK_ID}}.csv"
"""

_DASK = r"""
import time
t0 = time.perf_counter()
import json, sys
from dask.distributed import Client, LocalCluster
from cai_edge.machine import peak_rss_mb
from cai_edge.predictor import Predictor
from cai_edge.scale_out.dask_engine import predict_on_dask
workers, parts, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
    report = predict_on_dask([parts], out, client, predictor=Predictor(threads=1))
    rss = sorted(client.run(peak_rss_mb).values())
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": report.counts.rows_out, "usable": report.usable,
                  "worker_peak_rss_mb": rss, "driver_peak_rss_mb": peak_rss_mb()}))
"""


def prepare(work: Path, n: int, source: Path | None) -> tuple[Path, int]:
    """Partitions of ``n`` galaxies under ``work/parts``: ``source``'s (or 20,000 rendered ones) copied under new ids."""
    from cai_edge.io.npz_partitions import load_npz_partition, write_npz_partition

    parts = work / f"parts-{n}"
    if parts.exists():
        return parts, sum(len(load_npz_partition(p)[2]) for p in parts.glob("*.npz"))
    if source is None:
        source = work / "rendered"
        if not source.exists():
            subprocess.run([sys.executable, "-m", "cai_edge", "render", "sdss:train", "--limit", str(min(n, 20000)), "--format", "npz",
                            "--size-mb", "25", "--out", str(source), "--quiet"], check=True)
    parts.mkdir(parents=True)
    rows, copy = 0, 0
    while rows < n:
        for path in sorted(source.glob("*.npz")):
            images, mags, ids, z = load_npz_partition(path)
            keep = min(len(ids), n - rows)
            write_npz_partition(parts / f"c{copy}-{path.name}", images[:keep], mags[:keep], [f"{g}#{copy}" for g in ids[:keep]], z[:keep])
            rows += keep
            if rows >= n:
                break
        copy += 1
    return parts, rows


def plain(parts: Path, out: Path, workers: int) -> dict:
    return run_json(PREDICT_CODE, str(parts), "--threads", str(workers), "--out", str(out))


def _slurm_cluster(kind: str, folder: Path):
    import contextlib

    if kind == "existing":
        @contextlib.contextmanager
        def ambient():
            class Ambient:
                env = dict(os.environ)

                def run(self, *args, check=True, **kw):
                    return subprocess.run(list(args), env=self.env, capture_output=True, text=True, check=check, timeout=60, **kw)
            yield Ambient()
        return ambient()
    sys.path.insert(0, str(ROOT / "tests"))
    from slurm_cluster import slurm_cluster

    return slurm_cluster(folder)


def slurm(parts: Path, work: Path, workers: int, kind: str) -> dict:
    """Array of ``workers`` one-thread predict tasks + a dependent merge job, from the first sbatch to the merge done."""
    runs = work / "slurm-run"
    runs.mkdir(exist_ok=True)
    with _slurm_cluster(kind, work / "slurm-cluster") as cluster:
        code = PREDICT_CODE.replace("'", "'\"'\"'")
        (runs / "task.sh").write_text(_TASK.format(python=sys.executable, code=code, parts=parts))
        outs = " ".join(f"z-task{k}.csv" for k in range(1, workers + 1))
        t0 = time.perf_counter()
        z = cluster.run("sbatch", "--parsable", f"--array=1-{workers}", "--cpus-per-task=1", "task.sh", cwd=runs).stdout.strip()
        merge = cluster.run("sbatch", "--parsable", f"--dependency=afterok:{z}", "--kill-on-invalid-dep=yes", "--wrap",
                            f"{sys.executable} -m cai_edge merge {outs} --out z-merged.csv || [ $? -eq 1 ]", cwd=runs).stdout.strip()
        while queued := cluster.run("squeue", "-h", "-j", f"{z},{merge}", "-o", "%i %r", check=False).stdout.strip():
            if "held" in queued or "Invalid" in queued:
                raise RuntimeError(f"Slurm jobs stuck: {queued}")
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
    tasks = [json.loads((runs / f"slurm-{z}_{k}.out").read_text().strip().splitlines()[-1]) for k in range(1, workers + 1)]
    merge_log = (runs / f"slurm-{merge}.out").read_text()
    return {"seconds": seconds, "task_seconds": [t["seconds"] for t in tasks], "task_peak_rss_mb": [t["peak_rss_mb"] for t in tasks],
            "merge_log": merge_log.strip().splitlines()[-1] if merge_log.strip() else "", "out": str(runs / "z-merged.csv")}


def merge_alone(runs: Path, workers: int) -> dict:
    code = ("import time\nt0 = time.perf_counter()\nimport json, sys\nfrom cai_edge.machine import peak_rss_mb\n"
            "from cai_edge.scale_out.merge import merge_outputs\nr = merge_outputs(sys.argv[1:-1], sys.argv[-1])\n"
            "print(json.dumps({'seconds': time.perf_counter() - t0, 'rows': r.counts.rows_out, 'peak_rss_mb': peak_rss_mb()}))")
    return run_json(code, *[str(runs / f"z-task{k}.csv") for k in range(1, workers + 1)], str(runs / "z-merge-again.csv"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, help="keep the partitions here between runs (default: a temporary folder)")
    parser.add_argument("--source", type=Path, help="NPZ partitions to copy up to --n (default: render 20,000)")
    parser.add_argument("--slurm", choices=["test", "existing"], default="test")
    parser.add_argument("--rounds", type=int, default=1, help="measure plain, Slurm, Dask in turn this many times; the fastest of each counts")
    parser.add_argument("--results", type=Path, help="where scale_out.{json,md} go (default: benchmarks/results)")
    args = parser.parse_args()
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="cai-edge-scale-out-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        parts, n = prepare(work, args.n, args.source)
        for _ in range(args.rounds):  # in turn, so a change in the machine's other load falls on every engine
            load = os.getloadavg()[0]
            rounds.append({"load_before": load, "plain": plain(parts, work / "plain.csv", args.workers),
                           "slurm": slurm(parts, work, args.workers, args.slurm),
                           "dask": run_json(_DASK, str(args.workers), str(parts), str(work / "dask.csv"))})
        merged = merge_alone(work / "slurm-run", args.workers)
    base, on_slurm, on_dask = (min((r[k] for r in rounds), key=lambda v: v["seconds"]) for k in ("plain", "slurm", "dask"))
    result = {
        "galaxies": n, "workers": args.workers, "plain": base, "slurm": on_slurm, "dask": on_dask, "merge_alone": merged,
        "rounds": rounds, "load_average_1min": [r["load_before"] for r in rounds],
        "overhead": {"slurm": on_slurm["seconds"] / base["seconds"] - 1, "dask": on_dask["seconds"] / base["seconds"] - 1},
        "per_core_galaxies_per_s": n / base["seconds"] / args.workers,
    }
    rss = lambda values: ", ".join(f"{v:.0f}" for v in values)
    rows = [("plain `predict --threads %d`" % args.workers, base["seconds"], rss([base["peak_rss_mb"]]), "—"),
            (f"Slurm array of {args.workers} + merge job", on_slurm["seconds"], rss(on_slurm["task_peak_rss_mb"]), f"{result['overhead']['slurm']:+.1%}"),
            (f"Dask local:{args.workers} (+ merge)", on_dask["seconds"], rss(on_dask["worker_peak_rss_mb"]), f"{result['overhead']['dask']:+.1%}"),
            ("merge alone (the Slurm outputs, CSV)", merged["seconds"], rss([merged["peak_rss_mb"]]), "—")]
    table = (f"{n:,} galaxies (SIMULATED images) in NPZ partitions, {args.workers} workers, end to end from launch.\n\n"
             "| run | wall s | peak RSS per task/worker (MB) | overhead vs plain |\n|---|---|---|---|\n"
             + "\n".join(f"| {name} | {s:.1f} | {r} | {o} |" for name, s, r, o in rows)
             + f"\n\nPer-core throughput of the plain run: {result['per_core_galaxies_per_s']:.0f} galaxies/s. Fastest of "
             f"{args.rounds} round(s) each; 1-minute load average before each round: "
             f"{', '.join(f'{v:.1f}' for v in result['load_average_1min'])} (other work on the machine).")
    if args.results:
        import common

        common.RESULTS = args.results
    save("scale_out", result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
