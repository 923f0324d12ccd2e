"""Backends: ONNX Runtime always; OpenVINO where installed, on the same verified bundle, passing the accuracy gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cai_edge.backends import BACKENDS, ChoiceCache
from cai_edge.bundle.registry import resolve_bundle
from cai_edge.cli import BACKEND_CHOICES, main
from cai_edge.machine import simd_flags
from cai_edge.metrics import photoz_metrics
from cai_edge.predictor import Predictor
from cai_edge.quantize.gate import accuracy_gate
from cai_edge.results.files import read_identity, read_results
from thread_helpers import threads_started_while

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _no_openvino(code: str, env: dict) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter where ``import openvino`` fails, as on an install without the extra."""
    return subprocess.run([sys.executable, "-c", "import sys; sys.modules['openvino'] = None\n" + code],
                          capture_output=True, text=True, env=env, timeout=300)


def test_the_default_backend_is_auto_unless_the_environment_names_another(tmp_path, monkeypatch, capsys):
    """Predictor() and `cai-edge predict` run `auto` (ONNX Runtime without OpenVINO, else the probed choice);
    $CAI_EDGE_BACKEND pins another, and a wrong value is refused before any work, naming the variable."""
    monkeypatch.setenv("CAI_EDGE_OPTIMIZED_GRAPHS", str(tmp_path / "cache"))
    monkeypatch.delenv("CAI_EDGE_BACKEND")
    bundle = resolve_bundle("default")
    default, auto = Predictor(bundle, threads=1), Predictor(bundle, threads=1, backend="auto")
    assert default.backend == auto.backend in BACKENDS[1:]
    try:
        import openvino
    except ImportError:
        assert default.backend == "onnxruntime"
    else:  # the probe ran once and its choice is what both got
        cache = ChoiceCache.for_model(bundle.sha256, 1, openvino.__version__)
        assert json.loads(cache.path.read_text())["backend"] == default.backend
    one = sorted(EXAMPLES.glob("*.fits"))[0]
    assert main(["predict", str(one), "--threads", "1", "--out", str(tmp_path / "z.csv"), "--quiet"]) == 0
    assert read_identity(tmp_path / "z.csv")["engine"] == default.backend
    # with the cache off (Lambda) a choice could not be kept: auto is ONNX Runtime, with no probe
    monkeypatch.setenv("CAI_EDGE_OPTIMIZED_GRAPHS", "off")
    assert Predictor(bundle, threads=1).backend == "onnxruntime"
    monkeypatch.setenv("CAI_EDGE_OPTIMIZED_GRAPHS", str(tmp_path / "cache"))
    monkeypatch.setenv("CAI_EDGE_BACKEND", "onnxruntime")
    assert Predictor(bundle, threads=1).backend == "onnxruntime"
    monkeypatch.setenv("CAI_EDGE_BACKEND", "tensorflow")
    with pytest.raises(ValueError, match="CAI_EDGE_BACKEND='tensorflow'"):
        Predictor(bundle, threads=1)
    assert Predictor(bundle, threads=1, backend="onnxruntime").backend == "onnxruntime"  # an explicit backend wins
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(one), "--out", str(tmp_path / "w.csv")])
    assert exc.value.code == 2 and "CAI_EDGE_BACKEND='tensorflow'" in capsys.readouterr().err and not (tmp_path / "w.csv").exists()


def test_openvino_rows_do_not_depend_on_how_a_batch_is_split():
    """The OpenVINO session splits a batch over one request per thread, and runs fewer galaxies than threads on
    one request with all of them: every galaxy's redshift is the same however it is batched."""
    pytest.importorskip("openvino")
    from cai_edge.models.datasets import rendered_split
    from cai_edge.openvino_session import OpenVINOSession

    bundle = resolve_bundle("default")
    data = rendered_split("validation", 0, 64)
    image, magnitude = bundle.preprocessing.network_inputs(data.images, data.magnitudes)
    for backend in ("openvino", "openvino-bf16"):
        session = OpenVINOSession(bundle, 2, backend)
        assert session.streams == 2
        run = lambda a, b: session.run(["redshift"], {"image": image[a:b], "magnitude": magnitude[a:b]})[0]  # noqa: E731
        whole = run(0, 64)
        assert whole.shape == (64,) and whole.dtype == np.float32 and np.isfinite(whole).all()
        pieces = np.concatenate([run(0, 1), run(1, 4), run(4, 5), run(5, 37), run(37, 64)])
        assert np.array_equal(whole, pieces), backend
        reference = Predictor(bundle, threads=2, backend="onnxruntime").session.run(["redshift"], {"image": image, "magnitude": magnitude})[0]
        assert np.max(np.abs(whole - reference) / (1 + reference)) < 0.002


