"""One galaxy as read from any input: its prepared arrays, or why it has none."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cai_edge.results.ids import describe_id, stand_in_id
from cai_edge.io.status import BAD_ID, OK


@dataclass
class GalaxyRecord:
    """``image`` (5,32,32) float32 and ``magnitudes`` (5,) float32 when ``status == "ok"``, else None."""

    id: str
    source: str
    image: np.ndarray | None = None
    magnitudes: np.ndarray | None = None
    z_spec: float = math.nan
    status: str = OK
    message: str = ""
    flags: tuple[str, ...] = ()  # see cai_edge.flags
    magnitude_system: str = ""  # as the input declares it (header MAGSYS, catalog); empty when undeclared
    extra: dict[str, str] = field(default_factory=dict)  # other columns of the table beside the images, as text (--keep-columns)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @classmethod
    def failed(cls, id: str, source: str, status: str, message: str, z_spec: float = math.nan,
               extra: dict[str, str] | None = None) -> "GalaxyRecord":
        """A record with no prediction: ``status`` says why, ``message`` says it for a person."""
        return cls(id=id, source=source, z_spec=z_spec, status=status, message=message, extra=extra or {})

    def with_unwritable_id(self, problem: str) -> "GalaxyRecord":
        """This galaxy as a ``bad_id`` row under a stand-in id (:func:`cai_edge.results.ids.stand_in_id`), saying why."""
        return GalaxyRecord.failed(stand_in_id(self.id), self.source, BAD_ID,
                                   f"the id {describe_id(self.id)} cannot be written exactly: {problem}; this row carries a stand-in id",
                                   self.z_spec)
