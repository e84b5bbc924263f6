"""Shared test fixtures (keep small)."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def x64():
    """Run one test in float64 without leaking x64 to other tests (they expect float32)."""
    with jax.enable_x64(True):
        yield