def test_without_openvino_auto_is_onnxruntime_with_no_probe_and_openvino_is_a_clear_error(tmp_path):
    cache, one = tmp_path / "cache", sorted(EXAMPLES.glob("*.fits"))[0]
    env = {**os.environ, "CAI_EDGE_OPTIMIZED_GRAPHS": str(cache)}
    proc = _no_openvino(
        "from cai_edge.predictor import Predictor\n"
        "from cai_edge.errors import BackendUnavailableError\n"
        "p = Predictor(backend='auto')\n"
        "print(p.backend, p.providers)\n"
        "try:\n    Predictor(backend='openvino')\nexcept BackendUnavailableError as e:\n    print('refused:', e)\n"
        "from cai_edge.cli import main\n"
        f"print('exit', main(['predict', {str(one)!r}, '--backend', 'openvino', '--out', {str(tmp_path / 'z.csv')!r}]))\n", env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "onnxruntime ['CPUExecutionProvider']" in proc.stdout and 'refused: backend \'openvino\' needs OpenVINO' in proc.stdout
    assert "exit 2" in proc.stdout and "needs OpenVINO" in proc.stderr and not (tmp_path / "z.csv").exists()
    assert not list(cache.glob("backend-*"))  # no probe, no choice written


def test_the_cli_offers_every_backend_and_refuses_others(tmp_path, capsys):
    assert BACKEND_CHOICES == BACKENDS
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(EXAMPLES), "--backend", "tensorflow", "--out", str(tmp_path / "z.csv")])
    assert exc.value.code == 2 and "invalid choice: 'tensorflow'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="backend must be one of"):
        Predictor(backend="onnx")


def test_openvino_runs_the_same_rows_and_passes_the_accuracy_gate_on_the_examples(tmp_path):
    """Every backend's rows on the 200 example cutouts against ONNX Runtime's: same statuses, z within 0.002(1+z), gate passed."""
    pytest.importorskip("openvino")
    tables = {}
    for backend in ("onnxruntime", "openvino", "openvino-bf16"):
        out = tmp_path / f"{backend}.csv"
        assert main(["predict", str(EXAMPLES), "--backend", backend, "--out", str(out), "--quiet"]) == 0
        tables[backend] = read_results(out)
    reference = tables["onnxruntime"]
    z_ref, z_spec = np.asarray(reference["z_pred"], float), np.asarray(reference["z_spec"], float)
    ref_metrics = photoz_metrics(z_ref, z_spec)
    for backend in ("openvino", "openvino-bf16"):
        table = tables[backend]
        assert list(table["id"]) == list(reference["id"]) and list(table["status"]) == list(reference["status"])
        z = np.asarray(table["z_pred"], float)
        assert np.max(np.abs(z - z_ref) / (1 + z_ref)) < 0.002
        gate = accuracy_gate(ref_metrics, photoz_metrics(z, z_spec))
        assert gate["passed"], (backend, gate)


