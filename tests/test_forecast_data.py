"""Data handling for forecasting: dates, sorting, duplicates, columns, outliers, scaling, baselines."""

import numpy as np
import pandas as pd
import pytest

from pyanode.datasets import delhi_climate_files
from pyanode.forecast.baselines import baseline_forecasts, mase_scales, mase_season, metrics, season_of
from pyanode.forecast.data import DataError, DataReport, _local_z, clean, load_frame, resample_frame


def _frame(n=10, start="2020-01-01"):
    idx = pd.date_range(start, periods=n, freq="D")
    return pd.DataFrame({"a": np.arange(n, dtype=float), "b": np.arange(n, dtype=float) ** 2}, index=idx)


def test_dates_from_index_named_column_and_first_parseable_column(tmp_path):
    df = _frame()
    got, rep = load_frame(df)
    assert got.index.equals(df.index) and rep.rows == 10
    assert (rep.start, rep.end) == ("2020-01-01", "2020-01-10")
    flat = df.reset_index(names="timestamp")
    got2, rep2 = load_frame(flat)
    assert got2.index.equals(df.index) and rep2.date_column == "timestamp"
    odd = df.reset_index(names="when")[["a", "when", "b"]]
    got3, rep3 = load_frame(odd)
    assert rep3.date_column == "when" and list(got3.columns) == ["a", "b"]
    # Named: as a column, or as the index's name; and a column of datetime.date objects.
    assert load_frame(odd, date_column="when")[0].equals(got3)
    assert load_frame(odd.set_index("when"), date_column="when")[0].equals(got3)
    dated = df.reset_index(drop=True).assign(day=df.index.date)
    got5, rep5 = load_frame(dated)
    assert rep5.date_column == "day" and list(got5.index) == list(df.index)
    path = tmp_path / "x.csv"
    flat.to_csv(path, index=False)
    got4, _ = load_frame(path)
    pd.testing.assert_frame_equal(got4, got2, check_names=False, check_freq=False)


def test_no_date_column_and_unparseable_dates():
    with pytest.raises(DataError, match="no date column"):
        load_frame(pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]}))
    bad = pd.DataFrame({"date": ["2020-01-01", "not a date", "2020-01-03"], "x": [1.0, 2, 3]})
    with pytest.raises(DataError) as err:
        load_frame(bad)
    assert str(err.value) == "date column 'date': 1 values do not parse as dates (e.g. 'not a date')"
    # A column named like a date column is the date column: if it does not parse, that is the error (not
    # "no date column found").
    named = pd.DataFrame({"x": [1.0, 2.0], "Start Date": ["soon", "later"]})
    with pytest.raises(DataError) as err:
        load_frame(named)
    assert str(err.value) == "date column 'Start Date' has values that are not dates (e.g. 'soon')"
    with pytest.raises(DataError, match=r"^no column named 'when'; the columns are: date, x$"):
        load_frame(bad, date_column="when")


def test_sorting_duplicates_and_dedupe():
    df = _frame(5).iloc[[2, 0, 1, 4, 3]]
    got, rep = load_frame(df)
    assert rep.unsorted and got.index.is_monotonic_increasing and got["a"].tolist() == [0, 1, 2, 3, 4]
    dup = pd.concat([_frame(3), _frame(3).iloc[[1]] + 10.0])
    with pytest.raises(DataError, match=r"^1 duplicate date\(s\): 2020-01-02; remove them or merge them with "
                       r"--dedupe mean \(dedupe='mean'\)$"):
        load_frame(dup)
    many = pd.concat([_frame(8), _frame(7)])
    with pytest.raises(DataError, match=r"^7 duplicate date\(s\): 2020-01-01, .*, 2020-01-05 and 2 more; "):
        load_frame(many)
    merged, rep = load_frame(dup, dedupe="mean")
    assert merged.loc["2020-01-02", "a"] == pytest.approx((1.0 + 11.0) / 2)
    assert rep.duplicates_merged == 1 and len(merged) == 3


def test_non_numeric_columns_are_reported_and_ignored():
    df = _frame(6)
    df["city"] = "Delhi"
    got, rep = load_frame(df)
    assert list(got.columns) == ["a", "b"] and "city" in rep.ignored
    assert any("city" in line for line in rep.lines())
    with pytest.raises(DataError, match="no numeric column"):
        load_frame(df[["city"]])
    # A notes column with one text cell and the rest empty is text, not an all-missing number column.
    df["note"] = [None, None, "holiday", None, None, None]
    got, rep = load_frame(df)
    assert list(got.columns) == ["a", "b"] and rep.ignored["note"] == "not numeric"


