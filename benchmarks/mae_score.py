"""Would the masked autoencoder's reconstruction error flag cutouts the image checks miss? (SIMULATED images)

    python benchmarks/mae_score.py [--epochs 2] [--train 20000] [--n 2000] [--seed 7]

Issue #31 asked for one measurement of it. Pretrains the masked autoencoder of the reference recipe
(``models/mae.py`` via ``models/train.py``'s ``pretrain_mae``: the reference preprocessing, 75 % of
the patches masked, normalised-pixel loss) on the training split, then scores every cutout by its
reconstruction error on the masked patches, averaged over four fixed masks. The threshold is the
validation split's 99.7th percentile, the false-positive rate of each image check. On N test-split
galaxies (render seed ``--seed``) and each shifted set of ``image_shifts.py`` (issue #31's and the
judged ones), it reports the fraction the score flags and, of the rows the shipped bundle leaves
usable, the fraction it would add. Writes benchmarks/results/mae_score.{json,md}.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from common import save
from image_shifts import IMAGE_FLAGS, render_stamps

QUANTILE = 0.997
MASKS = 4


def reconstruction_error(mae, prep, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Each cutout's mean squared error (normalised pixels) on its masked patches, averaged over MASKS fixed masks."""
    import torch

    out = []
    mae.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(prep.transform_images(images[start : start + batch])))
            errors = []
            for k in range(MASKS):
                _, pred, mask = mae(x, generator=torch.Generator().manual_seed(k))
                target = mae.patchify(x)
                target = (target - target.mean(dim=-1, keepdim=True)) / (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
                per_patch = ((pred - target) ** 2).mean(dim=-1)
                errors.append(((per_patch * mask).sum(dim=1) / mask.sum(dim=1)).numpy())
            out.append(np.mean(errors, axis=0))
    return np.concatenate(out).astype(np.float64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="MAE pretraining epochs (the reference recipe: 5)")
    parser.add_argument("--train", type=int, default=20000, help="training galaxies")
    parser.add_argument("--validation", type=int, default=2000, help="validation galaxies (the threshold)")
    parser.add_argument("--n", type=int, default=2000, help="test galaxies per shifted set")
    parser.add_argument("--seed", type=int, default=7, help="render seed of the test galaxies (the training images use 0)")
    parser.add_argument("--sets", default="", help="comma-separated names of the shifted sets (default: all judged ones)")
    args = parser.parse_args()
    import torch

    from cai_edge.machine import usable_cores
    from cai_edge.models import train as recipe
    from cai_edge.models.datasets import rendered_split
    from cai_edge.models.image_shifts import not_a_galaxy_shifts, standard_shifts
    from cai_edge.estimates import estimate
    from cai_edge.io.npz_partitions import records_from_arrays
    from cai_edge.predictor import Predictor
    from cai_edge.preprocessing import center_crop

    torch.set_num_threads(usable_cores())
    train = rendered_split("train", 0, args.train)
    predictor = Predictor("default")
    prep = predictor.preprocessing  # the shipped model's own image transform
    cfg = recipe.TrainConfig(mae_epochs=args.epochs, train_limit=args.train)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = object.__new__(recipe.Checkpoints)  # this measurement's own checkpoints, left nowhere
        ckpt.dir = Path(tmp)
        result = recipe.pretrain_mae(train, prep, cfg, ckpt)
        from cai_edge.models.mae import MaskedAutoencoder

        mae = MaskedAutoencoder()
        mae.load_state_dict(torch.load(Path(tmp) / "mae.pt", weights_only=True)["model"])
    validation = rendered_split("validation", 0, args.validation)
    threshold = float(np.quantile(reconstruction_error(mae, prep, validation.images), QUANTILE))

    cat, stamps = render_stamps(args.n, args.seed)
    wanted = {s.strip() for s in args.sets.split(",") if s.strip()}
    shifts = [s for s in not_a_galaxy_shifts() + standard_shifts() if not wanted or s.name in wanted]
    rows = {}
    for k, shift in enumerate(shifts):
        crops = np.ascontiguousarray(center_crop(shift.apply(stamps, np.random.default_rng(1000 + k))))
        score = reconstruction_error(mae, prep, crops)
        records = list(records_from_arrays(Path("shifted"), crops, cat.magnitudes.astype(np.float32), list(cat.ids), cat.z_spec))
        estimates = estimate(predictor, records, 256)
        usable = np.array([e.record.ok and not ((set(e.record.flags) | set(e.flags)) - {"uncalibrated"}) for e in estimates])
        image_flagged = np.array([bool((set(e.record.flags) | set(e.flags)) & IMAGE_FLAGS) for e in estimates])
        flagged = score > threshold
        rows[shift.name] = {"mae_flags": float(flagged.mean()), "image_checks_flag": float(image_flagged.mean()),
                            "usable_as_shipped": int(usable.sum()),
                            "mae_adds_of_usable": float(flagged[usable].mean()) if usable.any() else None,
                            "median_score": float(np.median(score))}
    table = "\n".join(f"| {name} | {r['image_checks_flag']:.1%} | {r['mae_flags']:.1%} | {r['usable_as_shipped']} | "
                      + ("—" if r["mae_adds_of_usable"] is None else f"{r['mae_adds_of_usable']:.1%}") + f" | {r['median_score']:.3f} |"
                      for name, r in rows.items())
    text = (f"MAE pretrained {args.epochs} epoch(s) on {len(train):,} training galaxies (final loss "
            f"{result['history'][-1]:.4f}); threshold {threshold:.4f}, the 99.7th percentile of {len(validation):,} validation "
            f"galaxies' reconstruction error (mean over {MASKS} fixed masks).\n\n| images | image checks flag | MAE score flags | "
            "usable as shipped | MAE score flags of those | median score |\n|---|---|---|---|---|---|\n" + table
            + f"\n\n{args.n:,} test-split galaxies per set, render seed {args.seed}; SIMULATED images (rendered from real SDSS "
            "photometry), shifted by cai_edge.models.image_shifts. 'Usable as shipped': rows with no flag from the shipped "
            "default bundle.")
    save("mae_score", {"epochs": args.epochs, "train": len(train), "threshold": threshold, "mae_loss": result["history"],
                       "n": args.n, "seed": args.seed, "sets": rows}, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
