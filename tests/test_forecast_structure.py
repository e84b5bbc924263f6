"""The closed-form structure (trend, cycles, transform) chosen by backtest: pyanode.forecast.structure."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pyanode.forecast.grid import days_since_epoch, grid_positions
from pyanode.forecast.structure import (
    backtest_horizon,
    candidate_periods,
    choose_structure,
    harmonics_for,
)
from tests.shared_data import DATA, require_shared


def _grid(frame: pd.DataFrame) -> tuple[np.ndarray, float, float]:
    step, pos, _ = grid_positions(frame.index)
    y = np.full((pos[-1] + 1, frame.shape[1]), np.nan)
    y[pos] = frame.to_numpy(dtype=np.float64)
    return y, step, float(days_since_epoch(frame.index[:1])[0])


def test_candidate_periods_follow_the_grid_step_and_the_span():
    assert candidate_periods(1 / 24, 365) == (1.0, 7.0)  # a year of hours: no yearly cycle (needs two)
    assert candidate_periods(1.0, 4 * 365) == (7.0, 365.25)
    assert candidate_periods(365.25 / 4, 50 * 365) == (365.25,)  # quarterly data still get a yearly cycle
    assert candidate_periods(365.25, 100 * 365) == ()
    assert harmonics_for(365.25, 365.25 / 4) == 2  # Nyquist: four quarters hold two harmonics
    assert harmonics_for(1.0, 1 / 24) == 12
    assert (backtest_horizon(1 / 24), backtest_horizon(1.0), backtest_horizon(365.25 / 12)) == (48, 14, 18)


def test_a_daily_cycle_is_found_in_hourly_data():
    require_shared()
    df = pd.read_csv(DATA / "forecast-suite" / "sf_temps_hourly.csv", parse_dates=["date"], index_col="date")
    y, step, epoch = _grid(df)
    s = choose_structure(y, step, epoch)
    assert 1.0 in s.columns[0].periods
    assert "daily cycle" in s.columns[0].describe()


def test_no_daily_cycle_in_daily_weather():
    require_shared()
    df = pd.read_csv(DATA / "forecast-suite" / "seattle_weather_daily.csv", parse_dates=["date"],
                     index_col="date")[["temp_max", "temp_min"]]
    y, step, epoch = _grid(df)
    s = choose_structure(y, step, epoch)
    for col in s.columns:
        assert 1.0 not in col.periods  # a day's cycle cannot be seen in one value a day


def test_a_weekly_cycle_is_found_in_shop_sales():
    rng = np.random.default_rng(0)
    idx = pd.date_range("2020-01-01", periods=400, freq="D")
    weekday = np.array([0, 0, 0, 0, 1, 3, 2], dtype=float)[idx.day_of_week]
    y, step, epoch = _grid(pd.DataFrame({"sales": 10 + weekday + 0.3 * rng.normal(size=400)}, index=idx))
    s = choose_structure(y, step, epoch)
    assert 7.0 in s.columns[0].periods
    assert 365.25 not in s.columns[0].periods  # 400 days do not cover two years


def test_multiplicative_seasonality_gets_the_log_scale_and_the_structure_reproduces_it():
    # Airline-like: a yearly cycle whose amplitude grows with the level (exactly multiplicative).
    idx = pd.date_range("1990-01-01", periods=120, freq="MS")
    t = np.arange(120)
    y_true = 100 * np.exp(0.01 * t) * (1 + 0.2 * np.sin(2 * np.pi * t / 12))
    y, step, epoch = _grid(pd.DataFrame({"x": y_true}, index=idx))
    s = choose_structure(y, step, epoch, horizon=12)
    col = s.columns[0]
    assert col.transform == "log" and 365.25 in col.periods and col.parts[0].trend in ("linear", "local")
    # Its forecast a year past the data is within 2% of the truth.
    future = np.arange(120, 132)
    fitted = s.from_standard(s.mu(future))[:, 0]
    truth = 100 * np.exp(0.01 * future) * (1 + 0.2 * np.sin(2 * np.pi * future / 12))
    assert np.max(np.abs(fitted / truth - 1)) < 0.02


def test_scores_rank_the_candidates_and_the_winner_is_first():
    rng = np.random.default_rng(1)
    idx = pd.date_range("2000-01-01", periods=200, freq="D")
    y, step, epoch = _grid(pd.DataFrame({"x": 5 + 0.05 * np.arange(200) + rng.normal(size=200)}, index=idx))
    col = choose_structure(y, step, epoch).columns[0]
    assert col.parts[0].trend in ("linear", "local")  # a clear trend is not left to the residual
    names = [n for n, _ in col.scores]
    assert len(names) == len(set(names)) > 1
    scores = [v for _, v in col.scores]
    assert scores[1:] == sorted(scores[1:])
    assert scores[0] <= scores[1] * 1.02  # the winner is best or within the near-tie margin


def test_explicit_seasonality_is_used_exactly():
    idx = pd.date_range("2000-01-01", periods=800, freq="D")
    y, step, epoch = _grid(pd.DataFrame({"x": np.random.default_rng(2).normal(size=800)}, index=idx))
    s = choose_structure(y, step, epoch, seasonal=(7.0, 365.25))
    assert s.columns[0].periods == (7.0, 365.25)
    assert choose_structure(y, step, epoch, seasonal=()).columns[0].periods == ()


def test_the_structure_is_a_pure_function_of_the_data():
    require_shared()
    df = pd.read_csv(DATA / "forecast-suite" / "ausbeer_quarterly.csv", parse_dates=["quarter"],
                     index_col="quarter")
    y, step, epoch = _grid(df)
    a, b = choose_structure(y, step, epoch), choose_structure(y, step, epoch)
    assert a == b
    assert 365.25 in a.columns[0].periods  # beer is brewed for the summer, quarter by quarter


@pytest.mark.parametrize("transform", ["none", "log"])
def test_standardisation_round_trips(transform):
    idx = pd.date_range("2000-01-01", periods=60, freq="D")
    vals = np.exp(np.random.default_rng(3).normal(size=(60, 1)))
    y, step, epoch = _grid(pd.DataFrame({"x": vals[:, 0]}, index=idx))
    s = choose_structure(y, step, epoch, seasonal=())
    s = dataclasses.replace(s, columns=(dataclasses.replace(s.columns[0], transform=transform),))
    np.testing.assert_allclose(s.from_standard(s.to_standard(vals)), vals, rtol=1e-12)


def test_a_linear_trend_is_extrapolated_a_quarter_of_the_series_ahead():
    """The issue's check, through the forecaster: a line plus noise, forecast a quarter of its length
    ahead, stays within a few percent of the line (the neural ODE models only what is left)."""
    import pyanode

    rng = np.random.default_rng(4)
    n, ahead = 400, 100
    idx = pd.date_range("2019-01-01", periods=n + ahead, freq="D")
    line = 10 + 0.05 * np.arange(n + ahead)
    df = pd.DataFrame({"y": line[:n] + rng.normal(0, 0.5, n)}, index=idx[:n])
    fc = pyanode.fit(df, horizon=ahead, iterations=40, hidden=8, progress=False)
    assert fc.structure.columns[0].parts[0].trend in ("linear", "local")
    pred = fc.predict(horizon=ahead)["y"].to_numpy()
    assert np.max(np.abs(pred / line[n:] - 1)) < 0.04  # measured: 2.8%
