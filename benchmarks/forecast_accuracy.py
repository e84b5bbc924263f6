"""Forecast accuracy on the shared forecast suite: pyanode's defaults beside seasonal naive, statsforecast
(AutoETS, AutoTheta, AutoARIMA, MSTL) and Prophet, scored by MASE with M4's scale, and their 80% and 95%
prediction intervals by coverage and MSIS.

Protocol (``../shared/data/forecast-suite/suite.json``, or ``$PYANODE_SHARED/data/forecast-suite``): for each
series, the last 3 windows of ``horizon`` rows are each forecast from all rows before them (Delhi: one origin,
its official test file, dates after the last training date). Every method gets the same training rows: the
suite's numeric value columns only (text columns such as Seattle's ``weather`` are dropped) and rows with no
value at all removed. MASE per column = test MAE / in-sample seasonal-naive MAE of that origin's training rows
(lag = the suite's M4 ``season``); averaged over columns, then over origins. A method that fails, cannot run
(MSTL with season 1) or passes ``--timeout`` seconds on a fit scores seasonal naive's MASE at that origin and
is marked; after a timeout the series' later origins are not tried.

Prediction intervals (issue 12), levels 80 and 95, averaged the same way: coverage (the fraction of test
values inside the interval, bounds included) and M4's MSIS, the mean over the test rows of
``(hi - lo) + (2/a)(lo - y)[y < lo] + (2/a)(y - hi)[y > hi]`` (``a = 1 - level/100``) divided by MASE's
scale. The intervals: pyanode's ``predict(dates=..., level=[80, 95])`` (calibrated at fit time);
statsforecast's ``forecast(..., level=[80, 95])``; Prophet's own: one (MAP) fit per column, then the 10/90
and 2.5/97.5 percentiles of its ``predictive_samples`` (1000 draws), which is how Prophet makes
``yhat_lower``/``yhat_upper`` for ``interval_width`` 0.8 and 0.95 (the fit does not depend on the width, so
one fit serves both); seasonal naive's: normal, ``sigma sqrt(k + 1)`` at ``k`` whole seasons ahead, ``sigma``
the RMS of its in-sample errors. A method whose interval bounds are missing or not finite at an origin
scores seasonal naive's intervals there (marked). For pyanode the seconds of ``fit``, of the interval
calibration inside it (timed again alone), of ``predict`` and of ``predict(level=)`` are recorded, so the
cost of intervals can be set against a point forecast's. Fits run in one worker process per
method, so a stuck fit can be killed; statsforecast and Prophet are warmed up (numba compilation, Stan model
loading) on a small synthetic series before anything is timed; pyanode's compilation is part of its seconds.

    python benchmarks/forecast_accuracy.py [--methods pyanode,snaive,...] [--series name,...] [--timeout 120]
        [--cache results.json] [--rerun pyanode] [--json out.json]

With ``--cache``, (series, method) results already in the file are loaded instead of recomputed, unless the
method is listed in ``--rerun`` or the entry lacks interval scores (entries from before issue 12); new
results are added to the file as they finish, and entries of methods not run are kept.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
import traceback
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

METHODS = ("pyanode", "snaive", "autoets", "autotheta", "autoarima", "mstl", "prophet")
WINDOWS = 3
LEVELS = (80, 95)  # prediction-interval levels, percent
INTERVAL_KEYS = tuple(f"{k}-{lv}" for k in ("coverage", "msis") for lv in LEVELS)
FAILED = ("failed", "timeout", "n/a", "skipped")


# --------------------------------------------------------------------------------------------------------
# Scoring: small pure functions (tested in tests/test_benchmark_forecast_accuracy.py)


def origins(n_rows: int, horizon: int, windows: int = WINDOWS) -> list[tuple[int, int]]:
    """(train_end, test_end) row bounds of the rolling origins: the last ``windows`` windows of ``horizon``
    rows, each trained on all rows before it; the last window ends at the last row."""
    if horizon < 1 or windows < 1:
        raise ValueError("horizon and windows must be positive")
    first = n_rows - windows * horizon
    if first < 1:
        raise ValueError(f"{n_rows} rows are too few for {windows} windows of {horizon}")
    return [(first + k * horizon, first + (k + 1) * horizon) for k in range(windows)]


def mase_scale(train: np.ndarray, season: int) -> float:
    """M4's MASE denominator: the in-sample MAE of the seasonal naive forecast, mean |y[t] - y[t - season]|
    over the training rows (pairs with a missing value are skipped)."""
    y = np.asarray(train, dtype=np.float64)
    if season < 1 or len(y) <= season:
        raise ValueError(f"need more than season={season} training rows, got {len(y)}")
    d = np.abs(y[season:] - y[:-season])
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError("no pair of training values one season apart")
    return float(d.mean())


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float) -> float:
    """Mean absolute error over the test rows that have a value, divided by ``scale``."""
    a = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    if a.shape != f.shape:
        raise ValueError(f"actual {a.shape} and forecast {f.shape} differ in shape")
    ok = np.isfinite(a)
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(a[ok] - f[ok])) / scale)


def coverage(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Fraction of the test rows that have a value with ``lo <= value <= hi``."""
    a, lo, hi = (np.asarray(v, dtype=np.float64) for v in (actual, lo, hi))
    if not a.shape == lo.shape == hi.shape:
        raise ValueError(f"actual {a.shape}, lo {lo.shape} and hi {hi.shape} differ in shape")
    ok = np.isfinite(a)
    if not ok.any():
        return float("nan")
    return float(np.mean((a[ok] >= lo[ok]) & (a[ok] <= hi[ok])))


