"""The shifted test sets of models/image_shifts.py do what their names say (on synthetic stamps)."""

from __future__ import annotations

import numpy as np
import pytest

from cai_edge.models import image_shifts as shifts
from cai_edge.preprocessing import SDSS_NOISE_NANOMAGGIES


@pytest.fixture
def stamps():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:64, :64] - 31.5
    galaxy = np.exp(-(x**2 + y**2) / (2 * 3.0**2)).astype(np.float32)
    sky = rng.standard_normal((6, 5, 64, 64)) * np.asarray(SDSS_NOISE_NANOMAGGIES).reshape(1, -1, 1, 1)
    return (galaxy * np.arange(1, 7).reshape(-1, 1, 1, 1) + sky).astype(np.float32)


def test_every_shift_keeps_the_shape_and_leaves_its_input_alone(stamps):
    before = stamps.copy()
    for shift in shifts.standard_shifts() + shifts.not_a_galaxy_shifts():
        out = shift.apply(stamps, np.random.default_rng(1))
        assert out.shape == stamps.shape and out.dtype == np.float32 and np.isfinite(out).all(), shift.name
        assert np.array_equal(stamps, before), shift.name


def test_sky_noise_scales_the_noise_and_blur_and_neighbours_conserve_flux(stamps):
    border = (slice(None), slice(None), slice(0, 8), slice(None))
    noisy = shifts.sky_noise(3.0)(stamps, np.random.default_rng(1))
    ratio = noisy[border].std(axis=(0, 2, 3)) / stamps[border].std(axis=(0, 2, 3))
    assert np.allclose(ratio, 3.0, rtol=0.1)
    blurred = shifts.blur(2.5)(stamps, np.random.default_rng(1))
    assert np.allclose(blurred.sum(axis=(2, 3)), stamps.sum(axis=(2, 3)), rtol=1e-3, atol=1e-2)
    assert blurred[:, :, 32, 32].mean() < stamps[:, :, 32, 32].mean()  # the core is spread out
    crowded = shifts.neighbour(3.0, 10)(stamps, np.random.default_rng(1))
    assert np.allclose(crowded.sum(axis=(2, 3)), stamps.sum(axis=(2, 3)) + 3 * np.roll(stamps, 1, axis=0).sum(axis=(2, 3)), rtol=1e-4)


def test_rotations_flips_and_unit_pixel_scale_are_exact(stamps):
    rng = np.random.default_rng(1)
    out = stamps
    for _ in range(4):
        out = shifts.rotate90(out, rng)
    assert np.array_equal(out, stamps)
    assert np.array_equal(shifts.flip(shifts.flip(stamps, rng), rng), stamps)
    assert np.allclose(shifts.pixel_scale(1.0)(stamps, rng), stamps)
    larger = shifts.pixel_scale(1.25)(stamps, rng)
    assert larger[:, :, 24:40, 24:40].sum() > stamps[:, :, 24:40, 24:40].sum()  # more of the galaxy per central pixel


def test_not_a_galaxy_sets_do_what_their_names_say(stamps):
    """Issue 31's sets: a band moved by px (its centroid too), planes constant at the crop's mean, no galaxy, another's."""
    from cai_edge.preprocessing import center_crop

    rng = np.random.default_rng(1)
    yx = np.mgrid[:64, :64]
    galaxy = np.exp(-((yx[0] - 31.5) ** 2 + (yx[1] - 31.5) ** 2) / (2 * 3.0**2))
    bright = np.broadcast_to(galaxy, stamps.shape).astype(np.float32)  # noiseless: centroids to a hundredth of a pixel

    def centroid(plane):
        return np.array([(plane * c).sum() / plane.sum() for c in yx])

    for px, angle in ((1.0, 0.0), (2.5, 45.0)):
        moved = shifts.misregistered((1, 3), px, angle)(bright, rng)
        for b in range(5):
            delta = centroid(moved[0, b]) - centroid(bright[0, b])
            expected = px * np.array([np.sin(np.radians(angle)), np.cos(np.radians(angle))]) if b in (1, 3) else 0.0
            assert np.allclose(delta, expected, atol=0.02), (px, angle, b, delta)
    flat = center_crop(shifts.constant_planes(stamps, rng))
    assert np.all(flat == flat[..., :1, :1]) and np.allclose(flat[..., 0, 0], center_crop(stamps).mean(axis=(-2, -1)))
    pedestal = shifts.pedestal_without_galaxy(stamps, rng)
    crop_mean = center_crop(stamps).mean(axis=(-2, -1))[..., None, None]
    assert np.allclose((pedestal - crop_mean).std(axis=(-2, -1)), SDSS_NOISE_NANOMAGGIES, rtol=0.1)  # noise, no galaxy
    assert np.abs((pedestal - crop_mean)[..., 28:36, 28:36].mean(axis=(-2, -1))).max() < 0.1
    assert np.array_equal(shifts.other_galaxy(stamps, rng), np.roll(stamps, 1, axis=0))
