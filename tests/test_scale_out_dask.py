"""Dask (issue 32 item 4): `predict --dask local:N`, the Python engine, a worker killed mid-run, Predictor pickling.

The SLURMCluster test is in test_scale_out_slurm.py, beside the test Slurm it needs.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cai_edge.cli import main
from cai_edge.errors import BundleError
from cai_edge.predictor import Predictor, rebuild_predictor
from cai_edge.results.files import iter_result_rows, read_results
from result_helpers import write_partitions

pytest.importorskip("distributed")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_predictor_pickles_by_bundle_reference_and_checks_the_checksums():
    predictor = Predictor(threads=1)
    data = pickle.dumps(predictor)
    assert len(data) < 2000 and b"model.onnx" not in data  # a reference, not the model or a session
    again = pickle.loads(data)
    assert again.bundle.identity() == predictor.bundle.identity() and again.session is not predictor.session
    images = np.zeros((2, 5, 32, 32), np.float32) + 0.05
    mags = np.array([[19.0, 17.5, 16.7, 16.3, 16.0]] * 2)
    np.testing.assert_array_equal(again.predict(images, mags), predictor.predict(images, mags))
    forged = data.replace(predictor.bundle.sha256.encode(), b"0" * 64)
    with pytest.raises(BundleError, match="model sha256 "):
        pickle.loads(forged)
    # what the Dask engine sends its tasks: plain data, rebuilt without unpickling anything
    reference = predictor.reference()
    assert all(isinstance(v, (str, int, tuple)) for v in reference) and hash(reference)
    np.testing.assert_array_equal(rebuild_predictor(*reference).predict(images, mags), predictor.predict(images, mags))
    with pytest.raises(BundleError, match="model sha256 "):
        rebuild_predictor(reference[0], reference[1], "0" * 64, *reference[3:])


def test_predict_dask_local_matches_a_plain_run(tmp_path, capsys):
    plain, dask_out = tmp_path / "plain.csv", tmp_path / "z.fits"
    assert main(["predict", str(EXAMPLES), "--pdf", "--out", str(plain), "--quiet", "--threads", "1"]) in (0, 1)
    assert main(["predict", str(EXAMPLES), "--pdf", "--dask", "local:2", "--out", str(dask_out), "--quiet"]) in (0, 1)
    said = capsys.readouterr().err
    a, m = read_results(plain), read_results(dask_out)
    assert f"{len(a)} rows in, {len(a)} rows out" in said
    a.sort("id"), m.sort("id")
    assert list(a["id"]) == list(m["id"]) and int((a["usable"] == 1).sum()) == int((m["usable"] == 1).sum())
    np.testing.assert_allclose(m["z_pred"], a["z_pred"], atol=1e-6)
    assert all(r["z_quantiles"] for r in iter_result_rows(dask_out) if r["status"] == "ok")  # --pdf reached every task
    assert not (tmp_path / ".z.fits.dask").exists()


def test_dask_worker_killed_mid_run_loses_and_doubles_nothing(tmp_path, monkeypatch):
    from dask.distributed import Client, LocalCluster

    from cai_edge.scale_out.dask_engine import parts_dir, predict_on_dask

    ids = write_partitions(tmp_path / "parts", 8, 64)
    out = tmp_path / "z.csv"
    monkeypatch.setenv("CAI_EDGE_PAUSE_AT", "spool-written:3")  # each worker process holds 3 s after its first batch
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        result: dict = {}
        thread = threading.Thread(target=lambda: result.update(report=predict_on_dask(
            [str(tmp_path / "parts")], out, client, tasks=4, options=["--batch-size", "16"], predictor=Predictor(threads=1))))
        thread.start()
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size > 1000 for p in parts_dir(out).glob(".part-*.spool/segment-*.csv")):
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.1)
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)  # mid-task: its part has a spool with rows and no output yet
        thread.join(timeout=300)
        assert not thread.is_alive()
        assert victim not in client.run(os.getpid).values()  # the killed worker was replaced
    report = result["report"]
    rows = list(iter_result_rows(out))
    assert sorted(r["id"] for r in rows) == sorted(ids)  # every galaxy, each once
    assert report.counts.rows_out == sum(report.counts.rows_in) == len(ids) and report.counts.superseded == 0
    assert all(r["status"] == "ok" for r in rows)


def test_dask_resume_keeps_the_parts_of_an_interrupted_run_and_their_shard_count(tmp_path):
    from dask.distributed import Client, LocalCluster

    from cai_edge.scale_out.dask_engine import parts_dir, predict_on_dask

    out = tmp_path / "z.csv"
    folder = parts_dir(out)
    folder.mkdir()
    done = folder / "part-00000-of-00003.csv"  # what a run of 3 tasks left: one part finished
    assert main(["predict", str(EXAMPLES), "--shard", "0/3", "--out", str(done), "--quiet", "--threads", "1"]) in (0, 1)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        report = predict_on_dask([str(EXAMPLES)], out, client, resume=True, predictor=Predictor(threads=1))
    assert len(report.counts.rows_in) == 3  # the interrupted run's 3 shards, not 4 per worker thread
    ids = [r["id"] for r in iter_result_rows(out)]
    assert len(ids) == len(set(ids)) == len(list(EXAMPLES.glob("*.fits")))
    assert not folder.exists()
