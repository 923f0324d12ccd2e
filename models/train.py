"""``cai-edge train``: the AstroMAE recipe on simulated images of real SDSS galaxies.

1. Render the train/validation/test splits of the bundled catalogs once (cached).
2. Masked-autoencoder pretraining of the ViT encoder on the training images (unlabelled).
3. Fine-tuning of the full AstroMAE with the pretrained encoder frozen (as in the CAI code),
   with AstroMAE's augmentations (90° rotations, flips, noise); the epoch with the best
   validation σ_NMAD is kept.
4. The baselines on the same data: gradient boosting on magnitudes, and the network without
   its image branches.
5. Metrics on the test split with bootstrap errors → ``training_report.json``; weights as fp16
   safetensors with a JSON sidecar holding the preprocessing.

Every phase checkpoints after each epoch under the cache folder and resumes from there.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cai_edge.io.atomic import atomic_path
from cai_edge.machine import bounded_threads, machine_info, usable_cores
from cai_edge.metrics import bootstrap_errors, photoz_metrics
from cai_edge.models.astromae import AstroMAE
from cai_edge.models.baselines import MagnitudeOnlyNet, fit_gradient_boosting, magnitude_features
from cai_edge.models.datasets import GalaxySet, cache_dir, rendered_split
from cai_edge.models.mae import MaskedAutoencoder
from cai_edge.models.reference import REFERENCE_WEIGHTS, save_reference
from cai_edge.preprocessing import SDSS_NOISE_NANOMAGGIES, Preprocessing


@dataclass
class TrainConfig:
    seed: int = 0
    mae_epochs: int = 5
    finetune_epochs: int = 12
    baseline_epochs: int = 12
    batch_size: int = 256
    mae_lr: float = 1e-3
    finetune_lr: float = 1e-3
    weight_decay: float = 1e-4
    noise_augment: float = 0.5  # extra Gaussian noise, in units of the per-band sky noise
    huber_delta: float = 0.02  # on Δz/(1+z)
    train_limit: int | None = None
    eval_limit: int | None = None
    threads: int = field(default_factory=usable_cores)


def reference_preprocessing(train: GalaxySet) -> Preprocessing:
    """asinh-scaled images; magnitudes standardized with the training split's mean and spread."""
    mean = train.magnitudes.astype(np.float64).mean(axis=0)
    std = train.magnitudes.astype(np.float64).std(axis=0)
    return Preprocessing(
        image_transform="asinh",
        image_softening=SDSS_NOISE_NANOMAGGIES,
        magnitude_offset=tuple(round(float(v), 4) for v in mean),
        magnitude_scale=tuple(round(float(v), 4) for v in std),
    )


