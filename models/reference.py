"""The project's reference AstroMAE weights (trained on simulated images of real SDSS galaxies).

Stored piper-style: ``weights/astromae-sdss.safetensors`` (fp16) and a JSON sidecar
``weights/astromae-sdss.json`` with the preprocessing the weights expect and how they were made.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cai_edge.errors import MissingReferenceWeightsError
from cai_edge.preprocessing import Preprocessing

REFERENCE_WEIGHTS = Path(__file__).with_name("weights") / "astromae-sdss.safetensors"


def sidecar_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def read_sidecar(weights: str | Path) -> dict:
    """The sidecar of a weights file; weights without one (e.g. CAI imports) get the CAI preprocessing."""
    path = sidecar_path(Path(weights))
    if not path.is_file():
        return {"preprocessing": Preprocessing().to_dict()}
    return json.loads(path.read_text())


def save_reference(model, preprocessing: Preprocessing, out: Path = REFERENCE_WEIGHTS, info: dict | None = None) -> Path:
    """Write ``model``'s weights as fp16 safetensors plus the JSON sidecar."""
    import torch
    from safetensors.torch import save_file

    from cai_edge.io.atomic import atomic_path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous()
        for k, v in model.state_dict().items()
    }
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "architecture": "AstroMAE", "dtype": "float16"})
    sidecar = {
        "architecture": "AstroMAE",
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "storage_dtype": "float16",
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "preprocessing": preprocessing.to_dict(),
        "images": "SIMULATED images (cai-edge render) of real SDSS galaxies' photometry and spectroscopic redshifts",
        "torch": torch.__version__,
        **(info or {}),
    }
    with atomic_path(sidecar_path(out)) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
    return out


def load_reference_with_preprocessing(weights: str | Path = REFERENCE_WEIGHTS):
    """``(AstroMAE in eval mode, Preprocessing)`` from a weights file and its sidecar."""
    weights = Path(weights)
    if not weights.is_file():
        raise MissingReferenceWeightsError(
            f"no reference weights at {weights}. They ship with the toolchain in a cai-edge checkout, not in the runtime "
            "wheel: install from the checkout (pip install -e \".[export]\"), train them with `cai-edge train`, or import "
            "a CAI checkpoint (`cai-edge export --checkpoint CAI.pt`)."
        )
    from cai_edge.models.checkpoint import load_checkpoint

    return load_checkpoint(weights), Preprocessing.from_dict(read_sidecar(weights)["preprocessing"])


def load_reference():
    """The reference :class:`~cai_edge.models.astromae.AstroMAE`, in eval mode."""
    return load_reference_with_preprocessing(REFERENCE_WEIGHTS)[0]
