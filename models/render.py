"""``cai-edge render``: simulated 5-band SDSS cutouts of real catalog galaxies (GalSim).

Each galaxy keeps its real u,g,r,i,z magnitudes and spectroscopic redshift; its shape, size,
PSF and noise are simulated (:mod:`cai_edge.models.galaxy_model`). Output is a FITS cutout per
galaxy (5×64×64 float32 nanomaggies; header ``MAG_U … MAG_Z``, ``Z_SPEC``, ``BUNIT``,
``PIXSCALE``, ``SIMULATE = T``) or NPZ partitions of centre-cropped 32×32 images, plus a
``catalog.ecsv`` of what was rendered. Rendering is deterministic per (seed, id).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import galsim
import numpy as np
from astropy.table import Table
from tqdm import tqdm

from cai_edge.errors import UsageError
from cai_edge.io.catalog import magnitude_columns, read_table
from cai_edge.io.fits_cutouts import cutout_hdul, write_atomic
from cai_edge.io.partition_writer import write_partitions
from cai_edge.io.records import GalaxyRecord
from cai_edge.io.safe_files import check_output_folder
from cai_edge.models.galaxy_model import GalaxyParams, add_noise, draw_parameters, galaxy_rng
from cai_edge.machine import usable_cores
from cai_edge.photometry import MAG_COLUMNS, PIXEL_SCALE_ARCSEC
from cai_edge.preprocessing import center_crop

STAMP = 64
PSF_MOFFAT_BETA = 3.5
_GSPARAMS = galsim.GSParams(maximum_fft_size=16384)
_CHUNK = 64


@dataclass
class RenderCatalog:
    ids: list[str]
    magnitudes: np.ndarray  # (N,5)
    z_spec: np.ndarray  # (N,)
    skipped: list[str]  # ids of rows without usable magnitudes or redshift

    def __len__(self) -> int:
        return len(self.ids)


def _band_profile(params: GalaxyParams, band: int) -> galsim.GSObject:
    flux = float(params.flux[band])
    bf = float(params.bulge_fraction[band])
    beta = params.position_angle * galsim.radians
    parts = []
    if bf > 0:
        bulge = galsim.DeVaucouleurs(
            half_light_radius=params.hlr_bulge, trunc=10 * params.hlr_bulge, flux=flux * bf, gsparams=_GSPARAMS
        )
        parts.append(bulge.shear(q=params.q_bulge, beta=beta))
    if bf < 1:
        disk = galsim.Exponential(half_light_radius=params.hlr_disk, flux=flux * (1 - bf), gsparams=_GSPARAMS)
        parts.append(disk.shear(q=params.q_disk, beta=beta))
    psf = galsim.Moffat(beta=PSF_MOFFAT_BETA, fwhm=float(params.psf_fwhm[band]), gsparams=_GSPARAMS)
    return galsim.Convolve(galsim.Add(parts), psf, gsparams=_GSPARAMS)


def draw_galaxy(params: GalaxyParams, stamp: int = STAMP) -> np.ndarray:
    """Noise-free ``(5, stamp, stamp)`` float32 image in nanomaggies per pixel."""
    planes = [
        _band_profile(params, b).drawImage(nx=stamp, ny=stamp, scale=PIXEL_SCALE_ARCSEC, offset=params.offset).array
        for b in range(len(params.flux))
    ]
    return np.stack(planes).astype(np.float32)


def render_galaxies(ids, magnitudes, z_spec, seed: int = 0, noise: bool = True, stamp: int = STAMP) -> np.ndarray:
    """``(N, 5, stamp, stamp)`` images of the given galaxies; deterministic per (seed, id)."""
    params = draw_parameters(ids, magnitudes, z_spec, seed)
    out = np.empty((len(params), len(MAG_COLUMNS), stamp, stamp), dtype=np.float32)
    for k, (gid, p) in enumerate(zip(ids, params)):
        image = draw_galaxy(p, stamp)
        out[k] = add_noise(image, galaxy_rng(seed, f"{gid}/noise")) if noise else image
    return out


def _render_chunk(job: tuple) -> np.ndarray:
    return render_galaxies(*job)


def load_render_catalog(spec: str, limit: int | None = None) -> RenderCatalog:
    """``spec`` is a CSV/ECSV/FITS table (``id, mag_u … mag_z, z_spec``) or ``sdss:SPLIT`` for the bundled catalogs."""
    if spec.startswith("sdss:"):
        from cai_edge.models.catalogs import load_catalogs

        table = load_catalogs(mag_system="model")
        split = spec.split(":", 1)[1]
        if split not in ("train", "validation", "test", "all"):
            raise UsageError(f"unknown split {split!r} in {spec!r}: use sdss:train, sdss:validation, sdss:test or sdss:all")
        if split != "all":
            table = table[table["split"] == split]
    else:
        from cai_edge.io.catalog_columns import CatalogColumnsError, id_candidates, resolve_columns

        table = read_table(spec, text_columns=id_candidates())
        try:
            mapped = resolve_columns(table.colnames, spec)
        except CatalogColumnsError as exc:
            raise UsageError(str(exc)) from None
        if mapped.z_spec is None:
            raise UsageError(f"{spec}: rendering needs a redshift column (z_spec, z, redshift …); columns found: {table.colnames}")
        table = Table({"id": table[mapped.id], "z_spec": table[mapped.z_spec],
                       **{m: table[c] for m, c in zip(("mag_u", "mag_g", "mag_r", "mag_i", "mag_z"), mapped.magnitudes)}})
    mag_cols = magnitude_columns(table, spec)
    ids, mags, zs, skipped = [], [], [], []
    for row in table:
        try:
            m = [float(row[c]) for c in mag_cols]
            z = float(row["z_spec"])
        except (TypeError, ValueError):
            skipped.append(str(row["id"]))
            continue
        if not (np.all(np.isfinite(m)) and np.isfinite(z) and z > 0 and all(5 < v < 35 for v in m)):
            skipped.append(str(row["id"]))
            continue
        ids.append(str(row["id"]).strip())
        mags.append(m)
        zs.append(z)
        if limit is not None and len(ids) >= limit:
            break
    return RenderCatalog(ids, np.array(mags, dtype=np.float64).reshape(-1, 5), np.array(zs), skipped)


def iter_rendered(cat: RenderCatalog, seed: int, noise: bool, workers: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, images)`` per chunk, in catalog order, rendered by ``workers`` processes."""
    jobs = [
        (cat.ids[i : i + _CHUNK], cat.magnitudes[i : i + _CHUNK], cat.z_spec[i : i + _CHUNK], seed, noise)
        for i in range(0, len(cat), _CHUNK)
    ]
    if workers <= 1:
        for k, job in enumerate(jobs):
            yield k * _CHUNK, _render_chunk(job)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for k, images in enumerate(pool.map(_render_chunk, jobs)):
            yield k * _CHUNK, images


