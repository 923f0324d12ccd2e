"""``cai-edge partition``: cutouts (or other partitions) → partitions of a target size."""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from tqdm import tqdm

from cai_edge.io.catalog import Catalog
from cai_edge.io.inputs import iter_galaxies, plan_inputs
from cai_edge.io.partition_writer import check_partition_folder, write_partitions


def shard_folder(out: Path, shard: tuple[int, int] | None) -> Path:
    """Where one shard's partitions go: ``OUT/shard-I-of-N/`` (array tasks never share a folder or a manifest)."""
    return out if shard is None else out / f"shard-{shard[0]:04d}-of-{shard[1]:04d}"


def run(args: argparse.Namespace) -> int:
    shard = getattr(args, "shard", None)
    out = shard_folder(Path(args.out), shard)
    check_partition_folder(out)  # before any reading: an --out of the user's own files is refused
    catalog = Catalog.read(args.catalog, getattr(args, "columns", None)) if args.catalog else None
    plan = plan_inputs(args.inputs, shard, exclude=[Path(args.catalog)] if args.catalog else [])  # the catalog is not a galaxy
    records = tqdm(iter_galaxies(plan, catalog), unit=" galaxies", disable=args.quiet or None)
    manifest = write_partitions(records, out, args.size_mb, args.format)
    n_rej = len(manifest["rejected"])
    print(f"{manifest['rows']} galaxies in {len(manifest['partitions'])} partition(s) under {out}; {n_rej} rejected")
    for rej in manifest["rejected"][:10]:
        print(f"  rejected {rej['id']}: {rej['status']}: {rej['message']}", file=sys.stderr)
    return 1 if n_rej else 0
