"""Panels (issue 13): long format in and out, one shared model, per-series scores, bad input on the command
line, and the multi-process path (two processes joined by ``jax.distributed`` train like one)."""

import json
import os
import pickle
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import pyanode
from pyanode.cli import app
from pyanode.forecast.data import DataError, DataReport, load_frame, load_panel, read_panel
from pyanode.forecast.forecaster import prepare_series
from pyanode.forecast.grid import GridArrays, lag_windows
from pyanode.forecast.model import Config
from pyanode.forecast.panel import (
    PARALLEL_FROM,
    FrameLayout,
    PanelForecaster,
    PanelWindows,
    SeriesRecord,
    Summary,
    Unreadable,
    _prepare_all,
)
from pyanode.forecast.store import RecordStore
from pyanode.forecast.structure import Structure

HERE = Path(__file__).parent
TEST_STEPS = 12
ITERATIONS = 20  # the command-line test uses the same, so it reuses the fixture's compiled programs


def _panel(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Five monthly series (long format) of different lengths and starts, each a trend plus a yearly cycle
    plus noise, one with a gap; the last 12 months of each are the test part. ``shop4`` has no cycle."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(5):
        n = 84 + 9 * i
        dates = pd.date_range(pd.Timestamp("2010-01-01") + pd.DateOffset(months=3 * i), periods=n, freq="MS")
        t = np.arange(n)
        season = 0.0 if i == 4 else (2 + i) * np.sin(2 * np.pi * dates.month / 12)
        y = 30 + 5 * i + 0.08 * t * (i % 3) + season + rng.normal(0, 0.4, n)
        keep = np.ones(n, bool)
        if i == 2:
            keep[20:24] = False  # a gap of four months
        rows += [(f"shop{i}", d.strftime("%Y-%m-%d"), round(v, 4))
                 for d, v, k in zip(dates, y, keep, strict=True) if k]
    df = pd.DataFrame(rows, columns=["store", "month", "sales"])
    back = df.groupby("store").cumcount(ascending=False)
    return df[back >= TEST_STEPS].reset_index(drop=True), df[back < TEST_STEPS].reset_index(drop=True)


@pytest.fixture(scope="module")
def fitted() -> tuple[PanelForecaster, pd.DataFrame, pd.DataFrame]:
    train, test = _panel()
    fc = pyanode.fit(train, id_column="store", iterations=ITERATIONS, horizon=TEST_STEPS, progress=False,
                     seed=0)
    return fc, train, test


def test_forecasts_come_back_in_long_format(fitted):
    fc, train, _ = fitted
    pred = fc.predict(TEST_STEPS, level=[80])
    assert list(pred.columns) == ["store", "month", "sales", "sales-lo-80", "sales-hi-80"]
    assert list(pred["store"].unique()) == [f"shop{i}" for i in range(5)]  # the data's order
    for sid, part in pred.groupby("store"):
        last = pd.Timestamp(train.loc[train["store"] == sid, "month"].iloc[-1])
        expected = pd.date_range(last + pd.DateOffset(months=1), periods=TEST_STEPS, freq="MS")
        assert list(part["month"]) == list(expected), sid  # each series from its own end
        assert (part["sales-lo-80"] <= part["sales"]).all() and (part["sales"] <= part["sales-hi-80"]).all()


def test_batched_forecast_equals_each_series_own(fitted):
    """All series' forecasts come from one compiled program over the batch; each equals the series' own
    forecast up to the adaptive solver's tolerance (the batch shares its step sizes)."""
    fc, train, _ = fitted
    pred = fc.predict(TEST_STEPS)
    for sid, view in fc.series.items():
        own = view.predict(TEST_STEPS)["sales"].to_numpy()
        batched = pred.loc[pred["store"] == sid, "sales"].to_numpy()
        spread = train.loc[train["store"] == sid, "sales"].std()
        np.testing.assert_allclose(batched, own, atol=0.01 * spread)


def test_each_series_keeps_its_own_structure(fitted):
    fc, _, _ = fitted
    described = {sid: view.structure.columns[0].describe() for sid, view in fc.series.items()}
    assert "yearly cycle" not in described["shop4"], described  # pure trend and noise
    assert all("yearly cycle" in described[f"shop{i}"] for i in range(4)), described
    # One shared model: every view holds the same parameters.
    assert len({id(view.model) for view in fc.series.values()}) == 1


def test_evaluate_scores_each_series_and_the_mean(fitted):
    fc, _, test = fitted
    table = fc.evaluate(test)
    assert list(table.index.get_level_values("store").unique()) == [f"shop{i}" for i in range(5)]
    assert set(table.index.get_level_values("method")) == {"model", "persistence", "seasonal_naive", "mean"}
    # The model row of a series is the MAE of predict(dates=...) against its test values.
    one = test[test["store"] == "shop1"]
    dates = pd.DataFrame({"store": "shop1", "month": pd.to_datetime(one["month"])})
    pred = fc.predict(dates=dates)
    mae = float(np.mean(np.abs(pred["sales"].to_numpy() - one["sales"].to_numpy())))
    assert table.loc[("shop1", "model"), ("sales", "mae")] == pytest.approx(mae, rel=1e-9)
    summary = fc.summary(table)
    assert summary.loc["model", ("sales", "mase")] == pytest.approx(
        table.xs("model", level="method")[("sales", "mase")].mean())
    # Trend plus cycle plus small noise: the structured model is far better than the naive forecasts.
    assert summary.loc["model", ("sales", "mase")] < 0.8 * summary.loc["seasonal_naive", ("sales", "mase")]


def test_save_and_load_give_the_same_forecasts(fitted, tmp_path):
    fc, _, _ = fitted
    fc.save(tmp_path / "panel.pyanode")
    back = pyanode.load(tmp_path / "panel.pyanode")
    assert isinstance(back, PanelForecaster) and back.ids == fc.ids
    expected = fc.predict(TEST_STEPS, level=[80, 95])
    pd.testing.assert_frame_equal(back.predict(TEST_STEPS, level=[80, 95]), expected)
    # Fitted and loaded panels keep their records on file, not in memory; the loaded ones are the same.
    records = fc.series.records
    assert isinstance(records, RecordStore) and isinstance(back.series.records, RecordStore)
    assert list(records) == list(back.series.records) == fc.ids
    for sid in fc.ids:
        _records_equal(back.series.records[sid], records[sid])
    copied = pickle.loads(pickle.dumps(records))  # a pickled store carries its records
    _records_equal(copied[fc.ids[-1]], records[fc.ids[-1]])


def test_plot_shows_best_median_and_worst_series(fitted):
    fc, _, test = fitted
    fig = fc.plot(test)
    axes = fig.axes
    assert len(axes) == 3
    table = fc.evaluate(test).xs("model", level="method")[("sales", "mase")].sort_values()
    captions = [next(t.get_text() for t in ax.texts) for ax in axes]
    assert captions[0].startswith(f"{table.index[0]}: best")
    assert captions[2].startswith(f"{table.index[-1]}: worst")
    # The red line is the forecast of that series at its test dates (after the joint at its last value).
    sid = table.index[0]
    one = test[test["store"] == sid]
    pred = fc.predict(dates=pd.DataFrame({"store": sid, "month": pd.to_datetime(one["month"])}))
    line = next(ln for ln in axes[0].lines if ln.get_label() == "forecast")
    np.testing.assert_allclose(np.asarray(line.get_ydata())[1:], pred["sales"].to_numpy())


def test_a_model_per_series_is_each_series_fitted_alone(tmp_path):
    """``shared=False``: each series' forecast is exactly what ``pyanode.fit`` gives on that series alone."""
    train, _ = _panel()
    # Two series of one length (so that all three fits share their compiled programs).
    shop0 = train[train["store"] == "shop0"]
    twin = shop0.assign(store="shop3", sales=2 * shop0["sales"] + np.sin(np.arange(len(shop0))))
    two = pd.concat([shop0, twin])
    fc = pyanode.fit(two, id_column="store", shared=False, iterations=12, horizon=TEST_STEPS, progress=False)
    assert fc.model is None and fc.series["shop0"].model is not fc.series["shop3"].model
    pred = fc.predict(TEST_STEPS)
    alone = pyanode.fit(two[two["store"] == "shop3"].drop(columns="store"), iterations=12, horizon=TEST_STEPS,
                        progress=False).predict(TEST_STEPS)
    own = pred.loc[pred["store"] == "shop3", "sales"].to_numpy()
    np.testing.assert_array_equal(own, alone["sales"].to_numpy())
    fc.save(tmp_path / "each.pyanode")
    back = pyanode.load(tmp_path / "each.pyanode")
    assert back.model is None
    pd.testing.assert_frame_equal(back.predict(TEST_STEPS), pred)
    pd.testing.assert_frame_equal(back.history, fc.history)


def test_a_model_per_series_leaves_a_series_that_wanders_untrained_as_fit_does():
    """``shared=False`` fits each series as ``pyanode.fit`` does: where every column's departures persist
    (two random walks here), nothing is trained by default, and the forecast is the series' own alone."""
    rng = np.random.default_rng(5)
    month = pd.date_range("2010-01-01", periods=120, freq="MS")
    walks = pd.concat([pd.DataFrame({"store": sid, "month": month,
                                     "sales": 100 + np.cumsum(rng.normal(size=120))}) for sid in ("a", "b")])
    fc = pyanode.fit(walks, id_column="store", shared=False, horizon=6, progress=False)
    for sid in ("a", "b"):
        assert fc.series[sid].history.empty
        assert fc.series[sid].info["stopped"].startswith("not trained: every column's departures persist")
    alone = pyanode.fit(walks[walks["store"] == "b"].drop(columns="store"), horizon=6, progress=False)
    pred = fc.predict(6)
    np.testing.assert_array_equal(pred.loc[pred["store"] == "b", "sales"].to_numpy(),
                                  alone.predict(6)["sales"].to_numpy())


def test_free_cycles_stay_out_of_a_shared_field_and_in_each_series_own():
    """Series with cycles of their own lengths keep them in their structures. A shared model's field sees
    the calendar's cycles only (none for annual data), not a union of every series' own; a model per series
    sees its series' cycle, as a fit of that series alone does."""
    rng = np.random.default_rng(3)
    year = pd.date_range("1820-01-01", periods=110, freq="YS")
    t = np.arange(110)
    frames = [pd.DataFrame({"site": sid, "year": year,
                            "n": 100 + 30 * np.sin(2 * np.pi * t / period) + rng.normal(0, 3, 110)})
              for sid, period in (("a", 9.6), ("b", 13.3))]
    shared = pyanode.fit(pd.concat(frames), id_column="site", iterations=4, horizon=6, progress=False)
    each = pyanode.fit(pd.concat(frames), id_column="site", shared=False, iterations=4, horizon=6,
                       progress=False)
    assert shared.model.config.periods == ()
    for sid, period in (("a", 9.6), ("b", 13.3)):
        (cycle,) = each.series[sid].structure.periods
        assert cycle / 365.25 == pytest.approx(period, abs=0.15)
        assert shared.series[sid].structure.periods == (cycle,)
        assert each.series[sid].config.periods == (cycle,)
    alone = pyanode.fit(frames[0].drop(columns="site"), iterations=4, horizon=6, progress=False)
    assert alone.config.periods == each.series["a"].config.periods


def test_series_record_gives_back_the_frame_it_was_made_from():
    """A panel keeps each series as arrays: the frame it gives back has the same values, dates (time zone
    across a daylight saving change, resolution) and names."""
    idx = pd.date_range("2024-03-31 00:00", periods=5, freq="h", tz="Europe/Berlin", name="when").as_unit("s")
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0, 5.0], "b": np.arange(5.0)}, index=idx)
    center, spread = pd.Series([2.0, 3.0], index=["a", "b"]), pd.Series([1.0, 0.5], index=["a", "b"])
    record = SeriesRecord.of(frame, np.arange(5), center, spread, 1 / 24, DataReport(),
                             Structure((), 1 / 24, 0.0), None)
    pd.testing.assert_frame_equal(record.frame(), frame, check_freq=False)
    assert record.steps == 5 and record.layout == FrameLayout(("a", "b"), "when", "s", "Europe/Berlin")
    np.testing.assert_array_equal(record.center, [2.0, 3.0])


