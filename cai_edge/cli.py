"""The ``cai-edge`` command line.

This module is imported by every invocation, so it stays torch-free: each sub-command
declares its arguments here and names the module that runs it, which is imported only when
that command runs. Toolchain commands therefore cost nothing (and need no torch) until used.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

from cai_edge._version import __version__
from cai_edge.backend_names import BACKENDS, default_backend
from cai_edge.errors import CaiEdgeError, CaiEdgeWarning

BACKEND_CHOICES = BACKENDS

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


_SHARD_HELP = ("I/N: read every N-th input file starting at I, counting from 0 (0/N … N-1/N); slurm: this Slurm array task's "
               "shard (--array=1-N, 0-(N-1) or stepped); auto: slurm inside an array job, else everything")


def _partition_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="folders, globs, FITS cutouts or partitions")
    p.add_argument("--out", required=True, help="output folder for the partitions and manifest.json")
    p.add_argument("--size-mb", type=float, default=25, help="target partition size in MB (CAI used 25, 50, 75, 100)")
    p.add_argument("--format", choices=["npz", "fits"], default="npz")
    p.add_argument("--catalog", help="CSV/ECSV/FITS table with id, mag_u … mag_z (and z_spec), joined on file stem")
    p.add_argument("--columns", metavar="MAP", help="catalog columns under other names: id=OBJ,mag_u=MU,…,mag_z=MZ,z_spec=ZS")
    p.add_argument("--shard", type=_shard, help=_SHARD_HELP + "; shard I writes OUT/shard-I-of-N/")
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


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="weights file (default: the package's reference weights)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mae-epochs", type=int, default=5)
    p.add_argument("--finetune-epochs", type=int, default=12, help="also used for the magnitude-only baseline")
    p.add_argument("--limit", type=int, help="train on the first N training galaxies only (smoke runs)")
    p.add_argument("--eval-limit", type=int, help="validation/test galaxies to use (smoke runs)")
    p.add_argument("--threads", type=int, help="torch threads (default: the cores this process may use)")


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="sdss:test, sdss:validation[:N], or labelled files/folders (z_spec)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--weights", help="safetensors/CAI checkpoint (default: the reference weights)")
    source.add_argument("--bundle", help="an ONNX bundle (directory, .zip or name)")
    p.add_argument("--seed", type=int, default=0, help="render seed for sdss:* data")
    p.add_argument("--plot", help="write a z_pred vs z_spec PNG here")


def _export_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument("--weights", help="safetensors weights with a JSON sidecar (default: the reference weights)")
    source.add_argument("--checkpoint", help="a CAI checkpoint (pickled DataParallel model or state dict), read safely")
    p.add_argument("--out", help="bundle directory to write (default: the user bundle folder, ~/.cache/cai-edge/bundles/NAME)")
    p.add_argument("--name", help="bundle name prefix (default astromae-sdss, or astromae-cai for --checkpoint)")
    p.add_argument("--zip", action="store_true", help="also write BUNDLE_DIR.zip, the single-file bundle")
    p.add_argument("--validation-limit", type=int, help="validation galaxies for the manifest metrics (default: all)")


def _bundle_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["inspect", "verify", "list"],
                   help="inspect: a short summary (--json: the manifest); verify: check and exit 0/2; list: every bundle a name resolves to")
    p.add_argument("path", nargs="?", help="bundle directory, .zip or name (inspect, verify)")
    p.add_argument("--json", action="store_true", help="inspect: print the whole manifest as JSON instead of a summary")


def _quantize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="the fp32 bundle (directory, .zip or name)")
    p.add_argument("--to", required=True, choices=["fp16", "int8-dynamic", "int8-static"])
    p.add_argument("--out", help="bundle directory to write (default: the user bundle folder, ~/.cache/cai-edge/bundles/NAME)")
    p.add_argument("--calibration", default="sdss:train:512", help="int8-static calibration data: training split only")
    p.add_argument("--calibration-size", type=int, default=512, help="calibration galaxies (at least 500)")
    p.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="minmax")
    p.add_argument("--validation", default="sdss:validation", help="data for the accuracy gate")
    p.add_argument("--debug", action="store_true", help="report per-tensor SQNR (int8-static)")
    p.add_argument("--zip", action="store_true", help="also write the single-file .zip bundle")
    p.add_argument("--float-convs", action="store_true",
                   help="int8-static: keep every convolution float from the first attempt (on AVX2 CPUs ONNX Runtime's "
                        "int8 convolutions run slower than float ones; the shipped default is built this way)")


def _shard(text: str):
    from cai_edge.scale_out.slurm import parse_shard  # torch-free

    return parse_shard(text)


def _positive(text: str) -> int:
    from cai_edge.commands.predict import positive_int  # torch-free

    return positive_int(text)


def _column_names(text: str) -> tuple[str, ...]:
    from cai_edge.results.rows import COLUMNS, PDF_COLUMN

    names = tuple(n.strip() for n in text.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"--keep-columns takes distinct column names separated by commas, e.g. ra,dec; got {text!r}")
    taken = [n for n in names if n in (*COLUMNS, PDF_COLUMN)]
    if taken:
        raise argparse.ArgumentTypeError(f"--keep-columns: {', '.join(taken)} is a result column of its own; rename it in the catalog")
    return names


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="folders (recursive), globs, FITS cutouts, NPZ/FITS partitions, CAI .pt")
    p.add_argument("--bundle", default="default", help="bundle path or name (default: the bundle shipped with cai-edge)")
    p.add_argument("--catalog", help="CSV/ECSV/FITS with id, mag_u … mag_z[, z_spec], joined on the cutout file stem "
                                     "(also objID, u … z, modelMag_u …, dered_u …, z / redshift)")
    p.add_argument("--columns", metavar="MAP", help="catalog columns under other names: id=OBJ,mag_u=MU,…,mag_z=MZ,z_spec=ZS")
    p.add_argument("--out", default="predictions.csv",
                   help="output file; the format follows the extension: .csv, .ecsv, .fits, .parquet "
                        "(default: predictions.csv); - writes CSV to standard output")
    p.add_argument("--format", choices=["csv", "ecsv", "fits", "parquet"], help="override the format")
    p.add_argument("--batch-size", type=_positive, default=256, help="galaxies per model call (≥ 1; default 256)")
    p.add_argument("--threads", type=_positive, help="ONNX Runtime threads (default: the cores this process may use)")
    p.add_argument("--provider", default="cpu", help="auto, cpu, cuda, tensorrt, coreml, openvino … (default cpu)")
    p.add_argument("--backend", choices=BACKEND_CHOICES,
                   help="what runs the model on the CPU: auto (ONNX Runtime, or OpenVINO where the openvino extra is installed and a "
                        "probe measures it faster here; the default, unless $CAI_EDGE_BACKEND names another), onnxruntime (the "
                        "reference engine's redshifts), openvino, openvino-bf16")
    p.add_argument("--shard", type=_shard, help=_SHARD_HELP)
    p.add_argument("--pdf", action="store_true",
                   help="also write each galaxy's p(z) as redshift quantiles (z_quantiles; an array column in FITS, ECSV and Parquet)")
    p.add_argument("--keep-columns", metavar="NAMES", type=_column_names, default=(),
                   help="carry these columns of --catalog, or of the table beside a file's images, into the output: ra,dec,…")
    p.add_argument("--magnitude-system", metavar="NAME", type=_magnitude_system,
                   help="what the input magnitudes are, overriding what headers and catalogs declare: "
                        "sdss_model, dereddened, petrosian, cmodel, psf or fiber")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted or earlier run on the same --out: keep its ok rows (and those of a killed run), retry the rest")
    p.add_argument("--dask", metavar="ADDRESS", help="run on a Dask cluster: a scheduler address (tcp://host:8786), or local:N "
                                                      "for N single-thread worker processes here; tasks predict shards, then merge")
    p.add_argument("--dask-tasks", type=_positive, metavar="N", help="with --dask: number of tasks (default: 4 per worker thread)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _calibrate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="the bundle to calibrate (directory, .zip or name)")
    p.add_argument("--data", required=True, nargs="+", help="labelled galaxies (cutouts or partitions with z_spec), or sdss:validation")
    p.add_argument("--catalog", help="catalog with id, mag_u … mag_z, z_spec for cutout folders")
    p.add_argument("--out", help="bundle directory to write (default: the user bundle folder under the bundle's --name)")
    p.add_argument("--domain-data", help="training-like galaxies (magnitudes and images) for the domain checks (e.g. sdss:train); default: keep the bundle's, or use --data")
    p.add_argument("--name", help="name of the new bundle (default: the input bundle's name + '-calibrated')")
    p.add_argument("--threads", type=_positive, help="ONNX Runtime threads")


def _lambda_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["package"], help="package: build the deployment zip")
    p.add_argument("--bundle", default="default", help="bundle to ship inside the zip (path or name)")
    p.add_argument("--arch", choices=["x86_64", "arm64"], default="x86_64")
    p.add_argument("--python-version", help="target Lambda Python X.Y (default: 3.13, the runtime deploy/template.yaml deploys)")
    p.add_argument("--out", default="dist/cai-edge-lambda.zip")


def _fanout_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--local", action="store_true", required=True, help="run the fan-out here (process pool)")
    p.add_argument("input_prefix", help="s3://bucket/parts/ or a local folder of NPZ partitions")
    p.add_argument("output_prefix", help="s3://bucket/results/run1/ or a local folder")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (MinIO, moto …); also read from AWS_ENDPOINT_URL")
    p.add_argument("--workers", type=int, help="processes (default: the cores this process may use)")
    p.add_argument("--bundle", help="bundle for the handler (default: CAI_EDGE_BUNDLE or the shipped default)")


def _merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="OUTPUT", help="outputs of cai-edge predict (any format), in order: the first source of an id keeps it")
    p.add_argument("--out", required=True, help="the merged output; the format follows the extension (.csv, .ecsv, .fits, .parquet)")
    p.add_argument("--format", choices=["csv", "ecsv", "fits", "parquet"], help="override the format")


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, nargs="+", help="labelled data: NPZ partitions with z_spec, or cutouts with --catalog")
    p.add_argument("--catalog", help="catalog with id, mag_u … mag_z, z_spec for cutout folders")
    p.add_argument("--bundles", help="comma-separated bundle names or paths, or variants (fp32, fp16, int8-dynamic, int8-static); "
                                      "default: every bundle that resolves (cai-edge bundle list), one per model")
    p.add_argument("--tiers", default="laptop,edge-1t,edge-4t,lambda-1769,lambda-3008,lambda-10240",
                   help="comma-separated device tiers: laptop, edge-1t, edge-4t, lambda-<memory MB> (e.g. lambda-1769, lambda-3008, lambda-10240)")
    p.add_argument("--lambda-results", help="folder or s3:// prefix of handler metrics JSONs: real Lambda figures replace emulated ones")
    p.add_argument("--out", required=True, help="report folder: report.json, report.md, plots")


COMMANDS: list[Command] = [
    Command(
        "compare",
        "compare bundles across device tiers: accuracy, throughput, latency, cold start, memory, cost",
        _compare_arguments,
        "cai_edge.commands.compare:run",
    ),
    Command(
        "lambda",
        "build the AWS Lambda deployment zip (numpy + onnxruntime + the runtime + a bundle; no torch)",
        _lambda_arguments,
        "cai_edge.scale_out.aws.package:run",
    ),
    Command(
        "fanout",
        "run the Step Functions fan-out locally: initialize → handler per partition → summarize",
        _fanout_arguments,
        "cai_edge.scale_out.aws.fanout:run",
    ),
    Command(
        "predict",
        "predict redshifts for galaxies in folders, files or partitions (one row per object, with a status)",
        _predict_arguments,
        "cai_edge.commands.predict:run",
    ),
    Command(
        "merge",
        "merge outputs of shards, array tasks or Dask tasks into one (same bundle checked; duplicates settled; streamed)",
        _merge_arguments,
        "cai_edge.scale_out.merge:run",
    ),
    Command(
        "quantize",
        "quantize an fp32 bundle to fp16 / int8-dynamic / int8-static, gated on photo-z accuracy [toolchain]",
        _quantize_arguments,
        "cai_edge.quantize.cli:run",
    ),
    Command(
        "export",
        "export AstroMAE to a verified fp32 ONNX bundle, checked against PyTorch [toolchain: export extra]",
        _export_arguments,
        "cai_edge.export.cli:run",
    ),
    Command(
        "calibrate",
        "fit a bundle's per-galaxy redshift uncertainty and training domain on labelled galaxies",
        _calibrate_arguments,
        "cai_edge.commands.calibrate:run",
    ),
    Command(
        "bundle",
        "list the bundles names resolve to; inspect or verify one (sha256, schema, interface, calibration)",
        _bundle_arguments,
        "cai_edge.commands.bundle:run",
    ),
    Command(
        "train",
        "train reference AstroMAE weights: MAE pretraining + fine-tuning on simulated images [toolchain: train extra]",
        _train_arguments,
        "cai_edge.models.train:run",
    ),
    Command(
        "evaluate",
        "photo-z metrics (σ_NMAD, bias, outliers; coverage, PIT, CRPS for calibrated bundles) on labelled data, as JSON [toolchain]",
        _evaluate_arguments,
        "cai_edge.models.evaluate:run",
    ),
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
        epilog='Commands marked [toolchain] need the build extras: from a cai-edge checkout, pip install -e ".[export,train]".',
    )
    parser.add_argument("--version", action="version", version=f"cai-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(_target=command.target)
    return parser


def _magnitude_system(text: str) -> str:
    """argparse type for ``--magnitude-system``: a known system (or a spelling of one), else a usage error listing them."""
    from cai_edge.magnitude_systems import ALIASES, canonical

    name = canonical(text)
    if name not in ALIASES:
        raise argparse.ArgumentTypeError(f"unknown magnitude system {text!r}; known: {', '.join(ALIASES)}")
    return name


# A command's own extra when it has one: `train` needs torch from the train extra, not export.
_EXTRA_FOR_COMMAND = {"train": "train"}


def install_hint(module: str, command: str | None = None) -> str:
    """How to get an optional dependency: the extra that brings it, installed from a cai-edge checkout."""
    extra = _EXTRA_FOR_COMMAND.get(command or "", _EXTRA_FOR_MODULE[module])
    return f'from a cai-edge checkout: pip install -e ".[{extra}]" (the {extra} extra brings {module})'


def _run(target: str, args: argparse.Namespace) -> int:
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
        return int(getattr(module, func_name)(args) or EXIT_OK)
    except ModuleNotFoundError as exc:  # at import or deep inside the command (evaluate → render → galsim)
        missing = (exc.name or "").split(".")[0]
        if missing in _EXTRA_FOR_MODULE:
            print(f"error: `cai-edge {args.command}` needs {missing}, which this install lacks; {install_hint(missing, args.command)}",
                  file=sys.stderr)
            return EXIT_USAGE
        raise


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning) -> None:
    """cai-edge's own warnings as ``warning: …`` lines, like its errors; any other as Python shows it."""
    if issubclass(category, CaiEdgeWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: Sequence[str] | None = None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # to say the exact command that resumes a run
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    if hasattr(args, "backend") and args.backend is None:  # the environment's default engine, checked before any work
        try:
            args.backend = default_backend()
        except ValueError as exc:
            parser.error(str(exc))
    try:
        return _run(args._target, args)
    except CaiEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
