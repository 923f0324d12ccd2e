"""Never destroy what cai-edge did not create (README, "Safety"): bundle folders, links, devices,
odd files and odd fields at the boundary with the user's own file system.

Every test here failed on the main before the safety round (issue #21): each names the item it covers.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from bundle_helpers import tiny_bundle
from cai_edge.cli import main


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (links not followed) → the sha256 of its bytes, or what it is."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            st = os.lstat(path)
            rel = str(path.relative_to(folder))
            if stat.S_ISLNK(st.st_mode):
                found[rel] = "link→" + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[rel] = "dir" if stat.S_ISDIR(st.st_mode) else "special"
    return found


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    from test_trust import _labelled_partition

    folder = tmp_path_factory.mktemp("labelled")
    _labelled_partition(folder / "cal.npz", 800, seed=3)
    bundle = tiny_bundle(folder / "bundle")
    return folder, bundle


# --- item 1: calibrate/export/quantize --out never delete a folder or file they did not write -------------------

def _careless_targets(tmp_path: Path, data_folder: Path) -> list[tuple[str, Path]]:
    others = tmp_path / "thesis"
    others.mkdir()
    (others / "thesis.tex").write_text("x")
    (others / "manifest.json").write_text('{"not": "a bundle"}')
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    return [("a folder of other files", others), ("the current folder", Path(".")), ("the input data", data_folder),
            ("a file", a_file), ("a link to a folder", _link(tmp_path / "link", others))]


def _link(path: Path, target: Path) -> Path:
    path.symlink_to(target)
    return path


@pytest.mark.parametrize("command", ["calibrate", "export", "quantize"])
def test_bundle_out_never_replaces_what_cai_edge_did_not_write(command, labelled, tmp_path, monkeypatch, capsys):
    """Item 1 (careless user): --out at a folder of other files, `.`, the input data, a file → exit 2, all byte-identical."""
    if command != "calibrate":
        pytest.importorskip("torch")
    data_folder, bundle = labelled
    monkeypatch.chdir(tmp_path)
    for what, target in _careless_targets(tmp_path, data_folder):
        before = _snapshot(tmp_path), _snapshot(data_folder)
        argv = {"calibrate": ["calibrate", str(bundle), "--data", str(data_folder / "cal.npz")],
                "export": ["export", "--validation-limit", "8"],
                "quantize": ["quantize", str(bundle), "--to", "fp16"]}[command] + ["--out", str(target)]
        assert main(argv) == 2, what
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, (what, err)
        assert (_snapshot(tmp_path), _snapshot(data_folder)) == before, what


def test_calibrate_replaces_its_own_bundle_and_an_empty_folder(labelled, tmp_path, capsys):
    data_folder, bundle = labelled
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["calibrate", str(bundle), "--data", str(data_folder / "cal.npz"), "--out", str(empty)]) == 0
    first = json.loads((empty / "manifest.json").read_text())["calibration"]["fitted_on"]["created"]
    assert sorted(os.listdir(empty)) == ["manifest.json", "model.onnx"]
    assert main(["calibrate", str(bundle), "--data", str(data_folder / "cal.npz"), "--out", str(empty)]) == 0  # its own bundle
    assert sorted(os.listdir(empty)) == ["manifest.json", "model.onnx"] and first
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging or aside folder left
    (empty / "thesis.tex").write_text("x")  # the bundle folder now holds a file of the user's: no longer replaced
    assert main(["calibrate", str(bundle), "--data", str(data_folder / "cal.npz"), "--out", str(empty)]) == 2
    assert (empty / "thesis.tex").read_text() == "x"


def test_zip_next_to_the_bundle_is_never_a_users_file(labelled, tmp_path, capsys):
    pytest.importorskip("torch")
    users = tmp_path / "b.zip"
    users.write_bytes(b"my archive")
    assert main(["quantize", str(labelled[1]), "--to", "fp16", "--out", str(tmp_path / "b"), "--zip"]) == 2
    assert users.read_bytes() == b"my archive" and not (tmp_path / "b").exists()


# --- predict's output, lock and spool ---------------------------------------------------------------------------

import numpy as np  # noqa: E402

from cai_edge.io.npz_partitions import write_npz_partition  # noqa: E402
from cai_edge.results.lock import lock_path  # noqa: E402
from cai_edge.results.files import read_results  # noqa: E402
from cai_edge.results.spool import MAGIC, spool_dir  # noqa: E402
from result_helpers import MAGS, predict_process, write_partitions  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny-fp32")


def _predict(*args) -> int:
    return main(["predict", *map(str, args), "--threads", "1", "--quiet"])


def test_lock_never_follows_a_symlink(bundle, tmp_path, capsys):
    """Item 2: a link at the lock path is refused (exit 2); its target keeps its bytes."""
    write_partitions(tmp_path / "in", 1, 5)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "z.csv"
    lock_path(out).symlink_to(victim)
    assert _predict(tmp_path / "in", "--bundle", bundle, "--out", out) == 2
    assert victim.read_text() == "precious" and lock_path(out).is_symlink() and not out.exists()
    assert "symbolic link" in capsys.readouterr().err


def test_a_symlinked_spool_folder_is_never_emptied(bundle, tmp_path, capsys):
    """Item 3: `.z.csv.spool` linked to the user's data → exit 2, every file there kept."""
    write_partitions(tmp_path / "in", 1, 5)
    mydata = tmp_path / "mydata"
    mydata.mkdir()
    for name in ("a.txt", "segment-000001.csv", ".x.tmp"):
        (mydata / name).write_text(name)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "z.csv"
    spool_dir(out).symlink_to(mydata)
    before = _snapshot(mydata)
    for resume in ([], ["--resume"]):
        assert _predict(tmp_path / "in", "--bundle", bundle, "--out", out, *resume) == 2
        assert _snapshot(mydata) == before and not out.exists()
    assert "spool folder" in capsys.readouterr().err


