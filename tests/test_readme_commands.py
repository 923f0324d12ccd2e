"""Every shell command the README and the documentation show runs, on the shipped examples, and exits 0.

The ```bash blocks of the README, then of each page of docs/ (and the tutorial notebook's text
cells), are extracted in order and run in one scratch folder whose names
(``cutouts/``, ``parts/``, ``mags.csv``, ``labelled/``, ``CAI.pt`` …) are made from the shipped
examples and reference weights. A block preceded by ``<!-- readme-test: needs aws -->`` (or
``gpu``) is skipped; install, test and documentation-build commands are checked against what CI
runs rather than re-run. A documented command that breaks fails this test, so documentation cannot
rot silently.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("galsim")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SKIP_MARK = re.compile(r"<!--\s*readme-test:\s*needs\s+(aws|gpu|slurm)\s*-->")
INSTALL = re.compile(r"^(python3? -m )?pip install|^python3? -m (pytest|sphinx)")


def documented_texts() -> list[tuple[str, str]]:
    """(name, text) of the README, every docs page and the tutorial notebook's text cells, in reading order."""
    import json

    texts = [("README.md", README.read_text())]
    texts += [(f"docs/{p.name}", p.read_text()) for p in sorted(DOCS.glob("*.md"))]
    for notebook in sorted(DOCS.glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        texts.append((f"docs/{notebook.name}", "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")))
    return texts


