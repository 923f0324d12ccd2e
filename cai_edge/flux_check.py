"""Do a cutout's pixels agree with its magnitudes? A check that needs no header.

The central 32×32 pixels (12.7″) hold most of a Main Galaxy Sample galaxy's light, in every band
alike, so the box flux in each band is the catalog flux times one aperture fraction ``k``:

* ``k`` (the median of box/catalog over g, r, i) must lie in [0.05, 2]: counts (~200 per
  nanomaggy), data scaled by 1000, or maggies instead of nanomaggies are far outside;
* every band must match ``k`` × its catalog flux within a factor 2, after allowing 3σ of sky
  noise in the box: a cube stored in another band order, or one band's plane in the wrong unit,
  breaks the colours by more than that. On simulated in-domain galaxies the largest deviation
  seen is 0.05 dex in g–z; real colour gradients are larger, hence the factor 2.

A failing galaxy keeps its prediction and gets the flag ``flux_mismatch``.
"""

from __future__ import annotations

import numpy as np

from cai_edge.photometry import mag_to_nanomaggies
from cai_edge.preprocessing import SDSS_NOISE_NANOMAGGIES

APERTURE_FRACTION_RANGE = (0.05, 2.0)
COLOUR_FACTOR = 2.0
NOISE_SIGMAS = 3.0


BANDS = "ugriz"


def flux_mismatch_reasons(images: np.ndarray, magnitudes: np.ndarray) -> list[str]:
    """Per galaxy: why its ``(5,H,W)`` nanomaggy crop disagrees with its 5 magnitudes, in measured values; ``""`` when it agrees.

    Parameters
    ----------
    images : array_like
        ``(N, 5, H, W)`` nanomaggy crops, bands u,g,r,i,z.
    magnitudes : array_like
        ``(N, 5)`` u,g,r,i,z magnitudes.

    Returns
    -------
    list of str
        One reason per galaxy (empty: no ``flux_mismatch``).
    """
    images = np.asarray(images)
    box = images.sum(axis=(2, 3), dtype=np.float64)
    catalog = mag_to_nanomaggies(magnitudes)
    sigma = np.asarray(SDSS_NOISE_NANOMAGGIES) * np.sqrt(images.shape[2] * images.shape[3])
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.median(box[:, 1:4] / catalog[:, 1:4], axis=1)
        lo, hi = APERTURE_FRACTION_RANGE
        bad_level = ~((k >= lo) & (k <= hi))
        expected = k[:, None] * catalog
        ratio = box / expected
        too_faint = (box + NOISE_SIGMAS * sigma) / expected < 1.0 / COLOUR_FACTOR
        too_bright = (box - NOISE_SIGMAS * sigma) / expected > COLOUR_FACTOR
    reasons = []
    for i in range(len(box)):
        if bad_level[i]:
            reasons.append(f"pixel flux / catalog flux {k[i]:.3g} (median of g, r, i) outside {lo:g}–{hi:g}: pixels not in nanomaggies?")
            continue
        bands = [f"{BANDS[b]} {ratio[i, b]:.2f}×" for b in range(box.shape[1]) if too_faint[i, b] or too_bright[i, b]]
        reasons.append(f"band flux against the magnitudes' colours {', '.join(bands)} (allowed 1/{COLOUR_FACTOR:g}–{COLOUR_FACTOR:g}×, "
                       f"{NOISE_SIGMAS:g}σ noise aside): band order or one band's unit?" if bands else "")
    return reasons
