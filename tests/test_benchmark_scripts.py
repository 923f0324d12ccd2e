"""The benchmark scripts' measuring code runs (a broken import there once went unnoticed until a run)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _benchmark(name: str):
    """A script of benchmarks/ imported as a module (they import their neighbour ``common``)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def bench():
    return {name: _benchmark(name) for name in ("bundle_speed", "gemm_ceiling")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("bench") / "inputs.npz"
    np.savez(path, image=rng.standard_normal((4, 5, 32, 32), dtype=np.float32), magnitude=rng.standard_normal((4, 5), dtype=np.float32))
    return path


@pytest.mark.parametrize("kind", ["onnx", "default", "torch"])
def test_bundle_speed_cell_measures(bench, inputs, kind):
    from cai_edge.bundle.registry import resolve_bundle
    from cai_edge.models.reference import REFERENCE_WEIGHTS

    path = str(REFERENCE_WEIGHTS) if kind == "torch" else str(resolve_bundle("default").path)
    proc = subprocess.run(
        [sys.executable, "-c", bench["bundle_speed"]._CELL, kind, path, "4", "1", "0.05", str(inputs)],
        capture_output=True, text=True, check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["galaxies_per_s"] > 0 and result["latency_ms"] > 0 and result["peak_rss_mb"] > 50
    from cai_edge.backends import AUTO_CANDIDATES

    # "onnx" is ONNX Runtime pinned; "default" is what a default Predictor runs (auto, resolved)
    assert result["backend"] == {"torch": "torch", "onnx": "onnxruntime"}.get(kind, result["backend"])
    assert kind != "default" or result["backend"] in AUTO_CANDIDATES


def test_gemm_ceiling_finds_every_linear_and_float_op(bench):
    import torch

    from cai_edge.export.onnx_export import export_onnx
    from cai_edge.models import AstroMAE

    torch.manual_seed(0)
    proto = export_onnx(AstroMAE().eval())
    rng = np.random.default_rng(0)
    feed = {"image": rng.standard_normal((8, 5, 32, 32), dtype=np.float32), "magnitude": rng.standard_normal((8, 5), dtype=np.float32)}
    ceiling = bench["gemm_ceiling"]
    gemms = ceiling.weight_gemms(proto, feed)
    # 12 blocks × (qkv, proj, fc1, fc2) on 8 × 17 tokens, plus the per-galaxy heads.
    token_gemms = [(m, w.shape) for m, w in gemms if m == 8 * 17]
    assert len(token_gemms) == 48 and (8 * 17, (192, 576)) in token_gemms
    assert all(m in (8, 8 * 17) for m, _ in gemms) and len(gemms) == 60
    floats = ceiling.float_ops(proto, feed)
    assert sorted({op for op, _ in floats}) == ["Erf", "LayerNormalization", "Softmax"]
    assert ("Erf", (8, 17, 768)) in floats and ("Softmax", (8, 17, 17)) in floats  # one softmax per head
    for session, binding in (ceiling.gemm_session(gemms, int8=True), ceiling.float_session(floats), ceiling.inception_session(proto, feed)):
        session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        assert outputs and all(np.isfinite(v.numpy()).all() for v in outputs)
    branch = ceiling.inception_session(proto, feed)[1].get_outputs()
    assert len(branch) == 1 and branch[0].shape() == [8, 12, 4, 4]  # the last Inception block's concat


def test_speed_targets_judges_each_row_for_the_cpu_class(monkeypatch):
    speed = _benchmark("speed_targets")
    assert speed.cpu_class(["avx2", "avx512f", "avx512_vnni"]) == "avx512_vnni"
    assert speed.cpu_class(["avx2"]) == "avx2" and speed.cpu_class([]) == "other"
    measured = {"int8_vs_eager": 3.3, "fp32_vs_eager": 1.9, "int8_ort_vs_eager": 3.0, "fp32_ort_vs_eager": 1.8, "int8_ort_batch1_ms": 1.7,
                "int8_of_ceiling": 0.8, "fp32_of_ceiling": 0.7, "int8_model_bound": 0.73, "fp32_model_bound": None, "int8_batch1_ms": 1.5,
                "fits_vs_cai": 1.6, "npz_vs_cai": 2.4, "first_redshift_s": 0.3, "peak_rss_mb": 390.0, "peak_rss_ort_mb": 350.0,
                "default_vs_openvino": None, "default_vs_openvino_any_mode": None,
                "competing_over_quiet": 0.7}
    rows = {r["row"]: r for r in speed.judge(measured, "avx2")}
    assert set(rows) == set(speed.TARGETS) == set(measured)
    assert rows["int8_vs_eager"]["held"] is None  # shown, judged through the ceiling fractions
    assert rows["int8_ort_vs_eager"]["held"] is rows["int8_ort_batch1_ms"]["held"] is None  # ONNX Runtime pinned: shown, not judged
    assert rows["int8_of_ceiling"]["held"] and not rows["fp32_of_ceiling"]["held"]  # higher is better
    assert rows["int8_model_bound"]["held"] is rows["fp32_model_bound"]["held"] is None  # what the model allows: shown, not judged
    assert rows["int8_batch1_ms"]["held"] and not rows["first_redshift_s"]["held"]  # lower is better
    assert rows["default_vs_openvino"]["held"] is None and rows["competing_over_quiet"]["held"]  # no OpenVINO: no figure, not judged
    assert all(r["held"] is False for r in speed.judge(measured, "avx512_vnni") if r["row"] == "int8_batch1_ms")  # ≤ 1.0 ms on VNNI
    table = speed.markdown(list(rows.values()), "avx2", {"simd": ["avx2"]}, 20000, 3, "int8", "fp32")
    assert "CPU class: **avx2**" in table and "| int8 ÷ eager, as a fraction of the int8 GEMM ceiling | ≥ 0.75 | ≥ 0.75 | 0.80 | yes |" in table
    # a range on both sides of the target (over rounds, or against the CAI path's run before and after) is said so
    nan = float("nan")
    ranged = {**measured, "npz_vs_cai": 4.2, "int8_of_ceiling": nan,
              "ranges": {"npz_vs_cai": [3.73, 4.67], "fits_vs_cai": [1.5, 1.7], "int8_batch1_ms": [0.9, 1.6],
                         "fp32_of_ceiling": [nan, 0.9, 0.6], "competing_over_quiet": []}}
    judged = {r["row"]: r for r in speed.judge(ranged, "avx512_vnni")}
    assert judged["npz_vs_cai"]["held"] and judged["npz_vs_cai"]["straddles"]
    assert not judged["fits_vs_cai"]["held"] and not judged["fits_vs_cai"]["straddles"]  # its whole range is under 3.0
    assert not judged["int8_batch1_ms"]["held"] and judged["int8_batch1_ms"]["straddles"]  # lower is better: 0.9 meets 1.0, 1.6 not
    assert judged["fp32_of_ceiling"]["straddles"] and judged["fp32_of_ceiling"]["range"] == [0.9, 0.6]  # NaN dropped, not min/max's
    assert not judged["peak_rss_mb"]["straddles"] and not judged["competing_over_quiet"]["straddles"]  # no range: its one figure
    assert judged["int8_of_ceiling"]["value"] is None and judged["int8_of_ceiling"]["held"] is None  # not measured: not judged
    # predict rows: each run against the mean of the CAI runs either side of it, not against a run far away in time
    assert speed.paired_ratios([40.0, 44.0, 48.0], [10.0, 12.0]) == [4.2, 3.8333333333333335]
    with pytest.raises(ValueError, match="2 runs need 3 CAI runs"):
        speed.paired_ratios([40.0, 44.0], [10.0, 12.0])
    # the order of the runs (CAI, then per round both kinds, alternating which goes first, then CAI) and the pairing,
    # with the benchmark's process runner replaced by one that records what it was asked to run
    order, seconds = [], iter([40.0, 10.0, 14.0, 44.0, 15.0, 11.0, 48.0, 12.0, 16.0, 52.0, 1.0, 1.0])
    inputs = {"pt": "data.pt", "npz": "npz-dir", "fits": "fits-dir", "npz_x5": "x5-dir"}

    def recorded(code, *args):
        kind = "cai" if code == speed._CAI_PATH else next(k for k, v in inputs.items() if v == args[0])
        order.append(kind)
        return {"seconds": next(seconds), "peak_rss_mb": 100.0}

    monkeypatch.setattr(speed, "run_json", recorded)
    result = speed.predict_rows(inputs, "weights.pt", 20000, "default", 3)
    assert order == ["cai", "npz", "fits", "cai", "fits", "npz", "cai", "npz", "fits", "cai", "npz_x5", "npz_x5"]
    assert result["predict_ranges"]["npz_vs_cai"] == sorted([42 / 10, 46 / 11, 50 / 12])
    assert result["predict_ranges"]["fits_vs_cai"] == sorted([42 / 14, 46 / 15, 50 / 16])
    assert result["npz_vs_cai"] == 46 / 11 and len(result["predict_runs"]["cai_path"]) == 4
    with pytest.raises(speed.argparse.ArgumentTypeError, match="must be 1 or more"):  # --predict-rounds 0: refused at once
        speed.at_least_one("0")
    table = speed.markdown(list(judged.values()), "avx512_vnni", {"simd": ["avx512_vnni"]}, 20000, 3, "int8", "fp32")
    assert "| 4.20× | undecided: range 3.73×–4.67× on both sides (yes on the figure shown) |" in table
    assert "| 1.50 ms | undecided: range 0.90 ms–1.60 ms on both sides (no on the figure shown) |" in table


def test_gpu_providers_reports_what_this_onnxruntime_lacks_and_writes_its_table(tmp_path):
    """Runs as on a GPU machine; here, with the CPU build, every GPU row must say why it has no figures."""
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, image=rng.gamma(1.5, 0.2, (8, 5, 32, 32)).astype(np.float32), magnitude=rng.uniform(16, 20, (8, 5)).astype(np.float32))
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_providers.py"), "--inputs", str(inputs), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "gpu_providers.json").read_text())
    assert result["available_providers"] == ort.get_available_providers()
    bundles = {r["bundle"] for r in result["rows"]}
    assert bundles == {"int8 (shipped default)", "fp32 (exported here)", "fp16 (converted here)"}
    for row in result["rows"]:
        if row["provider"] in result["available_providers"]:
            assert row["max_dz_over_1pz_vs_cpu"] < 0.01 and row["nonfinite"] == 0
        else:
            assert row["error"] == "not in this onnxruntime build"
    assert "| fp16 (converted here) | CUDAExecutionProvider |" in (tmp_path / "out" / "gpu_providers.md").read_text()


def test_fits_folders_measuring_code_runs(tmp_path):
    """The FITS-folder benchmark's pieces: hard-link folders, a cut-off output that --resume accepts, the polled run."""
    import shutil

    folders = _benchmark("fits_folders")
    examples = tmp_path / "rice"
    examples.mkdir()
    for path in sorted((BENCHMARKS.parent / "examples").glob("*.fits"))[:12]:
        shutil.copy(path, examples / path.name)
    links = folders._links(tmp_path, examples, 30)
    assert len(list(links.glob("*.fits"))) == 30 and len({p.stat().st_ino for p in links.glob("*.fits")}) == 12
    out = tmp_path / "out"
    out.mkdir()
    run = folders.first_rows_after([str(links), "--out", str(out / "fresh.csv"), "--batch-size", "4"], out / "fresh.csv")
    assert run["exit"] == 0 and run["seconds"] > 0 and run["peak_rss_mb"] > 50
    assert run["first_rows_s"] is None or 0 < run["first_rows_s"] < run["seconds"] + 1
    folders.keep_first_rows(out / "fresh.csv", out / "cut.csv", 10)
    resumed = folders.predict(str(links), "--out", str(out / "cut.csv"), "--resume")
    assert resumed["exit"] == 0
    from cai_edge.results.files import read_results

    table = read_results(out / "cut.csv")
    assert len(table) == 30 and len(set(table["id"])) == 30 and set(table["status"]) == {"ok"}


def test_image_shifts_measuring_code_runs():
    """The image-shift benchmark renders, shifts and measures through the runtime's own path."""
    pytest.importorskip("galsim")
    bench = _benchmark("image_shifts")
    from cai_edge.models.image_shifts import sky_noise
    from cai_edge.predictor import Predictor
    from cai_edge.preprocessing import center_crop

    cat, stamps = bench.render_stamps(12, 7)
    assert stamps.shape == (12, 5, 64, 64)
    p = Predictor()
    plain = bench.measure(p, cat, np.ascontiguousarray(center_crop(stamps)))
    noisy = bench.measure(p, cat, np.ascontiguousarray(center_crop(sky_noise(3.0)(stamps, np.random.default_rng(0)))))
    for r in (plain, noisy):
        assert r["galaxies"] == 12 and r["predicted"] == 12 and 0 <= r["flagged"] <= 1
        assert r["unflagged"] == 0 or (0 <= r["coverage_68"] <= r["coverage_95"] <= 1 and r["sigma_nmad"] >= 0)
        assert r["without_check"]["flagged"] <= r["flagged"] and bench.within_targets(r) is None  # < 100 rows unflagged
        assert 0 <= r["image_flagged"] <= r["flagged"] and r["without_check"]["image_flagged"] == 0
        assert r["unflagged"] == 0 or r["sigma_nmad_error"] >= 0  # bootstrap spread of σ_NMAD
    assert noisy["flag_counts"].get("image_noise", 0) >= 11  # sky noise x3: the shipped bundle's image check sees it
    crops = np.ascontiguousarray(center_crop(stamps))
    rates = bench.alternatives(crops, cat.magnitudes, np.ascontiguousarray(crops[..., ::-1]), cat.magnitudes)
    assert set(rates) == {"asymmetry about the crop centre", "concentration vs r"} and all(0 <= v <= 1 for v in rates.values())


def test_mae_score_pretrains_scores_and_reports_each_set(tmp_path, monkeypatch):
    """benchmarks/mae_score.py end to end on a tiny run (1 epoch, 300 training galaxies, two sets of 64)."""
    pytest.importorskip("torch")
    pytest.importorskip("galsim")
    bench = _benchmark("mae_score")
    common = sys.modules["common"]
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["mae_score.py", "--epochs", "1", "--train", "300", "--validation", "200", "--n", "64",
                                      "--sets", "as rendered,every plane constant (the galaxy's flux)"])
    assert bench.main() == 0
    result = json.loads((tmp_path / "mae_score.json").read_text())
    rows = result["sets"]
    assert set(rows) == {"as rendered", "every plane constant (the galaxy's flux)"} and result["threshold"] > 0
    assert rows["every plane constant (the galaxy's flux)"]["image_checks_flag"] == 1.0  # the shipped checks see it
    assert all(0 <= r["mae_flags"] <= 1 for r in rows.values()) and rows["as rendered"]["usable_as_shipped"] > 50
    assert "SIMULATED" in (tmp_path / "mae_score.md").read_text()


