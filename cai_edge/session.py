"""ONNX Runtime sessions for bundles: execution providers and thread counts chosen deliberately."""

from __future__ import annotations

import os

from typing import Sequence

import onnxruntime as ort

from cai_edge.bundle import Bundle
from cai_edge.bundle.interface import check_session_interface
from cai_edge.errors import BundleError, CaiEdgeError
from cai_edge.machine import bounded_threads
from cai_edge.optimized_graphs import OptimizedGraphCache

# Best first; "auto" takes the first one installed.
PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CoreMLExecutionProvider",
    "OpenVINOExecutionProvider",
    "DmlExecutionProvider",
    "CPUExecutionProvider",
)
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
}


class ProviderUnavailableError(CaiEdgeError):
    """An execution provider was asked for that this onnxruntime build does not have."""


def resolve_providers(spec: str | Sequence[str] | None) -> list[str]:
    """``None``/``"cpu"`` → CPU; ``"auto"`` → the best installed; a name or list → those, CPU as fallback."""
    available = ort.get_available_providers()
    if spec is None or spec == "cpu":
        return ["CPUExecutionProvider"]
    if spec == "auto":
        return [p for p in PROVIDER_PREFERENCE if p in available]
    names = [spec] if isinstance(spec, str) else list(spec)
    wanted = [PROVIDER_ALIASES.get(n.lower(), n) for n in names]
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ProviderUnavailableError(
            f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
            f"(available: {', '.join(available)}); install e.g. onnxruntime-gpu for CUDA"
        )
    return wanted + ([] if "CPUExecutionProvider" in wanted else ["CPUExecutionProvider"])


SPINNING_ENV = "CAI_EDGE_THREAD_SPINNING"


def _session_options(threads: int, thread_policy: bool = True) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if thread_policy:
        _set_thread_policy(options)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The memory pattern pre-plans one block per input shape; on these graphs it bought no
    # measurable speed (A/B at batch 256) and cost ~70 MB of peak RSS with the int8 default.
    options.enable_mem_pattern = False
    # fatal only: graph-optimizer notes, and the coloured error line ONNX Runtime prints before raising (the exception
    # carries the same text), are not for the people reading our output
    options.log_severity_level = 4
    return options


def _set_thread_policy(options: ort.SessionOptions) -> None:
    """Worker threads that sleep between parallel loops and take work in shrinking blocks (docs/speed.md).

    ONNX Runtime's default (threads spin while idle, each takes an equal share of a loop) is fastest
    on a machine of its own, and falls to 0.33–0.43 of that speed when one other busy process shares
    2 cores: spinning threads burn the time the other process needs, and the slowed thread holds the
    rest back. Without spinning and with dynamic blocks cai-edge kept 0.61–0.67 of its quiet speed, and
    lost 2–5 % of it when quiet (`benchmarks/thread_spinning.py`, AMD EPYC Zen 4, 2 threads, batch 256).
    At batch 1 spinning is ~0.7 ms faster on an idle machine: ``CAI_EDGE_THREAD_SPINNING=1`` turns it on
    for a latency-bound process with cores to itself.
    """
    spinning = os.environ.get(SPINNING_ENV, "0").strip() == "1"
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.add_session_config_entry("session.dynamic_block_base", "4")


def _from_cache(cache: OptimizedGraphCache, threads: int, chosen: list[str]) -> ort.InferenceSession | None:
    """A session on the cached optimized graph (optimization off: it is already done), or None."""
    entry = cache.load()
    if entry is None:
        return None
    path, graph = entry
    options = _session_options(threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(graph, sess_options=options, providers=chosen)
    except Exception:  # an entry this onnxruntime cannot load is dropped; the bundle's own graph follows
        cache.remove(path)
        return None


def started_from_cache(session: ort.InferenceSession) -> bool:
    """Whether ``session`` runs a cached optimized graph: only those run with optimization off (never another backend's)."""
    return isinstance(session, ort.InferenceSession) and session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def _from_bundle(bundle: Bundle, threads: int, chosen: list[str], cache: OptimizedGraphCache | None) -> ort.InferenceSession:
    """A session on the bundle's verified graph; the optimized graph is written to the cache on the way."""
    staging = cache.staging_path() if cache else None
    if staging is not None:
        options = _session_options(threads)
        options.optimized_model_filepath = str(staging)
        try:
            session = ort.InferenceSession(bundle.model_bytes, sess_options=options, providers=chosen)
        except Exception:  # e.g. the cache's disk is full: build the session again below, writing nothing
            cache.remove(staging)
        else:
            cache.commit(staging)
            return session
    try:
        return ort.InferenceSession(bundle.model_bytes, sess_options=_session_options(threads), providers=chosen)
    except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, …) for a bad model
        first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{bundle.path}: model.onnx cannot be loaded by ONNX Runtime ({first_line})") from exc


def create_session(bundle: Bundle, threads: int | None = None, providers: str | Sequence[str] | None = None) -> ort.InferenceSession:
    """A session for ``bundle`` whose interface has been checked; intra-op threads: ``bounded_threads``.

    On the CPU provider alone, the graph ONNX Runtime optimizes is kept in the per-machine cache
    of :mod:`cai_edge.optimized_graphs`, and later sessions start from it.
    """
    chosen = resolve_providers(providers)
    threads = bounded_threads(threads)
    cache = OptimizedGraphCache.for_model(bundle.sha256) if chosen == ["CPUExecutionProvider"] else None
    session = _from_cache(cache, threads, chosen) if cache else None
    if session is None:
        session = _from_bundle(bundle, threads, chosen, cache)
    check_session_interface(session.get_inputs(), session.get_outputs(), str(bundle.path))
    return session
