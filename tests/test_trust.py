"""Rows a scientist can use: the input contract (units, band order, magnitude system), uncertainty, flags.

Real FITS cutouts (the shipped examples: simulated images of real SDSS galaxies) through the
shipped calibrated default bundle and through small real bundles, with real ONNX Runtime sessions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from bundle_helpers import expected_tiny, tiny_bundle
from cai_edge.cli import main
from cai_edge.io.npz_partitions import write_npz_partition
from cai_edge.results.files import read_results
from cai_edge.predictor import Predictor
from result_helpers import predict_process

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
N = 12


@pytest.fixture(scope="module")
def originals():
    """The first N example cutouts: (id, cube in nanomaggies, header)."""
    out = []
    for path in sorted(EXAMPLES.glob("*.fits"))[:N]:
        with fits.open(path) as hdul:
            out.append((path.name[:-5], np.array(hdul[1].data, dtype=np.float32), hdul[1].header.copy()))
    return out


def _write(folder: Path, originals, transform=lambda cube, header: (cube, header)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for gid, cube, header in originals:
        data, hdr = transform(cube.copy(), header.copy())
        fits.PrimaryHDU(data, header=hdr).writeto(folder / f"{gid}.fits")
    return folder


def _predict(folder: Path, out: Path, *extra) -> Table:
    proc = predict_process(folder, "--out", out, *extra)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    return read_results(out)


@pytest.fixture(scope="module")
def reference(originals, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    table = _predict(_write(tmp / "in", originals), tmp / "z.csv")
    assert set(table["status"]) == {"ok"}
    return {r["id"]: r for r in table}


def _set(header, **cards):
    for key, value in cards.items():
        header[key] = value
    return header


# the input contract
def test_counts_without_a_conversion_are_refused_and_with_nmgy_are_converted(originals, reference, tmp_path):
    counts = _predict(_write(tmp_path / "counts", originals, lambda c, h: (c * 200.0, _set(h, BUNIT="counts"))), tmp_path / "a.csv")
    assert set(counts["status"]) == {"wrong_units"} and all("NMGY" in m for m in counts["message"])
    converted = _predict(_write(tmp_path / "nmgy", originals, lambda c, h: (c * 200.0, _set(h, BUNIT="counts", NMGY=0.005))), tmp_path / "b.csv")
    assert set(converted["status"]) == {"ok"} and set(converted["flag_names"]) == {r["flag_names"] for r in reference.values()}
    for r in converted:
        assert r["z_pred"] == pytest.approx(reference[r["id"]]["z_pred"], abs=1e-3)  # float rounding through an int8 model
    jansky = _predict(_write(tmp_path / "jy", originals, lambda c, h: (c * 3.631e-6, _set(h, BUNIT="Jy"))), tmp_path / "c.csv")
    assert set(jansky["status"]) == {"ok"}
    odd = _predict(_write(tmp_path / "odd", originals, lambda c, h: (c, _set(h, BUNIT="erg/s/cm2/A"))), tmp_path / "d.csv")
    assert set(odd["status"]) == {"wrong_units"}


@pytest.mark.parametrize("scale", [200.0, 1000.0, 1e-3])
def test_wrongly_scaled_pixels_declared_as_nanomaggies_are_flagged(originals, tmp_path, scale):
    table = _predict(_write(tmp_path / "in", originals, lambda c, h: (c * scale, h)), tmp_path / "z.csv")
    assert set(table["status"]) == {"ok"}  # a prediction is made, and it is not trusted
    assert all("flux_mismatch" in f.split(",") for f in table["flag_names"])


def test_permuted_bands_are_flagged_unless_the_header_declares_them(originals, reference, tmp_path):
    order = [1, 2, 3, 4, 0]  # stored g,r,i,z,u
    hidden = _predict(_write(tmp_path / "hidden", originals, lambda c, h: (c[order], _set(h, BANDS="ugriz"))), tmp_path / "a.csv")
    assert sum("flux_mismatch" in f for f in hidden["flag_names"]) >= N - 1
    declared = _predict(_write(tmp_path / "declared", originals, lambda c, h: (c[order], _set(h, BANDS="g,r,i,z,u"))), tmp_path / "b.csv")
    assert set(declared["status"]) == {"ok"} and not any("flux_mismatch" in f for f in declared["flag_names"])
    for r in declared:
        assert r["z_pred"] == pytest.approx(reference[r["id"]]["z_pred"], abs=1e-3)  # float rounding through an int8 model
    bad = _predict(_write(tmp_path / "bad", originals, lambda c, h: (c, _set(h, BANDS="ugriy"))), tmp_path / "c.csv")
    assert set(bad["status"]) == {"bad_bands"}


def test_a_declared_other_magnitude_system_is_refused_unless_overridden(originals, tmp_path):
    folder = _write(tmp_path / "in", originals, lambda c, h: (c, _set(h, MAGSYS="dereddened")))
    refused = _predict(folder, tmp_path / "a.csv")
    assert set(refused["status"]) == {"wrong_magnitude_system"} and "sdss_model" in refused["message"][0]
    allowed = _predict(folder, tmp_path / "b.csv", "--magnitude-system", "sdss_model")
    assert set(allowed["status"]) == {"ok"}
    # the same declared in a catalog's metadata, and per row
    plain = _write(tmp_path / "plain", originals)
    table = Table({"id": [g for g, _, _ in originals]})
    for band in "ugriz":
        table[f"mag_{band}"] = [h[f"MAG_{band.upper()}"] for _, _, h in originals]
    table.meta["MAGSYS"] = "extinction-corrected"
    table.write(tmp_path / "cat.ecsv")
    assert set(_predict(plain, tmp_path / "c.csv", "--catalog", tmp_path / "cat.ecsv")["status"]) == {"wrong_magnitude_system"}
    table.meta.clear()
    table["mag_system"] = ["model"] * N
    table.write(tmp_path / "cat2.ecsv")
    assert set(_predict(plain, tmp_path / "d.csv", "--catalog", tmp_path / "cat2.ecsv")["status"]) == {"ok"}


# uncertainty and calibration
def test_an_uncalibrated_bundle_writes_empty_intervals_and_says_so(tmp_path):
    bundle = tiny_bundle(tmp_path / "tiny")
    rng = np.random.default_rng(0)
    mags = np.tile([19.0, 17.5, 16.7, 16.3, 16.0], (5, 1)).astype(np.float32)
    write_npz_partition(tmp_path / "in.npz", rng.normal(0, 0.01, (5, 5, 32, 32)).astype(np.float32), mags, [f"g{i}" for i in range(5)])
    table = _predict(tmp_path / "in.npz", tmp_path / "z.csv", "--bundle", bundle)
    assert set(table["status"]) == {"ok"} and all("uncalibrated" in f.split(",") for f in table["flag_names"])
    for column in ("z_err", "z_lo68", "z_hi68", "z_lo95", "z_hi95"):
        assert np.all(np.isnan(table[column]))


def _labelled_partition(path: Path, n: int, seed: int, scatter: float = 0.02) -> None:
    """Galaxies whose z_spec is what the tiny model predicts plus Gaussian scatter in (1+z)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.01, (n, 5, 32, 32)).astype(np.float32)
    mags = (np.array([19.0, 17.5, 16.7, 16.3, 16.0]) + rng.uniform(-1, 1, (n, 1)) + rng.normal(0, 0.05, (n, 5))).astype(np.float32)
    z_model = expected_tiny(images, mags)
    z_spec = z_model + (1 + z_model) * rng.normal(0, scatter, n)
    write_npz_partition(path, images, mags, [f"s{seed}-{i}" for i in range(n)], z_spec)


