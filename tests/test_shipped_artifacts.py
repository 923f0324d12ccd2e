"""What ships: the reference weights (and their model card numbers) and the default bundle."""

import json
from pathlib import Path

import numpy as np
import pytest

from cai_edge.bundle import resolve_bundle
from cai_edge.bundle.registry import SHIPPED_DIR, default_bundle_name

REFERENCE = Path(__file__).resolve().parents[1] / "models" / "weights"


def test_default_bundle_ships_verifies_and_passed_its_gate():
    name = default_bundle_name()
    assert (SHIPPED_DIR / f"{name}.zip").is_file()
    bundle = resolve_bundle("default")
    m = bundle.manifest
    assert bundle.name == name and m["schema_version"] == 1
    if m["variant"] != "fp32":  # a quantized default must have passed its accuracy gate and not be slower
        assert m["gate"]["passed"] is True and m["gate"]["shippable_as_default"] is True
        assert m["quantization"]["calibration"]["split"] == "train"
    assert m["metrics"]["validation"]["n"] > 1000
    sidecar = json.loads((REFERENCE / "astromae-sdss.json").read_text())
    assert m["preprocessing"] == sidecar["preprocessing"]


def test_reference_weights_are_fp16_safetensors_under_35_mb():
    weights = REFERENCE / "astromae-sdss.safetensors"
    assert weights.stat().st_size <= 35_000_000
    sidecar = json.loads((REFERENCE / "astromae-sdss.json").read_text())
    import hashlib

    assert sidecar["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert sidecar["storage_dtype"] == "float16" and sidecar["parameters"] == 15_801_513


def test_model_card_numbers_reproduce_on_a_test_subset():
    """The card's test σ_NMAD, re-measured on 500 test galaxies, agrees within the subset's bootstrap error."""
    pytest.importorskip("torch")
    pytest.importorskip("galsim")
    from cai_edge.metrics import bootstrap_errors, photoz_metrics
    from cai_edge.models.datasets import rendered_split
    from cai_edge.models.reference import load_reference_with_preprocessing
    from cai_edge.models.train import predict

    report = json.loads((REFERENCE / "training_report.json").read_text())
    card = report["results"]["test"]["astromae"]["metrics"]
    data = rendered_split("test", 0, 500)
    model, prep = load_reference_with_preprocessing(REFERENCE / "astromae-sdss.safetensors")
    z = predict(model, prep, data)
    got = photoz_metrics(z, data.z_spec)
    err = bootstrap_errors(z, data.z_spec, n_boot=100)
    assert abs(got["sigma_nmad"] - card["sigma_nmad"]) < 4 * err["sigma_nmad"]
    assert abs(got["bias"] - card["bias"]) < 4 * err["bias"]
    assert np.isfinite(z).all()
