"""Every row of the speed-target table, measured side by side in one run, judged against this CPU's class.

    python benchmarks/speed_targets.py [--n 20000] [--rounds 3] [--predict-rounds 3] [--fp32 BUNDLE] [--work DIR]

Rows (2 threads, batch 256 unless stated):
  * int8 default bundle ÷ PyTorch eager fp32, and the fp32 bundle ÷ eager — each model in a fresh
    process, ``--rounds`` interleaved rounds, each ratio paired with the eager run of its round —
    and each as a fraction of this CPU's ceiling, ``benchmarks/gemm_ceiling.py`` run in the same
    session (``--ceiling-rounds``): eager ÷ the model's weight GEMMs alone, int8 and fp32;
  * the most of each ceiling this model allows: what the row above would show if the bundle took
    only its GEMMs (at the faster of the ceiling's kernels and the engine's own) plus the time the
    default engine spends on the model's convolutions, pools, attention products and LayerNorm
    (shares of the engine's per-node profile, ``benchmarks/openvino_profile.py``'s, run here, of the
    bundle's measured time per batch; everything else counted as free), where the default engine is
    OpenVINO;
  * int8 batch-1 latency (median of single-galaxy calls, 2 threads);
  * ``cai-edge predict`` on a folder of N FITS cutouts and on the same galaxies as NPZ partitions,
    from process start to results on disk, ÷ the CAI path (torch.load of a TensorDataset ``.pt`` +
    DataLoader + eager fp32, from process start), in ``--predict-rounds`` interleaved rounds: the
    CAI path runs before the first round and after each, and every predict run is paired with the
    mean of the CAI runs just before and after it, so drift of a shared VM favours neither side;
    the row is the median of those ratios, its range theirs;
  * process start → first redshift: ``python -m cai_edge predict one.fits`` (one uncompressed cutout,
    default bundle), wall time from the parent, median of 7 fresh processes that start from the
    optimized-graph cache (a user's second and later runs), interleaved with 7 that run without it;
    with bytecode, as ``pip install`` leaves a package (written to a scratch ``PYTHONPYCACHEPREFIX``);
  * peak RSS of ``cai-edge predict`` over 5 × N galaxies of NPZ partitions;
  * the default ``Predictor`` (preprocessing included) ÷ OpenVINO's best precision hint on the same
    int8 ``model.onnx``, measured in one fresh process, interleaved (benchmarks/engines.py; needs
    the ``openvino`` extra, else the row has no figure), and the default Predictor's speed with one
    competing busy process ÷ its quiet speed.

Targets depend on the CPU class (int8 speed differs ~2× between AVX2 and AVX-512 VNNI); the class
is read from the CPU flags, and the table says which column applies and whether each row holds.
Images are simulated (rendered from real SDSS photometry). Writes benchmarks/results/speed_targets.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bundle_speed import _CELL
from common import PREDICT_CODE, at_least_one, run_json, save
from engines import BENCHMARKS, CODE as ENGINES_CODE
from openvino_profile import GEMM_REGIONS, profile_bundle  # imports no OpenVINO itself; at the top so the import never depends on sys.path later
from predict_throughput import _CAI_PATH, prepare

THREADS = 2
BATCH = 256
PREDICT_ROUNDS = 3  # rounds of the predict rows (--predict-rounds)

# row → (what, unit, better, {cpu class: target}); "better" is "higher" or "lower".
TARGETS = {
    "int8_vs_eager": ("int8 default ÷ PyTorch eager", "×", "higher", {}),
    "fp32_vs_eager": ("fp32 bundle ÷ PyTorch eager", "×", "higher", {}),
    "int8_ort_vs_eager": ("int8 default on ONNX Runtime ÷ PyTorch eager", "×", "higher", {}),
    "fp32_ort_vs_eager": ("fp32 bundle on ONNX Runtime ÷ PyTorch eager", "×", "higher", {}),
    # issue 34: the speed-ups as fractions of this CPU's own ceiling (benchmarks/gemm_ceiling.py, run in the same
    # session: eager ÷ the model's weight GEMMs alone, in int8 and in fp32)
    "int8_of_ceiling": ("int8 ÷ eager, as a fraction of the int8 GEMM ceiling", "", "higher", {"avx512_vnni": 0.75, "avx2": 0.75}),
    "fp32_of_ceiling": ("fp32 ÷ eager, as a fraction of the fp32 GEMM ceiling", "", "higher", {"avx512_vnni": 0.85, "avx2": 0.85}),
    # what the two rows above can reach with this model and these kernels: its GEMMs at the faster kernel, its own
    # non-GEMM work at the default engine's speed (model_bounds)
    "int8_model_bound": ("the most this model allows of the int8 GEMM ceiling with these kernels (its GEMMs at the faster of the "
                         "ceiling's and the engine's, its convolutions, pools, attention products and LayerNorm at the default "
                         "engine's profiled speed, all else free)", "", "higher", {}),
    "fp32_model_bound": ("the most this model allows of the fp32 GEMM ceiling (the same)", "", "higher", {}),
    "int8_batch1_ms": ("int8 batch-1 latency", "ms", "lower", {"avx512_vnni": 1.0, "avx2": 2.0}),
    "int8_ort_batch1_ms": ("int8 batch-1 latency on ONNX Runtime", "ms", "lower", {}),
    "fits_vs_cai": ("`predict` FITS folder ÷ CAI path", "×", "higher", {"avx512_vnni": 3.0, "avx2": 1.5}),
    "npz_vs_cai": ("`predict` NPZ partitions ÷ CAI path", "×", "higher", {"avx512_vnni": 4.0, "avx2": 2.5}),
    "first_redshift_s": ("process start → first redshift", "s", "lower", {"avx512_vnni": 0.2, "avx2": 0.2}),
    "peak_rss_mb": ("peak RSS, 5 × N galaxies", "MB", "lower", {"avx512_vnni": 400.0, "avx2": 400.0}),
    "peak_rss_ort_mb": ("peak RSS, 5 × N galaxies, `--backend onnxruntime`", "MB", "lower", {}),
    "default_vs_openvino": ("default `Predictor` ÷ OpenVINO's best precision hint (int8, same model.onnx, OpenVINO's default latency mode)",
                            "×", "higher", {"avx512_vnni": 1.0, "avx2": 1.0}),
    "default_vs_openvino_any_mode": ("default `Predictor` ÷ OpenVINO's fastest configuration (hint × latency/throughput mode)", "×", "higher", {}),
    "competing_over_quiet": ("default `Predictor`, one competing busy process ÷ quiet", "×", "higher", {"avx512_vnni": 0.6, "avx2": 0.6}),
}


def cpu_class(simd: list[str]) -> str:
    if {"avx512_vnni", "avx_vnni", "amx_int8"} & set(simd):
        return "avx512_vnni"
    return "avx2" if "avx2" in simd else "other"


def model_rows(int8: Path, fp32: Path, weights: Path, data: Path, rounds: int) -> dict:
    """Eager, then each bundle on the default engine (``auto``) and on ONNX Runtime, at batch 256 and (int8) batch 1,
    interleaved, each in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    cells = {"eager": ("torch", weights, BATCH), "fp32": ("default", fp32, BATCH), "int8": ("default", int8, BATCH),
             "fp32_ort": ("onnx", fp32, BATCH), "int8_ort": ("onnx", int8, BATCH),
             "int8_b1": ("default", int8, 1), "int8_ort_b1": ("onnx", int8, 1)}
    runs: dict[str, list[dict]] = {label: [] for label in cells}
    for r in range(rounds):
        for label, (kind, path, batch) in cells.items():
            runs[label].append(run_json(_CELL, kind, str(path), str(batch), str(THREADS), "3", str(data), env=env))
            got = runs[label][-1]
            shown = f"{got['latency_ms']:.2f} ms" if batch == 1 else f"{got['galaxies_per_s']:7.1f} galaxies/s"
            print(f"round {r + 1} {label:11s} ({got['backend']}) batch {batch}: {shown}", flush=True)
    ratio = lambda name: [m["galaxies_per_s"] / e["galaxies_per_s"] for m, e in zip(runs[name], runs["eager"])]  # noqa: E731
    b1 = lambda name: statistics.median(r["latency_ms"] for r in runs[name])  # noqa: E731
    return {
        **{f"{name}_vs_eager": statistics.median(ratio(name)) for name in ("int8", "fp32", "int8_ort", "fp32_ort")},
        "int8_batch1_ms": b1("int8_b1"), "int8_ort_batch1_ms": b1("int8_ort_b1"),
        "backends": {label: runs[label][0]["backend"] for label in cells},
        "ranges": {f"{name}_vs_eager": [min(ratio(name)), max(ratio(name))] for name in ("int8", "fp32", "int8_ort", "fp32_ort")},
        "runs": runs,
    }


