"""Device-tier comparison: the cost model by hand, the report schema, and a small end-to-end run."""

import json
import math

import numpy as np
import pytest

from bundle_helpers import tiny_bundle
from cai_edge.cli import main
from cai_edge.compare.tiers import parse_tiers
from cai_edge.errors import UsageError
from cai_edge.io.npz_partitions import write_npz_partition
from cai_edge.pricing import billed_ms, lambda_cost_usd, lambda_threads, lambda_vcpus, usd_per_million_galaxies

ROW_KEYS = {"variant", "tier", "emulated", "sigma_nmad", "bias", "eta_05", "eta_15", "mae", "galaxies_per_s",
            "latency_ms_b1", "cold_start_ms", "peak_rss_mb", "size_mb", "usd_per_million"}


def test_lambda_cost_by_hand():
    # 1 s at 1024 MB = 1 GB-s: $0.0000166667 + one request at $0.20 per million
    assert lambda_cost_usd(1000, 1024, "x86_64") == pytest.approx(0.0000166667 + 0.0000002)
    # 2.5 s at 3008 MB on arm64: 2.5 × 2.9375 GB-s × $0.0000133334 + $0.0000002
    assert lambda_cost_usd(2500, 3008, "arm64") == pytest.approx(2.5 * 2.9375 * 0.0000133334 + 0.0000002)
    # billed duration rounds up to the millisecond
    assert billed_ms(100.2) == 101 and lambda_cost_usd(100.2, 1024) == pytest.approx(0.101 * 0.0000166667 + 2e-7)
    assert lambda_cost_usd(0, 1769, requests=5) == pytest.approx(5 * 2e-7)


def test_cost_per_million_galaxies_by_hand():
    # 100 galaxies/s → 10,000 s; at 3008 MB: 10,000 × 2.9375 GB-s × price, plus 100 requests of 10,000 galaxies
    expected = 10_000 * 2.9375 * 0.0000166667 + 100 * 0.20 / 1e6
    assert usd_per_million_galaxies(100, 3008, "x86_64", 10_000) == pytest.approx(expected)
    assert usd_per_million_galaxies(100, 3008, "arm64", 10_000) < expected
    # the CAI paper's 10 GB Lambda at ≈214 galaxies/s
    assert usd_per_million_galaxies(214, 10240, "x86_64", 10_000) == pytest.approx(1e6 / 214 * 10 * 0.0000166667 + 100 * 2e-7)


def test_lambda_vcpu_mapping():
    assert lambda_vcpus(1769) == pytest.approx(1.0) and lambda_vcpus(10240) == pytest.approx(10240 / 1769)
    assert lambda_vcpus(20000) == 6
    assert [lambda_threads(m) for m in (128, 1769, 1770, 3008, 10240)] == [1, 1, 2, 2, 6]
    tiers = {t.name: t for t in parse_tiers("laptop,edge-1t,lambda-3008,lambda-10240")}
    assert tiers["lambda-3008"].threads == 2 and tiers["lambda-10240"].memory_mb == 10240
    assert tiers["lambda-3008"].emulation_note() and tiers["edge-1t"].emulation_note() is None
    with pytest.raises(UsageError, match="unknown tier"):
        parse_tiers("gpu-farm")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    n = 300
    images = rng.normal(0, 0.05, (n, 5, 32, 32)).astype(np.float32)
    mags = rng.uniform(15, 19, (n, 5)).astype(np.float32)
    z = (0.001 * mags.sum(axis=1) + rng.normal(0, 0.01, n)).astype(np.float32)  # what the tiny model predicts, plus scatter
    return write_npz_partition(folder / "labelled.npz", images, mags, [f"g{i}" for i in range(n)], z)


