"""Find bundles by name: ``astromae-sdss-int8``, ``astromae-sdss-fp32`` … or ``default``.

Searched in order: the folders in ``$CAI_EDGE_BUNDLES`` (``:``-separated), the bundles shipped
inside this package, and ``$CAI_EDGE_CACHE/bundles`` (default ``~/.cache/cai-edge/bundles``),
each for ``<name>.zip`` or a ``<name>/`` directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cai_edge.bundle.loader import Bundle, open_bundle
from cai_edge.errors import BundleNotFoundError

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "bundled"
_DEFAULT_FILE = SHIPPED_DIR / "default.json"
DEFAULT_BUNDLE = "default"


def bundle_search_path() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("CAI_EDGE_BUNDLES", "").split(os.pathsep) if p]
    cache = Path(os.environ.get("CAI_EDGE_CACHE", Path.home() / ".cache" / "cai-edge")) / "bundles"
    return [*dirs, SHIPPED_DIR, cache]


def default_bundle_name() -> str:
    if not _DEFAULT_FILE.is_file():
        raise BundleNotFoundError("this install ships no default bundle; pass --bundle PATH or a bundle name")
    return json.loads(_DEFAULT_FILE.read_text())["default"]


def find_bundle(spec: str | os.PathLike) -> Path:
    """The path of a bundle given as a path or a name."""
    candidate = Path(spec)
    if candidate.exists():
        return candidate
    name = default_bundle_name() if str(spec) == DEFAULT_BUNDLE else str(spec)
    for folder in bundle_search_path():
        for path in (folder / f"{name}.zip", folder / name):
            if path.exists():
                return path
    searched = ", ".join(str(p) for p in bundle_search_path())
    raise BundleNotFoundError(f"no bundle named {name!r} (searched {searched}); build one with `cai-edge export`")


def resolve_bundle(spec: str | os.PathLike = DEFAULT_BUNDLE) -> Bundle:
    """Open (and verify) a bundle given by path or name."""
    return open_bundle(find_bundle(spec))