def augment(images: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Random 90° rotation and flip per galaxy, plus Gaussian noise at ``noise`` × the sky noise."""
    out = np.empty_like(images)
    turns = rng.integers(0, 4, len(images))
    for k in range(4):
        sel = turns == k
        out[sel] = np.rot90(images[sel], k, axes=(2, 3))
    flip = rng.random(len(images)) < 0.5
    out[flip] = out[flip, :, :, ::-1]
    if noise > 0:
        sigma = np.asarray(SDSS_NOISE_NANOMAGGIES, dtype=np.float32).reshape(1, -1, 1, 1)
        out += rng.standard_normal(out.shape, dtype=np.float32) * sigma * noise
    return out


def _batches(n: int, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _inputs(prep: Preprocessing, images: np.ndarray, mags: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    img, mag = prep.network_inputs(images, mags)
    return torch.from_numpy(np.ascontiguousarray(img)), torch.from_numpy(mag)


def predict(model: nn.Module, prep: Preprocessing, data: GalaxySet, batch_size: int = 512) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for idx in _batches(len(data), batch_size, None):
            out.append(model(*_inputs(prep, data.images[idx], data.magnitudes[idx])).numpy())
    return np.concatenate(out).astype(np.float64)


def _cosine_lr(optimizer, base_lr: float, step: int, total: int, warmup: int) -> None:
    lr = base_lr * (step + 1) / warmup if step < warmup else base_lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for group in optimizer.param_groups:
        group["lr"] = lr


class Checkpoints:
    """Per-phase resumable state under the cache folder, keyed by the config."""

    def __init__(self, cfg: TrainConfig):
        key = json.dumps({k: v for k, v in asdict(cfg).items() if k != "threads"}, sort_keys=True)
        import hashlib

        self.dir = cache_dir() / "train" / hashlib.sha256(key.encode()).hexdigest()[:12]
        self.dir.mkdir(parents=True, exist_ok=True)

    def load(self, phase: str) -> dict | None:
        path = self.dir / f"{phase}.pt"
        return torch.load(path, weights_only=True) if path.exists() else None

    def save(self, phase: str, state: dict) -> None:
        with atomic_path(self.dir / f"{phase}.pt") as tmp:
            torch.save(state, tmp)


def pretrain_mae(train: GalaxySet, prep: Preprocessing, cfg: TrainConfig, ckpt: Checkpoints) -> dict[str, torch.Tensor]:
    torch.manual_seed(cfg.seed)
    mae = MaskedAutoencoder()
    opt = torch.optim.AdamW(mae.parameters(), lr=cfg.mae_lr, betas=(0.9, 0.95), weight_decay=0.05)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    start_epoch, history = 0, []
    state = ckpt.load("mae")
    if state is not None:
        mae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, history = int(state["epoch"]) + 1, list(state["history"])
    for epoch in range(start_epoch, cfg.mae_epochs):
        rng = np.random.default_rng([cfg.seed, 1, epoch])
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        mae.train()
        losses = []
        bar = tqdm(list(_batches(len(train), cfg.batch_size, rng)), desc=f"MAE epoch {epoch + 1}/{cfg.mae_epochs}", unit="batch", mininterval=15)
        for step, idx in enumerate(bar):
            _cosine_lr(opt, cfg.mae_lr, epoch * steps_per_epoch + step, cfg.mae_epochs * steps_per_epoch, steps_per_epoch)
            images = prep.transform_images(augment(train.images[idx], rng, cfg.noise_augment))
            loss, _, _ = mae(torch.from_numpy(np.ascontiguousarray(images)), generator=gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
        history.append(float(np.mean(losses)))
        ckpt.save("mae", {"model": mae.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "history": history})
    return {"encoder": mae.encoder_state_dict(), "history": history}


def _train_regressor(
    name: str, model: nn.Module, train: GalaxySet, val: GalaxySet, prep: Preprocessing, cfg: TrainConfig,
    epochs: int, ckpt: Checkpoints,
) -> tuple[nn.Module, list[dict]]:
    """Huber loss on Δz/(1+z); keeps the epoch with the best validation σ_NMAD."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.finetune_lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    start_epoch, history, best = 0, [], None
    state = ckpt.load(name)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, history, best = int(state["epoch"]) + 1, list(state["history"]), state["best"]
    loss_fn = nn.HuberLoss(delta=cfg.huber_delta)
    for epoch in range(start_epoch, epochs):
        rng = np.random.default_rng([cfg.seed, 2, epoch])
        model.train()
        losses = []
        bar = tqdm(list(_batches(len(train), cfg.batch_size, rng)), desc=f"{name} epoch {epoch + 1}/{epochs}", unit="batch", mininterval=15)
        for step, idx in enumerate(bar):
            _cosine_lr(opt, cfg.finetune_lr, epoch * steps_per_epoch + step, epochs * steps_per_epoch, steps_per_epoch // 2)
            image, mag = _inputs(prep, augment(train.images[idx], rng, cfg.noise_augment), train.magnitudes[idx])
            z = torch.from_numpy(train.z_spec[idx]).float()
            loss = loss_fn((model(image, mag) - z) / (1 + z), torch.zeros_like(z))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.5f}", refresh=False)
        val_metrics = photoz_metrics(predict(model, prep, val), val.z_spec)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), **{f"val_{k}": v for k, v in val_metrics.items()}})
        print(f"{name} epoch {epoch + 1}: val σ_NMAD {val_metrics['sigma_nmad']:.5f}, η(0.05) {val_metrics['eta_05']:.4f}")
        if best is None or val_metrics["sigma_nmad"] < best["sigma_nmad"]:
            best = {"sigma_nmad": val_metrics["sigma_nmad"], "epoch": epoch + 1,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        ckpt.save(name, {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "history": history, "best": best})
    model.load_state_dict(best["state"])
    return model.eval(), history


def _metrics_with_errors(z_pred: np.ndarray, z_spec: np.ndarray) -> dict:
    return {"metrics": photoz_metrics(z_pred, z_spec), "bootstrap_std": bootstrap_errors(z_pred, z_spec, n_boot=200)}


def run_recipe(cfg: TrainConfig, out: Path = REFERENCE_WEIGHTS) -> dict:
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    train = rendered_split("train", cfg.seed, cfg.train_limit)
    val = rendered_split("validation", cfg.seed, cfg.eval_limit)
    test = rendered_split("test", cfg.seed, cfg.eval_limit)
    timings["render_s"] = time.perf_counter() - t0
    prep = reference_preprocessing(train)
    ckpt = Checkpoints(cfg)

    t = time.perf_counter()
    mae = pretrain_mae(train, prep, cfg, ckpt)
    timings["mae_pretraining_s"] = time.perf_counter() - t

    t = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = AstroMAE()
    model.load_state_dict(mae["encoder"], strict=False)
    for p in model.encoder_parameters():
        p.requires_grad = False
    model, finetune_history = _train_regressor("finetune", model, train, val, prep, cfg, cfg.finetune_epochs, ckpt)
    timings["finetune_s"] = time.perf_counter() - t

    t = time.perf_counter()
    torch.manual_seed(cfg.seed)
    mag_net, mag_history = _train_regressor("magnitude_only", MagnitudeOnlyNet(), train, val, prep, cfg, cfg.baseline_epochs, ckpt)
    gbr = fit_gradient_boosting(train.magnitudes, train.z_spec, val.magnitudes, val.z_spec, cfg.seed)
    timings["baselines_s"] = time.perf_counter() - t

    save_reference(model, prep, out, {"recipe": asdict(cfg), "train_galaxies": len(train)})
    from cai_edge.models.reference import load_reference_with_preprocessing

    stored, stored_prep = load_reference_with_preprocessing(out)  # evaluate exactly what ships (fp16 storage)
    results = {}
    for split_name, data in (("validation", val), ("test", test)):
        results[split_name] = {
            "astromae": _metrics_with_errors(predict(stored, stored_prep, data), data.z_spec),
            "magnitude_only_network": _metrics_with_errors(predict(mag_net, prep, data), data.z_spec),
            "gradient_boosting_magnitudes": _metrics_with_errors(gbr.predict(magnitude_features(data.magnitudes)), data.z_spec),
        }
    timings["total_s"] = time.perf_counter() - t0
    report = {
        "config": asdict(cfg),
        "data": {
            "train": train.description, "validation": val.description, "test": test.description,
            "counts": {"train": len(train), "validation": len(val), "test": len(test)},
        },
        "preprocessing": prep.to_dict(),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "history": {"mae_loss": mae["history"], "finetune": finetune_history, "magnitude_only": mag_history},
        "results": results,
        "machine": machine_info(),
        "weights": {"path": out.name, "bytes": out.stat().st_size},
    }
    with atomic_path(out.with_name("training_report.json")) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    if out == REFERENCE_WEIGHTS:
        from cai_edge.models.model_card import write_card

        write_card(out.with_name("training_report.json"))
    return report


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig(
        seed=args.seed, mae_epochs=args.mae_epochs, finetune_epochs=args.finetune_epochs,
        baseline_epochs=args.finetune_epochs, train_limit=args.limit, eval_limit=args.eval_limit,
        threads=bounded_threads(args.threads or None),
    )
    report = run_recipe(cfg, Path(args.out) if args.out else REFERENCE_WEIGHTS)
    test = report["results"]["test"]
    for name, res in test.items():
        m = res["metrics"]
        print(f"test {name:30s} σ_NMAD {m['sigma_nmad']:.5f}  η(0.05) {m['eta_05']:.4f}  bias {m['bias']:+.5f}")
    print(f"total {report['timings_s']['total_s']:.0f} s")
    return 0
