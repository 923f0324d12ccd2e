"""``cai-edge calibrate``: fit a bundle's per-galaxy uncertainty (and training domain) on labelled galaxies.

The new bundle has the same ``model.onnx`` and a manifest with ``calibration`` (binned residual
quantiles, :mod:`cai_edge.uncertainty`), ``domain`` (:mod:`cai_edge.domain`) and ``image_domain``
(:mod:`cai_edge.image_domain`), both fitted on ``--domain-data`` when given. Calibrate on
galaxies the model never trained on and that you will not evaluate on: ``sdss:test`` is refused,
as are the training galaxies (``sdss:train``) for the calibration itself. What is implausible for
this model is said (:mod:`cai_edge.plausibility`); an image reference outside the hard limits of
:mod:`cai_edge.image_domain` is refused (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

import numpy as np

from cai_edge.bundle import resolve_bundle
from cai_edge.bundle.manifest import SEAL_FIELD
from cai_edge.bundle.writer import check_bundle_outputs
from cai_edge.domain import fit_domain
from cai_edge.errors import CaiEdgeError
from cai_edge.image_domain import ImageDomain, ImageDomainError, fit_image_domain
from cai_edge.plausibility import image_reference_warnings, label_warnings, width_warnings
from cai_edge.predictor import Predictor
from cai_edge.uncertainty import (MAG_BINS, WELL_FILLED_CELL, Z_BINS, CalibrationError, cell_sizes, cross_fitted_coverage,
                                  fit_calibration, usable_labels)


class CalibrateError(CaiEdgeError):
    """The calibration cannot be made as asked."""


def _labelled(spec: list[str], catalog: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Prepared images, magnitudes and z_spec of the labelled galaxies in ``spec``."""
    if len(spec) == 1 and spec[0].startswith("sdss:"):
        split = spec[0].split(":")[1]
        if split in ("test", "train", "all"):
            raise CalibrateError(f"--data {spec[0]}: calibrate on galaxies held out from training and from evaluation "
                                 "(sdss:validation), never on the training or test split")
        try:
            from cai_edge.models.datasets import load_labelled
        except ImportError as exc:
            raise CalibrateError(f"--data {spec[0]} renders simulated images and needs the toolchain "
                                 f"(from a cai-edge checkout: pip install -e \".[train]\"): {exc}") from None
        data = load_labelled(spec[0])
        return data.images, data.magnitudes, data.z_spec, data.description
    from cai_edge.io.labelled import labelled_arrays

    return (*labelled_arrays(spec, catalog), " ".join(spec))


WELL_FILLED_IMAGE_REFERENCE = 2000  # images below which calibrate warns that the image reference's thresholds are its extremes
IMAGE_DOMAIN_GALAXIES = 5000  # sdss:SPLIT renders this many of the split's galaxies for the image reference


def _domain_data(spec: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str, str]:
    """Magnitudes and z_spec of the training-like galaxies in ``spec``, images and their magnitudes, and where each came from."""
    if spec.startswith("sdss:"):
        from cai_edge.models.catalogs import load_catalogs
        from cai_edge.models.datasets import rendered_split

        table = load_catalogs(mag_system="model")
        split = spec.split(":")[1]
        table = table if split == "all" else table[table["split"] == split]
        mags = np.stack([np.asarray(table[f"mag_{b}"], dtype=np.float64) for b in "ugriz"], axis=1)
        rendered = rendered_split(split, 0, IMAGE_DOMAIN_GALAXIES)  # seed 0: the training images' own
        return (mags, np.asarray(table["z_spec"], dtype=np.float64), rendered.images, rendered.magnitudes,
                f"{spec} (bundled SDSS catalogs, raw model magnitudes)", rendered.description)
    from cai_edge.io.inputs import iter_galaxies

    records = [r for r in iter_galaxies([spec]) if r.ok]
    if not records:
        raise CalibrateError(f"--domain-data {spec}: no usable galaxies found there")
    mags = np.stack([r.magnitudes for r in records])
    return mags, np.array([r.z_spec for r in records]), np.stack([r.image for r in records]), mags, spec, spec


