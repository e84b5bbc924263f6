"""Test helper: the matplotlib Figure behind each PNG an experiment saves, to check what it plots."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def saved_figures() -> Iterator[dict]:
    """Record each figure an experiment saves, by file name: the matplotlib Figure that made each PNG."""
    import pyanode.plots

    figures = {}
    real = pyanode.plots.save_figure

    def spy(fig, path, **kwargs):
        figures[Path(path).name] = fig
        return real(fig, path, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pyanode.plots, "save_figure", spy)
        yield figures
