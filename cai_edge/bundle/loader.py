"""Open and verify a bundle directory or ``.zip`` without extracting anything to disk."""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cai_edge.bundle.manifest import MANIFEST_NAME, MODEL_NAME, check_manifest
from cai_edge.errors import BundleError, TamperedBundleError, UnsafeBundlePathError
from cai_edge.preprocessing import Preprocessing


def _safe_member(name: str, where: str) -> str:
    """Reject absolute names, drive letters, backslashes and ``..`` (zip slip)."""
    path = PurePosixPath(name)
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name or ".." in path.parts:
        raise UnsafeBundlePathError(f"{where}: refusing file name {name!r}, which escapes the bundle")
    return str(path)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle held in memory: its manifest and the bytes of every file it lists."""

    path: Path
    manifest: dict[str, Any]
    files: dict[str, bytes]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def variant(self) -> str:
        return self.manifest["variant"]

    @property
    def sha256(self) -> str:
        """sha256 of ``model.onnx``: the identity written next to every prediction."""
        return self.manifest["files"][MODEL_NAME]["sha256"]

    @property
    def model_bytes(self) -> bytes:
        return self.files[MODEL_NAME]

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.manifest["preprocessing"])

    @property
    def size_bytes(self) -> int:
        return sum(len(b) for b in self.files.values())

    def identity(self) -> dict[str, str]:
        return {"bundle": self.name, "variant": self.variant, "bundle_sha256": self.sha256}


def _verify(files: dict[str, bytes], manifest: dict, where: str) -> None:
    for name, entry in manifest["files"].items():
        data = files[name]
        if len(data) != entry.get("bytes", len(data)):
            raise TamperedBundleError(f"{where}: {name} is {len(data)} bytes, manifest says {entry['bytes']}; refusing a modified bundle")
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.get("sha256"):
            raise TamperedBundleError(f"{where}: sha256 of {name} is {digest}, manifest says {entry.get('sha256')}; refusing a modified bundle")


def _parse_manifest(raw: bytes, where: str) -> dict:
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where}: manifest.json is not valid JSON ({exc})") from exc
    manifest = check_manifest(manifest, where)
    for name in manifest["files"]:
        _safe_member(name, where)
    return manifest


def _open_directory(root: Path) -> Bundle:
    where = str(root)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{where}: not a bundle (no {MANIFEST_NAME})")
    manifest = _parse_manifest(manifest_path.read_bytes(), where)
    files = {}
    resolved_root = root.resolve()
    for name in manifest["files"]:
        path = (root / name).resolve()
        if resolved_root not in path.parents:
            raise UnsafeBundlePathError(f"{where}: {name!r} resolves outside the bundle")
        if not path.is_file():
            raise TamperedBundleError(f"{where}: {name} is listed in the manifest but missing")
        files[name] = path.read_bytes()
    _verify(files, manifest, where)
    return Bundle(root, manifest, files)


def _open_zip(path: Path) -> Bundle:
    where = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise BundleError(f"{where}: not a zip file ({exc})") from exc
    with archive:
        names = archive.namelist()
        for name in names:
            _safe_member(name, where)
        if MANIFEST_NAME not in names:
            raise BundleError(f"{where}: not a bundle (no {MANIFEST_NAME} at the top of the zip)")
        manifest = _parse_manifest(archive.read(MANIFEST_NAME), where)
        missing = [n for n in manifest["files"] if n not in names]
        if missing:
            raise TamperedBundleError(f"{where}: {', '.join(missing)} listed in the manifest but missing")
        files = {name: archive.read(name) for name in manifest["files"]}
    _verify(files, manifest, where)
    return Bundle(path, manifest, files)


def open_bundle(path: str | Path) -> Bundle:
    """Open a bundle directory or zip by path, verifying it; see :func:`~cai_edge.bundle.resolve_bundle` for names."""
    path = Path(path)
    if path.is_dir():
        return _open_directory(path)
    if path.is_file():
        return _open_zip(path)
    raise BundleError(f"{path}: no such bundle")
