"""Issue 30, item 12: every manifest block that decides a row is sealed, range-checked both ways, and never silently absent.

A hand-edited ``image_domain`` (or ``calibration``, ``domain``, ``preprocessing``) block fails its
``block_sha256`` in ``bundle verify`` and in ``predict``; a key given twice is refused; values
that would flag every row or none are refused even when resealed; and a bundle written without
an image reference marks every row ``image_unchecked`` (never usable).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bundle_helpers import tiny_bundle
from galaxy_helpers import write_galaxy_partition
from cai_edge.bundle.manifest import SEALED_BLOCKS, seal_manifest
from cai_edge.cli import main
from cai_edge.flags import BITS, IMAGE_UNCHECKED
from result_helpers import write_partitions


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> Path:
    from test_trust import _labelled_partition

    folder = tmp_path_factory.mktemp("sealed")
    _labelled_partition(folder / "cal.npz", 800, seed=3)
    bundle = tiny_bundle(folder / "bundle")
    out = folder / "cal"
    galaxies = write_galaxy_partition(folder / "galaxies.npz", 600, seed=3)  # an image reference of galaxies, not of sky
    assert main(["calibrate", str(bundle), "--data", str(folder / "cal.npz"), "--domain-data", str(galaxies), "--out", str(out)]) == 0
    return out


def _edited(calibrated: Path, tmp_path: Path, text_of) -> Path:
    """A copy of the calibrated bundle whose manifest.json text is ``text_of(manifest dict)``."""
    copy = tmp_path / "edited"
    shutil.copytree(calibrated, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(text_of(manifest))
    return copy


def _set(block: str, key: str, value):
    def edit(manifest: dict) -> str:
        manifest[block][key] = value
        return json.dumps(manifest)
    return edit


def _drop(value_of_block):
    def edit(manifest: dict) -> str:
        if value_of_block == "removed":
            del manifest["image_domain"]
        else:
            manifest["image_domain"] = None
        return json.dumps(manifest)
    return edit


def _duplicate_image_domain(manifest: dict) -> str:
    """The bundle's own image_domain, then a second one with a threshold of 1e300: the last wins in Python's json."""
    text = json.dumps(manifest)
    loose = json.dumps({**manifest["image_domain"], "noise_threshold": 1e300})
    return text[:-1] + f', "image_domain": {loose}}}'


TAMPERED = {
    "noise threshold 1e300": _set("image_domain", "noise_threshold", 1e300),
    "noise threshold 50 (in range)": _set("image_domain", "noise_threshold", 50.0),
    "band noise 1e30": _set("image_domain", "band_noise_nanomaggies", [1e30] * 5),
    "asymmetry threshold 0.9 (in range)": _set("image_domain", "asymmetry_threshold", 0.9),
    "band offset thresholds 3 px (in range)": _set("image_domain", "band_offset_threshold_px", dict.fromkeys("ugiz", 3.0)),
    "centre S/N threshold 3 (in range)": _set("image_domain", "centre_snr_threshold", 3.0),
    "image_domain removed": _drop("removed"),
    "image_domain null": _drop("null"),
    "duplicate image_domain key": _duplicate_image_domain,
    "domain threshold doubled": lambda m: _set("domain", "threshold", m["domain"]["threshold"] * 2)(m),
    "calibration removed": lambda m: json.dumps({k: v for k, v in m.items() if k != "calibration"}),
    "preprocessing softening": _set("preprocessing", "image_softening", [0.5, 0.5, 0.5, 0.5, 0.25]),
    "seal removed": lambda m: json.dumps({k: v for k, v in m.items() if k != "block_sha256"}),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_hand_edited_block_fails_verify_and_predict(case, calibrated, tmp_path, capsys):
    edited = _edited(calibrated, tmp_path, TAMPERED[case])
    assert main(["bundle", "verify", str(edited)]) == 2, case
    write_partitions(tmp_path / "in", 1, 3)
    out = tmp_path / "z.csv"
    assert main(["predict", str(tmp_path / "in"), "--bundle", str(edited), "--out", str(out), "--quiet", "--threads", "1"]) == 2, case
    err = capsys.readouterr().err
    assert err.count("error: ") == 2 and "Traceback" not in err and not out.exists(), err
    assert "modified" in err or "ambiguous" in err or "out of range" in err or "no block_sha256" in err, err


RESEALED_OUT_OF_RANGE = {
    "asymmetry threshold -1": ("image_domain", "asymmetry_threshold", -1.0),
    "asymmetry threshold 1e-30": ("image_domain", "asymmetry_threshold", 1e-30),
    "noise threshold 1e-30": ("image_domain", "noise_threshold", 1e-30),
    "noise threshold 1e300": ("image_domain", "noise_threshold", 1e300),
    "band noise 1e-30": ("image_domain", "band_noise_nanomaggies", [1e-30] * 5),
    "band noise 1e30": ("image_domain", "band_noise_nanomaggies", [1e30] * 5),
    "band offset threshold 0": ("image_domain", "band_offset_threshold_px", {"u": 1.0, "g": 0.0, "i": 0.3, "z": 0.9}),
    "band offset threshold 100 px": ("image_domain", "band_offset_threshold_px", dict.fromkeys("ugiz", 100.0)),
    "band offset threshold NaN": ("image_domain", "band_offset_threshold_px", {"u": 1.0, "g": float("nan"), "i": 0.3, "z": 0.9}),
    "centre S/N threshold 0.5": ("image_domain", "centre_snr_threshold", 0.5),
    "centre S/N threshold 1e6": ("image_domain", "centre_snr_threshold", 1e6),
    "domain threshold 1e-30": ("domain", "threshold", 1e-30),
    "domain threshold 1e300": ("domain", "threshold", 1e300),
}


@pytest.mark.parametrize("case", sorted(RESEALED_OUT_OF_RANGE))
def test_values_that_flag_every_row_or_none_are_refused_even_when_resealed(case, calibrated, tmp_path, capsys):
    block, key, value = RESEALED_OUT_OF_RANGE[case]

    def edit(manifest: dict) -> str:
        manifest[block][key] = value
        return json.dumps(seal_manifest(manifest))

    edited = _edited(calibrated, tmp_path, edit)
    assert main(["bundle", "verify", str(edited)]) == 2, case
    err = capsys.readouterr().err
    assert "out of range" in err or "outside" in err, err


def test_the_shipped_default_is_sealed_over_every_block():
    from cai_edge.bundle import resolve_bundle

    manifest = resolve_bundle("default").manifest
    assert set(manifest["block_sha256"]) == set(SEALED_BLOCKS)


def test_a_bundle_without_an_image_reference_marks_every_row_image_unchecked(calibrated, tmp_path, capsys):
    """Written without image_domain (as a writer would, sealed): rows say the image checks did not run."""
    from cai_edge.bundle import open_bundle
    from cai_edge.bundle.writer import write_bundle_dir
    from cai_edge.results.files import read_results

    source = open_bundle(calibrated)
    manifest = {k: v for k, v in source.manifest.items() if k not in ("image_domain", "files")}
    no_images = write_bundle_dir(tmp_path / "no-images", manifest, dict(source.files))
    assert main(["bundle", "inspect", str(no_images)]) == 0
    assert "image domain   none: rows carry the flag 'image_unchecked'" in capsys.readouterr().out
    write_partitions(tmp_path / "in", 1, 4)
    for suffix in (".csv", ".fits"):
        out = tmp_path / f"z{suffix}"
        assert main(["predict", str(tmp_path / "in"), "--bundle", str(no_images), "--out", str(out), "--quiet",
                     "--threads", "1"]) in (0, 1)
        table = read_results(out)
        assert len(table) == 4 and set(table["status"]) == {"ok"}
        assert all(IMAGE_UNCHECKED in names.split(",") for names in table["flag_names"])
        assert np.all(np.asarray(table["flag_bits"]) & BITS[IMAGE_UNCHECKED]) and not np.any(table["usable"])
    from astropy.io import fits

    with fits.open(tmp_path / "z.fits") as hdul:
        assert f"{BITS[IMAGE_UNCHECKED]}={IMAGE_UNCHECKED}" in hdul[1].header["FLAGBITS"]
    # the same galaxies with the reference: no image_unchecked
    assert main(["predict", str(tmp_path / "in"), "--bundle", str(calibrated), "--out", str(tmp_path / "with.csv"),
                 "--quiet", "--threads", "1"]) in (0, 1)
    assert not any(IMAGE_UNCHECKED in names for names in read_results(tmp_path / "with.csv")["flag_names"])


def test_an_unsealed_bundle_is_recovered_as_its_error_advises(calibrated, tmp_path, capsys):
    """A manifest without block_sha256 (an older cai-edge's) is refused with advice to calibrate it again; that advice
    works: calibrate accepts it, refits domain and image reference instead of keeping its unsealed ones, and seals."""
    from test_trust import _labelled_partition

    from cai_edge.bundle import open_bundle

    edits = {"block_sha256": None, "image_domain": {"noise_threshold": 50.0}}
    old = _edited(calibrated, tmp_path, lambda m: json.dumps(
        {**{k: v for k, v in m.items() if k not in edits}, "image_domain": {**m["image_domain"], **edits["image_domain"]}}))
    assert main(["bundle", "verify", str(old)]) == 2
    err = capsys.readouterr().err
    assert f"cai-edge calibrate {old} --data LABELLED" in err, err
    _labelled_partition(tmp_path / "cal.npz", 800, seed=5)
    new = tmp_path / "resealed"
    assert main(["calibrate", str(old), "--data", str(tmp_path / "cal.npz"), "--out", str(new)]) == 0
    assert "refitted, not kept" in capsys.readouterr().err
    assert main(["bundle", "verify", str(new)]) == 0
    manifest = open_bundle(new).manifest
    assert set(manifest["block_sha256"]) == set(SEALED_BLOCKS)
    assert manifest["image_domain"]["noise_threshold"] != 50.0  # refitted: the unsealed edit is not carried into a seal
    assert open_bundle(new).model_bytes == open_bundle(calibrated).model_bytes
    # a seal that disagrees is still refused, and so is an unsealed preprocessing that is not its model's
    tampered = _edited(calibrated, tmp_path / "t", _set("image_domain", "noise_threshold", 50.0))
    softened = _edited(old, tmp_path / "s", _set("preprocessing", "image_softening", [0.5, 0.5, 0.5, 0.5, 0.25]))
    capsys.readouterr()
    for source, says in ((tampered, "block_sha256 says"), (softened, "recorded inside its model.onnx")):
        assert main(["calibrate", str(source), "--data", str(tmp_path / "cal.npz"), "--out", str(tmp_path / "no")]) == 2
        assert says in capsys.readouterr().err
        assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("value", [{"u": 1.0, "g": 0.2, "i": 0.3}, {"u": 1.0, "g": 0.2, "r": 0.1, "i": 0.3, "z": 0.9},
                                   [1.0, 0.2, 0.3, 0.9], "0.2"])
def test_band_offset_thresholds_must_name_u_g_i_z(value, calibrated, tmp_path, capsys):
    def edit(manifest: dict) -> str:
        manifest["image_domain"]["band_offset_threshold_px"] = value
        return json.dumps(seal_manifest(manifest))

    assert main(["bundle", "verify", str(_edited(calibrated, tmp_path, edit))]) == 2
    assert "malformed" in capsys.readouterr().err


def test_a_reference_from_before_band_registration_marks_rows_image_unchecked(calibrated, tmp_path, capsys):
    """An image reference without the issue-31 thresholds (an older bundle, resealed): rows say the checks did not all run."""
    from cai_edge.results.files import read_results

    def older(manifest: dict) -> str:
        for key in ("band_offset_threshold_px", "centre_snr_threshold"):
            del manifest["image_domain"][key]
        return json.dumps(seal_manifest(manifest))

    edited = _edited(calibrated, tmp_path, older)
    assert main(["bundle", "inspect", str(edited)]) == 0
    assert "no band-registration or centre-source thresholds" in capsys.readouterr().out
    write_partitions(tmp_path / "in", 1, 3)
    assert main(["predict", str(tmp_path / "in"), "--bundle", str(edited), "--out", str(tmp_path / "z.csv"), "--quiet",
                 "--threads", "1"]) in (0, 1)
    table = read_results(tmp_path / "z.csv")
    assert all(IMAGE_UNCHECKED in n.split(",") for n in table["flag_names"]) and not np.any(table["usable"])
    assert all("predates the band-registration" in m for m in table["message"])

    def half(manifest: dict) -> str:  # one of the two thresholds alone is malformed, not older
        del manifest["image_domain"]["centre_snr_threshold"]
        return json.dumps(seal_manifest(manifest))

    (tmp_path / "edited").rename(tmp_path / "older")
    assert main(["bundle", "verify", str(_edited(calibrated, tmp_path, half))]) == 2
    assert "malformed" in capsys.readouterr().err
