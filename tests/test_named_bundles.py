"""Names that resolve: what export, quantize and calibrate make without --out is found by name,
``bundle list`` shows it, and ``compare`` compares it by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundle_helpers import tiny_bundle
from cai_edge.cli import main
from cai_edge.results.files import read_identity, read_results

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def user_bundles(tmp_path, monkeypatch):
    folder = tmp_path / "user-bundles"
    monkeypatch.setenv("CAI_EDGE_USER_BUNDLES", str(folder))
    monkeypatch.delenv("CAI_EDGE_BUNDLES", raising=False)
    return folder


def test_export_without_out_is_found_by_name_listed_and_compared(user_bundles, tmp_path, capsys):
    pytest.importorskip("torch")
    assert main(["export", "--validation-limit", "32"]) == 0
    assert (user_bundles / "astromae-sdss-fp32" / "manifest.json").is_file()
    out = tmp_path / "z.csv"
    assert main(["predict", str(EXAMPLES), "--bundle", "astromae-sdss-fp32", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    assert read_identity(out)["bundle"] == "astromae-sdss-fp32" and len(read_results(out)) == 200
    capsys.readouterr()
    assert main(["bundle", "list"]) == 0
    listing = capsys.readouterr().out
    assert "astromae-sdss-fp32" in listing and "astromae-sdss-int8" in listing and str(user_bundles) in listing
    partition = tmp_path / "labelled"
    from result_helpers import write_partitions

    write_partitions(partition, 1, 40)
    assert main(["compare", "--data", str(partition), "--tiers", "edge-1t", "--out", str(tmp_path / "report")]) == 0
    rows = json.loads((tmp_path / "report" / "report.json").read_text())["rows"]
    assert {r["bundle"] for r in rows} == {"astromae-sdss-fp32", "astromae-sdss-int8"}
    assert (tmp_path / "report" / "throughput_by_tier.png").is_file()
    assert not (tmp_path / "report" / "accuracy_vs_cost.png").exists()  # no Lambda tier: no empty cost figure


def test_calibrate_without_out_gets_a_name_of_its_own(user_bundles, tmp_path, capsys):
    from test_trust import _labelled_partition

    bundle = tiny_bundle(tmp_path / "tiny")
    _labelled_partition(tmp_path / "cal.npz", 800, seed=9)
    assert main(["calibrate", str(bundle), "--data", str(tmp_path / "cal.npz")]) == 0
    assert (user_bundles / "tiny-fp32-calibrated" / "manifest.json").is_file()
    capsys.readouterr()
    assert main(["bundle", "verify", "tiny-fp32-calibrated"]) == 0
    assert "tiny-fp32-calibrated" in capsys.readouterr().out


def test_bundle_list_reports_unusable_bundles_and_verify_needs_a_name(user_bundles, capsys):
    (user_bundles / "broken").mkdir(parents=True)
    (user_bundles / "broken" / "manifest.json").write_text("{not json")
    assert main(["bundle", "list"]) == 0
    assert "unusable" in capsys.readouterr().out
    assert main(["bundle", "verify"]) == 2
