"""Write ``models/MODEL_CARD.md`` from ``weights/training_report.json``: no number is typed by hand.

    python -m cai_edge.models.model_card
"""

from __future__ import annotations

import json
from pathlib import Path

from cai_edge.models.reference import REFERENCE_WEIGHTS

CARD = Path(__file__).with_name("MODEL_CARD.md")
NAMES = {
    "astromae": "AstroMAE (reference weights)",
    "magnitude_only_network": "network without image branches",
    "gradient_boosting_magnitudes": "gradient boosting on magnitudes",
}


def _metric_table(results: dict) -> str:
    lines = [r"| model | σ_NMAD | bias | η (\|Δz\| > 0.05) | η (\|Δz\| > 0.15) | MAE | R² |", "|---|---|---|---|---|---|---|"]
    for key, res in results.items():
        m, e = res["metrics"], res["bootstrap_std"]
        lines.append(
            f"| {NAMES.get(key, key)} | {m['sigma_nmad']:.5f} ± {e['sigma_nmad']:.5f} | {m['bias']:+.5f} ± {e['bias']:.5f} | "
            f"{m['eta_05']:.4f} ± {e['eta_05']:.4f} | {m['eta_15']:.4f} ± {e['eta_15']:.4f} | {m['mae']:.5f} ± {e['mae']:.5f} | "
            f"{m['r2']:.4f} ± {e['r2']:.4f} |"
        )
    return "\n".join(lines)