def _with_bad_series(train: pd.DataFrame) -> pd.DataFrame:
    """``train`` after two series that cannot be fitted: ``tiny`` (5 rows: it reads, but is too short to
    prepare) first, then ``twice`` (a duplicate date: it does not read)."""
    first, second = train["store"].unique()[:2]
    tiny = train[train["store"] == first].iloc[:5].assign(store="tiny")
    twice = train[train["store"] == second].iloc[:20].assign(store="twice")
    return pd.concat([tiny, train, twice, twice.iloc[[3]]], ignore_index=True)


def _records_equal(a: SeriesRecord, b: SeriesRecord) -> None:
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.dates, b.dates)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert a.structure == b.structure and a.calibration == b.calibration
    assert a.report.to_dict() == b.report.to_dict() and a.layout == b.layout


def test_series_are_prepared_alike_in_worker_processes():
    """With enough series the per-series loading and preparation run in forked workers; the records are
    the same as prepared here, in the data's order, and the same as each series' frame loaded alone and
    prepared (what the panel did when it loaded every series first). A series that does not read is told
    apart from one that reads but cannot be prepared."""
    train = pd.concat([_panel(seed)[0].assign(store=lambda d, s=seed: d["store"] + f"-{s}")
                       for seed in range(14)])
    data = _with_bad_series(train)
    panel = read_panel(data, "store", date_column="month")
    options = {"outlier_threshold": 6.0, "resample": None, "horizon": 6, "seasonal": None}
    alone_records, worker_records = RecordStore(), RecordStore()
    alone = _prepare_all(panel, options, 1, alone_records)
    in_workers = _prepare_all(panel, options, 2, worker_records)
    assert len(in_workers) == PARALLEL_FROM + 8 and list(in_workers) == list(alone) == panel.ids
    assert list(in_workers)[:2] == ["tiny", "shop0-0"] and list(in_workers)[-1] == "twice"
    assert isinstance(in_workers["twice"], Unreadable) and "duplicate date" in in_workers["twice"]
    assert type(in_workers["tiny"]) is str and "5 rows are too few" in in_workers["tiny"]
    fitted = [sid for sid in panel.ids if sid not in ("tiny", "twice")]
    assert list(worker_records) == list(alone_records) == fitted  # the data's order, whatever came first
    frames, bad = load_panel(data, "store", date_column="month")
    assert bad == {"twice": str(in_workers["twice"])} and list(frames) == panel.ids[:-1]
    for sid, done in alone.items():
        if isinstance(done, str):
            assert in_workers[sid] == done and type(in_workers[sid]) is type(done)
            continue
        record = alone_records[sid]
        assert in_workers[sid] == done == Summary.of(record)
        _records_equal(worker_records[sid], record)
        df, rep = frames[sid]
        _records_equal(record, SeriesRecord.from_prepared(prepare_series(df, rep, **options)))


