"""cai-edge as a RAIL stage: CaiEdgeEstimator in a ceci pipeline on the test split, scored by RAIL's evaluator."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from cai_edge.metrics import pit_histogram
from cai_edge.predictor import Predictor

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
N = 300


def _pipeline_module():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("rail_pipeline")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _text(value) -> str:
    """Text ancillary data: UTF-8 bytes in the stage's ensemble, str once qp has read the file back."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def test_the_stage_lives_in_rails_namespace_without_claiming_it():
    import rail
    import rail.estimation
    import rail.estimation.algos
    from rail.estimation.algos.cai_edge import CaiEdgeEstimator
    from rail.estimation.estimator import CatEstimator

    assert issubclass(CaiEdgeEstimator, CatEstimator)
    for namespace in (rail, rail.estimation, rail.estimation.algos):  # shared with pz-rail-base and every rail_* package
        assert getattr(namespace, "__file__", None) is None, namespace
        assert not any((Path(p) / "__init__.py").exists() for p in namespace.__path__ if (Path(p) / "cai_edge").exists())


def test_rail_pipeline_runs_the_estimator_and_rails_evaluator_on_the_test_split(tmp_path):
    """ceci runs each stage in its own process, as RAIL's examples do; RAIL's PIT is cai-edge's own."""
    from cai_edge.models.datasets import rendered_split

    module = _pipeline_module()
    test = rendered_split("test", limit=N)
    table = module.write_rail_table(tmp_path / "test.hdf5", test.ids, test.images, test.magnitudes, test.z_spec)
    metrics, ensemble = module.run_pipeline(module.build_pipeline(table, tmp_path, chunk_size=128))  # 3 chunks
    assert ensemble.npdf == N
    ancil = ensemble.ancil
    assert [_text(i) for i in ancil["id"]] == [str(i) for i in test.ids]  # RAIL's id column, in input order
    assert [_text(s) for s in ancil["status"]] == ["ok"] * N and set(np.unique(ancil["usable"])) <= {0, 1}
    assert np.sum(ancil["usable"]) >= 0.95 * N
    assert all(_text(m) for m, bits in zip(ancil["message"], ancil["flag_bits"]) if bits)  # a flagged row says why
    assert np.all(ancil["z_lo95"] <= ancil["zmedian"]) and np.all(ancil["zmedian"] <= ancil["z_hi95"])
    # RAIL's evaluator: PIT and its KS / CvM / AD, point metrics of the mode, CDE loss
    for key in ("PIT_KS_stat", "PIT_CvM_stat", "PIT_AD_stat", "PIT_OutRate_stat", "POINT_SigmaMAD", "POINT_Bias", "POINT_OutlierRate", "CDE_stat"):
        assert np.isfinite(metrics[key]), key
    assert metrics["POINT_SigmaMAD"] < 0.025 and abs(metrics["POINT_Bias"]) < 0.005 and metrics["CDE_stat"] < -10
    predictor = Predictor()
    z = predictor.predict(test.images, test.magnitudes).astype(np.float64)
    own = pit_histogram(predictor.bundle.calibration.cdf(z, test.magnitudes, test.z_spec))
    assert metrics["PIT_KS_stat"] == pytest.approx(own["ks"], abs=0.01)  # the same p(z), through qp and RAIL
    assert metrics["PIT_KS_stat"] < 0.12  # 300 galaxies: the KS distance of a calibrated p(z) is below ~0.08 in 95 % of draws


def test_flattened_images_and_cutout_files_give_the_same_rows(tmp_path):
    from rail.estimation.algos.cai_edge import CaiEdgeEstimator

    paths = sorted(EXAMPLES.glob("*.fits"))[:6]
    headers = [fits.getheader(p, 1) for p in paths]
    cubes = np.stack([fits.getdata(p, 1).astype(np.float32) for p in paths])
    data = {"object_id": np.array([p.stem for p in paths]), "redshift": np.array([h["Z_SPEC"] for h in headers]),
            "path": np.array([str(p) for p in paths]), "images": cubes.reshape(len(paths), -1),
            **{f"mag_{b}_lsst": np.array([h[f"MAG_{b.upper()}"] for h in headers]) for b in "ugriz"}}
    flat = CaiEdgeEstimator.make_stage(name="flat", output_mode="return", hdf5_groupname="", image_shape=[5, 64, 64]).estimate(data).data
    files = CaiEdgeEstimator.make_stage(name="files", output_mode="return", hdf5_groupname="", path_column="path").estimate(data).data
    table = Predictor().predict_table(cubes, np.stack([data[f"mag_{b}_lsst"] for b in "ugriz"], axis=1), ids=list(data["object_id"]))
    for ensemble in (flat, files):
        assert np.allclose(ensemble.ancil["z_pred"], table["z_pred"], atol=1e-6)
        assert list(ensemble.ancil["usable"]) == list(table["usable"])
        assert np.allclose(ensemble.pdf(np.linspace(0, 1, 1001)).sum(axis=1) * 0.001, 1.0, atol=0.01)


def test_a_row_without_a_prediction_keeps_its_place_with_a_flat_pdf_and_its_reason():
    from rail.estimation.algos.cai_edge import CaiEdgeEstimator

    paths = sorted(EXAMPLES.glob("*.fits"))[:3]
    headers = [fits.getheader(p, 1) for p in paths]
    cubes = np.stack([fits.getdata(p, 1).astype(np.float32) for p in paths])
    cubes[1, 2, 30, 30] = np.nan  # a NaN pixel in r
    data = {"images": cubes, **{f"mag_{b}_lsst": np.array([h[f"MAG_{b.upper()}"] for h in headers]) for b in "ugriz"}}
    out = CaiEdgeEstimator.make_stage(name="nan", output_mode="return", hdf5_groupname="").estimate(data).data
    assert out.npdf == 3 and list(out.ancil["usable"]) == [1, 0, 1]
    assert _text(out.ancil["status"][1]) != "ok" and _text(out.ancil["message"][1])
    assert np.isnan(out.ancil["zmode"][1]) and np.isnan(out.ancil["z_pred"][1])
    flat = out.pdf(np.linspace(0.1, 0.9, 9))[1]
    assert np.allclose(flat, flat[0]) and flat[0] > 0
