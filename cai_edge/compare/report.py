"""report.json, report.md and the plots of a comparison."""

from __future__ import annotations

import json
from pathlib import Path

from cai_edge.io.atomic import atomic_path
from cai_edge.io.safe_files import check_output_folder, json_file_has
from cai_edge.pricing import PRICES_DATE, PRICES_REGION

COLUMNS = [
    ("variant", "variant", "{}"),
    ("tier", "tier", "{}"),
    ("emulated", "emulated", "{}"),
    ("sigma_nmad", "σ_NMAD", "{:.4f}"),
    ("bias", "bias", "{:+.4f}"),
    ("eta_05", "η>0.05", "{:.3f}"),
    ("eta_15", "η>0.15", "{:.3f}"),
    ("mae", "MAE", "{:.4f}"),
    ("coverage_68", "68 % covers", "{:.3f}"),
    ("coverage_95", "95 % covers", "{:.3f}"),
    ("crps", "CRPS", "{:.4f}"),
    ("galaxies_per_s", "galaxies/s", "{:.0f}"),
    ("latency_ms_b1", "latency b1 (ms)", "{:.1f}"),
    ("cold_start_ms", "cold start (ms)", "{:.0f}"),
    ("peak_rss_mb", "peak RSS (MB)", "{:.0f}"),
    ("size_mb", "size (MB)", "{:.1f}"),
    ("usd_per_million", "$/M galaxies x86", "{:.3f}"),
    ("usd_per_million_arm64", "$/M galaxies arm64", "{:.3f}"),
]


def _cell(value, fmt: str) -> str:
    if value is None:
        return "—"
    return fmt.format(value)


def markdown_table(rows: list[dict]) -> str:
    head = "| " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    body = ["| " + " | ".join(_cell(row.get(key), fmt) for key, _, fmt in COLUMNS) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def check_report_folder(out: Path) -> None:
    """``--out`` must be new, empty, or an earlier report folder (its ``report.json``): no user file is replaced."""
    check_output_folder(out, lambda folder: json_file_has(folder / "report.json", ("rows", "machine")), "report folder")


def write_report(out_dir: str | Path, report: dict) -> Path:
    out = Path(out_dir)
    check_report_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    notes = sorted({f"- **{r['tier']}**: {r['emulation_note']}" for r in report["rows"] if r.get("emulation_note")})
    text = [
        "# cai-edge device-tier comparison",
        "",
        f"Data: {report['data']}. Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, Python {m['python']}.",
        f"Lambda prices: {PRICES_REGION}, recorded {PRICES_DATE} (`cai_edge/pricing.py`); laptop and edge tiers carry no cloud cost.",
        "",
        markdown_table(report["rows"]),
        "",
        "Emulated rows (thread count and Lambda's memory→vCPU mapping on this CPU, not the real device):",
        *notes,
    ]
    (out / "report.md").write_text("\n".join(text) + "\n")
    return out


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(out_dir: str | Path, rows: list[dict], data: str = "the compared galaxies") -> list[Path]:
    """throughput_by_tier.png, and accuracy_vs_cost.png when some tier has a cost (needs the ``plot`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    paths = []
    priced = [row for row in rows if row.get("usd_per_million")]
    if priced:  # no Lambda tier, no cost axis: no empty figure
        fig, ax = plt.subplots(figsize=(6, 4))
        for row in priced:
            ax.scatter(row["usd_per_million"], row["sigma_nmad"], label=f"{row['bundle']} @ {row['tier']}")
        ax.set_xlabel("USD per million galaxies (Lambda x86_64)")
        ax.set_ylabel(f"σ_NMAD on {data}", fontsize=7)
        ax.legend(fontsize=6)
        ax.set_title("Accuracy against cost", fontsize=9)
        paths.append(_save(fig, out / "accuracy_vs_cost.png"))

    tiers = list(dict.fromkeys(r["tier"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(variants))
    for k, variant in enumerate(variants):
        values = [next((r["galaxies_per_s"] for r in rows if r["tier"] == t and r["variant"] == variant), 0) for t in tiers]
        ax.bar([i + k * width for i in range(len(tiers))], values, width, label=variant)
    ax.set_xticks([i + width * (len(variants) - 1) / 2 for i in range(len(tiers))], tiers, fontsize=8)
    ax.set_ylabel("galaxies / s")
    ax.legend(fontsize=7)
    ax.set_title("Throughput per tier", fontsize=9)
    paths.append(_save(fig, out / "throughput_by_tier.png"))
    return paths
