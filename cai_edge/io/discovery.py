"""From what a user names on the command line to the data files to read.

Folders are searched recursively, following symbolic links to folders (a folder of links into
a data store is common) but never round a loop; ``**`` glob patterns are matched by the same
walk, so a ``-> .`` link cannot make them hang. Paths keep the names the user gave: a link
named ``NGC1234.fits`` is galaxy ``NGC1234``, whatever file it points to, and two links to one
file are two inputs. Anything that cannot be searched (a broken or looping link, a folder that
cannot be read, a name that matches nothing) becomes one ``unreadable`` record, never silence.
"""

from __future__ import annotations

import errno
import glob
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

from cai_edge.io.fits_cutouts import galaxy_id, is_fits
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.status import UNREADABLE

_GLOB_CHARS = set("*?[")
DATA_SUFFIXES = (".npz", ".pt")


def is_data_file(path: str | os.PathLike) -> bool:
    name = os.path.basename(os.fspath(path)).lower()
    return not name.startswith(".") and (is_fits(path) or name.endswith(DATA_SUFFIXES))


def _problem(path: str, message: str) -> GalaxyRecord:
    return GalaxyRecord.failed(galaxy_id(Path(path)), path, UNREADABLE, message)


class _Walk:
    """A recursive listing of one folder that follows folder links and reports what it cannot enter."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.problems: list[GalaxyRecord] = []
        self.folder_problems: list[GalaxyRecord] = []

    def run(self, top: str) -> "_Walk":
        try:
            st = os.stat(top or ".")
        except OSError as exc:
            self.folder_problems.append(_problem(top, f"cannot read folder ({type(exc).__name__}: {exc.strerror or exc})"))
            return self
        self._walk(top, [(st.st_dev, st.st_ino)])
        return self

    def _walk(self, top: str, stack: list[tuple[int, int]]) -> None:
        try:
            with os.scandir(top or ".") as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.folder_problems.append(_problem(top, f"cannot read folder ({type(exc).__name__}: {exc.strerror or exc})"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = os.path.join(top, entry.name) if top else entry.name
            try:
                st = os.stat(path)  # follows links
            except OSError as exc:
                if entry.is_symlink():
                    self.problems.append(_link_problem(path))
                else:
                    self.problems.append(_problem(path, f"cannot read ({type(exc).__name__}: {exc.strerror or exc})"))
                continue
            if entry.is_dir(follow_symlinks=True):
                key = (st.st_dev, st.st_ino)
                if key in stack:
                    self.folder_problems.append(_problem(path, f"symbolic link loop: {path} → {_readlink(path)} leads back into a folder being searched"))
                    continue
                self._walk(path, stack + [key])
            elif is_data_file(path):
                self.files.append(path)


def _link_problem(path: str) -> GalaxyRecord:
    try:
        os.stat(path)
        what = "symbolic link"  # it resolves after all (a race): still not readable here
    except OSError as exc:
        what = "symbolic link loop" if exc.errno == errno.ELOOP else "broken symbolic link"
    return _problem(path, f"{what}: {path} → {_readlink(path)}")


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _component_regex(part: str) -> str:
    out, i = [], 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = part.find("]", i + 2 if part[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = part[i + 1 : end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def glob_regex(pattern: str) -> re.Pattern:
    """A glob pattern with ``**`` (any number of folders) as a regular expression on ``/``-separated paths."""
    parts = pattern.split("/")
    regex = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            regex.append(".*" if last else "(?:[^/]+/)*")
        else:
            regex.append(_component_regex(part) + ("" if last else "/"))
    return re.compile("".join(regex) + r"\Z", re.DOTALL)


def _glob_base(pattern: str) -> str:
    parts = pattern.split("/")
    fixed = []
    for part in parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return "/".join(fixed) if fixed != [""] else "/"


def _expand_glob(pattern: str) -> tuple[list[str], list[GalaxyRecord]]:
    if "**" not in pattern:
        files, problems = [], []
        for match in sorted(glob.glob(pattern)):
            if os.path.isfile(match) and is_data_file(match):
                files.append(match)
            elif os.path.islink(match) and not os.path.exists(match):
                problems.append(_link_problem(match))
        return files, problems
    regex = glob_regex(pattern)
    walk = _Walk().run(_glob_base(pattern))
    files = [f for f in walk.files if regex.match(f)]
    problems = [p for p in walk.problems if regex.match(p.source)] + walk.folder_problems
    return files, problems


def find_data_files(
    inputs: Sequence[str | os.PathLike], exclude: Iterable[Path] = (), dropped: list[Path] | None = None
) -> tuple[list[str], list[GalaxyRecord]]:
    """Absolute (unresolved) data-file paths named by ``inputs``, as text, in a stable order, and a record per problem.

    ``exclude`` drops files (e.g. the output being written) from what folders and globs find;
    those actually dropped are appended to ``dropped``.
    """
    excluded = {os.path.abspath(p) for p in exclude}
    files: list[str] = []
    problems: list[GalaxyRecord] = []
    for item in inputs:
        text = os.fspath(item)
        if _GLOB_CHARS & set(text) and not os.path.lexists(text):
            found, trouble = _expand_glob(text)
            if not found and not trouble:
                trouble = [_problem(text, "no FITS/NPZ/.pt files match this pattern")]
        elif os.path.isdir(text):
            walk = _Walk().run(text)
            found, trouble = walk.files, walk.problems + walk.folder_problems
            if not found and not trouble:
                trouble = [_problem(text, "no FITS/NPZ/.pt files in this folder")]
        elif os.path.isfile(text):
            found, trouble = [text], []
        elif os.path.islink(text):
            found, trouble = [], [_link_problem(text)]
        else:
            found, trouble = [], [_problem(text, "no such file or folder")]
        for f in found:
            if os.path.abspath(f) in excluded:
                if dropped is not None:
                    dropped.append(Path(os.path.abspath(f)))
            else:
                files.append(os.path.abspath(f))
        problems.extend(trouble)
    first_problem: dict[str, GalaxyRecord] = {}
    for problem in problems:  # a path named twice (directly and through its folder) is one problem
        first_problem.setdefault(os.path.abspath(problem.source), problem)
    return list(dict.fromkeys(files)), list(first_problem.values())