def test_panel_rows_are_grouped_by_id_as_text():
    """Ids are grouped as stripped text (1 and "1", "a" and " a" are one series) in the order of their
    first row; each series' rows in the data's order; the caller's frame is not changed."""
    data = pd.DataFrame({" id ": [" a", 1, "b", "a ", "1", "b", "a"],
                         "when": pd.date_range("2020-01-01", periods=7, freq="D").strftime("%Y-%m-%d"),
                         "v": np.arange(7.0)})
    before = data.copy(deep=True)
    panel = read_panel(data, "id")
    assert panel.ids == ["a", "1", "b"] and panel.loader.date_column == "when"
    assert [list(panel.rows(i)["v"]) for i in range(3)] == [[0.0, 3.0, 6.0], [1.0, 4.0], [2.0, 5.0]]
    frames, bad = load_panel(data, "id")
    assert list(frames) == ["a", "1", "b"] and not bad
    pd.testing.assert_frame_equal(frames["a"][0], load_frame(data.iloc[[0, 3, 6], 1:])[0])
    pd.testing.assert_frame_equal(data, before)
    assert list(data.columns) == [" id ", "when", "v"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.drop(columns="store"), "no id column 'store'; the columns are: month, sales"),
    (lambda d: d.assign(store=d["store"].where(d.index != 3)), "1 rows have no id in column 'store' "
                                                               "(first at row 4)"),
    (lambda d: d.iloc[:0], "the data have no rows"),
])
def test_panel_read_errors_are_unchanged(change, message):
    with pytest.raises(DataError, match=re.escape(message)):
        read_panel(change(_panel()[0]), "store")