def render_card(report: dict) -> str:
    cfg, data, t, prep = report["config"], report["data"], report["timings_s"], report["preprocessing"]
    test = report["results"]["test"]
    full, mag_net, gbr = (test[k]["metrics"] for k in ("astromae", "magnitude_only_network", "gradient_boosting_magnitudes"))
    beats = all(full[k] < other[k] for other in (mag_net, gbr) for k in ("sigma_nmad", "eta_05"))
    machine = report["machine"]
    ft = report["history"]["finetune"]
    best = min(ft, key=lambda h: h["val_sigma_nmad"])
    return f"""# Model card: AstroMAE reference weights (`astromae-sdss`)

**The images these weights were trained and tested on are simulated.** They are rendered by
`cai-edge render` from *real* SDSS photometry (ugriz model magnitudes) and *real* spectroscopic
redshifts; the galaxy shapes, sizes, PSF and noise are simulated (see `galaxy_model.py`). Every
number below is a figure on simulated images. The original CAI/AstroMAE weights and SDSS
cutouts could not be obtained; users who have the CAI checkpoint can import it instead
(`cai-edge checkpoint`, `cai-edge export --checkpoint`).

## Model
- Architecture: AstroMAE as in the CAI code (ViT encoder 12×192, 3 heads, patch 8; Inception CNN;
  magnitude MLP; 15,801,513 parameters). Output: spectroscopic-redshift estimate, `0 < z < 0.4`.
- Weights: `weights/astromae-sdss.safetensors` (fp16 storage, {report['weights']['bytes'] / 1e6:.1f} MB), sidecar
  `weights/astromae-sdss.json` with the preprocessing below.
- Preprocessing (recorded in every bundle manifest): images u,g,r,i,z in nanomaggies, centre
  32×32, `asinh(x / s_b)` with `s_b` = {prep['image_softening']} nanomaggies (SDSS sky noise per band);
  magnitudes: raw SDSS model magnitudes (`{prep['magnitude_system']}`), standardized with the
  training split's mean {prep['magnitude_offset']} and spread {prep['magnitude_scale']}.
  Dereddened magnitudes (e.g. MLZ) are a different system: do not feed them unconverted.

## Data
- Catalogs: astroML SDSS CAS query and Kaggle SkyServer DR14 (raw model magnitudes), de-duplicated
  (`sdss_data/README.md`); galaxies with `0 < z_spec < 0.4`; split by a hash of the id.
- Train {data['counts']['train']:,} · validation {data['counts']['validation']:,} · test {data['counts']['test']:,} galaxies.
- Images: {data['test']}.

## Training recipe (`cai-edge train`, seed {cfg['seed']})
1. Masked-autoencoder pretraining of the ViT encoder on the training images: {cfg['mae_epochs']} epochs,
   mask ratio 0.75, 4-block 192-wide decoder, normalized-pixel loss, AdamW (lr {cfg['mae_lr']}).
2. Fine-tuning with the encoder frozen (as in the CAI code): {cfg['finetune_epochs']} epochs, batch {cfg['batch_size']},
   AdamW (lr {cfg['finetune_lr']}, weight decay {cfg['weight_decay']}), cosine schedule, Huber loss
   (δ = {cfg['huber_delta']}) on Δz/(1+z); augmentations: random 90° rotations, flips, and Gaussian noise at
   {cfg['noise_augment']}× the sky noise. Epoch kept: {best['epoch']} (best validation σ_NMAD).
3. Baselines on the same splits: the network without its image branches (same recipe, {cfg['baseline_epochs']} epochs)
   and scikit-learn gradient boosting on magnitudes and colours (early-stopped on validation).
- Time on {machine['cpu_model']} with {cfg['threads']} threads: render {t['render_s'] / 60:.1f} min, MAE pretraining
  {t['mae_pretraining_s'] / 60:.1f} min, fine-tuning {t['finetune_s'] / 60:.1f} min, baselines {t['baselines_s'] / 60:.1f} min;
  total {t['total_s'] / 60:.1f} min.

## Results on the test split (simulated images; ± bootstrap standard deviation, 200 resamples)
{_metric_table(test)}

Validation split:
{_metric_table(report['results']['validation'])}

Full model below both baselines on σ_NMAD and outlier fraction (|Δz| > 0.05): **{'yes' if beats else 'no'}**.

## Reproduce
- Train (about {t['total_s'] / 60:.0f} min on 2 cores): `cai-edge train` (writes the weights, `weights/training_report.json` and this card).
- Check the test-split numbers: `cai-edge evaluate --data sdss:test` (renders the test split with seed 0, cached).

## Limitations
- Simulated images: real SDSS cutouts have neighbours, artefacts, varied backgrounds and morphologies
  the renderer does not make. Expect worse results on real images until the model is trained on them.
- Domain: SDSS Main-Galaxy-Sample-like galaxies, r ≲ 17.8, 0 < z < 0.4. Out of domain (fainter, BOSS,
  z > 0.4, QSOs, stars) predictions are not meaningful.
- The image branches see size and surface brightness; with the renderer's size–luminosity scatter,
  that information is weak, which bounds what images add over magnitudes here.
"""


TRUST_REPORT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "trust.json"


