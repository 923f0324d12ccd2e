"""The bundle manifest: what a bundle is, what it expects, how it was made and checked.

Schema version 1 fields: ``schema_version``, ``name``, ``version``, ``variant``, ``created``,
``producer``, ``opset``, ``inputs``, ``outputs``, ``preprocessing``, ``source``, ``parity``,
``quantization`` (with the calibration data description), ``metrics``, ``gate`` and ``files``
(``{name: {"bytes", "sha256"}}``).
"""

from __future__ import annotations

from typing import Any

from cai_edge.errors import BundleError, UnsupportedBundleError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.onnx"
VARIANTS = ("fp32", "fp16", "int8-dynamic", "int8-static")
REQUIRED_FIELDS = ("schema_version", "name", "version", "variant", "inputs", "outputs", "preprocessing", "files")
# Keys mirrored into the ONNX model's metadata_props, so a bare model.onnx still says what it is.
MIRRORED_FIELDS = ("schema_version", "name", "version", "variant", "preprocessing")

IO_SPEC = {
    "inputs": [
        {"name": "image", "shape": ["batch", 5, 32, 32], "dtype": "float32"},
        {"name": "magnitude", "shape": ["batch", 5], "dtype": "float32"},
    ],
    "outputs": [{"name": "redshift", "shape": ["batch"], "dtype": "float32"}],
}


def check_manifest(manifest: Any, where: str) -> dict:
    """Raise a clear :class:`BundleError` unless ``manifest`` is a schema this version can read."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: manifest.json is not a JSON object")
    version = manifest.get("schema_version")
    if not isinstance(version, int):
        raise UnsupportedBundleError(f"{where}: manifest has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise UnsupportedBundleError(
            f"{where}: bundle schema_version {version} is newer than this cai-edge supports ({SCHEMA_VERSION}); "
            "upgrade cai-edge to use it"
        )
    missing = [f for f in REQUIRED_FIELDS if f not in manifest]
    if missing:
        raise BundleError(f"{where}: manifest lacks {', '.join(missing)}")
    if MODEL_NAME not in manifest["files"]:
        raise BundleError(f"{where}: manifest lists no {MODEL_NAME}")
    if manifest["variant"] not in VARIANTS:
        raise BundleError(f"{where}: unknown variant {manifest['variant']!r} (known: {', '.join(VARIANTS)})")
    return manifest
