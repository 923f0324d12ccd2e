"""What each output format is, what it needs installed, and what text it can hold."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from cai_edge.errors import CaiEdgeError


class OutputError(CaiEdgeError):
    """The output cannot be written or read back."""


@dataclass(frozen=True)
class OutputFormat:
    name: str
    astropy_format: str
    ascii_only: bool = False  # FITS tables hold ASCII text only
    needs: tuple[str, ...] = ()

    def check_available(self) -> None:
        """Raise :class:`OutputError` now, before any work, if writing this format needs a missing package."""
        for module in self.needs:
            try:
                importlib.import_module(module)
            except ImportError:
                raise OutputError(
                    f"{self.name} output needs the {module} package: pip install {module} "
                    "(or, from a cai-edge checkout, pip install \".[parquet]\"); or choose .csv, .ecsv or .fits"
                ) from None

    def check_id(self, galaxy_id: str, source: str) -> None:
        """Ids are never altered, so an id this format cannot hold stops the run (before the model sees it)."""
        if self.ascii_only and not galaxy_id.isascii():
            raise OutputError(
                f"{self.name.upper()} tables hold ASCII text only, and the id {galaxy_id!r} (from {source}) is not ASCII. "
                "Write .ecsv, .csv or .parquet instead (they hold any Unicode id)."
            )


FORMATS = {
    "csv": OutputFormat("csv", "ascii.csv"),
    "ecsv": OutputFormat("ecsv", "ascii.ecsv"),
    "fits": OutputFormat("fits", "fits", ascii_only=True),
    "parquet": OutputFormat("parquet", "parquet", needs=("pyarrow",)),
}
SUFFIXES = {".csv": "csv", ".ecsv": "ecsv", ".fits": "fits", ".fit": "fits", ".parquet": "parquet"}


def output_format(path: Path, override: str | None = None) -> OutputFormat:
    """The format named by ``override``, else by the file extension (CSV when unknown)."""
    return FORMATS[override or SUFFIXES.get(Path(path).suffix.lower(), "csv")]