def test_all_nan_column_and_inf_are_refused():
    df = _frame(6)
    df["c"] = np.nan
    with pytest.raises(DataError, match="'c'.*all missing"):
        load_frame(df)
    df = _frame(6)
    df.iloc[3, 0] = np.inf
    with pytest.raises(DataError, match="infinite"):
        load_frame(df)


def test_delhi_pressure_outliers_are_masked_and_counted():
    with delhi_climate_files() as (train_csv, _):
        df, rep = load_frame(train_csv)
    raw = df.copy()
    cleaned, rep, center, spread = clean(df, rep)
    # The known gross errors (7679.33 hPa and -3.04 hPa) are masked; plausible pressures are kept.
    assert np.isnan(cleaned.loc["2016-03-28", "meanpressure"])
    assert np.isnan(cleaned.loc["2016-08-16", "meanpressure"])
    kept = cleaned["meanpressure"].dropna()
    assert kept.between(990, 1040).all()
    assert rep.outliers["meanpressure"] == int(raw["meanpressure"].notna().sum() - len(kept))
    assert rep.outliers["meanpressure"] >= 2 and rep.outliers["meantemp"] == 0
    # The robust z-score clean() judged by: its centre and spread are the column's median and MAD, which
    # put 7679 hPa about 670 MADs out; a threshold above that keeps it, the default masks it.
    median = raw["meanpressure"].median()
    assert center["meanpressure"] == pytest.approx(median)
    assert spread["meanpressure"] == pytest.approx((raw["meanpressure"] - median).abs().median())
    z = 0.6745 * (7679.333333 - center["meanpressure"]) / spread["meanpressure"]
    assert 600 < z < 750
    loose, _, _, _ = clean(raw, threshold=2 * z)
    assert loose.loc["2016-03-28", "meanpressure"] == pytest.approx(7679.333333)
    assert "meanpressure" in str(rep) and "7679" in str(rep)


def test_the_local_outlier_score_is_pandas_rolling_median_and_mad():
    # clean()'s neighbour test, in numpy for speed, against its definition in pandas: a centred rolling
    # median and MAD over 15 valid values (fewer near the ends, at least 3), gaps skipped, 0 at gaps.
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 5, 14, 15, 16, 40, 333):
        x = np.round(rng.standard_normal(n).cumsum() * 3)  # rounded: ties and zero MADs
        x[rng.random(n) < 0.3] = np.nan
        s = pd.Series(x).dropna()
        med = s.rolling(15, center=True, min_periods=3).median()
        mad = (s - med).abs().rolling(15, center=True, min_periods=3).median()
        want = (0.6745 * (s - med) / mad.where(mad > 0, 2.5)).reindex(range(n)).fillna(0.0).to_numpy()
        np.testing.assert_allclose(_local_z(x, 2.5), want, rtol=1e-12, atol=0)


def test_missing_values_stay_missing():
    df = _frame(8)
    df.iloc[2, 1] = np.nan
    got, rep = load_frame(df)
    cleaned, rep, _, _ = clean(got, rep)
    assert np.isnan(cleaned.iloc[2, 1]) and rep.missing["b"] == 1


def test_seasonal_naive_and_persistence_definitions():
    idx = pd.date_range("2018-01-01", "2020-12-31", freq="D")
    doy = idx.day_of_year.to_numpy()
    train = pd.DataFrame({"x": np.sin(2 * np.pi * doy / 365.0) + (idx.year.to_numpy() - 2018)}, index=idx)
    assert season_of(train.index) == pd.DateOffset(years=1)
    future = pd.date_range("2021-01-01", periods=400, freq="D")
    base = baseline_forecasts(train, future)
    # Same date one year earlier; dates more than a year ahead go back two years.
    assert base["seasonal_naive"].loc["2021-03-05", "x"] == train.loc["2020-03-05", "x"]
    assert base["seasonal_naive"].loc["2022-01-10", "x"] == train.loc["2020-01-10", "x"]
    assert (base["persistence"]["x"] == train["x"].iloc[-1]).all()
    assert base["mean"]["x"].iloc[0] == pytest.approx(train["x"].mean())
    # Short daily data: a week.
    assert season_of(pd.date_range("2020-01-01", periods=30, freq="D")) == pd.DateOffset(weeks=1)


