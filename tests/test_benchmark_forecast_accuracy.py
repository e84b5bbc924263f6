"""The forecast-accuracy benchmark's scoring (benchmarks/forecast_accuracy.py), checked with hand-computed
numbers: rolling-origin split, M4 MASE scale, seasonal naive, ranks with ties, and the seasonal-naive
substitution for a failed method. No model is fitted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from benchmark_modules import load_benchmark
from shared_data import DATA, require_shared

fa = load_benchmark("forecast_accuracy")


def test_origins_split_the_last_three_windows_exactly():
    bounds = fa.origins(100, 8)
    assert bounds == [(76, 84), (84, 92), (92, 100)]
    # each window trains on every row before it, the windows tile the end, the last ends at the last row
    assert [b[1] - b[0] for b in bounds] == [8, 8, 8]
    assert all(a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    assert bounds[-1][1] == 100
    assert fa.origins(10, 3, windows=1) == [(7, 10)]
    with pytest.raises(ValueError):
        fa.origins(24, 8)  # no training row left before the first window


def test_mase_scale_is_the_in_sample_seasonal_naive_mae():
    assert fa.mase_scale(np.arange(1.0, 9.0), 1) == 1.0
    # season 2: y[t] - y[t-2] = 1, 1, 1, 1; season 1: |diffs| = 2, 1, 2, 1, 2 -> 8 / 5
    y = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0])
    assert fa.mase_scale(y, 2) == 1.0
    assert fa.mase_scale(y, 1) == pytest.approx(8 / 5)
    # a missing value drops the pairs it is in: |3-1| and |4-3| remain of season 2's pairs
    assert fa.mase_scale(np.array([1.0, np.nan, 3.0, 4.0, 4.0]), 2) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        fa.mase_scale(np.arange(4.0), 4)


def test_seasonal_naive_repeats_the_last_season():
    y = np.array([9.0, 1.0, 2.0, 3.0, 4.0])
    assert fa.seasonal_naive(y, 5, 2).tolist() == [3.0, 4.0, 3.0, 4.0, 3.0]
    assert fa.seasonal_naive(y, 3, 1).tolist() == [4.0, 4.0, 4.0]
    assert fa.seasonal_naive(y, 2, 4).tolist() == [1.0, 2.0]


def test_mase_of_a_perfect_forecast_is_zero_and_missing_actuals_are_skipped():
    actual = np.array([3.0, 1.0, 4.0, 1.0, 5.0])
    assert fa.mase(actual, actual.copy(), 2.5) == 0.0
    # errors 1, (skipped), 3 -> MAE 2, / scale 4
    assert fa.mase(np.array([1.0, np.nan, 2.0]), np.array([2.0, 100.0, 5.0]), 4.0) == 0.5


def test_seasonal_naive_on_a_periodic_series_scores_zero():
    pattern = np.array([2.0, 7.0, 1.0, 5.0])
    y = np.tile(pattern, 5)  # 20 rows, season 4
    train, test = y[:12].copy(), y[12:]
    train[1] += 8.0  # one early disturbance so the scale is not zero: the pair (1, 5) differs by 8
    scale = fa.mase_scale(train, 4)
    assert scale == 1.0  # 8 over the 8 pairs one season apart
    assert fa.mase(test, fa.seasonal_naive(train, len(test), 4), scale) == 0.0


def test_seasonal_naive_mase_on_a_hand_computed_series():
    # season 2 training rows 1 3 2 4 3 5: scale 1; forecast 3 5 3 5 against 4 6 5 7 -> errors 1 1 2 2
    train = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0])
    actual = np.array([4.0, 6.0, 5.0, 7.0])
    assert fa.mase(actual, fa.seasonal_naive(train, 4, 2), fa.mase_scale(train, 2)) == 1.5
    # season 1 on a straight line: scale 1, last value 8 against 9 10 11 -> MASE 2
    line = np.arange(1.0, 9.0)
    assert fa.mase(np.array([9.0, 10.0, 11.0]), fa.seasonal_naive(line, 3, 1), fa.mase_scale(line, 1)) == 2.0


def test_ranks_share_ties():
    assert fa.ranks({"a": 1.0, "b": 2.0, "c": 2.0, "d": 0.5}) == {"d": 1.0, "a": 2.0, "b": 3.5, "c": 3.5}
    assert fa.ranks({"a": 1.0, "b": 1.0, "c": 1.0}) == {"a": 2.0, "b": 2.0, "c": 2.0}
    table = {"s1": {"a": 1.0, "b": 2.0, "c": 2.0}, "s2": {"a": 3.0, "b": 1.0, "c": 2.0}}
    # s1: a 1, b and c 2.5; s2: b 1, c 2, a 3
    assert fa.mean_ranks(table) == {"a": 2.0, "b": 1.75, "c": 2.25}
    assert fa.mean_ranks({"s1": {"a": 0.1, "b": 0.2}, "s2": {"a": 0.3, "b": 0.2}, "s3": {"a": 1.0, "b": 2.0}}
                         ) == pytest.approx({"a": 4 / 3, "b": 5 / 3})


def _frame(n=24, cols=("x", "y")):
    t = np.arange(n, dtype=np.float64)
    data = {"x": 10 + (t % 4) + 0.5 * t, "y": 3 - 0.25 * t + (t % 2)}
    return pd.DataFrame({c: data[c] for c in cols}, index=pd.date_range("2000-01-01", periods=n, freq="MS"))


class FakeWorker:
    """Answers like the benchmark's worker process, without fitting anything."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = 0

    def run(self, train, dates, season, timeout):
        self.calls += 1
        kind, payload = self.answers.pop(0)
        if kind == "exact":  # the true future values
            return ("ok", payload.loc[dates].to_numpy(), 0.5)
        return (kind, payload, 2.0)


