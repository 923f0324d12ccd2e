"""The bundled SDSS catalogs: loaders, one schema, de-duplication and a stable split."""

from collections import Counter

import numpy as np
import pytest

from cai_edge.models import catalogs
from cai_edge.photometry import MAG_COLUMNS, MAGERR_COLUMNS

SCHEMA = ["id", *MAG_COLUMNS, *MAGERR_COLUMNS, "z_spec", "source", "mag_system"]


@pytest.fixture(scope="module")
def merged():
    return catalogs.load_catalogs()


@pytest.mark.parametrize(
    "loader, rows, system, has_errors",
    [
        (catalogs.load_astroml, 36232, "model", False),
        (catalogs.load_sdss_dr14, 4965, "model", False),
        (catalogs.load_mlz, 5000, "dereddened", True),
    ],
)
def test_each_loader_gives_the_schema_galaxies_in_domain(loader, rows, system, has_errors):
    table = loader()
    assert table.colnames == SCHEMA
    assert len(table) == rows
    assert np.all((table["z_spec"] > 0) & (table["z_spec"] < 0.4))
    assert set(table["mag_system"]) == {system}
    assert np.all(np.isfinite(table["magerr_r"])) == has_errors
    assert str(table["mag_r"].unit) == "mag"
    assert len(set(table["id"])) == len(table)


def test_mlz_error_columns_are_aligned_despite_the_header_missing_eu():
    table = catalogs.load_mlz()
    # r errors of the MGS are ~0.006 mag; u errors are the largest (they were shifted before the fix)
    assert 0.003 < np.median(table["magerr_r"]) < 0.01
    assert np.median(table["magerr_u"]) > np.median(table["magerr_g"]) > np.median(table["magerr_r"])


def test_wider_redshift_range_is_an_option():
    assert len(catalogs.load_astroml(z_range=(0.0, 1.0))) > len(catalogs.load_astroml())


def test_deduplication_removes_known_overlaps(merged):
    dropped = merged.meta["duplicates_dropped"]
    # PROVENANCE: Kaggle ⊂ astroML for ~5,700 of 10,000 objects (4,965 galaxies in range);
    # MLZ overlaps astroML by ~600 and Kaggle by ~60.
    assert 4800 <= dropped["kaggle_sdss_dr14_skyserver"] <= 4965
    assert 350 <= dropped["mlz_sdss_mgs"] <= 1100
    assert dropped["astroml_sdss_galaxy_colors"] == 0
    assert len(merged) == 36232 + 4965 + 5000 - sum(dropped.values())
    assert len(set(merged["id"])) == len(merged)


def test_same_galaxy_in_two_magnitude_systems_is_recognised():
    raw = np.array([18.0, 16.5, 15.8, 15.4, 15.1])
    ebv = 0.05
    dereddened = raw - ebv * catalogs.EXTINCTION_VECTOR
    assert catalogs._same_galaxy(dereddened, "dereddened", raw, "model")
    assert catalogs._same_galaxy(raw, "model", dereddened, "dereddened")
    shifted = dereddened + np.array([0.0, 0.0, 0.3, 0.0, 0.0])
    assert not catalogs._same_galaxy(shifted, "dereddened", raw, "model")
    assert not catalogs._same_galaxy(raw + 0.05, "model", raw, "model")


def test_split_is_80_10_10_and_documented_counts_hold(merged):
    counts = Counter(merged["split"])
    n = len(merged)
    assert abs(counts["train"] / n - 0.8) < 0.01
    assert abs(counts["validation"] / n - 0.1) < 0.01
    assert abs(counts["test"] / n - 0.1) < 0.01
    # the counts documented in models/sdss_data/README.md
    assert (n, counts["train"], counts["validation"], counts["test"]) == (40299, 32308, 4006, 3985)


def test_split_does_not_change_when_a_catalog_is_added(merged):
    alone = catalogs.load_catalogs(["astroml"])
    with_others = dict(zip(merged["id"], merged["split"]))
    assert all(with_others[i] == s for i, s in zip(alone["id"], alone["split"]))
    assert catalogs.split_of("astroml-12") == catalogs.split_of("astroml-12")


def test_magnitude_systems_are_never_mixed_silently(merged):
    model_only = catalogs.load_catalogs(mag_system="model")
    assert set(model_only["mag_system"]) == {"model"}
    assert set(merged["mag_system"]) == {"model", "dereddened"}