def first_redshift_seconds(cutout: Path, repeats: int = 7) -> dict[str, list[float]]:
    """Wall time of fresh ``predict one.fits`` processes: with the optimized-graph cache (a user's
    second and later runs; the judged figure) and without it, interleaved; plus the first run of
    all, which writes the cache entry."""
    from cai_edge.optimized_graphs import ENV

    times: dict[str, list[float]] = {"cached": [], "no_cache": [], "first": []}
    with tempfile.TemporaryDirectory() as tmp:
        # As installed by pip, with bytecode: a checkout run with PYTHONDONTWRITEBYTECODE would compile
        # cai-edge's modules at every start (~40 ms here). The untimed first runs write it to a scratch prefix.
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        base["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        cache_env = {**base, ENV: str(Path(tmp) / "optimized")}
        plain_env = {**base, ENV: "off"}
        for k in range(repeats + 1):
            for label, env in (("cached", cache_env), ("no_cache", plain_env)):
                out = Path(tmp) / f"one-{label}-{k}.csv"
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "cai_edge", "predict", str(cutout), "--out", str(out), "--quiet"],
                               check=True, capture_output=True, env=env)
                elapsed = time.perf_counter() - start
                if "ok" not in out.read_text():
                    raise RuntimeError(f"no redshift in {out}")
                if k == 0:  # the first with the cache writes its entry (and both write bytecode)
                    if label == "cached":
                        times["first"].append(elapsed)
                    continue
                times[label].append(elapsed)
    return times


