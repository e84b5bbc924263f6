"""The second forecast suite (benchmarks/second_suite.py): what it writes is a suite the forecast-accuracy
harness reads, with the values of its sources. No model is fitted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from benchmark_modules import load_benchmark
from shared_data import require_shared


def test_the_second_suite_is_read_by_the_harness_with_its_sources_values(tmp_path):
    require_shared()
    pytest.importorskip("vega_datasets")
    from vega_datasets import local_data

    second, fa = load_benchmark("second_suite"), load_benchmark("forecast_accuracy")
    specs = json.loads(second.write_suite(tmp_path).read_text())["series"]
    assert [s["name"] for s in specs] == [
        "seattle_weather_weekly", "delhi_weekly", "us_employment_monthly", "stock_aapl_monthly",
        "stock_amzn_monthly", "stock_goog_monthly", "stock_ibm_monthly", "stock_msft_monthly",
        "seattle_temps_hourly"]
    by_name = {s["name"]: s for s in specs}
    for spec in specs:
        df, bounds = fa.load_series(spec, tmp_path)
        assert len(df) == spec["rows"] and list(df.columns) == spec["columns"]
        # Three windows of M4's horizon at the end, each with training rows before it.
        assert bounds == fa.origins(len(df), spec["horizon"]) and bounds[-1][1] == len(df)
        assert (spec["horizon"], spec["season"]) == second.M4[spec["frequency"]]
    # A weekly value is the mean of its week's days (pandas' weeks end on Sunday): 2012-01-02 to 01-08.
    daily = local_data.seattle_weather().set_index("date")
    weekly, _ = fa.load_series(by_name["seattle_weather_weekly"], tmp_path)
    week = daily.loc["2012-01-02":"2012-01-08", "temp_max"]
    assert len(week) == 7 and weekly.loc["2012-01-08", "temp_max"] == pytest.approx(week.mean())
    # The employment series keep every column and month as published; a stock is its own series.
    jobs, _ = fa.load_series(by_name["us_employment_monthly"], tmp_path)
    source = local_data.us_employment()
    assert jobs.shape == (120, 23)
    assert np.array_equal(jobs["nonfarm"].to_numpy(), source["nonfarm"].to_numpy())
    ibm, _ = fa.load_series(by_name["stock_ibm_monthly"], tmp_path)
    stocks = local_data.stocks()
    want = stocks[stocks["symbol"] == "IBM"]
    assert np.array_equal(ibm["price"].to_numpy(), want["price"].to_numpy())
    assert ibm.index[0] == pd.Timestamp(want["date"].iloc[0])
