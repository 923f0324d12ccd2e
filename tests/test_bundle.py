"""The bundle format: verified on load, refused when tampered, newer or escaping; zip round trip."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import pytest

from bundle_helpers import expected_tiny, tiny_bundle
from cai_edge.bundle import open_bundle, resolve_bundle
from cai_edge.cli import main
from cai_edge.errors import BundleError, BundleNotFoundError, TamperedBundleError, UnsafeBundlePathError, UnsupportedBundleError
from cai_edge.export.bundle_writer import zip_bundle
from cai_edge.predictor import Predictor


@pytest.fixture
def bundle_dir(tmp_path):
    return tiny_bundle(tmp_path / "tiny-fp32")


def test_written_bundle_verifies_and_predicts(bundle_dir):
    bundle = open_bundle(bundle_dir)
    m = bundle.manifest
    assert m["schema_version"] == 1 and m["variant"] == "fp32" and m["name"] == "tiny-fp32"
    assert m["files"]["model.onnx"]["sha256"] == bundle.sha256 and len(bundle.sha256) == 64
    assert m["inputs"][0] == {"name": "image", "shape": ["batch", 5, 32, 32], "dtype": "float32"}
    assert {"cai_edge", "onnx", "onnxruntime"} <= set(m["producer"])
    rng = np.random.default_rng(0)
    images, mags = rng.normal(size=(9, 5, 32, 32)).astype(np.float32), rng.uniform(15, 20, (9, 5)).astype(np.float32)
    z = Predictor(bundle, threads=1).predict(images, mags)
    assert z.shape == (9,) and np.allclose(z, expected_tiny(images, mags), atol=1e-5)


def test_key_fields_are_mirrored_into_onnx_metadata(bundle_dir):
    proto = onnx.load(bundle_dir / "model.onnx")
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["cai_edge.name"] == "tiny-fp32" and meta["cai_edge.variant"] == "fp32"
    assert json.loads(meta["cai_edge.preprocessing"])["band_order"] == ["u", "g", "r", "i", "z"]


def test_zip_round_trip(bundle_dir):
    zipped = zip_bundle(bundle_dir)
    a, b = open_bundle(bundle_dir), open_bundle(zipped)
    assert a.sha256 == b.sha256 and a.manifest == b.manifest and a.model_bytes == b.model_bytes
    assert sorted(zipfile.ZipFile(zipped).namelist()) == ["manifest.json", "model.onnx"]


def test_tampered_model_is_refused(bundle_dir):
    model = bundle_dir / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-5] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(TamperedBundleError, match="sha256"):
        open_bundle(bundle_dir)


def test_tampered_zip_member_is_refused(bundle_dir, tmp_path):
    good = zipfile.ZipFile(zip_bundle(bundle_dir))
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as out:
        out.writestr("manifest.json", good.read("manifest.json"))
        out.writestr("model.onnx", good.read("model.onnx") + b"\x00")
    with pytest.raises(TamperedBundleError):
        open_bundle(bad)


def test_newer_schema_version_is_refused(bundle_dir):
    path = bundle_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["schema_version"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(UnsupportedBundleError, match="newer"):
        open_bundle(bundle_dir)


@pytest.mark.parametrize("evil", ["../outside.onnx", "/etc/passwd", "sub/../../x", "C:\\x.onnx"])
def test_zip_slip_names_are_refused(bundle_dir, tmp_path, evil):
    good = zipfile.ZipFile(zip_bundle(bundle_dir))
    bad = tmp_path / "slip.zip"
    with zipfile.ZipFile(bad, "w") as out:
        out.writestr("manifest.json", good.read("manifest.json"))
        out.writestr("model.onnx", good.read("model.onnx"))
        out.writestr(evil, b"payload")
    with pytest.raises(UnsafeBundlePathError):
        open_bundle(bad)


def test_manifest_listing_a_path_outside_the_bundle_is_refused(bundle_dir):
    path = bundle_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["../secret"] = {"bytes": 1, "sha256": "0" * 64}
    path.write_text(json.dumps(manifest))
    with pytest.raises(UnsafeBundlePathError):
        open_bundle(bundle_dir)


def test_not_a_bundle_and_unknown_names(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        open_bundle(tmp_path / "empty")
    (tmp_path / "x.zip").write_bytes(b"nope")
    with pytest.raises(BundleError, match="not a zip"):
        open_bundle(tmp_path / "x.zip")
    with pytest.raises(BundleNotFoundError):
        resolve_bundle("no-such-bundle-name")


def test_named_bundles_resolve_through_the_search_path(bundle_dir, monkeypatch):
    monkeypatch.setenv("CAI_EDGE_BUNDLES", str(bundle_dir.parent))
    assert resolve_bundle("tiny-fp32").sha256 == open_bundle(bundle_dir).sha256


def test_bundle_cli_exit_codes(bundle_dir, capsys):
    assert main(["bundle", "verify", str(bundle_dir)]) == 0
    assert "ok: tiny-fp32" in capsys.readouterr().out
    assert main(["bundle", "inspect", str(bundle_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "tiny-fp32"
    assert main(["bundle", "inspect", str(bundle_dir)]) == 0
    summary = capsys.readouterr().out
    assert summary.startswith("tiny-fp32  (fp32") and "interface      image float32" in summary
    assert "uncertainty    none" in summary and "domain         none recorded" in summary
    (bundle_dir / "model.onnx").write_bytes(b"corrupt")
    assert main(["bundle", "verify", str(bundle_dir)]) == 2
    assert "error:" in capsys.readouterr().err


def test_bundle_module_never_imports_torch(bundle_dir):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from cai_edge.bundle import open_bundle\n"
        "from cai_edge.predictor import Predictor\n"
        f"b = open_bundle({str(bundle_dir)!r}); Predictor(b, threads=1)\n"
        "print(b.variant)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "fp32"