def test_trust_overhead_measures_the_image_check_against_the_same_bundle_without_it(tmp_path, monkeypatch):
    """benchmarks/trust_overhead.py: three paths, paired rounds; its results go where it is told (here tmp_path)."""
    pytest.importorskip("galsim")
    bench = _benchmark("trust_overhead")
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["trust_overhead.py", "--rounds", "2", "--galaxies", "64", "--threads", "1"])
    assert bench.main() == 0
    result = json.loads((tmp_path / "trust_overhead.json").read_text())
    assert set(result["galaxies_per_s"]) == {"model only", "model + uncertainty + flags", "same, without the image check"}
    assert all(v > 0 for v in result["galaxies_per_s"].values()) and result["galaxies"] == 64
    assert 0 < result["throughput_kept_with_image_check"]["median"] < 2
    # with and without the check share one session (two sessions in turn evict each other's weights from the cache)
    from cai_edge.predictor import Predictor

    predictor = Predictor("default", threads=1)
    without = bench._same_session(predictor, bench._without_image_domain(predictor.bundle, tmp_path / "without"))
    assert without.session is predictor.session and without.bundle.image_domain is None
    assert predictor.bundle.image_domain is not None and without.bundle.calibration == predictor.bundle.calibration
    from bundle_helpers import tiny_bundle

    with pytest.raises(ValueError, match="models differ"):
        bench._same_session(predictor, tiny_bundle(tmp_path / "other"))


