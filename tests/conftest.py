"""Test configuration: the Hypothesis profile (``ci`` unless HYPOTHESIS_PROFILE says otherwise)."""

import os
import sys

import pytest
from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))  # so tests can `import strategies`

import strategies  # noqa: E402,F401  (registers the profiles)

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _backend_unchanged():
    """Every test leaves the active backend (MINIKD_BACKEND's choice) as it found it."""
    from minikd import backend

    before = backend.name()
    yield
    assert backend.name() == before, f"the test switched the backend from {before!r} to {backend.name()!r}"
