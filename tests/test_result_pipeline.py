"""Nothing lost, nothing mislabelled: the predict result pipeline under kills, concurrency and careless use.

Every run here is a real ``cai-edge predict`` process over real NPZ/FITS files and a real ONNX
Runtime session; crashes are real SIGKILLs, either at named points of the pipeline
(``CAI_EDGE_CRASH_AT``) or at random moments.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from bundle_helpers import tiny_bundle
from cai_edge.cli import main
from cai_edge.io.fits_cutouts import cutout_hdul
from cai_edge.io.npz_partitions import write_npz_partition
from cai_edge.results.lock import OutputLock, OutputLockedError, lock_path
from cai_edge.results.files import read_identity, read_results
from cai_edge.results.spool import MAGIC, spool_dir
from cai_edge.predictor import Predictor
from result_helpers import MAGS, predict_cmd, predict_process, write_partitions


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny-fp32")


@pytest.fixture(scope="module")
def other_bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle2") / "tiny-int8", name="tiny-int8", variant="int8-static")


def _rows_by_id(out: Path) -> dict[str, tuple]:
    table = read_results(out)
    return {(r["id"], r["source"] if r["status"] == "duplicate_id" else ""): (r["status"], r["z_pred"]) for r in table}


def _assert_same_rows(out: Path, clean: Path) -> None:
    got, want = read_results(out), read_results(clean)
    assert len(got) == len(want), f"{len(got)} rows, clean run has {len(want)}"
    a, b = _rows_by_id(out), _rows_by_id(clean)
    assert len(a) == len(got), "some object appears twice"
    assert a.keys() == b.keys()
    for key, (status, z) in b.items():
        assert a[key][0] == status, key
        assert (np.isnan(z) and np.isnan(a[key][1])) or a[key][1] == z, key


# 1. two runs on one --out
def test_a_second_run_on_the_same_out_refuses_and_the_first_completes(bundle, tmp_path):
    ids_a = write_partitions(tmp_path / "a", 4, 250, seed=1)
    write_partitions(tmp_path / "b", 4, 250, seed=2)
    out = tmp_path / "z.csv"
    # run A pauses for 6 s right after its first batch is spooled, holding the lock
    first = subprocess.Popen(predict_cmd(tmp_path / "a", "--bundle", bundle, "--out", out, "--batch-size", "50"),
                             env={**os.environ, "CAI_EDGE_PAUSE_AT": "spool-written:6"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (spool_dir(out).is_dir() and any(spool_dir(out).glob("segment-*.csv"))) and time.time() < deadline:
        time.sleep(0.05)
    second = predict_process(tmp_path / "b", "--bundle", bundle, "--out", out)
    assert first.poll() is None, "run A ended before run B tried: the test proved nothing"
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"being written by another cai-edge run (pid {first.pid}" in second.stderr
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert sorted(read_results(out)["id"]) == sorted(ids_a)
    assert not lock_path(out).exists() and not spool_dir(out).exists()


def test_a_lock_left_by_a_killed_run_is_taken_over(bundle, tmp_path):
    write_partitions(tmp_path / "in", 2, 100)
    out = tmp_path / "z.csv"
    killed = predict_process(tmp_path / "in", "--bundle", bundle, "--out", out, "--batch-size", "20",
                             env={"CAI_EDGE_CRASH_AT": "spool-written:2"})
    assert killed.returncode == -signal.SIGKILL and lock_path(out).exists()
    again = predict_process(tmp_path / "in", "--bundle", bundle, "--out", out)
    assert again.returncode == 0, again.stderr
    assert len(read_results(out)) == 200


def test_exclusive_create_fallback_takes_over_dead_holders_only(tmp_path, monkeypatch):
    """Where flock is unavailable the lock file is created with O_EXCL and names its holder."""
    import json
    import socket

    from cai_edge.results import lock as output_lock

    monkeypatch.setattr(output_lock, "fcntl", None)
    out = tmp_path / "z.csv"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_path(out).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": "then"}))
    with OutputLock(out):
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            OutputLock(out).acquire()
    assert not lock_path(out).exists()


# 2. --resume killed again keeps the first run's rows
def test_resume_killed_during_resume_keeps_every_earlier_batch(bundle, tmp_path):
    write_partitions(tmp_path / "in", 4, 250)
    out = tmp_path / "z.csv"
    args = (tmp_path / "in", "--bundle", bundle, "--out", out, "--batch-size", "100")
    first = predict_process(*args, env={"CAI_EDGE_CRASH_AT": "spool-written:4"})
    assert first.returncode == -signal.SIGKILL
    second = predict_process(*args, "--resume", env={"CAI_EDGE_CRASH_AT": "spool-written:2"})
    assert second.returncode == -signal.SIGKILL
    last = predict_process(*args, "--resume")
    assert last.returncode == 0, last.stderr
    # 4 batches of the first run and 2 of the second are kept, not recomputed
    assert "400 ok, 0 failed, 600 skipped" in last.stderr
    assert len(read_results(out)) == 1000


# 3. a spool in the state a kill leaves
def test_resume_reads_spools_with_a_cut_off_line_or_no_rows(bundle, tmp_path):
    write_partitions(tmp_path / "in", 2, 100)
    out = tmp_path / "z.csv"
    args = (tmp_path / "in", "--bundle", bundle, "--out", out, "--batch-size", "50")
    assert predict_process(*args, env={"CAI_EDGE_CRASH_AT": "spool-written:2"}).returncode == -signal.SIGKILL
    segment = next(spool_dir(out).glob("segment-*.csv"))
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 7])  # the last row cut mid-line
    (spool_dir(out) / "segment-000007.csv").write_bytes(b"")  # created, killed before its header
    (spool_dir(out) / "segment-000008.csv").write_bytes(MAGIC.encode()[:9])  # header cut off
    (spool_dir(out) / ".segment-000009.csv.123.tmp").write_bytes(b"junk")  # a kill inside the atomic create
    last = predict_process(*args, "--resume")
    assert last.returncode == 0, last.stderr
    assert "101 ok, 0 failed, 99 skipped" in last.stderr  # 2 batches spooled; the cut row is recomputed
    assert len(read_results(out)) == 200 and not spool_dir(out).exists()


# 4. duplicates
def test_no_duplicates_after_a_killed_rerun_or_a_kill_after_the_rename(bundle, tmp_path):
    ids = write_partitions(tmp_path / "in", 4, 200)
    out = tmp_path / "z.csv"
    args = (tmp_path / "in", "--bundle", bundle, "--out", out, "--batch-size", "100")
    assert predict_process(*args).returncode == 0
    clean = tmp_path / "clean.csv"
    clean.write_bytes(out.read_bytes())
    # a rerun without --resume is killed; then --resume
    assert predict_process(*args, env={"CAI_EDGE_CRASH_AT": "spool-written:3"}).returncode == -signal.SIGKILL
    assert predict_process(*args, "--resume").returncode == 0
    _assert_same_rows(out, clean)
    # killed just after the atomic rename, before the spool is deleted
    assert predict_process(*args, "--resume", env={"CAI_EDGE_CRASH_AT": "output-renamed"}).returncode == -signal.SIGKILL
    assert predict_process(*args, env={"CAI_EDGE_CRASH_AT": "output-renamed"}).returncode == -signal.SIGKILL
    assert any(spool_dir(out).glob("segment-*.csv"))
    for _ in range(2):  # merging is idempotent
        assert predict_process(*args, "--resume").returncode == 0
        _assert_same_rows(out, clean)
    assert sorted(read_results(out)["id"]) == sorted(ids)


def test_the_latest_ok_row_wins(tmp_path):
    from cai_edge.results.files import RowMerger

    def rows(*items):
        return lambda: iter([{"id": i, "source": "s", "z_pred": z, "z_spec": "", "status": st, "message": ""} for i, z, st in items])

    merged = RowMerger([rows(("a", "0.1", "ok"), ("b", "", "unreadable")),
                        rows(("a", "", "unreadable"), ("b", "0.2", "ok"), ("c", "", "bad_shape")),
                        rows(("b", "0.3", "ok"), ("c", "", "unreadable"))])
    got = {r["id"]: (r["z_pred"], r["status"]) for r in merged.rows()}
    assert got == {"a": ("0.1", "ok"), "b": ("0.3", "ok"), "c": ("", "unreadable")}
    assert merged.done_ids() == {"a", "b"}


# 5. ids are text
@pytest.mark.parametrize("catalog_format", ["csv", "ecsv", "fits"])
def test_ids_are_text_everywhere(bundle, tmp_path, catalog_format):
    ids = ["001", "1e3", "0000000123", "1237648720693755918", "12"]
    folder = tmp_path / "in"
    folder.mkdir()
    for gid in ids:
        fits.PrimaryHDU(np.zeros((5, 40, 40), np.float32)).writeto(folder / f"{gid}.fits")
    table = Table({"id": ids, "z_spec": [0.1] * 5})
    for band, mag in zip("ugriz", MAGS):
        table[f"mag_{band}"] = [float(mag)] * 5
    catalog = tmp_path / f"cat.{catalog_format}"
    if catalog_format == "csv":
        catalog.write_text("id,mag_u,mag_g,mag_r,mag_i,mag_z,z_spec\n" + "".join(f"{i},19,17.5,16.7,16.3,16,0.1\n" for i in ids))
    else:
        table.write(catalog, format="ascii.ecsv" if catalog_format == "ecsv" else "fits")
    out = tmp_path / "z.ecsv"
    args = (folder, "--bundle", bundle, "--catalog", catalog, "--out", out)
    assert predict_process(*args).returncode == 0
    result = read_results(out)
    assert sorted(result["id"]) == sorted(ids) and set(result["status"]) == {"ok"}
    again = predict_process(*args, "--resume")
    assert "0 ok, 0 failed, 5 skipped" in again.stderr
    assert sorted(read_results(out)["id"]) == sorted(ids)


def test_partition_ids_stay_text_through_csv_resume(bundle, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    ids = ["007", "7", "7.0", "1e3"]
    write_npz_partition(folder / "p.npz", np.zeros((4, 5, 32, 32), np.float32), np.tile(MAGS, (4, 1)), ids)
    out = tmp_path / "z.csv"
    assert predict_process(folder, "--bundle", bundle, "--out", out).returncode == 0
    again = predict_process(folder, "--bundle", bundle, "--out", out, "--resume")
    assert "0 ok, 0 failed, 4 skipped" in again.stderr
    assert sorted(read_results(out)["id"]) == sorted(ids)


# 6. --resume with another bundle
def test_resume_with_another_bundle_is_refused(bundle, other_bundle, tmp_path):
    write_partitions(tmp_path / "in", 1, 100)
    out = tmp_path / "z.fits"
    assert predict_process(tmp_path / "in", "--bundle", bundle, "--out", out).returncode == 0
    before = out.read_bytes()
    refused = predict_process(tmp_path / "in", "--bundle", other_bundle, "--out", out, "--resume")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "tiny-fp32" in refused.stderr and "tiny-int8" in refused.stderr and "without --resume" in refused.stderr
    assert out.read_bytes() == before
    # the same for rows only in the spool of a killed run
    out2 = tmp_path / "z.csv"
    assert predict_process(tmp_path / "in", "--bundle", bundle, "--out", out2, "--batch-size", "10",
                           env={"CAI_EDGE_CRASH_AT": "spool-written:2"}).returncode == -signal.SIGKILL
    refused = predict_process(tmp_path / "in", "--bundle", other_bundle, "--out", out2, "--resume")
    assert refused.returncode == 2 and "tiny-fp32" in refused.stderr
    # recomputing is asked for by running without --resume
    assert predict_process(tmp_path / "in", "--bundle", other_bundle, "--out", out2).returncode == 0
    assert read_identity(out2)["bundle"] == "tiny-int8"


# 7. what each format can hold, checked before the run
def test_fits_output_refuses_non_ascii_ids_before_predicting_and_loses_nothing(bundle, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    cutout_hdul(np.zeros((5, 48, 48), np.float32), MAGS).writeto(folder / "gälaxy.fits")
    out = tmp_path / "z.fits"
    refused = predict_process(folder, "--bundle", bundle, "--out", out)
    assert refused.returncode == 2 and "ASCII" in refused.stderr and "Traceback" not in refused.stderr
    assert not out.exists() and not spool_dir(out).exists()
    # an id found inside a partition costs its own row only: a bad_id row under a stand-in id, the rest ok
    other = tmp_path / "parts"
    other.mkdir()
    write_npz_partition(other / "p.npz", np.zeros((3, 5, 32, 32), np.float32), np.tile(MAGS, (3, 1)), ["a", "b", "c"])
    assert predict_process(other, "--bundle", bundle, "--out", out).returncode == 0
    write_npz_partition(other / "q.npz", np.zeros((2, 5, 32, 32), np.float32), np.tile(MAGS, (2, 1)), ["d", "ñ"])
    partial = predict_process(other, "--bundle", bundle, "--out", out, "--resume")
    assert partial.returncode == 1, partial.stderr
    table = read_results(out)
    bad = table[table["status"] == "bad_id"]
    assert sorted(table["id"][table["status"] == "ok"]) == ["a", "b", "c", "d"] and len(bad) == 1
    assert bad["id"][0].startswith("unusable-id-") and "\\xf1" in bad["message"][0] and "ASCII" in bad["message"][0]
    # the formats that hold Unicode keep the id as it is
    ecsv = tmp_path / "z.ecsv"
    assert predict_process(folder, other, "--bundle", bundle, "--out", ecsv).returncode == 0
    assert {"gälaxy", "ñ"} <= set(read_results(ecsv)["id"])


def test_parquet_without_pyarrow_is_refused_before_the_run(bundle, tmp_path):
    write_partitions(tmp_path / "in", 1, 10)
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from cai_edge.cli import main\n"
        f"sys.exit(main(['predict', {str(tmp_path / 'in')!r}, '--bundle', {str(bundle)!r}, '--out', {str(tmp_path / 'z.parquet')!r}, '--quiet']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2 and "pyarrow" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "z.parquet").exists() and not spool_dir(tmp_path / "z.parquet").exists()


# 8. --out must not be an input or a folder
def test_out_that_is_an_input_or_a_folder_is_refused(bundle, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    cutout_hdul(np.zeros((5, 48, 48), np.float32), MAGS).writeto(folder / "a.fits")
    original = (folder / "a.fits").read_bytes()
    assert main(["predict", str(folder / "a.fits"), "--bundle", str(bundle), "--out", str(folder / "a.fits"), "--quiet"]) == 2
    assert main(["predict", str(folder), "--bundle", str(bundle), "--out", str(folder / "a.fits"), "--quiet"]) == 2
    assert (folder / "a.fits").read_bytes() == original
    assert main(["predict", str(folder), "--bundle", str(bundle), "--out", str(tmp_path), "--quiet"]) == 2
    assert main(["predict", str(folder), "--bundle", str(bundle), "--out", str(folder / "a.fits" / "z.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "one of the inputs" in err and "is a folder" in err and "cannot create the folder" in err and "Traceback" not in err
    # an output inside the input folder is never read back as an input
    out = folder / "z.fits"
    for _ in range(2):
        assert main(["predict", str(folder), "--bundle", str(bundle), "--out", str(out), "--quiet"]) == 0
        assert list(read_results(out)["id"]) == ["a"]


# 9. batch sizes and unfilled output
@pytest.mark.parametrize("value", ["-1", "0", "x"])
def test_bad_batch_size_is_a_usage_error(bundle, tmp_path, value):
    proc = predict_process(tmp_path, "--bundle", bundle, "--out", tmp_path / "z.csv", "--batch-size", value)
    assert proc.returncode == 2 and "--batch-size" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "z.csv").exists()


def test_predictor_never_returns_unfilled_values(bundle):
    p = Predictor(bundle, threads=1)
    images, mags = np.zeros((5, 5, 32, 32), np.float32), np.tile(MAGS, (5, 1))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            p.predict_prepared(images, mags, bad)
    assert np.all(np.isfinite(p.predict_prepared(images, mags, 2)))


# the crash cycle
CRASH_POINTS = ["spool-written", "output-written", "output-renamed", "spool-segment-deleted"]


def test_crash_cycle_every_object_exactly_once(bundle, tmp_path):
    """≥ 3,000 galaxies, SIGKILLed at random moments and named points in ≥ 10 successive --resume runs."""
    folder = tmp_path / "in"
    write_partitions(folder, 12, 250, seed=7, bad_every=97)  # 3,000 galaxies, some unusable
    cutout_hdul(np.zeros((5, 48, 48), np.float32), MAGS).writeto(folder / "p000-0001.fits")  # a duplicate id
    (folder / "broken.fits").write_bytes(b"SIMPLE = junk")
    clean = tmp_path / "clean.csv"
    args = lambda out: (folder, "--bundle", bundle, "--out", out, "--batch-size", "32")  # noqa: E731
    assert predict_process(*args(clean)).returncode == 1  # some rows are not ok
    out = tmp_path / "z.csv"
    rng = np.random.default_rng(2026)
    kills, cycle = 0, 0
    while kills < 12 and cycle < 40:
        resume = ("--resume",) if cycle else ()
        if cycle % 2:  # at a random moment
            proc = subprocess.Popen(predict_cmd(*args(out), *resume), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(float(rng.uniform(0.2, 1.6)))
            proc.send_signal(signal.SIGKILL)
            kills += proc.wait() == -signal.SIGKILL
        else:  # at a named point of the pipeline (during the final write too), the n-th time it is passed
            point = CRASH_POINTS[(cycle // 2) % len(CRASH_POINTS)]
            count = int(rng.integers(1, 20)) if point == "spool-written" else 1
            proc = predict_process(*args(out), *resume, env={"CAI_EDGE_CRASH_AT": f"{point}:{count}"})
            assert proc.returncode in (-signal.SIGKILL, 1), proc.stderr
            kills += proc.returncode == -signal.SIGKILL
        cycle += 1
    assert kills >= 12
    final = predict_process(*args(out), "--resume")
    assert final.returncode == 1, final.stderr
    _assert_same_rows(out, clean)
    assert len(read_results(out)) == 3002 and not spool_dir(out).exists() and not lock_path(out).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# 14. spool segments of older versions (issue 30 item 14)
_BEFORE_FLAGS = ("id", "source", "z_pred", "z_spec", "status", "message")  # a2c45c2
_WITH_FLAGS = ("id", "source", "z_pred", "z_err", "z_lo68", "z_hi68", "z_lo95", "z_hi95", "z_spec", "status", "flags", "message")


def _old_segment(out: Path, version: int, header: dict, rows: list[list[str]]) -> None:
    """A segment as the cai-edge of that format wrote it: format 1 CSV lines, format 2 JSON lines."""
    import csv
    import io
    import json

    spool_dir(out).mkdir(exist_ok=True)
    body = io.StringIO()
    if version == 1:
        csv.writer(body, lineterminator="\n").writerows(rows)
    else:
        body.writelines(json.dumps(r) + "\n" for r in rows)
    (spool_dir(out) / "segment-000001.csv").write_text(f"#cai-edge-spool {version} {json.dumps(header)}\n" + body.getvalue(), encoding="utf-8")


def _old_fields(row: dict, columns: tuple[str, ...]) -> list[str]:
    old = {**row, "flags": "" if row["flag_names"] == "none" else row["flag_names"]}
    return [old[c] for c in columns]


@pytest.mark.parametrize("version, columns, with_calibration", [(1, _BEFORE_FLAGS, False), (1, _WITH_FLAGS, True), (2, _WITH_FLAGS, True)])
def test_segments_of_older_versions_resume_with_usable_derived(bundle, tmp_path, version, columns, with_calibration):
    """Segments from before usable/flag_bits/flag_names (format 1, or format 2 with one flags column) were refused
    'as if --keep-columns flags had been used', and that advice left their rows with an empty usable."""
    from cai_edge.results.files import iter_result_rows

    write_partitions(tmp_path / "in", 1, 8)
    clean = tmp_path / "clean.csv"
    assert predict_process(tmp_path / "in", "--bundle", bundle, "--out", clean).returncode == 0
    rows = list(iter_result_rows(clean))
    identity = Predictor(bundle, threads=1).bundle.identity()
    if not with_calibration:
        del identity["calibration_sha256"]  # not recorded before calibrations existed
    out = tmp_path / "z.csv"
    _old_segment(out, version, {**identity, "columns": list(columns), "fresh": True, "pid": 1, "started": "2026-01-01T00:00:00+00:00"},
                 [_old_fields(r, columns) for r in rows[:4]])
    resumed = predict_process(tmp_path / "in", "--bundle", bundle, "--out", out, "--resume")
    assert resumed.returncode == 0 and "4 ok, 0 failed, 4 skipped" in resumed.stderr, resumed.stderr
    got, want = read_results(out), read_results(clean)
    if "flags" not in columns:  # rows from before flags existed: unchecked and uncalibrated, never usable
        assert set(got["flag_names"][:4]) == {"uncalibrated"} and not got["usable"][:4].any()
        got, want = got[4:], want[4:]
    for column in ("id", "status", "usable", "flag_bits", "flag_names"):
        assert list(got[column]) == list(want[column]), column
    assert np.allclose(got["z_pred"], want["z_pred"]) and not spool_dir(out).exists()


def test_segment_rows_that_cannot_be_used_are_predicted_again_and_said(bundle, tmp_path):
    """A segment listing only id, source, status gave ok rows without z_pred; rows with a field too many were dropped
    silently. Both are left out, said so, and their objects predicted again."""
    from cai_edge.results.rows import COLUMNS

    ids = write_partitions(tmp_path / "in", 1, 8)
    identity = Predictor(bundle, threads=1).bundle.identity()
    out = tmp_path / "z.csv"
    source = str(tmp_path / "in" / "part-000.npz")
    rows = [[i, f"{source}[{k}]", "ok"] for k, i in enumerate(ids[:3])]
    _old_segment(out, 2, {**identity, "columns": ["id", "source", "status"], "fresh": True}, rows + [[ids[3], "x", "ok", "extra"]])
    resumed = predict_process(tmp_path / "in", "--bundle", bundle, "--out", out, "--resume")
    assert resumed.returncode == 0 and "8 ok, 0 failed, 0 skipped" in resumed.stderr, resumed.stderr
    assert "segment-000001.csv: 3 ok row(s) without a z_pred left out" in resumed.stderr
    assert "segment-000001.csv: 1 line(s) not a row of the segment's columns left out" in resumed.stderr
    table = read_results(out)
    assert sorted(table["id"]) == sorted(ids) and not np.isnan(table["z_pred"]).any()
