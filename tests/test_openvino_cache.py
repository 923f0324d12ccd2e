"""OpenVINO's compiled models in the per-machine cache: imported instead of compiled, checked, and safe to start beside."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cai_edge.bundle.registry import resolve_bundle
from cai_edge.results.files import read_results

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _verified(entry: Path) -> bool:
    """The entry's content hashes to the sha256 in its name."""
    return hashlib.sha256(entry.read_bytes()).hexdigest() == entry.name.rsplit("-", 1)[1][: -len(".ov")]


def test_compiled_models_are_imported_from_the_cache_give_the_same_rows_and_damage_is_caught(tmp_path, monkeypatch):
    """A second session imports both compiled models (batched and one-galaxy) without rewriting them; its rows
    are bit-identical to the compiling session's and to a session with the cache off; an entry damaged in place
    is never imported: it is replaced by a recompiled one and the rows do not change; a stale staging file of
    the cache's own is swept, a user's file is not."""
    pytest.importorskip("openvino")
    from cai_edge.models.datasets import rendered_split
    from cai_edge.openvino_session import OpenVINOSession

    cache = tmp_path / "cache"
    monkeypatch.setenv("CAI_EDGE_OPTIMIZED_GRAPHS", str(cache))
    bundle = resolve_bundle("default")
    data = rendered_split("validation", 0, 40)
    image, magnitude = bundle.preprocessing.network_inputs(data.images, data.magnitudes)

    def rows() -> tuple[np.ndarray, np.ndarray]:
        session = OpenVINOSession(bundle, 2, "openvino-bf16")
        batched = session.run(["redshift"], {"image": image, "magnitude": magnitude})[0]
        single = session.run(["redshift"], {"image": image[:1], "magnitude": magnitude[:1]})[0]
        return batched, single

    first = rows()
    entries = sorted(cache.glob("*.ov"))
    assert len(entries) == 2 and all(_verified(e) for e in entries)  # one per compiled model
    inodes = {e: e.stat().st_ino for e in entries}

    again = rows()
    assert sorted(cache.glob("*.ov")) == entries and all(e.stat().st_ino == inodes[e] for e in entries)  # imported, not rewritten
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setenv("CAI_EDGE_OPTIMIZED_GRAPHS", "off")
    for a, b in zip(first, rows()):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setenv("CAI_EDGE_OPTIMIZED_GRAPHS", str(cache))

    for entry in entries:  # damaged in place, name kept: 4 KiB of zeros in the middle
        with open(entry, "r+b") as fh:
            fh.seek(entry.stat().st_size // 2)
            fh.write(bytes(4096))
        assert not _verified(entry)
    stale_own = cache / f".{entries[0].name.rsplit('-', 1)[0]}.123.deadbeef.tmp"
    users = cache / ".notes.tmp"
    for path in (stale_own, users):
        path.write_text("x")
        os.utime(path, (1, 1))
    for a, b in zip(first, rows()):
        np.testing.assert_array_equal(a, b)
    after = sorted(cache.glob("*.ov"))
    assert after and all(_verified(e) for e in after) and all(e.stat().st_ino != inodes.get(e) for e in after)
    assert not stale_own.exists() and users.read_text() == "x"


def test_processes_started_together_on_an_empty_cache_all_give_the_same_rows(tmp_path):
    """Six `cai-edge predict` processes started at once, each compiling and writing the same entries: every one
    succeeds with the same redshifts, and every entry left is whole (OpenVINO's own CACHE_DIR failed this)."""
    pytest.importorskip("openvino")
    env = {**os.environ, "CAI_EDGE_OPTIMIZED_GRAPHS": str(tmp_path / "cache"), "CAI_EDGE_BACKEND": "openvino"}
    fits = [str(p) for p in sorted(EXAMPLES.glob("*.fits"))]
    procs = [subprocess.Popen([sys.executable, "-m", "cai_edge", "predict", *fits, "--threads", "2", "--quiet",
                               "--out", str(tmp_path / f"z{k}.csv")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for k in range(6)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
    tables = [read_results(tmp_path / f"z{k}.csv") for k in range(6)]
    assert len(tables[0]) == len(fits) and np.isfinite(np.asarray(tables[0]["z_pred"], float)).any()
    for table in tables[1:]:
        np.testing.assert_array_equal(np.asarray(table["z_pred"], float), np.asarray(tables[0]["z_pred"], float))
    entries = sorted((tmp_path / "cache").glob("*.ov"))
    assert entries and all(_verified(e) for e in entries)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]  # no staging file left behind
    # a writer killed after staging its entry leaves a full-size file; a warm cache is never written, so the
    # next process's read sweeps it (once an hour old), and leaves a user's file alone
    key = entries[0].name.rsplit("-", 1)[0]
    stale, users = tmp_path / "cache" / f".{key}.123.deadbeef.entry.tmp", tmp_path / "cache" / ".mine.entry.tmp"
    for path in (stale, users):
        path.write_bytes(bytes(1000))
        os.utime(path, (1, 1))
    again = subprocess.run([sys.executable, "-m", "cai_edge", "predict", *fits, "--threads", "2", "--quiet",
                            "--out", str(tmp_path / "again.csv")], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert not stale.exists() and users.exists() and sorted((tmp_path / "cache").glob("*.ov")) == entries
