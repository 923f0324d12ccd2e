"""Results that survive the hand-off (issue #22): read back by the libraries people use next.

Every test reads a real ``cai-edge predict`` output with the consumer library itself — astropy,
pandas, pyarrow, qp — never with cai-edge's own reader.
"""

from __future__ import annotations

import json

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from cai_edge.cli import main
from cai_edge.results.rows import COLUMN_INFO, COLUMNS

FORMATS = (".csv", ".ecsv", ".fits", ".parquet")


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """One predict run per format with the shipped default: 30 example galaxies (usable or flagged), 10 far
    outside the training domain (flagged) and 3 with a NaN pixel (failed)."""
    import shutil

    from cai_edge.io.fits_cutouts import read_cutout
    from cai_edge.io.npz_partitions import write_npz_partition

    folder = tmp_path_factory.mktemp("handoff")
    (folder / "in").mkdir()
    examples = sorted(EXAMPLES.glob("*.fits"))[:30]
    for path in examples:
        shutil.copy(path, folder / "in" / path.name)
    records = [read_cutout(p) for p in examples[:13]]
    images = np.stack([r.image for r in records])
    mags = np.stack([r.magnitudes for r in records]).astype(np.float64)
    mags[:10] += 5.5  # far fainter than any training galaxy: flagged
    images[10:, 2, 16, 16] = np.nan  # failed rows
    write_npz_partition(folder / "in" / "odd.npz", images, mags, [f"odd-{i}" for i in range(13)])
    paths = {}
    for suffix in FORMATS:
        out = folder / f"z{suffix}"
        assert main(["predict", str(folder / "in"), "--out", str(out), "--quiet", "--pdf"]) == 1
        paths[suffix] = out
    return paths


def _own_count(path: Path) -> int:
    from cai_edge.results.files import read_results

    table = read_results(path)
    return int(np.sum((table["status"] == "ok") & (table["flag_bits"] == 0)))


@pytest.mark.parametrize("suffix", FORMATS)
def test_the_usable_row_test_selects_the_same_rows_in_astropy_pandas_and_pyarrow(outputs, suffix):
    """README: `usable == 1` — the same rows with astropy (every format), pandas and pyarrow, each opening the file with no arguments."""
    from astropy.table import Table

    path = outputs[suffix]
    expected = _own_count(path)
    assert 0 < expected < 43 - 3  # some rows flagged, some failed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = Table.read(path)
    picked = table[table["usable"] == 1]
    assert len(picked) == expected and set(picked["status"]) == {"ok"}
    assert all(str(n) != "" for n in table["flag_names"]) and not np.ma.is_masked(table["flag_names"])
    df = None
    if suffix == ".csv":
        import pandas as pd

        df = pd.read_csv(path)
    elif suffix == ".parquet":
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        arrow = pq.read_table(path)
        assert arrow.filter(pc.equal(arrow["usable"], 1)).num_rows == expected
        df = arrow.to_pandas()
    elif suffix == ".fits":
        df = table.to_pandas()
    if df is not None:
        assert len(df[df["usable"] == 1]) == expected and df["flag_names"].notna().all()


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_column_carries_its_unit_and_meaning(outputs, suffix):
    """Unit (dimensionless for redshifts) and a one-line description on every column, in every format."""
    import astropy.units as u
    from astropy.table import Table

    path = outputs[suffix]
    columns = (*COLUMNS, "z_quantiles")
    if suffix == ".fits":
        from astropy.io import fits

        header = fits.getheader(path, 1)
        found = {header[f"TTYPE{i}"]: (header.get(f"TUNIT{i}"), header.get(f"TCOMM{i}")) for i in range(1, header["TFIELDS"] + 1)}
        assert set(found) == set(columns)
        for name, (unit, comment) in found.items():
            assert comment == COLUMN_INFO[name][1], name
            assert (unit is not None) == (COLUMN_INFO[name][0] == "dimensionless"), name
        assert "1=flux_mismatch" in header["FLAGBITS"]
        return
    if suffix == ".csv":  # in the CSVW sidecar beside it
        import json

        sidecar = json.loads(path.with_name(path.name + "-metadata.json").read_text())
        assert sidecar["@context"] == "http://www.w3.org/ns/csvw" and sidecar["url"] == path.name
        found = {c["name"]: c for c in sidecar["tableSchema"]["columns"]}
        assert list(found) == [c for c in path.read_text().splitlines()[0].split(",")]  # the CSV's own header, in order
        for name in columns:
            assert found[name]["dc:description"] == COLUMN_INFO[name][1], name
            assert found[name].get("schema:unitText") == ("dimensionless" if COLUMN_INFO[name][0] else None), name
        assert sidecar["cai_edge"]["flag_bits"].startswith("1=flux_mismatch") and sidecar["cai_edge"]["bundle_sha256"]
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = Table.read(path)
    for name in columns:
        assert table[name].description == COLUMN_INFO[name][1], name
        if COLUMN_INFO[name][0] == "dimensionless":
            assert table[name].unit == u.dimensionless_unscaled, name
    assert "1=flux_mismatch" in table.meta["flag_bits"]


