"""Cutouts changed the way real surveys differ from the training renderer: SIMULATED shifted test sets.

Each shift takes rendered ``(N, 5, H, W)`` nanomaggy stamps (before the 32×32 crop, so a
neighbour or a blur reaches into the crop as it would on the sky) and returns new ones; the
originals are never changed. Shifts draw from their own ``numpy`` generator, so a set is
reproducible from its seed.

* ``sky_noise(k)``: per-band sky noise ×k (deeper or shallower imaging than SDSS): Gaussian noise
  of σ_b·√(k²−1) added, σ_b the SDSS-like sky noise the renderer uses.
* ``blur(σ)``: worse seeing: a Gaussian of σ pixels convolved in (on noise and galaxy alike).
* ``neighbour(ratio, offset)``: another galaxy of the set, ``ratio`` times as bright, ``offset``
  pixels from the centre.
* ``cosmic_rays(n)``: ``n`` single-pixel hits per band, 50–500 nanomaggies, anywhere in the stamp.
* ``saturated(fraction)``: every pixel above ``fraction`` of the galaxy's brightest clipped there.
* ``masked_centre(n)``: an ``n``×``n`` block at the centre set to 0 (a bad column, a mask filled).
* ``pixel_scale(f)``: the stamp resampled to pixels ``f`` times as large (flux conserved).
* ``rotate90`` and ``flip``: the sky seen another way; the model should not care.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from cai_edge.preprocessing import SDSS_NOISE_NANOMAGGIES

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class NamedShift:
    name: str
    strength: float  # the shift's own scale (noise factor, blur σ …), for figures against strength
    apply: Shift


def sky_noise(factor: float) -> Shift:
    def apply(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sigma = np.asarray(SDSS_NOISE_NANOMAGGIES, dtype=np.float64).reshape(1, -1, 1, 1) * np.sqrt(max(factor**2 - 1, 0.0))
        return (stamps + rng.standard_normal(stamps.shape) * sigma).astype(np.float32)
    return apply


def _gaussian_kernel_fft(shape: tuple[int, int], sigma: float) -> np.ndarray:
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    return np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))


def blur(sigma: float) -> Shift:
    def apply(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        kernel = _gaussian_kernel_fft(stamps.shape[-2:], sigma)
        return np.fft.irfft2(np.fft.rfft2(stamps) * kernel, s=stamps.shape[-2:]).astype(np.float32)
    return apply


def neighbour(ratio: float, offset: int) -> Shift:
    def apply(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        others = np.roll(stamps, 1, axis=0) * ratio  # the next galaxy of the set
        angle = rng.uniform(0, 2 * np.pi, len(stamps))
        out = stamps.copy()
        for i, a in enumerate(angle):
            dy, dx = int(round(offset * np.sin(a))), int(round(offset * np.cos(a)))
            out[i] += np.roll(others[i], (dy, dx), axis=(-2, -1))
        return out
    return apply


def cosmic_rays(n: int) -> Shift:
    def apply(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = stamps.copy()
        g, b, h, w = stamps.shape
        for _ in range(n):
            rows, cols = rng.integers(0, h, (g, b)), rng.integers(0, w, (g, b))
            out[np.arange(g)[:, None], np.arange(b)[None, :], rows, cols] += rng.uniform(50, 500, (g, b)).astype(np.float32)
        return out
    return apply


def saturated(fraction: float) -> Shift:
    def apply(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        peak = stamps.max(axis=(1, 2, 3), keepdims=True)
        return np.minimum(stamps, peak * fraction).astype(np.float32)
    return apply


def masked_centre(n: int) -> Shift:
    def apply(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = stamps.copy()
        h, w = stamps.shape[-2:]
        out[..., (h - n) // 2 : (h + n) // 2, (w - n) // 2 : (w + n) // 2] = 0
        return out
    return apply


def pixel_scale(factor: float) -> Shift:
    """Pixels ``factor`` times as large: bilinear resampling about the stamp centre, flux per pixel ×factor²."""
    def apply(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = stamps.shape[-2:]
        cy, cx = (h - 1) / 2, (w - 1) / 2
        y = np.clip(cy + (np.arange(h) - cy) * factor, 0, h - 1)
        x = np.clip(cx + (np.arange(w) - cx) * factor, 0, w - 1)
        y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
        y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
        wy, wx = (y - y0)[:, None], (x - x0)[None, :]
        s = stamps
        top = s[..., y0, :][..., :, x0] * (1 - wx) + s[..., y0, :][..., :, x1] * wx
        bottom = s[..., y1, :][..., :, x0] * (1 - wx) + s[..., y1, :][..., :, x1] * wx
        return ((top * (1 - wy) + bottom * wy) * factor**2).astype(np.float32)
    return apply


def rotate90(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(stamps, 1, axes=(-2, -1)))


def flip(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(stamps[..., ::-1])


def standard_shifts() -> list[NamedShift]:
    """The shifted sets the image-domain check is judged on (issue #24), as rendered → shifted."""
    return [
        NamedShift("as rendered", 0.0, lambda s, rng: s),
        NamedShift("sky noise x1.5", 1.5, sky_noise(1.5)),
        NamedShift("sky noise x2", 2.0, sky_noise(2.0)),
        NamedShift("sky noise x3", 3.0, sky_noise(3.0)),
        NamedShift("extra blur sigma 1.5 px", 1.5, blur(1.5)),
        NamedShift("extra blur sigma 2.5 px", 2.5, blur(2.5)),
        NamedShift("3x brighter neighbour 10 px away", 3.0, neighbour(3.0, 10)),
        NamedShift("cosmic rays (3 per band)", 3.0, cosmic_rays(3)),
        NamedShift("saturated above 30 % of the peak", 0.3, saturated(0.3)),
        NamedShift("masked 4x4 centre", 4.0, masked_centre(4)),
        NamedShift("pixels 1.25x larger", 1.25, pixel_scale(1.25)),
        NamedShift("rotated 90 deg", 0.0, rotate90),
        NamedShift("flipped", 0.0, flip),
    ]
