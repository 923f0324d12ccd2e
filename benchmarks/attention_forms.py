"""Issue 34, item 2: the ViT attention exported head by head (as shipped) or with all heads in one batched product.

    python benchmarks/attention_forms.py [--forms per-head batched sdpa] [--rounds 3] [--seconds 2] [--work DIR]

The shipped export computes each block's attention head by head on slices of the qkv output
(``models/vit.py``: a 9-way Split, 3 × MatMul–Softmax–MatMul, a Concat), because ONNX Runtime ran
the batched form's 5-D transposes slower. OpenVINO's profile (``openvino_profile.py``) shows that
Split and Concat on its reference kernels, so this script exports the reference weights three
ways with ``cai-edge export`` — ``per-head`` (shipped), ``batched`` (timm's form: one reshape and
permute to (3, B, heads, tokens, dim), one batched product per step) and ``sdpa`` (PyTorch's
``scaled_dot_product_attention`` on the same tensors) — and times each fp32 bundle on every engine
installed (the ``Predictor`` with its preprocessing, at batch 256 and batch 1, interleaved rounds),
with the largest |Δz| against the per-head export on the same engine, on rendered validation
galaxies (SIMULATED images of real SDSS galaxies). Needs torch and onnx (the ``export`` extra).
Writes results/attention_forms.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import save
from engines import _seconds_per_call

FORMS = ("per-head", "batched", "sdpa")


def patch(form: str) -> None:
    """Have ``cai-edge export`` write the attention in ``form`` (``per-head`` leaves the shipped export as it is).

    For this process's life: called only in the export's own process (:func:`export`).
    """
    import torch

    from cai_edge.models import vit

    def batched(self, x: torch.Tensor) -> torch.Tensor:
        n, c = int(x.shape[1]), int(x.shape[2])  # fixed by the model: constants in the graph, not Shape ops
        qkv = self.qkv(x).reshape(-1, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if form == "sdpa":
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        else:
            out = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(-1, n, c))

    if form not in FORMS:
        raise ValueError(f"unknown attention form {form!r}; one of {', '.join(FORMS)}")
    if form != "per-head":
        vit.Attention._forward_per_head = batched


_EXPORT = r"""
import sys
sys.path.insert(0, sys.argv[1])
from attention_forms import patch
patch(sys.argv[2])
from cai_edge.cli import main
sys.exit(main(["export", "--out", sys.argv[3]]))
"""


def export(form: str, out: Path) -> Path:
    """``cai-edge export --out out`` in a fresh process whose export writes ``form`` (the patch never outlives it)."""
    proc = subprocess.run([sys.executable, "-c", _EXPORT, str(Path(__file__).parent), form, str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cai-edge export of the {form} attention failed:\n{proc.stderr[-3000:]}")
    return out


def measure(bundles: dict[str, Path], rounds: int, seconds: float, threads: int, galaxies: int = 256) -> dict:
    """Galaxies/s at batch ``galaxies`` and ms at batch 1 per form and engine (medians over interleaved rounds), and
    the largest |Δz| against the per-head form on the same engine."""
    from cai_edge.backends import runnable_backends
    from cai_edge.models.datasets import rendered_split
    from cai_edge.predictor import Predictor

    data = rendered_split("validation", 0, galaxies)
    crops, mags = data.images, data.magnitudes
    predictors = {(form, engine): Predictor(path, threads=threads, backend=engine) for form, path in bundles.items()
                  for engine in runnable_backends()}
    z = {key: p.predict_prepared(crops, mags, batch_size=galaxies) for key, p in predictors.items()}
    result: dict = {"galaxies": galaxies, "rows": {}}
    timed = {key: ([], []) for key in predictors}
    for _ in range(rounds):
        for key, p in predictors.items():
            timed[key][0].append(galaxies / _seconds_per_call(lambda: p.predict_prepared(crops, mags, batch_size=galaxies), seconds))
            timed[key][1].append(1000 * _seconds_per_call(lambda: p.predict_prepared(crops[:1], mags[:1], batch_size=1), seconds / 2))
    first = next(iter(bundles))
    for (form, engine), (per_s, ms) in timed.items():
        result["rows"][f"{form}|{engine}"] = {
            "form": form, "engine": engine, "per_s": statistics.median(per_s), "per_s_rounds": per_s,
            "batch1_ms": statistics.median(ms), "batch1_ms_rounds": ms, "max_abs_dz": float(np.max(np.abs(z[(form, engine)] - z[(first, engine)]))),
        }
    return result


def markdown(result: dict) -> str:
    lines = [f"| attention form | engine | batch {result['galaxies']} galaxies/s | batch 1 ms | max \\|Δz\\| vs per-head, same engine |",
             "|---|---|---|---|---|"]
    for r in result["rows"].values():
        lines.append(f"| {r['form']} | {r['engine']} | {r['per_s']:.0f} | {r['batch1_ms']:.2f} | {r['max_abs_dz']:.1e} |")
    return "\n".join(lines) + ("\n\nfp32 bundles exported from the reference weights; Predictor with preprocessing, medians of "
                               f"{result['rounds']} interleaved rounds; simulated images of real SDSS galaxies.")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per cell and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", help="folder for the exported bundles (default: a temporary one)")
    args = parser.parse_args(argv)
    forms = ["per-head", *[f for f in args.forms if f != "per-head"]]  # the reference comes first
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        bundles = {form: export(form, work / f"fp32-{form}") for form in forms}
        result = measure(bundles, args.rounds, args.seconds, args.threads)
    result["rounds"] = args.rounds
    text = markdown(result)
    print(text)
    save("attention_forms", result, text)
    return result


if __name__ == "__main__":
    main()
