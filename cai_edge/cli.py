"""The ``cai-edge`` command line.

This module is imported by every invocation, so it stays torch-free: each sub-command
declares its arguments here and names the module that runs it, which is imported only when
that command runs. Toolchain commands therefore cost nothing (and need no torch) until used.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from cai_edge._version import __version__
from cai_edge.errors import CaiEdgeError

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2

# Which optional extra provides each third-party module a toolchain command may need.
_EXTRA_FOR_MODULE = {"torch": "export", "sklearn": "train", "onnx": "export", "safetensors": "export", "galsim": "train", "boto3": "aws"}


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    target: str  # "package.module:function", called with the parsed namespace; returns an exit code


def _checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="CAI .pt (pickled DataParallel model), a torch state dict, or safetensors")
    p.add_argument("--out", required=True, help="where to write the weights as safetensors (float32)")


def _partition_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="folders, globs, FITS cutouts or partitions")
    p.add_argument("--out", required=True, help="output folder for the partitions and manifest.json")
    p.add_argument("--size-mb", type=float, default=25, help="target partition size in MB (CAI used 25, 50, 75, 100)")
    p.add_argument("--format", choices=["npz", "fits"], default="npz")
    p.add_argument("--catalog", help="CSV/ECSV/FITS table with id, mag_u … mag_z (and z_spec), joined on file stem")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _render_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="CSV/ECSV/FITS with id, mag_u … mag_z, z_spec; or sdss:train|validation|test|all")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="images are deterministic per (seed, id)")
    p.add_argument("--limit", type=int, help="render only the first N usable rows")
    p.add_argument("--format", choices=["fits", "npz"], default="fits", help="FITS cutout per galaxy, or NPZ partitions")
    p.add_argument("--size-mb", type=float, default=25, help="NPZ partition size")
    p.add_argument("--workers", type=int, help="processes (default: the cores this process may use)")
    p.add_argument("--no-noise", action="store_true", help="noise-free images (for tests and figures)")
    p.add_argument("--compress", action="store_true", help="RICE-compress FITS cutouts (fpack style, ~2x smaller)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


COMMANDS: list[Command] = [
    Command(
        "render",
        "render SIMULATED 5-band SDSS cutouts from real catalog photometry and redshifts [toolchain: train extra]",
        _render_arguments,
        "cai_edge.models.render:run",
    ),
    Command(
        "partition",
        "split cutouts into NPZ/FITS partitions of a target size, with a sha256 manifest",
        _partition_arguments,
        "cai_edge.commands.partition:run",
    ),
    Command(
        "checkpoint",
        "import a CAI or PyTorch AstroMAE checkpoint safely and write it as safetensors [toolchain]",
        _checkpoint_arguments,
        "cai_edge.models.checkpoint_cli:run",
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cai-edge",
        description="Run the AstroMAE galaxy-redshift model on laptops, edge nodes and AWS Lambda.",
        epilog="Commands marked [toolchain] need the build extras (pip install 'cai-edge[export]').",
    )
    parser.add_argument("--version", action="version", version=f"cai-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(_target=command.target)
    return parser


def _run(target: str, args: argparse.Namespace) -> int:
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in _EXTRA_FOR_MODULE:
            print(
                f"error: `cai-edge {args.command}` needs {missing}; "
                f"install it with: pip install 'cai-edge[{_EXTRA_FOR_MODULE[missing]}]'",
                file=sys.stderr,
            )
            return EXIT_USAGE
        raise
    return int(getattr(module, func_name)(args) or EXIT_OK)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        return _run(args._target, args)
    except CaiEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
