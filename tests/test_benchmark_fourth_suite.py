"""The fourth forecast suite (benchmarks/fourth_suite.py): what it writes is a suite the forecast-accuracy
harness reads, with the values and dates of statsmodels' bundled data sets (the ``bench`` extra; skipped
without it). No model is fitted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from benchmark_modules import load_benchmark


def test_the_fourth_suite_is_read_by_the_harness_with_its_sources_values(tmp_path):
    datasets = pytest.importorskip("statsmodels.datasets")
    second, fourth = load_benchmark("second_suite"), load_benchmark("fourth_suite")
    fa = load_benchmark("forecast_accuracy")
    specs = json.loads(second.write_suite(tmp_path, fourth.series()).read_text())["series"]
    names = ["elec_equip_monthly", "nile_annual", "co2_weekly", "us_macro_quarterly",
             "danish_money_quarterly"]
    assert [s["name"] for s in specs] == names
    by_name = {}
    for spec in specs:
        df, bounds = fa.load_series(spec, tmp_path)
        by_name[spec["name"]] = df
        assert len(df) == spec["rows"] and bounds == fa.origins(len(df), spec["horizon"])
        assert bounds[-1][1] == len(df) and (spec["horizon"], spec["season"]) == second.M4[spec["frequency"]]
    # Values as the data sets hold them, dated as their sources date them.
    nile = datasets.nile.load_pandas().data
    np.testing.assert_array_equal(by_name["nile_annual"]["volume"].to_numpy(), nile["volume"].to_numpy(float))
    assert by_name["nile_annual"].index[0] == pd.Timestamp("1871-01-01") and len(nile) == 100
    macro = datasets.macrodata.load_pandas().data
    us = by_name["us_macro_quarterly"]
    assert list(us.columns) == ["realgdp", "cpi", "unemp", "realinv"]
    np.testing.assert_array_equal(us.to_numpy(), macro[list(us.columns)].to_numpy(float))
    assert us.index[0] == pd.Timestamp("1959-01-01") and us.index[-1] == pd.Timestamp("2009-07-01")
    # The CO2 record's last 800 weeks, its few missing weeks interpolated; weekly, 13 weeks ahead.
    co2 = by_name["co2_weekly"]
    assert len(co2) == 800 and co2["co2"].notna().all()
    assert co2.index[-1] == datasets.co2.load_pandas().data.index[-1]
    assert set(np.diff(co2.index.to_numpy()).astype("timedelta64[D]").astype(int)) == {7}
    orders = by_name["elec_equip_monthly"]["orders"]
    assert orders.iloc[0] == pytest.approx(66.19) and orders.index[0] == pd.Timestamp("1995-01-01")
    assert by_name["danish_money_quarterly"].shape == (55, 2)
