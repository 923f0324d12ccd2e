"""cai-edge as a RAIL stage: :class:`CaiEdgeEstimator`, a ``CatEstimator`` that runs a verified AstroMAE bundle.

Installed as ``rail.estimation.algos.cai_edge`` (``pip install "cai-edge[rail]"``), beside RAIL's
own estimators, so a RAIL pipeline (ceci) can run it next to FlexZBoost or BPZ and RAIL's
evaluators can score it. The model is the bundle — the shipped default unless ``bundle`` names
another — verified by its checksums and never unpickled: there is no informer and no model file.

Input: a table, chunk by chunk, with the five u,g,r,i,z magnitudes (columns ``bands``, RAIL's
naming by default; SDSS model magnitudes, as the bundle's preprocessing says) and the cutouts,
either in ``image_column`` — ``(N, 5, H, W)`` nanomaggies, or flattened to ``(N, 5·H·W)`` with
``image_shape`` — or as FITS files named in ``path_column`` (read as ``cai-edge predict`` reads
them, magnitudes from their headers). Every row goes through :func:`cai_edge.estimates.estimate`,
the path of ``cai-edge predict``.

Output: a ``qp.Ensemble`` (``qp.interp`` on ``zmin … zmax``, ``nzbins`` points) of each
galaxy's calibrated, smooth p(z) (``cai_edge.smooth_pz``), with ancillary data ``zmode`` and
``zmedian`` (of the p(z)), ``z_pred`` (the network's), the 68 % / 95 % interval bounds,
``usable``, ``flag_bits``, ``status`` and ``message`` (UTF-8 bytes, as HDF5 stores text). A row
without a prediction (``usable`` 0, ``status`` saying why) gets a flat p(z) over the grid and NaN
point estimates: it is kept, never dropped, so the output lines up with the input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import qp
from ceci.config import StageParameter as Param
from rail.core.common_params import SharedParams
from rail.core.data import TableHandle
from rail.estimation.estimator import CatEstimator

from cai_edge.estimates import check_magnitude_system, estimate
from cai_edge.io.catalog import cell_text
from cai_edge.io.npz_partitions import records_from_arrays
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.status import BAD_SHAPE
from cai_edge.photometry import BANDS
from cai_edge.predictor import Predictor
from cai_edge.results.rows import COLUMNS, INTERVAL_COLUMNS
from cai_edge.smooth_pz import SmoothQuantiles

__all__ = ["CaiEdgeEstimator"]


class CaiEdgeEstimator(CatEstimator):
    """Photo-z from 5-band cutouts and magnitudes with a cai-edge bundle (AstroMAE), as a RAIL ``CatEstimator``."""

    name = "CaiEdgeEstimator"
    entrypoint_function = "estimate"
    interactive_function = "cai_edge_estimator"
    inputs = [("input", TableHandle)]  # the bundle is the model: no informer, no pickled model file
    config_options = CatEstimator.config_options.copy()
    config_options.update(
        bands=SharedParams.copy_param("bands"),
        bundle=Param(str, "", msg="bundle name or path (empty: the default shipped with cai-edge)"),
        image_column=Param(str, "images", msg="column of cutouts: (N,5,H,W) nanomaggies u,g,r,i,z, or flattened with image_shape"),
        image_shape=Param(list, [5, 32, 32], msg="(5, H, W) of each cutout when image_column holds them flattened"),
        path_column=Param(str, "", msg="column of FITS cutout paths, read as cai-edge predict reads them (instead of image_column)"),
        magnitude_system=Param(str, "", msg="what the magnitudes are, when not the bundle's system (empty: as the bundle's)"),
        threads=Param(int, 0, msg="ONNX Runtime threads (0: all usable cores)"),
        batch_size=Param(int, 256, msg="galaxies per model call"),
    )
    config_options["bands"].set_default([f"mag_{band}_lsst" for band in BANDS])
    config_options["zmax"].set_default(1.0)
    config_options["nzbins"].set_default(1001)  # 0.001 apart: a tenth of the narrowest 68 % interval

    def __init__(self, args: Any, **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        self.predictor: Predictor | None = None

    def open_model(self, **kwargs: Any) -> Predictor:
        """Open and verify the bundle (RAIL's model): by name or path, or the shipped default."""
        if self.predictor is None:
            spec = [self.config.bundle] if self.config.bundle else []
            self.predictor = Predictor(*spec, threads=self.config.threads or None)
            if self.predictor.bundle.calibration is None:
                raise ValueError(f"bundle {self.predictor.bundle.name} has no uncertainty calibration, so no p(z); "
                                 "run cai-edge calibrate on it first")
        self.model = self.predictor
        return self.predictor

    def _records(self, start: int, data: Any) -> list[GalaxyRecord]:
        """One record per input row: read from its file, or prepared from its image and magnitudes."""
        ids = [cell_text(v) for v in data[self.config.id_col]] if self.config.id_col in data else [str(start + i) for i in range(_rows(data))]
        z_spec = np.asarray(data[self.config.redshift_col], np.float64) if self.config.redshift_col in data else np.full(len(ids), np.nan)
        if self.config.path_column:
            return [_read_one(cell_text(p), gid, z) for p, gid, z in zip(data[self.config.path_column], ids, z_spec)]
        mags = np.stack([np.asarray(data[c], np.float64) for c in self.config.bands], axis=1)
        images = np.asarray(data[self.config.image_column])
        if images.ndim == 2:
            images = images.reshape(len(images), *self.config.image_shape)
        return list(records_from_arrays(Path(f"rows {start}…"), images, mags, ids, z_spec))

    def _process_chunk(self, start: int, end: int, data: Any, first: bool) -> None:
        predictor = self.open_model()
        records = [check_magnitude_system(r, predictor.preprocessing.magnitude_system, self.config.magnitude_system or None)
                   for r in self._records(start, data)]
        results = estimate(predictor, records, self.config.batch_size, with_quantiles=True)
        grid = np.linspace(self.config.zmin, self.config.zmax, self.config.nzbins)
        pdfs = np.full((len(results), len(grid)), 1.0 / (grid[-1] - grid[0]))  # no prediction: flat, and usable 0 says why
        mode, median = np.full(len(results), np.nan), np.full(len(results), np.nan)
        ok = [i for i, e in enumerate(results) if e.quantiles is not None]
        if ok:
            smooth = SmoothQuantiles(predictor.bundle.calibration.levels, np.stack([results[i].quantiles for i in ok]))
            pdfs[ok] = smooth.pdf(grid)
            mode[ok], median[ok] = grid[np.argmax(pdfs[ok], axis=1)], smooth.quantiles((0.5,))[:, 0]
        ensemble = qp.Ensemble(qp.interp, data={"xvals": grid, "yvals": pdfs})
        rows = [dict(zip(COLUMNS, e.row())) for e in results]
        ancil = {"zmode": mode, "zmedian": median, "z_pred": np.array([e.z_pred for e in results]),
                 **{c: np.array([e.interval.get(c, np.nan) for e in results]) for c in INTERVAL_COLUMNS},
                 "usable": np.array([int(r["usable"]) for r in rows], dtype=np.int16),
                 "flag_bits": np.array([int(r["flag_bits"]) for r in rows], dtype=np.int32),
                 "status": _text([r["status"] for r in rows]), "message": _text([r["message"] for r in rows])}
        ensemble.set_ancil(ancil)
        self._do_chunk_output(ensemble, start, end, first, data=data)


def _rows(data: Any) -> int:
    return len(next(iter(data.values())))


def _text(values: list[str]) -> np.ndarray:
    """Text as UTF-8 bytes: HDF5 (RAIL's output files) stores no numpy unicode arrays."""
    return np.array([v.encode("utf-8") for v in values], dtype=bytes)


def _read_one(path: str, gid: str, z_spec: float) -> GalaxyRecord:
    """The one galaxy of a cutout file, as ``cai-edge predict`` reads it; a file of several (or none) is a failed row."""
    from cai_edge.errors import CaiEdgeError
    from cai_edge.io.inputs import iter_galaxies

    try:
        found = list(iter_galaxies([path]))
    except CaiEdgeError as exc:
        return GalaxyRecord.failed(gid, path, BAD_SHAPE, str(exc), z_spec)
    if len(found) != 1:
        return GalaxyRecord.failed(gid, path, BAD_SHAPE, f"{path} holds {len(found)} galaxies; a row's path must name one cutout", z_spec)
    record = found[0]
    record.id, record.z_spec = gid, z_spec if np.isfinite(z_spec) else record.z_spec
    return record
