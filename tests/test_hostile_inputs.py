"""Inputs a careless or hostile user gives: links, loops, unreadable folders, forged partitions.

Each must end as rows (one per object, ``unreadable`` where nothing can be read) and never as a
hang, a crash of the whole run or memory exhaustion.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from bundle_helpers import tiny_bundle
from cai_edge.io.discovery import find_data_files, glob_regex
from cai_edge.io.fits_cutouts import cutout_hdul
from cai_edge.io.inputs import iter_galaxies
from cai_edge.results.files import read_results
from result_helpers import MAGS, peak_rss_of, predict_process, write_partitions


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny-fp32")


def _cutout(path: Path, cube: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cutout_hdul(np.zeros((5, 48, 48), np.float32) if cube is None else cube, MAGS).writeto(path)


# 10. symlinks named by galaxy id
def test_symlinked_cutouts_take_the_id_the_user_gave(bundle, tmp_path):
    store = tmp_path / "store"
    rng = np.random.default_rng(1)
    for blob in ("blob-3f9a", "blob-77c1"):
        _cutout(store / f"{blob}.fits", rng.normal(0, 0.05, (5, 48, 48)).astype(np.float32))
    links = tmp_path / "galaxies"
    links.mkdir()
    (links / "NGC1234.fits").symlink_to(store / "blob-3f9a.fits")
    (links / "NGC1234-twin.fits").symlink_to(store / "blob-3f9a.fits")  # two links to one file: two galaxies
    (links / "UGC42.fits").symlink_to(store / "blob-77c1.fits")
    catalog = tmp_path / "cat.csv"
    catalog.write_text("id,mag_u,mag_g,mag_r,mag_i,mag_z,z_spec\n"
                       "NGC1234,19,17.5,16.7,16.3,16,0.05\nNGC1234-twin,19,17.5,16.7,16.3,16,0.05\nUGC42,20,18,17,16.6,16.3,0.1\n")
    out = tmp_path / "z.csv"
    proc = predict_process(links, "--bundle", bundle, "--catalog", catalog, "--out", out)
    assert proc.returncode == 0, proc.stderr
    table = read_results(out)
    assert sorted(table["id"]) == ["NGC1234", "NGC1234-twin", "UGC42"] and set(table["status"]) == {"ok"}
    assert all(str(links) in s for s in table["source"])


# 11. recursive glob over a symlink loop
def test_recursive_glob_over_a_symlink_loop_finishes(bundle, tmp_path):
    data = tmp_path / "dir"
    _cutout(data / "a.fits")
    _cutout(data / "sub" / "b.fits")
    (data / "loop").symlink_to(".")
    (data / "sub" / "up").symlink_to("..")
    out = tmp_path / "z.csv"
    started = time.perf_counter()
    proc = predict_process(f"{data}/**/*.fits", "--bundle", bundle, "--out", out, timeout=60)
    assert time.perf_counter() - started < 30
    assert proc.returncode == 1, proc.stderr  # the loops are reported
    table = read_results(out)
    rows = dict(zip(table["id"], table["status"]))
    assert rows["a"] == "ok" and rows["b"] == "ok"
    loops = table[table["status"] == "unreadable"]
    assert len(loops) == 2 and all("symbolic link loop" in m for m in loops["message"])


def test_glob_regex_matches_like_a_shell():
    rx = glob_regex("data/**/*.fits")
    assert rx.match("data/a.fits") and rx.match("data/x/y/a.fits") and not rx.match("data/a.fits.gz")
    assert not rx.match("other/a.fits") and not glob_regex("d/*.fit?").match("d/x/a.fits")
    assert glob_regex("d/[ab]*.npz").match("d/b1.npz") and not glob_regex("d/[!ab]*.npz").match("d/b1.npz")


# 12. CAI .pt partitions read by two threads
def test_cai_pt_partitions_read_concurrently_all_succeed(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.utils.data import TensorDataset

    for k in range(12):
        g = torch.Generator().manual_seed(k)
        dataset = TensorDataset(torch.rand(20, 5, 32, 32, generator=g) * 0.1, torch.rand(20, 5, generator=g) * 3 + 16, torch.rand(20, generator=g))
        torch.save(dataset, tmp_path / f"part-{k:02d}.pt")
    for _ in range(3):
        records = list(iter_galaxies([tmp_path], workers=2))
        assert len(records) == 240 and {r.status for r in records} == {"ok"}, {r.message for r in records if not r.ok}


# 13. an NPZ that declares far more than it holds
def _forged_npz(path: Path, shape: tuple) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    mags = io.BytesIO()
    np.save(mags, np.tile(MAGS, (shape[0] if shape[0] < 10 else 2, 1)))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", b"\x93NUMPY" + header.getvalue()[6:] + b"\0" * 1024)
        archive.writestr("magnitudes.npy", mags.getvalue())


def test_forged_npz_header_fails_alone_in_bounded_memory(bundle, tmp_path):
    write_partitions(tmp_path / "in", 2, 50)
    _forged_npz(tmp_path / "in" / "forged.npz", (10**7, 5, 32, 32))
    out = tmp_path / "z.csv"
    code = (
        "import sys\n"
        "from cai_edge.cli import main\n"
        f"rc = main(['predict', {str(tmp_path / 'in')!r}, '--bundle', {str(bundle)!r}, '--out', {str(out)!r}, '--quiet', '--threads', '1'])\n"
        "assert rc == 1, rc\n"
    )
    peak, _ = peak_rss_of(code)
    assert peak < 1024
    table = read_results(out)
    assert len(table) == 101 and list(table[table["id"] == "forged.npz"]["status"]) == ["unreadable"]
    assert "declares" in table[table["id"] == "forged.npz"]["message"][0]


def test_npz_decompression_bomb_is_refused_in_bounded_memory(tmp_path):
    path = tmp_path / "bomb.npz"
    n = 66_000  # 1.35 GB of float32 zeros once inflated, about 1.3 MB on disk
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (n, 5, 32, 32)})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("images.npy", "w", force_zip64=True) as fh:
            fh.write(b"\x93NUMPY" + header.getvalue()[6:])
            block = bytes(1 << 24)
            left = n * 5 * 32 * 32 * 4
            while left:
                fh.write(block[: min(left, len(block))])
                left -= min(left, len(block))
        archive.writestr("magnitudes.npy", b"")
    assert path.stat().st_size < 8 * 2**20
    code = (
        "from cai_edge.io.npz_partitions import read_npz_partition\n"
        f"records = list(read_npz_partition({str(path)!r}))\n"
        "assert len(records) == 1 and records[0].status == 'unreadable', records\n"
        "print(records[0].message)\n"
    )
    peak, stdout = peak_rss_of(code)
    assert peak < 1024 and "decompression bomb" in stdout


# 14. dangling and looping links, unreadable folders
def test_broken_and_looping_links_get_unreadable_rows(bundle, tmp_path):
    folder = tmp_path / "in"
    _cutout(folder / "good.fits")
    (folder / "gone.fits").symlink_to(tmp_path / "nowhere.fits")
    (folder / "ping.fits").symlink_to(folder / "pong.fits")
    (folder / "pong.fits").symlink_to(folder / "ping.fits")
    (folder / "lost-dir").symlink_to(tmp_path / "no-such-dir")
    out = tmp_path / "z.csv"
    proc = predict_process(folder, folder / "gone.fits", "--bundle", bundle, "--out", out)
    assert proc.returncode == 1, proc.stderr
    rows = {r["source"]: (r["status"], r["message"]) for r in read_results(out)}
    assert rows[str(folder / "good.fits")][0] == "ok"
    assert len(read_results(out)) == 5
    assert rows[str(folder / "gone.fits")][0] == "unreadable" and "broken symbolic link" in rows[str(folder / "gone.fits")][1]
    assert "symbolic link loop" in rows[str(folder / "ping.fits")][1]
    assert rows[str(folder / "lost-dir")][0] == "unreadable"


@contextmanager
def _as_nobody():
    """Run the block with an unprivileged effective uid (root reads every folder, whatever its mode)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_unreadable_folder_gets_an_unreadable_row():
    top = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        top.chmod(0o755)
        _cutout(top / "ok" / "a.fits")
        (top / "ok").chmod(0o755)
        (top / "ok" / "a.fits").chmod(0o644)
        (top / "locked").mkdir(mode=0o700)
        (top / "locked").chmod(0o000)
        find_data_files([top])  # imports everything it needs before privileges drop
        with _as_nobody():
            files, problems = find_data_files([top])
        assert [os.path.basename(f) for f in files] == ["a.fits"]
        assert [(p.id, p.status) for p in problems] == [("locked", "unreadable")] and "Permission" in problems[0].message
    finally:
        (top / "locked").chmod(0o700)
        shutil.rmtree(top)


def test_one_unit_that_breaks_its_reader_fails_alone(tmp_path):
    write_partitions(tmp_path, 1, 5)
    (tmp_path / "weird.npz").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: no arrays
    (tmp_path / "cut.npz").write_bytes((tmp_path / "part-000.npz").read_bytes()[:3000])
    records = list(iter_galaxies([tmp_path], workers=2))
    status = {r.id: r.status for r in records}
    assert len(records) == 7 and status["weird.npz"] in ("bad_shape", "unreadable") and status["cut.npz"] == "unreadable"


def test_cli_glob_with_no_match_and_missing_path_give_rows(bundle, tmp_path):
    out = tmp_path / "z.csv"
    proc = predict_process(tmp_path / "nothing-here", f"{tmp_path}/**/*.fits", "--bundle", bundle, "--out", out)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert list(read_results(out)["status"]) == ["unreadable", "unreadable"]
    assert sys.platform != "win32"  # the links above are POSIX links