def test_scale_out_benchmark_runs_plain_slurm_and_dask_tiny(tmp_path):
    """benchmarks/scale_out.py end to end on 300 galaxies: a plain run, a Slurm array + merge on the test Slurm,
    Dask local:2; every engine's merged output holds every galaxy once. (Its name has `slurm`: it needs one.)"""
    pytest.importorskip("distributed")
    sys.path.insert(0, str(Path(__file__).parent))
    from result_helpers import write_partitions
    from slurm_cluster import SlurmUnavailable, slurm_cluster

    try:
        with slurm_cluster(tmp_path / "probe"):
            pass
    except SlurmUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI: Slurm must run: {exc}")
        pytest.skip(f"no Slurm here: {exc}")
    write_partitions(tmp_path / "source", 3, 64)
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "scale_out.py"), "--n", "300", "--source", str(tmp_path / "source"),
                           "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "results" / "scale_out.json").read_text())
    assert result["galaxies"] == 300 and result["dask"]["rows"] == result["merge_alone"]["rows"] == 300
    assert len(result["slurm"]["task_peak_rss_mb"]) == len(result["dask"]["worker_peak_rss_mb"]) == 2
    assert all(v > 50 for v in result["slurm"]["task_peak_rss_mb"] + result["dask"]["worker_peak_rss_mb"])
    assert "300 rows in, 300 rows out" in result["slurm"]["merge_log"]
    assert set(result["overhead"]) == {"slurm", "dask"} and "| Slurm array of 2 + merge job |" in (tmp_path / "results" / "scale_out.md").read_text()


