"""Counting XLA compilations in a test (for the checks that a program is compiled once and reused)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax


@contextlib.contextmanager
def xla_compiles() -> Iterator[list[str]]:
    """A list that collects an entry for each XLA compilation inside the ``with`` block (as it happens)."""
    seen: list[str] = []

    def listener(name: str, seconds: float, **kw) -> None:
        if name.endswith("backend_compile_duration"):
            seen.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
