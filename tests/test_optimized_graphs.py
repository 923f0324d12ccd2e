"""The per-machine cache of optimized graphs: same redshifts, and never trusted blindly.

Real ONNX Runtime sessions on the shipped int8 default; the cache folder is a fresh one per test.
"""

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from cai_edge.bundle import resolve_bundle
from cai_edge.optimized_graphs import ENV, OptimizedGraphCache, cpu_signature
from cai_edge.predictor import Predictor
from cai_edge.session import started_from_cache


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "optimized"
    monkeypatch.setenv(ENV, str(folder))
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    return folder


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(3)
    images = rng.gamma(1.5, 0.2, size=(40, 5, 32, 32)).astype(np.float32)
    mags = rng.uniform(15.5, 20.0, size=(40, 5)).astype(np.float32)
    return images, mags


def _entries(folder):
    return sorted(p for p in folder.glob("*.onnx")) if folder.exists() else []


def _from_cache(predictor: Predictor) -> bool:
    return started_from_cache(predictor.session)


def test_the_second_session_starts_from_the_cache_and_predicts_bit_identically(cache_dir, inputs):
    first = Predictor(backend="onnxruntime")
    assert not _from_cache(first)
    [entry] = _entries(cache_dir)
    bundle = resolve_bundle("default")
    assert entry.name.startswith(OptimizedGraphCache.for_model(bundle.sha256).key)
    assert bundle.sha256[:32] in entry.name and f"ort{ort.__version__}" in entry.name
    second = Predictor(backend="onnxruntime")
    assert _from_cache(second)
    assert np.array_equal(first.predict_prepared(*inputs), second.predict_prepared(*inputs))
    assert np.array_equal(first.predict_prepared(*inputs, batch_size=1), second.predict_prepared(*inputs, batch_size=1))
    assert _entries(cache_dir) == [entry]


def test_a_damaged_entry_is_deleted_and_the_bundle_graph_used(cache_dir, inputs):
    expected = Predictor(backend="onnxruntime").predict_prepared(*inputs)
    [entry] = _entries(cache_dir)
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x01
    entry.write_bytes(bytes(data))
    p = Predictor(backend="onnxruntime")
    assert not _from_cache(p)
    assert np.array_equal(p.predict_prepared(*inputs), expected)
    [fresh] = _entries(cache_dir)  # the damaged one deleted, a new one written by this session
    assert fresh.read_bytes() != bytes(data)
    assert _from_cache(Predictor(backend="onnxruntime"))


def test_an_entry_that_verifies_but_does_not_load_is_dropped(cache_dir, inputs):
    import hashlib

    expected = Predictor(backend="onnxruntime").predict_prepared(*inputs)
    [entry] = _entries(cache_dir)
    entry.unlink()
    junk = b"not an onnx graph at all"
    key = OptimizedGraphCache.for_model(resolve_bundle("default").sha256).key
    planted = cache_dir / f"{key}-{hashlib.sha256(junk).hexdigest()}.onnx"
    planted.write_bytes(junk)
    p = Predictor(backend="onnxruntime")
    assert not _from_cache(p) and not planted.exists()
    assert np.array_equal(p.predict_prepared(*inputs), expected)
    assert len(_entries(cache_dir)) == 1


def test_other_keys_are_not_used(cache_dir, inputs):
    Predictor(backend="onnxruntime")
    [entry] = _entries(cache_dir)
    # The same graph under another onnxruntime version's key must not be picked up.
    other = cache_dir / entry.name.replace(f"ort{ort.__version__}", "ort0.0.1")
    entry.rename(other)
    assert not _from_cache(Predictor(backend="onnxruntime"))
    assert other.exists() and len(_entries(cache_dir)) == 2


@pytest.mark.parametrize("how", ["off", "lambda", "unwritable"])
def test_no_cache_when_off_in_lambda_or_unwritable(cache_dir, inputs, monkeypatch, how):
    expected = Predictor(providers="cpu", backend="onnxruntime").predict_prepared(*inputs)
    for entry in _entries(cache_dir):
        entry.unlink()
    if how == "off":
        monkeypatch.setenv(ENV, "off")
    elif how == "lambda":
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "cai-edge-test")
    else:
        blocker = cache_dir.parent / "a-file"
        blocker.write_text("a file where the cache folder would be")
        monkeypatch.setenv(ENV, str(blocker / "optimized"))
    p = Predictor(backend="onnxruntime")
    assert not _from_cache(p)
    assert np.array_equal(p.predict_prepared(*inputs), expected)
    assert _entries(cache_dir) == []


_CHILD = r"""
import json, sys
import numpy as np
from cai_edge.predictor import Predictor
from cai_edge.session import started_from_cache
rng = np.random.default_rng(3)
images = rng.gamma(1.5, 0.2, size=(40, 5, 32, 32)).astype(np.float32)
mags = rng.uniform(15.5, 20.0, size=(40, 5)).astype(np.float32)
p = Predictor(backend="onnxruntime")
print(json.dumps({"z": p.predict_prepared(images, mags).tolist(), "cached": started_from_cache(p.session)}))
"""


def _child(cache_dir, **env):
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                          env={**os.environ, ENV: str(cache_dir), **env})
    return proc


def test_killed_between_writing_and_naming_leaves_no_entry_and_the_next_run_recovers(cache_dir, inputs):
    killed = _child(cache_dir, CAI_EDGE_CRASH_AT="optimized_graph_staged")
    assert killed.returncode == -9
    assert _entries(cache_dir) == []
    [staging] = list(cache_dir.glob(".*.tmp"))  # written whole by ONNX Runtime, never renamed
    os.utime(staging, (1, 1))  # an hour old or more: swept by the next writer
    after = _child(cache_dir)
    assert after.returncode == 0, after.stderr[-2000:]
    result = json.loads(after.stdout.splitlines()[-1])
    assert not result["cached"] and len(_entries(cache_dir)) == 1 and not staging.exists()
    again = json.loads(_child(cache_dir).stdout.splitlines()[-1])
    assert again["cached"] and again["z"] == result["z"]
    assert np.array_equal(np.float32(result["z"]), Predictor(providers="cpu", backend="onnxruntime").predict_prepared(*inputs))


def test_two_first_runs_at_once_both_predict_and_a_third_uses_the_cache(cache_dir):
    env = {**os.environ, ENV: str(cache_dir)}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    results = [json.loads(o.splitlines()[-1]) for o, _ in outs]
    assert results[0]["z"] == results[1]["z"]
    assert 1 <= len(_entries(cache_dir)) <= 2 and not list(cache_dir.glob(".*.tmp"))
    third = json.loads(_child(cache_dir).stdout.splitlines()[-1])
    assert third["cached"] and third["z"] == results[0]["z"]


def test_the_cpu_signature_follows_every_flag_and_is_none_where_the_cpu_cannot_be_read(tmp_path):
    flags = "flags\t\t: fpu sse2 avx2 fma"
    one, other = tmp_path / "one", tmp_path / "other"
    one.write_text(f"processor\t: 0\nmodel name\t: Some CPU\n{flags}\n\nprocessor\t: 1\nflags\t\t: different\n")
    other.write_text(f"processor\t: 0\nmodel name\t: Some CPU\n{flags} avx512f\n\n")
    assert cpu_signature(str(one)) and cpu_signature(str(one)) != cpu_signature(str(other))
    assert cpu_signature(str(tmp_path / "missing")) is None
    (tmp_path / "empty").write_text("")
    assert cpu_signature(str(tmp_path / "empty")) is None
