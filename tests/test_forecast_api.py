"""The forecaster's public API at its edges: predict's argument errors, future dates at monthly and
quarterly steps, evaluate without test dates after training, and load of files it cannot read."""

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

import pyanode
from pyanode.errors import PyanodeError
from pyanode.forecast import DataError, ModelFileError
from pyanode.forecast.io import FORMAT_VERSION
from tests.compiles import xla_compiles

TINY = dict(iterations=20, hidden=8, batch=4, progress=False, seed=0)


def _frame(index: pd.DatetimeIndex, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(len(index))
    return pd.DataFrame({"y": 10 + 2 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.1, len(index))},
                        index=index)


@pytest.fixture(scope="module")
def daily():
    """One small fit shared by the tests: 60 days from 2022-03-01, so training ends on 2022-04-29."""
    return pyanode.fit(_frame(pd.date_range("2022-03-01", periods=60, freq="D")), **TINY)


def test_predict_needs_exactly_one_of_horizon_and_dates(daily):
    for kwargs in ({}, {"horizon": 3, "dates": ["2022-05-02"]}):
        with pytest.raises(PyanodeError, match=r"^give either horizon=N or dates=\[\.\.\.\] to predict$"):
            daily.predict(**kwargs)


@pytest.mark.parametrize("empty", [[], pd.DatetimeIndex([])])
def test_predict_at_no_dates_is_an_error(daily, empty):
    # The wording differs by the way the empty dates are given (parsed as dates or not); both say it.
    with pytest.raises(PyanodeError, match=r"^(dates is empty|no dates given)$"):
        daily.predict(dates=empty)


def test_predict_before_the_training_end_names_the_date_and_the_end(daily):
    assert daily.end == pd.Timestamp("2022-04-29")
    # The first date before the end is named, even after valid ones.
    with pytest.raises(
        PyanodeError,
        match=r"^cannot forecast 2022-04-28: it is before the end of the training data \(2022-04-29\)",
    ):
        daily.predict(dates=["2022-05-03", "2022-04-28", "2022-01-01"])
    # The end itself is allowed: the forecast there starts from the last training values.
    at_end = daily.predict(dates=["2022-04-29", "2022-05-01"])
    assert at_end.index.equals(pd.DatetimeIndex(["2022-04-29", "2022-05-01"], name="date"))
    assert np.isfinite(at_end.to_numpy()).all()


def test_evaluate_without_dates_after_training_says_so(daily):
    test = _frame(pd.date_range("2022-04-20", periods=10, freq="D"))  # ends on the last training date
    with pytest.raises(DataError, match=r"^the test data have no dates after the end of the training data "
                                        r"\(2022-04-29\)$"):
        daily.evaluate(test)
    # One date after the end is enough to score.
    scores = daily.evaluate(_frame(pd.date_range("2022-04-20", periods=11, freq="D")))
    assert list(scores.index) == ["model", "persistence", "seasonal_naive", "mean"]
    assert np.isfinite(scores.to_numpy()).all()


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        # Month starts: the next three month starts (not steps of 30.44 days).
        (pd.date_range("2019-01-01", periods=36, freq="MS"), ["2022-01-01", "2022-02-01", "2022-03-01"]),
        # A missing month: no frequency can be inferred, the monthly grid step still gives month starts.
        (pd.date_range("2019-01-01", periods=36, freq="MS").delete(20),
         ["2022-01-01", "2022-02-01", "2022-03-01"]),
        # Quarter starts: the next three quarter starts.
        (pd.date_range("2014-01-01", periods=32, freq="QS"), ["2022-01-01", "2022-04-01", "2022-07-01"]),
        (pd.date_range("2014-01-01", periods=32, freq="QS").delete(5),
         ["2022-01-01", "2022-04-01", "2022-07-01"]),
    ],
    ids=["monthly", "monthly-gap", "quarterly", "quarterly-gap"],
)
def test_predict_horizon_at_monthly_and_quarterly_steps(index, expected):
    fc = pyanode.fit(_frame(index), **TINY)
    pred = fc.predict(horizon=3)
    assert pred.index.equals(pd.DatetimeIndex(expected, name="date"))
    assert np.isfinite(pred.to_numpy()).all()


