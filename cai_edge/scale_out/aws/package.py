"""``cai-edge lambda package``: a Lambda zip with numpy, onnxruntime, the runtime and one bundle.

Wheels come from PyPI for the target (``pip download --only-binary=:all: --platform …``), at the
versions installed here. Left out: boto3 (the Lambda Python runtime has it), torch, astropy,
tqdm (the handler needs none of them), tests and caches. The unzipped size must stay under
Lambda's 250 MB limit.

arm64: onnxruntime used to abort at import on Lambda's Graviton (no
/sys/devices/system/cpu/possible; microsoft/onnxruntime issue 10038), fixed by onnxruntime
PR 28230 (merged 2026-04-25). onnxruntime releases older than ``ARM64_MIN_ONNXRUNTIME`` (the
version this project builds and tests with, published after that fix) are refused for arm64.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from cai_edge.bundle import resolve_bundle
from cai_edge.errors import CaiEdgeError
from cai_edge.io.safe_files import check_write_target, zip_holds

LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
# The Lambda Python runtime the zip is built for by default; deploy/template.yaml's PythonRuntime
# default must name the same one (a test checks). Lambda's 3.11 runtime is deprecated.
LAMBDA_PYTHON = "3.13"
ARM64_MIN_ONNXRUNTIME = (1, 32)
PLATFORMS = {
    "x86_64": ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "arm64": ["manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
}
# Runtime modules the handler needs; the rest of cai_edge (CLI, FITS and astropy readers) stays out.
RUNTIME_MODULES = [
    "__init__.py", "_version.py", "errors.py", "photometry.py", "preprocessing.py", "machine.py", "pricing.py",
    "session.py", "optimized_graphs.py", "backend_names.py", "backends.py", "openvino_session.py", "predictor.py", "bundle", "scale_out/__init__.py", "scale_out/merge.py", "scale_out/merge_rule.py",
    "scale_out/aws/__init__.py", "scale_out/aws/handler.py", "scale_out/aws/storage.py",
    "io/__init__.py", "io/status.py", "io/records.py", "io/atomic.py", "io/npz_partitions.py", "io/limits.py", "io/crashpoints.py",
    "io/safe_files.py", "results/__init__.py", "results/rows.py", "results/ids.py", "results/formats.py", "results/files.py", "results/csv_sidecar.py", "results/column_units.py", "results/chunked_tables.py", "results/table_chunks.py", "flags.py", "flux_check.py", "estimates.py", "magnitude_systems.py", "uncertainty.py", "smooth_pz.py", "domain.py", "image_domain.py", "image_content.py", "photometric_match.py", "overlap.py",
]
HANDLER_PATH = "scale_out/aws/handler.py"  # aws/handler.py in packages built before the scale_out folder
_PRUNE_DIRS = {"tests", "testing", "__pycache__", "benchmarks"}


class PackageError(CaiEdgeError):
    """The Lambda package cannot be built as asked."""


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit())


def download_wheels(dest: Path, arch: str, python_version: str, requirements: list[str]) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
           "--implementation", "cp", "--python-version", python_version, "-d", str(dest)]
    for platform in PLATFORMS[arch]:
        cmd += ["--platform", platform]
    result = subprocess.run(cmd + requirements, capture_output=True, text=True)
    if result.returncode != 0:
        raise PackageError(f"pip could not fetch {', '.join(requirements)} for {arch}/cp{python_version}:\n{result.stderr[-2000:]}")
    return sorted(dest.glob("*.whl"))


def _prune(root: Path) -> None:
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and path.name in _PRUNE_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.suffix in (".pyc", ".pyo"):
            path.unlink()


def _copy_runtime(dest: Path) -> None:
    source = Path(__file__).resolve().parents[2]  # cai_edge/
    for rel in RUNTIME_MODULES:
        src = source / rel
        target = dest / "cai_edge" / rel
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _check_package_target(out: Path) -> None:
    """``--out`` must be absent or an earlier Lambda package (a zip holding the handler): no user file is replaced."""
    if check_write_target(out, "--out") is not None and not any(zip_holds(out, f"cai_edge/{h}") for h in (HANDLER_PATH, "aws/handler.py")):
        raise PackageError(f"--out {out} exists and is not a cai-edge Lambda package; cai-edge replaces only a package it "
                           "built. Move it away or choose another --out.")


def build_package(out: str | Path, bundle: str = "default", arch: str = "x86_64", python_version: str | None = None) -> dict:
    """Build the zip; returns its path, zipped and unzipped sizes, and the pinned versions."""
    if arch not in PLATFORMS:
        raise PackageError(f"--arch must be one of {', '.join(PLATFORMS)}")
    python_version = python_version or LAMBDA_PYTHON
    versions = {name: metadata.version(name) for name in ("numpy", "onnxruntime")}
    if arch == "arm64" and _version_tuple(versions["onnxruntime"]) < ARM64_MIN_ONNXRUNTIME:
        raise PackageError(
            f"onnxruntime {versions['onnxruntime']} may abort at import on Lambda arm64 (onnxruntime issue 10038); "
            f"install onnxruntime>={'.'.join(map(str, ARM64_MIN_ONNXRUNTIME))} here, or package for x86_64"
        )
    out = Path(out)
    _check_package_target(out)
    source_bundle = resolve_bundle(bundle)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage, wheels = Path(tmp) / "stage", Path(tmp) / "wheels"
        stage.mkdir()
        for wheel in download_wheels(wheels, arch, python_version, [f"{n}=={v}" for n, v in versions.items()]):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(stage)
        _prune(stage)
        _copy_runtime(stage)
        bundle_path = stage / "bundle.zip"
        with zipfile.ZipFile(bundle_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", (source_bundle.path / "manifest.json").read_bytes() if source_bundle.path.is_dir()
                             else zipfile.ZipFile(source_bundle.path).read("manifest.json"))
            for name, data in source_bundle.files.items():
                archive.writestr(name, data)
        unzipped = _tree_size(stage)
        if unzipped > LAMBDA_UNZIPPED_LIMIT:
            raise PackageError(f"unzipped package is {unzipped / 2**20:.1f} MiB, over Lambda's 250 MiB limit")
        tmp_zip = out.with_name(f".{out.name}.tmp")
        with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for path in sorted(stage.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(stage).as_posix())
        os.replace(tmp_zip, out)
    return {
        "zip": str(out), "arch": arch, "python": python_version, "zipped_bytes": out.stat().st_size,
        "unzipped_bytes": unzipped, **versions, "bundle": source_bundle.name, "bundle_sha256": source_bundle.sha256,
        "handler": "cai_edge.scale_out.aws.handler.handler",
    }


def run(args: argparse.Namespace) -> int:
    info = build_package(args.out, args.bundle, args.arch, args.python_version)
    print(f"{info['zip']}: {info['zipped_bytes'] / 2**20:.1f} MiB zipped, {info['unzipped_bytes'] / 2**20:.1f} MiB unzipped "
          f"(limit 250 MiB); {info['arch']}, Python {info['python']}, numpy {info['numpy']}, onnxruntime {info['onnxruntime']}, "
          f"bundle {info['bundle']}; handler {info['handler']}")
    return 0