def paired_ratios(cai_seconds: list[float], run_seconds: list[float]) -> list[float]:
    """Each run's speed-up over the CAI path, paired with the CAI runs on either side of it: run ``k`` came between
    CAI runs ``k`` and ``k + 1``, and their mean is its baseline (a shared VM drifts by 10–20 % within a run)."""
    if len(cai_seconds) != len(run_seconds) + 1:
        raise ValueError(f"{len(run_seconds)} runs need {len(run_seconds) + 1} CAI runs around them, got {len(cai_seconds)}")
    return [(before + after) / 2 / run for before, after, run in zip(cai_seconds, cai_seconds[1:], run_seconds)]


def predict_rows(inputs: dict, weights: Path, n: int, bundle: str, rounds: int = PREDICT_ROUNDS) -> dict:
    """``predict`` on NPZ partitions and on the FITS folder in ``rounds`` rounds, the CAI path before the first and
    after each (CAI, NPZ, FITS, CAI, FITS, NPZ, CAI …: the order alternates); each row is the median of its runs
    paired with the CAI runs either side, its range theirs."""
    bs = str(BATCH)
    cai, runs = [], {"npz": [], "fits": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)

        def cai_path() -> None:
            cai.append(run_json(_CAI_PATH, str(inputs["pt"]), str(weights), bs))
            print(f"CAI path: {n / cai[-1]['seconds']:.0f} galaxies/s", flush=True)

        cai_path()
        for r in range(rounds):
            for kind in ("npz", "fits") if r % 2 == 0 else ("fits", "npz"):
                runs[kind].append(run_json(PREDICT_CODE, str(inputs[kind]), "--bundle", bundle, "--out", str(out / f"{kind}-{r}.csv"),
                                           "--batch-size", bs))
                print(f"predict {kind.upper()}: {n / runs[kind][-1]['seconds']:.0f} galaxies/s", flush=True)
            cai_path()
        big = run_json(PREDICT_CODE, str(inputs["npz_x5"]), "--bundle", bundle, "--out", str(out / "x5.csv"), "--batch-size", bs)
        print(f"predict 5×N NPZ: peak RSS {big['peak_rss_mb']:.0f} MB", flush=True)
        big_ort = run_json(PREDICT_CODE, str(inputs["npz_x5"]), "--bundle", bundle, "--out", str(out / "x5-ort.csv"), "--batch-size", bs,
                           "--backend", "onnxruntime")
        print(f"predict 5×N NPZ on ONNX Runtime: peak RSS {big_ort['peak_rss_mb']:.0f} MB", flush=True)
    cai_seconds = [c["seconds"] for c in cai]
    ratios = {f"{kind}_vs_cai": paired_ratios(cai_seconds, [run["seconds"] for run in runs[kind]]) for kind in runs}
    return {
        **{key: statistics.median(values) for key, values in ratios.items()},
        "predict_ranges": {key: sorted(values) for key, values in ratios.items()},
        "peak_rss_mb": big["peak_rss_mb"], "peak_rss_ort_mb": big_ort["peak_rss_mb"],
        "predict_runs": {"cai_path": cai, **runs, "npz_x5": big, "npz_x5_ort": big_ort},
    }


