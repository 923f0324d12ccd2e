"""OpenVINO as a second CPU backend: the bundle's verified ``model.onnx`` compiled by OpenVINO, run like an ONNX Runtime session.

Only the bytes the bundle verified (checksum, schema) are handed to OpenVINO, never a file of
their own, and its interface is checked against the runtime's contract as ONNX Runtime's is.
Optional: ``pip install "cai-edge[openvino]"``; nothing imports this module unless an
``openvino`` backend is asked for or probed. Not in the Lambda package (see docs/speed.md).

A batch runs as OpenVINO's throughput mode runs: one stream per thread, each a single-threaded
request on its share of the batch. On a quiet 2-core AVX-512 CPU that is a few percent faster than
one two-threaded request, and with a competing busy process it keeps far more of its speed (one
slowed core holds back only its own share; docs/speed.md). Each compiled model takes a fixed number
of galaxies per request (static shapes: 3–4 % faster per batch than a model compiled for any
number; docs/speed.md). The first batch sets that number (its share per stream, rounded up to a
power of two; a later, larger batch raises it); a part left over that fills at least an eighth of a
request runs padded to it, a smaller one, and fewer galaxies than streams (an alert broker's one
galaxy), on a model compiled for one galaxy per request on one thread (as fast as one galaxy on two
threads was, 1.7–1.8 ms). On one thread per request OpenVINO gives every galaxy the same redshift
whatever the number per request, so rows do not depend on how a batch is split or padded (tested; a
model compiled for any number, or one request on two threads, gives others, by up to 4e-4 in z).
Its threads are not pinned to cores: two processes each pinning theirs (Dask workers, packed Slurm
tasks) share a core and run at half speed.

Compiled models are kept in the per-machine cache of :mod:`cai_edge.optimized_graphs`, beside ONNX
Runtime's optimized graphs and under the same rules (private folder, entries named by their sha256
and bound to the bundle model's sha256, renamed into place whole, a damaged entry deleted and the
model compiled again): importing one takes ~0.15 s where compiling takes ~0.5 s, and its rows are
bit-identical (tested). The key holds OpenVINO's full version, the CPU's digest and every compile
setting, so each engine setting used (precision, threads, batched or one galaxy) has an entry of
its own (~18 MB each for the int8 default; each number of galaxies per request is a setting);
OpenVINO applies the settings it is given on import as well. OpenVINO's own cache (``CACHE_DIR``)
is not used: it writes its file in place, so a process starting beside another that writes it reads
a torn file (a bus error, measured), and it does not check the file's contents, so a damaged one
gives wrong redshifts silently.
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


def _compiled_cache(model_sha256: str, config: dict, per_request: int) -> OptimizedGraphCache | None:
    """Where a model compiled with ``config`` for ``per_request`` galaxies per request by this OpenVINO on this CPU is
    kept; None when the cache is off."""
    import openvino as ov

    folder, cpu = cache_folder(), cpu_signature()
    if folder is None or cpu is None:
        return None
    setting = hashlib.sha256(json.dumps([ov.get_version(), sorted(config.items()), per_request], default=str).encode()).hexdigest()[:16]
    return OptimizedGraphCache(folder, f"{FORMAT}-{model_sha256[:32]}-ov{setting}-cpu{cpu}", model_sha256, suffix=".ov")


def _port(port: Any, ov: Any, batch_fixed_here: bool = False) -> SimpleNamespace:
    """An OpenVINO model port described as ONNX Runtime describes its inputs (name, type, shape); ``batch_fixed_here``:
    the galaxy axis is one this session fixed (a compiled model's), so it is described as the model.onnx has it."""
    shape = port.get_partial_shape()
    dims = [] if shape.rank.is_dynamic else [d.get_length() if d.is_static else None for d in shape]
    if batch_fixed_here and dims:
        dims[0] = None
    kind = "tensor(float)" if port.get_element_type() == ov.Type.f32 else str(port.get_element_type())
    return SimpleNamespace(name=port.get_any_name(), type=kind, shape=dims)


def request_size(galaxies: int, streams: int) -> int:
    """Galaxies per request for a batch of ``galaxies`` over ``streams``: its share per stream, rounded up to a power of two."""
    share = -(-galaxies // streams)
    return 1 << (share - 1).bit_length()


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
        # galaxies per request → its compiled model, each compiled (or imported from the cache) on first use: a
        # one-galaxy run makes only the one-galaxy model
        self._compiled: dict[int, Any] = {}
        self._batch_size: int | None = None  # galaxies per request of batches, set by the first batch
        self._compile_lock = threading.Lock()
        self._local = threading.local()
        self._model = None
        # A cached entry is bound to this model's sha256 and was written after its interface passed the check below,
        # so the graph is read (~0.06 s, and ~45 MB held until compiled) only when no entry is there.
        from cai_edge.predictor import DEFAULT_BATCH_SIZE

        usual = {1, request_size(DEFAULT_BATCH_SIZE, self.streams)}
        if not any(cache.has_entry() for cache in map(self._cache, usual) if cache):
            self._model = self._read()
            self._check(self._model)

    def _config(self, per_request: int) -> dict:
        # one single-threaded stream per thread; the one-galaxy model as one such stream of its own (compiled for two,
        # its requests took 2.3-2.4 ms against 1.9 ms)
        streams = 1 if per_request == 1 else self.streams
        return {"INFERENCE_PRECISION_HINT": self.precision, "INFERENCE_NUM_THREADS": streams,
                "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams,
                # pinned threads of two processes (Dask workers, packed Slurm tasks) pile onto the same cores
                "ENABLE_CPU_PINNING": False}

    def _cache(self, per_request: int) -> OptimizedGraphCache | None:
        return _compiled_cache(self._model_sha256, self._config(per_request), per_request)

    def _check(self, model: Any, compiled: bool = False) -> None:
        """The model's interface against the runtime's contract; ``compiled``: one this session compiled for a fixed
        number of galaxies per request (checked as the model.onnx it was compiled from)."""
        import openvino as ov

        check_session_interface([_port(p, ov, compiled) for p in model.inputs], [_port(p, ov, compiled) for p in model.outputs],
                                self._where)

    def load_in_background(self, galaxies: int) -> None:
        """Start importing (or compiling) the model that runs ``galaxies`` at a time, on a helper thread.

        OpenVINO releases the GIL while it imports, so the caller's reading of its first inputs runs
        meanwhile; the first call waits for the helper under the compile lock. Should the helper fail,
        that call compiles again and raises as it would have.
        """
        size = self._size_for(galaxies)
        if size not in self._compiled:
            # not a daemon: a run that ends before the import does (all done already) waits for it, instead of
            # leaving OpenVINO's own thread inside its code while the interpreter shuts down
            threading.Thread(target=self._load_quietly, args=(size,), name="cai-edge-model-load").start()

    def _load_quietly(self, size: int) -> None:
        try:
            self._compiled_model(size)
        except Exception:  # the first call loads it again, and its error is raised there
            pass

    def _size_for(self, galaxies: int) -> int:
        """Galaxies per request for a call of ``galaxies``: one for fewer than the streams, else the batch size, which
        the first such call sets and a larger one raises (the model for the smaller size is then let go)."""
        if galaxies < self.streams:
            return 1
        wanted = request_size(galaxies, self.streams)
        with self._compile_lock:
            if self._batch_size is None or wanted > self._batch_size:
                if self._batch_size not in (None, 1):
                    self._compiled.pop(self._batch_size, None)
                    getattr(self._local, "requests", {}).pop(self._batch_size, None)
                self._batch_size = wanted
            return self._batch_size

    def _chunks(self, galaxies: int) -> list[tuple[int, int, int]]:
        """``(start, stop, galaxies per request)`` of each request of a call: full requests of the batch size, then
        what is left padded to it when it fills at least an eighth of one, else one galaxy per request."""
        size = self._size_for(galaxies)
        full = galaxies // size * size
        chunks = [(a, a + size, size) for a in range(0, full, size)]
        if full < galaxies:
            if (galaxies - full) * 8 >= size:
                chunks.append((full, galaxies, size))
            else:
                chunks += [(a, a + 1, 1) for a in range(full, galaxies)]
        return chunks

    def _compiled_model(self, size: int) -> Any:
        if size not in self._compiled:
            with self._compile_lock:
                if size not in self._compiled:
                    self._compiled[size] = self._from_cache_or_compile(size)
        return self._compiled[size]

    def _from_cache_or_compile(self, size: int) -> Any:
        config, cache = self._config(size), self._cache(size)
        entry = cache.load() if cache else None
        if entry is not None:
            path, blob = entry
            try:
                compiled = self._core.import_model(blob, "CPU", config)
            except Exception:  # an entry this OpenVINO cannot import is dropped; the model is compiled below
                cache.remove(path)
            else:
                self._model = None  # read by the constructor before another process wrote the entry: not needed now
                self._check(compiled, compiled=True)
                return compiled
        model, self._model = self._model or self._read(), None  # OpenVINO's copy of the graph (~45 MB for the
        self._check(model)  # int8 default) is not kept beside it
        model.reshape({port.get_any_name(): _with_batch(port, size) for port in model.inputs})
        compiled = self._core.compile_model(model, "CPU", config)
        self._check(compiled, compiled=True)  # before it is kept: an entry is written only for a model whose interface passed
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

    def _requests(self, size: int) -> list:
        """This thread's requests on the model for ``size`` galaxies per request, one per stream."""
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        if size not in requests:
            compiled = self._compiled_model(size)
            requests[size] = [compiled.create_infer_request() for _ in range(self.streams)]
        return requests[size]

    def run(self, output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The named outputs for ``feed``, as new arrays (a request's buffers are reused by its next call)."""
        n = len(next(iter(feed.values()))) if feed else 0
        if n == 0:
            raise ValueError("no galaxies to run")
        chunks = self._chunks(n)
        outputs: list[list[np.ndarray]] = [[] for _ in output_names]
        for first in range(0, len(chunks), self.streams):  # one request per stream at a time, in rounds
            running = []
            for stream, (a, b, size) in enumerate(chunks[first : first + self.streams]):
                request = self._requests(size)[stream]
                request.start_async({name: _padded(value[a:b], size) for name, value in feed.items()})
                running.append((request, b - a))
            for request, k in running:
                request.wait()
                for out, name in zip(outputs, output_names):
                    out.append(np.array(request.get_tensor(name).data[:k]))
        return [np.concatenate(out) for out in outputs]

    def get_providers(self) -> list[str]:
        """What runs the model, named as ONNX Runtime names its providers."""
        return [f"OpenVINO CPU ({self.precision})"]


def _with_batch(port: Any, size: int) -> Any:
    """``port``'s shape with its first (galaxy) dimension fixed at ``size``."""
    import openvino as ov

    return ov.PartialShape([size, *list(port.get_partial_shape())[1:]])


def _padded(values: np.ndarray, size: int) -> np.ndarray:
    """``values`` with its last galaxy repeated up to ``size`` galaxies: a fixed-size request's filler, whose
    outputs are dropped (the model computes each galaxy on its own)."""
    missing = size - len(values)
    return values if missing == 0 else np.concatenate([values, np.repeat(values[-1:], missing, axis=0)])