def test_profile_ops_groups_the_int8_default_by_op_and_region():
    """benchmarks/profile_ops.py: ONNX Runtime's profile of the shipped int8 default, every kernel in one region."""
    bench = _benchmark("profile_ops")
    from cai_edge.bundle.registry import resolve_bundle

    rng = np.random.default_rng(0)
    images, mags = rng.gamma(1.5, 0.2, (4, 5, 32, 32)).astype(np.float32), rng.uniform(16, 20, (4, 5)).astype(np.float32)
    result = bench.profile_bundle(resolve_bundle("default"), images, mags, batch=4, threads=1, runs=2)
    regions = result["by_region_ms"]
    assert set(regions) == set(bench.REGIONS) and abs(sum(regions.values()) - result["kernel_ms"]) < 1e-6
    assert abs(sum(result["by_op_ms"].values()) - result["kernel_ms"]) < 1e-6 and len(result["call_ms"]) == 2
    calls = result["calls_per_run"]
    assert calls["Softmax"] == 36 and calls["QuantizeLinear"] > 0  # 12 blocks × 3 heads; an int8 graph has Q/DQ
    assert regions["Q/DQ"] > 0 and regions["weight GEMMs"] > 0 and regions["attention MatMul (per head)"] > 0
    assert regions["other"] < 0.05 * result["kernel_ms"] and result["preprocessing_ms"] > 0
    assert bench.region("MatMul", "/blocks.3/attn/MatMul_1_kernel_time") == "attention MatMul (per head)"
    assert bench.region("MatMul", "/blocks.3/attn/qkv/MatMul_kernel_time") == "weight GEMMs"
    table = bench.markdown([result])
    assert "| Q/DQ | " in table and "| preprocessing (numpy) | " in table and "astromae-sdss-int8 b4" in table


def test_thread_spinning_times_each_policy_quiet_and_competing_and_kills_its_competitor():
    """benchmarks/thread_spinning.py on 4 galaxies: every policy in both conditions; the busy process is gone after."""
    bench = _benchmark("thread_spinning")
    from cai_edge.bundle.registry import resolve_bundle

    with bench.Competitor() as competitor:
        assert competitor.proc.poll() is None  # running
    assert competitor.proc.poll() is not None  # killed and reaped
    rng = np.random.default_rng(0)
    images, mags = rng.standard_normal((4, 5, 32, 32), dtype=np.float32), rng.standard_normal((4, 5), dtype=np.float32)
    policies = {name: bench.POLICIES[name] for name in ("spinning, static split (ORT default)", "no spinning, dynamic blocks")}
    runs = bench.run(resolve_bundle("default").model_bytes, images, mags, rounds=1, seconds=0.02, policies=policies)
    rows = bench.summary(runs)
    assert [r["policy"] for r in rows] == list(policies) and rows[0]["quiet_vs_ort_default"] == 1.0
    assert all(r["quiet_per_s"] > 0 and r["competing_per_s"] > 0 and r["quiet_b1_ms"] > 0 for r in rows)
    assert "| no spinning, dynamic blocks |" in bench.markdown(rows)


