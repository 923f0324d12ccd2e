"""Issue 31: band registration and not-a-galaxy checks (cai_edge.image_content) on crafted images and real FITS files."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from cai_edge.image_content import TAPER_PX, band_offsets, central_source, constant_planes, identical_planes
from cai_edge.models import image_shifts as shifts
from cai_edge.preprocessing import SDSS_NOISE_NANOMAGGIES
from result_helpers import predict_process
from cai_edge.results.files import read_results
from test_trust import EXAMPLES

NOISE = np.asarray(SDSS_NOISE_NANOMAGGIES, dtype=np.float32)
GALAXY_SIGMA = 1.5  # px


def _gaussian(n: int = 4, shift: dict[int, tuple[float, float]] | None = None, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """``(n, 5, 32, 32)`` round Gaussian galaxies of σ GALAXY_SIGMA at the crop centre (band b moved by ``shift[b]``)."""
    y, x = np.mgrid[:32, :32].astype(np.float64)
    out = np.empty((n, 5, 32, 32), dtype=np.float32)
    for b in range(5):
        dy, dx = (shift or {}).get(b, (0.0, 0.0))
        out[:, b] = 100 * np.exp(-((y - 16 - dy) ** 2 + (x - 16 - dx) ** 2) / (2 * GALAXY_SIGMA**2))
    rng = np.random.default_rng(seed)
    return out + noise * rng.standard_normal(out.shape).astype(np.float32) * NOISE[None, :, None, None]


@pytest.mark.parametrize("px", [0.5, 1.0, 2.0, 3.0])
def test_a_band_s_offset_is_measured_as_the_windowed_centroid_predicts(px):
    offsets = band_offsets(_gaussian(shift={1: (0.0, px)}), (np.full(4, 16), np.full(4, 16)))
    # a Gaussian of σ_g moved by s, seen through a Gaussian window of σ_w: its centroid moves s σ_w² / (σ_w² + σ_g²)
    expected = px * TAPER_PX**2 / (TAPER_PX**2 + GALAXY_SIGMA**2)
    assert offsets[:, 1] == pytest.approx(expected, rel=0.03)
    assert np.all(offsets[:, [0, 2, 3, 4]] < 1e-3)


def test_offsets_are_against_r_so_moving_r_moves_every_band():
    offsets = band_offsets(_gaussian(shift={2: (2.0, 0.0)}, noise=1.0))
    assert np.all(offsets[:, 2] == 0) and np.all(offsets[:, [0, 1, 3, 4]] > 1.2)


def test_a_band_without_light_reads_as_far_off_as_the_window_allows():
    images = _gaussian()
    images[:, 4] = 0.0
    assert np.all(band_offsets(images)[:, 4] >= 8)


def test_the_centre_source_and_its_position():
    galaxy = _gaussian(noise=1.0, shift={b: (2.0, -3.0) for b in range(5)})
    noise = np.tile(NOISE, (4, 1))
    snr, (cy, cx) = central_source(galaxy, noise)
    assert np.all(snr > 100) and np.all(cy == 18) and np.all(cx == 13)
    rng = np.random.default_rng(1)
    sky = rng.standard_normal((200, 5, 32, 32)).astype(np.float32) * NOISE[None, :, None, None]
    assert np.all(central_source(sky, np.tile(NOISE, (200, 1)))[0] < 6)  # the best 3×3 of pure noise: a few σ
    pedestal = sky + 5.0  # a flat pedestal is sky, however bright
    assert np.all(central_source(pedestal, np.tile(NOISE, (200, 1)))[0] < 6)
    flat = np.full((3, 5, 32, 32), 0.3, dtype=np.float32)  # no source and no noise
    assert np.all(central_source(flat, np.zeros((3, 5)))[0] == 0)


def test_constant_and_identical_planes():
    images = _gaussian(noise=1.0)
    assert not constant_planes(images, NOISE).any() and all(p == () for p in identical_planes(images))
    images[0, 3] = 0.7
    images[1, 0] = 0.05 + 0.001 * np.random.default_rng(2).standard_normal((32, 32))  # near-constant: 2 % of u's noise
    images[2, 2] = images[2, 1] * 1.7  # the g file given again as r, scaled
    images[3, 4] = images[3, 0]
    constant = constant_planes(images, NOISE)
    assert constant[0].tolist() == [False, False, False, True, False] and constant[1].tolist() == [True] + [False] * 4
    assert not constant[2:].any()
    assert identical_planes(images) == [(), (), ((1, 2),), ((0, 4),)]


@pytest.fixture(scope="module")
def example_cubes():
    cubes, headers = [], []
    for path in sorted(EXAMPLES.glob("*.fits"))[:12]:
        with fits.open(path) as hdul:
            cubes.append(np.array(hdul[1].data, dtype=np.float32))
            headers.append(hdul[1].header.copy())
    return np.stack(cubes), headers


CASES = {
    "g shifted 2 px": (shifts.misregistered((1,), 2.0), "bands misregistered against r: g "),
    "i and z shifted 2 px diagonally": (shifts.misregistered((3, 4), 2.0, 45.0), "px (threshold"),
    "constant planes": (shifts.constant_planes, "constant plane(s) u, g, r, i, z"),
    "pedestal, no galaxy": (shifts.pedestal_without_galaxy, "no galaxy-like source at the centre"),
    "g given as r": (lambda s, rng: np.concatenate([s[:, :2], s[:, 1:2], s[:, 3:]], axis=1), "identical planes g=r"),
}


def test_misregistered_constant_and_empty_cutouts_are_not_usable_through_predict(example_cubes, tmp_path):
    """Real FITS files through ``cai-edge predict`` and the shipped default: never usable, and the message says why."""
    cubes, headers = example_cubes
    rng = np.random.default_rng(0)
    for name, (shift, note) in CASES.items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        for k, (cube, header) in enumerate(zip(shift(cubes, rng), headers)):
            fits.PrimaryHDU(np.ascontiguousarray(cube, dtype=np.float32), header=header).writeto(folder / f"g{k}.fits")
        proc = predict_process(folder, "--out", tmp_path / f"{folder.name}.csv")
        assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
        table = read_results(tmp_path / f"{folder.name}.csv")
        assert len(table) == 12 and set(table["status"]) == {"ok"}, name
        assert not any(table["usable"]) and all("image_out_of_domain" in f for f in table["flag_names"]), name
        assert all(note in m for m in table["message"]), (name, list(table["message"]))
    plain = tmp_path / "plain"
    plain.mkdir()
    for k, (cube, header) in enumerate(zip(cubes, headers)):
        fits.PrimaryHDU(cube, header=header).writeto(plain / f"g{k}.fits")
    assert predict_process(plain, "--out", tmp_path / "plain.csv").returncode == 0
    table = read_results(tmp_path / "plain.csv")
    assert not any("image" in f for f in table["flag_names"]) and all(m == "" for m in table["message"])


def test_bundle_inspect_shows_the_registration_and_centre_thresholds(capsys):
    from cai_edge.cli import main

    assert main(["bundle", "inspect", "default"]) == 0
    out = capsys.readouterr().out
    assert "band offsets against r above u 2.02 g 0.23 i 0.29 z 0.88 px; centre source S/N below 27.5" in out
    assert ("pixels against the magnitudes: colours beyond 4.9σ, flux level outside -9.8 to +5.2 times its spread for the profile "
            "(-0.22 to +0.11 dex for a typical one)") in out


def test_calibrate_warns_when_registration_or_centre_thresholds_are_far_looser_than_the_training_images():
    from dataclasses import replace

    from cai_edge.bundle import resolve_bundle
    from cai_edge.plausibility import image_reference_warnings

    training = resolve_bundle("default").image_domain
    assert image_reference_warnings(training, training) == []
    loose = replace(training, offset_threshold_px=(2.0, 1.0, 0.3, 0.9), centre_snr_threshold=5.0)
    warnings = image_reference_warnings(loose, training)
    assert any("band-offset thresholds are over 3x" in w and "g 1.00 px against 0.23" in w for w in warnings), warnings
    assert any("centre-source S/N threshold 5.0" in w for w in warnings), warnings
    older = replace(training, offset_threshold_px=None, centre_snr_threshold=None)
    assert image_reference_warnings(loose, older) == []  # nothing to compare with