def _calibrated_tiny(tmp_path: Path, n_check: int, seed: int) -> tuple[Path, Path]:
    """A tiny bundle and its copy calibrated with ``cai-edge calibrate`` on 2,400 labelled galaxies; check data beside."""
    bundle = tiny_bundle(tmp_path / "tiny")
    _labelled_partition(tmp_path / "cal.npz", 2400, seed=seed)
    _labelled_partition(tmp_path / "check.npz", n_check, seed=seed + 1)
    out = tmp_path / "tiny-cal"
    assert main(["calibrate", str(bundle), "--data", str(tmp_path / "cal.npz"), "--out", str(out)]) == 0
    return bundle, out


def test_calibrate_on_labelled_galaxies_gives_intervals_that_cover(tmp_path, capsys):
    bundle, out = _calibrated_tiny(tmp_path, 1500, seed=1)
    report = json.loads(capsys.readouterr().out)
    assert report["galaxies"] == 2400
    calibrated = Predictor(out)
    assert calibrated.bundle.calibration is not None and calibrated.bundle.sha256 == Predictor(bundle).bundle.sha256
    assert calibrated.bundle.image_domain.fitted_on["data"].endswith("(the calibration galaxies)")  # no --domain-data
    table = _predict(tmp_path / "check.npz", tmp_path / "z.csv", "--bundle", out)
    assert not any("uncalibrated" in f for f in table["flag_names"])
    inside68 = np.mean((table["z_spec"] >= table["z_lo68"]) & (table["z_spec"] <= table["z_hi68"]))
    inside95 = np.mean((table["z_spec"] >= table["z_lo95"]) & (table["z_spec"] <= table["z_hi95"]))
    assert 0.65 < inside68 < 0.73 and 0.93 < inside95 < 0.975
    assert np.allclose(table["z_err"], (table["z_hi68"] - table["z_lo68"]) / 2, atol=2e-6)
    # a recalibrated bundle is another bundle for --resume
    assert main(["predict", str(tmp_path / "check.npz"), "--bundle", str(bundle), "--out", str(tmp_path / "z.csv"), "--resume", "--quiet"]) == 2


