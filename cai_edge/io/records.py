"""One galaxy as read from any input: its prepared arrays, or why it has none."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cai_edge.results.ids import describe_id, stand_in_id
from cai_edge.io.status import BAD_ID, OK


@dataclass
class GalaxyRecord:
    """One galaxy as read from any input: its prepared arrays, or why it has none.

    Parameters
    ----------
    id : str
        The galaxy's id, as text exactly as given (file stem, catalog or partition id).
    source : str
        Where it was read: a file, or ``file:row`` inside a partition.
    image : numpy.ndarray or None
        ``(5, 32, 32)`` float32 nanomaggies, bands u,g,r,i,z, when ``status`` is ``ok``.
    magnitudes : numpy.ndarray or None
        ``(5,)`` float32 magnitudes when ``status`` is ``ok``.
    z_spec : float
        The known redshift, NaN when the input has none.
    status : str
        ``ok``, or why there is no prediction (:mod:`cai_edge.io.status`).
    message : str
        What a person should know: why it failed, or a note (a crop half a pixel off, a catalog
        that overrode the file's magnitudes).
    flags : tuple of str
        Flags already known when reading (``magnitude_conflict``, a declared pixel scale:
        ``image_out_of_domain``); :func:`cai_edge.estimates.estimate` adds its own.
    magnitude_system : str
        The magnitude system the input declares (header ``MAGSYS``, catalog), empty when undeclared.
    extra : dict of str to str
        Other columns of the table beside the images, as text (``--keep-columns``).
    """

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
        """Whether the galaxy was read and prepared (``status == "ok"``)."""
        return self.status == OK

    @classmethod
    def failed(cls, id: str, source: str, status: str, message: str, z_spec: float = math.nan,
               extra: dict[str, str] | None = None) -> "GalaxyRecord":
        """A record with no prediction: ``status`` says why, ``message`` says it for a person.

        Parameters
        ----------
        id, source : str
            The galaxy's id and where it was read, as in the class.
        status : str
            Why there is no prediction (:mod:`cai_edge.io.status`).
        message : str
            The same for a person.
        z_spec : float, optional
            The known redshift, kept in the row.
        extra : dict of str to str, optional
            Kept input columns.

        Returns
        -------
        GalaxyRecord
            The failed record.
        """
        return cls(id=id, source=source, z_spec=z_spec, status=status, message=message, extra=extra or {})

    def with_unwritable_id(self, problem: str) -> "GalaxyRecord":
        """This galaxy as a ``bad_id`` row under a stand-in id, saying why.

        Parameters
        ----------
        problem : str
            Why the id cannot be written exactly (the output format's limit).

        Returns
        -------
        GalaxyRecord
            A failed record whose message names the original id.
        """
        return GalaxyRecord.failed(stand_in_id(self.id), self.source, BAD_ID,
                                   f"the id {describe_id(self.id)} cannot be written exactly: {problem}; this row carries a stand-in id",
                                   self.z_spec)
