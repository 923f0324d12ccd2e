"""``cai-edge bundle inspect|verify PATH``."""

from __future__ import annotations

import argparse
import json

from cai_edge.bundle import resolve_bundle


def run(args: argparse.Namespace) -> int:
    bundle = resolve_bundle(args.path)  # raises a BundleError (exit 2) unless it verifies
    if args.action == "verify":
        from cai_edge.session import create_session

        create_session(bundle, threads=1)  # ONNX Runtime must load the graph, and its interface must fit
        print(f"ok: {bundle.name} ({bundle.variant}) at {bundle.path}; model.onnx sha256 {bundle.sha256}; interface checked")
    else:
        print(json.dumps(bundle.manifest, indent=2))
    return 0
