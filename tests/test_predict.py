"""`cai-edge predict` and the Predictor API, end to end with real FITS files and ONNX Runtime sessions."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from bundle_helpers import expected_tiny, tiny_bundle
from cai_edge.cli import main
from cai_edge.errors import InputError
from cai_edge.io.fits_cutouts import cutout_hdul
from cai_edge.io.npz_partitions import write_npz_partition
from cai_edge.results.files import read_identity, read_results
from cai_edge.results.spool import spool_dir
from cai_edge.predictor import Predictor

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MAGS = np.array([19.0, 17.5, 16.7, 16.3, 16.0], dtype=np.float32)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny-fp32")


def _cutouts(folder: Path, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cubes = {}
    for i in range(n):
        cube = rng.normal(0, 0.05, (5, 64, 64)).astype(np.float32)
        cubes[f"g{i:03d}"] = cube
        cutout_hdul(cube, MAGS + i * 0.01).writeto(folder / f"g{i:03d}.fits")
    return cubes


def _predict(*args) -> int:
    return main(["predict", *map(str, args), "--threads", "1", "--quiet"])


def test_examples_predict_with_one_row_per_galaxy(bundle, tmp_path):
    out = tmp_path / "p.csv"
    assert _predict(EXAMPLES, "--bundle", bundle, "--out", out) == 0
    table = read_results(out)
    assert len(table) == len(list(EXAMPLES.glob("*.fits"))) and set(table["status"]) == {"ok"}
    row = table[table["id"] == "astroml-1002"][0]
    cube = fits.getdata(EXAMPLES / "astroml-1002.fits", ext=1)
    header = fits.getheader(EXAMPLES / "astroml-1002.fits", ext=1)
    mags = np.array([[header[f"MAG_{b}"] for b in "UGRIZ"]], dtype=np.float32)
    assert row["z_pred"] == pytest.approx(expected_tiny(cube[None, :, 16:48, 16:48], mags)[0], abs=2e-6)
    assert row["z_spec"] == pytest.approx(header["Z_SPEC"], abs=1e-6)
    identity = read_identity(out)
    assert identity["bundle"] == "tiny-fp32" and len(identity["bundle_sha256"]) == 64


def test_predict_runs_with_torch_unimportable(bundle, tmp_path):
    out = tmp_path / "p.csv"
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from cai_edge.cli import main\n"
        f"rc = main(['predict', {str(EXAMPLES)!r}, '--bundle', {str(bundle)!r}, '--out', {str(out)!r}, '--quiet'])\n"
        "assert 'torch' not in [m for m, v in sys.modules.items() if v is not None]\n"
        "sys.exit(rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(read_results(out)) == 200


def test_every_bad_input_gets_a_row_and_exit_code_1(bundle, tmp_path):
    folder = tmp_path / "in"
    _cutouts(folder, 3)
    (folder / "corrupt.fits").write_bytes(b"SIMPLE  = nonsense" * 100)
    raw = (folder / "g000.fits").read_bytes()
    (folder / "truncated.fits").write_bytes(raw[:4000])
    nan = np.zeros((5, 64, 64), np.float32)
    nan[1, 30, 30] = np.nan
    cutout_hdul(nan, MAGS).writeto(folder / "nan.fits")
    cutout_hdul(np.zeros((4, 64, 64), np.float32), MAGS).writeto(folder / "fourband.fits")
    fits.PrimaryHDU(np.zeros((5, 64, 64), np.float32)).writeto(folder / "nomags.fits")
    cutout_hdul(np.zeros((5, 64, 64), np.float32), np.array([-9999, 17, 16, 16, 16])).writeto(folder / "sentinel.fits")
    out = tmp_path / "p.csv"
    assert _predict(folder, "--bundle", bundle, "--out", out) == 1
    table = read_results(out)
    status = dict(zip(table["id"], table["status"]))
    assert status == {
        "g000": "ok", "g001": "ok", "g002": "ok", "corrupt": "unreadable", "truncated": "unreadable",
        "nan": "nonfinite_pixels", "fourband": "bad_shape", "nomags": "missing_magnitudes", "sentinel": "missing_magnitudes",
    }
    failed = table[table["status"] != "ok"]
    assert np.all(np.isnan(failed["z_pred"])) and all(len(m) > 0 for m in failed["message"])


def test_catalog_join_and_unreadable_catalog(bundle, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        fits.PrimaryHDU(np.zeros((5, 40, 40), np.float32)).writeto(folder / f"{name}.fits")
    cat = tmp_path / "cat.csv"
    cat.write_text("id,mag_u,mag_g,mag_r,mag_i,mag_z,z_spec\na,19,18,17,16.5,16,0.1\n")
    out = tmp_path / "p.csv"
    assert _predict(folder, "--bundle", bundle, "--catalog", cat, "--out", out) == 1
    table = read_results(out)
    assert dict(zip(table["id"], table["status"])) == {"a": "ok", "b": "missing_magnitudes"}
    assert table[table["id"] == "a"]["z_pred"][0] == pytest.approx(0.001 * (19 + 18 + 17 + 16.5 + 16), abs=1e-5)
    (tmp_path / "bad.fits").write_bytes(b"junk")
    assert _predict(folder, "--bundle", bundle, "--catalog", tmp_path / "bad.fits", "--out", out) == 2


@pytest.mark.parametrize("suffix", ["csv", "ecsv", "fits", "parquet"])
def test_every_output_format_round_trips(bundle, tmp_path, suffix):
    if suffix == "parquet":
        pytest.importorskip("pyarrow")
        pytest.importorskip("pandas")
    folder = tmp_path / "in"
    _cutouts(folder, 5)
    (folder / "bad.fits").write_bytes(b"junk")
    out = tmp_path / f"p.{suffix}"
    assert _predict(folder, "--bundle", bundle, "--out", out) == 1
    table = read_results(out)
    assert sorted(table["id"]) == ["bad", "g000", "g001", "g002", "g003", "g004"]
    assert list(table.colnames) == ["id", "source", "z_pred", "z_err", "z_lo68", "z_hi68", "z_lo95", "z_hi95", "z_spec", "status", "usable", "flag_bits", "flag_names", "message"]
    fmt = {"csv": "ascii.csv", "ecsv": "ascii.ecsv", "fits": "fits", "parquet": "parquet"}[suffix]
    raw = Table.read(out, format=fmt)
    meta = {k.lower(): v for k, v in raw.meta.items()}
    if suffix in ("ecsv", "parquet"):
        assert meta["variant"] == "fp32" and len(meta["bundle_sha256"]) == 64
    if suffix == "fits":
        assert meta["variant"] == "fp32" and meta["bundle"] == "tiny-fp32"
    if suffix == "csv":  # plain CSV; the identity is in its sidecar
        assert len(raw) == 6 and read_identity(out)["variant"] == "fp32" and len(read_identity(out)["bundle_sha256"]) == 64


def test_resume_skips_finished_galaxies_and_retries_failures(bundle, tmp_path, capsys):
    folder = tmp_path / "in"
    _cutouts(folder, 6)
    (folder / "late.fits").write_bytes(b"junk")
    out = tmp_path / "p.ecsv"
    assert _predict(folder, "--bundle", bundle, "--out", out) == 1
    first = read_results(out)
    capsys.readouterr()
    # the broken file gets fixed; resume predicts only it
    cutout_hdul(np.zeros((5, 64, 64), np.float32), MAGS).writeto(folder / "late.fits", overwrite=True)
    assert _predict(folder, "--bundle", bundle, "--out", out, "--resume") == 0
    assert "1 ok, 0 failed, 6 skipped" in capsys.readouterr().err
    second = read_results(out)
    assert sorted(second["id"]) == sorted(first["id"]) and set(second["status"]) == {"ok"}
    assert np.allclose(np.sort(second[second["id"] != "late"]["z_pred"]), np.sort(first[first["id"] != "late"]["z_pred"]))


def test_resume_never_opens_inputs_already_done(bundle, tmp_path, capsys):
    """A resumed run skips a done cutout before reading it: one replaced by junk since keeps its ok row."""
    folder = tmp_path / "in"
    _cutouts(folder, 6)
    for b in "ugriz":  # a galaxy as five band files, done too
        fits.PrimaryHDU(np.zeros((64, 64), np.float32), header=fits.Header([(f"MAG_{c}", float(m)) for c, m in zip("UGRIZ", MAGS)])).writeto(folder / f"band-{b}.fits")
    out = tmp_path / "p.csv"
    assert _predict(folder, "--bundle", bundle, "--out", out) == 0
    first = read_results(out)
    capsys.readouterr()
    for name in ("g000.fits", "g003.fits", "band-r.fits"):
        (folder / name).write_bytes(b"junk: would be unreadable if it were opened")
    cutout_hdul(np.zeros((5, 64, 64), np.float32), MAGS).writeto(folder / "new.fits")
    assert _predict(folder, "--bundle", bundle, "--out", out, "--resume") == 0
    assert "1 ok, 0 failed, 7 skipped" in capsys.readouterr().err
    second = read_results(out)
    assert len(second) == 8 and set(second["status"]) == {"ok"}
    assert sorted(second["id"]) == sorted([*first["id"], "new"])
    # a new file claiming a done id is still a duplicate, though the done one was not read
    cutout_hdul(np.zeros((5, 64, 64), np.float32), MAGS).writeto(folder / "sub" / "g001.fits" if (folder / "sub").mkdir() is None else None)
    assert _predict(folder, "--bundle", bundle, "--out", out, "--resume") == 1
    third = read_results(out)
    assert sorted(third[third["id"] == "g001"]["status"]) == ["duplicate_id", "ok"]


def test_resume_after_a_crash_uses_the_spool(bundle, tmp_path, capsys):
    folder = tmp_path / "in"
    _cutouts(folder, 4)
    out = tmp_path / "p.csv"
    cmd = [sys.executable, "-m", "cai_edge", "predict", str(folder), "--bundle", str(bundle), "--out", str(out),
           "--batch-size", "2", "--threads", "1", "--quiet"]
    # killed (SIGKILL) right after its first batch reached the spool
    killed = subprocess.run(cmd, env={**os.environ, "CAI_EDGE_CRASH_AT": "spool-written"}, capture_output=True)
    assert killed.returncode == -9 and not out.exists() and spool_dir(out).is_dir()
    assert _predict(folder, "--bundle", bundle, "--out", out, "--resume") == 0
    assert "2 ok, 0 failed, 2 skipped" in capsys.readouterr().err
    table = read_results(out)
    assert sorted(table["id"]) == ["g000", "g001", "g002", "g003"] and not spool_dir(out).exists()


def test_shards_split_the_work_without_overlap(bundle, tmp_path):
    folder = tmp_path / "in"
    _cutouts(folder, 10)
    write_npz_partition(folder / "part.npz", np.zeros((3, 5, 32, 32), np.float32), np.tile(MAGS, (3, 1)), ["p0", "p1", "p2"])
    ids = []
    for i in range(3):
        out = tmp_path / f"shard{i}.csv"
        assert _predict(folder, "--bundle", bundle, "--out", out, "--shard", f"{i}/3") == 0
        ids.append(set(read_results(out)["id"]))
    assert sum(len(s) for s in ids) == 13 and set.union(*ids) == {f"g{i:03d}" for i in range(10)} | {"p0", "p1", "p2"}
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


@pytest.mark.parametrize("bad_args", [["--shard", "3/3"], ["--shard", "x"], ["--bundle", "no-such-bundle"]])
def test_usage_and_bundle_errors_exit_2(bundle, tmp_path, bad_args):
    args = ["predict", str(EXAMPLES), "--out", str(tmp_path / "p.csv"), "--quiet"]
    args += bad_args if "--bundle" in bad_args else ["--bundle", str(bundle), *bad_args]
    if "--shard" in bad_args:
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
    else:
        assert main(args) == 2


def test_corrupt_bundle_exits_2_with_a_clear_message(bundle, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "model.onnx").write_bytes(b"x" + (broken / "model.onnx").read_bytes())
    assert _predict(EXAMPLES, "--bundle", broken, "--out", tmp_path / "p.csv") == 2
    assert "refusing a modified bundle" in capsys.readouterr().err


def test_predictor_api_is_thread_safe_and_validates(bundle):
    p = Predictor(bundle, threads=1)
    rng = np.random.default_rng(3)
    images = rng.normal(0, 1, (64, 5, 48, 48)).astype(np.float32)
    mags = np.tile(MAGS, (64, 1))
    expected = expected_tiny(images[:, :, 8:40, 8:40], mags)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: p.predict(images, mags, batch_size=16), range(8)))
    for z in results:
        assert z.dtype == np.float32 and np.allclose(z, expected, atol=1e-5)
    with pytest.raises(InputError, match="images must be"):
        p.predict(images[:, :3], mags)
    images[5, 2, 24, 24] = np.inf
    with pytest.raises(InputError, match=r"rows \[5\]"):
        p.predict(images, mags)