def render_trust(trust: dict) -> str:
    """The card's section on uncertainty and flags, from ``benchmarks/trust_figures.py``'s report."""
    lines = ["", "## Uncertainty and flags (test split, SIMULATED images)", "",
             "Intervals from residual quantiles calibrated on the validation split (`cai-edge calibrate`); "
             "flags from the training domain and the training images (training split), and the flux–magnitude check. "
             f"Measured by `benchmarks/trust_figures.py` on {trust['machine']}.", "",
             "| bundle | data | 68 % covers | 95 % covers | median z_err | PIT χ² (9 dof) | CRPS | flagged | catastrophic outliers flagged |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, parts in trust["bundles"].items():
        for part, r in parts.items():
            caught = r.get("catastrophic_flagged_fraction")
            caught_text = "—" if caught is None else f"{caught:.1%} of {r['catastrophic']}"
            lines.append(f"| {name} | {'test split' if part == 'test' else 'BOSS DR10 (out of domain)'} | {r['coverage_68']:.3f} | "
                         f"{r['coverage_95']:.3f} | {r['median_z_err']:.4f} | {r['pit']['chi2']:.1f} | {r['crps']:.4f} | "
                         f"{r['flagged_fraction']:.1%} | {caught_text} |")
    return "\n".join(lines) + "\n"


IMAGE_SHIFTS_REPORT = TRUST_REPORT.with_name("image_shifts.json")


def render_image_shifts(report: dict) -> str:
    """The card's section on images unlike the training images, from ``benchmarks/image_shifts.py``'s report."""
    from cai_edge.models.image_shifts import MIN_UNFLAGGED_ROWS, coverage_text

    m = report["machine"]
    lines = ["", "## Images unlike the training images (test split, SIMULATED images, then shifted)", "",
             "Each row: the same test-split galaxies (render seed "
             f"{report['seed']}, {report['n']:,} of them), changed as a survey would differ, through the runtime's own path "
             f"(bundle {report['bundle']}; `python benchmarks/image_shifts.py`, on {m['cpu_model']}). The image-domain check "
             "(`image_noise`, `image_out_of_domain`; sky noise, point asymmetry, flat pixel runs, each band's offset against "
             "r, a source at the centre, constant and identical planes, and whether the pixels' colours and flux are those "
             "of the galaxy the magnitudes describe, fitted on the training images) flags what it can "
             f"see; coverage is that of the rows left unflagged (shown where at least {MIN_UNFLAGGED_ROWS} are).", "",
             "| images | flagged | 68 % / 95 % covers | without the check: flagged | 68 % / 95 % covers |", "|---|---|---|---|---|"]

    for name, r in report["results"].items():
        if r.get("judged"):
            w = r["without_check"]
            lines.append(f"| {name} | {r['flagged']:.1%} | {coverage_text(r)} | {w['flagged']:.1%} | {coverage_text(w)} |")
    split = report.get("test_split")
    if split:
        lines += ["", f"On the unshifted test split ({split['predicted']:,} galaxies, render seed 0) the image checks flag "
                  f"{split['image_flagged']:.2%} of rows; σ_NMAD of the usable rows is {split['sigma_nmad']:.5f} ± "
                  f"{split['sigma_nmad_error']:.5f} (bootstrap), {split['without_check']['sigma_nmad']:.5f} without the image checks."]
    # the results page's figure (docs/image_shifts.png, written by `image_shifts.py --plot`): from models/ and from docs/
    lines += ["", "![Coverage of the unflagged rows against shift strength, with and without the check (SIMULATED images)]"
              "(../docs/image_shifts.png)"]
    lines += ["", "What it cannot see: a pixel scale other than SDSS's 0.396″ (from about 1.4× on the intervals no longer "
              "hold; only a FITS header that declares its scale is flagged), deeper imaging than the training images "
              "(lower noise is not flagged, and was never measured), neighbours faint or close enough to hide in the "
              "galaxy's own light, a band misregistered by less than its threshold (u below ~2 px and z below ~0.9 px, "
              "where the training images' own centroids scatter that much), and another galaxy's pixels whose colours, "
              "flux and light profile agree with the magnitudes given (the photometric match flags the rest): nothing in "
              "five fluxes tells such a galaxy from this one, and the rows it leaves usable cover less than they claim. "
              "The match's flux level also flags images whose light is spread unlike the training images' (seeing far "
              "worse than SDSS's, galaxies several pixels off centre): their rows are not usable though the model's "
              "intervals for them mostly hold."]
    return "\n".join(lines) + "\n"


def write_card(report_path: Path = REFERENCE_WEIGHTS.with_name("training_report.json"), out: Path = CARD,
               trust_path: Path = TRUST_REPORT, image_shifts_path: Path = IMAGE_SHIFTS_REPORT) -> Path:
    text = render_card(json.loads(report_path.read_text()))
    if trust_path.is_file():
        text += render_trust(json.loads(trust_path.read_text()))
    if image_shifts_path.is_file():
        text += render_image_shifts(json.loads(image_shifts_path.read_text()))
    out.write_text(text)
    return out


if __name__ == "__main__":
    print(write_card())
