"""Refit a bundle's image reference (``image_domain``) with this code and reseal it; the graph is copied byte for byte.

What the shipped default needs when an image check's statistics change (its calibration, domain and
model are kept)::

    python -m cai_edge.models.refit_image_reference cai_edge/bundled/astromae-sdss-int8.zip --out NEW.zip

The reference is fitted on 5,000 rendered training galaxies (seed 0, SIMULATED images), as
``cai-edge calibrate --domain-data sdss:train`` fits it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from cai_edge.bundle import open_bundle
from cai_edge.bundle.writer import check_bundle_zip_target, write_bundle_dir
from cai_edge.commands.calibrate import IMAGE_DOMAIN_GALAXIES
from cai_edge.export.bundle_writer import zip_bundle
from cai_edge.image_domain import fit_image_domain


def refit(source: Path, out: Path, galaxies: int = IMAGE_DOMAIN_GALAXIES) -> dict:
    """Write ``source`` (a bundle zip) to ``out`` with an image reference refitted on ``galaxies`` renders; returns it."""
    from cai_edge.models.datasets import rendered_split

    check_bundle_zip_target(out)
    open_bundle(source)  # verified: checksums and seals hold before anything is copied
    with zipfile.ZipFile(source) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        files = {n: archive.read(n) for n in manifest["files"]}
    rendered = rendered_split("train", 0, galaxies)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    reference = fit_image_domain(rendered.images, {"data": rendered.description, "created": created}, rendered.magnitudes)
    manifest["image_domain"] = reference.to_dict()
    with tempfile.TemporaryDirectory() as tmp:
        zip_bundle(write_bundle_dir(Path(tmp) / "bundle", manifest, files), out)
    return manifest["image_domain"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the new bundle zip (absent, or a bundle zip to replace)")
    parser.add_argument("--galaxies", type=int, default=IMAGE_DOMAIN_GALAXIES, help="rendered training galaxies to fit on")
    args = parser.parse_args(argv)
    record = refit(args.bundle, args.out, args.galaxies)
    print(json.dumps(record.get("photometric_match"), indent=1))


if __name__ == "__main__":
    main()