def test_engines_compares_the_default_predictor_with_openvino_in_one_process(tmp_path):
    """benchmarks/engines.py on 4 galaxies: every engine timed; without OpenVINO only the Predictor rows."""
    bench = _benchmark("engines")
    speed = _benchmark("speed_targets")
    from cai_edge.bundle.registry import resolve_bundle

    rng = np.random.default_rng(0)
    data = tmp_path / "inputs.npz"
    np.savez(data, crops=rng.gamma(1.5, 0.2, (256, 5, 32, 32)).astype(np.float32), mags=rng.uniform(16, 20, (256, 5)).astype(np.float32))
    result = bench.compare_engines({"int8": str(resolve_bundle("default").path)}, str(data), rounds=1, seconds=0.01, threads=1)
    r = result["bundles"]["int8"]
    expected = {"default Predictor", "Predictor(backend='onnxruntime')"} | (
        {f"OpenVINO {p} hint, {mode}" for p in ("f32", "bf16") for mode in ("latency", "throughput")}
        | {"Predictor(backend='openvino')", "Predictor(backend='openvino-bf16')"}
        if result["openvino_installed"] else set())
    assert set(r["median_b256_per_s"]) == set(r["median_b1_ms"]) == expected and all(v > 0 for v in r["median_b256_per_s"].values())
    assert 0 < result["competing_over_quiet"] < 3 and len(result["competing_per_s"]) == 1
    assert ("default_over_best_openvino" in r) == result["openvino_installed"]
    assert not result["openvino_installed"] or (r["best_openvino"].endswith("latency") and r["best_openvino_any_mode"] in expected
                                                and r["default_over_best_openvino_any_mode"] <= r["default_over_best_openvino"])
    assert "default Predictor (→ " in speed.engines_markdown(result) or not result["openvino_installed"]


def test_graph_variants_rewrites_every_block_s_attention_into_one_fused_op_with_the_same_redshifts():
    """benchmarks/graph_variants.py: the per-head attention of each block becomes one MultiHeadAttention node."""
    import onnx
    import onnxruntime as ort

    from cai_edge.predictor import Predictor
    from cai_edge.session import _session_options

    forms = _benchmark("graph_variants")
    bundle = Predictor("default").bundle
    shipped = onnx.load_from_string(bundle.files["model.onnx"])
    fused, blocks = forms.fuse_attention(shipped)
    assert blocks == 12
    ops = [n.op_type for n in fused.graph.node]
    assert ops.count("MultiHeadAttention") == 12 and ops.count("Softmax") == 0
    rng = np.random.default_rng(2)
    image, magnitude = bundle.preprocessing.network_inputs(rng.gamma(1.5, 0.2, (16, 5, 32, 32)).astype(np.float32),
                                                           rng.uniform(16.0, 20.0, (16, 5)).astype(np.float32))
    feed = {"image": image, "magnitude": magnitude}
    z = [ort.InferenceSession(g.SerializeToString(), _session_options(1), providers=["CPUExecutionProvider"]).run(["redshift"], feed)[0]
         for g in (shipped, fused)]
    assert np.max(np.abs(z[0] - z[1])) < 2e-3 and not np.array_equal(z[0], np.zeros_like(z[0]))


def test_backend_gate_reports_test_split_figures_with_bootstrap_errors_per_backend():
    """benchmarks/backend_gate.py's test-split rows on 300 galaxies: σ_NMAD and both coverages with their bootstrap
    errors, each backend judged against the same bundle on ONNX Runtime (which is unchanged against itself)."""
    gate = _benchmark("backend_gate")
    from cai_edge.bundle.registry import resolve_bundle
    from cai_edge.models.datasets import load_labelled

    try:
        import openvino  # noqa: F401
        backends = ("onnxruntime", "openvino")
    except ImportError:
        backends = ("onnxruntime",)
    data = load_labelled("sdss:test:300")
    rows = gate.test_split_rows([resolve_bundle("default")], data.images, data.magnitudes, data.z_spec, backends)
    assert [r["backend"] for r in rows] == list(backends)
    for r in rows:
        f = r["figures"]
        assert set(f) == {"sigma_nmad", "coverage_68", "coverage_95"}
        assert 0.005 < f["sigma_nmad"]["value"] < 0.05 and 0 < f["sigma_nmad"]["bootstrap_error"] < 0.01
        assert 0.5 < f["coverage_68"]["value"] < f["coverage_95"]["value"] <= 1 and 0 < f["coverage_68"]["bootstrap_error"] < 0.1
    assert all(rows[0]["unchanged"].values()) and rows[0]["max_abs_dz_over_1pz"] == 0
    assert all(d["value"] == 0 and d["bootstrap_error"] == 0 for d in rows[0]["paired_difference"].values())
    assert all(0 < r["max_abs_dz_over_1pz"] < 0.01 for r in rows[1:])
    table = gate.test_markdown(rows, data.description)
    assert table.count("| astromae-sdss-int8 |") == len(backends) and "bootstrap" in table