def _rewrite_meta(src, dst, **changes):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "meta.json":
                data = json.dumps({**json.loads(data), **changes}).encode()
            zout.writestr(name, data)


def test_load_refuses_other_format_versions_and_directories(daily, tmp_path):
    path = daily.save(tmp_path / "good.pyanode")
    assert pyanode.load(path).predict(horizon=2).equals(daily.predict(horizon=2))
    # The same file but for the version tag: refused, naming both versions.
    _rewrite_meta(path, tmp_path / "future.pyanode", version=FORMAT_VERSION + 1)
    with pytest.raises(ModelFileError, match=rf"future.pyanode has format version {FORMAT_VERSION + 1}; "
                                             rf"this pyanode reads version {FORMAT_VERSION}\b"):
        pyanode.load(tmp_path / "future.pyanode")
    _rewrite_meta(path, tmp_path / "untagged.pyanode", version=None)
    with pytest.raises(ModelFileError, match=r"has format version None; this pyanode reads version"):
        pyanode.load(tmp_path / "untagged.pyanode")
    # A folder is not a model file (also when given as a string).
    (tmp_path / "folder").mkdir()
    for p in (tmp_path / "folder", str(tmp_path / "folder")):
        with pytest.raises(ModelFileError, match=r"folder is a directory, not a saved forecaster$"):
            pyanode.load(p)
    assert issubclass(ModelFileError, PyanodeError)  # so the command line prints it as one line
    # Saving into a folder that does not exist, or onto a folder: one clear error, nothing written.
    with pytest.raises(PyanodeError, match=r"^folder .*missing does not exist \(for .*x.pyanode\); create"):
        daily.save(tmp_path / "missing" / "x.pyanode")
    with pytest.raises(PyanodeError, match=r"folder is a directory; give a file name"):
        daily.save(tmp_path / "folder")
    assert not (tmp_path / "missing").exists() and list((tmp_path / "folder").iterdir()) == []


def test_seasonality_option_sets_the_cycles_searched():
    """``seasonality="none"`` keeps every cycle out of the structure, even of a series with a strong weekly
    one; ``"weekly"`` searches that cycle alone (so the chosen structure has it and nothing else)."""
    t = np.arange(120)
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"y": 10 + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 0.2, len(t))},
                      index=pd.date_range("2022-01-03", periods=len(t), freq="D"))
    from pyanode.forecast.data import load_frame
    from pyanode.forecast.forecaster import prepare_series
    from pyanode.forecast.model import parse_seasonality

    def chosen(seasonality):  # fit's steps before the model (training would not change the structure)
        frame, report = load_frame(df)
        return prepare_series(frame, report, outlier_threshold=6.0, resample=None, horizon=None,
                              seasonal=parse_seasonality(seasonality)).structure.columns[0]

    structures = {s: chosen(s) for s in ("none", "weekly")}
    assert structures["none"].periods == ()
    assert structures["weekly"].periods == (7.0,)
    assert "weekly cycle" in structures["weekly"].describe()
    # The weekly cycle is what the data need: its backtest error is far below the acyclic structure's.
    none, weekly = (structures[s].scores[0][1] for s in ("none", "weekly"))
    assert weekly < 0.5 * none


def test_hourly_forecast_in_a_zone_steps_by_the_clock_across_daylight_saving():
    """Hourly data in Berlin ending just before the spring change (01:00 UTC, 2023-03-26): the next six
    hours are six real hours (UTC 00:00..05:00, shown in Berlin time), with no wall time repeated or
    skipped by the change (stepping by the wall clock would give 03:00 twice)."""
    index = pd.date_range("2023-03-23 12:00", "2023-03-25 23:00", freq="h", tz="UTC")
    index = index.tz_convert("Europe/Berlin")
    fc = pyanode.fit(_frame(index), **{**TINY, "iterations": 2})
    dates = fc.predict(horizon=6).index
    assert str(dates.tz) == "Europe/Berlin"
    expected = pd.date_range("2023-03-26 00:00", periods=6, freq="h", tz="UTC")
    assert list(dates.tz_convert("UTC")) == list(expected)
    assert [d.strftime("%H:%M") for d in dates] == ["01:00", "03:00", "04:00", "05:00", "06:00", "07:00"]


