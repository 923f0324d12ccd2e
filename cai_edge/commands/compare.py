"""``cai-edge compare``: every bundle × tier — photo-z accuracy, speed, memory, cold start, cost."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cai_edge.bundle import resolve_bundle
from cai_edge.compare.measure import measure
from cai_edge.compare.report import check_report_folder, markdown_table, write_plots, write_report
from cai_edge.compare.tiers import parse_tiers
from cai_edge.io.labelled import labelled_arrays
from cai_edge.io.partition_writer import rows_per_partition
from cai_edge.machine import machine_info
from cai_edge.metrics import photoz_metrics
from cai_edge.predictor import Predictor
from cai_edge.pricing import usd_per_million_galaxies

# Short names for the bundles `cai-edge export` / `quantize` write with their default names.
VARIANT_BUNDLES = {
    "fp32": "astromae-sdss-fp32",
    "fp16": "astromae-sdss-fp16",
    "int8-dynamic": "astromae-sdss-int8-dynamic",
    "int8-static": "astromae-sdss-int8",
}
# One Lambda request per 25 MB partition (the CAI paper's smallest partition size).
GALAXIES_PER_REQUEST = rows_per_partition(25)


def compare(data: list[str], catalog: str | None, bundles: list[str], tiers_text: str, lambda_results: str | None) -> dict:
    images, magnitudes, z_spec = labelled_arrays(data, catalog)
    tiers = parse_tiers(tiers_text)
    real = {}
    if lambda_results:
        from cai_edge.compare.lambda_results import lambda_rows, read_lambda_metrics

        real = lambda_rows(read_lambda_metrics(lambda_results))
    rows = []
    for spec in bundles:
        bundle = resolve_bundle(VARIANT_BUNDLES.get(spec, spec))
        z = Predictor(bundle, backend="onnxruntime").predict_prepared(images, magnitudes)  # as the tiers run it
        accuracy = photoz_metrics(z, z_spec)
        calibration = bundle.calibration
        if calibration is not None:  # how honest its intervals are on these galaxies
            score = calibration.score(z.astype(np.float64), magnitudes, z_spec)
            accuracy.update({k: score[k] for k in ("coverage_68", "coverage_95", "crps")})
        for tier in tiers:
            print(f"measuring {bundle.name} on {tier.name} …", file=sys.stderr)
            row = {
                "variant": bundle.variant, "bundle": bundle.name, "bundle_sha256": bundle.sha256, "tier": tier.name,
                "threads": tier.threads_here(), "batch_size": tier.batch_size,
                **{k: accuracy[k] for k in ("sigma_nmad", "bias", "eta_05", "eta_15", "mae")},
                **{k: accuracy.get(k) for k in ("coverage_68", "coverage_95", "crps")},
                **measure(bundle, tier, images, magnitudes),
                "size_mb": bundle.size_bytes / 1e6,
                "emulated": tier.emulation_note() is not None, "emulation_note": tier.emulation_note(),
            }
            if tier.kind == "lambda":
                row["usd_per_million"] = usd_per_million_galaxies(row["galaxies_per_s"], tier.memory_mb, "x86_64", GALAXIES_PER_REQUEST)
                row["usd_per_million_arm64"] = usd_per_million_galaxies(row["galaxies_per_s"], tier.memory_mb, "arm64", GALAXIES_PER_REQUEST)
                measured = real.get((bundle.sha256, "x86_64", tier.memory_mb))
                if measured:
                    row.update({k: v for k, v in measured.items() if v is not None and k != "partitions"})
                    row["emulated"], row["emulation_note"] = False, None
                    row["source"] = f"handler metrics of {measured['partitions']} real Lambda partition(s)"
            else:
                row["usd_per_million"] = row["usd_per_million_arm64"] = 0.0
            rows.append(row)
    return {
        "machine": machine_info(),
        "data": f"{len(z_spec)} labelled galaxies from {', '.join(data)}",
        "galaxies_per_request": GALAXIES_PER_REQUEST,
        "rows": rows,
    }


def resolvable_bundles() -> list[str]:
    """Paths of every usable bundle a name resolves to, one per model (by sha256): ``compare``'s default."""
    from cai_edge.bundle import list_bundles

    chosen, names, models = [], set(), set()
    for path, bundle, _ in list_bundles():
        name = path.stem if path.suffix == ".zip" else path.name
        if bundle is None or name in names or bundle.sha256 in models:
            names.add(name)
            continue
        names.add(name)
        models.add(bundle.sha256)
        chosen.append(str(path))
    return chosen


def run(args: argparse.Namespace) -> int:
    check_report_folder(Path(args.out))  # before any measuring: an --out of the user's own files is refused
    bundles = [b.strip() for b in args.bundles.split(",") if b.strip()] if args.bundles else resolvable_bundles()
    report = compare(args.data, args.catalog, bundles, args.tiers, args.lambda_results)
    out = write_report(args.out, report)
    try:
        write_plots(out, report["rows"], report["data"])
    except ImportError:
        print("matplotlib not installed: no plots (from a cai-edge checkout: pip install -e \".[plot]\")", file=sys.stderr)
    print(markdown_table(report["rows"]))
    print(f"\nreport: {out / 'report.md'}", file=sys.stderr)
    return 0
