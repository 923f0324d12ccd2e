"""The accuracy gate for every backend: each bundle run on ONNX Runtime and on OpenVINO (f32 and bf16 hints).

    python benchmarks/backend_gate.py [--fp32 BUNDLE] [--validation sdss:validation] [--test sdss:test]

The gate is the one a quantized bundle must pass to ship (``cai_edge.quantize.gate``): σ_NMAD
within 3 % relative, bias within 0.001 and the 0.05 outlier fraction no worse by 0.2 points, on
the validation split, against the fp32 bundle on ONNX Runtime. Each row records its backend.
Then, on the test split, each bundle's σ_NMAD and the coverage of its calibrated 68 % and 95 %
intervals on every backend, against the same bundle on ONNX Runtime, with bootstrap errors (1,000
resamplings of the galaxies): a backend leaves a figure unchanged when it moves it by less than
that figure's bootstrap error. Needs the ``openvino`` extra. Images are simulated (rendered from
real SDSS photometry).
Writes benchmarks/results/backend_gate.{json,md}.
"""

from __future__ import annotations

import argparse

import numpy as np

from common import save

BACKENDS = ("onnxruntime", "openvino", "openvino-bf16")


def gate_rows(bundles: list, reference: dict, images: np.ndarray, magnitudes: np.ndarray, z_spec: np.ndarray,
              backends: tuple[str, ...] = BACKENDS) -> list[dict]:
    """One row per bundle and backend: its metrics and the accuracy gate against ``reference``."""
    from cai_edge.quantize.gate import accuracy_gate, bundle_metrics

    rows = []
    for bundle in bundles:
        for backend in backends:
            metrics = bundle_metrics(bundle, images, magnitudes, z_spec, backend)
            rows.append({"bundle": bundle.name, "backend": backend, "metrics": metrics, "accuracy_gate": accuracy_gate(reference, metrics)})
            print(f"{bundle.name} on {backend}: σ_NMAD {metrics['sigma_nmad']:.5f}, gate {'passed' if rows[-1]['accuracy_gate']['passed'] else 'FAILED'}", flush=True)
    return rows


BOOTSTRAP = 1000


def test_split_rows(bundles: list, images: np.ndarray, magnitudes: np.ndarray, z_spec: np.ndarray,
                    backends: tuple[str, ...] = BACKENDS) -> list[dict]:
    """σ_NMAD and interval coverage of each bundle on each backend, with bootstrap errors; each against its ONNX Runtime
    run (the first backend): the difference, with the bootstrap error of the difference on the same resamplings
    (paired), and the largest |Δz|/(1+z) between the two on any galaxy."""
    from cai_edge.metrics import coverage, delta_z, sigma_nmad
    from cai_edge.predictor import Predictor

    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(z_spec), (BOOTSTRAP, len(z_spec)))
    rows = []
    for bundle in bundles:
        reference = None
        for backend in backends:
            z = Predictor(bundle, backend=backend).predict_prepared(images, magnitudes).astype(np.float64)
            iv, dz = bundle.calibration.intervals(z, magnitudes), delta_z(z, z_spec)
            # each figure on a selection of the galaxies (all of them, or a bootstrap resampling)
            measure = {"sigma_nmad": lambda i: sigma_nmad(dz[i]),
                       "coverage_68": lambda i: coverage(z_spec[i], iv["z_lo68"][i], iv["z_hi68"][i]),
                       "coverage_95": lambda i: coverage(z_spec[i], iv["z_lo95"][i], iv["z_hi95"][i])}
            resampled = {name: np.array([figure(d) for d in draws]) for name, figure in measure.items()}
            figures = {name: {"value": float(figure(slice(None))), "bootstrap_error": float(np.std(resampled[name]))}
                       for name, figure in measure.items()}
            reference = reference or {"z": z, "figures": figures, "resampled": resampled}
            unchanged = {name: abs(f["value"] - reference["figures"][name]["value"]) <= reference["figures"][name]["bootstrap_error"]
                         for name, f in figures.items()}
            paired = {name: {"value": f["value"] - reference["figures"][name]["value"],
                             "bootstrap_error": float(np.std(resampled[name] - reference["resampled"][name]))}
                      for name, f in figures.items()}
            max_dz = float(np.max(np.abs(z - reference["z"]) / (1 + reference["z"])))
            rows.append({"bundle": bundle.name, "backend": backend, "figures": figures, "unchanged": unchanged,
                         "paired_difference": paired, "max_abs_dz_over_1pz": max_dz})
            print(f"{bundle.name} on {backend}: " + ", ".join(f"{k} {f['value']:.5f} ± {f['bootstrap_error']:.5f}" for k, f in figures.items())
                  + f"; max |Δz|/(1+z) {max_dz:.5f}", flush=True)
    return rows