def msis(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: float, scale: float) -> float:
    """M4's mean scaled interval score of the ``level`` % interval: the mean over the test rows that have a
    value of ``(hi - lo) + (2/a)(lo - y)[y < lo] + (2/a)(y - hi)[y > hi]``, ``a = 1 - level/100``, divided
    by ``scale``."""
    a, lo, hi = (np.asarray(v, dtype=np.float64) for v in (actual, lo, hi))
    if not a.shape == lo.shape == hi.shape:
        raise ValueError(f"actual {a.shape}, lo {lo.shape} and hi {hi.shape} differ in shape")
    if not 0 < level < 100:
        raise ValueError(f"level must be between 0 and 100, got {level}")
    ok = np.isfinite(a)
    if not ok.any():
        return float("nan")
    y, lo, hi = a[ok], lo[ok], hi[ok]
    alpha = 1.0 - level / 100.0
    score = (hi - lo) + 2 / alpha * np.maximum(lo - y, 0.0) + 2 / alpha * np.maximum(y - hi, 0.0)
    return float(np.mean(score) / scale)


def seasonal_naive_bands(train: np.ndarray, horizon: int, season: int, level: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal naive's normal ``level`` % interval: the forecast -/+ ``z sigma sqrt(k + 1)`` at ``k`` whole
    seasons ahead (``k = (h - 1) // season`` at step ``h``), ``sigma`` the root mean square of the in-sample
    errors ``y[t] - y[t - season]`` (pairs with a missing value skipped)."""
    y = np.asarray(train, dtype=np.float64)
    point = seasonal_naive(y, horizon, season)
    d = y[season:] - y[:-season]
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError("no pair of training values one season apart")
    sigma = float(np.sqrt(np.mean(d**2)))
    z = NormalDist().inv_cdf(0.5 + level / 200.0)
    half = z * sigma * np.sqrt(np.arange(horizon) // season + 1.0)
    return point - half, point + half


def check_bands(bands, shape: tuple[int, int]) -> str:
    """Why ``bands`` (level -> (lo, hi) arrays of ``shape``) cannot be scored; empty if it can."""
    for lv in LEVELS:
        if lv not in bands:
            return f"no {lv}% interval"
        lo, hi = (np.asarray(v, dtype=np.float64) for v in bands[lv])
        if lo.shape != shape or hi.shape != shape:
            return f"{lv}% bounds of shape {lo.shape}, {hi.shape}, not {shape}"
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            return f"{lv}% bounds with non-finite values"
        if (lo > hi).any():
            return f"{lv}% bounds with lo > hi"
    return ""


def seasonal_naive(train: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Repeat the last ``season`` training values (season 1: the last value) over ``horizon`` steps."""
    y = np.asarray(train, dtype=np.float64)
    if len(y) < season:
        raise ValueError(f"need at least season={season} training rows, got {len(y)}")
    last = y[len(y) - season:]
    return last[np.arange(horizon) % season]


def ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank of each method by score (1 = lowest); tied scores share the mean of the ranks they span."""
    order = sorted(scores, key=lambda m: scores[m])
    out: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for m in order[i:j + 1]:
            out[m] = (i + j) / 2 + 1
        i = j + 1
    return out


def mean_ranks(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean over series of each method's rank; ``table`` maps series -> method -> score."""
    per = [ranks(scores) for scores in table.values()]
    methods = {m for r in per for m in r}
    return {m: float(np.mean([r[m] for r in per if m in r])) for m in methods}


# --------------------------------------------------------------------------------------------------------
# Data


def suite_dir() -> Path:
    shared = os.environ.get("PYANODE_SHARED")
    root = Path(shared) if shared else Path(__file__).resolve().parents[2] / "shared"
    return root / "data" / "forecast-suite"


def read_frame(path: Path, date_column: str, columns: list[str]) -> pd.DataFrame:
    """The suite's numeric value columns indexed by date; rows with no value at all are dropped."""
    raw = pd.read_csv(path)
    df = raw[[c for c in columns if pd.api.types.is_numeric_dtype(raw[c])]].astype(np.float64)
    df.index = pd.DatetimeIndex(pd.to_datetime(raw[date_column], format="mixed"), name=date_column)
    return df[df.notna().any(axis=1)]


def load_series(spec: dict, folder: Path) -> tuple[pd.DataFrame, list[tuple[int, int]]]:
    """The series' rows (train and test concatenated for Delhi) and its origins as row bounds."""
    df = read_frame(folder / spec["file"], spec["date_column"], spec["columns"])
    if spec.get("test_file"):
        test = read_frame(folder / spec["test_file"], spec["date_column"], list(df.columns))
        test = test[test.index > df.index[-1]]  # the shared first date is training data
        n = len(df)
        return pd.concat([df, test]), [(n, n + len(test))]
    return df, origins(len(df), spec["horizon"])


# --------------------------------------------------------------------------------------------------------
# Methods: each takes training rows (DatetimeIndex, float columns), the test dates and the season, and
# returns forecasts of shape (len(dates), columns), or a dict with them as "pred", the intervals as "bands"
# (level -> (lo, hi), each of that shape) and, for some, "timing" (seconds by step) and more.


def _ys(train: pd.DataFrame) -> list[np.ndarray]:
    return [train[c].interpolate(limit_direction="both").to_numpy(np.float64) for c in train.columns]


def run_snaive(train, dates, season):
    return np.stack([seasonal_naive(y, len(dates), season) for y in _ys(train)], axis=1)


def snaive_bands(train, dates, season) -> dict:
    ys = _ys(train)
    out = {}
    for lv in LEVELS:
        lo, hi = zip(*(seasonal_naive_bands(y, len(dates), season, lv) for y in ys), strict=True)
        out[lv] = (np.stack(lo, axis=1), np.stack(hi, axis=1))
    return out


def run_pyanode(train, dates, season):
    """pyanode as ``pyanode forecast --test`` runs it (the backtest judges the test's horizon), with its
    80% and 95% intervals, and the same fitted model with its learned vector field switched off (the MLP's
    output zeroed: the closed-form structure and the learned linear decay of the residual), to show what
    the neural ODE adds. Timed: ``fit``, the interval calibration that ``fit`` runs (run again alone, on
    the same grid, and checked to give the same calibration), the first ``predict`` (which compiles the
    forecast), then ``predict`` and ``predict(level=)`` once compiled."""
    import pyanode
    from pyanode.forecast.fitting import field_scaled
    from pyanode.forecast.grid import grid_positions
    from pyanode.forecast.intervals import band_columns, calibrate

    cols = list(train.columns)
    start = time.perf_counter()
    fc = pyanode.fit(train, progress=False, horizon=len(dates))
    fit_s = time.perf_counter() - start
    # fit's calibration step again, on the grid fit built it from (the cleaned training rows)
    _, pos, _ = grid_positions(fc.train.index)
    grid = np.full((int(pos[-1]) + 1, fc.train.shape[1]), np.nan)
    grid[pos] = fc.train.to_numpy(dtype=np.float64)
    start = time.perf_counter()
    again = calibrate(fc.structure, grid, fc.structure.columns[0].trusted)
    calibrate_s = time.perf_counter() - start
    start = time.perf_counter()
    fc.predict(dates=dates)  # the first predict compiles the forecast; timed apart, not in the comparison
    predict_first_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = fc.predict(dates=dates)[cols].to_numpy(np.float64)
    predict_s = time.perf_counter() - start
    start = time.perf_counter()
    banded = fc.predict(dates=dates, level=list(LEVELS))
    predict_level_s = time.perf_counter() - start
    bands = {lv: tuple(banded[[band_columns(c, lv)[k] for c in cols]].to_numpy(np.float64) for k in (0, 1))
             for lv in LEVELS}
    fc.model = field_scaled(fc.model, 0.0)
    off = fc.predict(dates=dates)[cols].to_numpy(np.float64)
    timing = {"fit_s": fit_s, "calibrate_s": calibrate_s, "predict_first_s": predict_first_s,
              "predict_s": predict_s, "predict_level_s": predict_level_s}
    return {"pred": pred, "bands": bands, "field_off": off, "timing": timing,
            "calibration_same": again == fc.calibration,
            "point_same": bool(np.allclose(banded[cols].to_numpy(np.float64), pred, rtol=1e-6, atol=0)),
            "structure": [c.describe() for c in fc.structure.columns]}


def _statsforecast(name: str, season: int):
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, AutoTheta

    if name == "mstl":
        if season < 2:
            raise CannotRun("MSTL needs a season of at least 2")
        return MSTL(season_length=season)
    return {"autoets": AutoETS, "autotheta": AutoTheta, "autoarima": AutoARIMA}[name](season_length=season)


def run_statsforecast(name):
    def run(train, dates, season):
        outs = [_statsforecast(name, season).forecast(y=y, h=len(dates), level=list(LEVELS))
                for y in _ys(train)]
        bands = {lv: tuple(np.stack([o[f"{side}-{lv}"] for o in outs], axis=1) for side in ("lo", "hi"))
                 for lv in LEVELS}
        return {"pred": np.stack([o["mean"] for o in outs], axis=1), "bands": bands}
    return run


def run_prophet(train, dates, season):
    """One MAP fit per column; the point forecast is ``yhat``; the intervals are the percentiles of the
    fitted model's 1000 posterior predictive draws (``predictive_samples``) that Prophet itself takes for
    ``yhat_lower``/``yhat_upper`` at ``interval_width`` 0.8 and 0.95, with its own percentile function."""
    from prophet import Prophet

    out, fit_s = [], 0.0
    lo = {lv: [] for lv in LEVELS}
    hi = {lv: [] for lv in LEVELS}
    future = pd.DataFrame({"ds": dates})
    for c in train.columns:
        start = time.perf_counter()
        model = Prophet(uncertainty_samples=1000).fit(pd.DataFrame({"ds": train.index,
                                                                    "y": train[c].to_numpy()}))
        fit_s += time.perf_counter() - start
        out.append(model.predict(future)["yhat"].to_numpy(np.float64))
        np.random.seed(0)  # Prophet draws with numpy's global generator
        sims = model.predictive_samples(future)["yhat"]
        for lv in LEVELS:
            tail = (100 - lv) / 2
            lo[lv].append(np.asarray(model.percentile(sims, tail, axis=1), dtype=np.float64))
            hi[lv].append(np.asarray(model.percentile(sims, 100 - tail, axis=1), dtype=np.float64))
    bands = {lv: (np.stack(lo[lv], axis=1), np.stack(hi[lv], axis=1)) for lv in LEVELS}
    return {"pred": np.stack(out, axis=1), "bands": bands, "timing": {"fit_s": fit_s}}


class CannotRun(Exception):
    """The method does not apply to this series (reported as n/a)."""


RUNNERS = {"pyanode": run_pyanode, "snaive": run_snaive, "prophet": run_prophet,
           **{m: run_statsforecast(m) for m in ("autoets", "autotheta", "autoarima", "mstl")}}


def _quiet() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("cmdstanpy", "prophet", "py.warnings"):
        logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger(name).disabled = True


def _warm_up(method: str) -> None:
    """Compile / load once on a small synthetic series so that the timings that follow do not include it."""
    if method in ("pyanode", "snaive"):
        return
    t = pd.date_range("2000-01-01", periods=60, freq="MS")
    y = 10 + np.sin(np.arange(60) * 2 * np.pi / 12) + 0.01 * np.arange(60)
    train = pd.DataFrame({"y": y[:48]}, index=t[:48])
    for season in (1, 12):
        try:
            RUNNERS[method](train, t[48:], season)
        except CannotRun:
            pass


def _worker(method: str, conn) -> None:
    _quiet()
    _warm_up(method)
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        train, dates, season = job
        start = time.perf_counter()
        try:
            pred = RUNNERS[method](train, dates, season)
            conn.send(("ok", pred, time.perf_counter() - start))
        except CannotRun as err:
            conn.send(("n/a", str(err), 0.0))
        except Exception as err:  # any failure of the method is a result, not a crash of the benchmark
            last = traceback.format_exception_only(type(err), err)[-1].strip()
            conn.send(("failed", last[:200], time.perf_counter() - start))


class Worker:
    """One process per method: a fit that passes the timeout is killed with its process."""

    def __init__(self, method: str):
        self.method = method
        self.proc = None

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(self.method, child), daemon=True)
        self.proc.start()
        if not self.conn.poll(600) or self.conn.recv() != "ready":
            raise RuntimeError(f"the {self.method} worker did not start")

    def run(self, train, dates, season, timeout: float):
        if self.proc is None or not self.proc.is_alive():
            self.start()
        self.conn.send((train, dates, season))
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except EOFError:
                self.stop()
                return ("failed", "the worker process died", float("nan"))
        self.stop()
        return ("timeout", f"over {timeout:g} s", float(timeout))

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                try:
                    self.conn.send(None)
                except OSError:
                    pass
                self.proc.join(2)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
            self.proc = None


# --------------------------------------------------------------------------------------------------------
# Evaluation


def score_origin(df: pd.DataFrame, bounds: tuple[int, int], season: int, pred: np.ndarray,
                 bands: dict | None = None) -> dict:
    """MASE per column and its mean over the columns; with ``bands`` (level -> (lo, hi) arrays like
    ``pred``) also coverage and MSIS per column (``interval_columns``) and their means (``intervals``)."""
    train_end, test_end = bounds
    train, test = df.iloc[:train_end], df.iloc[train_end:test_end]
    scales = {c: mase_scale(train[c].to_numpy(), season) for c in df.columns}
    per = {c: mase(test[c].to_numpy(), pred[:, i], scales[c]) for i, c in enumerate(df.columns)}
    out = {"mase": float(np.nanmean(list(per.values()))), "columns": per}
    if bands is not None:
        cols = {}
        for i, c in enumerate(df.columns):
            y = test[c].to_numpy()
            d = {}
            for lv in LEVELS:
                lo, hi = (np.asarray(v, dtype=np.float64)[:, i] for v in bands[lv])
                d[f"coverage-{lv}"] = coverage(y, lo, hi)
                d[f"msis-{lv}"] = msis(y, lo, hi, lv, scales[c])
            cols[c] = d
        out["interval_columns"] = cols
        out["intervals"] = {k: float(np.nanmean([d[k] for d in cols.values()])) for k in INTERVAL_KEYS}
    return out


def evaluate(method: str, spec: dict, df: pd.DataFrame, bounds: list[tuple[int, int]], worker,
             timeout: float) -> dict:
    """One method on one series: per-origin MASE (seasonal naive's where the method failed) and seconds."""
    season = spec["season"]
    rows = []
    skip = None
    for b in bounds:
        train, dates = df.iloc[:b[0]], df.index[b[0]:b[1]]
        naive = score_origin(df, b, season, run_snaive(train, dates, season),
                             snaive_bands(train, dates, season))
        extra = {}
        interval_status, interval_detail = "ok", ""
        if method == "snaive":
            start = time.perf_counter()
            run_snaive(train, dates, season)
            snaive_bands(train, dates, season)
            status, detail, secs, res = "ok", "", time.perf_counter() - start, naive
        else:
            if skip:
                status, detail, secs = "skipped", skip, 0.0
            else:
                status, detail, secs = worker.run(train, dates, season, timeout)
            res = None
            if status == "ok":
                bands = None
                if isinstance(detail, dict):  # the intervals and, pyanode's, the field-off ablation and more
                    bands = detail.get("bands")
                    if "field_off" in detail:
                        extra["field_off_mase"] = score_origin(df, b, season, detail["field_off"])["mase"]
                    extra.update({k: detail[k] for k in ("structure", "timing", "calibration_same",
                                                         "point_same") if k in detail})
                    detail = detail["pred"]
                pred = np.asarray(detail, dtype=np.float64)
                detail = ""
                if pred.shape != (len(dates), df.shape[1]) or not np.isfinite(pred).all():
                    status, detail = "failed", f"forecast of shape {pred.shape} with non-finite values"
                else:
                    why = "the method gave no intervals" if bands is None else check_bands(bands, pred.shape)
                    res = score_origin(df, b, season, pred, None if why else bands)
                    if why:
                        interval_status, interval_detail = ("n/a" if bands is None else "failed"), why
                        if bands is not None:  # scored as seasonal naive's, like a failed forecast
                            res.update(intervals=naive["intervals"],
                                       interval_columns=naive["interval_columns"])
            if status == "timeout":
                skip = "a previous origin timed out"
            if res is None:
                res = naive
                interval_status, interval_detail = status, detail
        rows.append({"train_rows": b[0], "test_rows": b[1] - b[0], "status": status, "detail": detail,
                     "seconds": secs, "mase": res["mase"], "columns": res["columns"],
                     "snaive_mase": naive["mase"], "interval_status": interval_status,
                     "interval_detail": interval_detail, "intervals": res.get("intervals"),
                     "interval_columns": res.get("interval_columns"),
                     "snaive_intervals": naive["intervals"], **extra})
    bad = [r["status"] for r in rows if r["status"] != "ok"]
    extra_entry: dict = {}
    if method != "snaive" and all("field_off_mase" in r for r in rows):
        extra_entry["field_off_mase"] = float(np.mean([r["field_off_mase"] for r in rows]))
    if all(r["intervals"] is not None for r in rows):
        extra_entry["intervals"] = {k: float(np.mean([r["intervals"][k] for r in rows]))
                                    for k in INTERVAL_KEYS}
        ibad = [r["interval_status"] for r in rows if r["interval_status"] != "ok"]
        extra_entry["interval_status"] = "ok" if not ibad else ibad[0]
        extra_entry["interval_substituted"] = len(ibad)
    timed = [r["timing"] for r in rows if "timing" in r]
    if timed:  # seconds by step, summed over the origins that ran
        extra_entry["timing"] = {k: float(sum(t[k] for t in timed)) for k in timed[0]}
        extra_entry["timing"]["origins"] = len(timed)
    return {**extra_entry, "mase": float(np.mean([r["mase"] for r in rows])),
            "seconds": float(sum(r["seconds"] for r in rows)),
            "status": "ok" if not bad else bad[0], "substituted": len(bad), "origins": rows}


# --------------------------------------------------------------------------------------------------------
# Report


def _cell(entry: dict) -> str:
    mark = "" if entry["substituted"] == 0 else f" ({entry['status']}, {entry['substituted']}/"\
        f"{len(entry['origins'])})"
    return f"{entry['mase']:.3f}{mark}"


def report(results: dict[str, dict[str, dict]], methods: list[str]) -> str:
    series = [s for s in results if results[s]]
    table = {s: {m: results[s][m]["mase"] for m in methods if m in results[s]} for s in series}
    best = {s: min(table[s].values()) for s in series}
    mr = mean_ranks(table)
    lines = ["MASE (M4 scale; mean over columns and origins; bold = best on the series; a method marked "
             "(status, k/n) scored seasonal naive's MASE at k of its n origins):", "",
             "| series | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for s in series:
        cells = []
        for m in methods:
            e = results[s].get(m)
            c = "" if e is None else _cell(e)
            cells.append(f"**{c}**" if e is not None and e["mase"] == best[s] else c)
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    means = {m: np.mean([table[s][m] for s in series if m in table[s]]) for m in methods}
    lines.append("| **mean MASE** | " + " | ".join(f"{means[m]:.3f}" for m in methods) + " |")
    lines.append("| **mean rank** | " + " | ".join(f"{mr.get(m, math.nan):.2f}" for m in methods) + " |")
    lines += ["", "Fit + predict seconds per series (all origins and columns):", "",
              "| series | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for s in series:
        cells = [f"{results[s][m]['seconds']:.1f}" if m in results[s] else "" for m in methods]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    totals = [sum(results[s][m]["seconds"] for s in series if m in results[s]) for m in methods]
    lines.append("| **total** | " + " | ".join(f"{t:.1f}" for t in totals) + " |")
    notes = []
    for s in series:
        for m in methods:
            bad = [r for r in results[s].get(m, {"origins": []})["origins"] if r["status"] != "ok"]
            for why in dict.fromkeys((r["status"], r["detail"]) for r in bad):
                rows = ", ".join(str(r["train_rows"]) for r in bad if (r["status"], r["detail"]) == why)
                notes.append(f"- {s} / {m}: {why[0]} ({why[1]}) at the origins with {rows} training rows")
    if notes:
        lines += ["", "Substituted by seasonal naive:", "", *notes]
    if any("field_off_mase" in results[s].get("pyanode", {}) for s in series):
        lines += ["", "What the neural ODE adds: pyanode's MASE beside the same fitted model with its "
                  "learned vector field switched off (closed-form structure and learned linear decay only), "
                  "and the structure chosen at the last origin:", "",
                  "| series | pyanode | field off | structure (per column) |", "|---|---:|---:|---|"]
        for s in series:
            e = results[s].get("pyanode", {})
            if "field_off_mase" in e:
                chosen = "; ".join(e["origins"][-1].get("structure", []))
                lines.append(f"| {s} | {e['mase']:.3f} | {e['field_off_mase']:.3f} | {chosen} |")
        off = [results[s]["pyanode"]["field_off_mase"] for s in series
               if "field_off_mase" in results[s].get("pyanode", {})]
        on = [results[s]["pyanode"]["mase"] for s in series
              if "field_off_mase" in results[s].get("pyanode", {})]
        lines.append(f"| **mean** | {np.mean(on):.3f} | {np.mean(off):.3f} | |")
    return "\n".join(lines)


def _icell(entry: dict, key: str, fmt: str) -> str:
    iv = entry.get("intervals")
    if iv is None:
        return ""
    mark = "" if not entry.get("interval_substituted") else \
        f" ({entry['interval_status']}, {entry['interval_substituted']}/{len(entry['origins'])})"
    return format(iv[key], fmt) + mark


def interval_means(results: dict[str, dict[str, dict]], methods: list[str]) -> dict[str, dict]:
    """Each method's interval scores averaged over the series, for the methods that have them on every
    series (``series`` counts them)."""
    series = [s for s in results if results[s]]
    out = {}
    for m in methods:
        have = [results[s][m]["intervals"] for s in series if "intervals" in results[s].get(m, {})]
        if have and len(have) == len(series):
            out[m] = {**{k: float(np.mean([h[k] for h in have])) for k in INTERVAL_KEYS}, "series": len(have)}
    return out


def interval_report(results: dict[str, dict[str, dict]], methods: list[str]) -> str:
    """Coverage and MSIS of the 80% and 95% intervals per series and method, their means over the series,
    and pyanode's seconds for intervals against point forecasts."""
    series = [s for s in results if results[s]]
    methods = [m for m in methods if any("intervals" in results[s].get(m, {}) for s in series)]
    if not methods:
        return ""
    means = interval_means(results, methods)
    lines = []
    for what, fmt, pct in (("coverage", ".1%", True), ("msis", ".2f", False)):
        title = ("Coverage of the 80% / 95% intervals (nominal 80% / 95%)" if pct else
                 "MSIS of the 80% / 95% intervals (M4; scaled by MASE's scale; lower is better; bold = "
                 "lowest on the series)")
        lines += [title + "; mean over columns and origins; a method marked (status, k/n) scored seasonal "
                  "naive's intervals at k of its n origins:", "",
                  "| series | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
        for s in series:
            cells = []
            best = {lv: min((results[s][m]["intervals"][f"msis-{lv}"] for m in methods
                             if "intervals" in results[s].get(m, {})), default=math.nan) for lv in LEVELS}
            for m in methods:
                e = results[s].get(m, {})
                if "intervals" not in e:
                    cells.append("")
                    continue
                parts = []
                for lv in LEVELS:
                    c = _icell(e, f"{what}-{lv}", fmt)
                    if not pct and e["intervals"][f"msis-{lv}"] == best[lv]:
                        c = f"**{c}**"
                    parts.append(c)
                cells.append(" / ".join(parts))
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append("| **mean** | " + " | ".join(
            " / ".join(format(means[m][f"{what}-{lv}"], fmt) for lv in LEVELS) if m in means else ""
            for m in methods) + " |")
        lines.append("")
    timed = [s for s in series if "timing" in results[s].get("pyanode", {})]
    if timed:
        lines += ["pyanode's seconds per series (all origins): fit (the interval calibration included), the "
                  "calibration alone, predict and predict(level=[80, 95]) once compiled (the first predict, "
                  "which compiles, is left out of both); point = fit - calibration + predict, with "
                  "intervals = fit + predict(level=):", "",
                  "| series | fit | calibration | predict | predict(level=) | point | with intervals "
                  "| ratio |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        tot = dict.fromkeys(("fit_s", "calibrate_s", "predict_s", "predict_level_s"), 0.0)
        for s in timed:
            t = results[s]["pyanode"]["timing"]
            for k in tot:
                tot[k] += t[k]
            lines.append(_timing_row(s, t))
        lines.append(_timing_row("**total**", tot))
    return "\n".join(lines).rstrip()


def interval_cost(timing: dict) -> tuple[float, float, float]:
    """pyanode's seconds for a point forecast (fit without its calibration, then predict), for one with
    intervals (fit, then predict(level=)), and their ratio."""
    point = timing["fit_s"] - timing["calibrate_s"] + timing["predict_s"]
    banded = timing["fit_s"] + timing["predict_level_s"]
    return point, banded, banded / point


def _timing_row(name: str, t: dict) -> str:
    point, banded, ratio = interval_cost(t)
    return (f"| {name} | {t['fit_s']:.1f} | {t['calibrate_s']:.2f} | {t['predict_s']:.2f} | "
            f"{t['predict_level_s']:.2f} | {point:.1f} | {banded:.1f} | {ratio:.3f} |")


def series_table(name: str, entries: dict[str, dict]) -> str:
    r = ranks({m: e["mase"] for m, e in entries.items()})
    head = " | ".join(INTERVAL_KEYS)
    lines = [f"{name}:", "", f"| method | MASE | rank | {head} | fit s | status |",
             "|---|---:|---:|" + "---:|" * len(INTERVAL_KEYS) + "---:|---|"]
    for m, e in sorted(entries.items(), key=lambda kv: kv[1]["mase"]):
        n = len(e["origins"])
        status = f"{e['status']} at {e['substituted']}/{n} origins" if e["substituted"] else "ok"
        if e.get("interval_substituted"):
            status += f"; intervals {e['interval_status']} at {e['interval_substituted']}/{n}"
        iv = e.get("intervals")
        cells = " | ".join("" if iv is None else (f"{iv[k]:.1%}" if k.startswith("cov") else f"{iv[k]:.2f}")
                           for k in INTERVAL_KEYS)
        lines.append(f"| {m} | {e['mase']:.3f} | {r[m]:g} | {cells} | {e['seconds']:.1f} | {status} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# Command line


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated, default all: "
                   + ",".join(METHODS))
    p.add_argument("--series", default="", help="comma-separated suite names (default all)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per fit (one origin, all columns)")
    p.add_argument("--cache", type=Path, help="JSON of earlier results: reused, and updated as results come")
    p.add_argument("--rerun", default="", help="methods to recompute even if they are in the cache")
    p.add_argument("--json", type=Path, help="write this run's results (cached ones included) here")
    p.add_argument("--suite", type=Path, default=None, help="suite folder (default: the shared one)")
    args = p.parse_args(argv)

    methods = _csv(args.methods)
    unknown = sorted(set(methods + _csv(args.rerun)) - set(METHODS))
    if unknown:
        p.error(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    folder = args.suite or suite_dir()
    specs = json.loads((folder / "suite.json").read_text())["series"]
    names = _csv(args.series) or [s["name"] for s in specs]
    missing = sorted(set(names) - {s["name"] for s in specs})
    if missing:
        p.error(f"unknown series {missing}")
    specs = [s for s in specs if s["name"] in names]
    rerun = set(_csv(args.rerun))

    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    cache.setdefault("results", {})
    results: dict[str, dict[str, dict]] = {s["name"]: {} for s in specs}
    data = {s["name"]: load_series(s, folder) for s in specs}
    print(f"suite {folder}: {len(specs)} series; methods {', '.join(methods)}; timeout {args.timeout:g} s",
          flush=True)
    for method in methods:
        worker = None if method == "snaive" else Worker(method)
        try:
            for spec in specs:
                name = spec["name"]
                cached = cache["results"].get(name, {}).get(method)
                if cached is not None and method not in rerun and "intervals" in cached:
                    results[name][method] = cached
                    print(f"{name:24s} {method:10s} MASE {cached['mase']:.3f}  {cached['seconds']:7.1f} s  "
                          "(cached)", flush=True)
                    continue
                df, bounds = data[name]
                entry = evaluate(method, spec, df, bounds, worker, args.timeout)
                results[name][method] = entry
                flag = "" if entry["status"] == "ok" else f"  [{entry['status']}: seasonal naive at " \
                    f"{entry['substituted']}/{len(bounds)} origins]"
                iv = entry.get("intervals")
                ivs = "" if iv is None else \
                    "  cov " + "/".join(f"{iv[f'coverage-{lv}']:.2f}" for lv in LEVELS) + \
                    "  MSIS " + "/".join(f"{iv[f'msis-{lv}']:.2f}" for lv in LEVELS)
                if cached is not None and method not in rerun:
                    flag += f"  (recomputed: the cached entry, MASE {cached['mase']:.3f}, had no intervals)"
                print(f"{name:24s} {method:10s} MASE {entry['mase']:.3f}{ivs}  {entry['seconds']:7.1f} s"
                      f"{flag}", flush=True)
                if args.cache:
                    cache["results"].setdefault(name, {})[method] = entry
                    cache["timeout"] = args.timeout
                    args.cache.parent.mkdir(parents=True, exist_ok=True)
                    args.cache.write_text(json.dumps(cache, indent=1))
        finally:
            if worker is not None:
                worker.stop()

    # Cached methods not asked for this time still go into the table, so that one rerun shows all.
    shown = [m for m in METHODS if m in methods or any(m in cache["results"].get(s["name"], {})
                                                         for s in specs)]
    for s in specs:
        for m in shown:
            if m not in results[s["name"]] and m in cache["results"].get(s["name"], {}):
                results[s["name"]][m] = cache["results"][s["name"]][m]
    print()
    for s in specs:
        print(series_table(s["name"], results[s["name"]]), end="\n\n")
    print(report(results, shown), flush=True)
    print()
    print(interval_report(results, shown), flush=True)
    # the suite's place without this machine's paths: relative to the shared folder, else its own name
    label = "shared/data/forecast-suite" if folder == suite_dir() else folder.name
    out = {"suite": label, "timeout": args.timeout, "methods": shown, "results": results,
           "mean_mase": {m: float(np.mean([results[s][m]["mase"] for s in results if m in results[s]]))
                         for m in shown},
           "mean_intervals": interval_means(results, shown),
           "mean_rank": mean_ranks({s: {m: e["mase"] for m, e in results[s].items()} for s in results}),
           "versions": _versions()}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("pyanode", "jax", "numpy", "pandas", "statsforecast", "prophet"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    main()
