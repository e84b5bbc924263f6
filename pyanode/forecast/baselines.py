"""The naive baselines every forecast is scored against, and the point metrics.

* persistence -- the last valid training value of each column, for every future date;
* seasonal naive -- the value on the same date one season earlier (:func:`season_of`: a year when the
  training data span at least two years, else a week for daily or finer data spanning two weeks; with no
  season it equals persistence); when that date is missing or masked, the nearest valid training value
  within half a season's step is used, and dates more than one season ahead go back whole seasons until
  they land inside the training data;
* mean -- the training mean of each column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["baseline_forecasts", "metrics", "season_of"]



def season_of(index: pd.DatetimeIndex) -> pd.DateOffset | None:
    """The seasonal period used by the seasonal-naive baseline (see the module docstring)."""
    if len(index) < 2:
        return None
    span = index[-1] - index[0]
    if span >= pd.Timedelta(days=730):
        return pd.DateOffset(years=1)
    step = pd.Series(index).diff().median()
    if step <= pd.Timedelta(days=1) and span >= pd.Timedelta(days=14):
        return pd.DateOffset(weeks=1)
    return None


def _seasonal_naive(train: pd.DataFrame, dates: pd.DatetimeIndex, season: pd.DateOffset | None,
                    last: pd.Series) -> pd.DataFrame:
    if season is None:
        return pd.DataFrame(np.tile(last.to_numpy(), (len(dates), 1)), index=dates, columns=train.columns)
    step = pd.Series(train.index).diff().median()
    out = pd.DataFrame(index=dates, columns=train.columns, dtype="float64")
    end = train.index[-1]
    for c in train.columns:
        col = train[c].dropna()
        vals = []
        for d in dates:
            back = d - season
            while back > end:
                back = back - season
            j = col.index.get_indexer([back], method="nearest")[0]
            if j >= 0 and abs(col.index[j] - back) <= max(step / 2, pd.Timedelta(0)):
                vals.append(col.iloc[j])
            else:  # no observation near that date: fall back to the nearest one within a season's step
                vals.append(col.iloc[j] if j >= 0 else last[c])
        out[c] = vals
    return out


def baseline_forecasts(train: pd.DataFrame, dates: pd.DatetimeIndex) -> dict[str, pd.DataFrame]:
    """Forecasts of the three naive baselines for ``dates`` from cleaned training data."""
    last = train.apply(lambda s: s.dropna().iloc[-1] if s.notna().any() else np.nan)
    mean = train.mean()
    return {
        "persistence": pd.DataFrame(np.tile(last.to_numpy(), (len(dates), 1)), index=dates,
                                    columns=train.columns),
        "seasonal_naive": _seasonal_naive(train, dates, season_of(train.index), last),
        "mean": pd.DataFrame(np.tile(mean.to_numpy(), (len(dates), 1)), index=dates, columns=train.columns),
    }


def metrics(pred: pd.DataFrame, truth: pd.DataFrame) -> dict[str, dict[str, float]]:
    """MAE and RMSE per column over the dates where the truth is present."""
    out = {}
    for c in truth.columns:
        err = (pred[c] - truth[c]).dropna()
        out[c] = {
            "mae": float(err.abs().mean()) if len(err) else float("nan"),
            "rmse": float(np.sqrt((err**2).mean())) if len(err) else float("nan"),
        }
    return out
