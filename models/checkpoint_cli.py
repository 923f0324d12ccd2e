"""``cai-edge checkpoint``: import a checkpoint safely and write its weights as safetensors."""

from __future__ import annotations

import argparse
from pathlib import Path

from safetensors.torch import save_file

from cai_edge.io.atomic import atomic_path
from cai_edge.models.checkpoint import load_checkpoint


def run(args: argparse.Namespace) -> int:
    model = load_checkpoint(args.checkpoint)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "architecture": "AstroMAE", "source": Path(args.checkpoint).name})
    n_params = sum(p.numel() for p in model.parameters())
    print(f"imported {args.checkpoint}: AstroMAE, {n_params:,} parameters → {out}")
    return 0
