"""How fast `cai-edge render` makes simulated cutouts (target: 10,000 galaxies < 5 min on 2 cores).

    python benchmarks/render_speed.py [--n 10000] [--workers N]

Renders the first N galaxies of the training split to FITS in a temporary folder, end to end
(catalog load, GalSim drawing, noise, FITS writing), and writes
benchmarks/results/render_speed.{json,md} with the machine recorded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cai_edge.machine import machine_info, usable_cores

RESULTS = Path(__file__).with_name("results")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=usable_cores())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "cai_edge", "render", "sdss:train", "--limit", str(args.n), "--out", tmp,
               "--workers", str(args.workers), "--quiet"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        seconds = time.perf_counter() - start
        n_files = len(list(Path(tmp).glob("*.fits")))
    result = {
        "benchmark": "render_speed",
        "galaxies": n_files,
        "workers": args.workers,
        "seconds": round(seconds, 1),
        "galaxies_per_s": round(n_files / seconds, 1),
        "target": "10,000 galaxies in < 300 s on 2 cores",
        "meets_target": bool(n_files >= 10_000 and seconds < 300),
        "machine": machine_info(),
        "note": "Images are SIMULATED (GalSim) from real SDSS photometry and spectroscopic redshifts.",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "render_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    (RESULTS / "render_speed.md").write_text(
        "| galaxies | workers | seconds | galaxies/s | CPU | cores usable |\n|---|---|---|---|---|---|\n"
        f"| {n_files:,} | {args.workers} | {result['seconds']} | {result['galaxies_per_s']} | {m['cpu_model']} | {m['usable_cores']} |\n"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
