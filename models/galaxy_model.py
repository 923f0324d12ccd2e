"""Physical parameters of a simulated SDSS galaxy, drawn from its real photometry and redshift.

Everything here is numpy/astropy; :mod:`cai_edge.models.render` turns these parameters into
pixels with GalSim. The images are *simulated*: real magnitudes and spectroscopic redshifts,
with invented (but realistic) shapes, sizes, PSFs and noise.

* Size: the SDSS r-band size–luminosity relations of Shen et al. (2003, MNRAS 343, 978;
  eqs. 14–16, Table 1) for early and late types, with their log-normal scatter, at the
  absolute magnitude implied by the redshift (Planck18 cosmology, approximate K-correction).
  The physical half-light radius becomes an angle through the angular-diameter distance, so
  apparent size carries real distance information.
* Profile: de Vaucouleurs bulge + exponential disk; bulge fraction from the observed colour,
  a little higher in redder bands.
* PSF: Moffat (β = 3.5) with SDSS-like per-band FWHM, scaled by a per-galaxy seeing factor.
* Noise: sky (SDSS dark-sky surface brightness per band), object shot noise and read noise, at
  SDSS-like electrons per nanomaggy; the sky itself is subtracted, as in SDSS frames.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from astropy.cosmology import Planck18

from cai_edge.photometry import PIXEL_SCALE_ARCSEC, mag_to_nanomaggies

# Per band u, g, r, i, z.
PSF_FWHM_ARCSEC = np.array([1.53, 1.44, 1.32, 1.26, 1.29])
SKY_MAG_PER_ARCSEC2 = np.array([22.1, 21.8, 20.9, 20.2, 18.9])
ELECTRONS_PER_NANOMAGGY = np.array([160.0, 1000.0, 1000.0, 770.0, 160.0])
READ_NOISE_ELECTRONS = np.array([6.0, 6.0, 6.0, 6.0, 6.0])
BULGE_COLOUR_GRADIENT = 0.12  # relative change of bulge fraction per band step, bluer → redder

# Shen et al. (2003) r band: late types (n < 2.5) and early types (n > 2.5).
_LATE = dict(alpha=0.21, beta=0.53, gamma=-1.31, m0=-20.52, sigma1=0.48, sigma2=0.25)
_EARLY = dict(a=0.65, b=-5.06, m0=-20.52, sigma1=0.48, sigma2=0.25)


@dataclass(frozen=True)
class GalaxyParams:
    flux: np.ndarray  # (5,) nanomaggies
    hlr_bulge: float  # arcsec
    hlr_disk: float  # arcsec
    bulge_fraction: np.ndarray  # (5,)
    q_bulge: float
    q_disk: float
    position_angle: float  # radians
    psf_fwhm: np.ndarray  # (5,) arcsec
    offset: tuple[float, float]  # pixels from the stamp centre
    early_type: bool
    r50_kpc: float  # whole-galaxy half-light radius, physical
    r50_arcsec: float  # the same, apparent
    abs_mag_r: float


def galaxy_rng(seed: int, galaxy_id: str) -> np.random.Generator:
    """A generator determined by (seed, id) alone: re-rendering one galaxy gives the same pixels."""
    digest = hashlib.sha256(f"{seed}:{galaxy_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def approximate_k_correction_r(z: np.ndarray, g_minus_r: np.ndarray) -> np.ndarray:
    """r-band K-correction to ±0.1 mag for z < 0.4: larger for red (early-type) spectra."""
    redness = np.clip((g_minus_r - 0.4) / 0.6, 0.0, 1.0)
    return z * (0.6 + 1.2 * redness)


def absolute_magnitude_r(mag_r: np.ndarray, z: np.ndarray, g_minus_r: np.ndarray) -> np.ndarray:
    z = np.clip(z, 1e-4, None)
    distance_modulus = Planck18.distmod(z).value
    return mag_r - distance_modulus - approximate_k_correction_r(z, g_minus_r)


def _scatter(m: np.ndarray, p: dict) -> np.ndarray:
    """σ of ln R50 (Shen et al. eq. 16)."""
    return p["sigma2"] + (p["sigma1"] - p["sigma2"]) / (1 + 10 ** (-0.8 * (m - p["m0"])))


def median_r50_kpc(abs_mag_r: np.ndarray, early: np.ndarray) -> np.ndarray:
    m = np.asarray(abs_mag_r, dtype=np.float64)
    late = -0.4 * _LATE["alpha"] * m + (_LATE["beta"] - _LATE["alpha"]) * np.log10(1 + 10 ** (-0.4 * (m - _LATE["m0"]))) + _LATE["gamma"]
    early_r = -0.4 * _EARLY["a"] * m + _EARLY["b"]
    return 10 ** np.where(early, early_r, late)


def angular_size_arcsec(r_kpc: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Physical size → angle through the Planck18 angular-diameter distance."""
    d_a_kpc = Planck18.angular_diameter_distance(np.clip(z, 1e-4, None)).to_value("kpc")
    return np.degrees(np.asarray(r_kpc) / d_a_kpc) * 3600.0