def test_evaluate_scores_each_origin_and_substitutes_seasonal_naive_for_failures():
    df = _frame()
    spec = {"season": 4, "horizon": 4}
    bounds = fa.origins(len(df), 4)
    naive = fa.evaluate("snaive", spec, df, bounds, None, 10.0)
    assert naive["status"] == "ok" and naive["substituted"] == 0
    # by hand at the last origin (20 training rows): x's seasonal differences are all 2 (the trend 0.5 x 4),
    # seasonal naive misses each of the 4 test values by 2 -> MASE 1; y: differences 1, misses 1 -> MASE 1
    last = naive["origins"][-1]
    assert last["columns"] == {"x": 1.0, "y": 1.0} and last["train_rows"] == 20 and last["test_rows"] == 4
    assert naive["mase"] == pytest.approx(np.mean([o["mase"] for o in naive["origins"]]))

    perfect = fa.evaluate("m", spec, df, bounds, FakeWorker([("exact", df)] * 3), 10.0)
    assert perfect["mase"] == 0.0 and perfect["seconds"] == 1.5 and perfect["status"] == "ok"

    # a failure scores seasonal naive's MASE at that origin; a timeout skips the series' later origins
    worker = FakeWorker([("exact", df), ("failed", "boom"), ("timeout", "over 10 s")])
    mixed = fa.evaluate("m", spec, df, bounds, worker, 10.0)
    assert [o["status"] for o in mixed["origins"]] == ["ok", "failed", "timeout"]
    assert mixed["substituted"] == 2 and mixed["status"] == "failed"
    assert mixed["origins"][1]["mase"] == naive["origins"][1]["mase"]
    later = [o["mase"] for o in naive["origins"][1:]]
    assert mixed["mase"] == pytest.approx((0.0 + sum(later)) / 3)
    worker = FakeWorker([("timeout", "over 10 s")])
    timed = fa.evaluate("m", spec, df, bounds, worker, 10.0)
    assert worker.calls == 1 and [o["status"] for o in timed["origins"]] == ["timeout", "skipped", "skipped"]
    assert timed["mase"] == naive["mase"]

    # a forecast with a non-finite value is a failure too
    bad = df.copy()
    bad.iloc[-1, 0] = np.nan
    worker = FakeWorker([("exact", df), ("exact", df), ("exact", bad)])
    assert fa.evaluate("m", spec, df, bounds, worker, 10.0)["origins"][2]["status"] == "failed"


