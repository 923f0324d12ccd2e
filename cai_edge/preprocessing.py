"""What a galaxy's pixels and magnitudes go through before the network: the one definition.

Training, calibration, the runtime predictor and the Lambda handler all call
:func:`prepare_image` and :func:`prepare_magnitudes`; bundles record :class:`Preprocessing`
in their manifest so a model is never fed data prepared another way.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cai_edge.errors import InputError
from cai_edge.io.status import BAD_MAGNITUDES, BAD_SHAPE, MISSING_MAGNITUDES, NONFINITE_PIXELS
from cai_edge.photometry import BANDS, MAGNITUDE_RANGE, MISSING_MAGNITUDE_SENTINELS

_SENTINELS = frozenset(MISSING_MAGNITUDE_SENTINELS)

CROP = 32
IMAGE_TRANSFORMS = ("none", "asinh")
IMAGE_UNITS = ("nanomaggy",)
# Per-band sky noise (nanomaggies per pixel) of a typical SDSS frame: the asinh softening.
SDSS_NOISE_NANOMAGGIES = (0.05, 0.02, 0.03, 0.04, 0.15)


@dataclass(frozen=True)
class Preprocessing:
    """The input contract of a model, as recorded in a bundle manifest.

    Images: ``band_order`` cubes in ``image_units``, centre-cropped to ``crop``×``crop``, then
    ``image_transform``: ``"none"`` (as the CAI code) or ``"asinh"``: ``asinh(x / softening_b)``
    per band, which keeps faint wings and bright cores in one numeric range.
    Magnitudes: ``magnitude_system`` magnitudes, fed to the network as
    ``(m - magnitude_offset) / magnitude_scale`` (offset 0, scale 1 = raw, as in the CAI code).
    The defaults are the CAI model's contract; a bundle's manifest says which one it uses.
    """

    band_order: tuple[str, ...] = BANDS
    crop: int = CROP
    image_units: str = "nanomaggy"
    image_transform: str = "none"
    image_softening: tuple[float, ...] = field(default=(1.0,) * len(BANDS))
    magnitude_system: str = "sdss_model"
    magnitude_offset: tuple[float, ...] = field(default=(0.0,) * len(BANDS))
    magnitude_scale: tuple[float, ...] = field(default=(1.0,) * len(BANDS))

    def __post_init__(self) -> None:
        if self.image_transform not in IMAGE_TRANSFORMS:
            raise ValueError(f"unknown image_transform {self.image_transform!r}; known: {IMAGE_TRANSFORMS}")
        if tuple(self.band_order) != BANDS:
            raise ValueError(f"band order {self.band_order} is not supported; cai-edge uses {BANDS}")
        if isinstance(self.crop, bool) or self.crop != CROP:
            raise ValueError(f"crop {self.crop!r} is not supported; the network takes {CROP}×{CROP} pixels")
        if self.image_units not in IMAGE_UNITS:
            raise ValueError(f"image_units {self.image_units!r} is not supported; known: {IMAGE_UNITS}")
        if not isinstance(self.magnitude_system, str) or not self.magnitude_system:
            raise ValueError("magnitude_system must name the magnitudes the model was trained on")
        _check_vector("image_softening", self.image_softening, positive=True)
        _check_vector("magnitude_offset", self.magnitude_offset, positive=False)
        _check_vector("magnitude_scale", self.magnitude_scale, positive=True)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Any) -> "Preprocessing":
        """The preprocessing recorded in a manifest: every field required, nothing unknown, values checked.

        A missing field must not fall back to a default (the model would be fed data prepared
        another way), and an unknown one names a step this runtime would not perform.
        """
        if not isinstance(data, dict):
            raise ValueError(f"preprocessing must be an object, got {type(data).__name__}")
        fields = set(cls.__dataclass_fields__)
        missing, unknown = sorted(fields - set(data)), sorted(set(data) - fields)
        if missing:
            raise ValueError(f"preprocessing lacks {', '.join(missing)}")
        if unknown:
            raise ValueError(f"preprocessing has fields this cai-edge does not know: {', '.join(map(str, unknown))}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    def transform_images(self, images: np.ndarray) -> np.ndarray:
        """``(N,5,32,32)`` prepared nanomaggy images → the network's image input, float32."""
        images = np.asarray(images, dtype=np.float32)
        if self.image_transform == "asinh":
            softening = np.asarray(self.image_softening, dtype=np.float32).reshape(1, -1, 1, 1)
            out = np.divide(images, softening)  # float32; then transformed in place: one batch-sized array, not three
            return np.arcsinh(out, out=out)
        return images

    def network_inputs(self, images: np.ndarray, magnitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prepared images and magnitudes of a batch → ``(image, magnitude)`` exactly as the network takes them."""
        return self.transform_images(images), self.normalize_magnitudes(magnitudes)

    def normalize_magnitudes(self, magnitudes: np.ndarray) -> np.ndarray:
        """``(N,5)`` validated magnitudes → the network's magnitude input, float32."""
        offset = np.asarray(self.magnitude_offset, dtype=np.float32)
        scale = np.asarray(self.magnitude_scale, dtype=np.float32)
        return ((np.asarray(magnitudes, dtype=np.float32) - offset) / scale).astype(np.float32)


def _check_vector(name: str, values: Any, positive: bool) -> None:
    if not isinstance(values, tuple) or len(values) != len(BANDS):
        raise ValueError(f"{name} must hold {len(BANDS)} numbers (one per band), got {values!r:.80}")
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or not math.isfinite(v) or (positive and v <= 0):
            raise ValueError(f"{name} must hold {len(BANDS)} finite{' positive' if positive else ''} numbers, got {list(values)}")


def center_crop(cube: np.ndarray, size: int = CROP) -> np.ndarray:
    """The central ``size×size`` pixels of a ``(bands, H, W)`` cube (the lower-left centre for even excess)."""
    h, w = cube.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return cube[..., top : top + size, left : left + size]


def crop_note(shape: tuple[int, ...], size: int = CROP) -> str:
    """A note for a cutout whose centre falls between pixels (odd excess over ``size``), else ``""``.

    The crop keeps :func:`center_crop`'s rule, the one the model was trained with; the note says the
    galaxy then sits half a pixel off the crop's centre (|Δz| of a few 0.001 on the shipped model).
    """
    h, w = shape[-2:]
    if (h - size) % 2 == 0 and (w - size) % 2 == 0:
        return ""
    return (f"the cutout is {h}×{w} px: with an odd number of pixels beyond {size}, the central {size}×{size} "
            f"is half a pixel off the cutout's centre; cut {h + (h - size) % 2}×{w + (w - size) % 2} px cutouts for exact centring")


def prepare_image(cube: np.ndarray, n_bands: int = len(BANDS), size: int = CROP) -> np.ndarray:
    """A ``(5, H≥32, W≥32)`` cutout → the network's ``(5, 32, 32)`` float32 input, or :class:`InputError`."""
    cube = np.asarray(cube)
    if cube.ndim == 3 and cube.shape[0] != n_bands:
        raise InputError(BAD_SHAPE, f"the cube has {cube.shape[0]} band plane(s), shape {cube.shape}; this model needs all five SDSS "
                                    f"bands {','.join(BANDS)} (a g,r,z or g,r,i cutout, as the Legacy Survey and Pan-STARRS give, "
                                    "cannot be used: get u,g,r,i,z cutouts, e.g. from the SDSS cutout service)")
    if cube.ndim != 3:
        raise InputError(BAD_SHAPE, f"expected a ({n_bands}, H, W) cube in {','.join(BANDS)} order, got shape {cube.shape}")
    if cube.shape[1] < size or cube.shape[2] < size:
        raise InputError(BAD_SHAPE, f"cutout is {cube.shape[1]}×{cube.shape[2]} px; at least {size}×{size} needed")
    if not np.issubdtype(cube.dtype, np.number) or np.issubdtype(cube.dtype, np.complexfloating):
        raise InputError(BAD_SHAPE, f"pixel values must be real numbers, got dtype {cube.dtype}")
    crop = np.ascontiguousarray(center_crop(cube, size), dtype=np.float32)
    bad = ~np.isfinite(crop)
    if bad.any():
        raise InputError(NONFINITE_PIXELS, f"{int(bad.sum())} NaN/inf pixels in the central {size}×{size}")
    return crop


def prepare_magnitudes(values: Any, n_bands: int = len(BANDS)) -> np.ndarray:
    """Five magnitudes → float32 ``(5,)``; missing, sentinel or implausible values raise :class:`InputError`."""
    if values is None:
        raise InputError(MISSING_MAGNITUDES, "no magnitudes (no MAG_U…MAG_Z header keys and no catalog row)")
    try:
        mags = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(BAD_MAGNITUDES, f"magnitudes are not numbers: {values!r:.80}") from None
    if mags.size != n_bands:
        raise InputError(BAD_MAGNITUDES, f"expected {n_bands} magnitudes, got {mags.size}")
    # Five numbers: a Python loop is ~20× faster than np.isin here, and this runs once per galaxy.
    values_list = mags.tolist()
    missing = [not math.isfinite(m) or m in _SENTINELS for m in values_list]
    if any(missing):
        bands = ",".join(b for b, m in zip(BANDS, missing) if m)
        raise InputError(MISSING_MAGNITUDES, f"missing magnitude in band(s) {bands}")
    lo, hi = MAGNITUDE_RANGE
    if not all(lo <= m <= hi for m in values_list):
        raise InputError(BAD_MAGNITUDES, f"magnitudes {np.round(mags, 3).tolist()} outside the plausible range {lo}–{hi}")
    return mags.astype(np.float32)