def test_openvino_profile_puts_every_node_of_the_int8_default_in_a_region():
    """benchmarks/openvino_profile.py: OpenVINO's own profile of the shipped int8 default, compiled as cai-edge compiles it."""
    pytest.importorskip("openvino")
    bench = _benchmark("openvino_profile")
    from cai_edge.bundle.registry import resolve_bundle

    rng = np.random.default_rng(0)
    images, mags = rng.gamma(1.5, 0.2, (4, 5, 32, 32)).astype(np.float32), rng.uniform(16, 20, (4, 5)).astype(np.float32)
    profiles = [bench.profile_bundle(resolve_bundle("default"), images, mags, batch, 2, 2, "openvino-bf16") for batch in (4, 1)]
    for result in profiles:
        regions = result["by_region_ms"]
        assert set(regions) == set(bench.REGIONS) and abs(sum(regions.values()) - result["node_ms"]) < 1e-6
        assert abs(sum(result["by_precision_ms"].values()) - result["node_ms"]) < 1e-6 and len(result["call_ms"]) == 2
        assert regions["int8 GEMMs"] > 0 and regions["convolutions + pools"] > 0 and "i8" in result["by_precision_ms"]
        assert regions["other"] < 0.1 * result["node_ms"]
        parts = result["gemms_by_part_ms"]  # the GEMMs split by rows a galaxy: the ViT blocks' and the dense layers'
        assert set(parts) == {"ViT blocks (17 rows a galaxy)", "dense layers (1 row a galaxy)"} and min(parts.values()) > 0
        assert sum(parts.values()) == pytest.approx(regions["int8 GEMMs"] + regions["other GEMMs"])
    assert profiles[0]["mode"] == "batched" and profiles[0]["requests"] == 2 and profiles[1]["mode"] == "single"
    assert bench.region("FullyConnected", "brgemm_avx512_I8", "/blocks.3/mlp/fc1/MatMul") == "int8 GEMMs"
    assert bench.region("Subgraph", "jit_avx512_bf16", "/blocks.3/attn/Concat_output_0_QuantizeLinear_1") == "attention (fused per-head subgraphs)"
    table = bench.markdown(profiles)
    assert "| int8 GEMMs | " in table and "astromae-sdss-int8 b4 (openvino-bf16)" in table and "precision" in table
    # speed_targets' least time from this profile: the GEMMs at the faster kernel plus the model's convolutions, attention, LayerNorm
    speed = _benchmark("speed_targets")
    work = sum(profiles[0]["by_region_ms"][r] for r in speed.MODEL_WORK)
    assert 0 < work < profiles[0]["node_ms"]
    gemms = sum(profiles[0]["by_region_ms"][r] for r in speed.GEMM_REGIONS)
    for ceiling_ms in (1.0, 1000.0):  # the GEMMs at the faster of the ceiling's kernels and the engine's own
        least = speed.least_time_ms(ceiling_ms, profiles[0], 20.0)
        assert least == pytest.approx(min(ceiling_ms, 20.0 * gemms / profiles[0]["node_ms"]) + 20.0 * work / profiles[0]["node_ms"])
    assert speed.least_time_ms(1.0, profiles[0], 20.0) < speed.least_time_ms(1000.0, profiles[0], 20.0) < 20.0


def test_speed_targets_bounds_each_ceiling_row_from_the_default_engines_own_profile():
    """speed_targets.model_bounds on the shipped int8 default: the bound is the row scaled by the measured time over
    the least time its profile allows (so it is never below the row while that least time is under the measured
    one); a bundle the default engine runs on ONNX Runtime gets none, and no profile."""
    pytest.importorskip("openvino")
    speed = _benchmark("speed_targets")
    from cai_edge.bundle.registry import resolve_bundle
    from cai_edge.models.datasets import rendered_split

    data = rendered_split("validation", 0, speed.BATCH)
    measured = {"backends": {"int8": "openvino-bf16", "fp32": "onnxruntime"}, "int8_of_ceiling": 0.6, "fp32_of_ceiling": 0.7,
                "runs": {"int8": [{"galaxies_per_s": 2000.0}, {"galaxies_per_s": 1800.0}, {"galaxies_per_s": 2200.0}]}}
    bundle = resolve_bundle("default")
    bounds, profiles = speed.model_bounds({"int8": bundle, "fp32": bundle}, data, measured, {"int8": 60.0, "fp32": 250.0})
    assert bounds["fp32"] is None and set(profiles) == {"int8"} and profiles["int8"]["backend"] == "openvino-bf16"
    per_batch = 1000 * speed.BATCH / 2000.0
    least = speed.least_time_ms(60.0, profiles["int8"], per_batch)
    assert bounds["int8"] == pytest.approx(0.6 * per_batch / least) and 0 < least < per_batch and bounds["int8"] > 0.6


