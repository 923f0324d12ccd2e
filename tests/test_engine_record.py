"""Every output records the engine that computed its redshifts; resumed and merged outputs list each one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from astropy.io import fits

from cai_edge.cli import main
from cai_edge.results.files import engines_of, read_identity

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine") / "cutouts"
    folder.mkdir()
    for path in sorted(EXAMPLES.glob("*.fits"))[:6]:
        shutil.copy(path, folder / path.name)
    return folder


def _predict(*args) -> int:
    return main(["predict", *map(str, args), "--quiet"])


def _rewrite_csv_engine(csv: Path, engine: str | None) -> None:
    """Give a CSV output's sidecar another recorded engine (None: none, as an output of an earlier version)."""
    sidecar = csv.with_name(csv.name + "-metadata.json")
    document = json.loads(sidecar.read_text())
    if engine is None:
        document["cai_edge"].pop("engine")
    else:
        document["cai_edge"]["engine"] = engine
    sidecar.write_text(json.dumps(document))


@pytest.mark.parametrize("suffix", ["csv", "fits", "ecsv", "parquet"])
def test_every_format_records_the_engine(cutouts, tmp_path, suffix):
    out = tmp_path / f"z.{suffix}"
    assert _predict(cutouts, "--out", out) == 0
    assert read_identity(out)["engine"] == "onnxruntime"
    if suffix == "fits":
        assert fits.getheader(out, ext=1)["ENGINE"] == "onnxruntime"
    if suffix == "csv":
        assert json.loads((tmp_path / "z.csv-metadata.json").read_text())["cai_edge"]["engine"] == "onnxruntime"


def test_a_resumed_output_lists_the_engines_of_its_rows(cutouts, tmp_path):
    part = tmp_path / "part"
    part.mkdir()
    for path in sorted(cutouts.glob("*.fits"))[:3]:
        shutil.copy(path, part / path.name)
    out = tmp_path / "z.csv"
    assert _predict(part, "--out", out) == 0
    _rewrite_csv_engine(out, None)  # rows of an older cai-edge, which recorded no engine
    assert _predict(cutouts, "--out", out, "--resume") == 0
    assert read_identity(out)["engine"] == "not recorded, onnxruntime"
    assert _predict(cutouts, "--out", out) == 0  # a fresh run: its own rows only
    assert read_identity(out)["engine"] == "onnxruntime"


def test_a_merge_lists_each_engine_once_in_order(cutouts, tmp_path):
    files = sorted(cutouts.glob("*.fits"))
    outputs = []
    for k, engine in enumerate(("openvino-bf16", "onnxruntime", "openvino-bf16")):
        part = tmp_path / f"part{k}"
        part.mkdir()
        for path in files[2 * k : 2 * k + 2]:
            shutil.copy(path, part / path.name)
        outputs.append(tmp_path / f"z{k}.csv")
        assert _predict(part, "--out", outputs[-1]) == 0
        _rewrite_csv_engine(outputs[-1], engine)
    merged = tmp_path / "merged.fits"
    assert main(["merge", *map(str, outputs), "--out", str(merged)]) == 0
    assert read_identity(merged)["engine"] == "openvino-bf16, onnxruntime"
    assert fits.getheader(merged, ext=1)["ENGINE"] == "openvino-bf16, onnxruntime"


def test_a_resume_with_nothing_left_to_do_keeps_the_earlier_engine_alone(cutouts, tmp_path):
    out = tmp_path / "z.csv"
    assert _predict(cutouts, "--out", out) == 0
    _rewrite_csv_engine(out, "openvino-bf16")
    assert _predict(cutouts, "--out", out, "--resume") == 0  # every object done: no row of this run's engine
    assert read_identity(out)["engine"] == "openvino-bf16"


def test_an_edited_engine_cannot_cost_a_fits_output_its_engine_card(cutouts, tmp_path):
    out = tmp_path / "z.csv"
    assert _predict(cutouts, "--out", out) == 0
    _rewrite_csv_engine(out, "openvinö\nbf16")  # non-ASCII and a newline: no FITS card holds them
    merged = tmp_path / "merged.fits"
    assert main(["merge", str(out), "--out", str(merged)]) == 0
    assert fits.getheader(merged, ext=1)["ENGINE"] == "openvin??bf16"
    assert read_identity(merged)["engine"] == "openvin??bf16"


def test_engines_of_keeps_order_and_names_what_was_not_recorded():
    assert engines_of(["onnxruntime"]) == "onnxruntime"
    assert engines_of(["", "onnxruntime", "openvino, onnxruntime"]) == "not recorded, onnxruntime, openvino"
    assert engines_of([None, "x" * 100]) == "not recorded, " + "x" * 64  # type: ignore[list-item]
