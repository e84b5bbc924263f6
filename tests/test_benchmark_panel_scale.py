"""The panel benchmark's pure helpers: the generator's shape and determinism, MASE by hand, gap filling."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from panel_data import HORIZON, make_panel  # noqa: E402
from panel_scale import (  # noqa: E402
    above_input,
    fill_gaps,
    mase,
    mase_scales,
    per_series_kb,
    phase_memory,
    tables,
)


def test_panel_shape_and_seed():
    train, test = make_panel(30, seed=3)
    assert list(train.columns) == ["unique_id", "ds", "y"] and list(test.columns) == ["unique_id", "ds", "y"]
    assert train["unique_id"].nunique() == 30 and (test.groupby("unique_id").size() == HORIZON).all()
    assert (train["y"] > 0).all() and (test["y"] > 0).all()
    assert (train["ds"].dt.day == 1).all()
    lengths = train.groupby("unique_id").size()
    assert lengths.min() >= 48 - 6 and lengths.max() <= 240  # gaps remove at most 6 months
    assert lengths.nunique() > 5 and train.groupby("unique_id")["ds"].min().nunique() > 5
    # the test follows training: the first test month is after the last training month, no gaps in the test
    last = train.groupby("unique_id")["ds"].max()
    first = test.groupby("unique_id")["ds"].min()
    assert (first > last).all()
    span = test.groupby("unique_id")["ds"].agg(lambda d: (d.max().year - d.min().year) * 12
                                                + d.max().month - d.min().month)
    assert (span == HORIZON - 1).all()
    again_train, again_test = make_panel(30, seed=3)
    pd.testing.assert_frame_equal(train, again_train)
    pd.testing.assert_frame_equal(test, again_test)
    other, _ = make_panel(30, seed=4)
    assert not np.allclose(other["y"].to_numpy()[:40], train["y"].to_numpy()[:40])
    # series i does not depend on the panel's size
    small, _ = make_panel(5, seed=3)
    pd.testing.assert_frame_equal(small, train[train["unique_id"].isin(small["unique_id"].unique())])
    # some series have gaps somewhere in a bigger panel
    big, _ = make_panel(200, seed=0)
    months = big.groupby("unique_id")["ds"].agg(lambda d: (d.max().year - d.min().year) * 12
                                                 + d.max().month - d.min().month + 1)
    assert (months > big.groupby("unique_id").size()).sum() > 10


def _frame(uid: str, start: str, values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=len(values), freq="MS"),
                         "y": values})


def test_mase_by_hand():
    train = pd.concat([_frame("a", "2000-01-01", [1, 2, 4, 8, 9]), _frame("b", "2001-05-01", [10, 10, 13])])
    test = pd.concat([_frame("a", "2000-06-01", [10, 12]), _frame("b", "2001-08-01", [13])])
    # season 1: a's diffs 1, 2, 4, 1 -> scale 2; b's 0, 3 -> 1.5
    scales = mase_scales(train, 1)
    assert scales["a"] == pytest.approx(2.0) and scales["b"] == pytest.approx(1.5)
    # season 2: a's |4-1|, |8-2|, |9-4| -> 14/3; b's |13-10| -> 3
    assert mase_scales(train, 2)["a"] == pytest.approx(14 / 3)
    forecast = pd.concat([_frame("b", "2001-08-01", [10.0, 99.0]), _frame("a", "2000-06-01", [9.0, 9.0])])
    got = mase(train, test, forecast, 1)
    assert got["a"] == pytest.approx((1 + 3) / 2 / 2.0) and got["b"] == pytest.approx(3 / 1.5)
    with pytest.raises(ValueError, match="no forecast"):
        mase(train, test, forecast.iloc[:2], 1)


def test_mase_scale_uses_dates_across_a_gap():
    # March is missing: the lag-1 pairs are (Jan, Feb) and (Apr, May) only
    train = _frame("a", "2000-01-01", [1, 3, 0, 10, 14]).drop(index=2)
    assert mase_scales(train, 1)["a"] == pytest.approx((2 + 4) / 2)


def test_fill_gaps_interpolates_inside_each_series():
    train = pd.concat([_frame("a", "2000-01-01", [1, 2, 3, 4, 5]).drop(index=[1, 2]),
                       _frame("b", "1999-11-01", [7, 8, 9]).drop(index=1)])
    filled = fill_gaps(train)
    assert filled["unique_id"].tolist() == ["a"] * 5 + ["b"] * 3
    assert filled["y"].tolist() == [1, 2, 3, 4, 5, 7, 8, 9]
    assert filled["ds"].tolist() == [*pd.date_range("2000-01-01", periods=5, freq="MS"),
                                     *pd.date_range("1999-11-01", periods=3, freq="MS")]


def test_peak_above_input_and_its_slope_per_series():
    """The memory columns: a method's peak (up to its return, not the scoring's) less the RSS with its input
    made, and the KB each more series costs (the slope between the smallest and largest panel); cells from
    before both were recorded give none."""
    timing = dict.fromkeys(["fit_s", "predict_s", "total_s", "series_per_s", "tree_pss_peak_mb", "mase_mean",
                            "mase_median", "prepare_s", "train_s", "step_s_total", "first_step_s"], 1.0)
    results = {"panel/1000/pyanode": {**timing, "iterations_run": 9, "rss_self_mb": 600.0,
                                      "rss_method_mb": 500.0, "rss_input_mb": 300.0},
               "panel/10000/pyanode": {**timing, "iterations_run": 9, "rss_self_mb": 900.0,
                                       "rss_method_mb": 800.0, "rss_input_mb": 450.0},
               "panel/1000/autoets": {**timing, "rss_self_mb": 275.0},
               "panel/10000/autoets": {**timing, "rss_self_mb": 580.0, "rss_input_mb": 450.0}}
    assert above_input(results["panel/10000/pyanode"]) == 350.0
    assert above_input(results["panel/1000/autoets"]) is None
    assert per_series_kb(results, "pyanode") == pytest.approx((350.0 - 200.0) * 1024 / 9000)
    assert per_series_kb(results, "autoets") is None
    assert "pyanode 17.1" in tables(results) and "| 450 | 800 | 350 |" in tables(results)


def test_memory_by_phase_and_its_growth_per_series():
    """Each phase's RSS and running peak less the input's RSS, and their growth per series between the
    smallest and the largest panel; cells from before phases were recorded give no table."""
    base = dict.fromkeys(["fit_s", "predict_s", "total_s", "series_per_s", "tree_pss_peak_mb", "mase_mean",
                          "mase_median", "prepare_s", "train_s", "step_s_total", "first_step_s",
                          "rss_self_mb", "rss_method_mb"], 1.0)
    phases = {"imported": [300, 300], "prepare": [350, 360], "train": [470, 480], "fit": [470, 480],
              "predict": [480, 490]}
    bigger = {k: [a + 90, b + 90] if k != "imported" else [a, b] for k, (a, b) in phases.items()}
    results = {"panel/1000/pyanode": {**base, "iterations_run": 9, "rss_input_mb": 100.0,
                                      "rss_phases_mb": phases},
               "panel/10000/pyanode": {**base, "iterations_run": 9, "rss_input_mb": 100.0,
                                       "rss_phases_mb": bigger}}
    assert phase_memory(results["panel/1000/pyanode"])["train"] == (370.0, 380.0)
    assert phase_memory({**base, "rss_input_mb": 100.0}) is None
    text = tables(results)
    assert "| 1,000 | 200 (200) | 250 (260) | 370 (380) | 370 (380) | 380 (390) |" in text
    # 90 MB more over 9,000 more series: 10.2 KB each, in every phase after the import
    assert "| KB per series | 0.0 (0.0) | 10.2 (10.2) | 10.2 (10.2) | 10.2 (10.2) | 10.2 (10.2) |" in text
    assert "at the end of each phase" not in tables({"panel/1000/pyanode": {**base, "iterations_run": 9}})
