"""Shared test fixtures (keep small)."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def x64():
    """Run one test in float64 without leaking x64 to other tests (they expect float32)."""
    with jax.enable_x64(True):
        yield


_OWN = pytest.StashKey[str]()  # the cache folder this run made (and removes at its end)


def pytest_configure(config):
    """One JAX compilation cache for the whole run, in a temporary folder: the tests' subprocesses (the
    command line) and xdist's workers (which inherit the variable) reuse what earlier tests compiled, and
    nothing is written to the user's cache."""
    import os
    import tempfile

    if "PYANODE_CACHE_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="pyanode-test-cache-")
        os.environ["PYANODE_CACHE_DIR"] = folder
        config.stash[_OWN] = folder


def pytest_unconfigure(config):
    """Remove the run's cache folder (tens of MB), if this process made it: the controller, after its
    workers are done."""
    import shutil

    folder = config.stash.get(_OWN, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
