"""Hand the p(z) written by ``cai-edge predict --pdf`` to ``qp``, the format LSST DESC RAIL uses.

Each galaxy's p(z) is stored as redshifts at fixed cumulative probabilities (column
``z_quantiles``; the probabilities in the output's metadata ``z_quantile_levels``, FITS keyword
``ZQLEVELS``). The distribution they describe is the smooth curve of ``cai_edge.smooth_pz``
through those points (a monotone cubic in the Gaussian score through the interval bounds and the
median, with tails at least as heavy as the outermost quantiles), truncated at z = 0
(``cai_edge.smooth_pz.Z_MIN``): its first quantile is never below 0.

:func:`to_qp` hands qp a ``qp.hist`` ensemble: the probability of each bin of a common redshift
grid (0.002 wide by default, from 0 to past the largest quantile), computed from that CDF. It is
exactly normalised, its CDF is the stored one at every bin edge, and it has the form RAIL's
estimators hand on (a p(z) on a shared grid). qp's quantile parameterisation (``qp.quant``) is
not used: it interpolates the CDF through the quantiles with a quadratic spline, which overshoots
between closely spaced tail quantiles into a CDF outside [0, 1]::

    from cai_edge.pdfs import to_qp
    ids, ensemble = to_qp("z.fits")        # needs: pip install qp-prob  (extra "qp")
    ensemble.pdf(np.linspace(0, 0.5, 501)), ensemble.median(), ensemble.cdf(z_spec)
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from cai_edge.errors import CaiEdgeError, CaiEdgeWarning
from cai_edge.pdf_checks import QuantileError, check_grid, check_levels, row_problem
from cai_edge.results.rows import PDF_COLUMN
from cai_edge.smooth_pz import SmoothQuantiles


class PdfError(CaiEdgeError):
    """An output holds no p(z) quantiles, or qp is not installed."""


def read_quantiles(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The p(z) quantiles of a ``cai-edge predict --pdf`` output, for the galaxies that have one.

    Parameters
    ----------
    path : str or path
        The output file (CSV, ECSV, FITS or Parquet).

    Returns
    -------
    ids : numpy.ndarray
        The galaxies' ids, as text.
    levels : numpy.ndarray
        ``(L,)`` cumulative probabilities, from 0 to 1.
    quantiles : numpy.ndarray
        ``(N, L)``: each galaxy's redshift at each level.

    Raises
    ------
    cai_edge.pdfs.PdfError
        The output holds no p(z) (it was written without ``--pdf``), or its levels are not
        strictly increasing probabilities in [0, 1].

    Warns
    -----
    cai_edge.errors.CaiEdgeWarning
        Rows whose quantiles are not a distribution (not finite, decreasing, outside z = 0 … 20)
        are left out and named (the checks of ``cai_edge.pdf_checks``).
    """
    from astropy.table import Table

    from cai_edge.results.formats import output_format
    from cai_edge.results.csv_sidecar import csv_metadata
    from cai_edge.results.files import iter_result_rows, read_results

    fmt = output_format(path)
    if fmt.name == "csv":
        text = csv_metadata(path).get("z_quantile_levels")
        rows = list(iter_result_rows(path, fmt))
        has_pdf = bool(rows) and PDF_COLUMN in rows[0]
        ids = [r["id"] for r in rows]
        quantiles = [_numbers(r.get(PDF_COLUMN, "")) for r in rows]
    else:
        table = Table.read(path, format=fmt.astropy_format)
        meta = {str(k).lower(): v for k, v in table.meta.items()}
        text = meta.get("z_quantile_levels") or meta.get("zqlevels")
        has_pdf = PDF_COLUMN in table.colnames
        ids = list(read_results(path)["id"])  # ids as text, whatever the format
        quantiles = [np.asarray(q, dtype=np.float64).ravel() for q in table[PDF_COLUMN]] if has_pdf else []
    if has_pdf and not text and fmt.name == "csv":
        from cai_edge.results.csv_sidecar import sidecar_path

        raise PdfError(f"{path}: its p(z) levels (z_quantile_levels) are in its sidecar {sidecar_path(path).name}, which is "
                       "not beside it (or not cai-edge's): copy or move the sidecar with the CSV")
    if not has_pdf or not text:
        raise PdfError(f"{path}: no p(z) in this output; run cai-edge predict with --pdf")
    try:
        levels = np.array([float(v) for v in str(text).split()])
        check_levels(levels)
    except (ValueError, QuantileError) as exc:
        raise PdfError(f"{path}: {exc}") from None
    ids = np.asarray(ids, dtype=str)
    keep = checked_rows(path, ids, levels, quantiles)
    return ids[keep], levels, np.stack([quantiles[i] for i in keep]) if keep else np.zeros((0, len(levels)))


