"""Is each p(z) smooth, and still calibrated? Before (piecewise-linear CDF) and now (cai_edge.smooth_pz).

On the rendered test split and a held-out check — the test split's galaxies rendered again with
another seed (new noise and profile draws; SIMULATED images of real SDSS galaxies, never used to
fit anything) — every galaxy goes through the runtime's own path (``records_from_arrays`` →
:func:`cai_edge.estimates.estimate` with p(z) quantiles, the rows ``cai-edge predict --pdf``
writes), and its p(z) is rebuilt from the stored quantiles as a reader does (:mod:`cai_edge.pdfs`).
"Before" is the piecewise-linear CDF through the same calibrated quantiles, truncated at z = 0.

Per data set: the share of p(z) with at most 2 local maxima above 5 % of the peak on a 0.0005
grid, their median count, PIT KS and χ², the CDE loss, CRPS, 68 % / 95 % coverage of the p(z)'s central
intervals, and the share of PIT at 0 or 1 (z_spec outside the whole p(z))::

    python benchmarks/pz_smoothness.py [--bundle NAME] [--held-out 2000]

Writes ``benchmarks/results/pz_smoothness.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from cai_edge.estimates import estimate  # noqa: E402
from cai_edge.io.npz_partitions import records_from_arrays  # noqa: E402
from cai_edge.metrics import cde_loss, coverage, crps, density_maxima, pit_histogram  # noqa: E402
from cai_edge.predictor import Predictor  # noqa: E402
from cai_edge.smooth_pz import SmoothQuantiles  # noqa: E402
from trust_figures import machine_header  # noqa: E402

STEP = 0.0005


def linear_cdf(levels: np.ndarray, knots: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Before: the piecewise-linear CDF through untruncated quantiles, truncated at z = 0 and renormalised."""
    f = np.stack([np.interp(grid, row, levels, left=0.0, right=1.0) for row in knots])
    f0 = np.array([np.interp(0.0, row, levels, left=0.0, right=1.0) for row in knots])[:, None]
    return np.where(grid >= 0, np.clip((f - f0) / (1 - f0), 0, 1), 0.0)


def linear_quantiles(levels: np.ndarray, knots: np.ndarray, at: tuple[float, ...]) -> np.ndarray:
    f0 = np.array([np.interp(0.0, row, levels, left=0.0, right=1.0) for row in knots])
    return np.stack([np.interp(f + np.asarray(at) * (1 - f), levels, row) for row, f in zip(knots, f0)])


def scores(cdf_edges: np.ndarray, edges: np.ndarray, pit: np.ndarray, z_spec: np.ndarray, bounds: np.ndarray) -> dict:
    density = np.diff(cdf_edges, axis=1) / STEP
    maxima = density_maxima(density)
    pit_stats = pit_histogram(pit)
    return {"at_most_2_maxima": float(np.mean(maxima <= 2)), "median_maxima": float(np.median(maxima)),
            "pit_ks": pit_stats["ks"], "pit_chi2": pit_stats["chi2"], "pit_outside": pit_stats["outside"], "crps": crps(cdf_edges, edges, z_spec),
            "cde_loss": cde_loss(density, (edges[:-1] + edges[1:]) / 2, z_spec),
            "coverage_68": coverage(z_spec, bounds[:, 0], bounds[:, 1]), "coverage_95": coverage(z_spec, bounds[:, 2], bounds[:, 3])}


def measure(predictor: Predictor, ids, images, mags, z_spec) -> dict:
    calibration = predictor.bundle.calibration
    levels = np.asarray(calibration.levels)
    results = [e for e in estimate(predictor, list(records_from_arrays(Path("data"), images, mags, ids, z_spec)), 256, True) if e.record.ok]
    z_spec = np.array([e.record.z_spec for e in results])
    z_pred = np.array([e.z_pred for e in results])
    m = np.stack([e.record.magnitudes for e in results])
    stored = np.stack([e.quantiles for e in results])
    edges = np.arange(0.0, float(stored.max()) + 2 * STEP, STEP)
    smooth = SmoothQuantiles(levels, stored)  # as a reader of the output rebuilds it (cai_edge.pdfs)
    columns = np.array([[e.interval[k] for k in ("z_lo68", "z_hi68", "z_lo95", "z_hi95")] for e in results])
    knots = z_pred[:, None] + (1 + z_pred[:, None]) * calibration.residual_quantiles(z_pred, m)
    before_pit = np.array([linear_cdf(levels, row[None], np.array([z]))[0, 0] for row, z in zip(knots, z_spec)])
    out = {"galaxies": len(results),
           "before": scores(linear_cdf(levels, knots, edges), edges, before_pit, z_spec,
                            linear_quantiles(levels, knots, (0.16, 0.84, 0.025, 0.975))),
           "now": scores(smooth.cdf(edges), edges, smooth.cdf_at(z_spec), z_spec, columns)}
    out["now"]["pz_interval_vs_columns"] = float(np.max(np.abs(smooth.quantiles((0.16, 0.84, 0.025, 0.975)) - columns)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default=None, help="bundle name or path (default: the shipped default)")
    parser.add_argument("--held-out", type=int, default=2000, help="test-split galaxies rendered again with seed 1")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pz_smoothness"))
    args = parser.parse_args()
    from cai_edge.models.datasets import rendered_split

    predictor = Predictor(*([args.bundle] if args.bundle else []), threads=2)
    sets = {"test split (seed 0)": rendered_split("test"), f"held-out check ({args.held_out}, seed 1)": rendered_split("test", seed=1, limit=args.held_out)}
    report = {"machine": machine_header(), "bundle": predictor.bundle.name,
              "images": "SIMULATED images of real SDSS galaxies (test split)",
              "sets": {name: measure(predictor, list(s.ids), s.images, s.magnitudes, s.z_spec) for name, s in sets.items()}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = [f"# p(z) smoothness and calibration, {report['bundle']} (SIMULATED images of real SDSS galaxies)", "",
             "| data | galaxies | p(z) | ≤ 2 maxima > 5 % of peak | median maxima | PIT KS | PIT χ² (9 dof) | PIT at 0 or 1 | CDE loss | CRPS | 68 % coverage | 95 % coverage |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["sets"].items():
        for label, key in (("piecewise-linear CDF (before)", "before"), ("smooth (smooth_pz)", "now")):
            s = r[key]
            lines.append(f"| {name} | {r['galaxies']} | {label} | {s['at_most_2_maxima']:.3f} | {s['median_maxima']:.0f} | {s['pit_ks']:.4f} | "
                         f"{s['pit_chi2']:.1f} | {s['pit_outside']:.4f} | {s['cde_loss']:.3f} | {s['crps']:.5f} | {s['coverage_68']:.4f} | {s['coverage_95']:.4f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
