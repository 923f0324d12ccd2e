"""The accuracy gate for every backend: each bundle run on ONNX Runtime and on OpenVINO (f32 and bf16 hints).

    python benchmarks/backend_gate.py [--fp32 BUNDLE] [--validation sdss:validation]

The gate is the one a quantized bundle must pass to ship (``cai_edge.quantize.gate``): σ_NMAD
within 3 % relative, bias within 0.001 and the 0.05 outlier fraction no worse by 0.2 points, on
the validation split, against the fp32 bundle on ONNX Runtime. Each row records its backend.
Needs the ``openvino`` extra. Images are simulated (rendered from real SDSS photometry).
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
    args = parser.parse_args()

    from cai_edge.bundle import resolve_bundle
    from cai_edge.models.datasets import load_labelled
    from cai_edge.quantize.gate import bundle_metrics

    int8, fp32 = resolve_bundle("default"), resolve_bundle(args.fp32)
    val = load_labelled(args.validation)
    reference = bundle_metrics(fp32, val.images, val.magnitudes, val.z_spec, "onnxruntime")
    rows = gate_rows([int8, fp32], reference, val.images, val.magnitudes, val.z_spec)
    save("backend_gate", {"validation": val.description, "reference": reference, "rows": rows}, markdown(rows, reference, val.description))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
