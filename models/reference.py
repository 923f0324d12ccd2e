"""The project's own reference AstroMAE weights (trained on simulated images of real SDSS galaxies)."""

from __future__ import annotations

from pathlib import Path

from cai_edge.errors import MissingReferenceWeightsError

REFERENCE_WEIGHTS = Path(__file__).with_name("weights") / "astromae-sdss.safetensors"


def load_reference():
    """The reference :class:`~cai_edge.models.astromae.AstroMAE`, in eval mode."""
    if not REFERENCE_WEIGHTS.is_file():
        raise MissingReferenceWeightsError(
            f"no reference weights yet ({REFERENCE_WEIGHTS} is absent). Import a CAI checkpoint with "
            "cai_edge.models.load_checkpoint(path) or `cai-edge checkpoint CAI.pt --out W.safetensors`."
        )
    from cai_edge.models.checkpoint import load_checkpoint

    return load_checkpoint(REFERENCE_WEIGHTS)