def test_bad_series_are_skipped_and_the_rest_fitted_as_without_them(fitted):
    """Bad series among good ones: refused with the first unreadable series named (as when every series was
    loaded before any was prepared), or with ``skip_bad_series`` listed, unreadable first; the forecasts of
    the rest are exactly those of the fit without them, and the caller's frame is left as it was."""
    fc, train, _ = fitted
    data = _with_bad_series(train)
    before = data.copy(deep=True)
    options = {"id_column": "store", "iterations": ITERATIONS, "horizon": TEST_STEPS, "progress": False,
               "seed": 0}
    with pytest.raises(DataError, match=r"^series 'twice': 1 duplicate date\(s\): \d{4}-\d\d-\d\d; .* "
                                        r"\(1 more series has problems\); fix the data"):
        pyanode.fit(data, **options)
    skipping = pyanode.fit(data, skip_bad_series=True, **options)
    pd.testing.assert_frame_equal(data, before)
    assert list(skipping.skipped) == ["twice", "tiny"] and "too few" in skipping.skipped["tiny"]
    assert skipping.ids == fc.ids
    pd.testing.assert_frame_equal(skipping.predict(TEST_STEPS, level=[80]),
                                  fc.predict(TEST_STEPS, level=[80]))


def test_training_windows_stay_inside_their_series():
    """Series A is all 1.0, B all 2.0: a window never reads the other series, the draw is the same for the
    same (seed, iteration), and each series is drawn about equally often whatever its length."""
    config = Config(columns=("y",), window=8, lookback=4, batch=4000, half_life=0.0, seed=3)

    def series(value: float, n: int) -> GridArrays:
        y = np.full((n, 1), value)
        return GridArrays(y=y, filled=y, days=np.arange(n, dtype=float))

    pool = PanelWindows([series(1.0, 50), series(2.0, 400)], [5, 0], config)
    lags, days, targets = pool.windows(1)
    assert lags.shape == (4000, 4, 1) and targets.shape == (4000, 9, 1)
    first = lags[:, -1, 0]
    for value in (1.0, 2.0):
        seen = targets[first == value]
        assert set(np.unique(seen[np.isfinite(seen)])) == {value}
    # Series A's last 5 steps are held out: no target from them (origin days 0..48, targets up to 44).
    a_days = days[first == 1.0]
    reach = a_days[:, None] + np.arange(9)[None, :]
    assert np.all(np.isnan(targets[first == 1.0][reach >= 45]))
    assert abs(np.mean(first == 1.0) - 0.5) < 0.03
    np.testing.assert_array_equal(pool.windows(1)[0], lags)
    assert not np.array_equal(pool.windows(2)[1], days)


