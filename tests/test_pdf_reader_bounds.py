"""Issue 30, item 8: the p(z) reader validates what it reads and bounds its grid.

An output is a file anyone can edit: one quantile set to 100,000 once built a 50-million-bin grid
per galaxy (MemoryError), and levels edited to fall gave densities of −27.9. Now the row is named
and left out, levels that are not probabilities are refused, and no grid exceeds its bound.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from cai_edge.cli import main
from cai_edge.errors import CaiEdgeWarning
from cai_edge.pdf_checks import MAX_GRID_BINS
from cai_edge.pdfs import PdfError, read_quantiles
from cai_edge.results.csv_sidecar import csv_metadata, sidecar_path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pdf-out")
    for path in sorted(EXAMPLES.glob("*.fits"))[:6]:
        shutil.copy(path, folder / path.name)
    written = {}
    for suffix in (".csv", ".fits"):
        written[suffix] = folder / f"z{suffix}"
        assert main(["predict", str(folder), "--out", str(written[suffix]), "--quiet", "--pdf", "--threads", "1"]) in (0, 1)
    return written


def _edited_csv(source: Path, out: Path, edit_row=None, levels: str | None = None) -> Path:
    """The CSV (and its metadata sidecar) with quantile ``edit_row[1]`` of data row ``edit_row[0]``
    replaced by ``edit_row[2]``, or with new levels in the sidecar."""
    lines = source.read_text().splitlines(keepends=True)
    if edit_row:
        line = lines[edit_row[0] + 1]  # line 0 is the header
        head, quantiles = line.rstrip("\n").rsplit(",", 1)
        values = quantiles.split()
        values[edit_row[1]] = edit_row[2]
        lines[edit_row[0] + 1] = head + "," + " ".join(values) + "\n"
    out.write_text("".join(lines))
    sidecar = json.loads(sidecar_path(source).read_text())
    if levels is not None:
        sidecar["cai_edge"]["z_quantile_levels"] = levels
    sidecar_path(out).write_text(json.dumps(sidecar))
    return out


def _edited_fits(source: Path, out: Path, row: int, index: int, value: float) -> Path:
    with fits.open(source) as hdul:
        data = hdul[1].data.copy()
        data["z_quantiles"][row][index] = value
        hdul[1].data = data
        hdul.writeto(out)
    return out


@pytest.mark.parametrize("case", ["quantile 100000", "decreasing quantiles", "NaN quantile"])
def test_a_row_whose_quantiles_are_not_a_distribution_is_named_and_left_out(case, outputs, tmp_path):
    qp = pytest.importorskip("qp")  # noqa: F841
    from cai_edge.pdfs import to_qp

    ids_all = read_quantiles(outputs[".csv"])[0]
    value, index = {"quantile 100000": ("100000", -1), "decreasing quantiles": ("0.000001", -2), "NaN quantile": ("nan", 5)}[case]
    edited = [_edited_csv(outputs[".csv"], tmp_path / "z.csv", (2, index, value)),
              _edited_fits(outputs[".fits"], tmp_path / "z.fits", 2, index, float(value))]
    for path in edited:
        with pytest.warns(CaiEdgeWarning, match=f"1 row\\(s\\) left out.*id '{ids_all[2]}'"):
            ids, ensemble = to_qp(path)
        assert list(ids) == [i for k, i in enumerate(ids_all) if k != 2]
        bins = ensemble.dist.bins if hasattr(ensemble, "dist") else ensemble.metadata["bins"]
        assert len(np.asarray(bins).ravel()) < 1000  # the grid of the good rows, not one reaching z = 100,000
        assert np.all(np.asarray(ensemble.objdata["pdfs"]) >= 0)


@pytest.mark.parametrize("levels", ["0.0 0.5 0.4 1.0", "0.0 0.5 0.5 1.0", "-0.1 0.5 1.0", "0.0 0.5 1.5", "0 nan 1"])
def test_levels_that_are_not_increasing_probabilities_are_refused(levels, outputs, tmp_path):
    path = _edited_csv(outputs[".csv"], tmp_path / "z.csv", levels=levels)
    with pytest.raises(PdfError, match="z_quantile_levels must be"):
        read_quantiles(path)


def test_a_reversed_level_list_never_gives_negative_densities(outputs, tmp_path):
    qp = pytest.importorskip("qp")  # noqa: F841
    from cai_edge.pdfs import to_qp

    levels = csv_metadata(outputs[".csv"])["z_quantile_levels"].split()
    path = _edited_csv(outputs[".csv"], tmp_path / "z.csv", levels=" ".join(reversed(levels)))
    with pytest.raises(PdfError, match="strictly increasing"):
        to_qp(path)


def test_a_grid_finer_than_the_bound_is_refused_before_it_is_built(outputs):
    pytest.importorskip("qp")
    from cai_edge.pdfs import to_qp

    with pytest.raises(PdfError, match=f"over the {MAX_GRID_BINS:,} allowed"):
        to_qp(outputs[".csv"], bin_width=1e-9)
    for bad in (0.0, -0.002, float("nan")):
        with pytest.raises(PdfError, match="bin_width must be a positive number"):
            to_qp(outputs[".csv"], bin_width=bad)