def test_calibrate_refuses_the_test_and_training_splits(tmp_path, capsys):
    bundle = tiny_bundle(tmp_path / "tiny")
    for split in ("sdss:test", "sdss:train"):
        assert main(["calibrate", str(bundle), "--data", split, "--out", str(tmp_path / "x")]) == 2
    assert "never on the training or test split" in capsys.readouterr().err


def test_shipped_default_is_calibrated_and_flags_galaxies_unlike_its_training_set(originals):
    p = Predictor()
    assert p.bundle.calibration is not None and p.bundle.domain is not None
    cubes = np.stack([c for _, c, _ in originals])
    mags = np.array([[h[f"MAG_{b}"] for b in "UGRIZ"] for _, _, h in originals])
    table = p.predict_table(cubes, mags, ids=[g for g, _, _ in originals])
    ok = table[table["usable"] == 1]
    assert len(ok) >= N - 2
    assert np.all(ok["z_lo95"] <= ok["z_lo68"]) and np.all(ok["z_lo68"] <= ok["z_pred"] + 1e-6) and np.all(ok["z_pred"] <= ok["z_hi68"] + 1e-6)
    shift = 21.0 - mags[:, 2:3]  # the same galaxies moved to r = 21, a BOSS galaxy's brightness
    faint = p.predict_table(cubes * 10 ** (-0.4 * shift[:, :, None, None]), mags + shift, ids=[g for g, _, _ in originals])
    assert all("out_of_domain" in f.split(",") for f in faint["flag_names"])


def test_shipped_default_flags_images_unlike_its_training_images(originals, tmp_path):
    """Deeper noise, a neighbour and a masked centre are flagged on the shipped examples; the examples as they are, not."""
    from cai_edge.models import image_shifts as shifts

    p = Predictor()
    assert p.bundle.image_domain is not None and p.bundle.image_domain.fitted_on["images"] >= 1000
    cubes = np.stack([c for _, c, _ in originals])
    mags = np.array([[h[f"MAG_{b}"] for b in "UGRIZ"] for _, _, h in originals])
    ids = [g for g, _, _ in originals]
    plain = p.predict_table(cubes, mags, ids=ids)
    assert not any(f in n for n in plain["flag_names"] for f in ("image_noise", "image_out_of_domain"))
    rng = np.random.default_rng(0)
    for shift, bits in ((shifts.sky_noise(3.0), 32), (shifts.masked_centre(4), 64), (shifts.neighbour(3.0, 10), 32 | 64)):
        table = p.predict_table(shift(cubes, rng), mags, ids=ids)
        assert np.all(table["flag_bits"] & bits) and not any(table["usable"])  # image_noise 32, image_out_of_domain 64
        assert np.all(table["status"] == "ok") and np.all(np.isfinite(table["z_pred"]))  # flagged, still predicted


def test_domain_flags_redshifts_outside_the_training_range():
    from cai_edge.bundle import resolve_bundle

    domain = resolve_bundle("default").domain
    lo, hi = domain.z_range
    mags = np.tile([18.9, 17.6, 16.8, 16.4, 16.1], (3, 1))
    assert [("z_out_of_range" in f) for f in domain.flags(mags, np.array([lo - 0.1, (lo + hi) / 2, hi + 0.1]))] == [True, False, True]