def _check_calibration(calibration, held_out: dict | None, z_pred, z_spec, magnitudes) -> tuple[int, list[str]]:
    """The smallest cell's size and what a person should know before trusting these intervals."""
    keep = usable_labels(z_pred, z_spec, magnitudes[:, 2])
    smallest = int(cell_sizes(calibration, z_pred[keep], magnitudes[keep]).min())
    warnings = []
    if smallest < WELL_FILLED_CELL:
        warnings.append(f"the thinnest calibration cell holds {smallest} galaxies (fewer than {WELL_FILLED_CELL}): its 95 % "
                        f"interval rests on a few extreme residuals; calibrate on at least "
                        f"{Z_BINS * MAG_BINS * WELL_FILLED_CELL:,} labelled galaxies for intervals worth having")
    if held_out is None:
        warnings.append("too few galaxies to measure coverage on held-out galaxies (cross-fitting)")
    else:
        for level, nominal in (("coverage_68", 0.68), ("coverage_95", 0.95)):
            if abs(held_out[level] - nominal) > 0.05:
                warnings.append(f"held-out {level.replace('_', ' ')} % is {held_out[level]:.3f}, not {nominal}: these intervals "
                                "do not hold on galaxies the calibration did not see")
    return smallest, warnings


def _image_reference(images: np.ndarray, magnitudes: np.ndarray, fitted_on: dict, option: str) -> ImageDomain:
    try:
        return fit_image_domain(images, fitted_on, magnitudes)
    except ImageDomainError as exc:
        raise CalibrateError(f"{option}: {exc}") from None


def _match_warnings(reference: ImageDomain) -> list[str]:
    """A reference whose pixels-and-magnitudes check could not be fitted leaves every row it judges image_unchecked;
    one fitted on few images flags in-domain rows far more often than the 0.3 % per check its quantiles aim for."""
    images = reference.fitted_on.get("images")
    few = ([f"the image reference rests on {images:,} images (fewer than {WELL_FILLED_IMAGE_REFERENCE:,}): its 99.7 % thresholds "
            "are its most extreme few, so in-domain rows are flagged more often (on simulated images 2.6–4.2 % at 500 images "
            f"and 7.9–12 % at 100, against 1.3 % at 4,000); fit it on at least {WELL_FILLED_IMAGE_REFERENCE:,} training-like cutouts"]
           if isinstance(images, int) and images < WELL_FILLED_IMAGE_REFERENCE else [])
    if reference.photometric_match is not None:
        return few
    return few + [f"the check that pixels and magnitudes are one galaxy could not be fitted "
                  f"({reference.fitted_on.get('photometric_match_not_fitted', 'no magnitudes')}): every row this bundle judges "
                  "is image_unchecked, never usable; fit it on cutouts of galaxies (--domain-data)"]


def _plausibility_warnings(calibration, z_pred, z_spec, magnitudes, training_z: tuple[float, float] | None) -> list[str]:
    """Labels outside the training redshifts, and intervals far wider than the residuals (:mod:`cai_edge.plausibility`)."""
    keep = usable_labels(z_pred, z_spec, magnitudes[:, 2])
    intervals = calibration.intervals(z_pred[keep], magnitudes[keep])
    return (label_warnings(z_spec[keep], training_z)
            + width_warnings(z_pred[keep], z_spec[keep], intervals["z_hi95"] - intervals["z_lo95"]))


def _blocks_to_keep(bundle, predictor: Predictor) -> dict:
    """The source manifest's blocks this calibration keeps (all but ``files``).

    A source written before manifests were sealed (no ``block_sha256``) cannot vouch for its
    blocks: its ``preprocessing`` must equal the copy inside its checksummed ``model.onnx``, and its
    ``domain`` and ``image_domain`` are not kept but refitted (from ``--domain-data``, else ``--data``).
    """
    manifest = {k: v for k, v in bundle.manifest.items() if k != "files"}
    if SEAL_FIELD in manifest:
        return manifest
    mirrored = predictor.session.get_modelmeta().custom_metadata_map.get("cai_edge.preprocessing")
    if mirrored is None or json.loads(mirrored) != manifest["preprocessing"]:
        raise CalibrateError(f"{bundle.path}: the manifest has no {SEAL_FIELD} and its preprocessing differs from the one "
                             "recorded inside its model.onnx; it was edited by hand. Export the bundle again (cai-edge export).")
    print(f"note: {bundle.path} was written before manifests were sealed: its domain and image reference are refitted, "
          "not kept, and the new bundle is sealed", file=sys.stderr)
    return {k: v for k, v in manifest.items() if k not in ("domain", "image_domain")}