def test_training_windows_read_what_the_encoder_reads_at_their_origin():
    """The encoder inputs made for the drawn origins equal the rows of :func:`lag_windows` of each whole
    (gap-filled) series at those origins (whose dates identify them), and the targets are the next values."""
    config = Config(columns=("a", "b"), window=6, lookback=24, batch=300, half_life=10.0, seed=1)
    rng = np.random.default_rng(0)
    whole = {}
    pools = []
    for k, n in enumerate((40, 90)):
        y = np.cumsum(rng.normal(size=(n, 2)), axis=0)
        y[rng.random((n, 2)) < 0.15] = np.nan  # gaps: the encoder reads the last value before each
        filled = pd.DataFrame(y).ffill().fillna(0.0).to_numpy()
        days = 1000.0 * k + np.arange(n, dtype=float)
        pools.append(GridArrays(y=y, filled=filled, days=days))
        whole[k] = (lag_windows(filled, 24).astype(np.float32), y)
    lags, days, targets = PanelWindows(pools, [0, 4], config).windows(3)
    t_fit = {0: 40, 1: 90 - 4}  # series 1 holds out its last 4 steps
    for row, day, target in zip(lags, days, targets, strict=True):
        k, t = int(day // 1000), int(day % 1000)
        # (to float32 rounding: the pool keeps the values in float32)
        np.testing.assert_allclose(row, whole[k][0][t], rtol=1e-6, atol=1e-6)
        inside = min(t + 7, t_fit[k]) - t  # target steps inside the training part
        np.testing.assert_array_equal(target[:inside], whole[k][1][t : t + inside].astype(np.float32))
        assert np.isnan(target[inside:]).all()


def test_training_origins_are_drawn_with_their_recency_weights():
    """The closed-form inverse CDF draws each series equally often and, within a series of ``n`` origins,
    origin ``k`` with probability proportional to ``2 ** (-(n - 1 - k) / half_life)`` (the recency weights
    of the module docstring), which the empirical frequencies of 400,000 draws match to sampling error; the
    pool holds four bytes per value and a few numbers per series, nothing per origin."""
    config = Config(columns=("y",), window=4, lookback=4, batch=8, half_life=3.0, seed=0)
    lengths, held = (9, 31), (2, 0)
    arrays = [GridArrays(y=np.zeros((n, 1)), filled=np.zeros((n, 1)), days=np.arange(n, dtype=float))
              for n in lengths]
    pool = PanelWindows(arrays, list(held), config)
    s, k = pool.origins(np.random.default_rng(1).random(400_000))
    assert abs(np.mean(s == 0) - 0.5) < 0.003
    for series, (n_rows, v) in enumerate(zip(lengths, held, strict=True)):
        n = n_rows - v - 1  # every row before the last of the training part is an origin
        w = 2.0 ** (-(n - 1 - np.arange(n)) / 3.0)
        expected = w / w.sum()
        seen = np.bincount(k[s == series], minlength=n) / np.sum(s == series)
        assert len(seen) == n  # no origin past the training part
        sd = np.sqrt(expected * (1 - expected) / np.sum(s == series))
        assert np.all(np.abs(seen - expected) < 5 * sd + 1e-12), (seen, expected)
    per_series = sum(a.nbytes for a in (pool.offsets, pool.fitted, pool.first_day, pool.step))
    assert pool.values.nbytes == 4 * sum(lengths) and per_series <= 40 * len(lengths) + 8


# -- the command line ------------------------------------------------------------------------------------

def _cli(args, cwd):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "pyanode", "forecast", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300)