# p(z) per galaxy, and its hand-off to qp
@pytest.mark.parametrize("suffix", ["fits", "ecsv", "parquet", "csv"])
def test_pdf_output_holds_quantiles_that_qp_reads(originals, tmp_path, suffix):
    if suffix == "parquet":
        pytest.importorskip("pyarrow")
    folder = _write(tmp_path / "in", originals)
    (folder / "broken.fits").write_bytes(b"SIMPLE = junk")
    out = tmp_path / f"z.{suffix}"
    table = _predict(folder, out, "--pdf")
    ok = table[table["status"] == "ok"]
    from cai_edge.pdfs import read_quantiles

    ids, levels, quantiles = read_quantiles(out)
    assert len(ids) == len(ok) == N and quantiles.shape == (N, len(levels)) and levels[0] == 0 and levels[-1] == 1
    assert np.all(np.diff(quantiles, axis=1) >= 0)
    by_id = {r["id"]: r for r in ok}
    for gid, q in zip(ids, quantiles):
        assert np.interp(0.16, levels, q) == pytest.approx(by_id[gid]["z_lo68"], abs=2e-6)
        assert np.interp(0.975, levels, q) == pytest.approx(by_id[gid]["z_hi95"], abs=2e-6)
    qp = pytest.importorskip("qp")
    from cai_edge.pdfs import to_qp

    _, ensemble = to_qp(out)
    assert isinstance(ensemble, qp.Ensemble) and ensemble.npdf == N
    assert np.allclose(ensemble.cdf(np.asarray([by_id[g]["z_hi68"] for g in ids])[:, None]).ravel(), 0.84, atol=0.02)


