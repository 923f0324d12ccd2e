"""Open and verify a bundle directory or ``.zip`` without extracting anything to disk."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from cai_edge.bundle.manifest import MANIFEST_NAME, MODEL_NAME, check_manifest
from cai_edge.errors import BundleError, TamperedBundleError, UnsafeBundlePathError
from cai_edge.io.limits import MAX_BUNDLE_FILE_BYTES, MAX_MANIFEST_BYTES, MB, read_at_most, zip_bomb_reason
from cai_edge.preprocessing import Preprocessing

if TYPE_CHECKING:
    from cai_edge.domain import TrainingDomain
    from cai_edge.image_domain import ImageDomain
    from cai_edge.uncertainty import ResidualCalibration


_RECORDS = ("preprocessing", "calibration", "domain", "image_domain")


def _safe_member(name: str, where: str) -> str:
    """Reject absolute names, drive letters, backslashes and ``..`` (zip slip)."""
    path = PurePosixPath(name)
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name or ".." in path.parts:
        raise UnsafeBundlePathError(f"{where}: refusing file name {name!r}, which escapes the bundle")
    return str(path)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle held in memory: its manifest and the bytes of every file it lists.

    Made by :func:`~cai_edge.bundle.resolve_bundle` or :func:`~cai_edge.bundle.open_bundle`, which
    check the schema version and every file's size and sha256 before anything is used.

    Parameters
    ----------
    path : pathlib.Path
        Where the bundle was read (a folder or ``.zip``).
    manifest : dict
        The parsed ``manifest.json``: interface, preprocessing, metrics, gate, calibration, domains.
    files : dict of str to bytes
        The verified contents of every file the manifest lists (``model.onnx``).
    """

    path: Path
    manifest: dict[str, Any]
    files: dict[str, bytes]

    def __post_init__(self) -> None:
        # The records that shape every row (preprocessing, calibration, domains) are copied as they were read, parsed on
        # first use and kept: parsing them on every batch cost ~0.18 ms a call. Rows and their calibration_sha256 both
        # come from this copy, so an edit of ``manifest`` after loading can never make them disagree; to change a
        # record, write a new bundle.
        object.__setattr__(self, "_records", copy.deepcopy({k: self.manifest[k] for k in _RECORDS if k in self.manifest}))

    def __repr__(self) -> str:  # the files are megabytes of model bytes: never in a repr
        return f"Bundle(name={self.name!r}, variant={self.variant!r}, sha256={self.sha256[:12]!r}…, path={str(self.path)!r})"

    @property
    def name(self) -> str:
        """The bundle's name (``astromae-sdss-int8``)."""
        return self.manifest["name"]

    @property
    def variant(self) -> str:
        """``fp32``, ``fp16``, ``int8-static`` or ``int8-dynamic``."""
        return self.manifest["variant"]

    @property
    def sha256(self) -> str:
        """sha256 of ``model.onnx``: the identity written next to every prediction."""
        return self.manifest["files"][MODEL_NAME]["sha256"]

    @property
    def model_bytes(self) -> bytes:
        """The verified ONNX model."""
        return self.files[MODEL_NAME]

    @cached_property
    def preprocessing(self) -> Preprocessing:
        """How pixels and magnitudes are prepared for this model (band order, crop, units, normalisation)."""
        return Preprocessing.from_dict(self._records["preprocessing"])

    @cached_property
    def calibration(self) -> "ResidualCalibration | None":
        """The per-galaxy uncertainty calibration, or None (rows then carry the flag ``uncalibrated``)."""
        from cai_edge.uncertainty import ResidualCalibration

        data = self._records.get("calibration")
        return ResidualCalibration.from_dict(data) if data is not None else None

    @cached_property
    def domain(self) -> "TrainingDomain | None":
        """The training domain, or None when the bundle records none (no ``out_of_domain`` flags then)."""
        from cai_edge.domain import TrainingDomain

        data = self._records.get("domain")
        return TrainingDomain.from_dict(data) if data is not None else None

    @cached_property
    def image_domain(self) -> "ImageDomain | None":
        """The training images' reference, or None when the bundle records none (rows then carry the flag ``image_unchecked``)."""
        from cai_edge.image_domain import ImageDomain

        data = self._records.get("image_domain")
        return ImageDomain.from_dict(data) if data is not None else None

    @property
    def size_bytes(self) -> int:
        """Bytes of all the bundle's files together."""
        return sum(len(b) for b in self.files.values())

    @cached_property
    def calibration_sha256(self) -> str:
        """sha256 of the calibration and domain records ('' when none): they shape every interval and flag."""
        parts = {k: self._records[k] for k in ("calibration", "domain", "image_domain") if self._records.get(k) is not None}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest() if parts else ""

    def identity(self) -> dict[str, str]:
        """``bundle``, ``variant``, ``bundle_sha256`` and ``calibration_sha256``: what every output records."""
        return {"bundle": self.name, "variant": self.variant, "bundle_sha256": self.sha256, "calibration_sha256": self.calibration_sha256}