def checked_rows(path, ids: np.ndarray, levels: np.ndarray, quantiles: list[np.ndarray]) -> list[int]:
    """The rows whose quantiles are a distribution; rows with none are left out quietly, the others with a warning naming them."""
    keep, bad = [], []
    for i, q in enumerate(quantiles):
        if len(q) == 0 or np.all(np.isnan(q)):  # a row that is not ok has no p(z)
            continue
        problem = f"{len(q)} quantiles for {len(levels)} levels" if len(q) != len(levels) else row_problem(q)
        if problem:
            bad.append(f"id {str(ids[i])!r}: {problem}")
        else:
            keep.append(i)
    if bad:
        warnings.warn(f"{path}: {len(bad)} row(s) left out, their p(z) is not a distribution: "
                      + "; ".join(bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else ""), CaiEdgeWarning, stacklevel=3)
    return keep


def _numbers(cell) -> np.ndarray:
    """A CSV cell of space-separated numbers; empty (or masked) for a galaxy without p(z)."""
    try:
        return np.array(str(cell).split(), dtype=np.float64)
    except ValueError:
        return np.zeros(0)


DEFAULT_BIN_WIDTH = 0.002  # about a tenth of the 68 % width of the narrowest p(z) of the shipped default


def histogram_pdfs(levels: np.ndarray, quantiles: np.ndarray, bin_width: float = DEFAULT_BIN_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """``(bin_edges, pdfs)``: each galaxy's smooth p(z) through ``(quantiles, levels)`` as a
    histogram density on one shared grid starting at z = 0; every row integrates to 1."""
    top = float(np.max(quantiles)) if quantiles.size else 1.0
    edges = np.arange(0.0, top + 2 * bin_width, bin_width)
    mass = np.diff(SmoothQuantiles(levels, quantiles).cdf(edges), axis=1)
    return edges, mass / bin_width


def to_qp(path: str | os.PathLike, bin_width: float = DEFAULT_BIN_WIDTH):
    """The p(z) of a ``--pdf`` output as a qp ensemble, for LSST DESC RAIL and qp.

    Each galaxy's smooth p(z) (``cai_edge.smooth_pz``) becomes a ``qp.hist`` on one shared grid from z = 0, exactly
    normalised and equal to that CDF at every bin edge. Galaxies without a p(z) (rows not
    ``ok``) are left out; ``ids`` says which rows are in.

    Parameters
    ----------
    path : str or path
        The output file (CSV, ECSV, FITS or Parquet).
    bin_width : float, optional
        Width of the shared redshift bins (default 0.002).

    Returns
    -------
    ids : numpy.ndarray
        The galaxies' ids, in the ensemble's order.
    ensemble : qp.Ensemble
        One p(z) per galaxy.

    Raises
    ------
    cai_edge.pdfs.PdfError
        qp is not installed, the output holds no p(z), its levels are not probabilities, or the
        grid would exceed 50,000 bins (``cai_edge.pdf_checks.MAX_GRID_BINS``).

    Warns
    -----
    cai_edge.errors.CaiEdgeWarning
        Rows whose quantiles are not a distribution are left out and named, as by :func:`read_quantiles`.
    """
    try:
        import qp
    except ImportError:
        raise PdfError("handing p(z) to qp needs qp: pip install qp-prob (from a cai-edge checkout: pip install \".[qp]\")") from None
    ids, levels, quantiles = read_quantiles(path)
    try:
        check_grid(float(np.max(quantiles)) if quantiles.size else 1.0, bin_width)
    except QuantileError as exc:
        raise PdfError(str(exc)) from None
    edges, pdfs = histogram_pdfs(levels, quantiles, bin_width)
    return ids, qp.Ensemble(qp.hist, data={"bins": edges, "pdfs": pdfs})