def test_pdf_needs_a_calibrated_bundle(tmp_path):
    bundle = tiny_bundle(tmp_path / "tiny")
    _labelled_partition(tmp_path / "in.npz", 10, seed=3)
    proc = predict_process(tmp_path / "in.npz", "--bundle", bundle, "--out", tmp_path / "z.fits", "--pdf")
    assert proc.returncode == 2 and "calibrate" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_and_compare_report_coverage_pit_and_crps_of_a_calibrated_bundle(tmp_path, capsys):
    bundle, out = _calibrated_tiny(tmp_path, 1000, seed=4)
    capsys.readouterr()
    assert main(["evaluate", "--data", str(tmp_path / "check.npz"), "--bundle", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    u = report["uncertainty"]
    assert 0.62 < u["coverage_68"] < 0.74 and 0.92 < u["coverage_95"] < 0.98 and u["crps"] > 0
    assert sum(u["pit"]["counts"]) == 1000 and u["pit"]["dof"] == 9
    assert report["metrics"]["n"] == 1000 and report["model"] == "bundle tiny-fp32-calibrated"
    # an uncalibrated bundle reports no uncertainty rather than made-up numbers
    assert main(["evaluate", "--data", str(tmp_path / "check.npz"), "--bundle", str(bundle)]) == 0
    assert "uncertainty" not in json.loads(capsys.readouterr().out)
    assert main(["compare", "--data", str(tmp_path / "check.npz"), "--bundles", f"{bundle},{out}", "--tiers", "edge-1t",
                 "--out", str(tmp_path / "report")]) == 0
    rows = {r["bundle_sha256"] + str(r["coverage_68"] is None): r for r in json.loads((tmp_path / "report" / "report.json").read_text())["rows"]}
    assert len(rows) == 2 and any(r["coverage_68"] is not None and 0.6 < r["coverage_68"] < 0.76 for r in rows.values())
    assert "68 % covers" in (tmp_path / "report" / "report.md").read_text()


def test_bundle_inspect_summarises_calibration_and_domain(capsys):
    assert main(["bundle", "inspect", "default"]) == 0
    text = capsys.readouterr().out
    assert "uncertainty    calibrated on sdss:validation" in text and "domain         fitted on sdss:train" in text
    assert "image domain   fitted on sdss:train (SIMULATED images" in text and "flat pixel runs" in text
    assert "gate           pass" in text and "kept float" in text
    kept = text.split("kept float")[1].split("node(s)")[0]
    quantization = Predictor().bundle.manifest["quantization"]
    assert int(kept) == len(set(quantization["kept_float"]))
    for layer in quantization.get("matmul_integer_layers", []):  # the layers written out as MatMulInteger are named
        assert layer in text.split("MatMulInteger")[1].splitlines()[0]


def test_evaluate_plot_text_is_readable_and_axes_name_the_data(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_rgb

    from cai_edge.models.evaluate import scatter_plot

    rng = np.random.default_rng(0)
    z = rng.uniform(0.02, 0.3, 200)
    fig = scatter_plot(z + rng.normal(0, 0.01, 200), z, {"sigma_nmad": 0.01, "eta_05": 0.01, "bias": 0.0, "n": 200},
                       "bundle x", tmp_path / "p.png", "sdss:test (SIMULATED images)")
    ax = fig.axes[0]
    text = [t for t in ax.texts if "σ_NMAD" in t.get_text()][0]
    assert sum(to_rgb(text.get_color())) < 1.0 and text.get_bbox_patch() is not None
    assert "sdss:test" in ax.get_xlabel() and (tmp_path / "p.png").stat().st_size > 1000


# catalog columns under the names people have
@pytest.mark.parametrize("header, system_ok", [
    ("objID,u,g,r,i,z,redshift", True),
    ("objid,MAG_U,MAG_G,MAG_R,MAG_I,MAG_Z,z", True),
    ("objID,modelMag_u,modelMag_g,modelMag_r,modelMag_i,modelMag_z,z", True),
    ("objID,dered_u,dered_g,dered_r,dered_i,dered_z,z", False),  # extinction-corrected: not the model's magnitudes
])
def test_catalog_column_aliases_map_and_imply_their_magnitude_system(originals, tmp_path, header, system_ok):
    plain = _write(tmp_path / "in", originals, lambda c, h: (c, _set_mags(h)))
    rows = "".join(f"{g}," + ",".join(str(h[f'MAG_{b}']) for b in "UGRIZ") + ",0.1\n" for g, _, h in originals)
    (tmp_path / "cat.csv").write_text(header + "\n" + rows)
    table = _predict(plain, tmp_path / "z.csv", "--catalog", tmp_path / "cat.csv")
    assert set(table["status"]) == ({"ok"} if system_ok else {"wrong_magnitude_system"})
    assert np.allclose(table["z_spec"], 0.1)


def _set_mags(header):
    for band in "UGRIZ":  # magnitudes come from the catalog only
        header.remove(f"MAG_{band}", ignore_missing=True)
    return header


def test_columns_maps_anything_else_and_a_bad_map_names_what_it_found(originals, tmp_path):
    plain = _write(tmp_path / "in", originals, lambda c, h: (c, _set_mags(h)))
    rows = "".join(f"{g}," + ",".join(str(h[f'MAG_{b}']) for b in "UGRIZ") + ",0.2\n" for g, _, h in originals)
    (tmp_path / "cat.csv").write_text("GAL,MU,MG,MR,MI,MZ,ZFINAL\n" + rows)
    mapping = "id=GAL,mag_u=MU,mag_g=MG,mag_r=MR,mag_i=MI,mag_z=MZ,z_spec=ZFINAL"
    table = _predict(plain, tmp_path / "a.csv", "--catalog", tmp_path / "cat.csv", "--columns", mapping)
    assert set(table["status"]) == {"ok"} and np.allclose(table["z_spec"], 0.2)
    proc = predict_process(plain, "--catalog", tmp_path / "cat.csv", "--out", tmp_path / "b.csv")
    assert proc.returncode == 2 and "cat.csv" in proc.stderr and "'GAL'" in proc.stderr and "--columns" in proc.stderr


@pytest.mark.parametrize("domain", ["partition", "sdss:train"])
def test_calibrate_fits_the_domain_on_the_galaxies_domain_data_names(tmp_path, capsys, domain):
    bundle = tiny_bundle(tmp_path / "tiny")
    _labelled_partition(tmp_path / "cal.npz", 2400, seed=3)
    _labelled_partition(tmp_path / "train.npz", 600, seed=4)
    spec = str(tmp_path / "train.npz") if domain == "partition" else domain
    out = tmp_path / "named"
    assert main(["calibrate", str(bundle), "--data", str(tmp_path / "cal.npz"), "--domain-data", spec,
                 "--name", "tiny-int8", "--out", str(out)]) == 0
    written = Predictor(out).bundle
    assert written.name == "tiny-int8" and written.domain.fitted_on["data"].startswith(spec)
    images = written.image_domain  # the image reference comes from the same galaxies' images
    assert images.fitted_on["data"].startswith(spec) and images.fitted_on["images"] == (600 if domain == "partition" else 5000)
    capsys.readouterr()
    assert main(["bundle", "inspect", str(out)]) == 0
    assert f"image domain   fitted on {spec}" in capsys.readouterr().out
    if domain == "sdss:train":  # the bundled catalogs' training split: tens of thousands of galaxies, z up to ~0.4
        assert written.domain.z_range[1] > 0.3
    else:
        assert written.domain.z_range[1] < 1.0
