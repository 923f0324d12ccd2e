"""Write a bundle directory from a manifest and file bytes (torch- and onnx-free; ``calibrate`` uses it)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from cai_edge.bundle.manifest import MANIFEST_NAME, check_manifest


def write_bundle_dir(out: str | Path, manifest: dict, files: dict[str, bytes]) -> Path:
    """Write ``files`` and ``manifest`` (its ``files`` entries recomputed) into ``out`` via a staging folder."""
    out = Path(out)
    manifest = {**manifest, "files": {n: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in files.items()}}
    check_manifest(manifest, str(out))
    staging = out.with_name(f".{out.name}.staging")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name, data in files.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes(data)
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out