def gemm_ceiling(rounds: int, fp32: Path) -> dict:
    """This CPU's ceilings, from ``benchmarks/gemm_ceiling.py`` run now on ``fp32``'s GEMMs (it writes its own results
    beside these): ``bounds`` (eager ÷ the parts) and ``ms_per_batch`` (each part's time)."""
    subprocess.run([sys.executable, str(Path(__file__).with_name("gemm_ceiling.py")), "--rounds", str(rounds), "--fp32", str(fp32)],
                   check=True, cwd=Path(__file__).parent)
    return json.loads((Path(__file__).with_name("results") / "gemm_ceiling.json").read_text())


# What the GEMM ceiling counts as free but the model cannot do without, as OpenVINO's profile groups its nodes. Layout
# ops, residual adds and Q/DQ stay counted as free: an engine could fuse them away.
MODEL_WORK = ("convolutions + pools", "attention (fused per-head subgraphs)", "LayerNorm (MVN)")


def model_bounds(bundles: dict, data, measured: dict, gemm_ms: dict[str, float]) -> tuple[dict[str, float | None], dict]:
    """The most of each GEMM ceiling this model allows, and the profiles it comes from.

    Each bound is the value the ``*_of_ceiling`` row would show if the bundle took only the least time these
    kernels need: its GEMMs at the faster of the ceiling's kernels and the default engine's own, plus the engine's
    time on :data:`MODEL_WORK`. Both come from the engine's per-node profile (``profile_bundle`` of
    ``benchmarks/openvino_profile.py``, run here, its results kept in this run's JSON), as shares of the
    bundle's measured time per batch. Everything else in the model counts as free. None for a bundle the
    default engine runs on ONNX Runtime (no profile of it).
    """
    bounds: dict[str, float | None] = {kind: None for kind in bundles}
    profiles: dict[str, dict] = {}
    for kind, bundle in bundles.items():
        backend = measured["backends"][kind]
        if not backend.startswith("openvino"):
            continue
        profile = profile_bundle(bundle, data.images, data.magnitudes, BATCH, THREADS, 5, backend)
        profiles[kind] = {key: profile[key] for key in ("bundle", "backend", "node_ms", "call_ms", "by_region_ms")}
        per_batch_ms = 1000 * BATCH / statistics.median(r["galaxies_per_s"] for r in measured["runs"][kind])
        bounds[kind] = measured[f"{kind}_of_ceiling"] * per_batch_ms / least_time_ms(gemm_ms[kind], profile, per_batch_ms)
    return bounds, profiles