def _check_declared_size(name: str, size: int, manifest: dict, where: str) -> None:
    """Before reading a byte: the file must be exactly as large as the manifest says, and not absurdly large."""
    expected = manifest["files"][name]["bytes"]
    if size != expected:
        raise TamperedBundleError(f"{where}: {name} is {size} bytes, manifest says {expected}; refusing a modified bundle")
    if size > MAX_BUNDLE_FILE_BYTES:
        raise BundleError(
            f"{where}: {name} is {size // MB} MB, over the {MAX_BUNDLE_FILE_BYTES // MB} MB limit for a bundle file "
            "(raise CAI_EDGE_MAX_BUNDLE_MB for a larger model)"
        )


def _check_digest(name: str, data: bytes, manifest: dict, where: str) -> None:
    expected = manifest["files"][name]["sha256"]
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != manifest["files"][name]["bytes"] or digest != expected:
        raise TamperedBundleError(f"{where}: sha256 of {name} is {digest}, manifest says {expected}; refusing a modified bundle")


def _read_stored(path: Path, info: zipfile.ZipInfo) -> bytes | None:
    """A stored (uncompressed) member's bytes in one read at its offset, or None when that does not apply.

    ``ZipFile.open`` reads a stored member in chunks, CRC-checks and joins them: ~40 ms of every
    start for the 17 MB int8 default, where this read takes ~5 ms. The sha256 check that follows
    is the stronger test, and a short file or a lying size field fails it.
    """
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:  # compressed or encrypted
        return None
    with open(path, "rb", buffering=0) as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            return None
        name_length, extra_length = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
        encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
        if fh.read(name_length) != info.orig_filename.encode(encoding):  # zipfile's own check: it then refuses
            return None
        fh.seek(extra_length, os.SEEK_CUR)
        return read_at_most(fh.fileno(), info.file_size)


def _read_checked(archive: zipfile.ZipFile, name: str, manifest: dict, where: str) -> bytes:
    """One pass over a member: bytes read against the declared size, sha256 checked, nothing decompressed twice."""
    limit = manifest["files"][name]["bytes"]
    if archive.filename:
        data = _read_stored(Path(archive.filename), archive.getinfo(name))
        if data is not None:
            _check_digest(name, data, manifest, where)
            return data
    digest, chunks, size = hashlib.sha256(), [], 0
    with archive.open(name) as fh:
        for chunk in iter(lambda: fh.read(4 * MB), b""):
            size += len(chunk)
            if size > limit:  # the zip's own size field lied: stop before holding more than declared
                raise TamperedBundleError(f"{where}: {name} holds more than the {limit:,} bytes the manifest declares")
            digest.update(chunk)
            chunks.append(chunk)
    expected = manifest["files"][name]["sha256"]
    if size != limit or digest.hexdigest() != expected:
        raise TamperedBundleError(f"{where}: sha256 of {name} is {digest.hexdigest()}, manifest says {expected}; refusing a modified bundle")
    return b"".join(chunks)


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object's members, refusing a key given twice (JSON parsers disagree on which one wins)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r:.80} appears twice in one object")
        seen[key] = value
    return seen