def test_metrics_by_hand():
    idx = pd.date_range("2020-01-01", periods=4, freq="D")
    truth = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0]}, index=idx)
    pred = pd.DataFrame({"x": [2.0, 2.0, 100.0, 1.0]}, index=idx)
    m = metrics(pred, truth)["x"]
    assert m["mae"] == pytest.approx((1 + 0 + 3) / 3)
    assert m["rmse"] == pytest.approx(np.sqrt((1 + 0 + 9) / 3))


def test_mase_season_scale_and_metric_by_hand():
    # M4's seasons: a day of sub-daily steps, 12 monthly, 4 quarterly, else 1.
    assert [mase_season(s) for s in (1 / 24, 0.25, 1.0, 7.0, 30.0, 365.25 / 12, 91.0, 365.25)] == [
        24, 4, 1, 1, 12, 12, 4, 1]
    assert [mase_season(s) for s in (26.0, 34.5, 81.0, 101.5)] == [1, 1, 1, 1]  # just outside the bands
    idx = pd.date_range("2020-01-01", periods=6, freq="D")
    train = pd.DataFrame({"x": [1.0, 3.0, np.nan, 6.0, 10.0, 15.0], "y": [1.0] + [np.nan] * 5}, index=idx)
    scales = mase_scales(train, 1.0)  # missing rows skipped: diffs of 1, 3, 6, 10, 15
    assert scales["x"] == pytest.approx((2 + 3 + 4 + 5) / 4) and np.isnan(scales["y"])
    assert mase_scales(train, 0.5)["x"] == pytest.approx((5 + 7 + 9) / 3)  # season of two steps
    truth = pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 1.0]}, index=idx[:2])
    pred = pd.DataFrame({"x": [3.0, 2.0], "y": [2.0, 2.0]}, index=idx[:2])
    m = metrics(pred, truth, {"x": 3.5, "y": 0.0})
    assert m["x"] == pytest.approx({"mae": 1.0, "rmse": np.sqrt(2.0), "mase": 1 / 3.5})
    assert m["y"]["mae"] == 1.0 and np.isnan(m["y"]["mase"])  # a zero scale gives no MASE
    assert "mase" not in metrics(pred, truth)["x"]


def test_trending_series_is_not_masked_but_a_spike_is():
    idx = pd.date_range("2000-01-01", periods=300, freq="D")
    rng = np.random.default_rng(1)
    x = np.exp(np.linspace(0, 4, 300)) * (1 + rng.normal(0, 0.01, 300))  # a growing price
    df = pd.DataFrame({"price": x}, index=idx)
    cleaned, rep, _, _ = clean(df)
    assert rep.outliers["price"] == 0 and cleaned["price"].notna().all()
    spiky = df.copy()
    spiky.iloc[150, 0] = 1e6
    cleaned, rep, _, _ = clean(spiky)
    assert rep.outliers["price"] == 1 and np.isnan(cleaned.iloc[150, 0])


