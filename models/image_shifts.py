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
* ``off_centre(dy, dx)``: the galaxy ``dy, dx`` pixels from the cutout centre (astrometry, a
  cutout service's own centring).
* ``quantized(step)``: pixels rounded to ``step`` × the band's sky noise (lossy compression,
  integer data).
* ``dead_column``: one column through the galaxy set to 0.
* ``sky_offset(k)``: a sky background ``k`` × the band's noise left in (bad sky subtraction).
* ``rotate90`` and ``flip``: the sky seen another way; the model should not care.
* ``misregistered(bands, px, angle)``: the given bands moved ``px`` pixels (sub-pixel, by the
  Fourier shift theorem) in the direction ``angle`` against the others: band files from
  different epochs, services or reprojections.
* ``constant_planes``: every plane filled with its crop's mean (the galaxy's flux, no structure).
* ``pedestal_without_galaxy``: each crop's mean flux as a flat pedestal plus SDSS-like sky noise,
  no galaxy; ``sky_only``: the noise alone.
* ``other_galaxy``: the pixels of the next galaxy of the set, this galaxy's magnitudes kept.

:func:`standard_shifts` are the sets the image-domain check is judged on; :func:`strength_sweeps`
vary one shift's strength for the coverage-against-strength figure, past where the check can see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from cai_edge.preprocessing import SDSS_NOISE_NANOMAGGIES

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


MIN_UNFLAGGED_ROWS = 100  # issue #24 judges a set's coverage only where at least this many rows are unflagged


def coverage_text(summary: dict) -> str:
    """``0.68 / 0.94``: a set's 68 and 95 % coverage of its unflagged rows, or ``— (N rows)`` when too few are left."""
    if summary["unflagged"] < MIN_UNFLAGGED_ROWS or "coverage_68" not in summary:
        return f"— ({summary['unflagged']} rows)"
    return f"{summary['coverage_68']:.2f} / {summary['coverage_95']:.2f}"


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


