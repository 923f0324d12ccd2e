"""The Python API's errors, reprs and table rows (issue #23, item 12): what a notebook user meets first."""

from __future__ import annotations

import numpy as np
import pytest

from cai_edge.errors import InputError
from cai_edge.predictor import Predictor


@pytest.fixture(scope="module")
def predictor():
    return Predictor(threads=1)


@pytest.fixture(scope="module")
def galaxies():
    rng = np.random.default_rng(4)
    images = rng.gamma(1.5, 0.2, (4, 5, 32, 32)).astype(np.float32)
    mags = np.tile([19.0, 17.5, 16.7, 16.3, 16.0], (4, 1))
    return images, mags


def test_input_errors_are_value_errors_naming_the_row(predictor, galaxies):
    images, mags = galaxies
    mags = mags.copy()
    mags[2, 2] = np.nan
    with pytest.raises(ValueError, match=r"row 2: missing magnitude in band\(s\) r") as raised:
        predictor.predict(images, mags)
    assert isinstance(raised.value, InputError) and raised.value.status == "missing_magnitudes"


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_threads_must_be_a_positive_integer(threads):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        Predictor(threads=threads)


def test_a_bundle_repr_is_short(predictor):
    text = repr(predictor.bundle)
    assert len(text) < 1000 and "astromae-sdss-int8" in text and predictor.bundle.sha256[:12] in text


def test_predictor_documents_its_parameters():
    doc = Predictor.__doc__ or ""  # numpydoc: a class's parameters are in its own docstring, which help() shows first
    assert "threads" in doc and "providers" in doc and "Raises" in doc and "Parameters" in doc
    assert "Initialize self" not in (Predictor.__init__.__doc__ or "Initialize self")


def test_predict_table_marks_repeated_ids_and_keeps_unrounded_redshifts(predictor, galaxies):
    images, mags = galaxies
    table = predictor.predict_table(images[:3], mags[:3], ids=["a", "a", "b"])
    assert list(table["status"]) == ["ok", "duplicate_id", "ok"] and list(table["usable"][1:2]) == [0]
    z = predictor.predict(images[:3], mags[:3])
    assert table["z_pred"][0] == pytest.approx(float(z[0]), abs=0) and np.isnan(table["z_pred"][1])
    assert table["z_pred"][0] != round(float(table["z_pred"][0]), 6)  # not cut to the files' 6 decimals
    assert table["z_pred"].unit is not None and table["z_pred"].description