def test_markdown(rows: list[dict], data: str) -> str:
    lines = ["| bundle | backend | σ_NMAD | 68 % interval coverage | 95 % interval coverage | unchanged within the bootstrap error "
             "| Δσ_NMAD, Δcoverage 68 %, 95 % (paired error) | max \\|Δz\\|/(1+z) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, d = r["figures"], r["paired_difference"]
        cells = [f"{f[k]['value']:.5f} ± {f[k]['bootstrap_error']:.5f}" if k == "sigma_nmad" else f"{f[k]['value']:.4f} ± {f[k]['bootstrap_error']:.4f}"
                 for k in ("sigma_nmad", "coverage_68", "coverage_95")]
        paired = ", ".join(f"{d[k]['value']:+.5f} ({d[k]['bootstrap_error']:.5f})" for k in ("sigma_nmad", "coverage_68", "coverage_95"))
        lines.append(f"| {r['bundle']} | {r['backend']} | {' | '.join(cells)} | {'yes' if all(r['unchanged'].values()) else '**no**'} "
                     f"| {paired} | {r['max_abs_dz_over_1pz']:.5f} |")
    lines += ["", f"Each bundle on each backend against the same bundle on onnxruntime; errors are bootstrap standard errors "
              f"({BOOTSTRAP} resamplings of the galaxies; the paired error is that of the difference on the same resamplings); {data}."]
    return "\n".join(lines)


def markdown(rows: list[dict], reference: dict, data: str) -> str:
    lines = ["| bundle | backend | σ_NMAD | bias | η(0.05) | Δσ_NMAD (rel.) | gate |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        m, checks = r["metrics"], r["accuracy_gate"]["checks"]
        lines.append(f"| {r['bundle']} | {r['backend']} | {m['sigma_nmad']:.5f} | {m['bias']:+.5f} | {m['eta_05']:.4f} | "
                     f"{100 * checks['sigma_nmad_relative_change']['value']:.2f} % | {'passed' if r['accuracy_gate']['passed'] else '**failed**'} |")
    lines += ["", f"Reference: fp32 on onnxruntime, σ_NMAD {reference['sigma_nmad']:.5f}, bias {reference['bias']:+.5f}, "
              f"η(0.05) {reference['eta_05']:.4f}; {data}."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", default="astromae-sdss-fp32", help="the fp32 bundle (name or path; `cai-edge export` makes it)")
    parser.add_argument("--validation", default="sdss:validation")
    parser.add_argument("--test", default="sdss:test")
    args = parser.parse_args()

    from cai_edge.bundle import resolve_bundle
    from cai_edge.models.datasets import load_labelled
    from cai_edge.quantize.gate import bundle_metrics

    int8, fp32 = resolve_bundle("default"), resolve_bundle(args.fp32)
    val = load_labelled(args.validation)
    reference = bundle_metrics(fp32, val.images, val.magnitudes, val.z_spec, "onnxruntime")
    rows = gate_rows([int8, fp32], reference, val.images, val.magnitudes, val.z_spec)
    test = load_labelled(args.test)
    on_test = test_split_rows([int8, fp32], test.images, test.magnitudes, test.z_spec)
    save("backend_gate", {"validation": val.description, "reference": reference, "rows": rows, "test": test.description, "test_rows": on_test},
         markdown(rows, reference, val.description) + "\n\n" + test_markdown(on_test, test.description))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