def test_auto_probes_once_caches_its_choice_and_probes_again_when_the_choice_is_damaged(tmp_path, monkeypatch):
    openvino = pytest.importorskip("openvino")
    monkeypatch.setenv("CAI_EDGE_OPTIMIZED_GRAPHS", str(tmp_path / "cache"))
    bundle = resolve_bundle("default")
    first = Predictor(bundle, threads=1, backend="auto")
    cache = ChoiceCache.for_model(bundle.sha256, 1, openvino.__version__)
    written = json.loads(cache.path.read_text())
    assert first.backend == written["backend"] in BACKENDS[1:] and written["key"] == cache.key
    bf16 = {"openvino-bf16"} if {"avx512_bf16", "amx_int8"} & set(simd_flags()) else set()
    assert set(written["seconds_per_call"]) == {"onnxruntime", "openvino"} | bf16 and written["max_dz_over_1pz"]["openvino"] < 0.002
    assert cache.path.stat().st_mode & 0o077 == 0
    # a cached choice is used as it is, without a probe
    other = "onnxruntime" if first.backend == "openvino" else "openvino"
    cache.path.write_text(json.dumps({**written, "backend": other}))
    assert Predictor(bundle, threads=1, backend="auto").backend == other
    # a choice for another key (CPU, versions, threads) or a damaged file is never used; the damaged one is replaced
    cache.path.write_text(json.dumps({**written, "key": "another-cpu", "backend": other}))
    assert json.loads(cache.path.read_text())["key"] == "another-cpu"
    Predictor(bundle, threads=1, backend="auto")
    assert json.loads(cache.path.read_text())["key"] == cache.key
    cache.path.write_text("{not json")
    Predictor(bundle, threads=1, backend="auto")
    assert json.loads(cache.path.read_text())["key"] == cache.key
    # staging files of killed probes are swept once an hour old, by their names only; nothing else is touched
    stale, fresh = cache.folder / f".backend-{cache.key}.123.0badf00d.tmp", cache.folder / f".backend-{cache.key}.124.0badf00e.tmp"
    mine = cache.folder / "backend-notes.txt.tmp"
    for path in (stale, fresh, mine):
        path.write_text("{")
    os.utime(stale, (1, 1))
    os.utime(mine, (1, 1))
    cache.save({"backend": "onnxruntime"})
    assert not stale.exists() and fresh.exists() and mine.exists()
    # a cache folder others can write is neither read nor written
    cache.path.unlink()
    cache.folder.chmod(0o777)
    try:
        Predictor(bundle, threads=1, backend="auto")
        assert not cache.path.exists()
    finally:
        cache.folder.chmod(0o700)


def test_gpu_providers_run_on_onnxruntime_only():
    with pytest.raises(ValueError, match="need backend 'onnxruntime'"):
        Predictor(providers="cuda", backend="openvino")


def test_an_openvino_predictor_travels_by_reference_and_its_threads_are_not_pinned(tmp_path, monkeypatch):
    """A Predictor on OpenVINO pickles (Dask, process pools) and rebuilds on the same engine; its compiled models leave
    threads unpinned (two pinned processes share a core) and nothing of OpenVINO's is written to the cache folder."""
    pytest.importorskip("openvino")
    import pickle

    monkeypatch.setenv("CAI_EDGE_OPTIMIZED_GRAPHS", str(tmp_path / "cache"))
    bundle = resolve_bundle("default")
    for backend in ("openvino", "openvino-bf16"):
        p = Predictor(bundle, threads=2, backend=backend)
        copy = pickle.loads(pickle.dumps(p))
        assert copy.backend == backend and copy.engine == p.engine and copy.providers == p.providers
        rng = np.random.default_rng(2)
        images, mags = rng.gamma(1.5, 0.2, (5, 5, 32, 32)).astype(np.float32), rng.uniform(16, 20, (5, 5)).astype(np.float32)
        assert np.array_equal(copy.predict_prepared(images, mags), p.predict_prepared(images, mags))
        for kind in ("batched", "single"):
            assert p.session._compiled_model(kind).get_property("ENABLE_CPU_PINNING") is False
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.blob"))


