"""The documentation site: it builds with warnings as errors, runs its tutorial, and documents the public API.

The README's front door and every shell command the pages show are checked in test_readme_commands.py;
.ci/run builds the site as the README says. Here: what the built pages hold, and the docstrings.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(r"^\.\. auto(class|function|exception|module):: (\S+)\n((?:   :\w[\w-]*:.*\n)*)", re.M)


def api_objects() -> list[str]:
    """Dotted names of every object docs/api.md documents, with the methods its ``:members:`` lists."""
    names = []
    for kind, name, options in DIRECTIVE.findall((DOCS / "api.md").read_text()):
        members = re.search(r":members:(.*)", options)
        listed = [m.strip() for m in members.group(1).split(",") if m.strip()] if members else []
        if kind == "module":
            module = importlib.import_module(name)
            listed = listed or [n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == name]
        names.append(name)
        names += [f"{name}.{m}" for m in listed]
    return names


def _resolve(name: str):
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def test_the_api_reference_covers_the_public_runtime_api():
    documented = set(api_objects())
    public = {"cai_edge.predictor.Predictor", "cai_edge.predictor.Predictor.predict", "cai_edge.predictor.Predictor.predict_table",
              "cai_edge.estimates.Estimate", "cai_edge.estimates.estimate", "cai_edge.bundle.Bundle", "cai_edge.bundle.resolve_bundle",
              "cai_edge.io.inputs.iter_galaxies", "cai_edge.pdfs.to_qp", "cai_edge.results.files.read_results", "cai_edge.errors"}
    assert public <= documented, public - documented
    from cai_edge import errors

    for name, value in vars(errors).items():  # every error class, through the errors module's automodule
        if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == "cai_edge.errors":
            assert f"cai_edge.errors.{name}" in documented, name


def test_every_documented_object_documents_its_parameters():
    validate = pytest.importorskip("numpydoc.validate")
    problems, checked = [], 0
    for name in api_objects():
        if not callable(_resolve(name)):  # properties and constants have no parameters
            continue
        result = validate.validate(name)
        problems += [f"{name}: {code} {text}" for code, text in result["errors"] if code in ("PR01", "PR02", "GL08")]
        checked += 1
    assert checked >= 40 and not problems, "\n".join(problems)


def test_the_site_builds_strictly_and_runs_its_tutorial(tmp_path):
    pytest.importorskip("myst_nb")
    pytest.importorskip("qp")
    out = tmp_path / "html"
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    tutorial = (out / "tutorial.html").read_text()
    assert "200 ok, 0 failed" in tutorial and "image_noise" in tutorial  # cells ran: the prediction and the image check
    assert tutorial.count("<img") >= 4  # the scatter plot, the two cutouts, the p(z), the PIT histogram
    api = (out / "api.html").read_text()
    for name in ("Predictor", "predict_table", "Estimate", "Bundle", "InputError", "to_qp"):
        assert f'id="cai_edge.' in api and name in api, name
    index = (out / "index.html").read_text()
    assert "simulated images" in index and all((out / f"{page}.html").is_file() for page in
                                                ("getting-started", "inputs", "results", "bundles", "scaling-out", "compare",
                                                 "safety", "speed", "model-card", "api"))
