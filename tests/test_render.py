"""The renderer: simulated cutouts of real galaxies — flux, size–distance, determinism, round trip."""

import filecmp

import numpy as np
import pytest

pytest.importorskip("galsim")

from cai_edge.cli import main  # noqa: E402
from cai_edge.io.inputs import iter_galaxies  # noqa: E402
from cai_edge.models.galaxy_model import GalaxyParams, angular_size_arcsec, draw_parameters  # noqa: E402
from cai_edge.models.render import draw_galaxy, render_galaxies  # noqa: E402
from cai_edge.photometry import PIXEL_SCALE_ARCSEC, nanomaggies_to_mag  # noqa: E402

MAGS = np.array([[19.2, 17.6, 16.8, 16.4, 16.1]])


def _catalog_csv(path, n=12):
    rng = np.random.default_rng(5)
    lines = ["id,mag_u,mag_g,mag_r,mag_i,mag_z,z_spec,extra"]
    for i in range(n):
        r = rng.uniform(15.5, 17.7)
        lines.append(f"g{i:03d},{r + 1.8:.3f},{r + 0.7:.3f},{r:.3f},{r - 0.35:.3f},{r - 0.6:.3f},{rng.uniform(0.03, 0.3):.4f},x")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_noise_free_stamp_flux_matches_catalog_magnitudes():
    """A galaxy that fits its 25″ stamp keeps its catalog flux; a huge one loses only what falls outside."""
    ids = [f"flux-{i}" for i in range(16)]
    mags, z = np.repeat(MAGS, 16, axis=0), np.full(16, 0.1)
    params = draw_parameters(ids, mags, z, seed=3)
    images = render_galaxies(ids, mags, z, seed=3, noise=False)
    # major-axis half-light radii small enough that the 64-px stamp holds ≥ 98% of the light
    # (de Vaucouleurs bulges have far wider wings than exponential disks)
    fits_stamp = [
        k for k, p in enumerate(params)
        if p.hlr_disk / np.sqrt(p.q_disk) <= 3.0 and p.hlr_bulge / np.sqrt(p.q_bulge) <= 1.5
    ]
    assert len(fits_stamp) >= 3
    for k in range(16):
        ratio = images[k].sum(axis=(1, 2)) / 10 ** ((22.5 - MAGS[0]) / 2.5)
        assert np.all(ratio < 1.005)
        if k in fits_stamp:
            assert np.all(np.abs(ratio - 1) < 0.02), (k, ratio)
    recovered = nanomaggies_to_mag(images[fits_stamp[0]].sum(axis=(1, 2)))
    assert np.all(np.abs(recovered - MAGS[0]) < 2.5 * np.log10(1.02))


def _half_light_radius_px(plane: np.ndarray) -> float:
    y, x = np.indices(plane.shape)
    total = plane.sum()
    cy, cx = (plane * y).sum() / total, (plane * x).sum() / total
    r = np.hypot(y - cy, x - cx).ravel()
    order = np.argsort(r)
    cumulative = np.cumsum(plane.ravel()[order])
    return float(r[order][np.searchsorted(cumulative, total / 2)])


def test_apparent_size_shrinks_with_redshift_at_fixed_physical_size():
    sizes = angular_size_arcsec(np.full(4, 6.0), np.array([0.03, 0.08, 0.15, 0.3]))
    assert np.all(np.diff(sizes) < 0)
    radii = []
    for hlr in sizes:
        params = GalaxyParams(
            flux=np.full(5, 100.0), hlr_bulge=hlr * 0.35, hlr_disk=hlr, bulge_fraction=np.full(5, 0.2),
            q_bulge=1.0, q_disk=1.0, position_angle=0.0, psf_fwhm=np.full(5, 1.3), offset=(0.0, 0.0),
            early_type=False, r50_kpc=6.0, r50_arcsec=float(hlr), abs_mag_r=-21.0,
        )
        radii.append(_half_light_radius_px(draw_galaxy(params)[2]))
    assert all(a > b for a, b in zip(radii, radii[1:]))
    assert radii[0] > 2 * radii[-1]


