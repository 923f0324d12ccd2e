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


def _stored_model_offset(path) -> tuple[int, int]:
    """Where the stored model.onnx's bytes start in a bundle zip, and how many there are."""
    info = zipfile.ZipFile(path).getinfo("model.onnx")
    assert info.compress_type == zipfile.ZIP_STORED
    raw = path.read_bytes()
    header = raw[info.header_offset : info.header_offset + 30]
    start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    return start, info.file_size


def test_a_stored_model_is_read_whole_and_verified_in_place(bundle_dir, tmp_path):
    """Bundle zips store the model uncompressed and the loader reads it in one piece at its offset:
    a flipped byte inside it, a cut-off file and a local header that names another file are all refused."""
    zipped = zip_bundle(bundle_dir, tmp_path / "good.zip")
    assert open_bundle(zipped).model_bytes == (bundle_dir / "model.onnx").read_bytes()
    start, size = _stored_model_offset(zipped)
    raw = bytearray(zipped.read_bytes())

    flipped = tmp_path / "flipped.zip"
    raw_flipped = bytearray(raw)
    raw_flipped[start + size // 2] ^= 0x01
    flipped.write_bytes(bytes(raw_flipped))
    with pytest.raises(TamperedBundleError, match="sha256"):
        open_bundle(flipped)

    renamed = tmp_path / "renamed.zip"
    info = zipfile.ZipFile(zipped).getinfo("model.onnx")
    raw_renamed = bytearray(raw)
    name_at = info.header_offset + 30
    assert raw_renamed[name_at : name_at + 10] == b"model.onnx"
    raw_renamed[name_at : name_at + 10] = b"evil!.onnx"
    renamed.write_bytes(bytes(raw_renamed))
    with pytest.raises(BundleError):
        open_bundle(renamed)

    # A deflated model member takes zipfile's own path and gives the same bytes.
    deflated = tmp_path / "deflated.zip"
    with zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as out:
        out.writestr("manifest.json", (bundle_dir / "manifest.json").read_bytes())
        out.writestr("model.onnx", (bundle_dir / "model.onnx").read_bytes())
    assert open_bundle(deflated).model_bytes == open_bundle(zipped).model_bytes


def test_a_stored_model_shorter_than_its_zip_entry_says_is_refused(bundle_dir, tmp_path):
    """100 bytes cut from the model's middle, the zip's directory moved up to match: the entry's
    size now reaches into the directory, and the bytes read there fail the sha256 check."""
    zipped = zip_bundle(bundle_dir, tmp_path / "good.zip")
    start, size = _stored_model_offset(zipped)
    raw = bytearray(zipped.read_bytes())
    del raw[start + size // 2 : start + size // 2 + 100]
    end = raw.rfind(b"PK\x05\x06")
    directory_offset = int.from_bytes(raw[end + 16 : end + 20], "little") - 100
    raw[end + 16 : end + 20] = directory_offset.to_bytes(4, "little")
    short = tmp_path / "short.zip"
    short.write_bytes(bytes(raw))
    assert zipfile.ZipFile(short).getinfo("model.onnx").file_size == size  # the zip still opens and still claims it all
    with pytest.raises(TamperedBundleError, match="sha256"):
        open_bundle(short)


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


def test_a_bundle_s_records_are_parsed_once_and_an_edit_of_its_manifest_never_splits_rows_from_their_identity():
    from cai_edge.bundle.loader import Bundle

    bundle = resolve_bundle("default")
    assert bundle.calibration is bundle.calibration and bundle.image_domain is bundle.image_domain
    assert bundle.domain is bundle.domain and bundle.preprocessing is bundle.preprocessing
    sha = bundle.calibration_sha256
    bundle.manifest.pop("image_domain")  # an edit after loading: the rows and their calibration_sha256 still agree
    bundle.manifest["calibration"]["levels"] = [0.5]
    assert bundle.image_domain is not None and bundle.calibration_sha256 == sha and 0.16 in bundle.calibration.levels
    edited = Bundle(bundle.path, bundle.manifest, bundle.files)  # a new bundle reads the edited manifest
    assert edited.image_domain is None and edited.calibration_sha256 != sha
