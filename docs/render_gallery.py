"""Make docs/rendered_galaxies.png: simulated cutouts of real SDSS galaxies across redshift.

    python docs/render_gallery.py   (needs the train and plot extras)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cai_edge.models.catalogs import load_catalogs  # noqa: E402
from cai_edge.models.render import render_galaxies  # noqa: E402
from cai_edge.photometry import MAG_COLUMNS  # noqa: E402

TARGET_Z = [0.02, 0.05, 0.08, 0.12, 0.18, 0.25, 0.33]


def asinh_rgb(image: np.ndarray) -> np.ndarray:
    """Lupton-style asinh colour from the i, r, g bands."""
    rgb = np.stack([image[3], image[2], image[1]], axis=-1) * np.array([1.0, 1.1, 1.6])
    total = rgb.mean(axis=-1, keepdims=True)
    scaled = np.arcsinh(total / 0.08) / np.where(total == 0, 1, total)
    return np.clip(rgb * scaled / 4.0, 0, 1)


def main(out: Path = Path(__file__).with_name("rendered_galaxies.png")) -> None:
    table = load_catalogs(mag_system="model")
    table = table[table["split"] == "test"]
    z = np.asarray(table["z_spec"])
    rows = [int(np.argmin(np.abs(z - t))) for t in TARGET_Z]
    ids = [str(table["id"][r]) for r in rows]
    mags = np.array([[table[c][r] for c in MAG_COLUMNS] for r in rows])
    images = render_galaxies(ids, mags, z[rows], seed=0)
    fig, axes = plt.subplots(2, len(rows), figsize=(2.0 * len(rows), 4.4))
    for k, r in enumerate(rows):
        axes[0, k].imshow(asinh_rgb(images[k]), origin="lower")
        axes[0, k].set_title(f"z = {z[r]:.3f}\nr = {mags[k, 2]:.2f}", fontsize=9)
        axes[1, k].imshow(np.arcsinh(images[k, 2] / 0.05), origin="lower", cmap="gray")
        axes[1, k].add_patch(plt.Rectangle((15.5, 15.5), 32, 32, fill=False, ec="tab:orange", lw=0.8))
        for ax in axes[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("gri colour")
    axes[1, 0].set_ylabel("r band (asinh)")
    fig.suptitle(
        "SIMULATED 64×64 SDSS cutouts (0.396″/px) of real galaxies' ugriz photometry and spec-z;\n"
        "orange: the 32×32 crop AstroMAE sees. Rendered by `cai-edge render` (GalSim), seed 0.",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