def least_time_ms(gemm_ms: float, profile: dict, per_batch_ms: float) -> float:
    """The GEMMs at the faster of ``gemm_ms`` (the ceiling's kernels) and the engine's own, plus :data:`MODEL_WORK`,
    each engine share taken of ``profile``'s node time and applied to the model's measured ``per_batch_ms``."""
    share = lambda regions: sum(profile["by_region_ms"][r] for r in regions) / profile["node_ms"]  # noqa: E731
    return min(gemm_ms, share(GEMM_REGIONS) * per_batch_ms) + share(MODEL_WORK) * per_batch_ms


def judge(measured: dict, klass: str) -> list[dict]:
    """Each row against its target for ``klass``; ``straddles`` where the row's range over rounds (for the predict
    rows, over their interleaved rounds) lies on both sides of the target, so that one figure does not decide it."""
    rows = []
    ranges = measured.get("ranges", {})
    for key, (what, unit, better, targets) in TARGETS.items():
        target = targets.get(klass)
        value = measured[key]
        if value is not None and math.isnan(value):
            value = None  # a figure that could not be measured is shown as none, never judged
        meets = lambda v: v >= target if better == "higher" else v <= target  # noqa: E731
        held = None if target is None or value is None else meets(value)
        spread = [v for v in ranges.get(key) or [] if v is not None and not math.isnan(v)] or None
        straddles = held is not None and spread is not None and meets(min(spread)) != meets(max(spread))
        rows.append({"row": key, "what": what, "unit": unit, "value": value, "target": target, "held": held,
                     "targets": targets, "range": spread, "straddles": straddles})
    return rows


def markdown(rows: list[dict], klass: str, machine: dict, n: int, rounds: int, int8_name: str, fp32_name: str,
             predict_rounds: int = PREDICT_ROUNDS) -> str:
    sign = {"higher": "≥", "lower": "≤"}
    fmt = lambda v, unit: "–" if v is None else (f"{v:.2f}{unit}" if unit in ("×", "") else f"{v:.2f} {unit}" if unit != "MB" else f"{v:.0f} MB")  # noqa: E731
    lines = [f"CPU class: **{klass}** (SIMD: {', '.join(machine['simd']) or 'none'}); {THREADS} threads, batch {BATCH}.", "",
             "| row | target AVX-512 VNNI | target AVX2 | measured here | holds here |", "|---|---|---|---|---|"]
    for r in rows:
        better = TARGETS[r["row"]][2]
        t = r["targets"]
        cell = lambda c: f"{sign[better]} {fmt(t[c], r['unit'])}" if c in t else "–"  # noqa: E731
        held = "–" if r["held"] is None else ("yes" if r["held"] else "**no**")
        if r.get("straddles"):
            held = (f"undecided: range {fmt(min(r['range']), r['unit'])}–{fmt(max(r['range']), r['unit'])} on both sides "
                    f"({'yes' if r['held'] else 'no'} on the figure shown)")
        lines.append(f"| {r['what']} | {cell('avx512_vnni')} | {cell('avx2')} | {fmt(r['value'], r['unit'])} | {held} |")
    lines += ["", f"Models: {int8_name} (int8) and {fp32_name} (fp32) against PyTorch eager fp32 from the reference weights; "
              f"medians of {rounds} interleaved rounds. Predict rows: {n:,} galaxies (peak RSS: {5 * n:,}), end to end from "
              f"process start, each run against the mean of the CAI path's runs just before and after it, in {predict_rounds} "
              "interleaved rounds (median shown). A range is over the rounds: where it lies on both sides of a target, this run cannot tell whether "
              "the row holds. "
              "Images are simulated (rendered from real SDSS photometry)."]
    return "\n".join(lines)


