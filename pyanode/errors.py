"""Errors a user can act on. The CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class PyanodeError(ValueError):
    """A user mistake (bad input, bad option); the message says what was wrong and what to do."""
