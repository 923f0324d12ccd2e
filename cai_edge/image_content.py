"""Whether a cutout's planes hold one galaxy, registered: band offsets and not-a-galaxy statistics.

The checks of :mod:`cai_edge.image_domain` compare a cutout's noise and shape with the training
images; these ask whether its five planes are five views of one galaxy at all:

* **band offsets** (``image_out_of_domain``): each band's shift against r, the distance between
  their light-weighted centroids in a Gaussian window of σ :data:`TAPER_PX` px about the crop
  centre, sky subtracted (sub-pixel by construction). Band files from different epochs, services
  or reprojections are misregistered by whole pixels; the training images by a fraction of one
  (the noise's own scatter). Each band's threshold is fitted on training-like images, as the other
  image statistics are. Measured against the peak of the FFT cross-correlation with r refined by
  a parabola, the centroids flag more 1 px shifts (99 % against 98 % of g and z shifted together,
  at the same false-positive rate) at half the cost.
* **centre source** (``image_out_of_domain``): the brightest 3×3 sum of the sky-subtracted g+r+i
  image within 8 px of the crop centre, in units of its noise (from the frame's noise). A cutout
  of sky, or a flat pedestal with noise, has none (S/N of a few); the threshold is the training
  images' own 0.3th percentile.
* **constant planes** (``image_out_of_domain``): a band whose central :data:`WINDOW_PX` square
  spreads by less than :data:`NEAR_CONSTANT` × the training images' sky noise in that band (a
  plane filled with one value, a missing band replaced by its mean).
* **identical planes** (``image_out_of_domain``): two bands equal up to a scale factor
  (correlation above 1 − :data:`IDENTICAL_TOLERANCE`): one band file given twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

BANDS = "ugriz"
REFERENCE_BAND = 2  # r: the offsets are measured against it
WINDOW_PX = 16  # the central WINDOW_PX × WINDOW_PX pixels hold the centroids' light
TAPER_PX = 4.0  # σ of the Gaussian window about the crop centre (keeps the noise of the outer pixels out)
CENTRE_SEARCH = 8  # px from the crop centre, as the asymmetry's centre
NEAR_CONSTANT = 0.05  # × the training images' sky noise: a plane spread less than this is constant
IDENTICAL_TOLERANCE = 1e-6  # 1 − correlation below which two planes are one plane (up to a scale)
_STEP = (np.array([[-1], [0]]), np.array([[0], [-1]]))  # (rows, columns) to the neighbour before the peak: above, left
FRAME = 5  # px: the crop's outer frame, ≥ 11 px from its centre, holds mostly sky (every image check reads its sky there)


def frame_sky(images: np.ndarray) -> np.ndarray:
    """``(N, bands)``: each plane's mean over its outer :data:`FRAME`-pixel frame (the whole plane less its inner part).

    A mean, not a median: a galaxy's wings or a neighbour in the frame raise it a little, which only
    shrinks the offsets, the centre's S/N and the window fluxes as it did on the training images; a
    median costs 20×. Computed once per batch and shared by the checks that need it.
    """
    images = np.asarray(images, dtype=np.float32)
    f = FRAME
    inner = images[..., f:-f, f:-f]
    count = images.shape[-2] * images.shape[-1] - inner.shape[-2] * inner.shape[-1]
    return (images.sum(axis=(-2, -1)) - inner.sum(axis=(-2, -1))) / np.float32(count)


def band_offsets(images: np.ndarray, centre: tuple[np.ndarray, np.ndarray] | None = None,
                 sky: np.ndarray | None = None) -> np.ndarray:
    """``(N, bands)``: each band's offset from r in pixels (r's own is 0), sub-pixel.

    The offset is between the bands' light-weighted centroids in a Gaussian window of σ
    :data:`TAPER_PX` about the galaxy's centre, sky (the frame's mean) subtracted. A constant sky
    left in only shrinks the offsets (the window is symmetric), so the sky needs no precision.

    Parameters
    ----------
    images : array_like
        ``(N, 5, H, W)`` crops, bands u,g,r,i,z.
    centre : tuple of numpy.ndarray, optional
        Each galaxy's centre pixel (rows, columns), as :func:`central_source` finds it; the crop centre when not given.
        Whole pixels: a fraction is dropped, and a centre outside the crop is taken at its edge.
    sky : numpy.ndarray, optional
        ``(N, bands)``: :func:`frame_sky` of ``images``, when already computed.

    Returns
    -------
    numpy.ndarray
        The length of each band's shift against r, at most ``WINDOW_PX / 2``.
    """
    images = np.asarray(images, dtype=np.float32)
    n, _, h, w = images.shape
    half = WINDOW_PX // 2
    cy, cx = centre if centre is not None else (np.full(n, h // 2), np.full(n, w // 2))
    # separable window weights over the whole crop, zero outside each galaxy's WINDOW_PX square: two small matrix products
    # each row of weights w and w × (pixel − centre), and their sums, looked up by the centre pixel
    (down, sy, syy), (across_w, sx, sxx) = _centroid_rows(cy, h, "down"), _centroid_rows(cx, w, "across")
    sky = (frame_sky(images) if sky is None else sky)[..., None]  # (N, bands, 1)
    across = np.matmul(images, across_w[:, None])  # (N, bands, H, 2): Σx w(x) I, Σx x w(x) I
    sums = np.matmul(down[:, None], across)  # [[Σ w I, Σ x w I], [Σ y w I, ·]]
    flux = sums[..., 0, 0] - sky[..., 0] * (sy * sx)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = (sums[..., 0, 1] - sky[..., 0] * (sy * sxx)[..., 0]) / flux
        my = (sums[..., 1, 0] - sky[..., 0] * (sx * syy)[..., 0]) / flux
        dy, dx = my - my[:, REFERENCE_BAND : REFERENCE_BAND + 1], mx - mx[:, REFERENCE_BAND : REFERENCE_BAND + 1]
    # no light in a band (flux ≤ 0) leaves its centroid undefined: as far off as the window allows, and never farther
    lit = (flux > 0) & (flux[:, REFERENCE_BAND : REFERENCE_BAND + 1] > 0)
    return np.where(lit, np.minimum(np.hypot(dy, dx), float(half)), float(half))


def _centroid_rows(centre: np.ndarray, size: int, layout: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`band_offsets`' centroid weights about each galaxy's centre pixel, looked up rather than built per batch.

    ``across``: ``(N, size, 2)`` columns w, w × (x − c); ``down``: ``(N, 2, size)`` rows w, w × (y − c) (w: the σ
    :data:`TAPER_PX` window, zero outside its :data:`WINDOW_PX` square). Also Σ w and Σ w (x − c), ``(N, 1, 1)`` each.
    """
    table, sums, moments = _centroid_table(size, layout)
    c = _pixel(centre, size)
    return table[c], sums[c][:, None, None], moments[c][:, None, None]


