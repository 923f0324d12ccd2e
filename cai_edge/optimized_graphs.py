"""A per-machine cache of the graph ONNX Runtime optimizes from a bundle, so later processes skip the optimizing.

Every new CPU session optimizes the bundle's graph (QDQ → integer kernels, fusions, NCHWc
layouts): 40–90 ms of the 0.5 s a one-galaxy ``cai-edge predict`` takes on a 2-core AVX2 CPU.
ONNX Runtime can save the optimized graph and load it later with optimization off; its own
documentation ties such a graph to the onnxruntime build and the CPU it was made on. So the
cache key holds the bundle's model sha256, the onnxruntime version and build, and a digest of
this CPU's model and feature flags: a shared home folder on a cluster of mixed CPUs gets one
entry per CPU kind.

The cache is never a source of truth, and it is trusted only as far as it is private:

* an entry is ``<key>-<sha256 of the entry>.onnx`` and begins with a header line naming the
  sha256 of the bundle model it was derived from and its key; a torn, truncated or altered entry
  fails the sha256 check, and an entry renamed to another model's key (or hand-made) fails the
  binding check: either is deleted, and the session is built from the verified bundle;
* the folder and each entry must belong to this user and be writable by nobody else (the rule
  ssh applies to ``~/.ssh``); otherwise the cache is neither read nor written;
* entries are read only if they are regular files within their size bound, opened without
  blocking (a FIFO named like an entry is skipped at once);
* entries are renamed into place whole, so a process killed at any point leaves either no entry
  or a complete one; the sweep deletes only the cache's own staging files, by their names.

Predictions are bit-identical with and without it (tested).

``CAI_EDGE_OPTIMIZED_GRAPHS``: a folder, or ``off`` (also ``none``, ``0``, ``no``, ``false``,
``disabled``); default ``$CAI_EDGE_CACHE/optimized`` (``~/.cache/cai-edge/optimized``). Linux only,
where ``/proc/cpuinfo`` names the CPU. Off in AWS Lambda, where each cold start is a fresh sandbox
that no later cold start sees, so an entry written there would only cost time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from cai_edge.io.crashpoints import crash_point
from cai_edge.io.limits import MAX_BUNDLE_FILE_BYTES, read_at_most
from cai_edge.io.safe_files import NotRegularFileError, open_regular, private_and_ours, remove_own_file, remove_stale_files

MAX_ENTRY_BYTES = 2 * MAX_BUNDLE_FILE_BYTES  # no bundle's model optimizes to more

ENV = "CAI_EDGE_OPTIMIZED_GRAPHS"
OFF_VALUES = ("off", "none", "0", "no", "false", "disabled")
FORMAT = "v2"  # bump when what goes into an entry changes
STALE_STAGING_SECONDS = 3600
_SUFFIX = ".onnx"
_ENTRY_MAGIC = b"#cai-edge-optimized-graph "
# The cache's own staging files (ONNX Runtime's output, then the entry being written), and nothing else.
_STAGING = re.compile(r"^\.v\d+-[0-9a-f]{32}-(ort|ov)[^/]*-cpu[0-9a-f]{16}\.\d+\.[0-9a-f]{8}(\.entry)?\.tmp$")
log = logging.getLogger("cai_edge")
_SWEPT: set[Path] = set()  # folders whose stale staging files this process has removed


def cpu_signature(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """A digest of the CPU's architecture, model name and every feature flag (first CPU listed);
    None where ``cpuinfo`` cannot be read (not Linux), and then nothing is cached: a graph made for
    one CPU must not be found by another that shares the folder."""
    parts = [platform.machine()]
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                if line.startswith(("model name", "flags", "Features", "CPU implementer", "CPU part")):
                    parts.append(line.strip())
                elif not line.strip() and len(parts) > 1:
                    break
    except OSError:
        return None
    if len(parts) == 1:
        return None
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cache_folder() -> Path | None:
    """Where entries live, or None when the cache is off."""
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() in OFF_VALUES or os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return None
    if setting:
        return Path(setting)
    if os.environ.get("CAI_EDGE_CACHE"):
        return Path(os.environ["CAI_EDGE_CACHE"]) / "optimized"
    try:
        return Path.home() / ".cache" / "cai-edge" / "optimized"
    except (RuntimeError, KeyError):  # no home folder (a container's arbitrary user): no cache, not a crash
        return None


def _trusted_folder(folder: Path, quiet: bool = False) -> bool:
    """The folder is ours and private (see the module docstring); says why not, unless ``quiet``."""
    try:
        st = os.stat(folder)
    except OSError:
        return False
    if stat.S_ISDIR(st.st_mode) and private_and_ours(st):
        return True
    if quiet:
        return False
    log.warning("cai-edge: not using the optimized-graph cache %s: it must be a folder of this user's that no one "
                "else can write (set %s=off to silence this)", folder, ENV)
    return False


def _private_regular_file(path: Path) -> bool:
    """A regular file (not a link, FIFO or device) of this user's that no one else can write."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and private_and_ours(st)


def _entry_header(source_sha256: str, key: str) -> bytes:
    return _ENTRY_MAGIC + json.dumps({"source_model_sha256": source_sha256, "key": key}).encode() + b"\n"


