"""Test settings shared by every package's tests.

Hypothesis runs without per-example deadlines: the tests share a small
machine with LMDB fsyncs and child processes, and a slow example is not a
failing one. ``HYPOTHESIS_PROFILE=thorough`` runs many more examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.test_cli import Server

settings.register_profile("default", deadline=None, print_blob=True)
settings.register_profile("thorough", deadline=None, print_blob=True, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """``shardline serve`` in a process of its own over ``tmp_path``, killed at the end."""
    running = Server(tmp_path / "data")
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