def test_report_marks_substituted_methods():
    df = _frame()
    spec = {"season": 4}
    bounds = fa.origins(len(df), 4)
    results = {"s": {"snaive": fa.evaluate("snaive", spec, df, bounds, None, 1.0),
                     "m": fa.evaluate("m", spec, df, bounds, FakeWorker([("n/a", "no season")] * 3), 1.0)}}
    text = fa.report(results, ["snaive", "m"])
    assert "(n/a, 3/3)" in text and "| **mean rank** | 1.50 | 1.50 |" in text


def test_the_suite_loads_numeric_columns_and_the_protocol_rows():
    require_shared()
    import json

    folder = DATA / "forecast-suite"
    specs = {s["name"]: s for s in json.loads((folder / "suite.json").read_text())["series"]}
    df, bounds = fa.load_series(specs["seattle_weather_daily"], folder)
    assert list(df.columns) == ["precipitation", "temp_max", "temp_min", "wind"]  # the text column dropped
    assert bounds == fa.origins(1461, 14) and bounds[-1][1] == len(df) == 1461
    df, bounds = fa.load_series(specs["delhi_daily"], folder)
    assert bounds == [(1462, 1462 + 113)] and len(df) == 1462 + 113
    assert df.index[1462] == pd.Timestamp("2017-01-02")  # 2017-01-01 is in both files: training data
    df, bounds = fa.load_series(specs["ausbeer_quarterly"], folder)
    assert len(df) == 211 and df.notna().all().all()  # the last, empty row is not a data row
    assert fa.mase_scale(df["megalitres"].to_numpy()[: bounds[0][0]], 4) > 0


# -- prediction intervals (issue 12) -------------------------------------------------------------------------


def test_coverage_counts_values_inside_the_interval_bounds_included():
    actual = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    lo = np.array([0.0, 2.0, 3.5, 0.0, 0.0])
    hi = np.array([2.0, 3.0, 5.0, 3.9, 0.0])
    # 1 in [0, 2], 2 on the lower bound, 3 below [3.5, 5], 4 above [0, 3.9]; the missing value is skipped
    assert fa.coverage(actual, lo, hi) == 0.5
    assert np.isnan(fa.coverage(np.array([np.nan]), np.array([0.0]), np.array([1.0])))
    with pytest.raises(ValueError):
        fa.coverage(actual, lo[:3], hi)


def test_msis_matches_hand_computed_m4_scores():
    # level 80: a = 0.2, penalty 2/a = 10 per unit outside; level 95: a = 0.05, penalty 40
    actual = np.array([5.0, 1.0, 9.0, np.nan])
    lo = np.array([4.0, 2.0, 6.0, 0.0])
    hi = np.array([6.0, 3.0, 8.0, 0.0])
    # widths 2, 1, 2; the second value is 1 below its interval, the third 1 above
    # 80: (2 + (1 + 10) + (2 + 10)) / 3 = 25 / 3; / scale 2
    assert fa.msis(actual, lo, hi, 80, 2.0) == pytest.approx(25 / 6)
    # 95: (2 + 41 + 42) / 3 = 85 / 3
    assert fa.msis(actual, lo, hi, 95, 1.0) == pytest.approx(85 / 3)
    # all inside: the mean width only
    assert fa.msis(np.array([1.0, 2.0]), np.array([0.0, 0.0]), np.array([2.0, 4.0]), 95, 3.0) == 1.0
    with pytest.raises(ValueError):
        fa.msis(actual, lo, hi, 100, 1.0)


def test_scores_agree_with_pyanodes_interval_metrics():
    from pyanode.forecast.intervals import interval_metrics

    rng = np.random.default_rng(3)
    y = rng.normal(size=20)
    lo, hi = -1.0 + 0.1 * rng.normal(size=20), 1.0 + 0.1 * rng.normal(size=20)
    y[4] = np.nan
    idx = pd.date_range("2000-01-01", periods=20, freq="D")
    pred = pd.DataFrame({"x-lo-80": lo, "x-hi-80": hi}, index=idx)
    ref = interval_metrics(pred, pd.DataFrame({"x": y}, index=idx), {"x": 1.7}, [80], quantiles=())["x"]
    assert fa.coverage(y, lo, hi) == pytest.approx(ref["coverage-80"])
    assert fa.msis(y, lo, hi, 80, 1.7) == pytest.approx(ref["msis-80"])


