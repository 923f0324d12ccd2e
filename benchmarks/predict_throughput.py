"""End-to-end `cai-edge predict` against the CAI inference path, side by side, in one run.

    python benchmarks/predict_throughput.py [--n 20000] [--bundle default] [--work DIR]

Renders N galaxies of the training split once (simulated 64×64 images of real SDSS galaxies) as
one FITS file per galaxy, as NPZ partitions (25 MB) and as the CAI paper's TensorDataset .pt.
Then, each in a fresh process, timed from process start to results on disk:
  * CAI path: torch.load of the .pt (weights_only=False, as CAI does) + DataLoader + PyTorch eager fp32;
  * cai-edge predict on the NPZ partitions; on the FITS folder;
and peak RSS of `cai-edge predict` over 5 × N galaxies of partitions (100,000 for N = 20,000).
Writes benchmarks/results/predict_throughput.{json,md}. Targets on 2 cores: NPZ ≥ 2.5× the CAI
path, FITS ≥ 1×, peak RSS ≤ 500 MB.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import PREDICT_CODE, run_json, save

_CAI_PATH = r"""
import time
t0 = time.perf_counter()
import json, sys
from cai_edge.machine import peak_rss_mb
import torch
from torch.utils.data import DataLoader
from cai_edge.models.reference import load_reference_with_preprocessing
pt, weights, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = torch.load(pt, weights_only=False)
model, _ = load_reference_with_preprocessing(weights)
n = 0
with torch.no_grad():
    for images, mags, z in DataLoader(data, batch_size=batch, drop_last=False):
        model(images, mags); n += len(images)
print(json.dumps({"seconds": time.perf_counter() - t0, "galaxies": n, "peak_rss_mb": peak_rss_mb()}))
"""



def prepare(work: Path, n: int) -> dict:
    fits_dir, parts, pt = work / "fits", work / "npz", work / "cai.pt"
    if not fits_dir.exists():
        subprocess.run([sys.executable, "-m", "cai_edge", "render", "sdss:train", "--limit", str(n), "--out", str(fits_dir), "--quiet"], check=True)
    if not parts.exists():
        subprocess.run([sys.executable, "-m", "cai_edge", "partition", str(fits_dir), "--out", str(parts), "--size-mb", "25", "--quiet"], check=True)
    if not pt.exists():
        import torch
        from torch.utils.data import TensorDataset

        from cai_edge.bundle import resolve_bundle
        from cai_edge.io.npz_partitions import load_npz_partition

        prep = resolve_bundle("default").preprocessing
        images, mags, zs = [], [], []
        for path in sorted(parts.glob("*.npz")):
            i, m, _, z = load_npz_partition(path)
            image, mag = prep.network_inputs(i, m)  # CAI partitions hold network-ready tensors
            images.append(image), mags.append(mag), zs.append(z)
        torch.save(TensorDataset(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(mags)),
                                 torch.from_numpy(np.concatenate(zs))), pt)
    big = work / "npz-x5"
    if not big.exists():
        big.mkdir()
        from cai_edge.io.npz_partitions import load_npz_partition, write_npz_partition

        for copy in range(5):
            for path in sorted(parts.glob("*.npz")):
                i, m, ids, z = load_npz_partition(path)
                write_npz_partition(big / f"c{copy}-{path.name}", i, m, [f"{g}#{copy}" for g in ids], z)
    return {"fits": fits_dir, "npz": parts, "pt": pt, "npz_x5": big}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--bundle", default="default")
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "cai-edge" / "bench-predict"))
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    from cai_edge.bundle import resolve_bundle
    from cai_edge.models.reference import REFERENCE_WEIGHTS

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    inputs = prepare(work, args.n)
    bundle = resolve_bundle(args.bundle)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    bs = str(args.batch_size)
    runs = {
        "cai_path_pt_eager": run_json(_CAI_PATH, str(inputs["pt"]), str(REFERENCE_WEIGHTS), bs),
        "cai_edge_npz": run_json(PREDICT_CODE, str(inputs["npz"]), "--bundle", args.bundle, "--out", str(out / "npz.csv"), "--batch-size", bs),
        "cai_edge_fits": run_json(PREDICT_CODE, str(inputs["fits"]), "--bundle", args.bundle, "--out", str(out / "fits.csv"), "--batch-size", bs),
        "cai_edge_npz_x5_rss": run_json(PREDICT_CODE, str(inputs["npz_x5"]), "--bundle", args.bundle, "--out", str(out / "x5.csv"), "--batch-size", bs),
    }
    n = args.n
    for name, r in runs.items():
        galaxies = r.get("galaxies") or (5 * n if name.endswith("x5_rss") else n)
        r["galaxies"] = galaxies
        r["galaxies_per_s"] = galaxies / r["seconds"]
    base = runs["cai_path_pt_eager"]["galaxies_per_s"]
    for r in runs.values():
        r["vs_cai_path"] = r["galaxies_per_s"] / base
    rows = ["| run | galaxies | seconds | galaxies/s | × CAI path | peak RSS (MB) |", "|---|---|---|---|---|---|"]
    rows += [f"| {k} | {r['galaxies']:,} | {r['seconds']:.1f} | {r['galaxies_per_s']:.0f} | {r['vs_cai_path']:.2f} | {r['peak_rss_mb']:.0f} |" for k, r in runs.items()]
    text = "\n".join(rows) + (
        f"\n\nBundle {bundle.name} ({bundle.variant}); batch {args.batch_size}; end to end from process start. "
        f"Targets: NPZ ≥ 2.5× the CAI path (got {runs['cai_edge_npz']['vs_cai_path']:.2f}×), FITS ≥ 1× (got "
        f"{runs['cai_edge_fits']['vs_cai_path']:.2f}×), peak RSS for {5 * n:,} galaxies ≤ 500 MB (got "
        f"{runs['cai_edge_npz_x5_rss']['peak_rss_mb']:.0f} MB). Images are simulated (rendered from real SDSS photometry)."
    )
    save("predict_throughput", {"n": n, "bundle": bundle.name, "variant": bundle.variant, "runs": runs}, text)


if __name__ == "__main__":
    main()
