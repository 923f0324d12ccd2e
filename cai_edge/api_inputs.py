"""What the Python API accepts, made into the arrays the model takes: units honoured, masks honoured.

* Images: a plain array is in nanomaggies. An astropy ``Quantity`` is converted: a flux density
  (``uJy``, ``Jy``, ``erg/s/cm²/Hz`` …) with 1 nanomaggy = 3.631 µJy (AB), ``nanomaggy``/``maggy``
  by their ratio; anything else (``mag``, ``s``, a dimensionless Quantity …) is refused: a
  Quantity that says nothing about flux is not taken for nanomaggies. Masked pixels
  (``numpy.ma``, astropy ``Masked``) become NaN, so a mask in the central 32×32 gives ``nonfinite_pixels``.
* Magnitudes: a plain array, a ``Quantity`` in ``mag`` or AB magnitudes (``u.ABmag``), or an
  astropy ``Table``/``QTable`` whose columns are found under the names ``--catalog`` accepts
  (``mag_u``, ``u``, ``modelMag_u``, ``dered_u`` …). Flux units, other magnitude systems
  (``u.STmag``, ``mag(ct)``) and a dimensionless Quantity are refused, never read as AB
  magnitudes (a table column with an empty unit is read as ``--catalog`` reads it). Masked values become NaN: that galaxy is ``missing_magnitudes``.
* Ids: text; ``bytes`` (as from a FITS or NumPy ``S`` column) are decoded from UTF-8 as the
  catalogs decode them, anything else is written as ``str`` gives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cai_edge.errors import InputError
from cai_edge.io.fits_conventions import JY_PER_NANOMAGGY
from cai_edge.io.status import BAD_MAGNITUDES, BAD_SHAPE, WRONG_UNITS

IMAGE_COLUMNS = ("image", "images", "cutout", "cutouts")


def _unmasked(values: Any) -> np.ndarray:
    """Masked entries as NaN (float), from numpy masked arrays, astropy Masked and MaskedColumn."""
    mask = getattr(values, "mask", None)
    if mask is not None and np.any(mask):
        data = np.array(getattr(values, "unmasked", None) if hasattr(values, "unmasked") else np.ma.getdata(values), dtype=np.float64)
        data[np.broadcast_to(np.asarray(mask, dtype=bool), data.shape)] = np.nan
        return data
    if hasattr(values, "unmasked"):
        values = values.unmasked
    return np.asarray(np.ma.getdata(values))


def image_array(images: Any) -> np.ndarray:
    """Images in nanomaggies as a float array; :class:`InputError` ``wrong_units`` for units that are not a flux."""
    unit = getattr(images, "unit", None)
    if unit is None:
        return _unmasked(images)
    import astropy.units as u

    values = _unmasked(getattr(images, "value", images))
    if unit == u.dimensionless_unscaled:
        raise InputError(WRONG_UNITS, "images are a dimensionless Quantity, which says nothing of their flux units; "
                                      "give nanomaggies (a Quantity in nanomaggy, or a plain array) or a flux density (uJy, Jy …)")
    if unit.is_equivalent(u.Jy):
        return values * unit.to(u.Jy) / JY_PER_NANOMAGGY
    if unit.is_equivalent(u.nanomaggy) and not isinstance(unit, u.MagUnit):
        return values * unit.to(u.nanomaggy)
    raise InputError(WRONG_UNITS, f"images have unit {unit.to_string()}, which is not a flux; give nanomaggies, "
                                  "a flux density (uJy, Jy …) or a plain array in nanomaggies")


def magnitude_array(magnitudes: Any, column: bool = False) -> np.ndarray:
    """Magnitudes as float (masked → NaN); a flux or other non-magnitude unit is refused (``bad_magnitudes``).

    A dimensionless Quantity is refused too, unless it is a table ``column``: a catalog column
    with an empty unit is read as ``--catalog`` reads it.
    """
    from cai_edge.io.catalog_columns import magnitude_unit_problem

    unit = getattr(magnitudes, "unit", None)
    if unit is not None:
        import astropy.units as u

        if unit == u.dimensionless_unscaled and not column:  # a ratio or a bare number: not declared a magnitude
            raise InputError(BAD_MAGNITUDES, "the magnitudes are a dimensionless Quantity, not magnitudes: give u.mag or "
                                             "u.ABmag, or a plain array of AB magnitudes")
        problem = magnitude_unit_problem(unit, "magnitudes")
        if problem:
            raise InputError(BAD_MAGNITUDES, problem.replace("column magnitudes has", "the magnitudes have"))
        magnitudes = getattr(magnitudes, "value", magnitudes)
    try:
        return np.asarray(_unmasked(magnitudes), dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(BAD_MAGNITUDES, "magnitudes are not numbers") from None


def galaxy_ids(ids: Any, n: int) -> list[str]:
    """One id per galaxy as text (default ``0 … n-1``); bytes decoded as the catalogs decode them."""
    from cai_edge.io.catalog import cell_text

    return [cell_text(i) if isinstance(i, bytes) else str(i) for i in (ids if ids is not None else range(n))]


def is_table(value: Any) -> bool:
    try:
        from astropy.table import Table
    except ImportError:  # pragma: no cover - astropy is a runtime dependency
        return False
    return isinstance(value, Table)


@dataclass
class TableInputs:
    """What a table gives: ``(N,5)`` magnitudes, ids, z_spec, the declared system, its image column and the rest."""

    magnitudes: np.ndarray
    ids: list[str] | None
    z_spec: np.ndarray | None
    system: str
    image_column: str | None
    used: tuple[str, ...]  # columns read as id, magnitudes, z_spec or images (the rest pass through)


def table_inputs(table, columns: dict[str, str] | None = None) -> TableInputs:
    """Map a Table/QTable's columns as ``--catalog`` does (``columns``: the ``--columns`` overrides)."""
    from cai_edge.io.catalog import cell_text, declared_system, table_column_floats
    from cai_edge.io.catalog_columns import CatalogColumnsError, check_magnitude_units, resolve_columns

    image_column = next((c for c in table.colnames if c.lower() in IMAGE_COLUMNS), None)
    names = [c for c in table.colnames if c != image_column]
    try:
        mapped = resolve_columns(names, "the table", columns, need_id=False, api=True)
        check_magnitude_units(table, mapped.magnitudes, "the table")
    except CatalogColumnsError as exc:
        raise InputError(BAD_MAGNITUDES if "unit" in str(exc) else BAD_SHAPE, str(exc)) from None
    mags = np.stack([magnitude_array(table[c], column=True) for c in mapped.magnitudes], axis=1)
    ids = [cell_text(v) for v in table[mapped.id]] if mapped.id else None
    z = table_column_floats(table, mapped.z_spec) if mapped.z_spec else None
    used = tuple(c for c in (mapped.id, *mapped.magnitudes, mapped.z_spec, image_column) if c)
    return TableInputs(mags, ids, z, declared_system(table) or mapped.implied_system, image_column, used)
