"""Shared test fixtures (keep small)."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def x64():
    """Run one test in float64 without leaking x64 to other tests (they expect float32)."""
    with jax.enable_x64(True):
        yield


def pytest_configure(config):
    """One JAX compilation cache for the whole run, in a temporary folder: the tests' subprocesses (the
    command line) reuse what earlier tests compiled, and nothing is written to the user's cache."""
    import os
    import tempfile

    os.environ.setdefault("PYANODE_CACHE_DIR", tempfile.mkdtemp(prefix="pyanode-test-cache-"))
