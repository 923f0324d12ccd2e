"""FITS cutout folders as astronomers have them: compressed vs uncompressed, a resumed run, 200,000 files.

    python benchmarks/fits_folders.py [--n 3000] [--scale 200000] [--bundle default] [--work DIR]

Renders N galaxies of the test split (simulated 64×64 images of real SDSS galaxies) as
RICE-compressed cutouts (fpack style, as the shipped examples) and writes the same pixels
uncompressed. Then, each `cai-edge predict` in a fresh process, timed from process start to
results on disk, two rounds, best of each:
  * the uncompressed folder; the compressed folder (fitsio); the compressed folder with
    CAI_EDGE_FITS_READER=astropy (the reader before fitsio);
  * a folder of --resume-n hard links to the compressed cutouts (20,000, as in the report that
    asked for it): a fresh run, then --resume with --resume-done of them done (an output holding
    their rows, as a run killed there leaves it), against (N-k)/N of the fresh run + 10 %;
  * a folder of --scale hard links to the uncompressed cutouts: seconds from launch until the
    first batch's rows reach the spool, and the run's peak RSS.
Writes benchmarks/results/fits_folders.{json,md}. Targets: compressed ≥ 60 % of uncompressed
throughput; resume within its bound; 200,000 files: first rows ≤ 15 s, peak RSS ≤ 500 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import PREDICT_CODE, run_json, save


def prepare(work: Path, n: int, scale: int, resume_n: int) -> dict[str, Path]:
    from astropy.io import fits

    rice, plain = work / f"rice-{n}", work / f"plain-{n}"
    if not rice.exists():
        subprocess.run([sys.executable, "-m", "cai_edge", "render", "sdss:test", "--limit", str(n), "--compress",
                        "--out", str(rice), "--quiet"], check=True)
    if not plain.exists():
        tmp = work / "plain.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for path in sorted(rice.glob("*.fits")):
            with fits.open(path) as hdul:  # the same pixels, as decoded, in a plain primary HDU
                fits.PrimaryHDU(hdul[1].data, header=hdul[1].header).writeto(tmp / path.name)
        tmp.rename(plain)
    return {"rice": rice, "plain": plain, "links": _links(work, plain, scale), "rice_links": _links(work, rice, resume_n)}


def _links(work: Path, source_folder: Path, count: int) -> Path | None:
    """A folder of ``count`` hard links to the cutouts of ``source_folder`` (distinct names, so distinct ids)."""
    many = work / f"{source_folder.name}-links-{count}"
    if count and not many.exists():
        tmp = work / "links.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        files = sorted(source_folder.glob("*.fits"))
        for i in range(count):
            source = files[i % len(files)]
            os.link(source, tmp / f"{source.stem}-{i // len(files):03d}.fits")
        tmp.rename(many)
    return many if count else None


def predict(*args: str, env: dict | None = None) -> dict:
    return run_json(PREDICT_CODE, *args, env={**os.environ, **(env or {})})


def keep_first_rows(source: Path, target: Path, k: int) -> None:
    """An output as a run killed after k rows would have left it: the header, k rows, and the provenance sidecar."""
    from cai_edge.results.csv_sidecar import sidecar_path

    lines = [line for line in source.read_bytes().split(b"\r\n") if line]
    target.write_bytes(b"\r\n".join(lines[: 1 + k]) + b"\r\n")
    sidecar_path(target).write_bytes(sidecar_path(source).read_bytes())


def first_rows_after(args: list[str], out: Path) -> dict:
    """Run predict; seconds from launch to the first rows in the spool (polled), total seconds, peak RSS."""
    from cai_edge.results.spool import spool_dir

    spool = spool_dir(out)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", PREDICT_CODE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sizes: dict[str, int] = {}
    first = None
    while proc.poll() is None:
        if first is None and spool.is_dir():
            for entry in spool.iterdir():
                size = entry.stat().st_size if entry.exists() else 0
                if entry.name in sizes and size > sizes[entry.name]:
                    first = time.perf_counter() - started
                sizes.setdefault(entry.name, size)
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(stderr[-3000:])
    result = json.loads(stdout.strip().splitlines()[-1])
    result["first_rows_s"] = first
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--scale", type=int, default=200_000)
    parser.add_argument("--resume-n", type=int, default=20_000)
    parser.add_argument("--resume-done", type=int, default=7_680)
    parser.add_argument("--bundle", default="default")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "cai-edge" / "bench-fits"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = prepare(work, args.n, args.scale, args.resume_n)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    common = ["--bundle", args.bundle, "--batch-size", "256"]
    runs: dict[str, list[dict]] = {"uncompressed": [], "rice_fitsio": [], "rice_astropy": []}
    for _ in range(args.rounds):  # paired rounds: the three folders back to back each round
        runs["uncompressed"].append(predict(str(data["plain"]), "--out", str(out / "plain.csv"), *common))
        runs["rice_fitsio"].append(predict(str(data["rice"]), "--out", str(out / "rice.csv"), *common))
        runs["rice_astropy"].append(predict(str(data["rice"]), "--out", str(out / "rice-astropy.csv"), *common,
                                            env={"CAI_EDGE_FITS_READER": "astropy"}))
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    rate = {k: args.n / r["seconds"] for k, r in best.items()}

    n_resume, k_done = args.resume_n, args.resume_done
    fresh = predict(str(data["rice_links"]), "--out", str(out / "fresh.csv"), *common)
    keep_first_rows(out / "fresh.csv", out / "resumed.csv", k_done)
    resumed = predict(str(data["rice_links"]), "--out", str(out / "resumed.csv"), "--resume", *common)
    bound = (n_resume - k_done) / n_resume * fresh["seconds"] * 1.10

    scale = first_rows_after([str(data["links"]), "--out", str(out / "scale.csv"), *common], out / "scale.csv") if args.scale else None

    rows = ["| run | galaxies | seconds | galaxies/s | vs uncompressed | peak RSS (MB) |", "|---|---|---|---|---|---|"]
    for k, r in best.items():
        rows.append(f"| {k} | {args.n:,} | {r['seconds']:.1f} | {rate[k]:.0f} | {rate[k] / rate['uncompressed']:.2f} | {r['peak_rss_mb']:.0f} |")
    rows.append(f"| rice_fitsio, {n_resume:,} files, fresh | {n_resume:,} | {fresh['seconds']:.1f} | {n_resume / fresh['seconds']:.0f} | — | {fresh['peak_rss_mb']:.0f} |")
    rows.append(f"| the same, --resume with {k_done:,} done | {n_resume - k_done:,} to do | {resumed['seconds']:.1f} | — | — | {resumed['peak_rss_mb']:.0f} |")
    if scale:
        rows.append(f"| {args.scale:,} hard-linked cutouts | {args.scale:,} | {scale['seconds']:.1f} | {args.scale / scale['seconds']:.0f} | — | {scale['peak_rss_mb']:.0f} |")
    text = "\n".join(rows) + (
        f"\n\nBundle {args.bundle}; batch 256; 2 reader threads; end to end from process start; best of {args.rounds} paired rounds. "
        f"Compressed (RICE, fitsio) runs at {rate['rice_fitsio'] / rate['uncompressed']:.0%} of uncompressed (target ≥ 60 %); "
        f"through astropy it ran at {rate['rice_astropy'] / rate['uncompressed']:.0%}. "
        f"Resume with {k_done:,} of {n_resume:,} done: {resumed['seconds']:.1f} s against a bound of {bound:.1f} s "
        f"((N−k)/N of the fresh {fresh['seconds']:.1f} s + 10 %)."
        + (f" {args.scale:,} cutouts: first rows {scale['first_rows_s']:.1f} s after launch (target ≤ 15 s), "
           f"peak RSS {scale['peak_rss_mb']:.0f} MB (target ≤ 500 MB)." if scale else "")
        + " Images are simulated (rendered from real SDSS photometry)."
    )
    save("fits_folders", {"n": args.n, "bundle": args.bundle, "runs": runs, "best": best, "galaxies_per_s": rate,
                          "resume": {"files": n_resume, "done": k_done, "fresh": fresh, "result": resumed, "bound_s": bound},
                          "scale": scale}, text)


if __name__ == "__main__":
    main()
