"""Every property test runs derandomized unless a developer asks for random examples (tests/conftest.py)."""

import importlib
import os
from pathlib import Path

import pytest
from hypothesis import settings


@pytest.mark.skipif(os.environ.get("HYPOTHESIS_PROFILE", "deterministic") != "deterministic",
                    reason="HYPOTHESIS_PROFILE asks for random examples")
def test_every_property_test_is_derandomized():
    """A test's own settings() inherit the loaded profile's derandomize unless they set it: none may turn it off."""
    assert settings.default.derandomize and settings.default.database is None
    found = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        try:
            module = importlib.import_module(path.stem)
        except pytest.skip.Exception:  # needs an optional package this machine lacks: its tests do not run here either
            continue
        for name, test in vars(module).items():
            if name.startswith("test_") and getattr(test, "is_hypothesis_test", False):
                found.append((path.stem, name, test._hypothesis_internal_use_settings.derandomize))
    assert ("test_safety", "test_any_id_round_trips_through_spool_resume_and_output", True) in found
    assert len(found) >= 5 and all(derandomized for _, _, derandomized in found), found
