"""Photo-z metrics against hand-computed values."""

import numpy as np
import pytest

from cai_edge.metrics import bootstrap_errors, delta_z, photoz_metrics, sigma_nmad


def test_hand_computed_case():
    z_spec = np.array([0.1, 0.2, 0.3, 0.4, 0.0])
    z_pred = np.array([0.1, 0.2 + 0.06 * 1.2, 0.3 - 0.2 * 1.3, 0.4 + 0.01 * 1.4, 0.0])
    dz = delta_z(z_pred, z_spec)
    assert np.allclose(dz, [0.0, 0.06, -0.2, 0.01, 0.0])
    m = photoz_metrics(z_pred, z_spec)
    assert m["n"] == 5
    assert m["bias"] == pytest.approx((0.06 - 0.2 + 0.01) / 5)
    # median dz = 0.0; |dz - 0| sorted = 0, 0, 0.01, 0.06, 0.2 → median 0.01
    assert m["sigma_nmad"] == pytest.approx(1.4826 * 0.01)
    assert m["eta_05"] == pytest.approx(2 / 5)
    assert m["eta_15"] == pytest.approx(1 / 5)
    assert m["mae"] == pytest.approx(np.mean(np.abs(z_pred - z_spec)))
    ss_res = np.sum((z_pred - z_spec) ** 2)
    ss_tot = np.sum((z_spec - 0.2) ** 2)
    assert m["r2"] == pytest.approx(1 - ss_res / ss_tot)


def test_nmad_is_sigma_for_gaussian_errors():
    dz = np.random.default_rng(0).normal(0.003, 0.02, 200_000)
    assert sigma_nmad(dz) == pytest.approx(0.02, rel=0.01)


def test_perfect_predictions():
    z = np.linspace(0.01, 0.4, 50)
    m = photoz_metrics(z, z)
    assert m["bias"] == 0 and m["sigma_nmad"] == 0 and m["eta_05"] == 0 and m["r2"] == 1


def test_non_finite_or_mismatched_inputs_are_errors():
    with pytest.raises(ValueError, match="finite"):
        photoz_metrics(np.array([np.nan, 0.1]), np.array([0.1, 0.1]))
    with pytest.raises(ValueError, match="shape"):
        photoz_metrics(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="no galaxies"):
        photoz_metrics(np.zeros(0), np.zeros(0))


def test_bootstrap_errors_shrink_with_sample_size():
    rng = np.random.default_rng(1)
    z = rng.uniform(0.02, 0.3, 4000)
    pred = z + rng.normal(0, 0.02, z.size) * (1 + z)
    small = bootstrap_errors(pred[:400], z[:400], n_boot=100)
    large = bootstrap_errors(pred, z, n_boot=100)
    assert large["sigma_nmad"] < small["sigma_nmad"]
    assert 0 < large["bias"] < 0.001
