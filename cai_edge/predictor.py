"""The embeddable Python API: ``Predictor(bundle).predict(images, magnitudes)``.

One ONNX Runtime session per Predictor, shared safely by threads; no global state; never torch.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from cai_edge.bundle import DEFAULT_BUNDLE, Bundle, resolve_bundle
from cai_edge.errors import InputError, ModelOutputError
from cai_edge.results.rows import COLUMNS
from cai_edge.io.status import BAD_SHAPE, NONFINITE_PIXELS
from cai_edge.preprocessing import center_crop, prepare_magnitudes
from cai_edge.backends import create_backend_session
from cai_edge.machine import bounded_threads

DEFAULT_BATCH_SIZE = 256


def _row_magnitudes(row: int, values) -> np.ndarray:
    """One row's magnitudes, prepared; an :class:`InputError` names the row."""
    try:
        return prepare_magnitudes(values)
    except InputError as exc:
        raise InputError(exc.status, f"magnitudes row {row}: {exc}") from None


class Predictor:
    """Redshifts from a verified bundle: one ONNX Runtime session, safe to share between threads.

    Parameters
    ----------
    bundle : str, path or Bundle
        A bundle name (``astromae-sdss-int8``), a bundle folder or ``.zip``, or a loaded
        :class:`~cai_edge.bundle.Bundle`; default: the bundle shipped with cai-edge.
    threads : int, optional
        ONNX Runtime intra-op threads, a positive integer; default: the cores this process may use
        (its affinity mask and cgroup quota). A larger request runs on those cores, with a
        :class:`~cai_edge.errors.CaiEdgeWarning`.
    providers : str or list of str, optional
        Execution providers: ``"cpu"`` (default), ``"auto"`` (the best installed), or names such as
        ``"cuda"``/``"CUDAExecutionProvider"`` (CPU is kept as the fallback).
    backend : str, optional
        What runs the model: ``"auto"`` (ONNX Runtime, or OpenVINO where the ``openvino`` extra is
        installed and a short probe on first use on this CPU measured it faster; the choice is
        cached; the default, unless ``$CAI_EDGE_BACKEND`` names another), ``"onnxruntime"`` (the reference engine: pin it for redshifts identical
        to those of every other machine it runs on), ``"openvino"`` or ``"openvino-bf16"`` (OpenVINO,
        with its bf16 precision hint for the latter). Engines' redshifts differ slightly
        (docs/speed.md); every output records its ``engine``.

    Attributes
    ----------
    bundle : Bundle
        The verified bundle the session runs.
    threads : int
        The intra-op threads the session runs with.
    backend : str
        The backend that runs it (``"onnxruntime"``, ``"openvino"`` …; ``"auto"`` resolved).

    Raises
    ------
    cai_edge.errors.BundleError
        The bundle cannot be found, verified or loaded.
    ValueError
        ``threads`` is not a positive integer, or ``backend`` (or ``$CAI_EDGE_BACKEND``) is not one of the names above.
    cai_edge.errors.BackendUnavailableError
        An OpenVINO backend was asked for and OpenVINO is not installed.

    Examples
    --------
    >>> from cai_edge.predictor import Predictor
    >>> p = Predictor()                                  # the shipped default bundle
    >>> z = p.predict(images, magnitudes)                # (N,5,H,W) nanomaggies, (N,5) mags -> (N,) float32
    >>> table = p.predict_table(images, catalog)         # an astropy Table of results, one row per galaxy
    """

    def __init__(
        self,
        bundle: str | os.PathLike | Bundle = DEFAULT_BUNDLE,
        threads: int | None = None,
        providers: str | Sequence[str] | None = None,
        backend: str | None = None,
    ):
        """Load and verify a bundle and start its session (parameters: see the class)."""
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1):
            raise ValueError(f"threads must be a positive integer (or None for the usable cores), got {threads!r}")
        self.bundle = bundle if isinstance(bundle, Bundle) else resolve_bundle(bundle)
        self.preprocessing = self.bundle.preprocessing
        self.threads = bounded_threads(threads)  # never more than the usable cores: a warning above
        self.session, self.backend = create_backend_session(self.bundle, self.threads, providers, backend)

    def load_in_background(self, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        """Start loading what batches of ``batch_size`` run on, so it overlaps the caller's reading.

        OpenVINO imports its compiled model on first use (~0.2 s); this starts that on a helper
        thread. ONNX Runtime's session is ready when the Predictor is: nothing to do. Not for a
        Predictor about to be forked (a helper may hold its lock).

        Parameters
        ----------
        batch_size : int, optional
            Galaxies per model call, as later given to :meth:`predict_prepared` (default 256).
        """
        start = getattr(self.session, "load_in_background", None)
        if start is not None:
            start(batch_size)

    def reference(self) -> tuple:
        """What rebuilds this Predictor in another process, as plain data (never its session or model).

        Returns
        -------
        tuple
            The bundle's path, name, model and calibration sha256, the threads, providers and backend:
            the arguments of ``cai_edge.predictor.rebuild_predictor``.
        """
        b = self.bundle
        # ONNX Runtime's providers; OpenVINO names its device as a provider, which no session could be given
        providers = tuple(self.providers) if self.backend == "onnxruntime" else ("CPUExecutionProvider",)
        return str(b.path), b.name, b.sha256, b.calibration_sha256, self.threads, providers, self.backend

    @property
    def engine(self) -> str:
        """What computes this Predictor's redshifts, as every output records it (``engine``).

        ``onnxruntime`` on the CPU, ``onnxruntime CUDAExecutionProvider`` (…) with a GPU provider, or
        ``openvino`` / ``openvino-bf16``: redshifts of different engines differ slightly (docs/speed.md).
        """
        if self.backend != "onnxruntime":
            return self.backend
        gpu = [p for p in self.providers if p != "CPUExecutionProvider"]
        return " ".join(["onnxruntime", *gpu[:1]])

    def __reduce__(self):
        """Pickled by reference (:meth:`reference`), never its session: process pools and Dask rebuild it on arrival."""
        return rebuild_predictor, self.reference()

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on, in order of preference (``CPUExecutionProvider`` last)."""
        return self.session.get_providers()

    def _run_batch(self, images: np.ndarray, magnitudes: np.ndarray) -> np.ndarray:
        image, mag = self.preprocessing.network_inputs(images, magnitudes)
        try:
            z = self.session.run(["redshift"], {"image": image, "magnitude": mag})[0]
        except Exception as exc:  # the engine's own types (ORT's Fail, RuntimeException …): the model cannot run
            text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            engine = "ONNX Runtime" if self.backend == "onnxruntime" else "OpenVINO"
            raise ModelOutputError(f"{self.bundle.path}: {engine} failed running the model ({text}). The bundle is not usable.") from exc
        if not isinstance(z, np.ndarray) or z.dtype != np.float32 or z.shape != (len(image),):
            shape, dtype = getattr(z, "shape", "?"), getattr(z, "dtype", type(z).__name__)
            raise ModelOutputError(
                f"{self.bundle.path}: the model returned {dtype} {shape} for a batch of {len(image)} galaxies; "
                f"one float32 redshift per galaxy ({len(image)},) is required. The bundle is not usable."
            )
        return z

    def predict_prepared(self, images: np.ndarray, magnitudes: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Redshifts for already-prepared crops and validated magnitudes, with no further checks.

        Parameters
        ----------
        images : numpy.ndarray
            ``(N, 5, 32, 32)`` float32 crops in nanomaggies, bands u,g,r,i,z (as
            :func:`cai_edge.io.inputs.iter_galaxies` prepares them).
        magnitudes : numpy.ndarray
            ``(N, 5)`` float32 magnitudes in the bundle's magnitude system.
        batch_size : int, optional
            Galaxies per model call (default 256).

        Returns
        -------
        numpy.ndarray
            ``(N,)`` float32 redshifts; NaN where the model returned NaN or ±inf, never a number that is
            not one.

        Raises
        ------
        cai_edge.errors.InputError
            ``images`` and ``magnitudes`` have different lengths.
        cai_edge.errors.ModelOutputError
            The backend failed or the model returned something other than one float32 per galaxy.
        ValueError
            ``batch_size`` is not a positive integer.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        n = len(images)
        if len(magnitudes) != n:
            raise InputError(BAD_SHAPE, f"{n} images but {len(magnitudes)} magnitude rows")
        out = np.full(n, np.nan, dtype=np.float32)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            out[start:stop] = self._run_batch(images[start:stop], magnitudes[start:stop])
        out[~np.isfinite(out)] = np.nan
        return out

    def predict(self, images: Any, magnitudes: Any, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Redshifts for cutouts and their magnitudes; any bad row raises (see :meth:`predict_table` for statuses).

        Parameters
        ----------
        images : array_like or astropy.units.Quantity
            ``(N, 5, H, W)`` cutouts, H and W at least 32 (the central 32×32 is used), bands
            u,g,r,i,z, in nanomaggies; a ``Quantity`` in a flux-density unit (``uJy``, ``Jy``,
            ``nanomaggy`` …) is converted (1 nanomaggy = 3.631 µJy). Masked pixels count as missing.
        magnitudes : array_like, astropy.units.Quantity or astropy.table.Table
            ``(N, 5)`` u,g,r,i,z magnitudes (SDSS model magnitudes for the shipped bundles), a
            ``Quantity`` in ``mag``/``ABmag``, or a Table with the column names ``--catalog``
            accepts (``modelMag_u`` …, ``u`` …). Masked values count as missing.
        batch_size : int, optional
            Galaxies per model call (default 256).

        Returns
        -------
        numpy.ndarray
            ``(N,)`` float32 redshifts; NaN where the model gave no finite redshift.

        Raises
        ------
        cai_edge.errors.InputError
            A wrong shape or unit, NaN/inf/masked pixels in a crop, or missing or implausible
            magnitudes; the message names the rows.
        """
        from cai_edge.api_inputs import image_array, is_table, magnitude_array, table_inputs  # not in the Lambda package

        images = image_array(images)
        magnitudes = table_inputs(magnitudes).magnitudes if is_table(magnitudes) else magnitude_array(magnitudes)
        if images.ndim != 4 or images.shape[1] != 5 or min(images.shape[2:]) < 32:
            raise InputError(BAD_SHAPE, f"images must be (N,5,H≥32,W≥32), got {images.shape}")
        if magnitudes.shape != (images.shape[0], 5):
            raise InputError(BAD_SHAPE, f"magnitudes must be ({images.shape[0]},5), got {magnitudes.shape}")
        crops = np.ascontiguousarray(center_crop(images), dtype=np.float32)
        bad = np.flatnonzero(~np.isfinite(crops).all(axis=(1, 2, 3)))
        if bad.size:
            raise InputError(NONFINITE_PIXELS, f"NaN/inf/masked pixels in the central 32×32 of rows {bad[:20].tolist()}")
        mags = np.stack([_row_magnitudes(i, m) for i, m in enumerate(magnitudes)]) if len(magnitudes) else np.zeros((0, 5), np.float32)
        return self.predict_prepared(crops, mags, batch_size)

    def predict_table(
        self,
        images: Any,
        magnitudes: Any = None,
        ids: Sequence[str] | None = None,
        z_spec: np.ndarray | None = None,
        magnitude_system: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        keep_columns: Sequence[str] | None = None,
        columns: dict[str, str] | None = None,
    ):
        """One row per galaxy, as ``cai-edge predict`` writes them; bad rows get a status instead of raising.

        Parameters
        ----------
        images : array_like, astropy.units.Quantity or astropy.table.Table
            ``(N, 5, H, W)`` cutouts as for :meth:`predict`; or a Table/QTable holding the cutouts in
            a column named ``image``/``images``/``cutout`` and the magnitudes (then leave
            ``magnitudes`` out).
        magnitudes : array_like, astropy.units.Quantity or astropy.table.Table, optional
            ``(N, 5)`` magnitudes as for :meth:`predict`, or a Table/QTable whose columns are found
            under the names ``--catalog`` accepts (``objID``, ``modelMag_u`` …, ``z``/``redshift``).
        ids : sequence of str, optional
            One id per galaxy; default: the table's id column, else ``0 … N-1``. A repeated id gets
            the status ``duplicate_id``.
        z_spec : array_like, optional
            Known redshifts, copied into the ``z_spec`` column; default: the table's, else NaN.
        magnitude_system : str, optional
            What the magnitudes are (``sdss_model``, ``dereddened`` …) when neither the table nor the
            bundle says it; another system than the bundle's gives ``wrong_magnitude_system``.
        batch_size : int, optional
            Galaxies per model call (default 256).
        keep_columns : sequence of str, optional
            The table's own columns to carry into the result (default: every column not read as an
            input), with their units and masks.
        columns : dict of str to str, optional
            Maps the inputs to the table's column names when they are not under a known name, as
            ``--columns`` does: ``{"id": "OBJ", "mag_u": "MU", …, "z_spec": "ZS"}``.

        Returns
        -------
        astropy.table.Table
            One row per galaxy: ``id``, ``source``, ``z_pred``, ``z_err``, ``z_lo68``, ``z_hi68``, ``z_lo95``,
            ``z_hi95``, ``z_spec``, ``status``, ``usable``, ``flag_bits``, ``flag_names``,
            ``message``, then the kept columns; ``meta`` holds the bundle's identity. Use a row
            for science when ``usable == 1``.

        Raises
        ------
        cai_edge.errors.InputError
            The inputs cannot be lined up: no images or magnitudes, lengths that differ, or a
            ``keep_columns`` name the table does not have.
        """
        from pathlib import Path

        from cai_edge.api_inputs import galaxy_ids, image_array, is_table, magnitude_array, table_inputs
        from cai_edge.estimates import check_magnitude_system, estimate
        from cai_edge.io.npz_partitions import records_from_arrays
        from cai_edge.io.records import GalaxyRecord
        from cai_edge.io.status import DUPLICATE_ID
        from cai_edge.results.files import describe_columns, rows_to_table
        from cai_edge.results.rows import INTERVAL_COLUMNS

        source, system, passed = None, "", []
        if is_table(images):
            source, images = images, None
        elif is_table(magnitudes):
            source = magnitudes
        if source is not None:
            found = table_inputs(source, columns)
            if images is None:
                if found.image_column is None:
                    raise InputError(BAD_SHAPE, "no images: pass them as the first argument, or as a table column named "
                                                "image, images or cutout")
                images = source[found.image_column]
            magnitudes, system = found.magnitudes, found.system
            ids = ids if ids is not None else found.ids
            z_spec = z_spec if z_spec is not None else found.z_spec
            passed = [c for c in source.colnames if c not in found.used] if keep_columns is None else list(keep_columns)
            unknown = [c for c in passed if c not in source.colnames]
            if unknown:
                raise InputError(BAD_SHAPE, f"keep_columns names {unknown}, which the table does not have; columns: {source.colnames}")
        elif magnitudes is None:
            raise InputError(BAD_SHAPE, "no magnitudes: pass an (N,5) array or a table of them")
        images, magnitudes = image_array(images), magnitude_array(magnitudes)
        n = len(images)
        ids = galaxy_ids(ids, n)
        z_spec = np.full(n, np.nan) if z_spec is None else np.asarray(z_spec, dtype=np.float64)
        if len(ids) != n or len(z_spec) != n or len(magnitudes) != n:
            raise InputError(BAD_SHAPE, f"{n} images, {len(magnitudes)} magnitude rows, {len(ids)} ids, {len(z_spec)} z_spec")
        records = [check_magnitude_system(r, self.preprocessing.magnitude_system, magnitude_system)
                   for r in records_from_arrays(Path("array"), images, magnitudes, ids, z_spec, system)]
        seen: set[str] = set()
        for i, r in enumerate(records):  # as the CLI: a repeated id is its own row, duplicate_id, never a second ok
            if r.id in seen:
                records[i] = GalaxyRecord.failed(r.id, r.source, DUPLICATE_ID, f"id {r.id!r} appears more than once", r.z_spec)
            seen.add(r.id)
        results = estimate(self, records, batch_size)
        table = rows_to_table(dict(zip(COLUMNS, e.row())) for e in results)
        # the rows carry 6 decimals (text, for files); the table gets the model's numbers unrounded
        table["z_pred"] = [e.z_pred if e.record.ok else np.nan for e in results]
        for column in INTERVAL_COLUMNS:
            table[column] = [e.interval.get(column, np.nan) if e.record.ok else np.nan for e in results]
        describe_columns(table)
        for name in passed:  # the caller's own columns, units and masks as they were
            table[name if name not in table.colnames else f"input_{name}"] = source[name]
        table.meta.update(self.bundle.identity())
        return table


def rebuild_predictor(path: str, name: str, sha256: str, calibration_sha256: str, threads: int | None,
                      providers: Sequence[str], backend: str | None = None) -> Predictor:
    """A :class:`Predictor` from its :meth:`Predictor.reference`: the bundle loaded and verified here (by path, or
    by name where that path does not exist), refused when its model or calibration sha256 is not the sender's."""
    from cai_edge.errors import BundleError

    predictor = Predictor(path if os.path.exists(path) else name, threads, list(providers), backend)
    found = (predictor.bundle.sha256, predictor.bundle.calibration_sha256)
    if found != (sha256, calibration_sha256):
        raise BundleError(f"bundle {name} here ({predictor.bundle.path}) has model sha256 {found[0][:12]}, calibration "
                          f"{found[1][:12] or 'none'}; the pickled Predictor had {sha256[:12]}, {calibration_sha256[:12] or 'none'}. "
                          "Install the same bundle on every worker.")
    return predictor