def test_attention_forms_exports_the_batched_attention_and_times_it_on_every_engine(tmp_path, monkeypatch):
    """benchmarks/attention_forms.py, as documented, on one round: the batched export takes effect (no per-head Split),
    gives the per-head redshifts on each engine, and each is timed."""
    pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    bench = _benchmark("attention_forms")
    common = sys.modules["common"]
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    result = bench.main(["--forms", "batched", "--rounds", "1", "--seconds", "0.01", "--work", str(tmp_path / "work")])
    from cai_edge.backends import runnable_backends

    engines = runnable_backends()
    assert set(result["rows"]) == {f"{form}|{engine}" for form in ("per-head", "batched") for engine in engines}
    for row in result["rows"].values():
        assert row["per_s"] > 0 and row["batch1_ms"] > 0 and row["max_abs_dz"] < 1e-3
    ops = {form: {n.op_type for n in onnx.load(tmp_path / "work" / f"fp32-{form}" / "model.onnx").graph.node} for form in ("per-head", "batched")}
    assert "Split" in ops["per-head"] and "Split" not in ops["batched"]
    assert "| batched | onnxruntime |" in (tmp_path / "attention_forms.md").read_text()


def test_graph_rewrites_fold_the_attention_scale_bit_for_bit_and_time_each_rewrite_on_every_engine(tmp_path, monkeypatch):
    """benchmarks/graph_rewrites.py: the folded attention scale gives the shipped redshifts bit for bit on ONNX Runtime
    (a power of two), pooling before the first 1×1 conv the same function to float rounding; a rewrite that finds nothing
    to change fails; the documented command runs end to end on one round."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    bench = _benchmark("graph_rewrites")
    from cai_edge.bundle.registry import resolve_bundle
    from cai_edge.models.datasets import rendered_split

    bundle = resolve_bundle("default")
    data = rendered_split("validation", 0, 16)
    image, magnitude = bundle.preprocessing.network_inputs(data.images, data.magnitudes)
    feed = {"image": image, "magnitude": magnitude}

    def z(model: bytes) -> np.ndarray:
        return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(["redshift"], feed)[0]

    shipped = z(bundle.files["model.onnx"])
    folded, counts = bench.rewritten(bundle.files["model.onnx"], "attention scale folded")
    assert counts == {"fold_attention_scale": 12}
    proto = onnx.load_from_string(folded)
    assert not [n for n in proto.graph.node if n.op_type == "Mul" and "/attn/Mul" in n.name]
    assert np.array_equal(z(folded), shipped)
    with pytest.raises(ValueError, match="Mul"):  # folded twice: no scale left on the scores
        bench.rewritten(folded, "attention scale folded")
    pooled, counts = bench.rewritten(bundle.files["model.onnx"], "pool before first conv")
    assert counts == {"pool_before_first_conv": 1}
    first_pool = next(n for n in onnx.load_from_string(pooled).graph.node if n.op_type == "AveragePool")
    assert list(first_pool.input) == ["image"] and np.max(np.abs(z(pooled) - shipped)) < 1e-3
    bare, counts = bench.rewritten(bundle.files["model.onnx"], "LayerNorm affine removed")
    assert counts == {"remove_layernorm_affine": 25} and np.max(np.abs(z(bare) - shipped)) > 0

    common = sys.modules["common"]
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    result = bench.main(["--rewrites", "attention scale folded", "--rounds", "1", "--seconds", "0.01", "--galaxies", "4",
                         "--work", str(tmp_path / "work")])
    rows = result["bundles"][bundle.name]["rows"]
    from cai_edge.backends import runnable_backends

    assert {r["engine"] for r in rows.values()} == set(runnable_backends())
    assert all(r["max_abs_dz"] == 0 for r in rows.values() if r["form"] == "attention scale folded")
    assert "| attention scale folded | onnxruntime |" in (tmp_path / "graph_rewrites.md").read_text()


def _attention_graph(*, projection="MatMul", bias_shape=(24,), axis=-1, scale=0.5, q_also_output=False):
    """A two-head attention in the shipped per-head form (qkv projection + bias, Split into q0 q1 k0 k1 v0 v1,
    per head MatMul(q, kᵀ) → Mul(scale) → Softmax → MatMul(·, v), Concat), fp32, 17 tokens of 8."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    x_shape = [17, 8] if projection == "Gemm" else [1, 17, 8]
    inits = [numpy_helper.from_array(rng.standard_normal((8, 24)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(bias_shape).astype(np.float32), "b"),
             numpy_helper.from_array(np.array([4] * 6, np.int64), "sizes"),
             numpy_helper.from_array(np.array(scale, np.float32), "scale")]
    nodes = [helper.make_node(projection, ["x", "w"], ["p"], name="/blocks.0/attn/qkv/MatMul"),
             helper.make_node("Add", ["b", "p"], ["qkv"], name="/blocks.0/attn/qkv/Add"),
             helper.make_node("Split", ["qkv", "sizes"], [f"s{i}" for i in range(6)], name="/blocks.0/attn/Split", axis=axis)]
    perm = [1, 0] if projection == "Gemm" else [0, 2, 1]
    for h in range(2):
        nodes += [helper.make_node("Transpose", [f"s{2 + h}"], [f"kt{h}"], perm=perm),
                  helper.make_node("MatMul", [f"s{h}", f"kt{h}"], [f"sc{h}"]),
                  helper.make_node("Mul", [f"sc{h}", "scale"], [f"scs{h}"], name=f"/blocks.0/attn/Mul_{h}"),
                  helper.make_node("Softmax", [f"scs{h}"], [f"a{h}"], axis=-1),
                  helper.make_node("MatMul", [f"a{h}", f"s{4 + h}"], [f"o{h}"])]
    nodes.append(helper.make_node("Concat", ["o0", "o1"], ["y"], axis=-1))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*x_shape[:-1], 8])]
    if q_also_output:
        outputs.append(helper.make_tensor_value_info("s0", TensorProto.FLOAT, [*x_shape[:-1], 4]))
    graph = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), x_shape