def early_type_probability(g_minus_r: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Red-sequence membership from observed g−r; the red sequence reddens with redshift."""
    ridge = 0.62 + 1.0 * np.asarray(z)
    return 1.0 / (1.0 + np.exp(-(np.asarray(g_minus_r) - ridge) / 0.06))


def draw_parameters(ids, mags: np.ndarray, z: np.ndarray, seed: int) -> list[GalaxyParams]:
    """Parameters for each galaxy; cosmology is evaluated once for the whole batch."""
    mags = np.asarray(mags, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    g_r = mags[:, 1] - mags[:, 2]
    abs_r = absolute_magnitude_r(mags[:, 2], z, g_r)
    p_early = early_type_probability(g_r, z)
    d_a_kpc = Planck18.angular_diameter_distance(np.clip(z, 1e-4, None)).to_value("kpc")
    params = []
    for k, gid in enumerate(ids):
        rng = galaxy_rng(seed, str(gid))
        early = bool(rng.random() < p_early[k])
        relation = _EARLY if early else _LATE
        r50 = float(median_r50_kpc(abs_r[k], early) * np.exp(rng.normal(0.0, _scatter(abs_r[k], relation))))
        r50_arcsec = np.degrees(r50 / d_a_kpc[k]) * 3600.0
        bt_r = float(rng.uniform(0.6, 0.9) if early else rng.uniform(0.0, 0.3))
        steps = np.arange(5) - 2
        bulge_fraction = np.clip(bt_r * (1 + BULGE_COLOUR_GRADIENT * steps), 0.0, 1.0)
        seeing = float(np.exp(rng.normal(0.0, 0.1)))
        params.append(
            GalaxyParams(
                flux=mag_to_nanomaggies(mags[k]),
                hlr_bulge=max(r50_arcsec * (0.8 if early else 0.35), 0.05),
                hlr_disk=max(r50_arcsec * (1.3 if early else 1.0), 0.05),
                bulge_fraction=bulge_fraction,
                q_bulge=float(rng.uniform(0.6, 1.0)),
                q_disk=float(rng.uniform(0.2, 1.0)),
                position_angle=float(rng.uniform(0.0, np.pi)),
                psf_fwhm=PSF_FWHM_ARCSEC * seeing,
                offset=(float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5))),
                early_type=early,
                r50_kpc=r50,
                r50_arcsec=float(r50_arcsec),
                abs_mag_r=float(abs_r[k]),
            )
        )
    return params


def add_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sky-subtracted SDSS-like noise on a ``(5,H,W)`` nanomaggy image (Gaussian limit of Poisson)."""
    pixel_area = PIXEL_SCALE_ARCSEC**2
    sky_e = mag_to_nanomaggies(SKY_MAG_PER_ARCSEC2) * pixel_area * ELECTRONS_PER_NANOMAGGY
    gain = ELECTRONS_PER_NANOMAGGY[:, None, None]
    object_e = np.clip(image, 0.0, None) * gain
    variance_e = sky_e[:, None, None] + object_e + READ_NOISE_ELECTRONS[:, None, None] ** 2
    return (image + rng.standard_normal(image.shape) * np.sqrt(variance_e) / gain).astype(np.float32)