def test_leading_comment_lines_are_skipped(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("# Data source: somewhere\n# second comment\nDate,x\n2020-01-01,1\n2020-01-02,2\n")
    df, rep = load_frame(p)
    assert list(df.columns) == ["x"] and len(df) == 2 and rep.date_column == "Date"


def test_resample_drops_a_nearly_empty_last_period():
    idx = pd.date_range("2020-01-01", "2020-04-01", freq="D")  # ends with a single day of April
    df = pd.DataFrame({"x": np.arange(len(idx), dtype=float)}, index=idx)
    out, rep = load_frame(df, resample="MS")
    assert list(out.index.month) == [1, 2, 3]
    assert out["x"].iloc[0] == pytest.approx(np.arange(31).mean())
    assert any("dropped the last MS period" in line for line in rep.lines())
    with pytest.raises(DataError, match="resample"):
        load_frame(df, resample="nonsense")
    # resample_frame on its own (the forecaster calls it) updates the report it is given.
    report = DataReport(rows=len(df), start="2020-01-01", end="2020-04-01")
    out = resample_frame(df, "MS", report)
    assert (report.rows, report.start, report.end) == (3, "2020-01-01", "2020-03-01") and len(out) == 3
    assert report.notes == ["resampled to MS: 91 rows averaged into 3 periods",
                            "dropped the last MS period (2020-04-01): only 1 of about 30 rows"]
    # Hourly data to days: a last day of 20 hours is dropped (its mean would be a jump), and a first day
    # of 23 hours (over 85% of the typical 24) is kept.
    idx = pd.date_range("2023-01-01 01:00", periods=23 + 24 * 5 + 20, freq="h")
    hourly = pd.DataFrame({"x": np.sin(2 * np.pi * idx.hour / 24)}, index=idx)
    report = DataReport(rows=len(hourly))
    out = resample_frame(hourly, "D", report)
    assert list(out.index) == list(pd.date_range("2023-01-01", periods=6, freq="D"))
    assert report.notes == ["resampled to D: 143 rows averaged into 6 periods",
                            "dropped the last D period (2023-01-07): only 20 of about 24 rows"]
    hourly = hourly.iloc[10:]  # a first day of 13 hours: dropped too
    report = DataReport(rows=len(hourly))
    assert resample_frame(hourly, "D", report).index[0] == pd.Timestamp("2023-01-02")
    assert report.notes[-1] == "dropped the first D period (2023-01-01): only 13 of about 24 rows"


def test_selected_columns_are_kept_in_order_and_the_rest_reported():
    df = _frame(4)
    df["c"] = 1.0
    got, rep = load_frame(df, columns=["c", "a"])
    assert list(got.columns) == ["c", "a"] and rep.columns == ["c", "a"]
    assert got["a"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert rep.ignored == {"b": "not selected"}
    with pytest.raises(DataError, match=r"^column\(s\) 'y' not in the data; available: a, b, c$"):
        load_frame(df, columns=["y", "a"])


def test_outliers_at_the_edges_on_a_held_level_and_in_any_unit():
    """The local test uses the neighbours available at the ends (at least 3), falls back to the column's
    spread only where the neighbours' MAD is exactly 0 (a level held exactly), and is unit-free."""
    rng = np.random.default_rng(0)
    x = 10 + rng.normal(0, 1, 120)
    x[2] = 40.0  # a spike among the first rows: fewer than 7 neighbours on its left
    x[50:70] = 30.0  # a level held exactly (MAD 0) ...
    x[60] = 31.0  # ... with one step on it: 0.32 of the column's MAD, not an outlier
    x[80:110] = 30 + rng.normal(0, 0.05, 30)  # a high, quiet stretch ...
    x[95] = 33.0  # ... and 3 above it: about 60 of its neighbours' MADs
    df = pd.DataFrame({"x": x}, index=pd.date_range("2020-01-01", periods=120))
    for unit in (1e-3, 1.0, 1e3):
        cleaned, rep, _, _ = clean(df * unit)
        assert np.flatnonzero(cleaned["x"].isna()).tolist() == [2, 95], unit
    assert rep.outliers == {"x": 2}
    assert rep.lines()[-1] == "x: 2 outliers masked (40000 on 2020-01-03, 33000 on 2020-04-05)"


def test_an_index_written_with_the_data_is_not_modelled(tmp_path):
    # DataFrame.to_csv without index=False writes the row numbers as a first column pandas reads back as
    # "Unnamed: 0"; it is left out and the report says why. An unnamed column of other numbers is kept.
    dates = pd.date_range("2021-01-01", periods=50, freq="D")
    df = pd.DataFrame({"date": dates, "y": np.sin(np.arange(50.0))})
    df.to_csv(tmp_path / "with_index.csv")
    out, rep = load_frame(tmp_path / "with_index.csv")
    assert list(out.columns) == ["y"]
    assert rep.ignored == {"Unnamed: 0": "row numbers (an index written with the data), not a series"}
    np.testing.assert_allclose(out["y"].to_numpy(), df["y"].to_numpy())
    df.index = np.arange(50) * 3
    df.to_csv(tmp_path / "other_numbers.csv")
    out, rep = load_frame(tmp_path / "other_numbers.csv")
    assert list(out.columns) == ["Unnamed: 0", "y"] and not rep.ignored


def test_dates_are_written_with_their_time_of_day_when_they_have_one():
    from pyanode.forecast.data import format_when

    assert format_when(pd.Timestamp("2023-01-21")) == "2023-01-21"
    assert format_when(pd.Timestamp("2023-01-21 19:00")) == "2023-01-21 19:00"
    assert format_when(pd.Timestamp("2023-01-21 19:00:05", tz="Europe/Berlin")) == "2023-01-21 19:00:05"
