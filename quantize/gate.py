"""Is a quantized variant good enough to ship? Photo-z accuracy against fp32, and CPU speed.

Accuracy, on the validation split: |Δσ_NMAD| ≤ 3% relative, |Δbias| ≤ 0.001, and the
|Δz| > 0.05 outlier fraction no worse by more than 0.2 percentage points. Speed: a variant
slower than fp32 on this machine is flagged.
"""

from __future__ import annotations

import numpy as np

from cai_edge.bundle import Bundle
from cai_edge.compare.measure import throughput
from cai_edge.machine import machine_info, usable_cores
from cai_edge.metrics import photoz_metrics
from cai_edge.predictor import Predictor

SIGMA_NMAD_REL = 0.03
BIAS_ABS = 0.001
ETA_05_INCREASE = 0.002


def accuracy_gate(reference: dict, candidate: dict) -> dict:
    d_sigma = abs(candidate["sigma_nmad"] - reference["sigma_nmad"]) / reference["sigma_nmad"]
    d_bias = abs(candidate["bias"] - reference["bias"])
    d_eta = candidate["eta_05"] - reference["eta_05"]
    checks = {
        "sigma_nmad_relative_change": {"value": d_sigma, "limit": SIGMA_NMAD_REL, "passed": d_sigma <= SIGMA_NMAD_REL},
        "bias_change": {"value": d_bias, "limit": BIAS_ABS, "passed": d_bias <= BIAS_ABS},
        "eta_05_increase": {"value": d_eta, "limit": ETA_05_INCREASE, "passed": d_eta <= ETA_05_INCREASE},
    }
    return {"passed": all(c["passed"] for c in checks.values()), "checks": checks}


def galaxies_per_second(bundle: Bundle, image: np.ndarray, magnitude: np.ndarray, batch: int = 256, threads: int | None = None, seconds: float = 3.0) -> float:
    """Throughput of the ONNX session alone, on one prepared batch repeated for ``seconds``."""
    return throughput(Predictor(bundle, threads=threads, backend="onnxruntime"), image[:batch], magnitude[:batch], batch, seconds)


def speed_gate(reference: Bundle, candidate: Bundle, image: np.ndarray, magnitude: np.ndarray) -> dict:
    threads = usable_cores()
    ref = galaxies_per_second(reference, image, magnitude, threads=threads)
    cand = galaxies_per_second(candidate, image, magnitude, threads=threads)
    return {
        "passed": cand >= ref, "flagged": cand < ref, "fp32_galaxies_per_s": round(ref, 1),
        "galaxies_per_s": round(cand, 1), "speedup": round(cand / ref, 3), "batch": 256, "threads": threads,
        "cpu": machine_info()["cpu_model"],
    }


def bundle_metrics(bundle: Bundle, images: np.ndarray, magnitudes: np.ndarray, z_spec: np.ndarray, backend: str = "onnxruntime") -> dict:
    """Photo-z metrics of ``bundle`` run on ``backend`` (recorded with them: the gate holds per backend)."""
    z = Predictor(bundle, backend=backend).predict_prepared(images, magnitudes)
    return {**photoz_metrics(z, z_spec), "backend": backend}
