"""Find bundles by name: ``astromae-sdss-int8``, ``astromae-sdss-fp32`` … or ``default``.

Searched in order: the folders in ``$CAI_EDGE_BUNDLES`` (``:``-separated), the bundles shipped
inside this package, and the user bundle folder (``$CAI_EDGE_USER_BUNDLES``, default
``$CAI_EDGE_CACHE/bundles``, i.e. ``~/.cache/cai-edge/bundles``), each for ``<name>.zip`` or a
``<name>/`` directory. ``cai-edge export``, ``quantize`` and ``calibrate`` write there when no
``--out`` is given, so what they make resolves by name.
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


def user_bundle_dir() -> Path:
    """Where bundles made on this machine go by default, and are found by name."""
    explicit = os.environ.get("CAI_EDGE_USER_BUNDLES")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("CAI_EDGE_CACHE", Path.home() / ".cache" / "cai-edge")) / "bundles"


def default_out(name: str) -> Path:
    """The folder a bundle named ``name`` is written to when no ``--out`` is given."""
    return user_bundle_dir() / name


def bundle_search_path() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("CAI_EDGE_BUNDLES", "").split(os.pathsep) if p]
    return [*dirs, SHIPPED_DIR, user_bundle_dir()]


def list_bundles() -> list[tuple[Path, Bundle | None, str]]:
    """Every bundle in the search path, usable or not.

    A name found twice is listed twice; the first is the one a name resolves to.

    Returns
    -------
    list of tuple
        ``(path, bundle, "")`` for a bundle that verifies, ``(path, None, why)`` for one that does not.
    """
    from cai_edge.errors import BundleError

    found = []
    for folder in bundle_search_path():
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or not (path.suffix == ".zip" or (path / "manifest.json").is_file()):
                continue
            try:
                found.append((path, open_bundle(path), ""))
            except BundleError as exc:
                found.append((path, None, str(exc)))
    return found


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


def resolve_bundle(spec: str | os.PathLike = DEFAULT_BUNDLE, allow_unsealed: bool = False) -> Bundle:
    """Open and verify a bundle given by name or path.

    Parameters
    ----------
    spec : str or path, optional
        A path to a bundle folder or ``.zip``, or a name looked up in ``$CAI_EDGE_BUNDLES``, the
        package and the user bundle folder (``$CAI_EDGE_USER_BUNDLES``); default: the shipped bundle.
    allow_unsealed : bool, optional
        Accept a manifest without ``block_sha256`` (see :func:`~cai_edge.bundle.open_bundle`).

    Returns
    -------
    Bundle
        The verified bundle.

    Raises
    ------
    cai_edge.errors.BundleNotFoundError
        No bundle of that name or path.
    cai_edge.errors.BundleError
        It was found but cannot be verified or used.
    """
    return open_bundle(find_bundle(spec), allow_unsealed)
