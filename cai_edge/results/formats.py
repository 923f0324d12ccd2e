"""What each output format is, what it needs installed, and what ids it can hold exactly.

Measured by reading back what astropy writes (the property test in ``tests/test_safety.py``):

* CSV holds any id (quoted as RFC 4180 says: line breaks, commas, quotes, NUL, any Unicode);
* Parquet holds any id but one with NUL (astropy's writer cuts it there);
* ECSV cuts blanks at either end, reads an empty id as masked, a leading ``#`` as a comment line,
  and every line break but ``\\n`` as a new row; around a ``\\n`` inside an id it drops blank lines,
  blanks at either side and a line starting with ``#`` (astropy reads ECSV line by line,
  stripped): such ids are refused (:func:`ecsv_keeps_lines`);
* FITS holds printable-or-control ASCII with no trailing blank, and not the empty id.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cai_edge.errors import CaiEdgeError
from cai_edge.results.ids import bounded, describe_id, general_id_problem


FITS_NAME_CHARS = 68  # a string value in one 80-character header card


class OutputError(CaiEdgeError):
    """The output cannot be written or read back."""


def ecsv_keeps_lines(text: str) -> bool:
    """Whether ECSV (through astropy) reads back the ``\\n`` line breaks of ``text`` and the lines around them exactly.

    astropy strips every line of an ECSV file and skips blank and ``#`` lines before it parses the
    quoted fields, so inside a field no line after a ``\\n`` may start with a blank or ``#``, none
    before one may end with a blank, and no line between two may be empty.
    """
    lines = text.split("\n")
    return (all(line == line.rstrip() for line in lines[:-1]) and all(lines[1:-1])
            and all(line == line.lstrip() and not line.startswith("#") for line in lines[1:]))


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

    def id_problem(self, galaxy_id: object) -> str | None:
        """Why this format cannot hold ``galaxy_id`` exactly (ids are never altered), or None."""
        problem = general_id_problem(galaxy_id)
        if problem or self.name == "csv":
            return problem
        assert isinstance(galaxy_id, str)
        if self.name == "parquet":
            return "Parquet (through astropy) cuts an id at a NUL character" if "\0" in galaxy_id else None
        if self.name == "ecsv":
            if not galaxy_id or galaxy_id != galaxy_id.strip():
                return "ECSV loses blanks at either end of an id and reads an empty id as missing"
            if galaxy_id.startswith("#"):
                return "ECSV reads a line starting with # as a comment"
            if len(("a" + galaxy_id + "a").replace("\n", "").splitlines()) > 1:
                return "ECSV reads a line break other than \\n inside an id as the end of a row"
            if not ecsv_keeps_lines(galaxy_id):
                return ("ECSV drops blank lines, blanks next to a line break and lines starting with # inside an id "
                        "(it reads each line stripped)")
            return None
        if not galaxy_id.isascii():
            return "FITS tables hold ASCII text only"
        if not galaxy_id or galaxy_id != galaxy_id.rstrip():
            return "FITS tables lose blanks at the end of an id and read an empty id as missing"
        return None

    def column_name_problem(self, name: str) -> str | None:
        """Why this format cannot hold a kept input column (``--keep-columns``) named ``name``, or None.

        Every format: printable (a line break in a name breaks the CSV and ECSV column lines; one
        rule for all). FITS: a ``TTYPE`` card value, printable ASCII of at most 68 characters (a
        quote counts twice), no trailing blank.
        """
        if not name.isprintable():
            return "a column name must be printable (no line breaks, tabs or other control characters)"
        if self.name != "fits":
            return None
        if not name.isascii():
            return "FITS column names (TTYPE) hold ASCII only"
        if len(name.replace("'", "''")) > FITS_NAME_CHARS or name != name.rstrip():
            return f"a FITS column name (TTYPE) holds at most {FITS_NAME_CHARS} characters (a ' counts twice), without trailing blanks"
        return None

    def check_column_names(self, names: Sequence[str]) -> None:
        """Raise :class:`OutputError` before the run for a ``--keep-columns`` name this format cannot hold."""
        for name in names:
            problem = self.column_name_problem(name)
            if problem:
                others = [f".{n}" for n in ("csv", "parquet", "ecsv") if n != self.name and FORMATS[n].column_name_problem(name) is None]
                hint = f"; write {', '.join(others)} instead, or rename the column in the catalog" if others else "; rename the column in the catalog"
                raise OutputError(f"--keep-columns {describe_id(name)}: {self.name.upper()} cannot hold this column name: {problem}{hint}")

    def check_id(self, galaxy_id: str, source: str) -> None:
        """Raise :class:`OutputError` if this format cannot hold ``galaxy_id`` (for ids known before the run)."""
        problem = self.id_problem(galaxy_id)
        if problem:
            others = ", ".join(f".{n}" for n in ("csv", "parquet", "ecsv") if n != self.name and FORMATS[n].id_problem(galaxy_id) is None)
            hint = f" Write {others} instead, which hold{'s' if ',' not in others else ''} this id." if others else ""
            raise OutputError(f"the id {describe_id(galaxy_id)} (from {bounded(source, 300)}) cannot be written to "
                              f"{self.name.upper()}: {problem}.{hint}")


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
