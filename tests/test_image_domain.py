"""The image-domain check (cai_edge.image_domain): what trips it, what must not, and its manifest record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cai_edge.flags import BITS, IMAGE_NOISE, IMAGE_OUT_OF_DOMAIN, bits_of
from cai_edge.image_domain import ImageDomain, ImageDomainError, asymmetry, border_noise, fit_image_domain, flat_runs
from cai_edge.models import image_shifts as shifts
from cai_edge.preprocessing import SDSS_NOISE_NANOMAGGIES, center_crop

NOISE = np.asarray(SDSS_NOISE_NANOMAGGIES, dtype=np.float32).reshape(1, -1, 1, 1)


def _stamps(n: int, seed: int) -> np.ndarray:
    """``n`` 64×64 elliptical exponential galaxies with SDSS-like colours, sizes, fluxes and sky noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:64, :64] - 31.5
    out = np.empty((n, 5, 64, 64), dtype=np.float32)
    for i in range(n):
        size, q, angle = rng.uniform(1.2, 4.0), rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)
        u = x * np.cos(angle) + y * np.sin(angle)
        v = -x * np.sin(angle) + y * np.cos(angle)
        profile = np.exp(-np.hypot(u, v / q) / size)
        profile /= profile.sum()
        flux = 10 ** rng.uniform(1.4, 2.2) * np.array([0.15, 0.5, 1.0, 1.4, 1.7])
        out[i] = profile[None] * flux[:, None, None] + rng.standard_normal((5, 64, 64)) * NOISE[0]
    return out


@pytest.fixture(scope="module")
def fitted():
    reference = center_crop(_stamps(2000, 0))  # thresholds at the 0.3 % and 0.075 % tails need thousands
    return fit_image_domain(reference, {"data": "synthetic", "created": "now"}, None), _stamps(300, 1)


def _flagged(domain: ImageDomain, stamps: np.ndarray, flag: str | None = None) -> float:
    flags = domain.flags(np.ascontiguousarray(center_crop(stamps)))
    return float(np.mean([bool(f) if flag is None else flag in f for f in flags]))


def test_images_like_the_reference_are_rarely_flagged_and_deeper_noise_always(fitted):
    domain, stamps = fitted
    assert _flagged(domain, stamps) <= 0.03
    rng = np.random.default_rng(2)
    assert _flagged(domain, shifts.sky_noise(3.0)(stamps, rng), IMAGE_NOISE) >= 0.95
    for k in (1.2, 2.0):  # the statistic measures the noise, whatever the galaxy light in the frame
        ratio = domain.statistics(np.ascontiguousarray(center_crop(shifts.sky_noise(k)(stamps, rng)))).noise_ratio
        assert np.median(ratio) == pytest.approx(k, rel=0.05)
    assert np.allclose(domain.band_noise, SDSS_NOISE_NANOMAGGIES, rtol=0.1)  # the frame holds sky, not galaxy


def test_rotations_flips_mis_centring_blur_and_quantisation_stay_free(fitted):
    domain, stamps = fitted
    crops = np.ascontiguousarray(center_crop(stamps))
    flipped = np.ascontiguousarray(crops[..., ::-1])
    a, b = domain.statistics(crops), domain.statistics(flipped)
    assert np.allclose(a.noise_ratio, b.noise_ratio) and np.allclose(a.asymmetry, b.asymmetry, atol=1e-4)
    base = _flagged(domain, stamps)
    rng = np.random.default_rng(3)
    for shift in (shifts.rotate90, shifts.off_centre(3, -2), shifts.blur(2.0), shifts.quantized(0.25)):
        assert _flagged(domain, shift(stamps, rng)) <= base + 0.03


def test_neighbours_cosmic_rays_masks_saturation_and_dead_columns_are_out_of_domain(fitted):
    domain, stamps = fitted
    rng = np.random.default_rng(4)
    # an as-bright neighbour: 84 % against the asymmetry threshold of 2,000 reference images (0.31); the 600 this
    # fixture once used put it at 0.27 by chance, and 90 %
    assert _flagged(domain, shifts.neighbour(1.0, 10)(stamps, rng), IMAGE_OUT_OF_DOMAIN) >= 0.8
    for shift in (shifts.cosmic_rays(3), shifts.masked_centre(4), shifts.saturated(0.3), shifts.dead_column):
        assert _flagged(domain, shift(stamps, rng), IMAGE_OUT_OF_DOMAIN) >= 0.9, shift


def test_flat_runs_are_judged_against_the_data_s_own_quantisation():
    rng = np.random.default_rng(5)
    sky = rng.standard_normal((200, 5, 32, 32)).astype(np.float32) * NOISE
    assert not flat_runs(sky).any()
    coarse = np.round(sky / NOISE) * NOISE  # a step of one sigma: equal neighbours are common by chance
    assert flat_runs(coarse).mean() <= 0.02
    masked = sky.copy()
    masked[:, 2, 10:14, 10:14] = 0.0
    assert flat_runs(masked).all()
    coarse_masked = coarse.copy()
    coarse_masked[:, 2, 8:16, 8:16] = 0.0
    assert flat_runs(coarse_masked).mean() >= 0.9


def test_statistics_of_images_with_no_light_or_no_noise():
    blank = np.zeros((3, 5, 32, 32), dtype=np.float32)
    assert np.all(border_noise(blank) == 0)
    assert np.all(np.isinf(asymmetry(blank)))  # no positive flux: nothing to be symmetric
    with pytest.raises(ImageDomainError, match="no sky noise"):
        fit_image_domain(np.zeros((150, 5, 32, 32), dtype=np.float32), {}, None)
    with pytest.raises(ImageDomainError, match="at least 100"):
        fit_image_domain(np.ones((20, 5, 32, 32), dtype=np.float32), {}, None)


def test_the_record_round_trips_and_bad_records_are_refused(fitted):
    domain = fitted[0]
    record = json.loads(json.dumps(domain.to_dict()))
    again = ImageDomain.from_dict(record)
    assert again.band_noise == domain.band_noise and again.noise_threshold == domain.noise_threshold
    assert again.fitted_on["images"] == 2000
    for key, value in (("band_noise_nanomaggies", [1.0] * 4), ("band_noise_nanomaggies", [0.0] * 5),
                       ("noise_threshold", -1.0), ("asymmetry_threshold", float("inf")), ("noise_threshold", True)):
        with pytest.raises(ImageDomainError):
            ImageDomain.from_dict({**record, key: value})
    with pytest.raises(ImageDomainError):
        ImageDomain.from_dict([1, 2])


def test_the_new_flags_have_bits_of_their_own():
    assert BITS[IMAGE_NOISE] == 32 and BITS[IMAGE_OUT_OF_DOMAIN] == 64
    assert bits_of("image_noise,image_out_of_domain,flux_mismatch") == 97
