"""``cai-edge export``: weights or a CAI checkpoint → a verified fp32 ONNX bundle."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from cai_edge.bundle import default_out, open_bundle
from cai_edge.bundle.writer import check_bundle_outputs
from cai_edge.export.bundle_writer import update_manifest, write_bundle, zip_bundle
from cai_edge.export.onnx_export import export_onnx
from cai_edge.export.parity import check_parity
from cai_edge.metrics import photoz_metrics
from cai_edge.models.datasets import GalaxySet, rendered_split
from cai_edge.preprocessing import Preprocessing

PARITY_GALAXIES = 256


def _load_model(weights: str | None, checkpoint: str | None):
    """``(model, preprocessing, source description, default name)``."""
    if checkpoint:
        from cai_edge.models.checkpoint import load_checkpoint

        path = Path(checkpoint)
        source = {"kind": "cai_checkpoint", "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        return load_checkpoint(path), Preprocessing(), source, "astromae-cai"
    from cai_edge.models.reference import REFERENCE_WEIGHTS, load_reference_with_preprocessing, read_sidecar

    path = Path(weights) if weights else REFERENCE_WEIGHTS
    model, prep = load_reference_with_preprocessing(path)
    sidecar = read_sidecar(path)
    source = {"kind": "weights", "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
              "images": sidecar.get("images", "")}
    return model, prep, source, "astromae-sdss"


def validation_metrics(bundle_path: Path, data: GalaxySet) -> dict:
    from cai_edge.predictor import Predictor

    z = Predictor(open_bundle(bundle_path), backend="onnxruntime").predict_prepared(data.images, data.magnitudes)
    return {"data": data.description, **photoz_metrics(z, data.z_spec)}


def export_bundle(
    out: str | Path | None,
    weights: str | None = None,
    checkpoint: str | None = None,
    name: str | None = None,
    make_zip: bool = False,
    validation_limit: int | None = None,
) -> Path:
    model, prep, source, default_name = _load_model(weights, checkpoint)
    proto = export_onnx(model)
    validation = rendered_split("validation", 0, validation_limit)
    parity_data = validation.subset(slice(0, PARITY_GALAXIES))
    parity = check_parity(model, proto.SerializeToString(), parity_data.images, parity_data.magnitudes, prep)
    fields = {"name": f"{name or default_name}-fp32", "variant": "fp32", "preprocessing": prep.to_dict(), "source": source, "parity": parity}
    path = write_bundle(out or default_out(fields["name"]), proto, fields)

    update_manifest(path, {"metrics": {"validation": validation_metrics(path, validation)}})
    return zip_bundle(path) if make_zip else path


def run(args: argparse.Namespace) -> int:
    check_bundle_outputs(args.out, args.zip, reading=(args.weights, args.checkpoint))
    path = export_bundle(args.out, args.weights, args.checkpoint, args.name, args.zip, args.validation_limit)
    bundle = open_bundle(path)
    m = bundle.manifest
    print(f"exported {m['name']} ({m['variant']}, opset {m['opset']}) → {path}")
    print(f"  parity with PyTorch: max |Δz| {m['parity']['max_abs_dz']:.2e} on {m['parity']['n']} galaxies (tolerance {m['parity']['tolerance']:g})")
    v = m["metrics"]["validation"]
    print(f"  validation: σ_NMAD {v['sigma_nmad']:.5f}, bias {v['bias']:+.5f}, η(0.05) {v['eta_05']:.4f} on {v['n']} galaxies (simulated images)")
    print(f"  model.onnx sha256 {bundle.sha256}")
    return 0
