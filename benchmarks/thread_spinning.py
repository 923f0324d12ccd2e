"""ONNX Runtime's thread policies on a shared machine: quiet, and with one competing busy process.

    python benchmarks/thread_spinning.py [--rounds 3] [--seconds 1.5]

The shipped int8 default runs at batch 256 (galaxies/s) and batch 1 (median latency) in one
process, in sessions built as cai-edge builds them with the thread settings below changed, in
interleaved rounds: each round runs every policy quiet and then with one busy process
(``python -c 'while True: pass'``, started and killed by this script) competing for the cores.
Policies: ONNX Runtime's spinning worker threads on or off (``session.intra_op.allow_spinning``,
or on for at most 100 µs: ``session.intra_op.spin_duration_us``), with ONNX Runtime's default
static split of a parallel loop or its dynamic block sizing
(``session.dynamic_block_base``: threads take work in shrinking blocks, so one slowed by a
competing process holds back less); ``cai-edge default`` is what ``cai_edge.session`` sets.
Reported: medians, the competing ÷ quiet ratio of each policy, and its quiet speed ÷ the
spinning static policy's. Inputs are rendered validation galaxies (simulated images).
Writes benchmarks/results/thread_spinning.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

from common import save

THREADS = 2
POLICIES = {
    "spinning, static split (ORT default)": {"session.intra_op.allow_spinning": "1"},
    "no spinning, static split": {"session.intra_op.allow_spinning": "0"},
    "spinning, dynamic blocks": {"session.intra_op.allow_spinning": "1", "session.dynamic_block_base": "4"},
    "no spinning, dynamic blocks": {"session.intra_op.allow_spinning": "0", "session.dynamic_block_base": "4"},
    "spinning 100 µs, dynamic blocks": {"session.intra_op.allow_spinning": "1", "session.intra_op.spin_duration_us": "100",
                                        "session.dynamic_block_base": "4"},
    "cai-edge default": {},
}
BUSY = "while True: pass"


def make_session(model: bytes, config: dict[str, str], threads: int = THREADS) -> ort.InferenceSession:
    """A session as cai-edge builds it: its own thread policy for ``{}``, else its other options with ``config`` as the policy."""
    from cai_edge.session import _session_options

    options = _session_options(threads, thread_policy=not config)
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def measure(session: ort.InferenceSession, feed: dict, seconds: float) -> float:
    """Median seconds per call over ``seconds`` of calls (at least 5), after one warm-up call."""
    session.run(["redshift"], feed)
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t = time.perf_counter()
        session.run(["redshift"], feed)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class Competitor:
    """One busy Python process for the duration of a ``with`` block (killed by its pid on exit)."""

    def __enter__(self) -> "Competitor":
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY])
        time.sleep(0.2)  # scheduled and spinning before the timing starts
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


def run(model: bytes, images: np.ndarray, magnitudes: np.ndarray, rounds: int, seconds: float, policies: dict = POLICIES) -> dict:
    """``{policy: {condition: {"b256_per_s": [...], "b1_ms": [...]}}}`` over ``rounds`` interleaved rounds."""
    sessions = {name: make_session(model, config) for name, config in policies.items()}
    feeds = {b: {"image": images[:b], "magnitude": magnitudes[:b]} for b in (len(images), 1)}
    out = {name: {c: {"b256_per_s": [], "b1_ms": []} for c in ("quiet", "competing")} for name in policies}

    def one_pass(condition: str) -> None:
        for name, session in sessions.items():
            out[name][condition]["b256_per_s"].append(len(images) / measure(session, feeds[len(images)], seconds))
            out[name][condition]["b1_ms"].append(1000 * measure(session, feeds[1], seconds / 3))

    for r in range(rounds):
        one_pass("quiet")
        with Competitor():
            one_pass("competing")
        print(f"round {r + 1}: " + "; ".join(f"{n}: {out[n]['quiet']['b256_per_s'][-1]:.0f} / {out[n]['competing']['b256_per_s'][-1]:.0f}"
                                            for n in policies), flush=True)
    return out


def summary(runs: dict) -> list[dict]:
    base = statistics.median(runs["spinning, static split (ORT default)"]["quiet"]["b256_per_s"])
    rows = []
    for name, r in runs.items():
        quiet, busy = statistics.median(r["quiet"]["b256_per_s"]), statistics.median(r["competing"]["b256_per_s"])
        rows.append({"policy": name, "quiet_per_s": quiet, "competing_per_s": busy, "competing_over_quiet": busy / quiet,
                     "quiet_vs_ort_default": quiet / base, "quiet_b1_ms": statistics.median(r["quiet"]["b1_ms"]),
                     "competing_b1_ms": statistics.median(r["competing"]["b1_ms"])})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| policy | quiet galaxies/s | competing galaxies/s | competing ÷ quiet | quiet ÷ ORT default | batch 1 quiet (ms) | batch 1 competing (ms) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['policy']} | {r['quiet_per_s']:.0f} | {r['competing_per_s']:.0f} | {r['competing_over_quiet']:.2f} | "
              f"{r['quiet_vs_ort_default']:.2f} | {r['quiet_b1_ms']:.2f} | {r['competing_b1_ms']:.2f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5, help="timed calls per policy and condition at batch 256")
    args = parser.parse_args(argv)

    from cai_edge.bundle import resolve_bundle
    from cai_edge.models.datasets import rendered_split

    bundle = resolve_bundle("default")
    data = rendered_split("validation", 0, 256)
    images, magnitudes = bundle.preprocessing.network_inputs(data.images, data.magnitudes)
    load_before = os.getloadavg()
    runs = run(bundle.model_bytes, images, magnitudes, args.rounds, args.seconds)
    load_after = os.getloadavg()
    rows = summary(runs)
    text = markdown(rows) + (f"\n\n{bundle.name}, {THREADS} threads, batch 256 and 1; medians of {args.rounds} interleaved rounds; "
                             f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (the competing process included). "
                             "Images are simulated (rendered from real SDSS photometry).")
    save("thread_spinning", {"threads": THREADS, "rounds": args.rounds, "policies": POLICIES, "load_average_before": load_before,
                             "load_average_after": load_after, "rows": rows, "runs": runs}, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