def report(rows: list[dict], measured: dict, starts: dict, klass: str, machine: dict, n: int, rounds: int, int8_name: str,
           fp32_name: str) -> str:
    """The results page: the judged table, how it was measured, and the engines side by side."""
    text = markdown(rows, klass, machine, n, rounds, int8_name, fp32_name, len(measured["predict_runs"]["cai_path"]) - 1)
    text += (f" Start → first redshift: median of {len(starts['cached'])} fresh processes with the optimized-graph cache; without it "
             f"{measured['first_redshift_no_cache_s']:.2f} s, and {starts['first'][0]:.2f} s for the run that wrote it.")
    text += (f" The default engine (`auto`) ran the int8 bundle on **{measured['backends']['int8']}** and the fp32 bundle on "
             f"**{measured['backends']['fp32']}** here; the ONNX Runtime rows are the same bundles pinned to it.")
    return text + "\n\n" + engines_markdown(measured["engines"])


def engines_markdown(engines: dict) -> str:
    """The engines on the same model.onnx, side by side: galaxies/s at batch 256 and ms at batch 1."""
    if not engines["openvino_installed"]:
        return "OpenVINO is not installed here (`pip install \"cai-edge[openvino]\"`): no engine comparison."
    lines = ["| bundle | engine | batch 256 galaxies/s | batch 1 ms |", "|---|---|---|---|"]
    for label, r in engines["bundles"].items():
        for name, per_s in r["median_b256_per_s"].items():
            b1 = r["median_b1_ms"].get(name)
            shown = f"{name} (→ {r['default_backend']})" if name == "default Predictor" else name
            lines.append(f"| {label} | {shown} | {per_s:.0f} | {'–' if b1 is None else f'{b1:.2f}'} |")
    quiet = next(iter(engines["bundles"].values()))["median_b256_per_s"]["default Predictor"]
    lines += ["", f"One process, interleaved rounds; Predictor rows include the numpy preprocessing, OpenVINO rows are the engine alone. "
              f"With one competing busy process the default Predictor ran {statistics.median(engines['competing_per_s']):.0f} galaxies/s "
              f"({engines['competing_over_quiet']:.2f} of its quiet {quiet:.0f})."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="galaxies for the predict rows (default 20,000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bundle", default="default", help="the int8 bundle (default: the shipped default)")
    parser.add_argument("--fp32", default="astromae-sdss-fp32", help="the fp32 bundle (name or path; `cai-edge export` makes it)")
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "cai-edge" / "bench-predict"))
    parser.add_argument("--predict-rounds", type=at_least_one, default=PREDICT_ROUNDS,
                        help=f"rounds of the predict rows, each an NPZ and a FITS run followed by a CAI path run (default {PREDICT_ROUNDS}; with "
                             "one round a row has no range, so a figure near its target cannot be called undecided)")
    parser.add_argument("--ceiling-rounds", type=int, default=9, help="rounds of benchmarks/gemm_ceiling.py, run in the same session")
    args = parser.parse_args()

    import numpy as np

    from cai_edge.bundle import resolve_bundle
    from cai_edge.machine import machine_info
    from cai_edge.models.datasets import rendered_split
    from cai_edge.models.reference import REFERENCE_WEIGHTS

    machine = machine_info()
    klass = cpu_class(machine["simd"])
    int8, fp32 = resolve_bundle(args.bundle), resolve_bundle(args.fp32)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = rendered_split("validation", 0, BATCH)
    image, magnitude = int8.preprocessing.network_inputs(data.images, data.magnitudes)
    data_path = work / "model-inputs.npz"
    np.savez(data_path, image=image, magnitude=magnitude, crops=data.images, mags=data.magnitudes)
    measured = model_rows(int8.path, fp32.path, Path(REFERENCE_WEIGHTS), data_path, args.rounds)
    ceiling_run = gemm_ceiling(args.ceiling_rounds, fp32.path)
    ceiling = ceiling_run["bounds"]
    measured["ceiling"] = ceiling
    measured["int8_of_ceiling"] = measured["int8_vs_eager"] / ceiling["int8_gemms_only"]
    measured["fp32_of_ceiling"] = measured["fp32_vs_eager"] / ceiling["fp32_gemms_only"]
    gemm_ms = {kind: ceiling_run["ms_per_batch"][f"gemms-{kind}"] for kind in ("int8", "fp32")}
    bounds, measured["model_bound_profiles"] = model_bounds({"int8": int8, "fp32": fp32}, data, measured, gemm_ms)
    measured["int8_model_bound"], measured["fp32_model_bound"] = bounds["int8"], bounds["fp32"]
    print(f"ceiling (eager ÷ GEMMs alone): int8 {ceiling['int8_gemms_only']:.2f}×, fp32 {ceiling['fp32_gemms_only']:.2f}×; "
          f"int8 at {measured['int8_of_ceiling']:.2f} of it, fp32 at {measured['fp32_of_ceiling']:.2f}; the most this model allows: "
          f"{bounds}", flush=True)
    engines = run_json(ENGINES_CODE, BENCHMARKS, json.dumps({int8.name: str(int8.path), fp32.name: str(fp32.path)}), str(data_path),
                       str(args.rounds), "2", str(THREADS))
    measured["default_vs_openvino"] = engines["bundles"][int8.name].get("default_over_best_openvino")
    measured["default_vs_openvino_any_mode"] = engines["bundles"][int8.name].get("default_over_best_openvino_any_mode")
    measured["competing_over_quiet"] = engines["competing_over_quiet"]
    measured["engines"] = engines
    print(f"engines: {json.dumps({k: v.get('median_b256_per_s') for k, v in engines['bundles'].items()})}; "
          f"competing ÷ quiet {engines['competing_over_quiet']:.2f}", flush=True)
    inputs = prepare(work, args.n)
    one = sorted(inputs["fits"].glob("*.fits"))[0]
    starts = first_redshift_seconds(one)
    measured["first_redshift_s"] = statistics.median(starts["cached"])
    measured["first_redshift_no_cache_s"] = statistics.median(starts["no_cache"])
    print(f"start → first redshift: {measured['first_redshift_s']:.3f} s (without the optimized-graph cache "
          f"{measured['first_redshift_no_cache_s']:.3f} s; the run that wrote it {starts['first'][0]:.3f} s)", flush=True)
    measured.update(predict_rows(inputs, Path(REFERENCE_WEIGHTS), args.n, args.bundle, args.predict_rounds))
    measured["ranges"].update(measured.pop("predict_ranges"))
    for kind in ("int8", "fp32"):  # the eager ratios' range over rounds, against the same ceiling
        measured["ranges"][f"{kind}_of_ceiling"] = [v / ceiling[f"{kind}_gemms_only"] for v in measured["ranges"][f"{kind}_vs_eager"]]
    rows = judge(measured, klass)
    text = report(rows, measured, starts, klass, machine, args.n, args.rounds, int8.name, fp32.name)
    save("speed_targets", {"cpu_class": klass, "threads": THREADS, "batch": BATCH, "n": args.n, "predict_rounds": args.predict_rounds,
                           "rows": rows,
                           "first_redshift_runs_s": starts, "measured": measured}, text)


if __name__ == "__main__":
    main()
