"""Step 2 of the forecaster: the cleaned frame becomes arrays on a time grid that the model reads.

* :func:`grid_positions`: the grid step (the median spacing, snapped to a calendar step) and each row's
  position on it; a gap is simply positions without observations.
* :class:`GridArrays`: a series on the grid (NaN where nothing was observed) and a gap-filled copy for
  the encoder's inputs.
* :func:`lag_windows`: per grid step, what the encoder reads: the last few values and trailing means.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

__all__ = [
    "CALENDAR_STEPS",
    "SNAP",
    "GridArrays",
    "days_since_epoch",
    "forward_filled",
    "grid_positions",
    "lag_count",
    "lag_windows",
    "recent_count",
]

CALENDAR_STEPS = (1.0, 7.0, 365.25 / 12, 365.25 / 4, 365.25)  # days: daily, weekly, monthly, ...
# How far (a fraction of the step) calendar dates stray from a calendar step's grid: month starts are 28 to
# 31 days apart, so a month start lies within 0.1 of a mean-month grid step.
SNAP = 0.1


def days_since_epoch(index: pd.DatetimeIndex) -> np.ndarray:
    """Each date as (fractional) days since 1970-01-01, the model's calendar time.

    Dates with a time zone count in their local wall time (midnight in Delhi is a whole day, as in the
    data), so that the calendar features see the day and season where the data were recorded.
    """
    if getattr(index, "tz", None) is not None:
        index = index.tz_localize(None)
    # In numpy, in the index's own unit (what pandas' index arithmetic computes, without its overhead).
    return (np.asarray(index, dtype="datetime64") - np.datetime64(0, "D")) / np.timedelta64(1, "D")


def grid_positions(index: pd.DatetimeIndex) -> tuple[float, np.ndarray, int]:
    """The grid step (days), each row's grid position, and how many rows share a position.

    The step is the median spacing, snapped to a calendar step (a day, a week, a mean month of 30.44
    days, a quarter, a year) when within 10% of one, so that month starts (28 to 31 days apart) land
    one per position. Rows go to the nearest position: a gap is simply positions without observations.
    """
    days = days_since_epoch(index)
    med = float(np.median(np.diff(days)))
    for cal in CALENDAR_STEPS:
        if abs(med - cal) <= SNAP * cal:
            med = cal
            break
    pos = np.rint((days - days[0]) / med).astype(np.int64)
    return med, pos, int(len(pos) - len(np.unique(pos)))


@dataclasses.dataclass
class GridArrays:
    """Series on the grid: values with NaN where unobserved (``y``), gap-filled values (``filled``)."""

    y: np.ndarray  # (T, n)
    filled: np.ndarray  # (T, n)
    days: np.ndarray  # (T,) grid dates, days since 1970-01-01


def forward_filled(y: np.ndarray) -> np.ndarray:
    """``y`` (T, n) with each NaN replaced by the last value before it in its column (0 before the first)."""
    last = np.where(np.isnan(y), -1, np.arange(len(y))[:, None])
    np.maximum.accumulate(last, axis=0, out=last)
    return np.where(last >= 0, np.take_along_axis(y, np.maximum(last, 0), axis=0), 0.0)


def recent_count(lookback: int) -> int:
    """How many of the most recent values the encoder reads one by one."""
    return min(7, lookback)


def lag_count(lookback: int) -> int:
    """Rows of the encoder's input: the last few values, then trailing means over lookback/3, lookback."""
    return recent_count(lookback) + (2 if lookback > recent_count(lookback) else 0)


def lag_windows(filled: np.ndarray, lookback: int) -> np.ndarray:
    """(T, m, n): per step, its last few values (newest last) and its trailing means (multi-scale).

    The recent values fix the present state; the means over the last ``lookback / 3`` and ``lookback``
    steps tell the encoder how far the recent past sits from the usual season (an anomaly that can
    persist for months, as a dry winter does), without a long, noisy input.
    """
    k = recent_count(lookback)
    pad = np.concatenate([np.repeat(filled[:1], lookback - 1, axis=0), filled], axis=0)
    idx = np.arange(len(filled))[:, None] + np.arange(lookback - k, lookback)[None, :]
    parts = [pad[idx]]
    if lookback > k:
        csum = np.concatenate([np.zeros((1, filled.shape[1])), np.cumsum(pad, axis=0)], axis=0)
        end = np.arange(len(filled)) + lookback
        for w in (max(1, lookback // 3), lookback):
            parts.append(((csum[end] - csum[end - w]) / w)[:, None, :])
    return np.concatenate(parts, axis=1)