# --- items 1 and 2: a p(z) qp reads as a distribution; nothing below z = 0 ------------------------------------------

def _check_qp_ensemble(path: Path, z_spec_of: dict[str, float]) -> None:
    """qp's own view of the p(z): CDF non-decreasing in [0, 1], ∫pdf = 1 (1 %), PIT in [0, 1] and equal to
    cai-edge's (qp.metrics.pit), CRPS from qp's CDF within 2 % of cai-edge's."""
    from qp.metrics.pit import PIT

    from cai_edge.metrics import crps
    from cai_edge.pdfs import to_qp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids, ensemble = to_qp(path)
    z = np.array([z_spec_of[i] for i in ids])
    grid = np.linspace(-0.05, 1.5, 6201)
    cdf = ensemble.cdf(grid)
    assert cdf.min() >= 0 and cdf.max() <= 1 + 1e-9 and np.all(np.diff(cdf, axis=1) >= -1e-12)
    integral = np.trapezoid(ensemble.pdf(grid), grid, axis=1)
    assert np.all(np.abs(integral - 1) < 0.01), integral.min()
    pit = PIT(ensemble, z)._pit_samps
    assert pit.min() >= 0 and pit.max() <= 1
    return ids, pit, crps(ensemble.cdf(grid[grid >= 0]), grid[grid >= 0], z)


