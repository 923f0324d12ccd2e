"""Galaxy ids and the text of a row: what each can hold, and how long it may be.

An id is never altered: every output format must read back exactly the id it was given, so an id
a format cannot hold is refused — before the run when it comes from a file name, or as that
galaxy's ``bad_id`` row when it comes from inside a partition or catalog. Such a row carries a
stand-in id (``unusable-id-`` and 16 hex digits of the id's sha256: distinct ids never merge)
and says in its message what the id began with.

Bounds (one odd value never costs more than its own row):

* ids: at most :data:`MAX_ID_CHARS` characters;
* messages: at most :data:`MAX_MESSAGE_CHARS` characters, longer ones cut and marked as cut;
* sources (paths): at most :data:`MAX_SOURCE_CHARS` characters, likewise.
"""

from __future__ import annotations

import hashlib

MAX_ID_CHARS = 1024
MAX_MESSAGE_CHARS = 2000
MAX_SOURCE_CHARS = 4096
STAND_IN_PREFIX = "unusable-id-"


def general_id_problem(galaxy_id: object) -> str | None:
    """Why no output format can hold ``galaxy_id``, or None."""
    if not isinstance(galaxy_id, str):
        return f"an id must be text, got {type(galaxy_id).__name__}"
    if len(galaxy_id) > MAX_ID_CHARS:
        return f"the id has {len(galaxy_id):,} characters; ids may have at most {MAX_ID_CHARS:,}"
    try:
        galaxy_id.encode("utf-8")
    except UnicodeEncodeError:
        return "the id is not valid Unicode (a file name whose bytes are not UTF-8?)"
    return None


def stand_in_id(galaxy_id: str) -> str:
    """The id written for a galaxy whose own id cannot be: the same for the same id, distinct for distinct ids."""
    digest = hashlib.sha256(galaxy_id.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]
    return STAND_IN_PREFIX + digest


def describe_id(galaxy_id: str, limit: int = 80) -> str:
    """A short, printable, escaped rendering of an id for messages."""
    shown = ascii(galaxy_id[:limit])
    return shown + (f" … ({len(galaxy_id):,} characters)" if len(galaxy_id) > limit else "")


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = limit - 40  # the note takes at most 40 characters
    return text[:keep] + f" … [{len(text) - keep:,} characters cut]"


def printable_line(text: str) -> str:
    """A message for people on one line: line breaks and other control characters become spaces."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else " " for c in text)