@pytest.mark.parametrize(
    ("steps", "step_days", "expected"),
    [
        # 2,001 daily steps: window 128 (at most half the data), lookback 90 days, validation 2001 // 24,
        # half-life an eighth of the data in whole steps (250, not 250.125).
        (2001, 1.0, {"window": 128, "lookback": 90, "validation": 83, "half_life": 250.0}),
        # 100 monthly steps: window 50, lookback 12 (an eighth of the data), validation 4, half-life 50.
        (100, 365.25 / 12, {"window": 50, "lookback": 12, "validation": 4, "half_life": 50.0}),
        # 40 steps: too short to hold out a validation tail.
        (40, 1.0, {"window": 20, "lookback": 5, "validation": 0, "half_life": 20.0}),
    ],
)
def test_training_window_defaults_are_the_documented_ones(steps, step_days, expected):
    from pyanode.forecast.forecaster import training_windows

    assert training_windows(steps, step_days, None, None, None, None) == expected
    given = training_windows(steps, step_days, 8, 3, 2, 0)
    assert given == {"window": 8, "lookback": 3, "validation": 2, "half_life": 0.0}
    with pytest.raises(PyanodeError, match=f"validation must be between 0 and {steps // 2 - 1} steps"):
        training_windows(steps, step_days, None, None, steps // 2, None)


def test_month_start_forecasts_run_the_program_the_fit_compiled():
    """Month starts lie up to a tenth of a step off the mean-month grid. Their residual is the one at the
    nearest grid step (where the training rows were placed), so a forecast of the horizon the fit was told
    solves at the grid's times: the held-out tail's compiled program, no new compile. A date between grid
    steps is still forecast, at its own time."""
    index = pd.date_range("2015-01-01", periods=72, freq="MS")
    fc = pyanode.fit(_frame(index), horizon=6, **TINY)
    assert fc.config.validation > 0  # (the fit compiled its held-out tail's solve)
    with xla_compiles() as compiles:
        pred = fc.predict(horizon=6)
    assert compiles == []
    assert list(pred.index) == list(pd.date_range("2021-01-01", periods=6, freq="MS"))
    # Mid-month is half a step from the grid: solved at its own time, between the month starts around it.
    mid = fc.predict(dates=["2021-02-15"])["y"].iloc[0]
    lo, hi = sorted(pred["y"].iloc[1:3])
    assert lo - 0.5 < mid < hi + 0.5 and not np.isclose(mid, pred["y"].iloc[1])


def test_fit_reads_a_file_with_the_read_options_given(tmp_path):
    """``fit(path, dayfirst=True)`` passes the option to the reader: ``01/02/2019`` is 1 February, so the
    file is 36 month starts (read month first, or undecided, its dates are ambiguous and it is refused)."""
    index = pd.date_range("2019-01-01", periods=36, freq="MS")
    frame = _frame(index).reset_index(names="date")
    frame["date"] = frame["date"].dt.strftime("%d/%m/%Y")
    frame.to_csv(tmp_path / "monthly.csv", index=False)
    fc = pyanode.fit(tmp_path / "monthly.csv", dayfirst=True, **TINY)  # (the monthly test's programs)
    assert fc.train.index.equals(pd.DatetimeIndex(index, name="date"))
    assert list(fc.predict(horizon=2).index) == list(pd.to_datetime(["2022-01-01", "2022-02-01"]))
    with pytest.raises(DataError, match="dayfirst"):
        pyanode.fit(tmp_path / "monthly.csv", **TINY)


def test_the_fitted_report_keeps_what_reading_found(tmp_path):
    """The forecaster's report has both what reading the data found (an ignored text column, merged
    duplicate dates) and what cleaning found (a masked spike): cleaning adds to the report, not a new one."""
    index = pd.date_range("2019-01-01", periods=36, freq="MS")
    df = _frame(index)
    df.iloc[20, 0] = 1e4  # a spike
    df["city"] = "Delhi"
    df = pd.concat([df.iloc[:5], df.iloc[4:5], df.iloc[5:]])  # one date twice
    fc = pyanode.fit(df, dedupe="first", **TINY)
    assert fc.report.ignored == {"city": "not numeric"}
    assert fc.report.duplicates_merged == 1
    assert fc.report.outliers == {"y": 1} and fc.report.rows == 36
