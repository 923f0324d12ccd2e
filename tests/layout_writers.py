"""One galaxy written in every input layout cai-edge reads, with astropy, for the header-check and layout tests.

A galaxy is its ``(5, H, W)`` pixels, five magnitudes, ``z_spec`` and ``cards``: header keywords
that speak for the whole galaxy (``BUNIT``, ``PIXSCALE`` or a WCS, ``MAGSYS``). Each writer puts
them where that layout keeps them: a cube's header; the primary header or every band's header of
band extensions; every band file's header; the primary header or the cube HDU's of an N-galaxy
cube (magnitudes, ``z_spec`` and ``MAGSYS`` then in its table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from astropy.io import fits
from astropy.table import Table

from cai_edge.io.npz_partitions import write_npz_partition
from cai_edge.photometry import BANDS

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GALAXY_KEYS = ("MAGSYS",)  # what a table beside an N-galaxy cube holds in its header rather than the image's


@dataclass
class Galaxy:
    gid: str
    cube: np.ndarray  # (5, H, W) float32
    mags: list[float]
    z_spec: float | None = None
    cards: dict = field(default_factory=dict)

    def photometry_cards(self) -> dict:
        cards = {f"MAG_{b.upper()}": float(m) for b, m in zip(BANDS, self.mags)}
        if self.z_spec is not None:
            cards["Z_SPEC"] = float(self.z_spec)
        return cards


def example_galaxy(index: int, gid: str = "gal") -> Galaxy:
    """One shipped example (simulated from real SDSS photometry): its pixels, magnitudes and redshift."""
    path = sorted(EXAMPLES.glob("*.fits"))[index]
    with fits.open(path) as hdul:
        cube = np.array(hdul[1].data, dtype=np.float32)
        mags = [float(hdul[1].header[f"MAG_{b.upper()}"]) for b in BANDS]
        z = float(np.float32(hdul[1].header["Z_SPEC"]))
    return Galaxy(gid, cube, mags, z)


def _header(cards: dict) -> fits.Header:
    header = fits.Header()
    for key, value in cards.items():
        header[key] = value
    return header


def write_cube(folder: Path, g: Galaxy) -> list[Path]:
    path = folder / f"{g.gid}.fits"
    fits.PrimaryHDU(g.cube, header=_header({**g.cards, **g.photometry_cards()})).writeto(path)
    return [path]


def write_extensions(folder: Path, g: Galaxy, cards_in_each: bool = False) -> list[Path]:
    """Band extensions ``U`` … ``Z`` (written g,r,u,z,i); the cards in the primary header or in every band's."""
    shared = {**g.cards, **g.photometry_cards()}
    primary = fits.PrimaryHDU(header=_header({} if cards_in_each else shared))
    exts = [fits.ImageHDU(g.cube[j], header=_header(shared if cards_in_each else {}), name=BANDS[j].upper()) for j in (1, 2, 0, 4, 3)]
    path = folder / f"{g.gid}.fits"
    fits.HDUList([primary, *exts]).writeto(path)
    return [path]


def band_file_writer(pattern: str) -> Callable[[Path, Galaxy], list[Path]]:
    """Band files named by ``pattern`` (``{id}_{b}.fits``, ``{B}/{id}.fits`` …), each with every card."""
    def write(folder: Path, g: Galaxy) -> list[Path]:
        paths = []
        for j, b in enumerate(BANDS):
            path = folder / pattern.format(id=g.gid, b=b, B=b.upper())
            path.parent.mkdir(parents=True, exist_ok=True)
            fits.PrimaryHDU(g.cube[j], header=_header({**g.cards, **g.photometry_cards()})).writeto(path)
            paths.append(path)
        return [folder]
    return write


def write_n_galaxy_cube(folder: Path, g: Galaxy, in_extension: bool = False, system_in_table: bool = True) -> list[Path]:
    """A ``(1, 5, H, W)`` cube with a table of id, magnitudes and z_spec; image cards in the primary header
    (the cube in it, or in an extension after an empty-data primary), ``MAGSYS`` in the table's header
    (or with the image cards)."""
    image_cards = {k: v for k, v in g.cards.items() if k not in GALAXY_KEYS or not system_in_table}
    table = Table({"id": [g.gid], **{f"mag_{b}": [float(m)] for b, m in zip(BANDS, g.mags)}})
    if g.z_spec is not None:
        table["z_spec"] = [float(g.z_spec)]
    for key in GALAXY_KEYS if system_in_table else ():
        if key in g.cards:
            table.meta[key] = g.cards[key]
    cube = g.cube[None]
    if in_extension:
        hdus = [fits.PrimaryHDU(header=_header(image_cards)), fits.ImageHDU(cube, name="CUTOUTS")]
    else:
        hdus = [fits.PrimaryHDU(cube, header=_header(image_cards))]
    path = folder / "field.fits"
    fits.HDUList([*hdus, fits.table_to_hdu(table)]).writeto(path)
    return [path]


def write_npz(folder: Path, g: Galaxy) -> list[Path]:
    """An NPZ partition: pixels, magnitudes, id and z_spec as its arrays (it has no header keywords)."""
    z = None if g.z_spec is None else np.asarray([g.z_spec])
    return [write_npz_partition(folder / "part.npz", g.cube[None], np.asarray([g.mags], dtype=np.float32), [g.gid], z)]


BAND_FILE_PATTERNS = ("{id}_{b}.fits", "{id}-{b}.fits", "{id}.{b}.fits", "{id}_{B}.fits", "{b}/{id}.fits", "{B}/{id}.fits")
FITS_LAYOUTS: dict[str, Callable[[Path, Galaxy], list[Path]]] = {
    "cube": write_cube,
    "extensions, cards in the primary header": write_extensions,
    "extensions, cards in every band's header": lambda folder, g: write_extensions(folder, g, cards_in_each=True),
    **{f"band files {p}": band_file_writer(p) for p in BAND_FILE_PATTERNS},
    "N-galaxy cube + table": write_n_galaxy_cube,
    "N-galaxy cube in an extension + table": lambda folder, g: write_n_galaxy_cube(folder, g, in_extension=True),
    "N-galaxy cube + table, MAGSYS in the image header": lambda folder, g: write_n_galaxy_cube(folder, g, system_in_table=False),
}
