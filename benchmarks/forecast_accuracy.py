"""Forecast accuracy on the shared forecast suite: pyanode's defaults beside seasonal naive, statsforecast
(AutoETS, AutoTheta, AutoARIMA, MSTL) and Prophet, scored by MASE with M4's scale.

Protocol (``../shared/data/forecast-suite/suite.json``, or ``$PYANODE_SHARED/data/forecast-suite``): for each
series, the last 3 windows of ``horizon`` rows are each forecast from all rows before them (Delhi: one origin,
its official test file, dates after the last training date). Every method gets the same training rows: the
suite's numeric value columns only (text columns such as Seattle's ``weather`` are dropped) and rows with no
value at all removed. MASE per column = test MAE / in-sample seasonal-naive MAE of that origin's training rows
(lag = the suite's M4 ``season``); averaged over columns, then over origins. A method that fails, cannot run
(MSTL with season 1) or passes ``--timeout`` seconds on a fit scores seasonal naive's MASE at that origin and
is marked; after a timeout the series' later origins are not tried. Fits run in one worker process per
method, so a stuck fit can be killed; statsforecast and Prophet are warmed up (numba compilation, Stan model
loading) on a small synthetic series before anything is timed; pyanode's compilation is part of its seconds.

    python benchmarks/forecast_accuracy.py [--methods pyanode,snaive,...] [--series name,...] [--timeout 120]
        [--cache results.json] [--rerun pyanode] [--json out.json]

With ``--cache``, (series, method) results already in the file are loaded instead of recomputed, unless the
method is listed in ``--rerun``; new results are added to the file as they finish.
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

import numpy as np
import pandas as pd

METHODS = ("pyanode", "snaive", "autoets", "autotheta", "autoarima", "mstl", "prophet")
WINDOWS = 3
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
# returns forecasts of shape (len(dates), columns).


def _ys(train: pd.DataFrame) -> list[np.ndarray]:
    return [train[c].interpolate(limit_direction="both").to_numpy(np.float64) for c in train.columns]


def run_snaive(train, dates, season):
    return np.stack([seasonal_naive(y, len(dates), season) for y in _ys(train)], axis=1)


def run_pyanode(train, dates, season):
    """pyanode as ``pyanode forecast --test`` runs it (the backtest judges the test's horizon), and the
    same fitted model with its learned vector field switched off (the MLP's output zeroed: the closed-form
    structure and the learned linear decay of the residual), to show what the neural ODE adds."""
    import pyanode
    from pyanode.forecast.fitting import field_scaled

    fc = pyanode.fit(train, progress=False, horizon=len(dates))
    pred = fc.predict(dates=dates).reindex(columns=train.columns).to_numpy(np.float64)
    fc.model = field_scaled(fc.model, 0.0)
    off = fc.predict(dates=dates).reindex(columns=train.columns).to_numpy(np.float64)
    return {"pred": pred, "field_off": off, "structure": [c.describe() for c in fc.structure.columns]}


def _statsforecast(name: str, season: int):
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, AutoTheta

    if name == "mstl":
        if season < 2:
            raise CannotRun("MSTL needs a season of at least 2")
        return MSTL(season_length=season)
    return {"autoets": AutoETS, "autotheta": AutoTheta, "autoarima": AutoARIMA}[name](season_length=season)


def run_statsforecast(name):
    def run(train, dates, season):
        return np.stack([_statsforecast(name, season).forecast(y=y, h=len(dates))["mean"]
                         for y in _ys(train)], axis=1)
    return run


def run_prophet(train, dates, season):
    from prophet import Prophet

    out = []
    for c in train.columns:
        model = Prophet().fit(pd.DataFrame({"ds": train.index, "y": train[c].to_numpy()}))
        out.append(model.predict(pd.DataFrame({"ds": dates}))["yhat"].to_numpy(np.float64))
    return np.stack(out, axis=1)


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


def score_origin(df: pd.DataFrame, bounds: tuple[int, int], season: int, pred: np.ndarray) -> dict:
    train_end, test_end = bounds
    train, test = df.iloc[:train_end], df.iloc[train_end:test_end]
    per = {c: mase(test[c].to_numpy(), pred[:, i], mase_scale(train[c].to_numpy(), season))
           for i, c in enumerate(df.columns)}
    return {"mase": float(np.nanmean(list(per.values()))), "columns": per}


def evaluate(method: str, spec: dict, df: pd.DataFrame, bounds: list[tuple[int, int]], worker,
             timeout: float) -> dict:
    """One method on one series: per-origin MASE (seasonal naive's where the method failed) and seconds."""
    season = spec["season"]
    rows = []
    skip = None
    for b in bounds:
        train, dates = df.iloc[:b[0]], df.index[b[0]:b[1]]
        naive = score_origin(df, b, season, run_snaive(train, dates, season))
        extra = {}
        if method == "snaive":
            start = time.perf_counter()
            run_snaive(train, dates, season)
            status, detail, secs, res = "ok", "", time.perf_counter() - start, naive
        else:
            if skip:
                status, detail, secs = "skipped", skip, 0.0
            else:
                status, detail, secs = worker.run(train, dates, season, timeout)
            res = None
            if status == "ok":
                if isinstance(detail, dict):  # pyanode: also its field-off ablation and chosen structure
                    extra = {"field_off_mase": score_origin(df, b, season, detail["field_off"])["mase"],
                             "structure": detail["structure"]}
                    detail = detail["pred"]
                pred = np.asarray(detail, dtype=np.float64)
                detail = ""
                if pred.shape != (len(dates), df.shape[1]) or not np.isfinite(pred).all():
                    status, detail = "failed", f"forecast of shape {pred.shape} with non-finite values"
                else:
                    res = score_origin(df, b, season, pred)
            if status == "timeout":
                skip = "a previous origin timed out"
            if res is None:
                res = naive
        rows.append({"train_rows": b[0], "test_rows": b[1] - b[0], "status": status, "detail": detail,
                     "seconds": secs, "mase": res["mase"], "columns": res["columns"],
                     "snaive_mase": naive["mase"], **extra})
    bad = [r["status"] for r in rows if r["status"] != "ok"]
    if method != "snaive" and all("field_off_mase" in r for r in rows):
        extra_entry = {"field_off_mase": float(np.mean([r["field_off_mase"] for r in rows]))}
    else:
        extra_entry = {}
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


def series_table(name: str, entries: dict[str, dict]) -> str:
    r = ranks({m: e["mase"] for m, e in entries.items()})
    lines = [f"{name}:", "", "| method | MASE | rank | fit s | status |", "|---|---:|---:|---:|---|"]
    for m, e in sorted(entries.items(), key=lambda kv: kv[1]["mase"]):
        n = len(e["origins"])
        status = f"{e['status']} at {e['substituted']}/{n} origins" if e["substituted"] else "ok"
        lines.append(f"| {m} | {e['mase']:.3f} | {r[m]:g} | {e['seconds']:.1f} | {status} |")
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
                if cached is not None and method not in rerun:
                    results[name][method] = cached
                    print(f"{name:24s} {method:10s} MASE {cached['mase']:.3f}  {cached['seconds']:7.1f} s  "
                          "(cached)", flush=True)
                    continue
                df, bounds = data[name]
                entry = evaluate(method, spec, df, bounds, worker, args.timeout)
                results[name][method] = entry
                flag = "" if entry["status"] == "ok" else f"  [{entry['status']}: seasonal naive at " \
                    f"{entry['substituted']}/{len(bounds)} origins]"
                print(f"{name:24s} {method:10s} MASE {entry['mase']:.3f}  {entry['seconds']:7.1f} s{flag}",
                      flush=True)
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
    out = {"suite": str(folder), "timeout": args.timeout, "methods": shown, "results": results,
           "mean_mase": {m: float(np.mean([results[s][m]["mase"] for s in results if m in results[s]]))
                         for m in shown},
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