def _own_pit_crps(ids, folder_or_set) -> tuple[np.ndarray, float]:
    """cai-edge's PIT and CRPS for the same galaxies (what ``cai-edge evaluate`` reports), from the calibration itself."""
    from cai_edge.predictor import Predictor

    images, mags, z = folder_or_set
    predictor = Predictor()
    z_pred = predictor.predict_prepared(images, mags).astype(np.float64)
    calibration = predictor.bundle.calibration
    return calibration.cdf(z_pred, mags, z), calibration.score(z_pred, mags, z)["crps"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_qp_reads_the_pdf_of_every_example_galaxy_as_a_distribution(suffix, tmp_path):
    from cai_edge.io.inputs import iter_galaxies

    records = [r for r in iter_galaxies([str(EXAMPLES)]) if r.ok]
    out = tmp_path / f"z{suffix}"
    assert main(["predict", str(EXAMPLES), "--out", str(out), "--quiet", "--pdf"]) in (0, 1)
    z_spec_of = {r.id: r.z_spec for r in records}
    ids, pit, qp_crps = _check_qp_ensemble(out, z_spec_of)
    assert len(ids) == len(records) == 200
    order = {r.id: r for r in records}
    own_pit, own_crps = _own_pit_crps(ids, (np.stack([order[i].image for i in ids]), np.stack([order[i].magnitudes for i in ids]),
                                            np.array([order[i].z_spec for i in ids])))
    assert np.max(np.abs(pit - own_pit)) < 0.02 and abs(qp_crps / own_crps - 1) < 0.02
    from cai_edge.pdfs import read_quantiles

    _, _, quantiles = read_quantiles(out)
    from cai_edge.results.files import read_results

    table = read_results(out)
    assert quantiles.min() >= 0 and np.nanmin(table["z_lo95"]) >= 0 and np.nanmin(table["z_lo68"]) >= 0


def test_qp_reads_the_pdf_of_every_test_split_galaxy_as_a_distribution(tmp_path):
    """The whole test split (simulated images of real SDSS galaxies), every format."""
    pytest.importorskip("galsim")
    from cai_edge.io.npz_partitions import write_npz_partition
    from cai_edge.models.datasets import rendered_split

    data = rendered_split("test")
    write_npz_partition(tmp_path / "test.npz", data.images, data.magnitudes, list(data.ids), data.z_spec)
    z_spec_of = dict(zip(map(str, data.ids), data.z_spec))
    own_pit, own_crps = _own_pit_crps(data.ids, (data.images, data.magnitudes, data.z_spec))
    own = dict(zip(map(str, data.ids), own_pit))
    for suffix in FORMATS:
        out = tmp_path / f"z{suffix}"
        assert main(["predict", str(tmp_path / "test.npz"), "--out", str(out), "--quiet", "--pdf"]) in (0, 1)
        ids, pit, qp_crps = _check_qp_ensemble(out, z_spec_of)
        assert len(ids) == len(data.ids)
        from cai_edge.pdfs import read_quantiles

        assert read_quantiles(out)[2].min() >= 0  # the documented lower bound, z = 0
        assert np.max(np.abs(pit - np.array([own[i] for i in ids]))) < 0.02 and abs(qp_crps / own_crps - 1) < 0.02


# --- item 6: calibration reports coverage on galaxies it did not see, and warns when its cells are thin ------------

@pytest.mark.parametrize("n,warns", [(100, True), (2400, False)])
def test_calibrate_reports_held_out_coverage_and_warns_on_thin_cells(n, warns, tmp_path, capsys):
    import json

    from bundle_helpers import tiny_bundle
    from test_trust import _labelled_partition

    from galaxy_helpers import write_galaxy_partition

    bundle = tiny_bundle(tmp_path / "tiny")
    _labelled_partition(tmp_path / "cal.npz", n, seed=21)
    galaxies = write_galaxy_partition(tmp_path / "galaxies.npz", 600, seed=21)  # the image reference: galaxies, not sky
    assert main(["calibrate", str(bundle), "--data", str(tmp_path / "cal.npz"), "--domain-data", str(galaxies),
                 "--out", str(tmp_path / "cal")]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    held_out = report["held_out"]
    assert held_out["galaxies"] == n and held_out["folds"] == 5
    # 600 reference images: calibrate says its thresholds are its extremes (a warning of its own, whatever the labels)
    few = [w for w in report["warnings"] if w.startswith("the image reference rests on 600 images")]
    assert len(few) == 1 and "fit it on at least 2,000" in few[0] and few[0] in captured.err
    assert bool([w for w in report["warnings"] if w not in few]) == warns
    if warns:
        assert "thinnest calibration cell" in captured.err
    else:
        assert abs(held_out["coverage_68"] - 0.68) <= 0.03 and abs(held_out["coverage_95"] - 0.95) <= 0.03
    manifest = json.loads((tmp_path / "cal" / "manifest.json").read_text())
    assert manifest["calibration"]["fitted_on"]["held_out"] == held_out


# --- item 5: the summary says what is usable; Ctrl-C says how to go on ----------------------------------------------

def test_the_summary_counts_usable_flagged_and_failed_rows_and_predictions_per_second(tmp_path, capsys):
    from cai_edge.io.npz_partitions import write_npz_partition
    from cai_edge.io.fits_cutouts import read_cutout

    records = [read_cutout(p) for p in sorted(EXAMPLES.glob("*.fits"))[:6]]
    images = np.stack([r.image for r in records])
    images[4:, 0, 10, 10] = np.nan
    mags = np.stack([r.magnitudes for r in records]).astype(np.float64)
    mags[:2] += 5.5  # outside the training domain
    write_npz_partition(tmp_path / "p.npz", images, mags, [f"g{i}" for i in range(6)])
    assert main(["predict", str(tmp_path / "p.npz"), "--out", str(tmp_path / "z.csv"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "4 ok, 2 failed" in err and "predictions/s" in err and "galaxies/s" not in err
    assert "6 rows: 2 usable, 2 flagged, 2 not ok" in err


def test_ctrl_c_says_how_many_rows_are_kept_and_the_exact_resume_command(tmp_path):
    import signal
    import time

    from result_helpers import write_partitions

    write_partitions(tmp_path / "in", 4, 100)
    out = tmp_path / "z.csv"
    cmd = [sys.executable, "-m", "cai_edge", "predict", str(tmp_path / "in"), "--out", str(out), "--quiet", "--batch-size", "50",
           "--threads", "1"]
    # SIGINT as a terminal delivers it: a suite started in the background (nohup, &) passes SIGINT on as ignored,
    # and a Python started with it ignored never raises KeyboardInterrupt
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "CAI_EDGE_PAUSE_AT": "spool-written:30"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    spool = tmp_path / ".z.csv.spool"
    deadline = time.time() + 60
    # rows after the segment's header line (a size threshold broke once the header grew)
    while time.time() < deadline and not (spool.is_dir() and any(p.read_bytes().count(b"\n") > 1 for p in spool.iterdir())):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert "interrupted: 50 finished rows are kept" in err and f"--out {out} --quiet --batch-size 50 --threads 1 --resume" in err
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0 and "50 skipped" in resumed.stderr


# --- item 7: the command line hands results on as Unix tools do ---------------------------------------------------

def test_out_dash_writes_csv_to_stdout_and_the_summary_to_stderr(tmp_path):
    from result_helpers import write_partitions

    write_partitions(tmp_path / "in", 1, 5)
    proc = subprocess.run([sys.executable, "-m", "cai_edge", "predict", str(tmp_path / "in"), "--out", "-", "--quiet"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    import pandas as pd
    import io

    table = pd.read_csv(io.StringIO(proc.stdout))  # plain CSV: the provenance sidecar has no place on a pipe
    assert len(table) == 5 and "usable" in table.columns and "→ standard output: 5 rows:" in proc.stderr
    assert not (tmp_path / "-").exists()


def test_out_with_an_unknown_extension_says_it_writes_csv(tmp_path, capsys):
    from result_helpers import write_partitions

    write_partitions(tmp_path / "in", 1, 3)
    main(["predict", str(tmp_path / "in"), "--out", str(tmp_path / "x.txt"), "--quiet"])
    assert "writing CSV" in capsys.readouterr().err and (tmp_path / "x.txt").read_text().startswith("id,source,")
    assert '"bundle": "' in (tmp_path / "x.txt-metadata.json").read_text()


def test_an_unknown_magnitude_system_is_a_usage_error_listing_the_names(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["predict", str(tmp_path), "--magnitude-system", "foo"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "unknown magnitude system 'foo'" in err and "sdss_model" in err and "dereddened" in err


def test_predict_help_shows_the_default_out(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "default: predictions.csv" in " ".join(capsys.readouterr().out.split())


def test_train_without_torch_names_the_train_extra(tmp_path):
    code = ("import sys\nsys.modules['torch'] = None\nfrom cai_edge.cli import main\nsys.exit(main(['train', '--limit', '1']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and '".[train]"' in proc.stderr and "export" not in proc.stderr, proc.stderr


def test_evaluate_plot_without_matplotlib_is_one_clean_error(tmp_path):
    code = ("import sys\nsys.modules['matplotlib'] = None\nfrom cai_edge.cli import main\n"
            f"sys.exit(main(['evaluate', '--data', 'sdss:validation:8', '--plot', {str(tmp_path / 'p.png')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "matplotlib" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_the_fanout_summary_csv_is_a_plain_csv_with_its_provenance_in_the_sidecar(tmp_path):
    from astropy.table import Table
    from result_helpers import write_partitions

    from cai_edge.results.csv_sidecar import csv_metadata, sidecar_path

    write_partitions(tmp_path / "parts", 2, 5)
    main(["fanout", "--local", str(tmp_path / "parts"), str(tmp_path / "results"), "--workers", "1"])
    summary = tmp_path / "results" / "summary" / "predictions.csv"
    assert summary.read_text().startswith("id,source,z_pred,")
    meta = csv_metadata(summary)
    assert meta["bundle"] == "astromae-sdss-int8" and len(meta["bundle_sha256"]) == 64
    described = {c["name"]: c for c in json.loads(sidecar_path(summary).read_text())["tableSchema"]["columns"]}
    assert "usable" in described and described["usable"]["dc:description"]
    table = Table.read(summary)  # no arguments, as users open it
    assert len(table) == 10 and table["usable"].dtype.kind in "iu"


@pytest.mark.parametrize("dropped", [("usable",), ("flag_bits",), ("flag_names",), ("usable", "flag_bits"), ("usable", "flag_names")])
def test_an_output_missing_a_flag_column_reads_back_with_it_derived(outputs, tmp_path, dropped):
    """Item 9 (issue 30): a FITS output without its usable column (removed in another tool) read back with
    usable = 0 on every row. A missing usable, flag_bits or flag_names is derived from the others."""
    from astropy.table import Table

    from cai_edge.results.files import read_results

    full = read_results(outputs[".fits"])
    assert 0 < sum(full["usable"]) < sum(full["status"] == "ok")  # usable and flagged ok rows, and failed ones
    table = Table.read(outputs[".fits"])
    table.remove_columns(dropped)
    table.write(tmp_path / "edited.fits")
    edited = read_results(tmp_path / "edited.fits")
    for column in ("usable", "flag_bits", "flag_names"):
        assert list(edited[column]) == list(full[column]), column


def test_outputs_from_before_usable_read_back_with_it_derived_and_never_usable_without_checks(outputs, tmp_path):
    """Outputs of older versions: a ``flags`` column (empty when none) gives the three columns; rows from before
    flags existed had no uncertainty calibration, so an ok one is flagged uncalibrated, never usable."""
    from astropy.table import Table

    from cai_edge.results.files import read_results

    full = read_results(outputs[".fits"])
    older = Table.read(outputs[".fits"])
    older["flags"] = ["" if n == "none" else n for n in older["flag_names"]]
    older.remove_columns(["usable", "flag_bits", "flag_names"])
    older.write(tmp_path / "flags.fits")
    derived = read_results(tmp_path / "flags.fits")
    assert [list(derived[c]) for c in ("usable", "flag_bits", "flag_names")] == [list(full[c]) for c in ("usable", "flag_bits", "flag_names")]
    oldest = Table.read(outputs[".fits"])
    oldest.keep_columns(["id", "source", "z_pred", "z_spec", "status", "message"])
    oldest.write(tmp_path / "oldest.fits")
    derived = read_results(tmp_path / "oldest.fits")
    ok = derived["status"] == "ok"
    assert ok.any() and not derived["usable"].any() and set(derived["flag_names"][ok]) == {"uncalibrated"}
    assert set(derived["flag_names"][~ok]) == {"none"} and list(derived["flag_bits"][ok]) == [2] * int(ok.sum())
