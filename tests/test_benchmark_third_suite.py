"""The third forecast suite (benchmarks/third_suite.py): what it writes is a suite the forecast-accuracy
harness reads, with the values and dates of pmdarima's bundled data sets (the ``bench`` extra; skipped
without it). No model is fitted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from benchmark_modules import load_benchmark


def test_the_third_suite_is_read_by_the_harness_with_its_sources_values(tmp_path):
    datasets = pytest.importorskip("pmdarima.datasets")
    second, third = load_benchmark("second_suite"), load_benchmark("third_suite")
    fa = load_benchmark("forecast_accuracy")
    specs = json.loads(second.write_suite(tmp_path, third.series()).read_text())["series"]
    assert [s["name"] for s in specs] == ["taylor_halfhourly", "wineind_monthly", "austres_quarterly"]
    sources = {"taylor_halfhourly": datasets.load_taylor(), "wineind_monthly": datasets.load_wineind(),
               "austres_quarterly": datasets.load_austres()}
    for spec in specs:
        df, bounds = fa.load_series(spec, tmp_path)
        assert len(df) == spec["rows"] == len(sources[spec["name"]]) and df.shape[1] == 1
        np.testing.assert_array_equal(df.iloc[:, 0].to_numpy(), np.asarray(sources[spec["name"]], float))
        assert bounds == fa.origins(len(df), spec["horizon"]) and bounds[-1][1] == len(df)
        assert (spec["horizon"], spec["season"]) == second.M4[spec["frequency"]]
    by_name = {s["name"]: fa.load_series(s, tmp_path)[0] for s in specs}
    # Taylor's demand: Monday 5 June 2000 to Sunday 27 August 2000, 48 half-hours a day (12 weeks).
    demand = by_name["taylor_halfhourly"].index
    assert demand[0] == pd.Timestamp("2000-06-05") and demand[-1] == pd.Timestamp("2000-08-27 23:30")
    assert demand[0].day_name() == "Monday" and len(demand) == 12 * 7 * 48
    # Two days ahead (96 half-hours) with a day's season, three windows.
    assert specs[0]["horizon"] == 96 and specs[0]["season"] == 48
    assert by_name["austres_quarterly"].index[-1] == pd.Timestamp("1993-04-01")
