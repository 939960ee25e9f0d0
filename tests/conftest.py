"""Test settings shared by every package's tests.

Hypothesis runs without per-example deadlines: the tests share a small
machine with LMDB fsyncs and child processes, and a slow example is not a
failing one. ``HYPOTHESIS_PROFILE=thorough`` runs many more examples.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", deadline=None, print_blob=True)
settings.register_profile("thorough", deadline=None, print_blob=True, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