def _parse_manifest(raw: bytes, where: str, allow_unsealed: bool = False) -> dict:
    try:
        manifest = json.loads(raw, object_pairs_hook=_refuse_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"{where}: manifest.json is not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    except ValueError as exc:
        raise TamperedBundleError(f"{where}: manifest.json is ambiguous: {exc}; refusing it") from None
    manifest = check_manifest(manifest, where, allow_unsealed)
    for name in manifest["files"]:
        _safe_member(name, where)
    return manifest


def _open_directory(root: Path, allow_unsealed: bool) -> Bundle:
    where = str(root)
    manifest_path = root / MANIFEST_NAME
    try:
        if not manifest_path.is_file():
            raise BundleError(f"{where}: not a bundle (no {MANIFEST_NAME})")
        if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{where}: {MANIFEST_NAME} is over {MAX_MANIFEST_BYTES // MB} MB; not a cai-edge manifest")
        manifest = _parse_manifest(manifest_path.read_bytes(), where, allow_unsealed)
        files = {}
        resolved_root = root.resolve(strict=True)
        for name in manifest["files"]:
            path = (root / name).resolve()
            if resolved_root not in path.parents:
                raise UnsafeBundlePathError(f"{where}: {name!r} resolves outside the bundle")
            if not path.is_file():
                raise TamperedBundleError(f"{where}: {name} is listed in the manifest but missing")
            _check_declared_size(name, path.stat().st_size, manifest, where)
            files[name] = path.read_bytes()
            _check_digest(name, files[name], manifest, where)
    except (OSError, RuntimeError) as exc:  # unreadable files; symbolic-link loops (RuntimeError before 3.13)
        raise BundleError(f"{where}: cannot read the bundle ({type(exc).__name__}: {exc})") from None
    return Bundle(root, manifest, files)


def _open_zip(path: Path, allow_unsealed: bool) -> Bundle:
    where = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BundleError(f"{where}: not a zip file ({exc})") from None
    try:
        with archive:
            names = archive.namelist()
            for name in names:
                _safe_member(name, where)
            if MANIFEST_NAME not in names:
                raise BundleError(f"{where}: not a bundle (no {MANIFEST_NAME} at the top of the zip)")
            if archive.getinfo(MANIFEST_NAME).file_size > MAX_MANIFEST_BYTES:
                raise BundleError(f"{where}: {MANIFEST_NAME} declares over {MAX_MANIFEST_BYTES // MB} MB; not a cai-edge manifest")
            manifest = _parse_manifest(archive.read(MANIFEST_NAME), where, allow_unsealed)
            missing = [n for n in manifest["files"] if n not in names]
            if missing:
                raise TamperedBundleError(f"{where}: {', '.join(missing)} listed in the manifest but missing")
            files = {}
            for name in manifest["files"]:
                # sizes first, then one bounded pass: a bomb is refused before it is held in memory
                info = archive.getinfo(name)
                reason = zip_bomb_reason(info)
                if reason:
                    raise BundleError(f"{where}: {reason}; refusing")
                _check_declared_size(name, info.file_size, manifest, where)
                files[name] = _read_checked(archive, name, manifest, where)
    except (zipfile.BadZipFile, zlib.error, OSError, NotImplementedError, EOFError, ValueError) as exc:
        raise BundleError(f"{where}: corrupt bundle zip ({type(exc).__name__}: {exc})") from None
    return Bundle(path, manifest, files)


def open_bundle(path: str | os.PathLike, allow_unsealed: bool = False) -> Bundle:
    """Open a bundle folder or zip by path, verifying it; see :func:`~cai_edge.bundle.resolve_bundle` for names.

    Parameters
    ----------
    path : str or path
        A bundle folder (``manifest.json`` + ``model.onnx``) or its ``.zip``.
    allow_unsealed : bool, optional
        Accept a manifest without ``block_sha256`` (written before seals existed); for
        ``calibrate``, which refits and reseals its blocks. Default: refused.

    Returns
    -------
    Bundle
        The verified bundle.

    Raises
    ------
    cai_edge.errors.BundleError
        Nothing there, a corrupt zip, a newer schema, or a file whose size or sha256 differs from
        the manifest (:class:`~cai_edge.errors.TamperedBundleError`).
    """
    path = Path(path)
    if path.is_dir():
        return _open_directory(path, allow_unsealed)
    if path.is_file():
        return _open_zip(path, allow_unsealed)
    raise BundleError(f"{path}: no such bundle")
