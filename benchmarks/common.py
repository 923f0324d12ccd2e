"""Shared helpers for the benchmark scripts: machine record, subprocess runs, result files."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from cai_edge.machine import machine_info

RESULTS = Path(__file__).with_name("results")

# `cai-edge predict` in a fresh interpreter, timed from its start; prints one JSON line.
PREDICT_CODE = r"""
import time
t0 = time.perf_counter()
import json, sys
from cai_edge.machine import peak_rss_mb
from cai_edge.cli import main
code = main(["predict", *sys.argv[1:], "--quiet"])
print(json.dumps({"seconds": time.perf_counter() - t0, "exit": code, "peak_rss_mb": peak_rss_mb()}))
"""


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of 1 or more (rounds, galaxies), refused at once otherwise."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def run_json(code: str, *args: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter (clean RSS, honest load time); it prints one JSON line."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def save(name: str, result: dict, markdown: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": machine_info(), **result}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    header = (f"Machine: {m['cpu_model']} ({', '.join(m.get('simd') or ['no AVX2'])}), {m['usable_cores']} usable cores, "
              f"{m.get('memory_gb', '?')} GB, Python {m['python']}.\n\n")
    (RESULTS / f"{name}.md").write_text(header + markdown + "\n")
    print(header + markdown)


def profile_setup(description: str, argv: list[str] | None) -> tuple[argparse.Namespace, list, object, tuple]:
    """What the per-op profile scripts share: their options (--fp32, --batches, --runs, --threads), the bundles
    (the shipped int8 default, and the fp32 bundle when one is found), rendered validation galaxies for the
    largest batch, and the load average before profiling."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--fp32", default="astromae-sdss-fp32", help="the fp32 bundle (name or path; `cai-edge export` makes it)")
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1])
    parser.add_argument("--runs", type=int, default=5, help="profiled calls after the warm-up (default 5)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from cai_edge.bundle import resolve_bundle
    from cai_edge.errors import BundleError
    from cai_edge.models.datasets import rendered_split

    bundles = [resolve_bundle("default")]
    try:
        bundles.append(resolve_bundle(args.fp32))
    except BundleError as exc:
        print(f"no fp32 bundle, profiling the int8 default only: {exc}")
    return args, bundles, rendered_split("validation", 0, max(args.batches)), os.getloadavg()


def save_profiles(name: str, args: argparse.Namespace, profiles: list[dict], table: str, load_before: tuple) -> None:
    """A profile script's results, with its settings and the load average before and now."""
    load_after = os.getloadavg()
    text = table + (f"\n\n{args.threads} threads; {args.runs} profiled calls after a warm-up; load average "
                    f"{load_before[0]:.2f} before, {load_after[0]:.2f} after. Images are simulated (rendered from real SDSS photometry).")
    save(name, {"threads": args.threads, "runs": args.runs, "load_average_before": load_before,
                "load_average_after": load_after, "profiles": profiles}, text)