def test_small_end_to_end_compare_with_real_lambda_metrics(labelled, tmp_path, monkeypatch):
    bundle = tiny_bundle(tmp_path / "tiny-fp32")
    # real handler metrics for lambda-3008, produced by the handler itself against a local folder
    from cai_edge.scale_out.aws import handler as lambda_handler

    monkeypatch.setenv("CAI_EDGE_BUNDLE", str(bundle))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
    monkeypatch.setenv("CAI_EDGE_ALLOW_LOCAL_PATHS", "1")  # as `fanout --local` does for a local folder
    lambda_handler._runtime = None
    results = tmp_path / "lambda-results"
    lambda_handler.handler({"input": str(labelled), "output": str(results) + "/"})
    lambda_handler._runtime = None

    out = tmp_path / "report"
    code = main(["compare", "--data", str(labelled), "--bundles", str(bundle), "--tiers", "edge-1t,lambda-1769,lambda-3008",
                 "--lambda-results", str(results), "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert {"cpu_model", "usable_cores"} <= set(report["machine"])
    rows = {r["tier"]: r for r in report["rows"]}
    assert set(rows) == {"edge-1t", "lambda-1769", "lambda-3008"}
    for row in rows.values():
        assert ROW_KEYS <= set(row)
        assert row["sigma_nmad"] == pytest.approx(rows["edge-1t"]["sigma_nmad"])  # same bundle, same accuracy
        assert row["galaxies_per_s"] > 0 and row["latency_ms_b1"] > 0 and row["peak_rss_mb"] > 10
        assert row["size_mb"] > 0 and not math.isnan(row["sigma_nmad"])
    assert 0.005 < rows["edge-1t"]["sigma_nmad"] < 0.02  # the 0.01 scatter we put in
    assert rows["edge-1t"]["usd_per_million"] == 0.0 and rows["edge-1t"]["emulated"] is False
    assert rows["lambda-1769"]["emulated"] is True and "emulated" in rows["lambda-1769"]["emulation_note"]
    assert rows["lambda-1769"]["usd_per_million"] > rows["lambda-1769"]["usd_per_million_arm64"] > 0
    assert rows["lambda-3008"]["emulated"] is False and "real Lambda" in rows["lambda-3008"]["source"]
    # An emulated Lambda cold start has no optimized-graph cache, as on AWS; the edge tier starts from it.
    assert rows["lambda-1769"]["cold_start_from_cached_graph"] is False
    assert rows["edge-1t"]["cold_start_from_cached_graph"] is True
    md = (out / "report.md").read_text()
    assert "σ_NMAD" in md and report["machine"]["cpu_model"] in md and "lambda-1769" in md
    assert (out / "accuracy_vs_cost.png").stat().st_size > 1000 and (out / "throughput_by_tier.png").stat().st_size > 1000


def test_compare_measures_the_reference_engine_whatever_the_default(labelled, tmp_path, monkeypatch):
    """`cai-edge compare` reports ONNX Runtime's accuracy and cold start (what every tier, Lambda included, runs) even
    where OpenVINO is the default engine: the same accuracy as with ONNX Runtime as the default, and a cold start from
    ONNX Runtime's optimized-graph cache, though OpenVINO's redshifts differ on this bundle."""
    pytest.importorskip("openvino")
    from cai_edge.commands.compare import compare

    bundle = tiny_bundle(tmp_path / "tiny-fp32")
    rows = {}
    for backend in ("openvino-bf16", "onnxruntime"):
        monkeypatch.setenv("CAI_EDGE_BACKEND", backend)
        (row,) = compare([str(labelled)], None, [str(bundle)], "edge-1t", None)["rows"]
        rows[backend] = row
    for key in ("sigma_nmad", "bias", "eta_05", "eta_15", "mae"):
        assert rows["openvino-bf16"][key] == rows["onnxruntime"][key], key
    assert rows["openvino-bf16"]["cold_start_from_cached_graph"] is True  # an ONNX Runtime session, from its cache
    from cai_edge.io.npz_partitions import load_npz_partition
    from cai_edge.predictor import Predictor

    images, mags = (a[:64].astype(np.float32) for a in load_npz_partition(labelled)[:2])
    z_ov = Predictor(str(bundle), threads=1, backend="openvino-bf16").predict_prepared(images, mags)
    z_ort = Predictor(str(bundle), threads=1, backend="onnxruntime").predict_prepared(images, mags)
    assert not np.array_equal(z_ov, z_ort)  # so the equalities above are the pins' doing
