"""GPU execution providers (CUDA, TensorRT) against the CPU provider: do they give the same redshifts, and how fast?

Run on a machine with an NVIDIA GPU::

    python benchmarks/gpu_providers.py --inputs model-inputs.npz --out results-dir

For each bundle (the shipped int8 default, and fp32 and fp16 graphs exported here from the
reference weights when torch is installed) and each GPU provider this onnxruntime build has,
it records: which provider actually ran the nodes, max |Δz|/(1+z) against the CPU provider
on the same prepared inputs, and galaxies/s at batch 256 and ms at batch 1, beside PyTorch
eager fp32 on the same GPU. It writes ``gpu_providers.json`` and ``gpu_providers.md``.
Nothing here is needed by the runtime; the script says plainly when no GPU provider exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
BATCH = 256


def _toolchain_importable() -> None:
    """``cai_edge.models``/``export``/``quantize`` from the checkout when the package is not installed."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    for sub in ("models", "export", "quantize"):
        name = f"cai_edge.{sub}"
        if name in sys.modules or importlib.util.find_spec(name) is not None:
            continue
        spec = importlib.util.spec_from_file_location(name, ROOT / sub / "__init__.py", submodule_search_locations=[str(ROOT / sub)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def _gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or "none"
    except (OSError, subprocess.SubprocessError):
        return "none"


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _bundles(workdir: Path) -> tuple[dict, object]:
    """``(name → Bundle, torch model or None)``: the shipped int8 default, plus fp32/fp16 exported here when torch is present."""
    from cai_edge.bundle import open_bundle, resolve_bundle

    bundles = {"int8 (shipped default)": resolve_bundle("astromae-sdss-int8")}
    try:
        import torch  # noqa: F401
    except ImportError:
        return bundles, None
    from cai_edge.export.bundle_writer import write_bundle
    from cai_edge.export.onnx_export import export_onnx
    from cai_edge.models.reference import load_reference_with_preprocessing
    from cai_edge.quantize.recipes import to_fp16

    model, prep = load_reference_with_preprocessing()
    proto = export_onnx(model)
    fields = {"variant": "fp32", "preprocessing": prep.to_dict(), "source": {"kind": "weights"}}
    bundles["fp32 (exported here)"] = open_bundle(write_bundle(workdir / "fp32", proto, {"name": "gpu-check-fp32", **fields}))
    half = to_fp16(proto)
    bundles["fp16 (converted here)"] = open_bundle(
        write_bundle(workdir / "fp16", half, {"name": "gpu-check-fp16", **fields, "variant": "fp16"}))
    return bundles, model


def _eager_gpu(model, images: np.ndarray, magnitudes: np.ndarray) -> dict | None:
    import torch

    if not torch.cuda.is_available():
        return None
    model = model.to("cuda").eval()
    img = torch.from_numpy(images).cuda()
    mag = torch.from_numpy(magnitudes).cuda()

    def batch():
        with torch.inference_mode():
            model(img, mag)
        torch.cuda.synchronize()

    seconds = _median_seconds(batch, 20)
    one_img, one_mag = img[:1], mag[:1]

    def single():
        with torch.inference_mode():
            model(one_img, one_mag)
        torch.cuda.synchronize()

    return {"galaxies_per_s": len(images) / seconds, "batch1_ms": _median_seconds(single, 100) * 1e3,
            "device": torch.cuda.get_device_name(0), "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", required=True, help="npz with prepared 'image' (N,5,32,32) and 'magnitude' (N,5)")
    parser.add_argument("--out", required=True, help="folder for gpu_providers.json and .md")
    args = parser.parse_args(argv)
    _toolchain_importable()
    import onnxruntime as ort

    from cai_edge.predictor import Predictor

    data = np.load(args.inputs)
    prepared_images = data["image"].astype(np.float32)
    magnitudes = data["magnitude"].astype(np.float32)
    reps = -(-BATCH // len(prepared_images))
    images = np.tile(prepared_images, (reps, 1, 1, 1))[:BATCH]
    mags = np.tile(magnitudes, (reps, 1))[:BATCH]
    available = ort.get_available_providers()
    result = {"onnxruntime": ort.__version__, "available_providers": available, "gpu": _gpu_name(),
              "host": platform.node(), "python": platform.python_version(), "galaxies": len(prepared_images), "rows": []}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        bundles, model = _bundles(Path(tmp))
        result["eager_gpu_fp32"] = _eager_gpu(model, images, mags) if model is not None else None
        for label, bundle in bundles.items():
            cpu = Predictor(bundle, providers="cpu")
            z_cpu = cpu.predict_prepared(prepared_images, magnitudes)
            for provider in GPU_PROVIDERS:
                row = {"bundle": label, "provider": provider}
                result["rows"].append(row)
                if provider not in available:
                    row["error"] = "not in this onnxruntime build"
                    continue
                try:
                    p = Predictor(bundle, providers=[provider])
                    z = p.predict_prepared(prepared_images, magnitudes)
                except Exception as exc:  # a provider that cannot take the graph is a finding, not a crash
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                    continue
                row["session_providers"] = p.providers
                row["max_dz_over_1pz_vs_cpu"] = float(np.nanmax(np.abs(z - z_cpu) / (1 + z_cpu)))
                row["nonfinite"] = int((~np.isfinite(z)).sum())
                row["galaxies_per_s"] = BATCH / _median_seconds(lambda: p.predict_prepared(images, mags), 20)
                row["batch1_ms"] = _median_seconds(lambda: p.predict_prepared(images[:1], mags[:1]), 100) * 1e3
    (out / "gpu_providers.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"GPU: {result['gpu']}; onnxruntime {result['onnxruntime']}; providers in this build: {', '.join(available)}.", "",
             "| bundle | provider | max Δz/(1+z) vs CPU | galaxies/s (batch 256) | batch-1 ms | note |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['bundle']} | {r['provider']} | | | | {r['error']} |")
        else:
            lines.append(f"| {r['bundle']} | {r['provider']} | {r['max_dz_over_1pz_vs_cpu']:.1e} | {r['galaxies_per_s']:.0f} | "
                         f"{r['batch1_ms']:.2f} | session: {', '.join(r['session_providers'])} |")
    eager = result["eager_gpu_fp32"]
    if eager:
        lines.append(f"| PyTorch eager fp32 ({eager['torch']}) | {eager['device']} | | {eager['galaxies_per_s']:.0f} | {eager['batch1_ms']:.2f} | |")
    lines.append("")
    lines.append(f"Inputs: {result['galaxies']} prepared galaxies (simulated images rendered from real SDSS photometry), tiled to batch {BATCH}.")
    (out / "gpu_providers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