def test_seasonal_naive_bands_grow_with_each_season_ahead():
    # season 2 training rows 1 3 2 4 3 5: in-sample errors all 1 -> sigma 1
    train = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0])
    lo, hi = fa.seasonal_naive_bands(train, 5, 2, 95)
    z = 1.959963984540054
    k = np.array([1.0, 1.0, 2.0, 2.0, 3.0])  # seasons ahead, counting the first
    assert hi == pytest.approx(np.array([3.0, 5.0, 3.0, 5.0, 3.0]) + z * np.sqrt(k))
    assert lo == pytest.approx(np.array([3.0, 5.0, 3.0, 5.0, 3.0]) - z * np.sqrt(k))
    # season 1, errors 2 and 0: sigma sqrt(2); 80% z 1.2816
    lo, hi = fa.seasonal_naive_bands(np.array([0.0, 2.0, 2.0]), 2, 1, 80)
    assert hi - 2.0 == pytest.approx(1.2815515655446004 * np.sqrt(2) * np.sqrt([1.0, 2.0]))


def test_check_bands_names_what_is_wrong():
    good = {80: (np.zeros((3, 2)), np.ones((3, 2))), 95: (-np.ones((3, 2)), 2 * np.ones((3, 2)))}
    assert fa.check_bands(good, (3, 2)) == ""
    assert "no 95%" in fa.check_bands({80: good[80]}, (3, 2))
    assert "shape" in fa.check_bands(good, (4, 2))
    nan = {**good, 95: (np.full((3, 2), np.nan), good[95][1])}
    assert "non-finite" in fa.check_bands(nan, (3, 2))
    assert "lo > hi" in fa.check_bands({**good, 80: (good[80][1], good[80][0])}, (3, 2))


class BandWorker(FakeWorker):
    """Answers with the true future as the point forecast and an interval of +-``half`` around it, shifted
    by ``shift``."""

    def __init__(self, df, half, shift=0.0, answers=None):
        super().__init__(answers or [])
        self.df, self.half, self.shift = df, half, shift

    def run(self, train, dates, season, timeout):
        if self.answers:
            return super().run(train, dates, season, timeout)
        self.calls += 1
        y = self.df.loc[dates].to_numpy()
        bands = {lv: (y + self.shift - self.half * k, y + self.shift + self.half * k)
                 for lv, k in ((80, 1.0), (95, 2.0))}
        return ("ok", {"pred": y, "bands": bands, "timing": {"fit_s": 1.0}}, 0.5)


