"""The Daily Delhi climate data, shipped inside pyanode as the example for its main job.

Four daily series (mean temperature, humidity, wind speed, mean pressure) for Delhi, 2013-01-01 to
2017-04-24, split as published into a training file and a test file; provenance and licence in
``data/SOURCE.md`` beside this module. Read from the installed package, never from a path outside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pandas as pd

__all__ = ["delhi_climate", "delhi_climate_files"]

_FILES = ("DailyDelhiClimateTrain.csv", "DailyDelhiClimateTest.csv")


@contextlib.contextmanager
def delhi_climate_files() -> Iterator[tuple[Path, Path]]:
    """``with delhi_climate_files() as (train_csv, test_csv):`` the packaged CSV files as paths.

    The paths are the installed files themselves (or, from a zipped install, temporary copies that last
    as long as the ``with`` block).
    """
    folder = resources.files("pyanode.datasets") / "data"
    with resources.as_file(folder / _FILES[0]) as train, resources.as_file(folder / _FILES[1]) as test:
        yield Path(train), Path(test)


def delhi_climate() -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, test)``: the Delhi climate data as DataFrames indexed by date, exactly as published.

    Nothing is cleaned here (the gross pressure outliers are still in): :func:`pyanode.fit` masks and
    reports them, as it would for a user's own file.
    """
    with delhi_climate_files() as paths:
        train, test = (pd.read_csv(p, parse_dates=["date"], index_col="date") for p in paths)
    return train, test