def write_catalog(cat: RenderCatalog, path: Path) -> None:
    table = Table({"id": cat.ids})
    for j, col in enumerate(MAG_COLUMNS):
        table[col] = cat.magnitudes[:, j]
        table[col].unit = "mag"
    table["z_spec"] = cat.z_spec
    table.meta["comments"] = ["Real SDSS photometry and spectroscopic redshifts; the images beside it are SIMULATED."]
    table.write(path, format="ascii.ecsv", overwrite=True)


def _is_render_folder(folder: Path) -> bool:
    """An earlier ``render`` output: its catalog says the images beside it are simulated."""
    try:
        with open((folder / "catalog.ecsv"), encoding="utf-8", errors="replace") as fh:
            return "the images beside it are SIMULATED" in fh.read(4096)
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    check_output_folder(out, _is_render_folder, "render folder")
    cat = load_render_catalog(args.catalog, args.limit)
    out.mkdir(parents=True, exist_ok=True)
    workers = args.workers or usable_cores()
    chunks = iter_rendered(cat, args.seed, not args.no_noise, workers)
    progress = tqdm(total=len(cat), unit=" galaxies", disable=args.quiet or None)
    if args.format == "fits":
        for start, images in chunks:
            for k, image in enumerate(images):
                i = start + k
                extra = {
                    "Z_SPEC": (float(cat.z_spec[i]), "spectroscopic redshift (real)"),
                    "SIMULATE": (True, "simulated image of a real galaxy's photometry"),
                    "RSEED": (args.seed, "cai-edge render seed"),
                    "NOISE": (not args.no_noise, "sky, shot and read noise added"),
                }
                hdul = cutout_hdul(image, cat.magnitudes[i], extra, compress=args.compress)
                write_atomic(hdul, out / f"{cat.ids[i]}.fits")
            progress.update(len(images))
    else:

        def records() -> Iterator[GalaxyRecord]:
            for start, images in chunks:
                for k, image in enumerate(images):
                    i = start + k
                    yield GalaxyRecord(cat.ids[i], args.catalog, center_crop(image), cat.magnitudes[i].astype(np.float32), float(cat.z_spec[i]))
                progress.update(len(images))

        write_partitions(records(), out, args.size_mb, "npz", prefix="rendered")
    progress.close()
    write_catalog(cat, out / "catalog.ecsv")
    print(f"rendered {len(cat)} simulated galaxies (seed {args.seed}) to {out}; {len(cat.skipped)} catalog rows skipped")
    for gid in cat.skipped[:10]:
        print(f"  skipped {gid}: no usable magnitudes or redshift", file=sys.stderr)
    return 0
