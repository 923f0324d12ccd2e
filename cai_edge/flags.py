"""Row flags: what we know about a prediction that was made but should not be taken at face value.

``status`` says whether a galaxy was predicted at all; the flags say why a prediction may not be
trusted, twice: ``flag_bits``, an integer bitmask with the documented bits of ``BITS`` (the
convention of SDSS and SExtractor), and ``flag_names``, the same by name, comma-separated, or
``none``. A row is fit for science when ``usable`` is 1: status ``ok`` and no flag set.
"""

from __future__ import annotations

from typing import Iterable

FLUX_MISMATCH = "flux_mismatch"  # the cutout's band fluxes disagree with the magnitudes (units, scaling, band order)
UNCALIBRATED = "uncalibrated"  # the bundle has no uncertainty calibration: intervals are empty
OUT_OF_DOMAIN = "out_of_domain"  # the galaxy is unlike the training data
Z_OUT_OF_RANGE = "z_out_of_range"  # z_pred outside the redshifts the model was trained on
MAGNITUDE_CONFLICT = "magnitude_conflict"  # file vs --catalog magnitudes, or two headers of one galaxy, disagree
IMAGE_NOISE = "image_noise"  # the cutout's sky noise is above the training images' (cai_edge.image_domain)
IMAGE_OUT_OF_DOMAIN = "image_out_of_domain"  # a neighbour, an artefact, or clipped/masked pixels: unlike the training images
IMAGE_UNCHECKED = "image_unchecked"  # the bundle has no training-image reference: the image checks could not run

ALL = (FLUX_MISMATCH, UNCALIBRATED, OUT_OF_DOMAIN, Z_OUT_OF_RANGE, MAGNITUDE_CONFLICT, IMAGE_NOISE, IMAGE_OUT_OF_DOMAIN,
       IMAGE_UNCHECKED)
BITS = {FLUX_MISMATCH: 1, UNCALIBRATED: 2, OUT_OF_DOMAIN: 4, Z_OUT_OF_RANGE: 8, MAGNITUDE_CONFLICT: 16, IMAGE_NOISE: 32,
        IMAGE_OUT_OF_DOMAIN: 64, IMAGE_UNCHECKED: 128}  # never renumbered: files keep them
NO_FLAGS = "none"
UNKNOWN_FLAG_BIT = 1 << 30  # a flag name this version does not know (from a newer cai-edge's output)


def bits_of(names: str) -> int:
    """The bitmask of a ``flag_names`` text (``none`` or empty: 0).

    Parameters
    ----------
    names : str
        Comma-separated flag names, as the ``flag_names`` column holds them.

    Returns
    -------
    int
        The ``flag_bits`` value; a name this version does not know sets bit 2**30.
    """
    return sum(BITS.get(n, UNKNOWN_FLAG_BIT) for n in set(names.split(",")) - {"", NO_FLAGS})


def describe_bits() -> str:
    """``1=flux_mismatch 2=uncalibrated 4=out_of_domain …``: what each bit means, for file headers."""
    return " ".join(f"{bit}={name}" for name, bit in BITS.items())


def join_flags(*groups: Iterable[str]) -> str:
    """Flags as the ``flag_names`` column writes them: unique, in a fixed order, comma-separated.

    Parameters
    ----------
    *groups : iterable of str
        Flag names from each source (the record's own, the estimate's).

    Returns
    -------
    str
        The names joined (empty when none).
    """
    present = {f for group in groups for f in group if f}
    known = [f for f in ALL if f in present]
    return ",".join(known + sorted(present - set(known)))
