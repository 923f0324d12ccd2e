"""The bundle manifest: what a bundle is, what it expects, how it was made and checked.

Schema version 1 fields: ``schema_version``, ``name``, ``version``, ``variant``, ``created``,
``producer``, ``opset``, ``inputs``, ``outputs``, ``preprocessing``, ``source``, ``parity``,
``quantization`` (with the calibration data description), ``metrics``, ``gate``, ``files``
(``{name: {"bytes", "sha256"}}``) and ``block_sha256`` (``{block: sha256}``: the seal of every
block in :data:`SEALED_BLOCKS` the manifest holds; see :func:`seal_manifest`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cai_edge.errors import BundleError, TamperedBundleError, UnsupportedBundleError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.onnx"
VARIANTS = ("fp32", "fp16", "int8-dynamic", "int8-static")
REQUIRED_FIELDS = ("schema_version", "name", "version", "variant", "inputs", "outputs", "preprocessing", "files")
# The blocks that decide a row's value, intervals and flags: each is sealed by its sha256 in ``block_sha256``.
SEALED_BLOCKS = ("preprocessing", "calibration", "domain", "image_domain")
SEAL_FIELD = "block_sha256"
# Keys mirrored into the ONNX model's metadata_props, so a bare model.onnx still says what it is.
MIRRORED_FIELDS = ("schema_version", "name", "version", "variant", "preprocessing")

IO_SPEC = {
    "inputs": [
        {"name": "image", "shape": ["batch", 5, 32, 32], "dtype": "float32"},
        {"name": "magnitude", "shape": ["batch", 5], "dtype": "float32"},
    ],
    "outputs": [{"name": "redshift", "shape": ["batch"], "dtype": "float32"}],
}


_SHA256_HEX = set("0123456789abcdef")


def _check_files(files: Any, where: str) -> None:
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{where}: manifest 'files' must be an object of {{name: {{bytes, sha256}}}}")
    for name, entry in files.items():
        if not isinstance(name, str) or not name:
            raise BundleError(f"{where}: manifest 'files' has a file name that is not text: {name!r:.80}")
        if not isinstance(entry, dict):
            raise BundleError(f"{where}: manifest entry for {name!r} must be an object with bytes and sha256")
        size, digest = entry.get("bytes"), entry.get("sha256")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BundleError(f"{where}: manifest entry for {name!r} needs 'bytes', a non-negative integer (got {size!r:.40})")
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _SHA256_HEX:
            raise BundleError(f"{where}: manifest entry for {name!r} needs 'sha256', 64 lower-case hex digits (got {digest!r:.80})")
    if MODEL_NAME not in files:
        raise BundleError(f"{where}: manifest lists no {MODEL_NAME}")


def _check_text(manifest: dict, key: str, where: str) -> None:
    value = manifest[key]
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable():
        raise BundleError(f"{where}: manifest '{key}' must be a short line of text, got {value!r:.80}")


def check_manifest(manifest: Any, where: str, allow_unsealed: bool = False) -> dict:
    """Raise a clear :class:`BundleError` unless ``manifest`` is a complete, well-formed schema this version reads.

    ``allow_unsealed`` accepts a manifest with no :data:`SEAL_FIELD` at all (written before seals
    existed): only for ``calibrate``, which refits and reseals its blocks. A seal that disagrees
    is refused always.
    """
    from cai_edge.preprocessing import Preprocessing

    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: manifest.json is not a JSON object")
    version = manifest.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UnsupportedBundleError(f"{where}: manifest schema_version must be a positive integer, got {version!r:.40}")
    if version > SCHEMA_VERSION:
        raise UnsupportedBundleError(
            f"{where}: bundle schema_version {version} is newer than this cai-edge supports ({SCHEMA_VERSION}); "
            "upgrade cai-edge to use it"
        )
    missing = [f for f in REQUIRED_FIELDS if f not in manifest]
    if missing:
        raise BundleError(f"{where}: manifest lacks {', '.join(missing)}")
    for key in ("name", "version", "variant"):
        _check_text(manifest, key, where)
    if manifest["variant"] not in VARIANTS:
        raise BundleError(f"{where}: unknown variant {manifest['variant']!r} (known: {', '.join(VARIANTS)})")
    if manifest["inputs"] != IO_SPEC["inputs"]:
        raise BundleError(f"{where}: manifest inputs {manifest['inputs']!r:.200} are not the runtime's {IO_SPEC['inputs']}")
    outputs = manifest["outputs"]
    if not isinstance(outputs, list) or not all(spec in outputs for spec in IO_SPEC["outputs"]):
        raise BundleError(f"{where}: manifest outputs {outputs!r:.200} lack the runtime's {IO_SPEC['outputs']}")
    try:
        Preprocessing.from_dict(manifest["preprocessing"])
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{where}: manifest preprocessing is not usable: {exc}") from None
    _check_files(manifest["files"], where)
    _check_optional_models(manifest, where)
    if not (allow_unsealed and SEAL_FIELD not in manifest):
        _check_seal(manifest, where)
    return manifest


def block_sha256(block: Any) -> str:
    """sha256 of a manifest block's canonical JSON (sorted keys, no spaces): what :data:`SEAL_FIELD` records."""
    return hashlib.sha256(json.dumps(block, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal_manifest(manifest: dict) -> dict:
    """``manifest`` with :data:`SEAL_FIELD` recomputed: the sha256 of each block of :data:`SEALED_BLOCKS` it holds.

    Only the bundle writers call this, after building the blocks themselves: a block edited by
    hand afterwards no longer matches its seal, and loading refuses it.
    """
    return {**manifest, SEAL_FIELD: {k: block_sha256(manifest[k]) for k in SEALED_BLOCKS if manifest.get(k) is not None}}


def _check_seal(manifest: dict, where: str) -> None:
    """Every block that decides rows must match its recorded sha256; a block removed or added by hand is refused too."""
    seal = manifest.get(SEAL_FIELD)
    if not isinstance(seal, dict):
        raise TamperedBundleError(f"{where}: manifest has no {SEAL_FIELD} (the checksums of its {', '.join(SEALED_BLOCKS)} "
                                  "blocks): it was edited, or written by an older cai-edge. Calibrate it again to refit "
                                  f"and reseal them: cai-edge calibrate {where} --data LABELLED [--domain-data TRAINING-LIKE] "
                                  "--out NEW (its model.onnx is kept, checked by its sha256)")
    unknown = sorted(set(seal) - set(SEALED_BLOCKS), key=str)
    if unknown:
        raise TamperedBundleError(f"{where}: manifest {SEAL_FIELD} names {', '.join(map(str, unknown))[:200]}, which is not a sealed block")
    for key in SEALED_BLOCKS:
        present, sealed = manifest.get(key) is not None, key in seal
        if sealed and not present:
            raise TamperedBundleError(f"{where}: manifest block {key!r} was removed (or set to null) after the bundle was "
                                      "written; refusing a modified bundle")
        if present and not sealed:
            raise TamperedBundleError(f"{where}: manifest block {key!r} was added after the bundle was written (no sha256 "
                                      f"in {SEAL_FIELD}); refusing a modified bundle")
        if present and block_sha256(manifest[key]) != seal[key]:
            raise TamperedBundleError(f"{where}: manifest block {key!r} has sha256 {block_sha256(manifest[key])}, "
                                      f"{SEAL_FIELD} says {str(seal[key])[:64]}; refusing a modified bundle")


def _check_optional_models(manifest: dict, where: str) -> None:
    """``calibration`` (per-galaxy uncertainty), ``domain`` and ``image_domain`` (training data) are optional, but checked when present."""
    from cai_edge.domain import DomainError, TrainingDomain
    from cai_edge.image_domain import ImageDomain, ImageDomainError
    from cai_edge.uncertainty import CalibrationError, ResidualCalibration

    try:
        if manifest.get("calibration") is not None:
            ResidualCalibration.from_dict(manifest["calibration"])
        if manifest.get("domain") is not None:
            TrainingDomain.from_dict(manifest["domain"])
        if manifest.get("image_domain") is not None:
            ImageDomain.from_dict(manifest["image_domain"])
    except (CalibrationError, DomainError, ImageDomainError) as exc:
        raise BundleError(f"{where}: manifest {exc}") from None
