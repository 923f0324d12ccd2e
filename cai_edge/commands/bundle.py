"""``cai-edge bundle inspect|verify PATH`` and ``cai-edge bundle list``."""

from __future__ import annotations

import argparse
import json

from cai_edge.bundle import bundle_search_path, list_bundles, resolve_bundle
from cai_edge.errors import UsageError


def _gate(manifest: dict) -> str:
    gate = manifest.get("gate")
    if not gate:
        return "reference" if manifest.get("variant") == "fp32" else "—"
    return "pass" if gate.get("passed") else "FAIL"


def list_command() -> int:
    """A table of every bundle in the search path; the first of a name is the one that name resolves to."""
    rows = [("--bundle NAME", "variant", "MB", "gate", "calibrated", "where")]
    seen = set()
    for path, bundle, problem in list_bundles():
        name = path.stem if path.suffix == ".zip" else path.name  # what --bundle takes
        shadowed = " (shadowed: the name finds the one above)" if name in seen else ""
        seen.add(name)
        if bundle is None:
            rows.append((name, "?", "?", "unusable", "?", f"{path} ({problem[:80]})"))
            continue
        rows.append((name, bundle.variant, f"{bundle.size_bytes / 1e6:.1f}", _gate(bundle.manifest),
                     "yes" if bundle.calibration is not None else "no", f"{path}{shadowed}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)) + "  " + r[-1])
    print(f"searched: {', '.join(str(p) for p in bundle_search_path())}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return list_command()
    if not args.path:
        raise UsageError(f"cai-edge bundle {args.action} needs a bundle path or name")
    bundle = resolve_bundle(args.path)  # raises a BundleError (exit 2) unless it verifies
    if args.action == "verify":
        from cai_edge.session import create_session

        create_session(bundle, threads=1)  # ONNX Runtime must load the graph, and its interface must fit
        print(f"ok: {bundle.name} ({bundle.variant}) at {bundle.path}; model.onnx sha256 {bundle.sha256}; interface checked")
    elif args.json:
        print(json.dumps(bundle.manifest, indent=2))
    else:
        print(summary(bundle))
    return 0


def summary(bundle) -> str:
    """What a person wants to know about a bundle, in a dozen lines (``--json`` gives the manifest)."""
    m = bundle.manifest
    prep = bundle.preprocessing
    lines = [f"{bundle.name}  ({bundle.variant}, {bundle.size_bytes / 1e6:.1f} MB, schema {m['schema_version']}, version {m['version']})",
             f"  path           {bundle.path}",
             f"  model sha256   {bundle.sha256}",
             "  interface      " + ", ".join(f"{io['name']} {io['dtype']} {io['shape']}" for io in m["inputs"])
             + " → " + ", ".join(f"{io['name']} {io['dtype']} {io['shape']}" for io in m["outputs"]),
             f"  preprocessing  bands {''.join(prep.band_order)}, centre {prep.crop}×{prep.crop} px in {prep.image_units}, "
             f"images {prep.image_transform}, magnitudes {prep.magnitude_system}"
             + (" standardised" if any(v != 0 for v in prep.magnitude_offset) else " raw")]
    gate = m.get("gate")
    if gate:
        acc = gate.get("accuracy", {})
        lines.append(f"  gate           {'pass' if gate.get('passed') else 'FAIL'} against fp32"
                     + ("; speed flagged (slower than fp32)" if gate.get("speed", {}).get("flagged") else ""))
        for name, check in (acc.get("checks") or {}).items():
            value = check.get("value")
            shown = f"{value:.5f}" if isinstance(value, float) else value
            lines.append(f"                 {'pass' if check.get('passed') else 'FAIL'} {name}: {shown} (limit {check.get('limit')})")
    validation = (m.get("metrics") or {}).get("validation")
    if validation:
        lines.append(f"  validation     σ_NMAD {validation.get('sigma_nmad', float('nan')):.5f}, bias {validation.get('bias', float('nan')):+.5f}, "
                     f"η(0.05) {validation.get('eta_05', float('nan')):.4f} on {validation.get('n', '?')} galaxies")
    quantization = m.get("quantization") or {}
    if quantization.get("kept_float"):
        kept = list(dict.fromkeys(quantization["kept_float"]))
        lines.append(f"  kept float     {len(kept)} node(s): {', '.join(kept[:8])}{' …' if len(kept) > 8 else ''}")
    for key, label in (("matmul_integer_layers", "MatMulInteger "), ("float_compute_int8_weights", "int8-stored   ")):
        if quantization.get(key):  # layers ORT has no QDQ fusion for: explicit integer, or float with int8 weights
            lines.append(f"  {label} {', '.join(quantization[key])}")
    calibration, domain = bundle.calibration, bundle.domain
    lines.append("  uncertainty    " + (f"calibrated on {calibration.fitted_on.get('data', '?')} ({calibration.fitted_on.get('galaxies', '?')} galaxies)"
                                       if calibration else "none: rows carry the flag 'uncalibrated' (run cai-edge calibrate)"))
    lines.append("  domain         " + (f"fitted on {domain.fitted_on.get('data', '?')}; z {domain.z_range[0]:.3f}–{domain.z_range[1]:.3f}, "
                                       f"r {domain.r_range[0]:.2f}–{domain.r_range[1]:.2f}" if domain else "none recorded"))
    images = bundle.image_domain
    lines.append("  image domain   " + (f"fitted on {images.fitted_on.get('data', '?')} ({images.fitted_on.get('images', '?')} images); "
                                       f"sky noise ugriz {' '.join(f'{v:.3g}' for v in images.band_noise)} nanomaggies, flagged above "
                                       f"{images.noise_threshold:.2f}x; asymmetry above {images.asymmetry_threshold:.3f}; flat pixel runs"
                                       + _content_text(images)
                                       if images else "none: rows carry the flag 'image_unchecked' (run cai-edge calibrate)"))
    return "\n".join(lines)


def _content_text(images) -> str:
    """The band-registration and not-a-galaxy thresholds of an image reference, for ``bundle inspect``."""
    if images.offset_threshold_px is None:
        return "; no band-registration or centre-source thresholds: rows carry 'image_unchecked' (recalibrate)"
    from cai_edge.image_domain import OFFSET_BANDS

    offsets = " ".join(f"{b} {v:.2f}" for b, v in zip(OFFSET_BANDS, images.offset_threshold_px))
    match = images.photometric_match
    matched = (f"; pixels against the magnitudes: colours beyond {match.colour_threshold:.1f}σ, flux level outside "
               f"{match.level_range[0]:+.1f} to {match.level_range[1]:+.1f} times its spread for the profile "
               f"({match.typical_range_dex[0]:+.2f} to {match.typical_range_dex[1]:+.2f} dex for a typical one)" if match is not None else
               "; no pixels-against-magnitudes check: rows carry 'image_unchecked' (recalibrate on cutouts of galaxies)")
    return (f"; band offsets against r above {offsets} px; centre source S/N below {images.centre_snr_threshold:.1f}; "
            "constant or identical planes" + matched)
