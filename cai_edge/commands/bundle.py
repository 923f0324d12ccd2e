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
    else:
        print(json.dumps(bundle.manifest, indent=2))
    return 0