def _refused(res, *needles):
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def test_cli_panel_writes_long_format_scores_and_skips_bad_series(tmp_path):
    train, test = _panel()
    tiny = pd.DataFrame({"store": "tiny", "month": ["2019-01-01", "2019-02-01", "2019-03-01"],
                         "sales": [1.0, 2.0, 3.0]})
    _write(pd.concat([train, tiny]), tmp_path / "train.csv")
    _write(test, tmp_path / "test.csv")
    res = CliRunner().invoke(app, ["forecast", str(tmp_path / "train.csv"), "--id", "store", "--test",
                                   str(tmp_path / "test.csv"), "--iterations", str(ITERATIONS),
                                   "--skip-bad-series",
                                   "--out", str(tmp_path / "f.csv"), "--plot", str(tmp_path / "f.png"),
                                   "--metrics", str(tmp_path / "m.json"), "--level", "80"])
    assert res.exit_code == 0, res.output
    assert "skipped series 'tiny': 3 rows are too few" in res.output
    out = pd.read_csv(tmp_path / "f.csv")
    assert list(out.columns) == ["store", "month", "sales", "sales-lo-80", "sales-hi-80"]
    assert len(out) == 5 * TEST_STEPS and "tiny" not in set(out["store"])
    merged = out.merge(test, on=["store", "month"], suffixes=("", "_true"))
    assert len(merged) == len(out)  # the test file's dates, per series
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics["series"]) == {f"shop{i}" for i in range(5)} and set(metrics["skipped"]) == {"tiny"}
    for sid, part in merged.groupby("store"):
        mae = float(np.mean(np.abs(part["sales"] - part["sales_true"])))
        assert metrics["series"][sid]["sales"]["model"]["mae"] == pytest.approx(mae, rel=1e-4)
    mean_mase = np.mean([metrics["series"][s]["sales"]["model"]["mase"] for s in metrics["series"]])
    assert metrics["overall"]["sales"]["model"]["mase"] == pytest.approx(mean_mase)
    assert "coverage-80" in metrics["overall"]["sales"]["model"]


