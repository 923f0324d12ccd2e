"""Which magnitudes a model was trained on, and whether the input's declared magnitudes are those.

A bundle records ``preprocessing.magnitude_system`` (the reference model: ``sdss_model``, SDSS
model magnitudes as observed, not corrected for Galactic extinction). Inputs may declare their
own: a FITS header ``MAGSYS``, a catalog column ``mag_system`` or catalog metadata ``MAGSYS``.
An undeclared system is accepted (as before); a declared one that differs from the bundle's is
refused with status ``wrong_magnitude_system``, unless ``--magnitude-system`` (or the API's
``magnitude_system=``) says explicitly what the magnitudes are.
"""

from __future__ import annotations

import re

# Spellings people use, by the canonical name a bundle records.
ALIASES = {
    "sdss_model": {"sdss_model", "model", "modelmag", "sdss_modelmag", "model_mag", "raw", "raw_model", "observed"},
    "dereddened": {"dereddened", "dered", "extinction_corrected", "extinctioncorrected", "sdss_model_dereddened",
                   "dereddened_model", "deredenned"},
    "petrosian": {"petrosian", "petromag", "petro"},
    "cmodel": {"cmodel", "cmodelmag"},
    "psf": {"psf", "psfmag"},
    "fiber": {"fiber", "fibermag"},
}

# What each system is, for messages: the differences matter to a model trained on one of them.
DESCRIPTIONS = {
    "sdss_model": "SDSS model magnitudes as observed (modelMag)",
    "dereddened": "model magnitudes corrected for Galactic extinction",
    "cmodel": "SDSS cModel magnitudes (cModelMag: a mix of de Vaucouleurs and exponential fits, "
              "brighter than modelMag for extended galaxies, with other colours)",
    "petrosian": "Petrosian magnitudes (light within a radius set by the profile; colours noisier than modelMag)",
    "psf": "PSF magnitudes (a point-source fit, not a galaxy's total light)",
    "fiber": "fibre magnitudes (light within the 3 arcsec spectroscopic fibre)",
}


def describe(name: str) -> str:
    """``'cmodel' (SDSS cModel magnitudes …)``: a system's name with what it is, when known."""
    text = DESCRIPTIONS.get(canonical(name))
    return f"{name!r} ({text})" if text else repr(name)


def canonical(name: str) -> str:
    """A declared magnitude system's canonical name (its own normalised spelling when unknown)."""
    key = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    for canon, spellings in ALIASES.items():
        if key in spellings or key == canon:
            return canon
    return key


def mismatch(declared: str, model_system: str) -> str | None:
    """A message when ``declared`` (non-empty) is another system than ``model_system``, else None."""
    if not declared or canonical(declared) == canonical(model_system):
        return None
    return (f"magnitudes are declared (by the input, or by column names such as cModelMag_u) as {describe(declared)}, "
            f"but the model was trained on {describe(model_system)}; convert them, or say they already are: "
            f"--magnitude-system {model_system} (Python: magnitude_system='{model_system}')")
