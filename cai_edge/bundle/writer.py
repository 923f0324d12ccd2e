"""Write a bundle directory from a manifest and file bytes (torch- and onnx-free; ``calibrate`` uses it).

A bundle is staged in a new hidden folder beside the target and renamed into place whole. An
existing target is replaced only when it is itself a cai-edge bundle — a real folder holding
``manifest.json`` (a bundle manifest) and the files it lists, nothing else — or an empty folder;
any other folder, a file, a link, ``.`` or a folder holding other files is refused
(:class:`BundleTargetError`) before anything is written, and is never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

from cai_edge.bundle.manifest import MANIFEST_NAME, check_manifest, seal_manifest
from cai_edge.errors import CaiEdgeError
from cai_edge.io.atomic import fsync_path
from cai_edge.io.safe_files import kind_of, remove_own_file, zip_holds


class BundleTargetError(CaiEdgeError):
    """``--out`` names something a bundle must not replace (a file, a link, a folder of other files)."""


def _bundle_entries(folder: Path) -> set[str] | None:
    """The entry names of ``folder`` if it is a cai-edge bundle made of its manifest and listed files alone, else None."""
    try:
        with open(folder / MANIFEST_NAME, "rb") as fh:
            manifest = json.loads(fh.read(4 << 20))
        listed = manifest["files"]
        if not isinstance(manifest.get("schema_version"), int) or not isinstance(listed, dict):
            return None
        names = {MANIFEST_NAME, *listed}
        present = set(os.listdir(folder))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if present - names or any(not stat.S_ISREG(os.lstat(folder / n).st_mode) for n in present):
        return None
    return present


def check_bundle_target(out: str | os.PathLike, reading: tuple[str | os.PathLike, ...] = ()) -> None:
    """Raise :class:`BundleTargetError` unless ``out`` is absent, an empty folder, or a cai-edge bundle to replace.

    ``reading``: paths the command reads (``--data``, the source bundle); ``out`` may not be one
    of them nor hold one of them.
    """
    out = Path(out)
    if out.name in ("", ".", "..") or out.absolute() == Path.cwd():
        raise BundleTargetError(f"--out {out} is the current folder (or its parent); give a new folder name for the bundle")
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return
    where = out.resolve()
    for path in reading:
        p = Path(path).resolve()
        if p == where or where in p.parents:
            raise BundleTargetError(f"--out {out} is, or holds, {path}, which this command reads; choose another folder")
    if not stat.S_ISDIR(st.st_mode):
        raise BundleTargetError(f"--out {out} is {kind_of(st.st_mode)}, not a bundle folder; cai-edge replaces only a bundle "
                                "it wrote (or an empty folder). Choose a new folder name.")
    if os.listdir(out) and _bundle_entries(out) is None:
        raise BundleTargetError(f"--out {out} is a folder holding other files, not a cai-edge bundle; cai-edge replaces only "
                                "a bundle folder (manifest.json and the files it lists) or an empty folder. Choose a new folder name.")


def write_bundle_dir(out: str | Path, manifest: dict, files: dict[str, bytes]) -> Path:
    """Write ``files`` and ``manifest`` (its ``files`` entries and block seals recomputed) into ``out`` via a staging folder.

    Raises :class:`BundleTargetError` (writing nothing) when ``out`` is not replaceable; see the module docstring.
    """
    out = Path(out)
    manifest = seal_manifest({**manifest, "files": {n: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in files.items()}})
    check_manifest(manifest, str(out))
    check_bundle_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        for name, data in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
            fsync_path(staging / name)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        fsync_path(staging / MANIFEST_NAME)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a bundle is read by whoever runs it
        _replace(out, staging)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)  # our own staging folder, never renamed into place
    fsync_path(out.parent)
    return out


def _replace(out: Path, staging: Path) -> None:
    """Rename ``staging`` to ``out``; an existing bundle there is moved aside first and then its own files deleted."""
    check_bundle_target(out)  # again, just before: the folder may have changed while the bundle was written
    if not out.exists():
        os.rename(staging, out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
    os.rmdir(aside)
    os.rename(out, aside)
    os.rename(staging, out)
    entries = _bundle_entries(aside) or set()
    for name in entries:  # the old bundle's own files only; anything that appeared meanwhile stays
        remove_own_file(aside / name)
    try:
        os.rmdir(aside)
    except OSError:
        pass


def check_bundle_zip_target(path: str | os.PathLike) -> None:
    """Raise :class:`BundleTargetError` unless ``path`` is absent or a bundle zip (a zip holding ``manifest.json``) to replace."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise BundleTargetError(f"{path} is {kind_of(st.st_mode)}, not a bundle zip; choose another --out")
    if not zip_holds(path, MANIFEST_NAME):
        raise BundleTargetError(f"{path} exists and is not a cai-edge bundle zip; cai-edge replaces only a bundle zip it wrote. "
                                "Move it away or choose another --out.")


def check_bundle_outputs(out: str | os.PathLike | None, make_zip: bool = False, reading: tuple = ()) -> None:
    """What ``export``, ``quantize`` and ``calibrate`` check first, before any work: ``--out`` (and its
    ``.zip`` with ``--zip``) may be written. ``reading``: the command's inputs (``None`` entries and
    names that are not paths are skipped)."""
    if out is None:
        return
    paths = tuple(p for p in reading if p and not str(p).startswith("sdss:") and os.path.exists(p))
    check_bundle_target(out, paths)
    if make_zip:
        check_bundle_zip_target(Path(out).with_suffix(".zip"))
