"""``cai-edge quantize``: an fp32 bundle → fp16 / int8-dynamic / int8-static, gated on photo-z accuracy."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import onnx

from cai_edge.bundle import default_out, open_bundle, resolve_bundle
from cai_edge.errors import CaiEdgeError
from cai_edge.bundle.writer import check_bundle_outputs
from cai_edge.export.bundle_writer import write_bundle, zip_bundle
from cai_edge.models.datasets import GalaxySet, load_labelled
from cai_edge.quantize.gate import accuracy_gate, bundle_metrics, speed_gate
from cai_edge.quantize.nodes import SENSITIVE_NODES, weight_nodes
from cai_edge.quantize.integer_layers import as_integer_matmuls
from cai_edge.quantize.runtime_dequantize import layers_run_in_float
from cai_edge.quantize.recipes import ArrayCalibrationReader, store_weights_int8, to_fp16, to_int8_dynamic, to_int8_static

NAME_SUFFIX = {"fp16": "fp16", "int8-dynamic": "int8-dynamic", "int8-static": "int8"}
MIN_CALIBRATION = 500


class CalibrationDataError(CaiEdgeError):
    """Calibration data must come from the training split, and be large enough."""


def _calibration(spec: str, size: int) -> GalaxySet:
    if spec.startswith("sdss:") and spec.split(":")[1] != "train":
        raise CalibrationDataError(f"calibrate on the training split only (got {spec}); validation and test judge the result")
    data = load_labelled(spec)
    if len(data) < min(size, MIN_CALIBRATION):
        raise CalibrationDataError(f"{spec}: {len(data)} galaxies; calibration needs at least {MIN_CALIBRATION}")
    return data.subset(slice(0, size))


def _base_name(name: str) -> str:
    return name[: -len("-fp32")] if name.endswith("-fp32") else name


def quantize_bundle(
    source: str | Path,
    variant: str,
    out: str | Path | None,
    calibration: str = "sdss:train:512",
    calibration_size: int = 512,
    method: str = "minmax",
    validation: str = "sdss:validation",
    debug: bool = False,
    make_zip: bool = False,
    float_convs: bool = False,
) -> tuple[Path, dict]:
    fp32 = resolve_bundle(source)
    if fp32.variant != "fp32":
        raise CaiEdgeError(f"quantize starts from an fp32 bundle; {fp32.path} is {fp32.variant}")
    prep = fp32.preprocessing
    proto = onnx.load_from_string(fp32.model_bytes)
    val = load_labelled(validation)
    reference = bundle_metrics(fp32, val.images, val.magnitudes, val.z_spec)
    fields = {
        "name": f"{_base_name(fp32.name)}-{NAME_SUFFIX[variant]}",
        "variant": variant,
        "preprocessing": prep.to_dict(),
        "source": {"kind": "bundle", "name": fp32.name, "bundle_sha256": fp32.sha256},
    }
    debug_rows: list[dict] = []
    ran_in_float: list[str] = []
    integer_layers: list[str] = []
    attempts = []
    excludes: list[tuple[str, ...]] = [()]
    reader = None
    if variant == "int8-static":
        cal = _calibration(calibration, calibration_size)
        reader = ArrayCalibrationReader(*prep.network_inputs(cal.images, cal.magnitudes))
        convs = tuple(weight_nodes(proto, ("Conv",)))
        excludes = [convs, SENSITIVE_NODES + convs] if float_convs else [(), SENSITIVE_NODES, SENSITIVE_NODES + convs]
        fields["quantization"] = {
            "format": "QDQ", "weights": "int8 in 7 bits (±64, reduce_range), per-channel, symmetric", "activations": "uint8, asymmetric",
            "calibration": {"data": cal.description, "galaxies": len(cal), "split": "train", "method": method},
        }
    elif variant == "int8-dynamic":
        fields["quantization"] = {"format": "dynamic (MatMulInteger)", "weights": "int8", "ops": ["MatMul", "Gemm"]}
    else:
        fields["quantization"] = {"format": "float16 weights and compute", "io": "float32"}

    with tempfile.TemporaryDirectory() as tmp:
        for exclude in excludes:
            if variant == "int8-static":
                reader.rewind()
                quantized = to_int8_static(proto, reader, method, exclude)
                slow = layers_run_in_float(proto, quantized)
                integer_layers = []  # this attempt's: the last attempt is the one that ships
                if slow:  # layers ORT would dequantize on every call: explicit MatMulInteger where the form allows …
                    rewritten, integer_layers = as_integer_matmuls(quantized, slow)
                    in_float = [n for n in slow if n not in integer_layers]
                    if in_float:  # … else computed in float, their weights stored int8 (a new quantization: rewrite again)
                        exclude = exclude + tuple(in_float)
                        ran_in_float.extend(in_float)
                        reader.rewind()
                        quantized = store_weights_int8(to_int8_static(proto, reader, method, exclude), in_float)
                        rewritten, integer_layers = as_integer_matmuls(quantized, integer_layers)
                    quantized = rewritten
            elif variant == "int8-dynamic":
                quantized = to_int8_dynamic(proto)
            else:
                quantized = to_fp16(proto)
            trial = write_bundle(Path(tmp) / f"trial{len(attempts)}", quantized, {**fields, "quantization": {**fields["quantization"], "kept_float": list(exclude)}})
            candidate = open_bundle(trial)
            metrics = bundle_metrics(candidate, val.images, val.magnitudes, val.z_spec)
            gate = accuracy_gate(reference, metrics)
            attempts.append({"kept_float": list(exclude), "metrics": metrics, "accuracy_gate": gate})
            if gate["passed"]:
                break
        if debug and variant == "int8-static":
            from cai_edge.quantize.debug import sqnr_report

            debug_rows = sqnr_report(proto, quantized, reader)
        speed = speed_gate(fp32, candidate, *prep.network_inputs(val.images[:256], val.magnitudes[:256]))
        final = attempts[-1]
        fields["quantization"]["kept_float"] = list(dict.fromkeys(final["kept_float"]))  # each node once
        if integer_layers:
            # ONNX Runtime has no fusion for these QDQ layers: written out as MatMulInteger → Cast → Mul (→ Add)
            fields["quantization"]["matmul_integer_layers"] = sorted(set(integer_layers))
        if ran_in_float:
            # ONNX Runtime has no integer kernel for these QDQ layers (it would dequantize their weights on every call)
            fields["quantization"]["float_compute_int8_weights"] = sorted(set(ran_in_float))
        fields["quantization"]["attempts"] = [{"kept_float": a["kept_float"], "accuracy_passed": a["accuracy_gate"]["passed"]} for a in attempts]
        fields["metrics"] = {"validation": {"data": val.description, **final["metrics"]}, "fp32_validation": reference}
        fields["gate"] = {
            "passed": final["accuracy_gate"]["passed"],
            "accuracy": final["accuracy_gate"],
            "speed": speed,
            "shippable_as_default": final["accuracy_gate"]["passed"] and not speed["flagged"],
        }
        path = write_bundle(out or default_out(fields["name"]), quantized, fields)
    if make_zip:
        path = zip_bundle(path)
    return path, {"gate": fields["gate"], "debug": debug_rows}


def run(args: argparse.Namespace) -> int:
    check_bundle_outputs(args.out, args.zip, reading=(args.bundle, args.calibration, args.validation))
    path, report = quantize_bundle(
        args.bundle, args.to, args.out, args.calibration, args.calibration_size, args.method, args.validation, args.debug, args.zip,
        args.float_convs,
    )
    bundle = open_bundle(path)
    gate = report["gate"]
    m = bundle.manifest["metrics"]
    print(f"{bundle.name} ({bundle.variant}) → {path}  [{bundle.size_bytes / 1e6:.1f} MB]")
    print(f"  validation σ_NMAD {m['validation']['sigma_nmad']:.5f} (fp32 {m['fp32_validation']['sigma_nmad']:.5f}), "
          f"bias {m['validation']['bias']:+.5f}, η(0.05) {m['validation']['eta_05']:.4f}")
    for name, check in gate["accuracy"]["checks"].items():
        print(f"  {'pass' if check['passed'] else 'FAIL'} {name}: {check['value']:.5f} (limit {check['limit']})")
    s = gate["speed"]
    print(f"  speed: {s['galaxies_per_s']} vs fp32 {s['fp32_galaxies_per_s']} galaxies/s (×{s['speedup']}), "
          f"batch {s['batch']}, {s['threads']} threads{' — FLAGGED: slower than fp32' if s['flagged'] else ''}")
    if report["debug"]:
        print("  lowest per-tensor SQNR (dB):")
        for row in report["debug"]:
            print(f"    {row['sqnr_db']:7.2f}  {row['tensor']}")
    if not gate["passed"]:
        print("accuracy gate FAILED: this variant must not be shipped as a default", file=sys.stderr)
        return 1
    print(json.dumps({"gate_passed": gate["passed"], "shippable_as_default": gate["shippable_as_default"]}))
    return 0
