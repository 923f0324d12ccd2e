"""The real SDSS catalogs shipped with the toolchain, in one schema, de-duplicated and split.

Schema (astropy Table): ``id``, ``mag_u … mag_z`` and ``magerr_u … magerr_z`` (mag; NaN where a
catalog has no errors), ``z_spec``, ``source``, ``mag_system`` (``model``: raw SDSS model
magnitudes; ``dereddened``: extinction-corrected). Galaxies only, ``0 < z < 0.4`` by default
(the AstroMAE domain). See ``sdss_data/*/PROVENANCE.md`` for where each file comes from.

Catalogs are listed in priority order. When the same galaxy is in several, the copy from the
earliest catalog is kept; a catalog added later goes at the end of the list, so it never
changes which copy of an existing galaxy is kept, and — since the split is a hash of the kept
copy's ``id`` — never moves an existing galaxy between train, validation and test.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
from astropy.table import Table, vstack

from cai_edge.photometry import BANDS, MAG_COLUMNS, MAGERR_COLUMNS

DATA_DIR = Path(__file__).with_name("sdss_data")
Z_RANGE = (0.0, 0.4)
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
# SDSS extinction coefficients A_b / E(B-V) (Schlafly & Finkbeiner 2011, as used by SDSS DR8+).
EXTINCTION_VECTOR = np.array([4.239, 3.303, 2.285, 1.698, 1.263])
# Duplicate criteria: spectroscopic z equal to this tolerance, and photometry consistent.
DUPLICATE_Z_TOL = 1e-5
SAME_SYSTEM_MAG_TOL = 0.01
CROSS_SYSTEM_RESIDUAL_TOL = 0.1


def _table(ids, mags, errs, z, source: str, mag_system: str) -> Table:
    table = Table()
    table["id"] = np.asarray(ids, dtype=str)
    for j, col in enumerate(MAG_COLUMNS):
        table[col] = np.asarray(mags[:, j], dtype=np.float64)
        table[col].unit = "mag"
    for j, col in enumerate(MAGERR_COLUMNS):
        table[col] = np.asarray(errs[:, j], dtype=np.float64) if errs is not None else np.full(len(ids), np.nan)
        table[col].unit = "mag"
    table["z_spec"] = np.asarray(z, dtype=np.float64)
    table["source"] = np.full(len(ids), source)
    table["mag_system"] = np.full(len(ids), mag_system)
    return table


def _in_range(table: Table, z_range: tuple[float, float]) -> Table:
    lo, hi = z_range
    return table[(table["z_spec"] > lo) & (table["z_spec"] < hi)]


def load_astroml(data_dir: Path = DATA_DIR, z_range=Z_RANGE) -> Table:
    """astroML's SDSS CAS query: raw model magnitudes, no errors; ids are rows of the original file."""
    arr = np.load(data_dir / "astroml_sdss_galaxy_colors" / "sdss_galaxy_colors.npy", allow_pickle=False)
    rows = np.flatnonzero(arr["spec_class"] == b"GALAXY")
    arr = arr[rows]
    mags = np.stack([arr[b] for b in BANDS], axis=1)
    table = _table([f"astroml-{i}" for i in rows], mags, None, arr["redshift"], "astroml_sdss_galaxy_colors", "model")
    return _in_range(table, z_range)


