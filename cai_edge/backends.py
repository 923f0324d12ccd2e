"""Which engine runs a bundle: ONNX Runtime, or OpenVINO where it is installed and measured faster on this CPU.

``backend="auto"`` (the default) is ONNX Runtime, with no probe, unless OpenVINO is installed
(the ``openvino`` extra). Then, on first use of a bundle on this CPU, ONNX Runtime and OpenVINO
(with its ``f32`` hint, and its ``bf16`` hint where the CPU has AVX512_BF16 or AMX) run the same
verified graph on a fixed probe batch in interleaved rounds; an OpenVINO variant is taken only if
it is the fastest and its redshifts agree with ONNX Runtime's on that batch (``AGREEMENT``); each
variant passed the accuracy gate on the validation split (benchmarks/backend_gate.py). The choice is
kept in a small file beside the optimized-graph cache, under the same trust rules (a private
folder of this user's, bounded regular files, written whole), keyed by the model's sha256, the
onnxruntime and OpenVINO versions, the CPU signature and the thread count: a new CPU or a new
version of either library probes again. Where a choice could not be kept — the cache off
(``CAI_EDGE_OPTIMIZED_GRAPHS=off``, Lambda), a CPU that cannot be named (not Linux), a cache folder
that is not private or cannot be written — ``auto`` is ONNX Runtime without a probe: probing in
every process (~2.5 s) would cost more than most runs save. Probes of processes started together
on a fresh cache can choose differently (each is timed under the others); the last to finish is
kept, and each output file records the engine(s) that made its rows. GPU execution providers always
run on ONNX Runtime.

``auto`` is the default of ``Predictor`` and ``cai-edge predict`` (``$CAI_EDGE_BACKEND`` sets
another for an environment): an install without the ``openvino`` extra gets ONNX Runtime's rows,
and installing the extra is what opts a machine into the faster engine. Redshifts of the engines differ slightly (every output records its ``engine``);
pin ``backend="onnxruntime"`` for rows identical to the reference engine's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from cai_edge.backend_names import BACKENDS, default_backend
from cai_edge.bundle import Bundle
from cai_edge.io.limits import read_at_most
from cai_edge.machine import simd_flags
from cai_edge.io.safe_files import NotRegularFileError, open_regular, private_and_ours, remove_own_file, remove_stale_files
from cai_edge.optimized_graphs import STALE_STAGING_SECONDS, _trusted_folder, cache_folder, cpu_signature
from cai_edge.session import create_session

AUTO_CANDIDATES = ("onnxruntime", "openvino", "openvino-bf16")
BF16_FLAGS = ("avx512_bf16", "amx_int8")  # bf16 probed only where the CPU computes in it (AMX CPUs have amx_bf16 too)
PROBE_BATCH = 64
PROBE_ROUNDS = 3
AGREEMENT = 0.002  # max |Δz|/(1+z) against ONNX Runtime on the probe batch
MAX_CHOICE_BYTES = 4096
_STAGING = re.compile(r"^\.backend-[^/]+\.\d+\.[0-9a-f]{8}\.tmp$")  # ChoiceCache.save's own, and nothing else


def _probe_inputs(bundle: Bundle) -> dict[str, np.ndarray]:
    """A fixed batch of galaxy-like cutouts (nanomaggies) and magnitudes, prepared as for the network."""
    rng = np.random.default_rng(0)
    images = rng.gamma(1.5, 0.2, (PROBE_BATCH, 5, 32, 32)).astype(np.float32)
    magnitudes = rng.uniform(16.0, 20.0, (PROBE_BATCH, 5)).astype(np.float32)
    image, magnitude = bundle.preprocessing.network_inputs(images, magnitudes)
    return {"image": image, "magnitude": magnitude}


def probe(sessions: dict[str, Any], feed: dict[str, np.ndarray]) -> dict:
    """Median seconds per call of each session on ``feed`` in interleaved rounds, and its agreement with ONNX Runtime's."""
    z = {name: s.run(["redshift"], feed)[0] for name, s in sessions.items()}  # also the warm-up
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(PROBE_ROUNDS):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(["redshift"], feed)
            times[name].append(time.perf_counter() - start)
    reference = z["onnxruntime"]
    agreement = {name: float(np.max(np.abs(v - reference) / (1 + np.abs(reference)))) for name, v in z.items()}
    seconds = {name: statistics.median(t) for name, t in times.items()}
    agreeing = [name for name in sessions if np.isfinite(agreement[name]) and agreement[name] <= AGREEMENT]
    return {"backend": min(agreeing, key=seconds.__getitem__), "seconds_per_call": seconds, "max_dz_over_1pz": agreement}


