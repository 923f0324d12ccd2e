"""Can the rows be trusted? Coverage, PIT, CRPS and flag rates of calibrated bundles (SIMULATED images).

For each bundle: the rendered test split (simulated images of real SDSS Main Galaxy Sample
galaxies; never used to fit anything) and BOSS DR10 galaxies rendered the same way (fainter,
z up to 1: outside the training domain). Every galaxy goes through the runtime's own path —
``records_from_arrays`` (flux check) → :func:`cai_edge.estimates.estimate` — so the figures are
those of the rows ``cai-edge predict`` writes.

    python benchmarks/trust_figures.py --bundles B/astromae-sdss-fp32 B/astromae-sdss-int8 [--boss 2000]

Writes ``benchmarks/results/trust.json`` and ``trust.md`` (and ``docs/calibrated_intervals.png``
with ``--plot``).
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
from cai_edge.machine import cpu_model, simd_flags, usable_cores  # noqa: E402
from cai_edge.io.npz_partitions import records_from_arrays  # noqa: E402
from cai_edge.metrics import photoz_metrics  # noqa: E402
from cai_edge.predictor import Predictor  # noqa: E402

BOSS_FILE = ROOT.parent / "shared" / "data" / "annz2_boss_dr10" / "boss_dr10_0.csv"
CATASTROPHIC = 0.15


def machine_header() -> str:
    return f"{cpu_model()}, SIMD {' '.join(simd_flags()) or 'none listed'}, {usable_cores()} usable cores"


def load_boss(n: int, seed: int = 0):
    """The first ``n`` usable BOSS DR10 galaxies of the ANNZ2 file, rendered like the training images."""
    from cai_edge.models.render import RenderCatalog, iter_rendered
    from cai_edge.preprocessing import center_crop

    raw = np.loadtxt(BOSS_FILE, delimiter=",", comments="#")
    mags, z = raw[:, [0, 2, 4, 6, 8]], raw[:, 10]
    keep = (z > 0.005) & np.all((mags > 5) & (mags < 35), axis=1)
    mags, z = mags[keep][:n], z[keep][:n]
    ids = [f"boss-{i}" for i in range(len(z))]
    images = np.empty((len(z), 5, 32, 32), dtype=np.float32)
    for start, chunk in iter_rendered(RenderCatalog(ids, mags, z, []), seed, True, 2):
        images[start : start + len(chunk)] = center_crop(chunk)
    return ids, images, mags.astype(np.float32), z


def run_bundle(predictor: Predictor, ids, images, mags, z_spec) -> dict:
    records = list(records_from_arrays(Path("data"), images, mags, ids, z_spec))
    results = estimate(predictor, records, 256)
    ok = [e for e in results if e.record.ok]
    z = np.array([e.z_pred for e in ok])
    zs = np.array([e.record.z_spec for e in ok])
    flags = [set(e.record.flags) | set(e.flags) for e in ok]
    trust = [f - {"uncalibrated"} for f in flags]
    flagged = np.array([bool(f) for f in trust])
    out = {"galaxies": len(results), "predicted": len(ok), "flagged_fraction": float(flagged.mean()),
           "flag_counts": {f: int(sum(f in s for s in flags)) for f in sorted(set().union(*flags))},
           "all": photoz_metrics(z, zs)}
    if (~flagged).sum():
        out["unflagged"] = photoz_metrics(z[~flagged], zs[~flagged])
    calibration = predictor.bundle.calibration
    lo68 = hi68 = pit = None
    if calibration is not None:
        m = np.stack([e.record.magnitudes for e in ok])
        out.update(calibration.score(z, m, zs))  # coverage, PIT, CRPS: the definitions evaluate and compare use
        lo68 = np.array([e.interval["z_lo68"] for e in ok])
        hi68 = np.array([e.interval["z_hi68"] for e in ok])
        pit = calibration.cdf(z, m, zs)
    dz = np.abs(z - zs) / (1 + zs)
    catastrophic = dz > CATASTROPHIC
    out["catastrophic"] = int(catastrophic.sum())
    out["catastrophic_flagged_fraction"] = float(flagged[catastrophic].mean()) if catastrophic.any() else None
    out["_arrays"] = {"z": z, "z_spec": zs, "lo68": lo68, "hi68": hi68, "pit": pit}
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, r = next(iter(results.items()))
    a = r["test"]["_arrays"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    sel = np.random.default_rng(0).choice(len(a["z"]), min(600, len(a["z"])), replace=False)
    ax1.errorbar(a["z_spec"][sel], a["z"][sel], yerr=[a["z"][sel] - a["lo68"][sel], a["hi68"][sel] - a["z"][sel]],
                 fmt=".", ms=3, elinewidth=0.6, alpha=0.6, color="tab:blue")
    ax1.plot([0, 0.4], [0, 0.4], "k--", lw=0.8)
    ax1.set_xlabel("z_spec (SDSS test split)")
    ax1.set_ylabel("z_pred with its 68 % interval")
    ax1.set_title(f"{name}: 600 test galaxies (SIMULATED images)")
    ax2.hist(a["pit"], bins=20, range=(0, 1), color="tab:orange", edgecolor="k")
    ax2.axhline(len(a["pit"]) / 20, color="k", ls="--", lw=0.8)
    ax2.set_xlabel("PIT = P(z ≤ z_spec)")
    ax2.set_ylabel("galaxies")
    cov = r["test"]
    ax2.set_title(f"PIT, test split: 68 % cover {cov['coverage_68']:.3f}, 95 % cover {cov['coverage_95']:.3f}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="+", required=True)
    parser.add_argument("--boss", type=int, default=2000, help="BOSS galaxies to render (0: none)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "trust"))
    parser.add_argument("--plot", action="store_true", help="write docs/calibrated_intervals.png")
    args = parser.parse_args()
    from cai_edge.models.datasets import rendered_split

    test = rendered_split("test")
    boss = load_boss(args.boss) if args.boss else None
    results = {}
    for spec in args.bundles:
        predictor = Predictor(spec, threads=2)
        entry = {"test": run_bundle(predictor, list(test.ids), test.images, test.magnitudes, test.z_spec)}
        if boss is not None:
            entry["boss"] = run_bundle(predictor, *boss)
        results[predictor.bundle.name] = entry
    if args.plot:
        plot(results, ROOT / "docs" / "calibrated_intervals.png")
    clean = {k: {part: {kk: vv for kk, vv in v.items() if kk != "_arrays"} for part, v in e.items()} for k, e in results.items()}
    report = {"machine": machine_header(), "images": "SIMULATED images of real SDSS galaxies (test split) and BOSS DR10 galaxies",
              "bundles": clean}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = ["# Trust figures (SIMULATED images of real SDSS / BOSS galaxies)", "", f"Machine: {machine_header()}", "",
             "| bundle | data | galaxies | 68 % coverage | 95 % coverage | median z_err | PIT χ² (9 dof) | PIT KS | CRPS | flagged | σ_NMAD all | σ_NMAD unflagged | catastrophic (>0.15) | of them flagged |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in clean.items():
        for part, r in entry.items():
            def f(key, fmt="{:.4f}"):
                v = r.get(key)
                return fmt.format(v) if isinstance(v, (int, float)) else "—"
            pit = r.get("pit") or {}
            lines.append(f"| {name} | {'test split' if part == 'test' else 'BOSS DR10'} | {r['galaxies']} | {f('coverage_68')} | {f('coverage_95')} | "
                         f"{f('median_z_err')} | {pit.get('chi2', float('nan')):.1f} | {pit.get('ks', float('nan')):.4f} | {f('crps', '{:.5f}')} | "
                         f"{r['flagged_fraction']:.4f} | {r['all']['sigma_nmad']:.5f} | {r.get('unflagged', {}).get('sigma_nmad', float('nan')):.5f} | "
                         f"{r['catastrophic']} | {f('catastrophic_flagged_fraction')} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
