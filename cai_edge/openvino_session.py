"""OpenVINO as a second CPU backend: the bundle's verified ``model.onnx`` compiled by OpenVINO, run like an ONNX Runtime session.

Only the bytes the bundle verified (checksum, schema) are handed to OpenVINO, never a file of
their own, and its interface is checked against the runtime's contract as ONNX Runtime's is.
Optional: ``pip install "cai-edge[openvino]"``; nothing imports this module unless an
``openvino`` backend is asked for or probed. Not in the Lambda package (see docs/speed.md).

A batch runs as OpenVINO's throughput mode runs: one stream per thread, each a single-threaded
request on its share of the batch. On a quiet 2-core AVX-512 CPU that is a few percent faster than
one two-threaded request, and with a competing busy process it keeps far more of its speed (one
slowed core holds back only its own share; docs/speed.md). A call with fewer galaxies than
streams (an alert broker's one galaxy) runs on one request with all the threads instead, compiled
on first such call. OpenVINO's rows do not depend on how a batch is split (tested). Its threads are
not pinned to cores: two processes each pinning theirs (Dask workers, packed Slurm tasks) share a
core and run at half speed.

Compiled models are kept in the per-machine cache of :mod:`cai_edge.optimized_graphs`, beside
ONNX Runtime's optimized graphs and under the same rules (private folder, entries named by their
sha256 and bound to the bundle model's sha256, renamed into place whole, a damaged entry deleted
and the model compiled again): importing one takes ~0.15 s where compiling takes ~0.5 s, and its
rows are bit-identical (tested). The key holds OpenVINO's full version, the CPU's digest and every
compile setting, so each engine setting used (precision, threads, batched or one galaxy) has an
entry of its own (~18 MB each for the int8 default); OpenVINO applies the settings it is given on
import as well. OpenVINO's own cache (``CACHE_DIR``) is not used: it writes its file in place, so
a process starting beside another that writes it reads a torn file (a bus error, measured), and it
does not check the file's contents, so a damaged one gives wrong redshifts silently.
"""

from __future__ import annotations

import hashlib
import json
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np

from cai_edge.bundle import Bundle
from cai_edge.bundle.interface import check_session_interface
from cai_edge.errors import BackendUnavailableError, BundleError
from cai_edge.machine import usable_cores
from cai_edge.optimized_graphs import FORMAT, OptimizedGraphCache, cache_folder, cpu_signature

# backend name → OpenVINO's inference precision hint on the CPU
PRECISIONS = {"openvino": "f32", "openvino-bf16": "bf16"}


def _compiled_cache(model_sha256: str, config: dict) -> OptimizedGraphCache | None:
    """Where a model compiled with ``config`` by this OpenVINO on this CPU is kept; None when the cache is off."""
    import openvino as ov

    folder, cpu = cache_folder(), cpu_signature()
    if folder is None or cpu is None:
        return None
    setting = hashlib.sha256(json.dumps([ov.get_version(), sorted(config.items())], default=str).encode()).hexdigest()[:16]
    return OptimizedGraphCache(folder, f"{FORMAT}-{model_sha256[:32]}-ov{setting}-cpu{cpu}", model_sha256, suffix=".ov")


def _port(port: Any, ov: Any) -> SimpleNamespace:
    """An OpenVINO model port described as ONNX Runtime describes its inputs (name, type, shape)."""
    shape = port.get_partial_shape()
    dims = [] if shape.rank.is_dynamic else [d.get_length() if d.is_static else None for d in shape]
    kind = "tensor(float)" if port.get_element_type() == ov.Type.f32 else str(port.get_element_type())
    return SimpleNamespace(name=port.get_any_name(), type=kind, shape=dims)


