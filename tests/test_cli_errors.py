"""Errors a person can act on: each mistake below ends with one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from result_helpers import write_partitions


def _cli(*args, prelude: str = "") -> subprocess.CompletedProcess:
    code = prelude + "import sys\nfrom cai_edge.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)


def _assert_one_line_exit_2(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_unknown_tier_names_the_known_ones(tmp_path):
    write_partitions(tmp_path / "in", 1, 5)
    line = _assert_one_line_exit_2(_cli("compare", "--data", tmp_path / "in", "--tiers", "laptopp", "--out", tmp_path / "r"))
    assert "laptopp" in line and "edge-1t" in line and "lambda-<MB>" in line
    help_text = _cli("compare", "--help").stdout
    assert "edge-4t" in help_text and "lambda-<memory MB>" in help_text


def test_unknown_split_is_a_usage_error():
    pytest.importorskip("galsim")
    line = _assert_one_line_exit_2(_cli("evaluate", "--data", "sdss:tst"))
    assert "'tst'" in line and "sdss:test" in line


def test_render_catalog_with_other_columns_names_the_file_and_its_columns(tmp_path):
    pytest.importorskip("galsim")
    catalog = tmp_path / "odd.csv"
    catalog.write_text("name,U,G\nx,19,18\n")
    line = _assert_one_line_exit_2(_cli("render", catalog, "--out", tmp_path / "out"))
    assert str(catalog) in line and "columns found: ['name', 'U', 'G']" in line


@pytest.mark.parametrize("command", [["evaluate", "--data", "sdss:test:5"], ["render", "sdss:test", "--limit", "2", "--out", "OUT"]])
def test_a_missing_toolchain_package_gives_the_install_that_works(tmp_path, command):
    command = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    line = _assert_one_line_exit_2(_cli(*command, prelude="import sys\nsys.modules['galsim'] = None\n"))
    assert "galsim" in line and 'pip install -e ".[train]"' in line
    assert "cai-edge[" not in line  # no such package on the index


def test_checkout_install_hint_is_the_documented_one():
    assert 'pip install -e ".[' in _cli("--help").stdout
    assert Path(__file__).resolve().parents[1].joinpath("pyproject.toml").is_file()


def test_catalog_inside_the_input_folder_is_not_an_input_and_near_miss_band_names_get_a_hint(tmp_path):
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    from cai_edge.results.files import read_results

    folder = tmp_path / "in"
    folder.mkdir()
    fits.PrimaryHDU(np.zeros((5, 40, 40), np.float32)).writeto(folder / "a.fits")
    fits.PrimaryHDU(np.zeros((40, 40), np.float32)).writeto(folder / "NGC1-u.fits")  # should be NGC1_u.fits
    Table({"id": ["a"], "mag_u": [19.0], "mag_g": [17.5], "mag_r": [16.7], "mag_i": [16.3], "mag_z": [16.0]}).write(folder / "cat.fits")
    out = tmp_path / "z.csv"
    assert _cli("predict", folder, "--catalog", folder / "cat.fits", "--out", out, "--quiet").returncode == 1
    rows = {r["id"]: r for r in read_results(out)}
    assert set(rows) == {"a", "NGC1-u"} and rows["a"]["status"] == "ok"
    assert "NGC1_u.fits" in rows["NGC1-u"]["message"]


def test_a_shard_with_nothing_to_read_says_so(tmp_path):
    write_partitions(tmp_path / "in", 2, 3)
    proc = _cli("predict", tmp_path / "in", "--shard", "3/4", "--out", tmp_path / "z.csv", "--quiet")
    assert proc.returncode == 0 and "shard 3/4 has nothing to read" in proc.stderr


def test_output_rows_come_in_input_order_and_the_count_is_known_up_front(tmp_path):
    import numpy as np
    from astropy.io import fits

    from cai_edge.io.inputs import plan_inputs
    from cai_edge.results.files import read_results
    from result_helpers import MAGS

    folder = tmp_path / "in"
    folder.mkdir()
    names = []
    for i in range(12):
        name = f"g{i:02d}"
        names.append(name)
        if i % 3 == 1:
            (folder / f"{name}.fits").write_bytes(b"junk")  # failures between galaxies
        else:
            hdu = fits.PrimaryHDU(np.zeros((5, 40, 40), np.float32))
            for band, mag in zip("UGRIZ", MAGS):
                hdu.header[f"MAG_{band}"] = float(mag)
            hdu.writeto(folder / f"{name}.fits")
    write_partitions(tmp_path / "parts", 2, 7)
    assert plan_inputs([folder, tmp_path / "parts"]).object_count() == 12 + 14
    out = tmp_path / "z.csv"
    assert _cli("predict", folder, tmp_path / "parts", "--batch-size", "3", "--out", out, "--quiet").returncode == 1
    ids = list(read_results(out)["id"])
    assert ids == names + [f"p{k:03d}-{i:04d}" for k in range(2) for i in range(7)]