def test_spool_removal_deletes_only_its_own_segments(bundle, tmp_path, capsys):
    """Item 3: files of other names in a real spool folder stay (and so does the folder)."""
    write_partitions(tmp_path / "in", 1, 5)
    out = tmp_path / "z.csv"
    spool_dir(out).mkdir()
    (spool_dir(out) / "notes.txt").write_text("mine")
    (spool_dir(out) / ".old.tmp").write_text("mine too")
    assert _predict(tmp_path / "in", "--bundle", bundle, "--out", out) == 0
    assert sorted(os.listdir(spool_dir(out))) == [".old.tmp", "notes.txt"] and len(read_results(out)) == 5


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_out_must_be_a_regular_file_or_absent(bundle, tmp_path, capsys):
    """Item 4: --out a FIFO, a socket, a character device or a link → exit 2, left as it was."""
    import socket

    write_partitions(tmp_path / "in", 1, 3)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    sock_path = tmp_path / "s.csv"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    target = tmp_path / "target.csv"
    target.write_text("not mine")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    try:
        for out, is_kind in ((fifo, stat.S_ISFIFO), (sock_path, stat.S_ISSOCK), (link, stat.S_ISLNK)):
            assert _predict(tmp_path / "in", "--bundle", bundle, "--out", out) == 2, out
            assert is_kind(os.lstat(out).st_mode), out
        dev_null = os.stat("/dev/null")
        assert _predict(tmp_path / "in", "--bundle", bundle, "--out", "/dev/null") == 2
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.stat("/dev/null").st_ino == dev_null.st_ino
    finally:
        server.close()
    assert target.read_text() == "not mine"
    err = capsys.readouterr().err
    assert "FIFO" in err and "socket" in err and "symbolic link" in err and "character device" in err


def test_out_that_is_a_users_own_file_is_not_replaced(bundle, tmp_path, capsys):
    """Rule 1: an existing --out that cai-edge did not write (no bundle recorded in it) is kept; exit 2."""
    write_partitions(tmp_path / "in", 1, 3)
    out = tmp_path / "table.csv"
    out.write_text("id,z\nmine,0.1\n")
    assert _predict(tmp_path / "in", "--bundle", bundle, "--out", out) == 2
    assert out.read_text() == "id,z\nmine,0.1\n" and "not a cai-edge result" in capsys.readouterr().err


def test_ids_that_differ_only_by_an_escaped_character_stay_two_rows(bundle, tmp_path, capsys):
    """Item 5: `NGC 1` and `NGC\\n1` (and \\r, \\t) are four galaxies, in every format, through --resume."""
    from cai_edge.io.fits_cutouts import cutout_hdul

    folder = tmp_path / "in"
    folder.mkdir()
    names = ["NGC 1", "NGC\n1", "NGC\t1", "NGC\r1"]
    for i, name in enumerate(names):
        cutout_hdul(np.full((5, 48, 48), 0.01 * (i + 1), np.float32), MAGS).writeto(folder / f"{name}.fits")
    for suffix, expected in ((".csv", names), (".parquet", names), (".ecsv", names[:3])):
        out = tmp_path / f"z{suffix}"
        for resume in ([], ["--resume"], ["--resume"]):
            code = _predict(folder, "--bundle", bundle, "--out", out, *resume)
            if suffix == ".ecsv":  # \r cannot be held by ECSV: refused before the run
                assert code == 2 and not out.exists()
                break
            assert code == 0
            table = read_results(out)
            assert sorted(table["id"]) == sorted(expected) and len(set(table["z_pred"])) == 4
            assert all(Path(s).name == f"{i}.fits" for i, s in zip(table["id"], table["source"]))
        if resume:
            assert "0 ok" in capsys.readouterr().err or suffix == ".ecsv"


