"""cai-edge inside a RAIL pipeline: CaiEdgeEstimator, then RAIL's evaluator, run by ceci (SIMULATED images).

The rendered test split (simulated images of real SDSS galaxies, never used to fit anything) is
written as a RAIL input table — ``object_id``, ``redshift``, ``mag_u_lsst … mag_z_lsst``, and the
cutouts flattened in ``images`` — and a two-stage pipeline is built, saved and run as RAIL's
examples do (``ceci.Pipeline.interactive`` → ``save`` → ``ceci.Pipeline.read(...).run()``, each
stage in its own process): ``rail.estimation.algos.cai_edge.CaiEdgeEstimator`` →
``rail.evaluation.evaluator.OldEvaluator`` (PIT with KS / CvM / AD and its outlier rate, the
point metrics of the p(z) mode, the CDE loss)::

    python benchmarks/rail_pipeline.py [--limit N]

Writes ``benchmarks/results/rail_pipeline.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BANDS = "ugriz"


def write_rail_table(path: Path, ids, images: np.ndarray, magnitudes: np.ndarray, z_spec: np.ndarray) -> Path:
    """A RAIL input table (HDF5, columns at the top level): ids, redshift, five magnitudes, flattened cutouts."""
    import h5py

    with h5py.File(path, "w") as f:
        f["object_id"] = np.array([str(i).encode() for i in ids])
        f["redshift"] = np.asarray(z_spec, dtype=np.float64)
        for k, band in enumerate(BANDS):
            f[f"mag_{band}_lsst"] = np.asarray(magnitudes[:, k], dtype=np.float64)
        f["images"] = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
    return path


def build_pipeline(table: Path, workdir: Path, chunk_size: int = 1000) -> Path:
    """Build the estimator → evaluator pipeline over ``table`` and save it (``pipe.yml`` and its config) in ``workdir``."""
    import ceci
    from rail.estimation.algos.cai_edge import CaiEdgeEstimator
    from rail.evaluation.evaluator import OldEvaluator

    estimator = CaiEdgeEstimator.make_stage(name="cai_edge", hdf5_groupname="", chunk_size=chunk_size, image_shape=[5, 32, 32])
    evaluator = OldEvaluator.make_stage(name="evaluate", hdf5_groupname="", zmin=0.0, zmax=1.0, nzbins=1000)
    pipe = ceci.Pipeline.interactive()
    for stage in (estimator, evaluator):
        pipe.add_stage(stage)
    evaluator.connect_input(estimator, inputTag="input")
    pipe.initialize({"input": str(table), "truth": str(table)}, {"output_dir": str(workdir), "log_dir": str(workdir), "resume": False}, None)
    pipe.save(str(workdir / "pipe.yml"))
    return workdir / "pipe.yml"


def run_pipeline(pipe_file: Path) -> tuple[dict, "object"]:
    """Run a saved pipeline as ceci does (a process per stage); its evaluator's metrics and the estimator's qp ensemble.

    ceci starts each stage with ``python3``: this Python's folder goes first on PATH so that it is this environment's.
    """
    import ceci
    import qp
    import tables_io

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    here = Path.cwd()
    os.chdir(pipe_file.parent)  # ceci writes the stages' logs and config paths relative to the pipeline file
    try:
        status = ceci.Pipeline.read(str(pipe_file)).run()
    finally:
        os.chdir(here)
    if status != 0:
        logs = "\n".join(p.read_text()[-3000:] for p in pipe_file.parent.glob("*.out"))
        raise RuntimeError(f"the RAIL pipeline failed (status {status}):\n{logs}")
    metrics = {k: float(np.asarray(v).ravel()[0]) for k, v in tables_io.read(str(pipe_file.parent / "output_evaluate.hdf5")).items()}
    return metrics, qp.read(str(pipe_file.parent / "output_cai_edge.hdf5"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="first N galaxies of the test split (default: all)")
    parser.add_argument("--workdir", default="/tmp/cai-edge-rail-pipeline")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rail_pipeline"))
    args = parser.parse_args()
    from cai_edge.models.datasets import rendered_split

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    test = rendered_split("test", limit=args.limit)
    table = write_rail_table(work / "test_split.hdf5", test.ids, test.images, test.magnitudes, test.z_spec)
    metrics, ensemble = run_pipeline(build_pipeline(table, work))
    usable = np.asarray(ensemble.ancil["usable"]) == 1
    report = {"galaxies": int(ensemble.npdf), "usable": int(usable.sum()), "images": "SIMULATED images of real SDSS galaxies (test split)",
              "pipeline": "CaiEdgeEstimator -> OldEvaluator (ceci)", "metrics": metrics}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items() if np.isfinite(v))
    out.with_suffix(".md").write_text(f"# RAIL's evaluator on CaiEdgeEstimator, {report['galaxies']} test-split galaxies "
                                      f"(SIMULATED images), all rows\n\n| metric | value |\n|---|---|\n{rows}\n")
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
