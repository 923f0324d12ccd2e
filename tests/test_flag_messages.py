"""Every flagged row says why, in measured values: a message per flag, on the shipped default bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from bundle_helpers import tiny_bundle
from cai_edge.models import image_shifts as shifts
from cai_edge.predictor import Predictor

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _examples(n: int = 24):
    cubes, mags, ids = [], [], []
    for path in sorted(EXAMPLES.glob("*.fits"))[:n]:
        with fits.open(path) as hdul:
            cubes.append(np.array(hdul[1].data, dtype=np.float32))
            mags.append([hdul[1].header[f"MAG_{b}"] for b in "UGRIZ"])
            ids.append(path.name[:-5])
    return np.stack(cubes), np.array(mags, dtype=np.float64), ids


def test_every_flagged_row_names_each_flag_with_its_measured_value():
    cubes, mags, ids = _examples()
    rng = np.random.default_rng(0)
    faint = 21.0 - mags[:, 2:3]  # moved to r = 21: out_of_domain
    variants = {
        "as is": (cubes, mags),
        "faint": (cubes * 10 ** (-0.4 * faint[:, :, None, None]), mags + faint),
        "counts": (cubes * 200.0, mags),  # pixels in counts, declared nanomaggies: flux_mismatch
        "permuted": (cubes[:, ::-1].copy(), mags),  # bands reversed: flux_mismatch
        "noisy": (shifts.sky_noise(3.0)(cubes, rng), mags),  # image_noise
        "neighbour": (shifts.neighbour(3.0, 10)(cubes, rng), mags),  # image_out_of_domain
    }
    p = Predictor()
    flagged = 0
    for name, (images, m) in variants.items():
        table = p.predict_table(images, m, ids=ids)
        for row in table[(table["status"] == "ok") & (table["flag_bits"] != 0)]:
            flagged += 1
            message = str(row["message"])
            for flag in str(row["flag_names"]).split(","):
                assert f"{flag}: " in message, (name, flag, message)
            assert any(c.isdigit() for c in message), (name, message)  # a measured value, not just the flag's name
    assert flagged >= 4 * len(ids)  # every variant but the first flags (nearly) every galaxy


def test_reasons_carry_the_numbers_that_tripped_each_check():
    cubes, mags, ids = _examples(6)
    p = Predictor()
    counts = p.predict_table(cubes * 200.0, mags, ids=ids)
    assert all("flux_mismatch: pixel flux / catalog flux " in m and "outside 0.05–2" in m for m in counts["message"])
    lo, hi = p.bundle.domain.z_range
    reasons = p.bundle.domain.flag_reasons(mags, np.full(len(mags), hi + 0.2))
    assert all(r["z_out_of_range"] == f"z_pred {hi + 0.2:.4f} outside the training redshifts {lo:.4f}–{hi:.4f}" for r in reasons)


def test_an_uncalibrated_bundle_says_so_in_every_row(tmp_path):
    cubes, mags, ids = _examples(4)
    table = Predictor(tiny_bundle(tmp_path / "tiny")).predict_table(cubes, mags, ids=ids)  # no calibration
    assert all("uncalibrated" in n for n in table["flag_names"])
    assert all("uncalibrated: the bundle has no uncertainty calibration" in m for m in table["message"])
