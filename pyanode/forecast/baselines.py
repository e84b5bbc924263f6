"""The naive baselines every forecast is scored against, and the point metrics.

* persistence -- the last valid training value of each column, for every future date;
* seasonal naive -- the value on the same date one season earlier (:func:`season_of`: a year when the
  training data span at least two years, else a week for daily or finer data spanning two weeks; with no
  season it equals persistence); when that date is missing or masked, the nearest valid training value
  within half a season's step is used, and dates more than one season ahead go back whole seasons until
  they land inside the training data;
* mean -- the training mean of each column.

Point metrics: MAE, RMSE and MASE (Hyndman & Koehler 2006, with the M4 competition's scale: the
in-sample MAE of the seasonal-naive forecast with the M4 season of the data's frequency -- 24 steps for
hourly data, 12 monthly, 4 quarterly, 1 daily, weekly and yearly; :func:`mase_season`). A MASE below 1
beats that in-sample naive forecast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["baseline_forecasts", "mase_scales", "mase_season", "metrics", "season_of"]


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


def mase_season(step_days: float) -> int:
    """The M4 competition's season (in steps) for MASE's scale: a day of sub-daily steps, 12 for
    monthly, 4 for quarterly, 1 otherwise (daily, weekly, yearly)."""
    if step_days < 1.0 - 1e-9:
        return max(1, round(1.0 / step_days))
    if abs(step_days - 365.25 / 12) < 4:
        return 12
    if abs(step_days - 365.25 / 4) < 10:
        return 4
    return 1


def mase_scales(train: pd.DataFrame, step_days: float) -> dict[str, float]:
    """Per column, the in-sample MAE of the seasonal-naive forecast (MASE's denominator), over the
    training rows (in order; rows with a missing or masked value are skipped)."""
    m = mase_season(step_days)
    scales = {}
    for c in train.columns:
        v = train[c].dropna().to_numpy(dtype=np.float64)
        scales[c] = float(np.mean(np.abs(v[m:] - v[:-m]))) if len(v) > m else float("nan")
    return scales


def metrics(pred: pd.DataFrame, truth: pd.DataFrame, scales: dict[str, float] | None = None
            ) -> dict[str, dict[str, float]]:
    """MAE, RMSE and (given ``scales`` from :func:`mase_scales`) MASE per column over the dates where the
    truth is present."""
    out = {}
    for c in truth.columns:
        err = (pred[c] - truth[c]).dropna()
        mae = float(err.abs().mean()) if len(err) else float("nan")
        out[c] = {"mae": mae, "rmse": float(np.sqrt((err**2).mean())) if len(err) else float("nan")}
        if scales is not None:
            scale = scales.get(c, float("nan"))
            out[c]["mase"] = mae / scale if scale > 0 else float("nan")
    return out
