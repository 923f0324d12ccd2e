"""Real Lambda figures from the handler's own metrics JSONs (a results folder or s3:// prefix)."""

from __future__ import annotations

import json
import statistics

from cai_edge.scale_out.aws import storage


def read_lambda_metrics(prefix: str) -> list[dict]:
    metrics = []
    for uri in storage.list_uris(prefix, ".json"):
        name = storage.basename(uri)
        if name.startswith("_") or "/summary/" in uri.replace("\\", "/"):
            continue
        record = json.loads(storage.get_bytes(uri))
        if record.get("status") == "ok" and record.get("memory_mb"):
            metrics.append(record)
    return metrics


def lambda_rows(metrics: list[dict]) -> dict[tuple[str, str, int], dict]:
    """Per (bundle sha256, architecture, memory MB): throughput, cold start, peak RSS, cost per million galaxies."""
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for m in metrics:
        groups.setdefault((m["bundle_sha256"], m["architecture"], int(m["memory_mb"])), []).append(m)
    rows = {}
    for key, group in groups.items():
        galaxies = sum(m["n"] for m in group)
        seconds = sum(m["duration_ms"] for m in group) / 1000.0
        cold = [m["init_ms"] for m in group if m.get("cold_start")]
        cost = sum(m["cost_usd"] for m in group if m.get("cost_usd") is not None)
        rows[key] = {
            "galaxies_per_s": galaxies / seconds if seconds else None,
            "cold_start_ms": statistics.median(cold) if cold else None,
            "peak_rss_mb": max(m["peak_rss_mb"] for m in group),
            "usd_per_million": cost / galaxies * 1e6 if galaxies else None,
            "partitions": len(group),
        }
    return rows