@lru_cache(maxsize=8)
def _centroid_table(size: int, layout: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_centroid_rows` for every centre pixel (the products and sums as a batch computed them, to the bit)."""
    weights = gaussian_rows(np.arange(size), size, TAPER_PX, WINDOW_PX // 2)  # (centre, pixel)
    offsets = (np.arange(size)[None, :] - np.arange(size)[:, None]).astype(np.float32)  # each pixel's offset from the centre
    moments = weights * offsets
    table = np.stack([weights, moments], axis=-1 if layout == "across" else 1)
    out = (table, weights.sum(axis=1), moments.sum(axis=1))
    for t in out:
        t.flags.writeable = False
    return out


def gaussian_rows(centre: np.ndarray, size: int, sigma: float, half: int | None = None) -> np.ndarray:
    """``(N, size)`` Gaussian weights of σ ``sigma`` about each galaxy's centre pixel.

    With ``half``, zero outside a ``2 half``-pixel window about the centre, kept inside the crop.
    """
    return _gaussian_table(size, float(sigma), half)[_pixel(centre, size)]


def window_rows(centre: np.ndarray, size: int, sigmas: tuple[float | None, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Several windows at once: ``(N, size, windows)`` Gaussian weights (σ in ``sigmas``; None: 1 across the crop).

    Also each window's Σ w and Σ w² along the row, ``(N, windows)`` each, looked up rather than summed per batch.
    """
    table, sums, squares = _window_stack(size, tuple(None if v is None else float(v) for v in sigmas))
    c = _pixel(centre, size)
    return table[c], sums[c], squares[c]


def _pixel(centre: np.ndarray, size: int) -> np.ndarray:
    """Centre pixels as indices, kept inside the crop (np.minimum/np.maximum: np.clip's wrapper costs ~5 µs a call)."""
    return np.minimum(np.maximum(np.asarray(centre, dtype=np.intp), 0), size - 1)


@lru_cache(maxsize=8)
def _window_stack(size: int, sigmas: tuple[float | None, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`window_rows`' tables, indexed by the centre pixel: weights, their sums and their sums of squares."""
    table = np.stack([_gaussian_table(size, s, None) if s is not None else np.ones((size, size), np.float32) for s in sigmas], axis=-1)
    sums, squares = table.sum(axis=1, dtype=np.float64), (table.astype(np.float64) ** 2).sum(axis=1)
    for t in (table, sums, squares):
        t.flags.writeable = False
    return table, sums, squares


@lru_cache(maxsize=8)
def _gaussian_table(size: int, sigma: float, half: int | None) -> np.ndarray:
    """:func:`gaussian_rows` for every centre pixel, rows indexed by the centre (a lookup beats recomputing per batch)."""
    centre = np.arange(size)[:, None]
    pixels = np.arange(size)[None, :]
    table = np.exp(-((pixels - centre).astype(np.float32) ** 2) / np.float32(2 * sigma**2))
    if half is not None:
        start = np.clip(centre - half + 1, 0, size - 2 * half)
        table = np.where((pixels >= start) & (pixels < start + 2 * half), table, np.float32(0))
    table.flags.writeable = False
    return table


@dataclass(frozen=True)
class GalaxyCentre:
    """Where each galaxy is: the brightest 3×3 sum of sky-subtracted g+r+i near the crop centre (:func:`galaxy_centre`)."""

    peak: np.ndarray  # (N,): that 3×3 sum, nanomaggies
    pixel: tuple[np.ndarray, np.ndarray]  # its pixel (rows, columns) in the crop
    doubled: tuple[np.ndarray, np.ndarray]  # twice the centre, refined to the half pixel by a parabola through its neighbours


def galaxy_centre(images: np.ndarray, sky: np.ndarray | None = None) -> GalaxyCentre:
    """The brightest 3×3 sum of sky-subtracted g+r+i within :data:`CENTRE_SEARCH` px of the crop centre, and its position.

    Found once per batch: the centre source's S/N, the band offsets, the photometric match and the
    asymmetry (about the refined centre) all measure about it.

    Parameters
    ----------
    images : array_like
        ``(N, 5, H, W)`` crops, bands u,g,r,i,z.
    sky : numpy.ndarray, optional
        ``(N, 5)``: :func:`frame_sky` of ``images``, when already computed.
    """
    images = np.asarray(images, dtype=np.float32)
    sky = frame_sky(images) if sky is None else sky
    w = images[:, 1:4].sum(axis=1) - sky[:, 1:4].sum(axis=1)[:, None, None]
    n, size = w.shape[0], w.shape[-1]
    lo, hi = size // 2 - CENTRE_SEARCH, size // 2 + CENTRE_SEARCH
    window = w[:, lo - 2 : hi + 2, lo - 2 : hi + 2]
    across = window[:, :, :-2] + window[:, :, 1:-1] + window[:, :, 2:]
    smooth = across[:, :-2] + across[:, 1:-1] + across[:, 2:]  # smooth[i, j] is the 3×3 sum about w[lo - 1 + i, lo - 1 + j]
    width = hi - lo
    where = np.argmax(smooth[:, 1:-1, 1:-1].reshape(n, -1), axis=1)
    py, px = where // width + 1, where % width + 1
    rows = np.arange(n)
    peak = smooth[rows, py, px]
    # rows and columns at once, (2, N): the neighbours above and left of the peak, then below and right
    before, after = smooth[rows, py + _STEP[0], px + _STEP[1]], smooth[rows, py - _STEP[0], px - _STEP[1]]
    curvature = 2 * peak - before - after
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curvature > 0, (after - before) / (2 * curvature), 0.0)  # the parabola's vertex
    doubled = 2 * (np.array([py, px]) + lo - 1) + np.rint(2 * np.minimum(np.maximum(shift, -0.5), 0.5)).astype(int)
    return GalaxyCentre(peak.astype(np.float64), (py + lo - 1, px + lo - 1), (doubled[0], doubled[1]))


def central_source(images: np.ndarray, band_noise: np.ndarray, sky: np.ndarray | None = None,
                   centre: GalaxyCentre | None = None) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The signal-to-noise of the brightest 3×3 sum of sky-subtracted g+r+i near the crop centre (:func:`galaxy_centre`).

    Parameters
    ----------
    images : array_like
        ``(N, 5, H, W)`` crops, bands u,g,r,i,z.
    band_noise : array_like
        ``(N, 5)``: each band's sky noise, measured in the frame.
    sky : numpy.ndarray, optional
        ``(N, 5)``: :func:`frame_sky` of ``images``, when already computed.
    centre : GalaxyCentre, optional
        :func:`galaxy_centre` of ``images``, when already found.

    Returns
    -------
    snr : numpy.ndarray
        ``(N,)``: its signal-to-noise; 0 where the image has neither source nor noise.
    centre : tuple of numpy.ndarray
        Its pixel (rows, columns) in the crop.
    """
    centre = galaxy_centre(images, sky) if centre is None else centre
    sigma = 3.0 * np.sqrt(np.sum(np.asarray(band_noise, dtype=np.float64)[:, 1:4] ** 2, axis=1))
    peak = centre.peak
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(sigma > 0, peak / sigma, np.where(peak > 0, np.inf, 0.0))
    return snr, centre.pixel


def central_gram(images: np.ndarray) -> np.ndarray:
    """``(N, bands, bands)``: products of the planes' central :data:`WINDOW_PX` squares, each less its mean (float64).

    Both :func:`constant_planes` (its diagonal: each plane's spread) and :func:`identical_planes`
    (its correlations) read it; computed once per batch.
    """
    images = np.asarray(images)
    x = _central(images).reshape(*images.shape[:2], -1).astype(np.float64)  # a copy: centred in place
    x -= x.mean(axis=-1, keepdims=True)
    return np.matmul(x, x.transpose(0, 2, 1))


def constant_planes(images: np.ndarray, reference_noise: np.ndarray, gram: np.ndarray | None = None) -> np.ndarray:
    """``(N, bands)`` bool: planes whose central :data:`WINDOW_PX` square spreads less than :data:`NEAR_CONSTANT` × the training noise.

    ``gram``: :func:`central_gram` of ``images``, when already computed.
    """
    gram = central_gram(images) if gram is None else gram
    spread = np.sqrt(np.diagonal(gram, axis1=1, axis2=2) / WINDOW_PX**2)
    return spread < NEAR_CONSTANT * np.asarray(reference_noise, dtype=np.float64)


def _central(images: np.ndarray) -> np.ndarray:
    """The central :data:`WINDOW_PX` × :data:`WINDOW_PX` pixels of ``(..., H, W)`` planes."""
    h, w, half = images.shape[-2], images.shape[-1], WINDOW_PX // 2
    return images[..., h // 2 - half : h // 2 + half, w // 2 - half : w // 2 + half]


def identical_planes(images: np.ndarray, gram: np.ndarray | None = None) -> list[tuple[tuple[int, int], ...]]:
    """Per galaxy: the pairs of bands equal up to a scale factor (correlation ≥ 1 − :data:`IDENTICAL_TOLERANCE`).

    Over the central :data:`WINDOW_PX` square: a copy is a copy everywhere. The training images' most
    alike pair of bands is 1.4e-4 from 1; a band file given twice (or scaled) is within 1e-14.
    ``gram``: :func:`central_gram` of ``images``, when already computed.
    """
    gram = central_gram(images) if gram is None else gram
    norm = np.sqrt(np.diagonal(gram, axis1=1, axis2=2))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = gram / (norm[:, :, None] * norm[:, None, :])
    same = corr >= 1 - IDENTICAL_TOLERANCE  # NaN (a constant plane, checked on its own) is never the same
    same &= np.triu(np.ones(same.shape[-2:], dtype=bool), k=1)  # each pair once, no plane with itself
    if not same.any():  # the usual case: no two planes alike
        return [()] * len(gram)
    pairs = np.argwhere(same)
    out: list[list[tuple[int, int]]] = [[] for _ in range(len(gram))]
    for g, b, c in pairs:
        out[g].append((int(b), int(c)))
    return [tuple(p) for p in out]