def test_optimized_graph_sweep_keeps_other_tools_hidden_tmp_files(tmp_path, monkeypatch):
    """Item 6: a stale hidden *.tmp file that is not one of the cache's own staging files stays."""
    from cai_edge.optimized_graphs import OptimizedGraphCache

    monkeypatch.setenv("CAI_EDGE_OPTIMIZED_GRAPHS", str(tmp_path / "cache"))
    cache = OptimizedGraphCache.for_model("ab" * 32)
    staging = cache.staging_path()
    users = cache.folder / ".notes.tmp"
    users.write_text("theirs")
    stale_own = cache.folder / f".{cache.key}.123.deadbeef.tmp"
    stale_own.write_text("ours")
    old = 1_000_000_000
    os.utime(users, (old, old))
    os.utime(stale_own, (old, old))
    staging.write_bytes(b"graph")
    cache.commit(staging)
    assert users.read_text() == "theirs" and not stale_own.exists()


@pytest.fixture(scope="module")
def pdf_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pdf-in")
    write_partitions(folder, 1, 6)
    return folder


def test_resume_never_drops_or_half_fills_the_pdf_column(pdf_inputs, tmp_path, capsys):
    """Item 7: --resume without --pdf on an output with p(z), and the reverse, are refused (exit 2); nothing changes."""
    with_pdf = tmp_path / "with.fits"
    assert _predict(pdf_inputs, "--out", with_pdf, "--pdf") == 0
    before = with_pdf.read_bytes()
    assert _predict(pdf_inputs, "--out", with_pdf, "--resume") == 2
    assert with_pdf.read_bytes() == before
    without = tmp_path / "without.csv"
    assert _predict(pdf_inputs, "--out", without) == 0
    before = without.read_bytes()
    assert _predict(pdf_inputs, "--out", without, "--resume", "--pdf") == 2
    assert without.read_bytes() == before
    err = capsys.readouterr().err
    assert "drop the earlier p(z)" in err and "leave earlier rows without p(z)" in err
    assert _predict(pdf_inputs, "--out", with_pdf, "--resume", "--pdf") == 0  # the same columns resume as before