def off_centre(dy: int, dx: int) -> Shift:
    def apply(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.ascontiguousarray(np.roll(stamps, (dy, dx), axis=(-2, -1)))
    return apply


def quantized(step: float) -> Shift:
    def apply(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        q = np.asarray(SDSS_NOISE_NANOMAGGIES, dtype=np.float32).reshape(1, -1, 1, 1) * np.float32(step)
        return (np.round(stamps / q) * q).astype(np.float32)
    return apply


def dead_column(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = stamps.copy()
    out[..., :, stamps.shape[-1] // 2 - 2] = 0
    return out


def sky_offset(k: float) -> Shift:
    def apply(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (stamps + np.asarray(SDSS_NOISE_NANOMAGGIES, dtype=np.float32).reshape(1, -1, 1, 1) * np.float32(k)).astype(np.float32)
    return apply


def rotate90(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(stamps, 1, axes=(-2, -1)))


def flip(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(stamps[..., ::-1])


def misregistered(bands: tuple[int, ...], px: float, angle_deg: float = 0.0) -> Shift:
    def apply(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        dy, dx = px * np.sin(np.radians(angle_deg)), px * np.cos(np.radians(angle_deg))
        fy = np.fft.fftfreq(stamps.shape[-2])[:, None]
        fx = np.fft.rfftfreq(stamps.shape[-1])[None, :]
        phase = np.exp(-2j * np.pi * (fy * dy + fx * dx))
        out = stamps.copy()
        moved = list(bands)
        out[:, moved] = np.fft.irfft2(np.fft.rfft2(stamps[:, moved]) * phase, s=stamps.shape[-2:]).astype(np.float32)
        return out
    return apply


def _crop_mean(stamps: np.ndarray) -> np.ndarray:
    from cai_edge.preprocessing import center_crop

    return center_crop(stamps).mean(axis=(-2, -1), keepdims=True)


def constant_planes(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.broadcast_to(_crop_mean(stamps), stamps.shape).astype(np.float32)


def pedestal_without_galaxy(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (_crop_mean(stamps) + sky_only(stamps, rng)).astype(np.float32)


def sky_only(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal(stamps.shape) * np.asarray(SDSS_NOISE_NANOMAGGIES).reshape(1, -1, 1, 1)).astype(np.float32)


def other_galaxy(stamps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(np.roll(stamps, 1, axis=0))


def not_a_galaxy_shifts() -> list[NamedShift]:
    """Planes that are not one registered galaxy (issue #31): misregistered bands, constant planes, no galaxy, another's."""
    g, r, i, z = 1, 2, 3, 4
    return [
        *(NamedShift(f"g shifted {k} px", k, misregistered((g,), k)) for k in (1, 2, 3)),
        *(NamedShift(f"i and z shifted {k} px diagonally", k, misregistered((i, z), k, 45.0)) for k in (1, 2, 3)),
        NamedShift("r and z shifted 3 px", 3.0, misregistered((r, z), 3)),
        NamedShift("every plane constant (the galaxy's flux)", 1.0, constant_planes),
        NamedShift("flat pedestal + sky noise, no galaxy", 1.0, pedestal_without_galaxy),
        NamedShift("sky noise only, no galaxy", 1.0, sky_only),
        NamedShift("another galaxy's pixels", 1.0, other_galaxy),
    ]


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
        NamedShift("as bright a neighbour 14 px away", 1.0, neighbour(1.0, 14)),
        NamedShift("half as bright a neighbour 8 px away", 0.5, neighbour(0.5, 8)),
        NamedShift("cosmic rays (3 per band)", 3.0, cosmic_rays(3)),
        NamedShift("a cosmic ray per band", 1.0, cosmic_rays(1)),
        NamedShift("saturated above 30 % of the peak", 0.3, saturated(0.3)),
        NamedShift("saturated above 50 % of the peak", 0.5, saturated(0.5)),
        NamedShift("masked 4x4 centre", 4.0, masked_centre(4)),
        NamedShift("masked 2x2 centre", 2.0, masked_centre(2)),
        NamedShift("dead column through the galaxy", 1.0, dead_column),
        NamedShift("pixels 1.25x larger", 1.25, pixel_scale(1.25)),
        NamedShift("pixels 0.8x as large", 0.8, pixel_scale(0.8)),
        NamedShift("off centre by (2, 1) px", 2.0, off_centre(2, 1)),
        NamedShift("off centre by 4 px", 4.0, off_centre(4, 0)),
        NamedShift("quantized at 1/4 of the noise", 0.25, quantized(0.25)),
        NamedShift("sky background +1 sigma", 1.0, sky_offset(1.0)),
        NamedShift("rotated 90 deg", 0.0, rotate90),
        NamedShift("flipped", 0.0, flip),
    ]


def strength_sweeps() -> dict[str, list[NamedShift]]:
    """One shift at growing strength, per kind (strength 0 or 1: the images as rendered), for figures."""
    same = lambda s, rng: s  # noqa: E731
    return {
        "sky noise (x)": [NamedShift(f"sky noise x{k:g}", k, sky_noise(k) if k > 1 else same) for k in (1, 1.25, 1.5, 1.75, 2, 2.5, 3)],
        "extra blur (sigma, px)": [NamedShift(f"blur {k:g} px", k, blur(k) if k else same) for k in (0, 0.75, 1.5, 2.5, 3.5)],
        "neighbour 10 px away (flux ratio)": [NamedShift(f"neighbour x{k:g}", k, neighbour(k, 10) if k else same) for k in (0, 0.1, 0.25, 0.5, 1, 3)],
        "saturated (fraction of the peak clipped)": [NamedShift(f"saturated at {1 - k:.0%}", k, saturated(1 - k) if k else same) for k in (0, 0.3, 0.5, 0.7)],
        "masked centre (px)": [NamedShift(f"masked {k}x{k}", k, masked_centre(k) if k else same) for k in (0, 2, 4, 6)],
        "pixel scale (x SDSS)": [NamedShift(f"pixels x{k:g}", k, pixel_scale(k) if k != 1 else same) for k in (0.5, 0.6, 0.7, 0.8, 1, 1.25, 1.4, 1.5, 1.75)],
        "off centre (px)": [NamedShift(f"off centre {k} px", k, off_centre(k, 0) if k else same) for k in (0, 1, 2, 4, 6)],
        "g band misregistered (px)": [NamedShift(f"g shifted {k:g} px", k, misregistered((1,), k) if k else same)
                                      for k in (0, 0.25, 0.5, 1, 2, 3)],
    }