def readme_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, skip reason or "", commands) for each ```bash block; continuation lines joined."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            start, body = i + 1, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            previous = next((lines[j] for j in range(start - 2, -1, -1) if lines[j].strip()), "")
            mark = SKIP_MARK.search(previous)
            commands, current = [], ""
            for line in body:
                current += line.rstrip()
                if current.endswith("\\"):
                    current = current[:-1] + " "
                    continue
                commands.append(current)
                current = ""
            blocks.append((start + 1, mark.group(1) if mark else "", [c for c in commands if c.strip()]))
        i += 1
    return blocks


def _strip_comment(command: str) -> str:
    """Drop a trailing ``# comment`` (outside quotes) and optional ``[--flag]`` parts."""
    out, quote = [], None
    for k, ch in enumerate(command):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or command[k - 1].isspace()):
            break
        out.append(ch)
    return re.sub(r"\s\[[^\]]*\]", "", "".join(out)).strip()


def runnable(command: str) -> list[str]:
    """The parts of a (possibly ``&&``-chained) README line that the test runs, install steps left out."""
    parts = [p.strip() for p in _strip_comment(command).split("&&")]
    return [p for p in parts if p and not INSTALL.match(p)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The names the README's commands use, made from the shipped examples and the reference weights."""
    from cai_edge.io.fits_cutouts import read_cutout
    from cai_edge.io.npz_partitions import write_npz_partition
    from cai_edge.models.reference import REFERENCE_WEIGHTS, load_reference_with_preprocessing

    work = tmp_path_factory.mktemp("readme")
    examples = sorted((ROOT / "examples").glob("*.fits"))
    shutil.copytree(ROOT / "examples", work / "examples")
    shutil.copytree(ROOT / "examples", work / "labelled", ignore=shutil.ignore_patterns("*.md"))  # cutouts with Z_SPEC
    for folder, chosen in (("cutouts", examples[:40]), ("more", examples[40:48])):
        (work / folder).mkdir()
        for path in chosen:
            shutil.copy(path, work / folder / path.name)
    records = [read_cutout(p) for p in examples]
    (work / "parts").mkdir()
    ok = [r for r in records if r.ok]
    assert len(ok) == len(records) >= 168
    for part in range(4):  # other galaxies than cutouts/ and more/: the README predicts them together
        chunk = ok[48 + part * 30 : 48 + (part + 1) * 30]
        images = np.stack([r.image for r in chunk])
        mags = np.stack([r.magnitudes for r in chunk]).astype(np.float64)
        write_npz_partition(work / "parts" / f"part-{part:03d}.npz", images, mags, [r.id for r in chunk],
                            np.array([r.z_spec for r in chunk]))
    write_npz_partition(work / "labelled.npz", np.stack([r.image for r in ok]), np.stack([r.magnitudes for r in ok]).astype(np.float64),
                        [r.id for r in ok], np.array([r.z_spec for r in ok]))
    header = "id,mag_u,mag_g,mag_r,mag_i,mag_z,z_spec\n"
    rows = [f"{r.id}," + ",".join(f"{m:.4f}" for m in r.magnitudes) + f",{r.z_spec:.5f}\n" for r in ok]
    (work / "mags.csv").write_text(header + "".join(rows))
    (work / "my_catalog.csv").write_text(header + "".join(rows[:20]))
    _layouts(work / "layouts", examples[:5])
    model, _ = load_reference_with_preprocessing(REFERENCE_WEIGHTS)
    # The CAI training script's form: a DataParallel state dict nested under "model".
    torch.save({"epoch": 1, "model": {f"module.{k}": v for k, v in model.state_dict().items()}}, work / "CAI.pt")
    return work


def _layouts(folder: Path, examples: list[Path]) -> None:
    """The README's layouts section, written with astropy as cutout services write them."""
    from astropy.io import fits
    from astropy.table import Table

    cubes, headers = [], []
    for path in examples:
        with fits.open(path) as hdul:
            cubes.append(np.array(hdul[1].data)), headers.append(hdul[1].header)
    mags = {b: [h[f"MAG_{b.upper()}"] for h in headers] for b in "ugriz"}
    for sub in ("extensions", "band-files", "band-folders"):
        (folder / sub).mkdir(parents=True)
    for k, (cube, header) in enumerate(zip(cubes, headers)):
        gid = f"gal{k}"
        primary = fits.PrimaryHDU()
        for b in "ugriz":
            primary.header[f"MAG_{b.upper()}"] = header[f"MAG_{b.upper()}"]
        fits.HDUList([primary, *(fits.ImageHDU(cube[j], name=b.upper()) for j, b in enumerate("ugriz"))]).writeto(folder / "extensions" / f"{gid}.fits")
        for j, b in enumerate("ugriz"):
            band = fits.PrimaryHDU(cube[j], header=primary.header)
            band.writeto(folder / "band-files" / f"{gid}-{b}.fits")
            (folder / "band-folders" / b).mkdir(exist_ok=True)
            band.writeto(folder / "band-folders" / b / f"{gid}.fits")
    table = Table({"objID": np.arange(len(cubes)) + 1237650000000000000, "ra": np.linspace(150, 150.1, len(cubes)),
                   "dec": np.linspace(2, 2.1, len(cubes)), **{f"modelMag_{b}": v for b, v in mags.items()}})
    fits.HDUList([fits.PrimaryHDU(np.stack(cubes)), fits.table_to_hdu(table)]).writeto(folder / "field.fits")


def test_readme_blocks_are_found_and_marked():
    blocks = [b for _, text in documented_texts() for b in readme_blocks(text)]
    commands = [c for _, _, cs in blocks for c in cs]
    assert any(c.startswith("cai-edge predict") for c in commands) and any(c.startswith("cai-edge compare") for c in commands)
    aws = [cs for _, mark, cs in blocks if mark == "aws"]
    assert aws and all(any("aws " in c or "sam " in c or "lambda" in c for c in cs) for cs in aws)
    # The test command and the documentation build the README gives are the ones CI runs.
    ci = (ROOT / ".ci" / "run").read_text()
    readme = [c for _, _, cs in readme_blocks(README.read_text()) for c in cs]
    test_line = next(c for c in readme if "pytest" in c)
    assert test_line.strip() in ci
    docs_build = next(c for c in readme if "sphinx" in c)
    assert _strip_comment(docs_build) in ci and "-W -n" in docs_build
    assert len(README.read_text().splitlines()) <= 200  # the README is the front door; the docs hold the rest


def test_every_readme_command_runs(workspace, tmp_path):
    env = {**os.environ, "CAI_EDGE_USER_BUNDLES": str(tmp_path / "user-bundles"), "PYTHONUNBUFFERED": "1"}
    ran = []
    for name, text in documented_texts():
        for line, mark, commands in readme_blocks(text):
            if mark:
                continue
            for command in commands:
                for part in runnable(command):
                    argv = shlex.split(part)
                    where = f"{name} line {line}"
                    assert argv[0] == "cai-edge", f"{where}: {part!r} is not a cai-edge command; mark its block"
                    proc = subprocess.run([sys.executable, "-m", "cai_edge", *argv[1:]], cwd=workspace, env=env,
                                          capture_output=True, text=True, timeout=900)
                    assert proc.returncode == 0, f"{where}: `{part}` exited {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
                    assert "Traceback" not in proc.stderr, f"{where}: `{part}`\n{proc.stderr[-3000:]}"
                    ran.append((name, part))
    assert len(ran) >= 25 and {n for n, _ in ran} >= {"README.md", "docs/getting-started.md", "docs/tutorial.ipynb", "docs/scaling-out.md"}
    # What the commands promise exists afterwards.
    for name in ("predictions.csv", "z-catalog.fits", "z.ecsv", "z.fits", "z-3.csv", "z.csv", "z-task1.csv", "z-merged.fits", "z-dask.csv", "report"):
        assert (workspace / name).exists(), name