def load_sdss_dr14(data_dir: Path = DATA_DIR, z_range=Z_RANGE) -> Table:
    """The Kaggle SkyServer DR14 export: raw model magnitudes; ids from plate-mjd-fiber (objid was rounded)."""
    with open(data_dir / "kaggle_sdss_dr14_skyserver" / "sdss_dr14_skyserver_10k.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["class"] == "GALAXY"]
    ids = [f"sdss-{r['plate']}-{r['mjd']}-{r['fiberid']}" for r in rows]
    mags = np.array([[float(r[b]) for b in BANDS] for r in rows])
    z = np.array([float(r["redshift"]) for r in rows])
    return _in_range(_table(ids, mags, None, z, "kaggle_sdss_dr14_skyserver", "model"), z_range)


def load_mlz(data_dir: Path = DATA_DIR, z_range=Z_RANGE) -> Table:
    """MLZ's SDSS Main Galaxy Sample: dereddened magnitudes with errors (the file's header lacks ``eu``)."""
    data = np.loadtxt(data_dir / "mlz_sdss_mgs" / "SDSS_MGS.train", comments="#")
    # columns: zs u g r i z u-g g-r r-i i-z eu eg er ei ez eu-g eg-r er-i ei-z
    table = _table([f"mlz-{i}" for i in range(len(data))], data[:, 1:6], data[:, 10:15], data[:, 0], "mlz_sdss_mgs", "dereddened")
    return _in_range(table, z_range)


# Priority order (see the module docstring): new catalogs go at the end.
CATALOG_LOADERS: dict[str, Callable[..., Table]] = {
    "astroml": load_astroml,
    "sdss_dr14": load_sdss_dr14,
    "mlz": load_mlz,
}


def _same_galaxy(mag_a: np.ndarray, sys_a: str, mag_b: np.ndarray, sys_b: str) -> bool:
    diff = mag_a - mag_b
    if sys_a == sys_b:
        return bool(np.max(np.abs(diff)) < SAME_SYSTEM_MAG_TOL)
    if sys_a == "dereddened":  # orient as raw minus dereddened = E(B-V) × extinction vector, E ≥ 0
        diff = -diff
    ebv = float(diff @ EXTINCTION_VECTOR / (EXTINCTION_VECTOR @ EXTINCTION_VECTOR))
    residual = np.max(np.abs(diff - ebv * EXTINCTION_VECTOR))
    return -0.01 < ebv < 0.5 and residual < CROSS_SYSTEM_RESIDUAL_TOL


def deduplicate(tables: list[Table]) -> tuple[Table, dict[str, int]]:
    """Stack ``tables`` (priority order), dropping rows that repeat a galaxy already kept.

    Returns the kept rows and, per source, how many rows were dropped as duplicates.
    """
    kept: list[Table] = []
    kept_z = np.empty(0)
    kept_mags = np.empty((0, len(BANDS)))
    kept_sys = np.empty(0, dtype=str)
    dropped: dict[str, int] = {}
    for table in tables:
        order = np.argsort(kept_z)
        z_sorted = kept_z[order]
        mags = np.stack([np.asarray(table[c]) for c in MAG_COLUMNS], axis=1)
        keep = np.ones(len(table), dtype=bool)
        lo = np.searchsorted(z_sorted, np.asarray(table["z_spec"]) - DUPLICATE_Z_TOL)
        hi = np.searchsorted(z_sorted, np.asarray(table["z_spec"]) + DUPLICATE_Z_TOL, side="right")
        for i in np.flatnonzero(hi > lo):
            for j in order[lo[i] : hi[i]]:
                if _same_galaxy(mags[i], table["mag_system"][i], kept_mags[j], kept_sys[j]):
                    keep[i] = False
                    break
        if len(table):
            dropped[str(table["source"][0])] = int((~keep).sum())
        table = table[keep]
        kept.append(table)
        kept_z = np.concatenate([kept_z, np.asarray(table["z_spec"])])
        kept_mags = np.concatenate([kept_mags, mags[keep]])
        kept_sys = np.concatenate([kept_sys, np.asarray(table["mag_system"], dtype=str)])
    return vstack(kept, metadata_conflicts="silent"), dropped


def split_of(galaxy_id: str) -> str:
    """``train`` / ``validation`` / ``test`` from a hash of the id: stable whatever else is loaded."""
    u = int(hashlib.sha256(galaxy_id.encode()).hexdigest()[:12], 16) / 16**12
    edge = 0.0
    for name, fraction in SPLIT_FRACTIONS.items():
        edge += fraction
        if u < edge:
            return name
    return "test"


def load_catalogs(
    names: list[str] | None = None, z_range: tuple[float, float] = Z_RANGE, mag_system: str | None = None
) -> Table:
    """The named catalogs (default: all, in priority order), de-duplicated, with a ``split`` column.

    ``mag_system="model"`` keeps only raw model magnitudes, so systems are never mixed silently.
    """
    names = list(CATALOG_LOADERS) if names is None else names
    unknown = set(names) - set(CATALOG_LOADERS)
    if unknown:
        raise ValueError(f"unknown catalog(s) {sorted(unknown)}; known: {list(CATALOG_LOADERS)}")
    ordered = [n for n in CATALOG_LOADERS if n in names]
    if not DATA_DIR.is_dir():
        from cai_edge.errors import ToolchainNotInstalledError

        raise ToolchainNotInstalledError(
            f"the bundled SDSS catalogs are not in this install ({DATA_DIR}): they ship with the toolchain in a cai-edge "
            "checkout, not in the runtime wheel; install from the checkout with pip install -e \".[train]\""
        )
    table, dropped = deduplicate([CATALOG_LOADERS[n](z_range=z_range) for n in ordered])
    table["split"] = [split_of(i) for i in table["id"]]
    if mag_system is not None:
        table = table[table["mag_system"] == mag_system]
    table.meta["duplicates_dropped"] = dropped
    return table
