"""``cai-edge fanout --local``: initialize → the handler per partition in a process pool → summarize.

Exactly what the Step Functions state machine does, against any S3 endpoint or a local folder,
so a fan-out can be rehearsed (or run on one big machine) with the Lambda code itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed

from cai_edge.scale_out.aws import storage
from cai_edge.errors import CaiEdgeError
from cai_edge.machine import usable_cores


class NothingToDoError(CaiEdgeError):
    """The fan-out found no partitions to process."""


def _process(item: dict) -> dict:
    from cai_edge.scale_out.aws.handler import handler

    try:
        return handler({"input": item["input"], "output": item["output"], "name": item.get("name")})
    except Exception as exc:  # reported like a failed Map item; the others go on
        return {"partition": item["input"], "status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def run_fanout(input_prefix: str, output_prefix: str, workers: int | None = None, bundle: str | None = None) -> dict:
    from cai_edge.scale_out.aws.handler import initialize, summarize

    if bundle:
        os.environ["CAI_EDGE_BUNDLE"] = bundle
    if not (storage.is_s3(input_prefix) and storage.is_s3(output_prefix)):
        os.environ[storage.LOCAL_PATHS_ENV] = "1"  # this machine's folders, asked for on its own command line
    init = initialize({"input": input_prefix, "output": output_prefix})
    items = json.loads(storage.get_bytes(init["items_uri"]))
    if not items:
        raise NothingToDoError(
            f"no NPZ partitions (*.npz) under {input_prefix}; the fan-out reads partitions — "
            f"make them from cutouts with: cai-edge partition CUTOUTS/ --out PARTS/"
        )
    results = []
    with ProcessPoolExecutor(max_workers=workers or usable_cores()) as pool:
        for future in as_completed([pool.submit(_process, item) for item in items]):
            results.append(future.result())
    summary = summarize({"output": output_prefix, "started": init["started"]})
    summary["invocations"] = {s: sum(r["status"] == s for r in results) for s in ("ok", "skipped", "failed")}
    return summary


def run(args: argparse.Namespace) -> int:
    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    summary = run_fanout(args.input_prefix, args.output_prefix, args.workers, args.bundle)
    print(json.dumps(summary, indent=2))
    failed = summary["partitions_failed"] or summary["partitions_missing"]
    for entry in summary["partitions_failed"]:
        print(f"failed partition {entry['partition']}: {entry['error']}", file=sys.stderr)
    return 1 if failed else 0