class ChoiceCache:
    """The probed backend for one model, thread count and set of library versions on this CPU, as a small JSON file."""

    def __init__(self, folder: Path, key: str):
        self.folder, self.key = folder, key
        self.path = folder / f"backend-{key}.json"

    @classmethod
    def for_model(cls, model_sha256: str, threads: int | None, openvino_version: str) -> "ChoiceCache | None":
        folder, cpu = cache_folder(), cpu_signature()
        if folder is None or cpu is None:
            return None
        build = hashlib.sha256(ort.get_build_info().encode()).hexdigest()[:8]
        ov = re.sub(r"[^0-9A-Za-z.]+", "_", openvino_version)[:64]  # its build string holds slashes
        return cls(folder, f"{model_sha256[:32]}-ort{ort.__version__}-{build}-ov{ov}-cpu{cpu}-t{threads or 0}")

    def can_keep(self) -> bool:
        """Whether a choice can be written here: the folder exists (made if need be), is private and ours, and is writable."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            return False
        return _trusted_folder(self.folder) and os.access(self.folder, os.W_OK | os.X_OK)

    def load(self) -> str | None:
        """The cached choice, or None; a file of ours that is damaged or not a choice is deleted."""
        if not _trusted_folder(self.folder):
            return None
        try:
            st = os.lstat(self.path)
            if not (st.st_mode & 0o170000 == 0o100000 and private_and_ours(st)):
                return None
            fd = open_regular(self.path, MAX_CHOICE_BYTES)
        except (OSError, NotRegularFileError):
            return None
        try:
            data = read_at_most(fd, MAX_CHOICE_BYTES)
        finally:
            os.close(fd)
        try:
            choice = json.loads(data)
            if choice["key"] == self.key and choice["backend"] in AUTO_CANDIDATES:
                return choice["backend"]
        except (ValueError, KeyError, TypeError):
            pass
        remove_own_file(self.path)
        return None

    def save(self, result: dict) -> None:
        """Write the probe's result whole (a temporary file renamed into place); nothing if it could not be kept here."""
        if not self.can_keep():
            return
        staging = self.folder / f".backend-{self.key}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"key": self.key, **result}, fh)
            os.replace(staging, self.path)
        except OSError:
            remove_own_file(staging)
        remove_stale_files(self.folder, _STAGING, STALE_STAGING_SECONDS)  # those of killed probes


def _openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__


def runnable_backends() -> tuple[str, ...]:
    """The engines that can run here, in ``auto``'s order: ONNX Runtime; OpenVINO where it is installed, and its
    ``bf16`` hint where the CPU computes in bf16 (:data:`BF16_FLAGS`)."""
    if _openvino_version() is None:
        return ("onnxruntime",)
    bf16 = bool(set(BF16_FLAGS) & set(simd_flags()))
    return tuple(name for name in AUTO_CANDIDATES if bf16 or name != "openvino-bf16")


def _session(bundle: Bundle, threads: int | None, backend: str, providers: str | Sequence[str] | None = None) -> Any:
    if backend == "onnxruntime":
        return create_session(bundle, threads, providers)
    from cai_edge.openvino_session import OpenVINOSession

    return OpenVINOSession(bundle, threads, backend)


def create_backend_session(bundle: Bundle, threads: int | None = None, providers: str | Sequence[str] | None = None,
                           backend: str | None = None) -> tuple[Any, str]:
    """A session for ``bundle`` on ``backend`` (default :func:`default_backend`; ``auto``: see the module docstring)
    and the backend's name."""
    backend = default_backend() if backend is None else backend
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    on_gpu = providers not in (None, "cpu", "CPUExecutionProvider", ["CPUExecutionProvider"])
    if on_gpu and backend.startswith("openvino"):
        raise ValueError(f"backend {backend!r} runs on the CPU; execution providers {providers!r} need backend 'onnxruntime'")
    if backend != "auto":
        return _session(bundle, threads, backend, providers), backend
    version = None if on_gpu else _openvino_version()
    if version is None:
        return create_session(bundle, threads, providers), "onnxruntime"
    cache = ChoiceCache.for_model(bundle.sha256, threads, version)
    choice = cache.load() if cache else None
    if choice is not None:
        return _session(bundle, threads, choice), choice
    if cache is None or not cache.can_keep():  # a probe in every process would cost more than most runs save
        return create_session(bundle, threads, providers), "onnxruntime"
    candidates = {name: _session(bundle, threads, name) for name in runnable_backends()}
    result = probe(candidates, _probe_inputs(bundle))
    cache.save(result)
    return candidates[result["backend"]], result["backend"]