def test_graph_rewrites_fold_fp32_weights_exactly_and_refuse_every_graph_they_would_change():
    """The fp32 branch of the fold (the weights' q columns) is bit for bit; a Gemm, a bias of another shape, a split
    on another axis, a q used elsewhere or a scale that is not a power of two are refused with the graph untouched."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    bench = _benchmark("graph_rewrites")

    def run(model, x_shape):
        x = np.random.default_rng(2).standard_normal(x_shape).astype(np.float32)
        session = ort.InferenceSession(model if isinstance(model, bytes) else model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(["y"], {"x": x})[0]

    model, shape = _attention_graph()
    folded, counts = bench.rewritten(model.SerializeToString(), "attention scale folded")
    assert counts == {"fold_attention_scale": 1} and np.array_equal(run(folded, shape), run(model, shape))
    assert not [n for n in onnx.load_from_string(folded).graph.node if n.op_type == "Mul"]
    for kwargs, why in [({"projection": "Gemm"}, "not a MatMul"), ({"bias_shape": (1, 24)}, "not a 24-vector"),
                        ({"axis": 1}, "axis 1"), ({"q_also_output": True}, "alone"), ({"scale": 0.3}, "power of two")]:
        model, _ = _attention_graph(**kwargs)
        before = model.SerializeToString()
        with pytest.raises(ValueError, match=why):
            bench.fold_attention_scale(model)
        assert model.SerializeToString() == before  # refused before anything changed


def test_graph_rewrites_move_every_unpadded_pool_before_its_pointwise_conv_and_nothing_else():
    """Two Conv 1×1 → AveragePool pairs in one graph are both swapped, in topological order, with the same outputs to
    float rounding; a padded pool, or a conv whose output is also a graph output, is left alone."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    bench = _benchmark("graph_rewrites")
    rng = np.random.default_rng(3)

    def graph(pads=(0, 0, 0, 0), conv_output_too=False):
        inits = [numpy_helper.from_array(rng.standard_normal((6, 5, 1, 1)).astype(np.float32), "w1"),
                 numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b1"),
                 numpy_helper.from_array(rng.standard_normal((4, 6, 1, 1)).astype(np.float32), "w2")]
        nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[1, 1]),
                 helper.make_node("AveragePool", ["c1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], pads=list(pads)),
                 helper.make_node("Conv", ["p1", "w2"], ["c2"]),  # kernel_shape taken from the weights
                 helper.make_node("AveragePool", ["c2"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 4, 4])]
        if conv_output_too:
            outputs.append(helper.make_tensor_value_info("c1", TensorProto.FLOAT, [2, 6, 16, 16]))
        return helper.make_model(helper.make_graph(nodes, "pools", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 16, 16])],
                                                   outputs, inits), opset_imports=[helper.make_opsetid("", 17)])

    x = rng.standard_normal((2, 5, 16, 16)).astype(np.float32)

    def run(model):
        data = model if isinstance(model, bytes) else model.SerializeToString()
        return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]

    model = graph()
    swapped, counts = bench.rewritten(model.SerializeToString(), "pool before first conv")
    assert counts == {"pool_before_first_conv": 2}
    assert [n.op_type for n in onnx.load_from_string(swapped).graph.node] == ["AveragePool", "Conv", "AveragePool", "Conv"]
    assert np.allclose(run(swapped), run(model), rtol=1e-5, atol=1e-5)
    assert bench.pool_before_first_conv(graph(pads=(1, 1, 1, 1))) == 1  # only the unpadded second pair
    assert bench.pool_before_first_conv(graph(conv_output_too=True)) == 1


def test_openvino_profile_sorts_each_gemm_by_the_rows_it_has_a_galaxy():
    bench = _benchmark("openvino_profile")
    vit, dense = "ViT blocks (17 rows a galaxy)", "dense layers (1 row a galaxy)"
    assert bench.gemm_part("/blocks.11/attn/qkv/MatMul") == vit and bench.gemm_part("/blocks.0/mlp/fc2/MatMul") == vit
    for name in ("/vit_block/vit_block.2/Gemm/WithoutBiases/DequantizationMultiply", "/head/Gemm/WithoutBiases",
                 "/inception_model/magnitude_block/magnitude_block.4/Gemm/WithoutBiases", "/concat_block/concat_block.0/Gemm/WithoutBiases",
                 "/inception_model/vis_inception/vis_inception.12/Gemm/WithoutBiases"):
        assert bench.gemm_part(name) == dense, name