def run(args: argparse.Namespace) -> int:
    check_bundle_outputs(args.out, reading=(args.bundle, *args.data, args.catalog, args.domain_data))
    bundle = resolve_bundle(args.bundle, allow_unsealed=True)  # an unsealed (older) source is refitted and resealed
    predictor = Predictor(bundle, threads=args.threads, backend="onnxruntime")  # fitted on the reference engine
    manifest = _blocks_to_keep(bundle, predictor)
    images, magnitudes, z_spec, described = _labelled(args.data, args.catalog)
    z_pred = predictor.predict_prepared(images, magnitudes)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        calibration = fit_calibration(z_pred, z_spec, magnitudes, {"data": described, "created": created})
    except CalibrationError as exc:
        raise CalibrateError(str(exc)) from None
    held_out = cross_fitted_coverage(z_pred, z_spec, magnitudes)
    smallest, warnings = _check_calibration(calibration, held_out, z_pred, z_spec, magnitudes)
    calibration_record = calibration.to_dict()
    calibration_record["fitted_on"]["held_out"] = held_out
    manifest["calibration"] = calibration_record
    training_z = bundle.domain.z_range if "domain" in manifest and bundle.domain is not None else None
    kept_reference = bundle.image_domain if "image_domain" in manifest else None
    if args.domain_data:
        mags, zs, domain_images, image_mags, where, images_where = _domain_data(args.domain_data)
        domain = fit_domain(mags, zs, {"data": where, "created": created})
        manifest["domain"] = domain.to_dict()
        reference = _image_reference(domain_images, image_mags, {"data": images_where, "created": created}, f"--domain-data {args.domain_data}")
        manifest["image_domain"] = reference.to_dict()
        training_z = training_z or domain.z_range
        warnings += image_reference_warnings(reference, kept_reference) + _match_warnings(reference)
    else:
        fitted_on = {"data": described + " (the calibration galaxies)", "created": created}
        if "domain" not in manifest:
            manifest["domain"] = fit_domain(magnitudes, z_spec, fitted_on).to_dict()
        if "image_domain" not in manifest:
            reference = _image_reference(images, magnitudes, fitted_on, f"--data {' '.join(args.data)}")
            manifest["image_domain"] = reference.to_dict()
            warnings += _match_warnings(reference)
    warnings += _plausibility_warnings(calibration, z_pred, z_spec, magnitudes, training_z)
    # a calibrated bundle is another artifact: it gets a name of its own (never overwrites its source)
    manifest["name"] = args.name or f"{bundle.name}-calibrated"
    from cai_edge.bundle.writer import write_bundle_dir

    from cai_edge.bundle import default_out

    out = write_bundle_dir(args.out or default_out(manifest["name"]), manifest, dict(bundle.files))
    written = resolve_bundle(out)
    keep = usable_labels(z_pred, z_spec, magnitudes[:, 2])
    used = int(np.sum(keep))
    report = {"bundle": str(out), "name": written.name, "calibrated_on": described, "galaxies": used,
              "galaxies_left_out": int(len(z_spec)) - used, "held_out": held_out,
              "smallest_cell": int(smallest), "warnings": warnings}
    print(json.dumps(report, indent=1))
    if used < len(z_spec):
        print(f"note: {len(z_spec) - used} of {len(z_spec)} labelled galaxies were left out (z_spec not finite or negative, "
              "or no finite prediction)", file=sys.stderr)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"calibrated {written.name} → {out}", file=sys.stderr)
    return 0
