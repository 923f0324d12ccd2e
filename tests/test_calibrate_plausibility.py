"""Issue 30, item 13: ``cai-edge calibrate`` says when a reference or a calibration is implausible.

120 noiseless blobs as ``--domain-data`` were accepted (fitted sky noise ~1e-6, so every real
cutout was then ``image_noise``); 20 of 300 labels at z_spec = 7.0 gave 95 % intervals 7 wide
without a word. Now the first is refused (exit 2, the reason on one line) and the second warns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bundle_helpers import tiny_bundle
from cai_edge.cli import main
from cai_edge.io.npz_partitions import write_npz_partition
from result_helpers import MAGS


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("plausible") / "tiny")


def _labels(path: Path, n: int, seed: int, noise: float = 0.01, z_spec_change=None) -> Path:
    from test_trust import _labelled_partition

    _labelled_partition(path, n, seed=seed)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    images = arrays["images"] * (noise / 0.01)
    z = arrays["z_spec"].copy()
    if z_spec_change is not None:
        z_spec_change(z)
    write_npz_partition(path, images.astype(np.float32), arrays["magnitudes"], list(arrays["ids"]), z)
    return path


def _blobs(path: Path, n: int) -> Path:
    """``n`` noiseless round galaxies: smooth light, no sky noise at all."""
    y, x = np.mgrid[:32, :32] - 15.5
    rng = np.random.default_rng(4)
    sizes = rng.uniform(1.5, 3.0, n)
    images = np.stack([np.broadcast_to(10 * np.exp(-(x**2 + y**2) / (2 * s**2)), (5, 32, 32)) for s in sizes]).astype(np.float32)
    mags = (MAGS + rng.normal(0, 0.3, (n, 5))).astype(np.float32)
    write_npz_partition(path, images, mags, [f"blob{i}" for i in range(n)], rng.uniform(0.02, 0.3, n))
    return path


def _calibrate(bundle: Path, *args) -> int:
    return main(["calibrate", str(bundle), *map(str, args), "--threads", "1"])


def test_noiseless_domain_data_is_refused_with_its_reason(tiny, tmp_path, capsys):
    labels = _labels(tmp_path / "cal.npz", 800, seed=3)
    out = tmp_path / "b"
    assert _calibrate(tiny, "--data", labels, "--domain-data", _blobs(tmp_path / "blobs.npz", 120), "--out", out) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "--domain-data" in lines[0] and "band noise" in lines[0] and "Traceback" not in err, err
    assert not out.exists()


def test_labels_far_outside_the_training_redshifts_warn_and_say_why(tiny, tmp_path, capsys):
    """20 of 300 labels at z_spec = 7.0: the intervals widen to ~7 and the report says why, twice."""
    labels = _labels(tmp_path / "cal.npz", 300, seed=5, z_spec_change=lambda z: z.__setitem__(slice(0, 20), 7.0))
    domain = _labels(tmp_path / "domain.npz", 400, seed=6)
    assert _calibrate(tiny, "--data", labels, "--domain-data", domain, "--out", tmp_path / "b") == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    text = " ".join(report["warnings"])
    assert "20 of 300 labels have z_spec outside the training redshifts" in text and "7" in text
    assert "median 95 % interval is" in text
    assert "warning: 20 of 300 labels" in captured.err


def test_wide_intervals_warn_without_a_training_range(tiny, tmp_path, capsys):
    """No domain to compare with (the tiny bundle has none, no --domain-data): the widths alone still warn."""
    labels = _labels(tmp_path / "cal.npz", 300, seed=5, z_spec_change=lambda z: z.__setitem__(slice(0, 20), 7.0))
    assert _calibrate(tiny, "--data", labels, "--out", tmp_path / "b") == 0
    report = json.loads(capsys.readouterr().out)
    assert any("median 95 % interval is" in w for w in report["warnings"]), report["warnings"]


def test_clean_labels_give_no_plausibility_warning(tiny, tmp_path, capsys):
    labels = _labels(tmp_path / "cal.npz", 2400, seed=7)
    assert _calibrate(tiny, "--data", labels, "--domain-data", _labels(tmp_path / "d.npz", 400, seed=8), "--out", tmp_path / "b") == 0
    report = json.loads(capsys.readouterr().out)
    assert not any("interval is" in w or "labels have z_spec" in w or "sky noise" in w for w in report["warnings"]), report


def test_an_image_reference_unlike_the_bundles_training_images_warns(tiny, tmp_path, capsys):
    """Recalibrating a bundle with a reference (sky noise 0.01) on images ten times noisier: said, band by band."""
    labels = _labels(tmp_path / "cal.npz", 2400, seed=9)
    first = tmp_path / "first"
    assert _calibrate(tiny, "--data", labels, "--out", first) == 0
    capsys.readouterr()
    noisy = _labels(tmp_path / "noisy.npz", 400, seed=10, noise=0.1)
    assert _calibrate(first, "--data", labels, "--domain-data", noisy, "--out", tmp_path / "second") == 0
    captured = capsys.readouterr()
    assert "sky noise differs from the training images' by more than 3x (u " in captured.err
    stated = captured.err.split("by more than 3x (", 1)[1].split(")", 1)[0].split(", ")
    assert [s.split()[0] for s in stated] == list("ugriz") and all(9.5 < float(s.split()[1][:-1]) < 10.5 for s in stated)
