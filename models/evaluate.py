"""``cai-edge evaluate``: photo-z metrics of a model on labelled data, as JSON (and a scatter plot)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cai_edge.errors import UsageError
from cai_edge.metrics import bootstrap_errors, photoz_metrics


def scatter_plot(z_pred: np.ndarray, z_spec: np.ndarray, metrics: dict, title: str, out: str | Path, data: str = ""):
    """Write the z_pred vs z_spec figure to ``out``; returns the (closed) matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.hexbin(z_spec, z_pred, gridsize=60, bins="log", cmap="viridis", extent=(0, 0.4, 0, 0.4), mincnt=1)
    ax.plot([0, 0.4], [0, 0.4], "w--", lw=0.8)
    ax.set_xlabel(f"z_spec ({data or 'labelled data'})", fontsize=7)
    ax.set_ylabel("z_pred")
    ax.set_title(title, fontsize=8)
    # dark text on a light box: readable over the empty (white) and the filled (dark) parts of the plot alike
    ax.text(0.02, 0.37, f"σ_NMAD {metrics['sigma_nmad']:.4f}\nη(0.05) {metrics['eta_05']:.3f}\nbias {metrics['bias']:+.4f}\nN {metrics['n']}",
            color="black", va="top", fontsize=8, bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.6"})
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return fig


def run(args: argparse.Namespace) -> int:
    from cai_edge.models.datasets import load_labelled

    if args.plot:  # before any work: a missing plotting library is a one-line error, not a traceback after the JSON
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib, which this install lacks: pip install matplotlib "
                             "(from a cai-edge checkout: pip install -e \".[plot]\")") from None

    data = load_labelled(args.data, seed=args.seed)
    uncertainty = None
    if args.bundle:
        from cai_edge.predictor import Predictor

        predictor = Predictor(args.bundle, backend="onnxruntime")
        z_pred, label = predictor.predict_prepared(data.images, data.magnitudes).astype(np.float64), f"bundle {predictor.bundle.name}"
        calibration = predictor.bundle.calibration
        if calibration is not None:
            finite = np.isfinite(z_pred)
            uncertainty = calibration.score(z_pred[finite], data.magnitudes[finite], data.z_spec[finite])
    else:
        from cai_edge.models.reference import REFERENCE_WEIGHTS, load_reference_with_preprocessing
        from cai_edge.models.train import predict

        weights = args.weights or REFERENCE_WEIGHTS
        model, prep = load_reference_with_preprocessing(weights)
        z_pred, label = predict(model, prep, data), f"weights {Path(weights).name}"
    metrics = photoz_metrics(z_pred, data.z_spec)
    result = {"data": data.description, "model": label, "metrics": metrics, "bootstrap_std": bootstrap_errors(z_pred, data.z_spec)}
    if uncertainty is not None:
        result["uncertainty"] = uncertainty
    print(json.dumps(result, indent=2))
    if args.plot:
        scatter_plot(z_pred, data.z_spec, metrics, f"{label}\n{data.description}", args.plot, data.description)
    return 0
