"""The runtime wheel: the default bundle and the runtime, without the toolchain's data (piper's split)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MB = 20


def test_runtime_wheel_is_lean_and_carries_the_default_bundle(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("cai_edge-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        own = sum(i.file_size for i in archive.infolist())
    assert wheel.stat().st_size <= LIMIT_MB * 2**20 and own <= LIMIT_MB * 2**20, (wheel.stat().st_size, own)
    assert "cai_edge/bundled/astromae-sdss-int8.zip" in names and "cai_edge/bundled/default.json" in names
    assert not [n for n in names if n.endswith(".safetensors") or "/sdss_data/" in n or "/weights/" in n]
    requires = [line for line in zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(r.split()[1].split(">")[0].split("=")[0] for r in requires) == ["astropy", "fitsio", "numpy", "onnxruntime", "tqdm"]
