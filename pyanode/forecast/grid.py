"""Step 2 of the forecaster: the cleaned frame becomes arrays on a time grid that the model reads.

* :func:`grid_positions`: the grid step (the median spacing, snapped to a calendar step) and each row's
  position on it; a gap is simply positions without observations.
* :func:`seasonal_periods`: which calendar cycles (yearly, weekly) the data support.
* :class:`Scaler`: per-column standardisation with training statistics.
* :func:`grid_arrays`: scaled values on the grid (NaN where nothing was observed) and a gap-filled copy
  for the encoder's inputs.
* :func:`lag_windows`: per grid step, what the encoder reads: the last few values and trailing means.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

__all__ = [
    "CALENDAR_STEPS",
    "GridArrays",
    "Scaler",
    "days_since_epoch",
    "grid_arrays",
    "grid_positions",
    "lag_count",
    "lag_windows",
    "recent_count",
    "seasonal_periods",
]

CALENDAR_STEPS = (1.0, 7.0, 365.25 / 12, 365.25 / 4, 365.25)  # days: daily, weekly, monthly, ...


def days_since_epoch(index: pd.DatetimeIndex) -> np.ndarray:
    """Each date as (fractional) days since 1970-01-01, the model's calendar time."""
    return np.asarray((index - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1), dtype=np.float64)


def grid_positions(index: pd.DatetimeIndex) -> tuple[float, np.ndarray, int]:
    """The grid step (days), each row's grid position, and how many rows share a position.

    The step is the median spacing, snapped to a calendar step (a day, a week, a mean month of 30.44
    days, a quarter, a year) when within 10% of one, so that month starts (28 to 31 days apart) land
    one per position. Rows go to the nearest position: a gap is simply positions without observations.
    """
    days = days_since_epoch(index)
    med = float(np.median(np.diff(days)))
    for cal in CALENDAR_STEPS:
        if abs(med - cal) <= 0.1 * cal:
            med = cal
            break
    pos = np.rint((days - days[0]) / med).astype(np.int64)
    return med, pos, int(len(pos) - len(np.unique(pos)))


def seasonal_periods(index: pd.DatetimeIndex, step_days: float, values: pd.DataFrame) -> tuple[float, ...]:
    """Seasonal periods (days) for ``seasonality="auto"``.

    Yearly when the data span at least a year and are sampled at least monthly; weekly when the data are
    daily or finer, span at least eight weeks, and the day of the week explains a significant part of
    the day-to-day variation (one-way ANOVA of the de-trended values on the weekday, p < 0.001 in some
    column) -- weather does not know the day of the week, shop sales do.
    """
    span = (index[-1] - index[0]) / pd.Timedelta(days=1)
    periods = []
    if span >= 365 and step_days <= 31:
        periods.append(365.25)
    if step_days <= 1.0 and span >= 56:
        from scipy import stats

        detrended = values - values.rolling(7, center=True, min_periods=4).mean()
        dow = index.day_of_week
        for c in values.columns:
            groups = [detrended[c][(dow == d) & detrended[c].notna().to_numpy()].to_numpy() for d in range(7)]
            groups = [g for g in groups if len(g) > 2]
            if len(groups) == 7 and stats.f_oneway(*groups).pvalue < 1e-3:
                periods.append(7.0)
                break
    return tuple(periods)


@dataclasses.dataclass(frozen=True)
class Scaler:
    """Per-column affine scaling ``(x - mean) / std`` with training statistics (saved with a model)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, df: pd.DataFrame) -> Scaler:
        mean = np.nan_to_num(df.mean().to_numpy(dtype=np.float64))
        std = df.std(ddof=0).to_numpy(dtype=np.float64)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        return cls(mean, std)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean


@dataclasses.dataclass
class GridArrays:
    """Scaled data on the grid: values with NaN where unobserved (``y``), gap-filled values (``filled``)."""

    y: np.ndarray  # (T, n)
    filled: np.ndarray  # (T, n)
    days: np.ndarray  # (T,) grid dates, days since 1970-01-01


def grid_arrays(frame: pd.DataFrame, scaler: Scaler, positions: np.ndarray, epoch_days: float,
                step_days: float) -> GridArrays:
    """Place the rows of ``frame`` at their grid ``positions`` (rows sharing a position are averaged)."""
    T = int(positions[-1]) + 1
    vals = scaler.transform(frame.to_numpy(dtype=np.float64))
    y = np.full((T, frame.shape[1]), np.nan)
    if len(np.unique(positions)) == len(positions):
        y[positions] = vals
    else:
        merged = pd.DataFrame(vals).groupby(positions).mean()
        y[merged.index.to_numpy()] = merged.to_numpy()
    filled = pd.DataFrame(y).ffill().bfill().fillna(0.0).to_numpy()
    return GridArrays(y=y, filled=filled, days=epoch_days + step_days * np.arange(T))


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