class OpenVINOSession:
    """A compiled OpenVINO model with ONNX Runtime's ``run(output_names, feed)``; its requests are per calling thread."""

    def __init__(self, bundle: Bundle, threads: int | None = None, backend: str = "openvino"):
        try:
            import openvino as ov
        except ImportError:
            raise BackendUnavailableError(f"backend {backend!r} needs OpenVINO: pip install \"cai-edge[openvino]\"") from None
        self.backend, self.precision = backend, PRECISIONS[backend]
        self.threads = threads or usable_cores()
        self._core, self._bytes, self._model_sha256, self._where = ov.Core(), bundle.model_bytes, bundle.sha256, str(bundle.path)
        self.streams = self.threads
        # Each compiled (or imported from the cache) on first use: a one-galaxy run makes only the single-request model.
        self._compiled: dict[str, Any] = {}
        self._compile_lock = threading.Lock()
        self._local = threading.local()
        self._model = None
        self._caches = {kind: _compiled_cache(self._model_sha256, self._config(kind)) for kind in ("batched", "single")}
        # A cached entry is bound to this model's sha256 and was written after its interface passed the check below,
        # so the graph is read (~0.06 s, and ~45 MB held until compiled) only when no entry is there.
        if not any(cache.has_entry() for cache in self._caches.values() if cache):
            self._model = self._read()
            self._check(self._model)

    def _config(self, kind: str) -> dict:
        hint = ({"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams} if kind == "batched"
                else {"PERFORMANCE_HINT": "LATENCY"})  # one stream on all the threads
        return {"INFERENCE_PRECISION_HINT": self.precision, "INFERENCE_NUM_THREADS": self.threads, **hint,
                # pinned threads of two processes (Dask workers, packed Slurm tasks) pile onto the same cores
                "ENABLE_CPU_PINNING": False}

    def _kind(self, n: int) -> str:
        """The compiled model that runs ``n`` galaxies: ``batched`` over the streams, or ``single`` for fewer than them."""
        return "single" if n < self.streams or self.streams == 1 else "batched"

    def _check(self, model: Any) -> None:
        import openvino as ov

        check_session_interface([_port(p, ov) for p in model.inputs], [_port(p, ov) for p in model.outputs], self._where)

    def load_in_background(self, galaxies: int) -> None:
        """Start importing (or compiling) the model that runs ``galaxies`` at a time, on a helper thread.

        OpenVINO releases the GIL while it imports, so the caller's reading of its first inputs runs
        meanwhile; the first call waits for the helper under the compile lock. Should the helper fail,
        that call compiles again and raises as it would have.
        """
        kind = self._kind(galaxies)
        if kind not in self._compiled:
            # not a daemon: a run that ends before the import does (all done already) waits for it, instead of
            # leaving OpenVINO's own thread inside its code while the interpreter shuts down
            threading.Thread(target=self._load_quietly, args=(kind,), name="cai-edge-model-load").start()

    def _load_quietly(self, kind: str) -> None:
        try:
            self._compiled_model(kind)
        except Exception:  # the first call loads it again, and its error is raised there
            pass

    def _compiled_model(self, kind: str) -> Any:
        if kind not in self._compiled:
            with self._compile_lock:
                if kind not in self._compiled:
                    self._compiled[kind] = self._from_cache_or_compile(self._config(kind), self._caches[kind])
        return self._compiled[kind]

    def _from_cache_or_compile(self, config: dict, cache: OptimizedGraphCache | None) -> Any:
        entry = cache.load() if cache else None
        if entry is not None:
            path, blob = entry
            try:
                compiled = self._core.import_model(blob, "CPU", config)
            except Exception:  # an entry this OpenVINO cannot import is dropped; the model is compiled below
                cache.remove(path)
            else:
                self._model = None  # read by the constructor before another process wrote the entry: not needed now
                self._check(compiled)
                return compiled
        model, self._model = self._model or self._read(), None  # OpenVINO's copy of the graph (~45 MB for the
        compiled = self._core.compile_model(model, "CPU", config)  # int8 default) is not kept beside it
        self._check(compiled)  # before it is kept: an entry is written only for a model whose interface passed
        if cache is not None:
            try:
                cache.store(compiled.export_model().getvalue())
            except Exception:  # the cache is optional: a model OpenVINO cannot export still runs
                pass
        return compiled

    def _read(self) -> Any:
        import openvino as ov

        try:
            return self._core.read_model(self._bytes, ov.Tensor(np.empty(0, np.uint8)))
        except Exception as exc:  # OpenVINO raises its own RuntimeError subtypes for a model it cannot read
            raise BundleError(f"{self._where}: model.onnx cannot be read by OpenVINO ({str(exc).strip()[:300]})") from exc

    def _requests(self, kind: str) -> list:
        requests = getattr(self._local, kind, None)
        if requests is None:
            compiled = self._compiled_model(kind)
            requests = [compiled.create_infer_request() for _ in range(self.streams if kind == "batched" else 1)]
            setattr(self._local, kind, requests)
        return requests

    def run(self, output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The named outputs for ``feed``, as new arrays (a request's buffers are reused by its next call)."""
        n = len(next(iter(feed.values()))) if feed else 0
        if self._kind(n) == "single":
            (request,) = self._requests("single")
            request.infer(feed)
            return [np.array(request.get_tensor(name).data) for name in output_names]
        edges = np.linspace(0, n, self.streams + 1).astype(int)
        requests = self._requests("batched")
        for request, start, stop in zip(requests, edges[:-1], edges[1:]):
            request.start_async({name: value[start:stop] for name, value in feed.items()})
        for request in requests:
            request.wait()
        return [np.concatenate([np.array(r.get_tensor(name).data) for r in requests]) for name in output_names]

    def get_providers(self) -> list[str]:
        """What runs the model, named as ONNX Runtime names its providers."""
        return [f"OpenVINO CPU ({self.precision})"]
