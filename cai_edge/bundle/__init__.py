"""Verified model bundles: ``model.onnx`` + ``manifest.json``, as a directory or a single ``.zip``.

Loading checks the schema version, every file's size and sha256, and that no file name
escapes the bundle; nothing is ever unpickled. Torch-free.
"""

from cai_edge.bundle.loader import Bundle, open_bundle
from cai_edge.bundle.manifest import MANIFEST_NAME, MODEL_NAME, SCHEMA_VERSION
from cai_edge.bundle.registry import DEFAULT_BUNDLE, bundle_search_path, default_out, list_bundles, resolve_bundle, user_bundle_dir

__all__ = [
    "Bundle",
    "open_bundle",
    "resolve_bundle",
    "bundle_search_path",
    "default_out",
    "list_bundles",
    "user_bundle_dir",
    "DEFAULT_BUNDLE",
    "SCHEMA_VERSION",
    "MANIFEST_NAME",
    "MODEL_NAME",
]
