"""Test configuration: the Hypothesis profile (``ci`` unless HYPOTHESIS_PROFILE says otherwise)."""

import os
import sys

from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))  # so tests can `import strategies`

import strategies  # noqa: E402,F401  (registers the profiles)

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
