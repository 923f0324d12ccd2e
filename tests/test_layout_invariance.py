"""The same galaxy gives the same row in every layout cai-edge reads (pixels simulated from real SDSS photometry).

One galaxy — pixels, magnitudes, z_spec and the header keywords that speak for it (``BUNIT``, a
``PIXSCALE`` or WCS pixel size, ``MAGSYS``) — is written as a cube, as band extensions (keywords in
the primary header, or in every band's), as band files with each separator and in band folders,
as an N-galaxy cube with its table (cube in the primary HDU or in an extension), and as an NPZ
partition when its arrays can say everything the keywords say. Each goes through the predict
path (``iter_galaxies``, the magnitude-system check, :func:`cai_edge.estimates.estimate` with the
shipped bundle's ONNX session, the output row), and the rows must agree in every column but
``id`` and ``source``: z, intervals, status, usable, flag bits and names, and the message.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cai_edge.estimates import check_magnitude_system, estimate
from cai_edge.io.inputs import iter_galaxies
from cai_edge.predictor import Predictor
from cai_edge.results.rows import COLUMNS
from layout_writers import FITS_LAYOUTS, example_galaxy, write_npz

WCS = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN"}
# (header keywords for the pixel size, whether an NPZ partition — no keywords — gives the same row)
SCALES = {
    "none": ({}, True),
    "PIXSCALE 0.396": ({"PIXSCALE": 0.396}, True),
    "PIXSCALE 0.262 (DECaLS)": ({"PIXSCALE": 0.262}, False),
    "PIXSCALE '0.262' as text": ({"PIXSCALE": "0.262"}, False),
    "PIXSCALE -0.396": ({"PIXSCALE": -0.396}, False),
    "CD1_1/CD2_2 only, 0.168″ (HSC)": ({**WCS, "CD1_1": -0.168 / 3600, "CD2_2": 0.168 / 3600}, False),
    "CDELT 0.396 in arcsec": ({**WCS, "CDELT1": -0.396, "CDELT2": 0.396, "CUNIT1": "arcsec", "CUNIT2": "arcsec"}, True),
    "CDELT 0.25″ in degrees": ({**WCS, "CDELT1": -0.25 / 3600, "CDELT2": 0.25 / 3600}, False),
    "PIXSCALE 0.396 against a 0.262″ CD matrix": ({"PIXSCALE": 0.396, **WCS, "CD1_1": -0.262 / 3600, "CD2_2": 0.262 / 3600}, False),
}
SYSTEMS = {"none": None, "sdss_model": "sdss_model", "dereddened": "dereddened"}
UNITS = {"none": None, "nanomaggy": "nanomaggy", "nMgy/pixel": "nMgy/pixel", "counts, no NMGY": "counts"}  # the last: wrong_units


@functools.lru_cache(maxsize=1)
def predictor() -> Predictor:
    return Predictor()


def rows_by_layout(galaxy, npz: bool) -> dict[str, dict[str, str]]:
    """Each layout's output row for ``galaxy`` (without id and source), through the real predict path."""
    model = predictor()
    layouts = dict(FITS_LAYOUTS, **({"NPZ partition": write_npz} if npz else {}))
    records, names = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, write) in enumerate(layouts.items()):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            found = [check_magnitude_system(r, model.preprocessing.magnitude_system) for r in iter_galaxies(write(folder, galaxy))]
            assert len(found) == 1, (name, [(r.id, r.status, r.message) for r in found])
            records += found
            names.append(name)
    estimates = estimate(model, records, 64)
    return {name: {c: v for c, v in zip(COLUMNS, e.row()) if c not in ("id", "source")} for name, e in zip(names, estimates)}


@settings(derandomize=True, max_examples=40, deadline=None, database=None)
@given(index=st.integers(0, 5), scale=st.sampled_from(sorted(SCALES)), system=st.sampled_from(sorted(SYSTEMS)),
       unit=st.sampled_from(sorted(UNITS)), with_z=st.booleans(), r_offset=st.sampled_from([0.0, 1.5]))
@example(index=0, scale="none", system="none", unit="none", with_z=True, r_offset=0.0)
@example(index=1, scale="PIXSCALE 0.262 (DECaLS)", system="sdss_model", unit="nanomaggy", with_z=True, r_offset=0.0)
@example(index=2, scale="CD1_1/CD2_2 only, 0.168″ (HSC)", system="none", unit="none", with_z=False, r_offset=0.0)
@example(index=3, scale="CDELT 0.396 in arcsec", system="none", unit="nMgy/pixel", with_z=True, r_offset=0.0)
@example(index=4, scale="PIXSCALE '0.262' as text", system="none", unit="none", with_z=True, r_offset=1.5)
@example(index=5, scale="PIXSCALE -0.396", system="dereddened", unit="none", with_z=True, r_offset=0.0)
@example(index=0, scale="PIXSCALE 0.396 against a 0.262″ CD matrix", system="none", unit="none", with_z=True, r_offset=0.0)
@example(index=1, scale="CDELT 0.25″ in degrees", system="none", unit="none", with_z=True, r_offset=0.0)
@example(index=2, scale="none", system="none", unit="counts, no NMGY", with_z=True, r_offset=0.0)
def test_one_galaxy_gives_one_row_in_every_layout(index, scale, system, unit, with_z, r_offset):
    galaxy = example_galaxy(index, gid=f"1237657070631829{514 + index}")
    cards, npz_same = SCALES[scale]
    galaxy.cards = {**({"BUNIT": UNITS[unit]} if UNITS[unit] else {}), **cards,
                    **({"MAGSYS": SYSTEMS[system]} if SYSTEMS[system] else {})}
    galaxy.mags[2] += r_offset  # a magnitude that disagrees with the pixels: flux_mismatch in every layout
    galaxy.z_spec = galaxy.z_spec if with_z else None
    readable = unit != "counts, no NMGY"
    rows = rows_by_layout(galaxy, npz_same and system != "dereddened" and readable)
    reference = rows["cube"]
    for name, row in rows.items():
        assert row == reference, (name, scale, {c: (row[c], reference[c]) for c in row if row[c] != reference[c]})
    # the rows say what the keywords say
    expected_status = "wrong_units" if not readable else "wrong_magnitude_system" if system == "dereddened" else "ok"
    assert reference["status"] == expected_status, reference
    if expected_status == "ok":
        # a declared pixel scale unlike SDSS's, or an r magnitude the pixels do not hold (the photometric match: the
        # pixels are unlike the galaxy the magnitudes describe)
        assert ("image_out_of_domain" in reference["flag_names"]) == (not npz_same or r_offset > 0), reference
        assert ("flux_mismatch" in reference["flag_names"]) == (r_offset > 0), reference
        assert (reference["z_spec"] != "") == with_z