def test_auto_does_not_probe_where_its_choice_could_not_be_kept(tmp_path):
    """A cache folder this user cannot write (a read-only file system, a full quota): auto is ONNX Runtime at once,
    instead of a ~2.5 s probe in every process. Run without root's permission bypass (setpriv), as users run."""
    pytest.importorskip("openvino")
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's permission bypass")
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o500)
    cache.chmod(0o500)
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-dac_override,-dac_read_search"]
    env = {**os.environ, "CAI_EDGE_OPTIMIZED_GRAPHS": str(cache)}
    env.pop("CAI_EDGE_BACKEND", None)
    code = ("import time; t = time.perf_counter()\nfrom cai_edge.predictor import Predictor\n"
            "p = Predictor(threads=1)\nprint(p.backend, round(time.perf_counter() - t, 2))")
    proc = subprocess.run([*drop, sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    backend, seconds = proc.stdout.split()
    assert backend == "onnxruntime" and not list(cache.iterdir())


def test_calibration_is_fitted_on_the_reference_engine_whatever_the_default(tmp_path, monkeypatch):
    """`cai-edge calibrate` runs on ONNX Runtime even where the default engine is OpenVINO: the calibration written is
    the same as with ONNX Runtime as the default (OpenVINO's bf16 redshifts differ, so its quantiles would too)."""
    pytest.importorskip("openvino")
    from bundle_helpers import tiny_bundle
    from test_calibrate_plausibility import _labels

    bundle = tiny_bundle(tmp_path / "tiny")
    labels = _labels(tmp_path / "cal.npz", 300, seed=3)
    written = {}
    for backend in ("openvino-bf16", "onnxruntime"):
        monkeypatch.setenv("CAI_EDGE_BACKEND", backend)
        out = tmp_path / f"out-{backend}"
        assert main(["calibrate", str(bundle), "--data", str(labels), "--out", str(out), "--threads", "1"]) == 0
        written[backend] = json.loads((out / "manifest.json").read_text())["calibration"]
        written[backend].pop("fitted_on", None)
    assert written["openvino-bf16"] == written["onnxruntime"]
    monkeypatch.setenv("CAI_EDGE_BACKEND", "openvino-bf16")
    from cai_edge.bundle import open_bundle

    z_ov = Predictor(open_bundle(tmp_path / "out-onnxruntime"), threads=1).predict_prepared(*_first_galaxies(labels))
    z_ort = Predictor(open_bundle(tmp_path / "out-onnxruntime"), threads=1, backend="onnxruntime").predict_prepared(*_first_galaxies(labels))
    assert not np.array_equal(z_ov, z_ort)  # the engines do differ on this bundle: the equality above is the pin's doing


def _first_galaxies(path: Path, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["images"][:n].astype(np.float32), data["magnitudes"][:n].astype(np.float32)


def test_the_accuracy_gate_and_evaluate_run_on_the_reference_engine_whatever_the_default(tmp_path, monkeypatch, capsys):
    """The export/quantize gates' metrics and `cai-edge evaluate` are ONNX Runtime's wherever OpenVINO is the default:
    the same numbers with either default, though the engines' redshifts differ on this bundle."""
    pytest.importorskip("openvino")
    from bundle_helpers import tiny_bundle
    from test_calibrate_plausibility import _labels

    from cai_edge.bundle import open_bundle
    from cai_edge.quantize.gate import bundle_metrics

    bundle = tiny_bundle(tmp_path / "tiny")
    labels = _labels(tmp_path / "eval.npz", 200, seed=5)
    images, magnitudes = _first_galaxies(labels, 200)
    with np.load(labels) as data:
        z_spec = data["z_spec"].astype(np.float64)
    gate, evaluated = {}, {}
    for backend in ("openvino-bf16", "onnxruntime"):
        monkeypatch.setenv("CAI_EDGE_BACKEND", backend)
        gate[backend] = bundle_metrics(open_bundle(bundle), images, magnitudes, z_spec)
        assert main(["evaluate", "--bundle", str(bundle), "--data", str(labels)]) == 0
        evaluated[backend] = json.loads(capsys.readouterr().out)["metrics"]
    assert gate["openvino-bf16"] == gate["onnxruntime"] and gate["onnxruntime"]["backend"] == "onnxruntime"
    assert evaluated["openvino-bf16"] == evaluated["onnxruntime"]
    monkeypatch.setenv("CAI_EDGE_BACKEND", "openvino-bf16")
    z_ov = Predictor(open_bundle(bundle), threads=1).predict_prepared(images, magnitudes)
    z_ort = Predictor(open_bundle(bundle), threads=1, backend="onnxruntime").predict_prepared(images, magnitudes)
    assert not np.array_equal(z_ov, z_ort)  # so the equalities above are the pins' doing


def test_predict_loads_openvinos_model_while_it_reads_only_where_there_is_more_than_one_galaxy_to_predict(tmp_path, monkeypatch):
    """A folder's run starts importing OpenVINO's batch model on a helper thread (not a daemon) as it starts
    reading; a run with one galaxy to predict (one cutout, a one-row partition) does not, nor a resumed run
    with nothing left to do (cutouts, whose files it skips, or partitions, whose rows it skips). The helper's
    model gives the rows a run without it gives."""
    pytest.importorskip("openvino")
    from cai_edge.io.npz_partitions import write_npz_partition
    from cai_edge.models.datasets import rendered_split

    monkeypatch.setenv("CAI_EDGE_OPTIMIZED_GRAPHS", str(tmp_path / "cache"))
    folder, one, parts, one_row = (tmp_path / name for name in ("in", "one", "parts", "one-row"))
    for made in (folder, one, parts, one_row):
        made.mkdir()
    cutouts = sorted(EXAMPLES.glob("*.fits"))[:40]
    for c in cutouts:
        (folder / c.name).write_bytes(c.read_bytes())
    (one / cutouts[0].name).write_bytes(cutouts[0].read_bytes())
    data = rendered_split("validation", 0, 21)
    for k, (a, b) in enumerate(((0, 10), (10, 20))):
        write_npz_partition(parts / f"p{k}.npz", data.images[a:b], data.magnitudes[a:b], [f"g{i}" for i in range(a, b)],
                            np.full(b - a, 0.1))
    write_npz_partition(one_row / "p.npz", data.images[20:], data.magnitudes[20:], ["g20"], np.full(1, 0.1))
    daemons: set[str] = set()

    def predict(inputs: Path, out: Path, *more: str) -> set[str]:
        def run() -> None:
            assert main(["predict", str(inputs), "--backend", "openvino-bf16", "--out", str(out), "--quiet", *more]) == 0

        return threads_started_while(run, daemons)

    assert "cai-edge-model-load" in predict(folder, tmp_path / "folder.csv")
    assert "cai-edge-model-load" in predict(parts, tmp_path / "parts.csv")
    assert "cai-edge-model-load" not in predict(one, tmp_path / "one.csv")
    assert "cai-edge-model-load" not in predict(one_row, tmp_path / "one-row.csv")
    for inputs, out in ((folder, "folder.csv"), (parts, "parts.csv")):  # resumed with every galaxy done
        assert "cai-edge-model-load" not in predict(inputs, tmp_path / out, "--resume")
    assert "cai-edge-model-load" not in daemons  # the process waits for a helper at exit, never leaves it inside OpenVINO

    from cai_edge.openvino_session import OpenVINOSession

    bundle = resolve_bundle("default")
    image, magnitude = bundle.preprocessing.network_inputs(np.abs(np.random.default_rng(0).normal(0.2, 0.1, (64, 5, 32, 32))),
                                                          np.full((64, 5), 19.0))
    loaded = OpenVINOSession(bundle, 2, "openvino-bf16")
    threads_started_while(lambda: loaded.load_in_background(64))
    for thread in threading.enumerate():
        if thread.name == "cai-edge-model-load":
            thread.join()
    assert set(loaded._compiled) == {"batched"}  # loaded by the helper, before any call
    monkeypatch.setenv("CAI_EDGE_OPTIMIZED_GRAPHS", "off")  # compiled afresh: the same rows
    plain = OpenVINOSession(bundle, 2, "openvino-bf16")
    feed = {"image": image, "magnitude": magnitude}
    np.testing.assert_array_equal(loaded.run(["redshift"], feed)[0], plain.run(["redshift"], feed)[0])


def test_a_failed_background_load_fails_the_first_call_with_openvinos_error(monkeypatch):
    """The helper swallows its own failure; the first call loads the model again and raises what OpenVINO says."""
    pytest.importorskip("openvino")
    from cai_edge.openvino_session import OpenVINOSession

    monkeypatch.setenv("CAI_EDGE_OPTIMIZED_GRAPHS", "off")
    session = OpenVINOSession(resolve_bundle("default"), 2, "openvino")

    class Refusing:  # OpenVINO's Core, refusing every compile (as on a CPU it cannot compile for)
        def __init__(self, core):
            self.core = core

        def __getattr__(self, name):
            return getattr(self.core, name)

        def compile_model(self, *args, **kwargs):
            raise RuntimeError("Exception from src/inference: no kernel for this CPU")

    session._core = Refusing(session._core)
    raised: list = []
    monkeypatch.setattr(threading, "excepthook", raised.append)
    session.load_in_background(256)
    for thread in threading.enumerate():
        if thread.name == "cai-edge-model-load":
            thread.join()
    assert not session._compiled and not raised  # the helper's failure is not printed as a thread's crash
    with pytest.raises(RuntimeError, match="no kernel for this CPU"):
        session.run(["redshift"], {"image": np.zeros((4, 5, 32, 32), np.float32), "magnitude": np.zeros((4, 5), np.float32)})