@dataclass(frozen=True)
class OptimizedGraphCache:
    """The entries for one model on this machine: ``<key>-<sha256 of the entry><suffix>`` in ``folder``.

    ONNX Runtime's optimized graphs end in ``.onnx``; OpenVINO's compiled models (``.ov``, see
    :mod:`cai_edge.openvino_session`) live beside them under the same rules, with keys of their own.
    """

    folder: Path
    key: str
    model_sha256: str = ""
    suffix: str = _SUFFIX

    @classmethod
    def for_model(cls, model_sha256: str) -> "OptimizedGraphCache | None":
        folder, cpu = cache_folder(), cpu_signature()
        if folder is None or cpu is None:
            return None
        build = hashlib.sha256(ort.get_build_info().encode()).hexdigest()[:8]
        return cls(folder, f"{FORMAT}-{model_sha256[:32]}-ort{ort.__version__}-{build}-cpu{cpu}", model_sha256)

    def _named_entries(self) -> list[tuple[Path, str]]:
        """This key's files named as entries, sorted, each with the sha256 its name gives (contents not verified)."""
        named = []
        for path in sorted(self.folder.glob(f"{self.key}-*{self.suffix}")):
            digest = path.name[len(self.key) + 1 : -len(self.suffix)]
            if re.fullmatch(r"[0-9a-f]{64}", digest):
                named.append((path, digest))
        return named

    def _read_entry(self, path: Path) -> bytes | None:
        """The entry's bytes if it is a private regular file of ours within its bound; None to skip it."""
        if not _private_regular_file(path):
            return None
        try:
            fd = open_regular(path, MAX_ENTRY_BYTES)
        except NotRegularFileError:  # grew past its bound since the lstat
            return None
        except OSError:  # removed by another process between the listing and the read
            return None
        try:
            return read_at_most(fd, MAX_ENTRY_BYTES)
        finally:
            os.close(fd)

    def load(self) -> tuple[Path, bytes] | None:
        """A verified entry's path and graph bytes, or None; entries of ours that fail a check are deleted."""
        if not _trusted_folder(self.folder):
            return None
        if self.folder not in _SWEPT:  # staging files of killed writers: a warm cache is never written, so swept here too
            _SWEPT.add(self.folder)
            remove_stale_files(self.folder, _STAGING, STALE_STAGING_SECONDS)
        try:
            candidates = self._named_entries()
        except OSError:
            return None
        header = _entry_header(self.model_sha256, self.key)
        for path, expected in candidates:
            data = self._read_entry(path)
            if data is None:  # not a private regular file within its bound: ignored, left alone
                continue
            if hashlib.sha256(data).hexdigest() == expected and data.startswith(header):
                return path, data[len(header):]
            self.remove(path)  # torn, altered, or bound to another model: never used
        return None

    def has_entry(self) -> bool:
        """Whether a private regular file of ours in a trusted folder is named as an entry for this key
        (its contents are not verified: :meth:`load` does that)."""
        try:
            return _trusted_folder(self.folder, quiet=True) and any(_private_regular_file(path) for path, _ in self._named_entries())
        except OSError:
            return False

    def staging_path(self) -> Path | None:
        """A fresh, hidden path for ONNX Runtime to write a new entry to; None if the folder cannot be made or is not private."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            return None
        if not os.access(self.folder, os.W_OK) or not _trusted_folder(self.folder):
            return None
        return self.folder / f".{self.key}.{os.getpid()}.{os.urandom(4).hex()}.tmp"

    def commit(self, staging: Path) -> Path | None:
        """Bind the graph written to ``staging`` to its model, name it by its sha256 and rename it into place whole; None if not written."""
        try:
            data = staging.read_bytes()
        except OSError:
            self.remove(staging)
            return None
        return self._write(data, staging)

    def store(self, data: bytes) -> Path | None:
        """Keep ``data`` (made from the model) as an entry, renamed into place whole; None if not written."""
        staging = self.staging_path()
        return None if staging is None else self._write(data, staging)

    def _write(self, data: bytes, staging: Path) -> Path | None:
        data = _entry_header(self.model_sha256, self.key) + data
        entry = self.folder / f"{self.key}-{hashlib.sha256(data).hexdigest()}{self.suffix}"
        written = staging.with_name(staging.name[: -len(".tmp")] + ".entry.tmp")
        try:
            fd = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            self.remove(staging)
            crash_point("optimized_graph_staged")
            os.replace(written, entry)
        except OSError:
            self.remove(staging)
            self.remove(written)
            return None
        self._sweep(keep=entry)
        return entry

    def _sweep(self, keep: Path) -> None:
        """Drop this key's other entries (two first runs at once each write one) and the cache's own stale staging files."""
        try:
            ours = keep.lstat().st_mtime_ns
            for path in self.folder.glob(f"{self.key}-*{self.suffix}"):
                st = path.lstat()
                # only older ones: two runs sweeping at once must not each delete the other's entry
                if (path != keep and st.st_mtime_ns < ours and stat.S_ISREG(st.st_mode) and private_and_ours(st)
                        and st.st_size <= MAX_ENTRY_BYTES):
                    self.remove(path)
            remove_stale_files(self.folder, _STAGING, STALE_STAGING_SECONDS)
        except OSError:
            pass

    @staticmethod
    def remove(path: Path) -> None:
        """Delete an entry or staging file of the cache's (a regular file, never a link's target); gone already is fine."""
        try:
            remove_own_file(path)
        except OSError:
            pass