def test_sizes_follow_distance_across_the_real_catalog():
    from cai_edge.models.catalogs import load_catalogs

    table = load_catalogs(["astroml"])[:3000]
    mags = np.stack([table[c] for c in ("mag_u", "mag_g", "mag_r", "mag_i", "mag_z")], axis=1)
    params = draw_parameters(list(table["id"]), mags, np.asarray(table["z_spec"]), seed=0)
    z = np.asarray(table["z_spec"])
    r50_kpc = np.array([p.r50_kpc for p in params])
    r50_arcsec = np.array([p.r50_arcsec for p in params])
    abs_mag = np.array([p.abs_mag_r for p in params])
    assert 1.0 < np.median(r50_kpc) < 10.0  # kpc, as for SDSS galaxies
    assert 1.0 < np.median(r50_arcsec) < 5.0  # arcsec, as for the SDSS Main Galaxy Sample
    # at fixed luminosity, galaxies look smaller further away, by about the ratio of distances
    same_lum = (abs_mag > -21.5) & (abs_mag < -20.5)
    near, far = same_lum & (z < 0.07), same_lum & (z > 0.11)
    assert near.sum() > 50 and far.sum() > 50
    assert np.median(r50_arcsec[near]) > 1.4 * np.median(r50_arcsec[far])


def test_render_is_deterministic_per_seed_and_id(tmp_path):
    cat = _catalog_csv(tmp_path / "cat.csv")
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        assert main(["render", str(cat), "--out", str(tmp_path / name), "--seed", seed, "--workers", "1", "--quiet"]) == 0
    a, b, c = (tmp_path / n / "g003.fits" for n in "abc")
    assert filecmp.cmp(a, b, shallow=False)
    assert not filecmp.cmp(a, c, shallow=False)
    # the same galaxy rendered alone, in parallel, or in a different batch is identical
    alone = render_galaxies(["g003"], MAGS, np.array([0.1]), seed=7)
    again = render_galaxies(["x", "g003"], np.repeat(MAGS, 2, axis=0), np.array([0.2, 0.1]), seed=7)
    assert np.array_equal(alone[0], again[1])


def test_render_to_fits_folder_round_trips_through_the_reader(tmp_path):
    from astropy.io import fits

    cat = _catalog_csv(tmp_path / "cat.csv", n=12)
    assert main(["render", str(cat), "--out", str(tmp_path / "out"), "--workers", "2", "--quiet"]) == 0
    header = fits.getheader(tmp_path / "out" / "g000.fits")
    assert header["BUNIT"] == "nanomaggy" and header["PIXSCALE"] == pytest.approx(PIXEL_SCALE_ARCSEC)
    assert header["SIMULATE"] is True and header["NAXIS3"] == 5 and header["NAXIS1"] == 64
    records = list(iter_galaxies([tmp_path / "out"]))
    assert len(records) == 12 and all(r.ok for r in records)
    by_id = {r.id: r for r in records}
    assert by_id["g000"].image.shape == (5, 32, 32)
    assert by_id["g000"].magnitudes[2] == pytest.approx(header["MAG_R"], abs=1e-5)
    assert by_id["g000"].z_spec == pytest.approx(header["Z_SPEC"])
    cube = fits.getdata(tmp_path / "out" / "g000.fits")
    assert np.array_equal(by_id["g000"].image, cube[:, 16:48, 16:48])


def test_render_npz_partitions_and_compressed_fits(tmp_path):
    cat = _catalog_csv(tmp_path / "cat.csv", n=10)
    assert main(["render", str(cat), "--out", str(tmp_path / "npz"), "--format", "npz", "--workers", "1", "--quiet"]) == 0
    records = list(iter_galaxies([tmp_path / "npz"]))
    assert [r.id for r in records] == [f"g{i:03d}" for i in range(10)] and all(r.ok for r in records)
    assert main(["render", str(cat), "--out", str(tmp_path / "fz"), "--compress", "--workers", "1", "--quiet"]) == 0
    packed = {r.id: r for r in iter_galaxies([tmp_path / "fz"])}
    for r in records:  # RICE quantization costs a small fraction of the noise
        assert packed[r.id].ok
        assert np.max(np.abs(packed[r.id].image - r.image)) < 0.05


def test_examples_folder_is_small_and_readable():
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    files = sorted(examples.glob("*.fits"))
    assert 150 <= len(files) <= 250
    assert sum(f.stat().st_size for f in examples.iterdir()) < 10_000_000
    records = list(iter_galaxies([examples]))
    assert len(records) == len(files) and all(r.ok for r in records)