def _killed_run(bundle, tmp_path, n=200):
    write_partitions(tmp_path / "in", 2, n // 2)
    out = tmp_path / "z.csv"
    args = (tmp_path / "in", "--bundle", bundle, "--out", out, "--batch-size", "50")
    assert predict_process(*args).returncode == 0
    assert predict_process(*args, env={"CAI_EDGE_CRASH_AT": "spool-written:2"}).returncode == -9
    return out, args


def test_a_segment_header_of_the_wrong_types_is_kept_not_reinterpreted(bundle, tmp_path):
    """Items 8 and 14: "fresh": "false" (a string) or no id column → kept, reported, not used; the earlier output stays whole."""
    out, args = _killed_run(bundle, tmp_path)
    segment = next(spool_dir(out).glob("segment-*.csv"))
    lines = segment.read_bytes().split(b"\n")
    header = json.loads(lines[0][len(MAGIC):])
    header["fresh"] = "false"  # a run that started afresh would drop the earlier output on --resume
    segment.write_bytes(b"\n".join([MAGIC.encode() + json.dumps(header).encode(), *lines[1:]]))
    no_id = spool_dir(out) / "segment-000050.csv"
    no_id.write_text(MAGIC + json.dumps({**header, "fresh": False, "columns": ["source", "status"]}) + "\n")
    resumed = predict_process(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert len(read_results(out)) == 200 and "Traceback" not in resumed.stderr
    assert "kept but not used" in resumed.stderr and "'fresh'" in resumed.stderr and "lacks id" in resumed.stderr
    assert segment.exists() and no_id.exists()  # kept for a person to look at


def test_a_planted_segment_999999_does_not_hide_the_next_one(bundle, tmp_path):
    """Item 20: segment numbers past six digits are still segments for --resume."""
    out, args = _killed_run(bundle, tmp_path)
    first = next(spool_dir(out).glob("segment-*.csv"))
    first.rename(spool_dir(out) / "segment-999999.csv")
    assert predict_process(*args, "--resume", env={"CAI_EDGE_CRASH_AT": "spool-written:1"}).returncode == -9
    assert (spool_dir(out) / "segment-1000000.csv").exists()
    resumed = predict_process(*args, "--resume")
    assert resumed.returncode == 0 and "150 skipped" in resumed.stderr, resumed.stderr
    assert len(read_results(out)) == 200 and not spool_dir(out).exists()


# --- item 9 and 18: the optimized-graph cache is bound to its bundle and trusted only when private ---------------

from test_optimized_graphs import cache_dir  # noqa: E402,F401  (a fixture: a fresh private cache folder)


def _tiny_inputs():
    rng = np.random.default_rng(0)
    return rng.normal(0.1, 0.05, (8, 5, 32, 32)).astype(np.float32), np.tile(MAGS, (8, 1))


def test_a_cache_entry_renamed_to_another_bundles_key_is_not_used(cache_dir, tmp_path):
    """Item 9: the graph of bundle B renamed to bundle A's key is refused (bound to the model it came from)."""
    from bundle_helpers import expected_tiny, tiny_redshift_graph
    from cai_edge.export.bundle_writer import write_bundle
    from cai_edge.optimized_graphs import OptimizedGraphCache
    from cai_edge.predictor import Predictor
    from cai_edge.preprocessing import Preprocessing
    from cai_edge.session import started_from_cache

    a = tiny_bundle(tmp_path / "a")
    graph = tiny_redshift_graph()
    graph.graph.initializer[2].float_data[0] = 0.5  # another model: redshift = 0.5·mean + …
    b = write_bundle(tmp_path / "b", graph, {"name": "other", "variant": "fp32", "preprocessing": Preprocessing().to_dict()})
    images, mags = _tiny_inputs()
    pa, pb = Predictor(a, threads=1), Predictor(b, threads=1)
    key_a = OptimizedGraphCache.for_model(pa.bundle.sha256).key
    key_b = OptimizedGraphCache.for_model(pb.bundle.sha256).key
    [entry_a] = cache_dir.glob(f"{key_a}-*.onnx")
    [entry_b] = cache_dir.glob(f"{key_b}-*.onnx")
    entry_a.unlink()
    entry_b.rename(cache_dir / entry_b.name.replace(key_b, key_a))  # same sha256 in the name: it still "verifies"
    again = Predictor(a, threads=1)
    assert not started_from_cache(again.session)
    z = again.predict_prepared(images, mags)
    assert np.allclose(z, expected_tiny(images, mags), atol=1e-6)  # bundle A's own model, not B's
    assert not np.allclose(z, pb.predict_prepared(images, mags))


def test_a_cache_others_can_write_is_neither_read_nor_written(cache_dir, tmp_path, caplog):
    """Item 9: a group- or world-writable cache folder is not used, as ssh treats ~/.ssh."""
    from cai_edge.predictor import Predictor
    from cai_edge.session import started_from_cache

    bundle = tiny_bundle(tmp_path / "a")
    Predictor(bundle, threads=1)
    assert started_from_cache(Predictor(bundle, threads=1).session)
    os.chmod(cache_dir, 0o777)
    assert not started_from_cache(Predictor(bundle, threads=1).session)
    assert "no one else can write" in caplog.text
    os.chmod(cache_dir, 0o700)
    [entry] = cache_dir.glob("*.onnx")
    os.chmod(entry, 0o666)  # an entry others can write is skipped too
    assert not started_from_cache(Predictor(bundle, threads=1).session)


@pytest.mark.parametrize("value", ["none", "OFF", "disabled"])
def test_the_off_switch_makes_no_folder(value, tmp_path, monkeypatch):
    from cai_edge.optimized_graphs import ENV, cache_folder

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV, value)
    assert cache_folder() is None
    from cai_edge.predictor import Predictor

    Predictor(tiny_bundle(tmp_path / "b"), threads=1)
    assert sorted(os.listdir(tmp_path)) == ["b"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_a_huge_file_named_like_an_entry_is_skipped_at_once(cache_dir, tmp_path):
    """Item 18: opening a cache entry never blocks, and never reads more than the entry bound."""
    import subprocess
    import sys
    import time

    from cai_edge.optimized_graphs import MAX_ENTRY_BYTES, OptimizedGraphCache
    from cai_edge.predictor import Predictor

    bundle = tiny_bundle(tmp_path / "a")
    key = OptimizedGraphCache.for_model(Predictor(bundle, threads=1).bundle.sha256).key
    for entry in cache_dir.glob("*.onnx"):
        entry.unlink()
    os.mkfifo(cache_dir / f"{key}-{'0' * 64}.onnx")
    huge = cache_dir / f"{key}-{'1' * 64}.onnx"
    with open(huge, "wb") as fh:
        fh.truncate(MAX_ENTRY_BYTES + 1)  # sparse: no disk used
    code = f"from cai_edge.predictor import Predictor; Predictor({str(bundle)!r}, threads=1); print('done')"
    t = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "done" in proc.stdout and time.time() - t < 30, proc.stderr
    assert huge.exists() and (cache_dir / f"{key}-{'0' * 64}.onnx").exists()  # ignored, not read, not deleted


# --- item 10: ambiguous catalog columns are an error naming the candidates and the --columns that settles it -------

def _catalog_case(tmp_path: Path, header: list[str], row: list[str]) -> Path:
    path = tmp_path / "cat.csv"
    path.write_text(",".join(header) + "\n" + ",".join(row) + "\n")
    return path


@pytest.mark.parametrize("header,row,columns,says", [
    (["id", "mag_u", "mag_g", "mag_r", "mag_i", "mag_z", "z", "redshift"], ["g1", "19", "17.5", "16.7", "16.3", "16", "0.3", "0.1"],
     None, "--columns z_spec="),
    (["id", "mag_u", "mag_g", "mag_r", "mag_i", "mag_z", "u", "g", "r", "i", "z"], ["g1", "19", "17.5", "16.7", "16.3", "16"] * 1 + ["1"] * 5,
     None, "--columns mag_u="),
    (["id", "Mag_U", "MAG_U", "mag_g", "mag_r", "mag_i", "mag_z"], ["g1", "19", "19", "17.5", "16.7", "16.3", "16"], None, "Mag_U, MAG_U"),
    (["id", "mag_u", "mag_u", "mag_g", "mag_r", "mag_i", "mag_z"], ["g1", "19", "18", "17.5", "16.7", "16.3", "16"], None, "more than once"),
    (["id", "a", "b", "c", "d", "e"], ["g1", "19", "17.5", "16.7", "16.3", "16"],
     "mag_u=c,mag_g=c,mag_r=c,mag_i=c,mag_z=c", "more than one role"),
])
def test_ambiguous_catalog_columns_are_refused(header, row, columns, says, bundle, tmp_path, capsys):
    from cai_edge.io.fits_cutouts import cutout_hdul

    folder = tmp_path / "in"
    folder.mkdir()
    cutout_hdul(np.zeros((5, 48, 48), np.float32), []).writeto(folder / "g1.fits")
    catalog = _catalog_case(tmp_path, header, row)
    extra = ["--columns", columns] if columns else []
    assert _predict(folder, "--bundle", bundle, "--catalog", catalog, "--out", tmp_path / "z.csv", *extra) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and not (tmp_path / "z.csv").exists()


# --- items 11, 13, 15: every number in a calibration or domain block is range-checked; calibrate says what it used ---

@pytest.fixture(scope="module")
def calibrated(labelled, tmp_path_factory):
    data_folder, bundle = labelled
    out = tmp_path_factory.mktemp("calibrated") / "cal"
    assert main(["calibrate", str(bundle), "--data", str(data_folder / "cal.npz"), "--out", str(out)]) == 0
    return out


def _spoil(manifest: dict, block: str, change) -> dict:
    manifest = json.loads(json.dumps(manifest))
    change(manifest[block])
    return manifest


def _set(key, value):
    def change(block):
        block[key] = value
    return change


def _set_level(i, value):
    def change(block):
        block["levels"][i] = value
    return change


def _set_quantile(value):
    def change(block):
        block["quantiles"][0][0][-1] = value
    return change


SPOILED = {
    "NaN level": ("calibration", _set_level(3, float("nan"))),
    "repeated level": ("calibration", _set_level(3, 0.01)),
    "NaN edge": ("calibration", _set("z_edges", [float("nan")] * 3)),
    "unsorted edges": ("calibration", lambda b: b.__setitem__("z_edges", list(reversed(b["z_edges"])))),
    "quantile 1e308": ("calibration", _set_quantile(1e308)),
    "15,000 levels": ("calibration", _set("levels", [i / 14999 for i in range(15000)])),
    "fitted_on a list": ("calibration", _set("fitted_on", [1, 2])),
    "fitted_on text": ("domain", _set("fitted_on", "abc")),
    "fitted_on null": ("calibration", _set("fitted_on", None)),
    "NaN z_range": ("domain", _set("z_range", [float("nan"), 0.5])),
    "negative z_range": ("domain", _set("z_range", [-5.0, 0.5])),
    "image noise of four bands": ("image_domain", _set("band_noise_nanomaggies", [0.05, 0.02, 0.03, 0.04])),
    "negative image noise": ("image_domain", _set("band_noise_nanomaggies", [0.05, -0.02, 0.03, 0.04, 0.15])),
    "NaN asymmetry threshold": ("image_domain", _set("asymmetry_threshold", float("nan"))),
    "noise threshold text": ("image_domain", _set("noise_threshold", "2")),
    "image fitted_on text": ("image_domain", _set("fitted_on", "abc")),
}


@pytest.mark.parametrize("case", sorted(SPOILED))
def test_a_spoiled_calibration_or_domain_block_fails_verify_and_predict(case, calibrated, tmp_path, capsys):
    import shutil

    spoiled = tmp_path / "spoiled"
    shutil.copytree(calibrated, spoiled)
    manifest = json.loads((spoiled / "manifest.json").read_text())
    block, change = SPOILED[case]
    (spoiled / "manifest.json").write_text(json.dumps(_spoil(manifest, block, change)))
    assert main(["bundle", "verify", str(spoiled)]) == 2, case
    write_partitions(tmp_path / "in", 1, 3)
    assert _predict(tmp_path / "in", "--bundle", spoiled, "--out", tmp_path / "z.csv") == 2, case
    err = capsys.readouterr().err
    assert err.count("error: ") == 2 and "Traceback" not in err and not (tmp_path / "z.csv").exists()


def _labelled_with(path: Path, n: int, z_spec_change) -> None:
    from test_trust import _labelled_partition

    _labelled_partition(path, n, seed=5)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    z = arrays["z_spec"].copy()
    z_spec_change(z)
    write_npz_partition(path, arrays["images"], arrays["magnitudes"], list(arrays["ids"]), z)


def test_calibrate_reports_the_galaxies_it_used_and_leaves_out_unphysical_z(labelled, tmp_path, capsys):
    """Item 15: 20 of 800 z_spec = inf and 60 = −0.5 → 720 used, 80 left out, said so."""
    bundle = labelled[1]
    data = tmp_path / "cal.npz"
    _labelled_with(data, 800, lambda z: (z.__setitem__(slice(0, 20), np.inf), z.__setitem__(slice(20, 80), -0.5)))
    assert main(["calibrate", str(bundle), "--data", str(data), "--out", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["galaxies"] == 720 and report["galaxies_left_out"] == 80 and "80 of 800" in captured.err
    fitted = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert fitted["calibration"]["fitted_on"]["galaxies"] == 720 and fitted["domain"]["z_range"][0] >= 0


@pytest.mark.parametrize("usable", [0, 10])
def test_calibrate_with_too_few_domain_galaxies_is_a_clear_error(usable, labelled, tmp_path, capsys):
    """Item 15: --domain-data with 10 or 0 usable galaxies → exit 2, one line, no traceback, no bundle."""
    data_folder, bundle = labelled
    domain = tmp_path / "domain"
    domain.mkdir()
    if usable:
        write_partitions(domain, 1, usable)
    else:
        (domain / "empty.npz").write_bytes(b"not a zip")
    code = main(["calibrate", str(bundle), "--data", str(data_folder / "cal.npz"), "--domain-data", str(domain),
                 "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err and not (tmp_path / "b").exists()


# --- items 12 and 18: one hostile file among a thousand good ones costs its own row, at once -----------------------

GOOD = 1000


@pytest.fixture(scope="module")
def thousand_good(tmp_path_factory):
    """1,000 plain 5-band cutouts (the shipped int8 default reads them) in one folder."""
    from cai_edge.io.fits_cutouts import cutout_hdul

    folder = tmp_path_factory.mktemp("good") / "cutouts"
    folder.mkdir()
    rng = np.random.default_rng(11)
    for i in range(GOOD):
        cube = rng.gamma(1.5, 0.2, (5, 48, 48)).astype(np.float32)
        cutout_hdul(cube, MAGS + rng.uniform(-0.3, 0.3, 5)).writeto(folder / f"g{i:04d}.fits")
    return folder


def _hostile(kind: str, folder: Path) -> None:
    from cai_edge.io.fits_cutouts import cutout_hdul

    if kind == "huge header field":
        hdul = cutout_hdul(np.full((5, 48, 48), 0.1, np.float32), MAGS)
        hdul[0].header["BUNIT"] = "nanomaggy" + "y" * 210_000  # a long-string (CONTINUE) value
        hdul.writeto(folder / "hostile.fits")
    elif kind == "huge id":
        write_npz_partition(folder / "hostile.npz", np.full((1, 5, 32, 32), 0.1, np.float32), MAGS[None], ["x" * 200_000])
    elif kind == "FIFO":
        os.mkfifo(folder / "hostile.fits")
    else:
        (folder / "hostile.fits").symlink_to("/dev/zero")


@pytest.mark.parametrize("kind", ["huge header field", "huge id", "FIFO", "/dev/zero link"])
def test_one_hostile_input_among_a_thousand_costs_one_row(kind, thousand_good, tmp_path):
    """Items 12 and 18: 1,000 ok rows plus one failed row, in under 60 s and 1 GB; --resume works too."""
    import subprocess
    import sys
    import time

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good").symlink_to(thousand_good)
    _hostile(kind, folder)
    out = tmp_path / "z.csv"
    # the run's own peak RSS (VmHWM of the predicting process: ru_maxrss survives execve from a large parent)
    code = ("import sys\nfrom cai_edge.cli import main\nfrom cai_edge.machine import peak_rss_mb\ncode = main(sys.argv[1:])\n"
            "print('PEAK_KB', int(peak_rss_mb() * 1024), file=sys.stderr)\nsys.exit(code)")
    cmd = [sys.executable, "-c", code, "predict", str(folder), "--out", str(out), "--quiet"]
    for resume in ([], ["--resume"]):
        t = time.perf_counter()
        proc = subprocess.run(cmd + resume, capture_output=True, text=True, timeout=120)
        elapsed = time.perf_counter() - t
        assert proc.returncode == 1, proc.stderr[-2000:]
        peak_kb = int(proc.stderr.rsplit("PEAK_KB", 1)[1].split()[0])
        assert peak_kb < 1024 * 1024, peak_kb  # under 1 GB
        table = read_results(out)
        failed = table[table["status"] != "ok"]
        assert len(table) == GOOD + 1 and len(failed) == 1 and elapsed < 60, (len(table), elapsed)
        assert "hostile" in failed["source"][0]
        assert len(failed["message"][0]) <= 2000 and len(failed["id"][0]) <= 1024


# --- item 5, property: any id round-trips exactly through predict → spool → --resume → output; none merge ---------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# NPZ input (numpy's fixed-width text) cannot hold a trailing NUL: such ids cannot reach cai-edge from a partition.
_ids = st.one_of(st.text(max_size=12), st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=1030),
                 st.sampled_from(["NGC 1", "NGC\n1", "NGC\r1", "NGC\t1", "#x", " lead", "trail ", "", "a\x00b", "a,\"b\"", "\u2028", "0\n\n0"]))
_id_lists = st.lists(_ids.filter(lambda s: not s.endswith("\0")), min_size=1, max_size=8, unique=True)


@pytest.mark.parametrize("suffix", [".csv", ".ecsv", ".parquet"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ids=_id_lists)
def test_any_id_round_trips_through_spool_resume_and_output(suffix, ids, bundle, tmp_path_factory, capsys):
    from cai_edge.results.ids import MAX_ID_CHARS
    from cai_edge.results.formats import output_format
    from cai_edge.results.rows import COLUMNS
    from cai_edge.results.files import iter_result_rows
    from cai_edge.results.spool import Spool
    from cai_edge.predictor import Predictor

    tmp = tmp_path_factory.mktemp("ids")
    n = len(ids)
    images = np.stack([np.full((5, 32, 32), 0.01 * (i + 1), np.float32) for i in range(n)])
    write_npz_partition(tmp / "p.npz", images, np.tile(MAGS, (n, 1)), ids)
    out = tmp / f"z{suffix}"
    fmt = output_format(out)
    holdable = [i for i in ids if fmt.id_problem(i) is None]
    assert all(fmt.id_problem(i) for i in ids if len(i) > MAX_ID_CHARS)

    def run(*extra) -> int:
        return main(["predict", str(tmp / "p.npz"), "--bundle", str(bundle), "--out", str(out), "--threads", "1", "--quiet",
                     "--batch-size", "2", *extra])

    def check() -> None:
        table = read_results(out)
        ok = list(table["id"][table["status"] == "ok"])
        stand_ins = list(table["id"][table["status"] == "bad_id"])
        assert sorted(ok) == sorted(holdable)  # exactly, every character
        assert len(stand_ins) == n - len(holdable) == len(set(stand_ins)) and len(table) == n  # none merged, none lost

    assert run() == (0 if len(holdable) == n else 1)
    check()
    # a killed run's spool: a segment holding the first half of the rows, as a crash leaves it; the output gone
    rows = list(iter_result_rows(out, fmt))
    identity = Predictor(bundle, threads=1).bundle.identity()
    out.unlink()
    writer = Spool(out).open_segment({**identity, "columns": list(COLUMNS), "fresh": True})
    kept = rows[: max(1, len(rows) // 2)]
    writer.write([[r[c] for c in COLUMNS] for r in kept])
    writer.close()
    assert run("--resume") in (0, 1)
    check()
    capsys.readouterr()
    assert run("--resume") in (0, 1)  # and again: no ok row re-predicted (its id read back is the id written), none merged
    assert f"0 ok, {n - len(holdable)} failed, {len(holdable)} skipped" in capsys.readouterr().err
    check()


def test_ecsv_holds_an_id_with_line_breaks_exactly_or_refuses_it(bundle, tmp_path):
    """Item 6 (issue 30): '0\\n\\n0' came back from ECSV as '0\\n0' (astropy reads ECSV lines stripped, skipping
    blank and # lines). Every id of up to four of these characters is read back exactly, or refused before writing."""
    import itertools
    import warnings

    from astropy.table import Table

    from cai_edge.results.formats import FORMATS

    ecsv = FORMATS["ecsv"]
    kept = 0
    for n in range(1, 5):
        for chars in itertools.product("0 \n#\t", repeat=n):
            galaxy_id = "".join(chars)
            if ecsv.id_problem(galaxy_id) is None:
                Table({"id": [galaxy_id, "next"]}).write(tmp_path / "t.ecsv", format="ascii.ecsv", overwrite=True)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    assert list(Table.read(tmp_path / "t.ecsv", format="ascii.ecsv")["id"]) == [galaxy_id, "next"], repr(galaxy_id)
                kept += "\n" in galaxy_id
    assert kept >= 3  # ids with a line break ECSV does hold are still written (0\n0, 00\n0 …)
    ids = ["0\n\n0", "0\n0", "a \nb", "a\n#b"]
    write_npz_partition(tmp_path / "p.npz", np.stack([np.full((5, 32, 32), 0.01 * (i + 1), np.float32) for i in range(4)]),
                        np.tile(MAGS, (4, 1)), ids)
    out = tmp_path / "z.ecsv"
    for resume in ([], ["--resume"]):
        assert _predict(tmp_path / "p.npz", "--bundle", bundle, "--out", out, *resume) == 1
        table = read_results(out)
        assert len(table) == 4 and list(table["id"][table["status"] == "ok"]) == ["0\n0"]
        assert sum(table["status"] == "bad_id") == 3 and all(i.startswith("unusable-id-") for i in table["id"][table["status"] == "bad_id"])


# --- the small ones: CSV line ends, ONNX Runtime's own log lines --------------------------------------------------

def test_csv_output_has_one_kind_of_line_end(bundle, tmp_path):
    write_partitions(tmp_path / "in", 1, 3)
    out = tmp_path / "z.csv"
    assert _predict(tmp_path / "in", "--bundle", bundle, "--out", out) == 0
    data = out.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n") == 4  # the header and the rows alike: CRLF (RFC 4180)


def test_a_model_that_fails_at_run_time_is_one_clean_error_line(tmp_path):
    """No coloured ONNX Runtime log line before cai-edge's one-line error (exit 2)."""
    import subprocess
    import sys

    from onnx import TensorProto, helper

    from cai_edge.export.bundle_writer import write_bundle
    from cai_edge.preprocessing import Preprocessing

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 5, 32, 32])
    magnitude = helper.make_tensor_value_info("magnitude", TensorProto.FLOAT, ["batch", 5])
    redshift = helper.make_tensor_value_info("redshift", TensorProto.FLOAT, ["batch"])
    nodes = [helper.make_node("Reshape", ["magnitude", "shape"], ["flat"]), helper.make_node("ReduceSum", ["flat", "axes"], ["redshift"], keepdims=0)]
    inits = [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 7]), helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    graph = helper.make_graph(nodes, "breaks", [image, magnitude], [redshift], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    bundle = write_bundle(tmp_path / "breaks", model, {"name": "breaks", "variant": "fp32", "preprocessing": Preprocessing().to_dict()})
    write_partitions(tmp_path / "in", 1, 3)
    proc = subprocess.run([sys.executable, "-m", "cai_edge", "predict", str(tmp_path / "in"), "--bundle", str(bundle),
                           "--out", str(tmp_path / "z.csv"), "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "\x1b[" not in proc.stderr and "ONNX Runtime failed running the model" in proc.stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_a_failed_write_promises_resumable_rows_only_when_there_are_some(bundle, tmp_path, capsys):
    """Nothing ran (the output's folder takes no files): no "finished rows stay … for --resume"."""
    write_partitions(tmp_path / "in", 1, 3)
    assert _predict(tmp_path / "in", "--bundle", bundle, "--out", "/proc/cai-edge-z.csv") == 2
    err = capsys.readouterr().err
    assert "cannot write /proc/cai-edge-z.csv" in err and "--resume" not in err


@pytest.mark.parametrize("command", ["partition", "compare", "render", "lambda package"])
def test_folder_and_zip_outputs_of_other_commands_never_replace_a_users_files(command, tmp_path, capsys):
    """Rule 1 for every --out: a folder of the user's files (or a zip of theirs) → exit 2, byte-identical."""
    if command == "render":
        pytest.importorskip("galsim")
    write_partitions(tmp_path / "in", 1, 4)
    others = tmp_path / "mine"
    others.mkdir()
    for name in ("manifest.json", "report.json", "report.md", "catalog.ecsv", "part-00000.npz"):
        (others / name).write_text("{}")
    users_zip = tmp_path / "mine.zip"
    users_zip.write_bytes(b"PK not a package")
    before = _snapshot(tmp_path)
    argv = {"partition": ["partition", str(tmp_path / "in"), "--out", str(others), "--quiet"],
            "compare": ["compare", "--data", str(tmp_path / "in"), "--tiers", "edge-1t", "--out", str(others)],
            "render": ["render", "sdss:validation", "--limit", "2", "--out", str(others), "--quiet"],
            "lambda package": ["lambda", "package", "--out", str(users_zip)]}[command]
    assert main(argv) == 2
    assert _snapshot(tmp_path) == before
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


@pytest.mark.parametrize("suffix", [".csv", ".fits"])
def test_an_out_name_too_long_for_its_temporary_names_is_refused_before_the_run(tmp_path, suffix):
    """A 240-character --out: CSV crashed with a traceback on its sidecar's name; FITS predicted every galaxy, then
    could not write its temporary file, and --resume failed the same way."""
    from result_helpers import predict_process, write_partitions

    write_partitions(tmp_path / "in", 1, 2)
    out = tmp_path / ("b" * 240 + suffix)
    proc = predict_process(tmp_path / "in", "--out", out)
    assert proc.returncode == 2 and "too long a name" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no spool, no lock, nothing predicted
