"""A per-machine cache of the graph ONNX Runtime optimizes from a bundle, so later processes skip the optimizing.

Every new CPU session optimizes the bundle's graph (QDQ → integer kernels, fusions, NCHWc
layouts): 40–90 ms of the 0.5 s a one-galaxy ``cai-edge predict`` takes on a 2-core AVX2 CPU.
ONNX Runtime can save the optimized graph and load it later with optimization off; its own
documentation ties such a graph to the onnxruntime build and the CPU it was made on. So the
cache key holds the bundle's model sha256, the onnxruntime version and build, and a digest of
this CPU's model and feature flags: a shared home folder on a cluster of mixed CPUs gets one
entry per CPU kind.

The cache is never a source of truth. An entry's file name carries the sha256 of its bytes, so
a torn, truncated or altered file fails the check and is deleted; a graph that fails to load
is deleted too; either way the session is built from the verified bundle, as without a cache.
Entries are renamed into place whole, so a process killed at any point leaves either no entry
or a complete one. Predictions are bit-identical with and without it (tested).

``CAI_EDGE_OPTIMIZED_GRAPHS``: a folder, or ``off``; default ``$CAI_EDGE_CACHE/optimized``
(``~/.cache/cai-edge/optimized``). Linux only, where ``/proc/cpuinfo`` names the CPU. Off in AWS
Lambda, where each cold start is a fresh sandbox that no later cold start sees, so an entry
written there would only cost time.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from cai_edge.io.crashpoints import crash_point
from cai_edge.io.limits import MAX_BUNDLE_FILE_BYTES

ENV = "CAI_EDGE_OPTIMIZED_GRAPHS"
FORMAT = "v1"  # bump when what goes into an entry changes
STALE_STAGING_SECONDS = 3600
_SUFFIX = ".onnx"


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
    setting = os.environ.get(ENV, "")
    if setting.lower() in ("off", "0", "no", "false") or os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return None
    if setting:
        return Path(setting)
    if os.environ.get("CAI_EDGE_CACHE"):
        return Path(os.environ["CAI_EDGE_CACHE"]) / "optimized"
    try:
        return Path.home() / ".cache" / "cai-edge" / "optimized"
    except (RuntimeError, KeyError):  # no home folder (a container's arbitrary user): no cache, not a crash
        return None


@dataclass(frozen=True)
class OptimizedGraphCache:
    """The entries for one model on this machine: ``<key>-<sha256 of the entry>.onnx`` in ``folder``."""

    folder: Path
    key: str

    @classmethod
    def for_model(cls, model_sha256: str) -> "OptimizedGraphCache | None":
        folder, cpu = cache_folder(), cpu_signature()
        if folder is None or cpu is None:
            return None
        build = hashlib.sha256(ort.get_build_info().encode()).hexdigest()[:8]
        return cls(folder, f"{FORMAT}-{model_sha256[:32]}-ort{ort.__version__}-{build}-cpu{cpu}")

    def load(self) -> tuple[Path, bytes] | None:
        """A verified entry's path and bytes, or None; entries that fail their check are deleted."""
        try:
            candidates = sorted(self.folder.glob(f"{self.key}-*{_SUFFIX}"))
        except OSError:
            return None
        for path in candidates:
            expected = path.name[len(self.key) + 1 : -len(_SUFFIX)]
            try:
                if path.stat().st_size > 2 * MAX_BUNDLE_FILE_BYTES:  # no bundle's model optimizes to that
                    self.remove(path)
                    continue
                data = path.read_bytes()
            except OSError:  # removed by another process between the listing and the read
                continue
            if hashlib.sha256(data).hexdigest() == expected:
                return path, data
            self.remove(path)
        return None

    def staging_path(self) -> Path | None:
        """A fresh, hidden path for ONNX Runtime to write a new entry to; None if the folder cannot be made."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        if not os.access(self.folder, os.W_OK):
            return None
        return self.folder / f".{self.key}.{os.getpid()}.{os.urandom(4).hex()}.tmp"

    def commit(self, staging: Path) -> Path | None:
        """Name the written graph by its sha256 and rename it into place whole; None if it was not written."""
        try:
            data = staging.read_bytes()
        except OSError:
            return None
        entry = self.folder / f"{self.key}-{hashlib.sha256(data).hexdigest()}{_SUFFIX}"
        crash_point("optimized_graph_staged")
        try:
            os.replace(staging, entry)
        except OSError:
            self.remove(staging)
            return None
        self._sweep(keep=entry)
        return entry

    def _sweep(self, keep: Path) -> None:
        """Drop this key's other entries (two first runs at once each write one) and stale staging files."""
        now = time.time()
        try:
            for path in self.folder.glob(f"{self.key}-*{_SUFFIX}"):
                if path != keep:
                    self.remove(path)
            for path in self.folder.glob(".*.tmp"):
                if now - path.stat().st_mtime > STALE_STAGING_SECONDS:
                    self.remove(path)
        except OSError:
            pass

    @staticmethod
    def remove(path: Path) -> None:
        """Delete an entry or staging file (one ONNX Runtime refused, or whose session failed); gone already is fine."""
        try:
            path.unlink()
        except OSError:
            pass
