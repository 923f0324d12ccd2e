"""The AWS Lambda handler: the same verified bundle the laptop uses, no torch, no astropy.

Handler: ``cai_edge.scale_out.aws.handler.handler``. Events:

1. one partition — ``{"input": "s3://b/parts/run-a/p-0001.npz", "output": "s3://b/results/run1/"[,
   "name": "run-a/p-0001"]}`` → writes ``<output><name>.csv`` (one row per galaxy, the columns of
   ``cai-edge predict``) and ``<output><name>.json`` (timings, throughput, peak RSS, bundle sha256,
   cost estimate). ``name`` is the partition's key under the input prefix without ``.npz``
   (``initialize`` puts it in every item), so ``run-a/p-0001`` and ``run-b/p-0001`` never collide;
   without it, the file's base name. Skips (and says so) when that JSON exists for the same
   partition and bundle sha256;
2. a Distributed Map batch — ``{"Items": [...], "BatchInput": {"output": ...}}``, items being
   ``{"input": uri}`` or S3 listing entries ``{"Key": ...}`` (with ``BatchInput.bucket``);
3. an inline batch — ``{"images_npy": b64, "magnitudes_npy": b64[, "ids": [...]]}`` (≤ 6 MB) →
   predictions in the response.

``initialize`` lists the partitions for the state machine; ``summarize`` merges the results.
The bundle loads once per execution environment (``CAI_EDGE_BUNDLE``: a path in the package or a
layer, or an ``s3://`` URI cached in /tmp, verified by sha256). Events name ``s3://`` URIs only;
local paths are accepted only when ``CAI_EDGE_ALLOW_LOCAL_PATHS=1``, which ``cai-edge fanout
--local`` sets for a local folder.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cai_edge.scale_out.aws import storage
from cai_edge.bundle import Bundle, open_bundle, resolve_bundle
from cai_edge.errors import BundleError, CaiEdgeError
from cai_edge.estimates import Estimate, check_magnitude_system, estimate
from cai_edge.io.npz_partitions import load_npz_partition, records_from_arrays
from cai_edge.results.formats import FORMATS
from cai_edge.io.records import GalaxyRecord
from cai_edge.results.rows import COLUMNS, INTERVAL_COLUMNS, USABLE_INDEX, row, rows_to_csv
from cai_edge.machine import peak_rss_mb, usable_cores
from cai_edge.predictor import DEFAULT_BATCH_SIZE, Predictor
from cai_edge.pricing import billed_ms, lambda_cost_usd, lambda_threads

BUNDLE_CANDIDATES = ("/var/task/bundle.zip", "/opt/bundle.zip", "/opt/cai-edge/bundle.zip")
CACHE_DIR = Path(os.environ.get("CAI_EDGE_TMP", "/tmp")) / "cai-edge"
INLINE_LIMIT_BYTES = 6 * 1024 * 1024
FLAG_BITS_INDEX, FLAG_NAMES_INDEX = COLUMNS.index("flag_bits"), COLUMNS.index("flag_names")
ITEMS_NAME = "_items.json"
SUMMARY_DIR = "summary/"


SKIPPED_NAME = "_skipped.json"


class PartitionError(CaiEdgeError):
    """A partition could not be processed; the message names it."""


class EventError(CaiEdgeError, ValueError):
    """An event (or a field of it) is not one this handler takes; the message names the field."""


def _get(uri: object, what: str) -> bytes:
    """Every read of a handler path: the URI checked first (``s3://`` only in a Lambda)."""
    return storage.get_bytes(storage.check_uri(uri, what))


def _put(uri: object, data: bytes, content_type: str, what: str = "output") -> None:
    storage.put_bytes(storage.check_uri(uri, what), data, content_type)


def _exists(uri: object, what: str) -> bool:
    return storage.exists(storage.check_uri(uri, what))


def _error_text(exc: BaseException) -> str:
    """A failure's text for a record: our own errors as they are, others with their type."""
    return str(exc) if isinstance(exc, CaiEdgeError) else f"{type(exc).__name__}: {exc}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def function_memory_mb() -> int | None:
    value = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    return int(value) if value else None


def architecture() -> str:
    import platform

    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"


def intra_op_threads() -> int:
    """1 vCPU per 1,769 MB (6 at most) on Lambda, never more than the affinity mask allows."""
    memory = function_memory_mb()
    return min(lambda_threads(memory), usable_cores()) if memory else usable_cores()


def _bundle_spec() -> str:
    spec = os.environ.get("CAI_EDGE_BUNDLE")
    if spec:
        return spec
    for candidate in BUNDLE_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    return "default"


def load_bundle(spec: str) -> Bundle:
    """Open the bundle; an ``s3://`` bundle is downloaded once into /tmp and re-verified on every load."""
    if storage.is_s3(spec):
        import hashlib

        from cai_edge.io.atomic import atomic_path

        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        local = CACHE_DIR / f"bundle-{hashlib.sha256(spec.encode()).hexdigest()[:16]}.zip"
        if not local.exists():
            data = storage.get_bytes(spec)  # from the function's own configuration, not from an event
            with atomic_path(local) as tmp:
                tmp.write_bytes(data)
        bundle = open_bundle(local)
    else:
        bundle = resolve_bundle(spec)
    expected = os.environ.get("CAI_EDGE_BUNDLE_SHA256")
    if expected and expected != bundle.sha256:
        raise BundleError(f"bundle {spec} has model sha256 {bundle.sha256}, but CAI_EDGE_BUNDLE_SHA256 is {expected}")
    return bundle


class _Runtime:
    """What an execution environment keeps between invocations: the predictor and its cold-start time."""

    def __init__(self) -> None:
        start = time.perf_counter()
        self.bundle = load_bundle(_bundle_spec())
        self.threads = intra_op_threads()
        self.predictor = Predictor(self.bundle, threads=self.threads)
        self.init_ms = (time.perf_counter() - start) * 1000.0
        self.invocations = 0


_runtime: _Runtime | None = None


def runtime() -> _Runtime:
    global _runtime
    if _runtime is None:
        _runtime = _Runtime()
    return _runtime


def _estimate(rt: _Runtime, records: list[GalaxyRecord]) -> list[Estimate]:
    """Every record's result (failures pass through), as ``cai-edge predict`` makes it."""
    system = rt.predictor.preprocessing.magnitude_system
    csv_format = FORMATS["csv"]
    records = [r.with_unwritable_id(problem) if (problem := csv_format.id_problem(r.id)) else r for r in records]
    return estimate(rt.predictor, [check_magnitude_system(r, system) for r in records], DEFAULT_BATCH_SIZE)


def result_name(input_uri: str, input_prefix: str | None = None) -> str:
    """The partition's key under ``input_prefix`` without ``.npz`` (``run-a/p-0002``): where its results go."""
    name = storage.relative_name(input_uri, input_prefix)
    return name[: -len(".npz")] if name.endswith(".npz") else name


def _check_name(name: object) -> str:
    parts = name.split("/") if isinstance(name, str) else []
    if not parts or any(p in ("", ".", "..") for p in parts) or "\\" in name:
        raise ValueError(f"a partition's result name must be a relative key such as run-a/p-0001, got {name!r:.100}")
    if parts[0] == SUMMARY_DIR.rstrip("/") or name in (ITEMS_NAME[: -len(".json")], SKIPPED_NAME[: -len(".json")]):
        raise ValueError(f"partition name {name!r} would overwrite the run's own {SUMMARY_DIR}, {ITEMS_NAME} or {SKIPPED_NAME}; rename it")
    return name


def _previous_metrics(json_uri: str) -> dict:
    try:
        previous = json.loads(_get(json_uri, "metrics"))
    except (storage.StorageError, ValueError):
        return {}
    return previous if isinstance(previous, dict) else {}


def _write_failure(input_uri: str, csv_uri: str, json_uri: str, metrics: dict, exc: BaseException) -> None:
    """A failed partition still leaves its row and its metrics, so the summary calls it failed, not missing."""
    stem = result_name(input_uri)
    failure = GalaxyRecord.failed(stem, input_uri, getattr(exc, "status", "unreadable"), f"partition unusable: {exc}")
    _put(csv_uri, rows_to_csv([row(failure)]).encode(), "text/csv")
    record = {**metrics, "status": "failed", "error": _error_text(exc), "finished": _now()}
    _put(json_uri, json.dumps(record).encode(), "application/json")


def process_partition(input_uri: str, output_prefix: str, name: str | None = None) -> dict:
    """One partition in, its CSV and metrics JSON out; raises :class:`PartitionError` naming a bad partition."""
    storage.check_uri(input_uri, "input")
    storage.check_uri(output_prefix, "output")
    name = _check_name(name if name is not None else result_name(input_uri))
    rt = runtime()
    cold = rt.invocations == 0
    rt.invocations += 1
    started, t0 = _now(), time.perf_counter()
    stem = result_name(input_uri)
    output_prefix = storage.folder(output_prefix)
    csv_uri, json_uri = storage.join(output_prefix, f"{name}.csv"), storage.join(output_prefix, f"{name}.json")
    if _exists(json_uri, "output"):
        previous = _previous_metrics(json_uri)
        if previous.get("status") == "ok" and previous.get("bundle_sha256") == rt.bundle.sha256 and previous.get("partition") == input_uri:
            return {"partition": input_uri, "status": "skipped", "reason": "output exists for this bundle", "output": csv_uri}

    metrics = {"partition": input_uri, "output": csv_uri, "started": started, "cold_start": cold,
               "init_ms": round(rt.init_ms, 1) if cold else 0.0, **rt.bundle.identity(), "engine": rt.predictor.engine,
               "memory_mb": function_memory_mb(), "architecture": architecture(), "threads": rt.threads}
    try:
        t = time.perf_counter()
        data = _get(input_uri, "input")
        metrics["s3_get_ms"] = (time.perf_counter() - t) * 1000.0
        t = time.perf_counter()
        images, magnitudes, ids, z_spec = load_npz_partition(stem, data)
        records = list(records_from_arrays(Path(stem), images, magnitudes, ids, z_spec))
        metrics["decode_ms"] = (time.perf_counter() - t) * 1000.0
    except Exception as exc:  # storage, bad data, MemoryError …: this partition fails, on the record
        _write_failure(input_uri, csv_uri, json_uri, metrics, exc)
        raise PartitionError(f"partition {input_uri}: {exc}") from exc

    t = time.perf_counter()
    try:
        results = _estimate(rt, records)
    except Exception as exc:
        _write_failure(input_uri, csv_uri, json_uri, metrics, exc)
        raise PartitionError(f"partition {input_uri}: {exc}") from exc
    metrics["infer_ms"] = (time.perf_counter() - t) * 1000.0
    t = time.perf_counter()
    _put(csv_uri, rows_to_csv(e.row() for e in results).encode(), "text/csv")
    records = [e.record for e in results]
    metrics["s3_put_ms"] = (time.perf_counter() - t) * 1000.0  # the CSV; the JSON below marks completion

    duration_ms = (time.perf_counter() - t0) * 1000.0
    n_ok = sum(r.ok for r in records)
    memory = function_memory_mb()
    metrics.update({
        "status": "ok", "n": len(records), "n_ok": n_ok, "n_failed": len(records) - n_ok,
        "duration_ms": round(duration_ms, 1), "billed_ms": billed_ms(duration_ms),
        "galaxies_per_s": round(len(records) / (duration_ms / 1000.0), 1) if duration_ms > 0 else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "cost_usd": lambda_cost_usd(duration_ms + metrics["init_ms"], memory, architecture()) if memory else None,
        "finished": _now(),
    })
    for key in ("s3_get_ms", "decode_ms", "infer_ms", "s3_put_ms"):
        metrics[key] = round(metrics[key], 1)
    _put(json_uri, json.dumps(metrics, indent=1).encode(), "application/json")
    return {"partition": input_uri, "status": "ok", "n": len(records), "n_failed": metrics["n_failed"], "output": csv_uri}


def _item_uri(item, batch_input: dict) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and "input" in item:
        return item["input"]
    if isinstance(item, dict) and isinstance(item.get("Key"), str) and isinstance(batch_input.get("bucket"), str):
        return f"s3://{batch_input['bucket']}/{item['Key']}"
    raise EventError(f"a Map item needs 'input' (a URI) or 'Key' with BatchInput.bucket; got {item!r:.200}")


def _item_name(item, uri: str, batch_input: dict) -> str:
    """The item's own ``name`` (from ``initialize``), else its key under ``BatchInput.input``, else its base name."""
    if isinstance(item, dict) and item.get("name"):
        return item["name"]
    return result_name(uri, batch_input.get("input"))


def _decode_array(b64: object, name: str, ndim: int) -> np.ndarray:
    if not isinstance(b64, str):
        raise EventError(f"event field {name!r} must be a base64 .npy array (text), got {type(b64).__name__}")
    try:
        array = np.load(io.BytesIO(base64.b64decode(b64)), allow_pickle=False)
    except Exception as exc:
        raise EventError(f"event field {name!r}: not a base64 .npy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(array, np.ndarray) or array.ndim != ndim:
        raise EventError(f"event field {name!r} must be a {ndim}-d array, got shape {getattr(array, 'shape', '?')}")
    return array


def predict_inline(event: dict) -> dict:
    if not isinstance(event.get("images_npy"), str) or len(event["images_npy"]) > INLINE_LIMIT_BYTES:
        raise EventError("event field 'images_npy' must be base64 .npy text of at most 6 MB: for more, write an NPZ "
                         "partition to S3 and send its URI instead")
    images = _decode_array(event["images_npy"], "images_npy", 4)
    magnitudes = _decode_array(event.get("magnitudes_npy"), "magnitudes_npy", 2)
    n = len(images)
    ids = event.get("ids", [str(i) for i in range(n)])
    if not isinstance(ids, list) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
        raise EventError("event field 'ids' must be a list of ids (text or integers)")
    ids = [str(i) for i in ids]
    if magnitudes.shape != (n, 5) or len(ids) != n:
        raise EventError(f"inline batch shapes disagree: images {images.shape}, magnitudes {magnitudes.shape}, {len(ids)} ids")
    records = list(records_from_arrays(Path("inline"), images, magnitudes, ids, np.full(n, math.nan)))
    rt = runtime()
    results = _estimate(rt, records)
    rows = [e.row() for e in results]
    answer = {"ids": ids, "z_pred": [e.z_pred if e.record.ok else None for e in results]}
    for column in INTERVAL_COLUMNS:
        answer[column] = [e.interval.get(column) for e in results]
    answer.update({
        "status": [e.record.status for e in results],
        "usable": [int(r[USABLE_INDEX]) for r in rows],
        "flag_bits": [int(r[FLAG_BITS_INDEX]) for r in rows],
        "flag_names": [r[FLAG_NAMES_INDEX] for r in rows],
        "message": [e.record.message for e in results],
        **rt.bundle.identity(),
    })
    return answer


def handler(event: dict, context=None) -> dict:
    """Lambda entry point; see the module docstring for the three event forms.

    A malformed event raises :class:`EventError` naming the field (the state machine's Catch sees
    ``EventError``); in a Map batch, each bad item is a failure record and the others run.
    """
    if not isinstance(event, dict):
        raise EventError(f"event must be a JSON object, got {type(event).__name__}")
    if "Items" in event:
        items, batch_input = event["Items"], event.get("BatchInput") or {}
        if not isinstance(items, list):
            raise EventError(f"event field 'Items' must be a list of Map items, got {type(items).__name__}")
        if not isinstance(batch_input, dict):
            raise EventError(f"event field 'BatchInput' must be an object, got {type(batch_input).__name__}")
        results = []
        for item in items:
            try:
                uri = _item_uri(item, batch_input)
                output = (item.get("output") if isinstance(item, dict) else None) or batch_input.get("output")
                if output is None:
                    raise EventError("a Map item needs 'output', itself or in BatchInput")
                results.append(process_partition(uri, output, _item_name(item, uri, batch_input)))
            except Exception as exc:  # one bad partition never loses the others' results
                results.append({"partition": f"{item!r:.300}" if not isinstance(item, str) else item, "status": "failed",
                                "error": _error_text(exc)})
        return {"results": results, "failed": sum(r["status"] == "failed" for r in results)}
    if "input" in event:
        if "output" not in event:
            raise EventError("a partition event needs 'output' (an s3:// prefix for the results)")
        name = event.get("name")
        if name is not None and not isinstance(name, str):
            raise EventError(f"event field 'name' must be text, got {type(name).__name__}")
        return process_partition(event["input"], event["output"], name)
    if "images_npy" in event:
        return predict_inline(event)
    raise EventError("unknown event: expected 'input'+'output', 'Items' (Distributed Map batch) or 'images_npy'+'magnitudes_npy'")


def _manifest_partitions(manifest_uri: str) -> list[str]:
    try:
        manifest = json.loads(_get(manifest_uri, "manifest"))
        files = [p["file"] for p in manifest["partitions"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise EventError(f"event field 'manifest': {manifest_uri} is not a partition manifest ({type(exc).__name__}: {exc})") from None
    if not all(isinstance(f, str) for f in files):
        raise EventError(f"event field 'manifest': {manifest_uri} names partitions that are not text")
    base = manifest_uri.rsplit("/", 1)[0]
    return [storage.join(base, f) for f in files]


def initialize(event: dict, context=None) -> dict:
    """List the NPZ partitions under ``input`` (or in ``manifest``); write the Map's item list under ``output``.

    A key that cannot name its results safely (``..``, ``//``, ``summary/…``, ``_items.npz``) is
    skipped, not fatal: it is listed in ``<output>_skipped.json`` and in the run's summary.
    """
    if not isinstance(event, dict):
        raise EventError(f"event must be a JSON object, got {type(event).__name__}")
    output = storage.folder(storage.check_uri(event.get("output"), "output"))
    if "manifest" in event:
        manifest_uri = storage.check_uri(event["manifest"], "manifest")
        partitions = _manifest_partitions(manifest_uri)
        input_prefix = manifest_uri.rsplit("/", 1)[0]
    else:
        input_prefix = storage.check_uri(event.get("input"), "input")
        partitions = storage.list_uris(input_prefix, ".npz")
    items, skipped = [], []
    for uri in partitions:
        try:
            items.append({"input": uri, "output": output, "name": _check_name(result_name(uri, input_prefix))})
        except ValueError as exc:
            skipped.append({"partition": uri, "reason": str(exc)})
    items_uri = storage.join(output, ITEMS_NAME)
    _put(items_uri, json.dumps(items).encode(), "application/json")
    _put(storage.join(output, SKIPPED_NAME), json.dumps(skipped).encode(), "application/json")
    result = {"items_uri": items_uri, "count": len(items), "skipped": skipped, "output": output, "started": _now()}
    if storage.is_s3(items_uri):  # where the Distributed Map's ItemReader finds the list
        result["items_bucket"], result["items_key"] = storage.split_s3(items_uri)
    return result


_METRIC_TYPES = {"partition": str, "output": str, "status": str}
_OK_METRIC_TYPES = {"n": int, "n_ok": int, "n_failed": int, "duration_ms": (int, float)}


def _metrics_problem(m: dict, output: str) -> str | None:
    """Why a partition's metrics JSON cannot be summarized (then the partition counts as failed), or None."""
    for key, kind in (*_METRIC_TYPES.items(), *(_OK_METRIC_TYPES.items() if m.get("status") == "ok" else ())):
        if isinstance(m.get(key), bool) or not isinstance(m.get(key), kind):
            return f"its metrics have no usable {key!r} ({m.get(key)!r:.60})"
    if not m["output"].startswith(output) or ".." in m["output"][len(output):].split("/"):
        return f"its metrics name an output outside the run's prefix ({m['output']!r:.200})"
    try:
        storage.check_uri(m["output"], "metrics output")
    except storage.StorageError as exc:
        return str(exc)
    return None


def _json_list(uri: str, what: str, problems: list[str]) -> list:
    """A JSON list the run wrote (``_items.json``, ``_skipped.json``); a missing or malformed one is a recorded problem."""
    if not _exists(uri, what):
        return []
    try:
        value = json.loads(_get(uri, what))
    except (ValueError, storage.StorageError) as exc:
        problems.append(f"{uri}: unreadable ({exc})")
        return []
    if not isinstance(value, list):
        problems.append(f"{uri}: not a JSON list")
        return []
    return value


def _identity(m: dict) -> dict:
    return {k: str(m.get(k, "")) for k in ("bundle", "variant", "bundle_sha256", "calibration_sha256", "engine")}


def _other_bundles(metrics: list[dict], failed: list[dict]) -> list[dict]:
    """The metrics of partitions made by the bundle (and calibration) that made most; the others are failed: rerun them."""
    from collections import Counter

    from cai_edge.scale_out.merge import IDENTITY_KEYS

    made_by = Counter(tuple(_identity(m)[k] for k in IDENTITY_KEYS) for m in metrics if m.get("bundle_sha256"))
    usual = max(made_by, key=lambda key: (made_by[key], key), default=None)
    kept = []
    for m in metrics:
        identity = _identity(m)
        if tuple(identity[k] for k in IDENTITY_KEYS) == usual:
            kept.append(m)
        elif usual is None or not identity["bundle_sha256"]:
            failed.append({"partition": m["partition"], "error": "its metrics record no bundle_sha256; rerun it"})
        else:
            failed.append({"partition": m["partition"], "error": f"made by bundle {identity['bundle']} (model sha256 "
                           f"{identity['bundle_sha256'][:12]}) but most partitions by {usual[0][:12]}; rerun it"})
    return kept


def _merge_partitions(metrics: list[dict], output: str) -> dict:
    """``summary/predictions.csv``: every partition's rows through :func:`cai_edge.scale_out.merge.merge_to`, the
    merge ``cai-edge merge`` runs (one bundle: see :func:`_other_bundles`)."""
    import tempfile

    from cai_edge.results.files import iter_result_rows
    from cai_edge.scale_out.merge import MergeInput, merge_to

    with tempfile.TemporaryDirectory(prefix="cai-edge-summary-") as folder:
        sources = []
        for i, m in enumerate(metrics):
            local = Path(folder) / f"{i:06d}.csv"
            local.write_bytes(_get(m["output"], "metrics output"))
            sources.append(MergeInput(m["output"], _identity(m), lambda local=local: iter_result_rows(local, "csv")))
        table = Path(folder) / "predictions.csv"
        if sources:
            from cai_edge.results.csv_sidecar import sidecar_path

            report = merge_to(table, sources, "csv", folder)
            _put(storage.join(output, SUMMARY_DIR + "predictions.csv"), table.read_bytes(), "text/csv")
            sidecar = sidecar_path(table)  # provenance, units and meanings, beside the CSV as every CSV output has
            _put(storage.join(output, SUMMARY_DIR + sidecar.name), sidecar.read_bytes(), "application/json")
            c = report.counts
            return {"rows_in": sum(c.rows_in), "rows_out": c.rows_out, "superseded": c.superseded, "duplicate_ids": c.duplicates}
    _put(storage.join(output, SUMMARY_DIR + "predictions.csv"), rows_to_csv([]).encode(), "text/csv")
    return {"rows_in": 0, "rows_out": 0, "superseded": 0, "duplicate_ids": 0}


def summarize(event: dict, context=None) -> dict:
    """Merge every partition's CSV and JSON into ``<output>summary/``; report failed, missing and skipped partitions.

    Only outputs under ``output`` are read; a metrics JSON that is malformed or names anything
    else counts its partition as failed, with the reason.
    """
    if not isinstance(event, dict):
        raise EventError(f"event must be a JSON object, got {type(event).__name__}")
    output = storage.folder(storage.check_uri(event.get("output"), "output"))
    problems: list[str] = []
    items_uri = storage.join(output, ITEMS_NAME)
    expected = [i["input"] for i in _json_list(items_uri, "items", problems) if isinstance(i, dict) and isinstance(i.get("input"), str)]
    skipped = [s for s in _json_list(storage.join(output, SKIPPED_NAME), "skipped", problems) if isinstance(s, dict)]
    metrics, failed = [], []
    summary_prefix = storage.join(output, SUMMARY_DIR.rstrip("/")) + "/"
    for uri in storage.list_uris(output, ".json"):
        if uri in (items_uri, storage.join(output, SKIPPED_NAME)) or uri.startswith(summary_prefix):
            continue
        m = _previous_metrics(uri)
        if not ("partition" in m and "output" in m and "status" in m):  # not a partition's metrics
            continue
        problem = _metrics_problem(m, output)
        if problem:
            failed.append({"partition": f"{m.get('partition')!s:.300}", "error": f"{uri}: {problem}"})
            continue
        metrics.append(m)  # its CSV holds its rows (a failed partition's: one row saying why)
        if m["status"] != "ok":
            failed.append({"partition": m["partition"], "error": str(m.get("error", ""))})
    seen = {m["partition"] for m in metrics} | {f["partition"] for f in failed}
    missing = [uri for uri in expected if uri not in seen]
    metrics = _other_bundles(metrics, failed)
    merged = _merge_partitions(metrics, output)

    ok = [m for m in metrics if m["status"] == "ok"]
    galaxies = sum(m["n"] for m in ok)
    starts = [m["started"] for m in ok if isinstance(m.get("started"), str)] + ([event["started"]] if isinstance(event.get("started"), str) else [])
    ends = [m["finished"] for m in ok if isinstance(m.get("finished"), str)]
    try:
        wall_s = (datetime.fromisoformat(max(ends)) - datetime.fromisoformat(min(starts))).total_seconds() if starts and ends else None
    except ValueError:
        wall_s = None
    costs = [m["cost_usd"] for m in ok if isinstance(m.get("cost_usd"), (int, float)) and not isinstance(m.get("cost_usd"), bool)]
    cost = sum(costs)
    summary = {
        "output": output,
        "partitions": len(expected) or len(seen),
        "partitions_ok": len(ok),
        "partitions_failed": failed,
        "partitions_missing": missing,
        "partitions_skipped": skipped,
        "problems": problems,
        "galaxies": galaxies,
        "galaxies_ok": sum(m["n_ok"] for m in ok),
        "galaxies_failed": sum(m["n_failed"] for m in ok),
        "wall_s": wall_s,
        "galaxies_per_s": round(galaxies / wall_s, 1) if wall_s else None,
        "sum_duration_s": round(sum(m["duration_ms"] for m in ok) / 1000.0, 3),
        "cold_starts": sum(bool(m.get("cold_start")) for m in ok),
        "cost_usd": cost if costs else None,
        "usd_per_million_galaxies": cost / galaxies * 1e6 if galaxies and cost else None,
        "bundles": sorted({str(m.get("bundle_sha256", "")) for m in ok}),
        "merge": merged,
    }
    _put(storage.join(output, SUMMARY_DIR + "summary.json"), json.dumps(summary, indent=2).encode(), "application/json")
    return summary