def test_evaluate_scores_intervals_and_substitutes_seasonal_naive_s():
    df = _frame()
    spec = {"season": 4}
    bounds = fa.origins(len(df), 4)
    naive = fa.evaluate("snaive", spec, df, bounds, None, 10.0)
    assert naive["interval_substituted"] == 0 and set(naive["intervals"]) == set(fa.INTERVAL_KEYS)

    # intervals of half-width 0.5 (80%) and 1 (95%) around the truth, on MASE's scale at each origin
    exact = fa.evaluate("m", spec, df, bounds, BandWorker(df, 0.5), 10.0)
    assert exact["intervals"]["coverage-80"] == 1.0 and exact["intervals"]["coverage-95"] == 1.0
    # last origin: scales 2 (x) and 1 (y), so msis-80 = mean(1 / 2, 1 / 1) and msis-95 = mean(2 / 2, 2 / 1)
    last = exact["origins"][-1]
    assert last["interval_columns"]["x"]["msis-80"] == 0.5 and last["interval_columns"]["y"]["msis-80"] == 1.0
    assert last["intervals"]["msis-80"] == 0.75 and last["intervals"]["msis-95"] == 1.5
    assert exact["timing"] == {"fit_s": 3.0, "origins": 3}

    # shifted by 2: every value below both intervals. At the last origin, 80%: width 1 plus 10 times the
    # miss 1.5; 95%: width 2 plus 40 times the miss 1; x on scale 2, y on scale 1
    off = fa.evaluate("m", spec, df, bounds, BandWorker(df, 0.5, shift=2.0), 10.0)
    last = off["origins"][-1]
    assert last["intervals"]["coverage-80"] == 0.0 and last["intervals"]["coverage-95"] == 0.0
    assert last["intervals"]["msis-80"] == pytest.approx(np.mean([16 / 2, 16 / 1]))
    assert last["intervals"]["msis-95"] == pytest.approx(np.mean([42 / 2, 42 / 1]))

    # a failed origin scores seasonal naive's intervals there; so do non-finite bounds
    mixed = fa.evaluate("m", spec, df, bounds, BandWorker(df, 0.5, answers=[("failed", "boom")]), 10.0)
    assert mixed["interval_substituted"] == 1 and mixed["interval_status"] == "failed"
    assert mixed["origins"][0]["intervals"] == naive["origins"][0]["intervals"]
    assert mixed["origins"][1]["intervals"] == exact["origins"][1]["intervals"]
    nan = BandWorker(df, np.nan)
    bad = fa.evaluate("m", spec, df, bounds, nan, 10.0)
    assert bad["status"] == "ok" and bad["mase"] == 0.0  # the point forecasts still count
    assert bad["interval_substituted"] == 3 and bad["intervals"] == naive["intervals"]
    # a method that gives no intervals has no interval scores (the runner recomputes such cached entries)
    point = fa.evaluate("m", spec, df, bounds, FakeWorker([("exact", df)] * 3), 10.0)
    assert "intervals" not in point and point["origins"][0]["interval_status"] == "n/a"


def test_interval_report_and_pyanode_cost():
    df = _frame()
    spec = {"season": 4}
    bounds = fa.origins(len(df), 4)
    results = {"s": {"snaive": fa.evaluate("snaive", spec, df, bounds, None, 1.0),
                     "m": fa.evaluate("m", spec, df, bounds, BandWorker(df, 0.5), 1.0)}}
    text = fa.interval_report(results, ["snaive", "m"])
    # MSIS 0.75 / 1.5 at every origin: x's scale is 2 and y's 1 at each
    assert "| **mean** |" in text and "100.0% / 100.0%" in text and "**0.75** / **1.50**" in text
    means = fa.interval_means(results, ["snaive", "m"])
    assert means["m"]["coverage-80"] == 1.0 and means["m"]["series"] == 1
    # point: fit 10 - calibration 1 + predict 0.5 = 9.5; with intervals: 10 + predict(level=) 0.9 = 10.9
    cost = fa.interval_cost({"fit_s": 10.0, "calibrate_s": 1.0, "predict_s": 0.5, "predict_level_s": 0.9})
    assert cost == pytest.approx((9.5, 10.9, 10.9 / 9.5))


def test_the_ensemble_benchmark_combines_the_seeds_forecasts_as_it_says():
    fe = load_benchmark("forecast_ensembles")
    preds = [np.array([[1.0, 10.0]]), np.array([[2.0, 40.0]]), np.array([[6.0, 20.0]])]
    offs = [np.array([[3.0, 0.0]]), np.zeros((1, 2)), np.zeros((1, 2))]
    got = fe.variants(preds, offs, [0, 5, 7])
    assert list(got) == ["seed 0", "seed 5", "seed 7", "mean of seeds", "median of seeds", "field halved",
                         "field off"]
    np.testing.assert_array_equal(got["seed 5"], preds[1])
    np.testing.assert_array_equal(got["mean of seeds"], [[3.0, 70 / 3]])
    np.testing.assert_array_equal(got["median of seeds"], [[2.0, 20.0]])
    np.testing.assert_array_equal(got["field halved"], [[2.0, 5.0]])
    np.testing.assert_array_equal(got["field off"], offs[0])
