"""Slurm as it is used (issue 32 items 2 and 3, and dask-jobqueue of item 4), on a real single-node Slurm.

The cluster (tests/slurm_cluster.py) is started once for this module; where Slurm is not installed
these tests skip, and in CI (``CI`` set) they fail instead. docs/scaling-out.md's job script and
submission lines run here exactly as written.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cai_edge.cli import main
from cai_edge.results.files import read_results
from cai_edge.scale_out.slurm import parse_shard, slurm_shard
from slurm_cluster import slurm  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.fits"))
DOC = ROOT / "docs" / "scaling-out.md"


def _array(task: int, low: int, high: int, step: int = 1) -> dict:
    count = len(range(low, high + 1, step))
    return {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_MAX": str(high),
            "SLURM_ARRAY_TASK_COUNT": str(count), "SLURM_ARRAY_TASK_STEP": str(step)}


@pytest.mark.parametrize("low, high, step", [(1, 4, 1), (0, 3, 1), (0, 30, 10), (5, 8, 1)])
def test_slurm_shard_covers_every_shard_once_however_the_array_counts(low, high, step):
    shards = [slurm_shard(_array(t, low, high, step)) for t in range(low, high + 1, step)]
    assert shards == [(i, 4) for i in range(4)]


def test_slurm_shard_refuses_what_it_cannot_map_and_explicit_shards_explain_both_forms(monkeypatch):
    with pytest.raises(argparse.ArgumentTypeError, match="not a plain range"):
        slurm_shard({**_array(3, 1, 7), "SLURM_ARRAY_TASK_COUNT": "3"})  # --array=1,3,7: a list
    with pytest.raises(argparse.ArgumentTypeError, match="not a Slurm array task"):
        slurm_shard({})
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_shard("2/2")
    assert "task 1 of 2 is 0/2 and task 2 of 2 is 1/2" in str(info.value) and "--shard slurm" in str(info.value)
    for name in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    assert parse_shard("auto") is None and parse_shard("1/3") == (1, 3)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    for key, value in _array(2, 1, 2).items():
        monkeypatch.setenv(key, value)
    assert parse_shard("auto") == parse_shard("slurm") == (1, 2)


def _doc_blocks() -> list[str]:
    """The ```bash blocks docs/scaling-out.md marks as needing Slurm: the job script, then the submission lines."""
    return re.findall(r"<!-- readme-test: needs slurm -->\n```bash\n(.*?)```", DOC.read_text(), re.S)


def _cutouts(folder: Path, copies: int = 3) -> None:
    """The shipped examples ``copies`` times under other names (ids are file stems): 600 galaxies, 300 per task."""
    folder.mkdir()
    for k in range(copies):
        for path in EXAMPLES:
            shutil.copy(path, folder / f"c{k}-{path.name}")


def _bash(cluster, script: str, cwd: Path, **env) -> str:
    bin_dir = str(Path(sys.executable).parent)
    full = {**cluster.env, "PATH": bin_dir + os.pathsep + cluster.env.get("PATH", ""), **env}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=full, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _wait_all(cluster, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while cluster.run("squeue", "-h", "-o", "%i").stdout.strip():
        assert time.monotonic() < deadline, cluster.run("squeue").stdout
        time.sleep(0.5)


def test_slurm_documented_array_script_with_a_cancelled_task_resumed(slurm, tmp_path):
    """partition array → predict array → merge, from the docs; one predict task is scancelled after its first
    batch and resubmitted: every galaxy exactly once, the usable count of a plain local run."""
    job_script, submit = _doc_blocks()
    work = tmp_path / "work"
    work.mkdir()
    _cutouts(work / "cutouts")
    (work / "predict.sbatch").write_text(job_script)
    # Every predict task holds 8 s after its first batch is in its spool: the moment to cancel one.
    _bash(slurm, submit, work, CAI_EDGE_PAUSE_AT="spool-written:8")
    deadline = time.monotonic() + 120
    spool = work / ".z-task2.csv.spool"
    while not any(p.stat().st_size > 1000 for p in spool.glob("segment-*.csv")):
        assert time.monotonic() < deadline, (list(work.iterdir()), slurm.run("squeue").stdout)
        time.sleep(0.2)
    array = slurm.run("squeue", "-h", "-n", "cai-z", "-o", "%F").stdout.split()[0]
    slurm.run("scancel", f"{array}_2")
    _wait_all(slurm)
    assert (work / "z-task1.csv").exists() and not (work / "z-task2.csv").exists()
    assert not (work / "z-merged.fits").exists()  # --kill-on-invalid-dep: no merge of a half-done array

    # The recovery the docs give: resubmit the task, then the merge line.
    merge_line = next(line for line in submit.splitlines() if "cai-edge merge" in line)
    out = _bash(slurm, f"z=$(sbatch --parsable --array=2 predict.sbatch)\necho $z\n{merge_line}", work)
    rerun = out.split()[0]
    _wait_all(slurm)
    log = (work / f"slurm-{rerun}_2.out").read_text()
    resumed = re.search(r"(\d+) ok, (\d+) failed, (\d+) skipped", log)
    assert resumed and int(resumed[3]) >= 256 and int(resumed[1]) + int(resumed[2]) > 0, log  # kept its first batch

    plain = tmp_path / "plain.csv"
    assert main(["predict", str(work / "cutouts"), "--out", str(plain), "--quiet"]) in (0, 1)
    merged, local = read_results(work / "z-merged.fits"), read_results(plain)
    assert len(merged) == len(set(merged["id"])) == len(local) == 3 * len(EXAMPLES)
    assert set(merged["id"]) == set(local["id"])
    assert int((merged["usable"] == 1).sum()) == int((local["usable"] == 1).sum()) > 500
    merged.sort("id"), local.sort("id")
    np.testing.assert_allclose(merged["z_pred"], local["z_pred"], atol=1e-6)


def test_slurm_dask_jobqueue_cluster_predicts_and_merges(slurm, tmp_path, monkeypatch):
    """dask-jobqueue's SLURMCluster on the test Slurm: two worker jobs, the Dask engine, one merged output."""
    pytest.importorskip("dask_jobqueue")
    from dask.distributed import Client
    from dask_jobqueue import SLURMCluster

    from cai_edge.predictor import Predictor
    from cai_edge.scale_out.dask_engine import predict_on_dask

    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    work = tmp_path / "work"
    work.mkdir()
    assert main(["partition", str(ROOT / "examples"), "--out", str(work / "parts"), "--size-mb", "0.5", "--quiet"]) in (0, 1)
    cluster = SLURMCluster(cores=1, processes=1, memory="1500MB", queue="cai", walltime="00:10:00", python=sys.executable,
                           scheduler_options={"host": "127.0.0.1", "dashboard_address": None}, interface="lo",
                           local_directory=str(tmp_path / "dask"), log_directory=str(tmp_path / "logs"))
    try:
        cluster.scale(jobs=2)
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=120)
            report = predict_on_dask([str(work / "parts")], work / "z.parquet", client, predictor=Predictor(threads=1))
    finally:
        cluster.close()
    _wait_all(slurm)
    merged = read_results(work / "z.parquet")
    assert sum(report.counts.rows_in) == report.counts.rows_out == len(merged) == len(set(merged["id"])) == len(EXAMPLES)
    assert int((merged["usable"] == 1).sum()) >= len(EXAMPLES) - 2
    assert not (work / ".z.parquet.dask").exists()  # the parts are merged and removed