@pytest.mark.parametrize("case", ["no_id_column", "duplicate_pair", "too_few_rows", "mixed_frequency"])
def test_cli_refuses_bad_panels_in_one_line(tmp_path, case):
    train, _ = _panel()
    args = ["--id", "store"]
    if case == "no_id_column":
        args = ["--id", "shop"]
        needles = ["no id column 'shop'", "store, month, sales"]
    elif case == "duplicate_pair":
        train = pd.concat([train, train.iloc[[5]]])
        needles = ["series 'shop0'", "duplicate date", "2010-06-01", "--skip-bad-series"]
    elif case == "too_few_rows":
        train = pd.concat([train, pd.DataFrame({"store": ["x"] * 3, "month": ["2019-01-01", "2019-02-01",
                                                                            "2019-03-01"],
                                                "sales": [1.0, 2.0, 3.0]})])
        needles = ["series 'x'", "3 rows are too few", "--skip-bad-series"]
    else:
        days = pd.date_range("2019-01-01", periods=60).strftime("%Y-%m-%d")
        daily = pd.DataFrame({"store": "daily", "month": days, "sales": np.arange(60.0)})
        train = pd.concat([train, daily])
        needles = ["series 'daily'", "its step is a day but most series' is a month", "--resample"]
    _write(train, tmp_path / "train.csv")
    res = _cli(["train.csv", *args, "--iterations", "2"], tmp_path)
    _refused(res, *needles)
    assert not (tmp_path / "forecast.csv").exists()


def test_cli_panel_options_need_id(tmp_path):
    train, _ = _panel()
    _write(train, tmp_path / "train.csv")
    _refused(_cli(["train.csv", "--skip-bad-series"], tmp_path), "give --id COLUMN")
    _refused(_cli(["train.csv", "--id", "store", "--per-series", "--devices", "2"], tmp_path),
             "--devices shards")


# -- several processes -----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
    """Two local processes joined by ``jax.distributed.initialize`` (CPU collectives), each holding one
    device of a two-device mesh, give the same parameters after a few steps as one process with the same
    global batch. In float64: in float32, Adam's normalisation turns the last-bit differences of the two
    reduction orders in near-zero gradients into parameter differences of up to ``lr`` (measured 3e-3),
    while in float64 the runs agree to 2e-13 (measured)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    worker = [sys.executable, str(HERE / "panel_worker.py")]
    port = str(_free_port())
    procs = [subprocess.Popen([*worker, "2", str(i), port, str(tmp_path / "two.npz")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    one = subprocess.run([*worker, "1", "0", "0", str(tmp_path / "one.npz")], env=env, capture_output=True,
                         text=True, timeout=300)
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert one.returncode == 0, one.stderr
    assert all(p.returncode == 0 for p in procs), outputs
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert len(a.files) == len(b.files) > 0
    moved = 0.0
    for k in a.files:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-9, atol=1e-11)
        moved = max(moved, float(np.abs(a[k]).max()))
    assert moved > 0  # the parameters are real numbers, not all zero


@pytest.mark.slow  # about 40 s; the two-process test above checks the sharded step in the default run
def test_two_devices_in_one_process_train_like_one(tmp_path):
    """The same on one host with two (fake CPU) devices: the batch is sharded, the parameters are
    replicated, and the result equals the unsharded fit's. (This once hung: two independent all-reduces
    of the loss started in different orders on the two devices; the loss now reduces once.)"""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    worker = [sys.executable, str(HERE / "panel_worker.py"), "1", "0", "0"]
    for n in (1, 2):
        run = subprocess.run([*worker, str(tmp_path / f"devices{n}.npz"), str(n)], env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
    a, b = np.load(tmp_path / "devices1.npz"), np.load(tmp_path / "devices2.npz")
    for k in a.files:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-9, atol=1e-11)
