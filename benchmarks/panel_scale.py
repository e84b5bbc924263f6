"""Panels at scale: pyanode's global model beside statsforecast's AutoETS on 1,000 and 10,000 monthly series.

Protocol. The panels come from :mod:`panel_data` (seeded, realistic monthly series: 48-240 training months,
trend, yearly seasonality, noise, gaps and outliers); the test is each series' last 18 months (M4's monthly
horizon). Every (panel, method) cell runs in its own subprocess, which builds the panel itself (not timed)
and then times only the method. The parent polls that process tree with psutil every half second for its
summed PSS (proportional set size: pages shared by forked workers counted once), and the child reports
its own peak RSS (``ru_maxrss``; at the end, and when the method returns, before the scoring's merges), its
workers' (``RUSAGE_CHILDREN``, the largest one) and its RSS once the input is made, before the method's
libraries are imported (``VmRSS``). The method's peak less that is its own ("peak RSS above input");
its slope between the smallest and the largest panel is what each more series costs (libraries and
compiled programs cancel).

* ``pyanode``: ``pyanode.fit(train, id_column="unique_id", horizon=18, progress=False)`` (defaults: 400
  iterations, batch 32, ``n_jobs`` = all cores for the per-series structure), then ``.predict(18)``. The fit
  is split into structure preparation (``_prepare_all``: since the panel is read lazily, each series' loading
  too), training (``train_panel``, compilation and validation included) and the rest; JAX's persistent
  compilation cache is on, as by default (after the first run its programs come from the cache).
* ``autoets``: ``StatsForecast(models=[AutoETS(season_length=12)], freq="MS", n_jobs=<cores>)
  .forecast(df=train, h=18)``, after a warm-up on a tiny panel (numba compiles there, untimed). AutoETS
  reads rows as consecutive, so missing months are first filled by linear interpolation (timed, as part of
  its fit: pyanode puts each series on its grid inside ``fit``).
* ``snaive``: statsforecast's ``SeasonalNaive(12)`` on the same gap-filled rows, for reference (on the
  stocks, ``SeasonalNaive(1)``: the last value).

Accuracy: MASE per series with M4's scale, the mean absolute in-sample difference ``|y[t] - y[t - 12]|``
over the months where both are present (the same function for every method), then the mean over series.

Also: vega_datasets' ``stocks`` (5 monthly prices, 2000-2010; the last 12 months are the test); the same
methods with horizon 12, but MASE's scale uses season 1 (prices have no yearly cycle). And device
scaling: pyanode on a 1,000-series panel with ``iterations=100, batch=64, devices=1, 2, 4``, each process
started with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``; the figure is the training seconds per
iteration after the first (the first compiles), from the history's ``seconds`` column (validation not
included in it).

    python benchmarks/panel_scale.py [--series 1000,10000] [--methods pyanode,autoets,snaive]
        [--devices 1,2,4] [--device-series 1000] [--xla-flags FLAGS] [--no-stocks] [--no-devices]
        [--rerun KEY,...] [--cache results/panel_scale.json] [--timeout 5400]

On a host with fewer cores than virtual devices, XLA:CPU may abort an all-reduce after its 40 s rendezvous
timeout (the devices share the cores); ``--xla-flags=--xla_cpu_collective_call_terminate_timeout_seconds=300``
lengthens it. The results in ``results/panel_scale.json`` were made with (2 cores, shared with other work):

    python benchmarks/panel_scale.py --series 200 --device-series 200
    python benchmarks/panel_scale.py --series 1000 \
        --xla-flags=--xla_cpu_collective_call_terminate_timeout_seconds=300
    python benchmarks/panel_scale.py --series 10000 --no-devices

Results are cached per cell (``panel/N/method``, ``stocks/method``, ``devices/N/d``) in ``--cache``; a rerun
skips the cells already there unless a key (or a prefix of one, or a method name) is given to ``--rerun``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from panel_data import HORIZON, SEASON, make_panel  # noqa: E402

RESULTS = HERE / "results" / "panel_scale.json"
METHODS = ("pyanode", "autoets", "snaive")
STOCKS_HORIZON = 12


# ---------------------------------------------------------------------------------------------------------
# Pure helpers (tested in tests/test_benchmark_panel_scale.py)

def month_number(ds: pd.Series) -> np.ndarray:
    """Months since year 0 (``12 * year + month - 1``): consecutive months differ by 1."""
    ds = pd.to_datetime(ds)
    return (ds.dt.year * 12 + ds.dt.month - 1).to_numpy()


def mase_scales(train: pd.DataFrame, season: int) -> pd.Series:
    """Per series, M4's MASE scale: the mean of ``|y[t] - y[t - season]|`` (months apart, by date) over the
    training months where both values are present."""
    t = pd.DataFrame({"unique_id": train["unique_id"].to_numpy(), "m": month_number(train["ds"]),
                      "y": train["y"].to_numpy()})
    lagged = t.assign(m=t["m"] + season)
    both = t.merge(lagged, on=["unique_id", "m"], suffixes=("", "_lag"))
    return (both["y"] - both["y_lag"]).abs().groupby(both["unique_id"]).mean()


def mase(train: pd.DataFrame, test: pd.DataFrame, forecast: pd.DataFrame, season: int) -> pd.Series:
    """Per series: the test's mean absolute error of ``forecast`` (``unique_id, ds, y``) over
    :func:`mase_scales`. Every test row must have a forecast."""
    f = forecast[["unique_id", "ds", "y"]].rename(columns={"y": "yhat"})
    f = f.assign(ds=pd.to_datetime(f["ds"]))
    joined = test.assign(ds=pd.to_datetime(test["ds"])).merge(f, on=["unique_id", "ds"], how="left")
    missing = joined["yhat"].isna()
    if missing.any():
        first = joined[missing].iloc[0]
        raise ValueError(f"{int(missing.sum())} test rows have no forecast (first: {first['unique_id']} "
                         f"at {first['ds']:%Y-%m})")
    error = (joined["y"] - joined["yhat"]).abs().groupby(joined["unique_id"]).mean()
    return error / mase_scales(train, season).reindex(error.index)


def fill_gaps(train: pd.DataFrame) -> pd.DataFrame:
    """Every series on all months from its first to its last, missing ones linearly interpolated."""
    m = month_number(train["ds"])
    t = pd.DataFrame({"unique_id": train["unique_id"].to_numpy(), "m": m, "y": train["y"].to_numpy()})
    span = t.groupby("unique_id", sort=False)["m"].agg(["min", "max"])
    lengths = (span["max"] - span["min"] + 1).to_numpy()
    ids = np.repeat(span.index.to_numpy(), lengths)
    months = np.repeat(span["min"].to_numpy() - np.cumsum(np.r_[0, lengths[:-1]]), lengths) + np.arange(
        lengths.sum())
    full = pd.DataFrame({"unique_id": ids, "m": months}).merge(t, on=["unique_id", "m"], how="left")
    full["y"] = full["y"].interpolate()  # gaps are inside a series, never at its ends
    ds = (np.datetime64("0000-01", "M") + full["m"].to_numpy()).astype("datetime64[ns]")
    return pd.DataFrame({"unique_id": full["unique_id"], "ds": ds, "y": full["y"]})


def stocks_panel() -> tuple[pd.DataFrame, pd.DataFrame]:
    """vega_datasets' stocks as ``(train, test)`` long frames; the test is each symbol's last 12 months."""
    from vega_datasets import local_data

    df = local_data.stocks().rename(columns={"symbol": "unique_id", "date": "ds", "price": "y"})
    df = df.sort_values(["unique_id", "ds"], ignore_index=True)
    last = df.groupby("unique_id").cumcount(ascending=False) < STOCKS_HORIZON
    return df[~last].reset_index(drop=True), df[last].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# One cell, in its own process

def _data(cell: dict) -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
    if cell["kind"] == "stocks":
        train, test = stocks_panel()
        return train, test, STOCKS_HORIZON, 1
    train, test = make_panel(cell["n"], cell.get("seed", 0))
    return train, test, HORIZON, SEASON


def _run_pyanode(cell: dict, train: pd.DataFrame, h: int) -> tuple[pd.DataFrame, dict]:
    import pyanode
    from pyanode.forecast import panel

    spent: dict[str, float] = {}
    memory: dict[str, list] = {}  # phase -> [RSS at its end, the process's peak RSS so far], MB

    def mark(name: str) -> None:
        memory[name] = [rss_now_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]

    def timed(name: str, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
                mark(name)
        return wrapper

    panel._prepare_all = timed("prepare", panel._prepare_all)
    panel.train_panel = timed("train", panel.train_panel)
    options = {"iterations": cell["iterations"], "batch": cell["batch"]} if "iterations" in cell else {}
    if "devices" in cell:
        options["devices"] = cell["devices"]
    mark("imported")
    start = time.perf_counter()
    fc = pyanode.fit(train, id_column="unique_id", horizon=h, progress=False, **options)
    fitted = time.perf_counter()
    mark("fit")
    forecast = fc.predict(h)
    done = time.perf_counter()
    mark("predict")
    hist = fc.history
    seconds = hist["seconds"].to_numpy(dtype=float)
    info = {"fit_s": fitted - start, "predict_s": done - fitted, "prepare_s": spent.get("prepare"),
            "train_s": spent.get("train"), "iterations_run": len(hist), "stopped": fc.info.get("stopped"),
            "step_s_total": float(seconds[-1]), "first_step_s": float(seconds[0]),
            "step_s_per_iteration": float((seconds[-1] - seconds[0]) / max(len(seconds) - 1, 1)),
            "nfe_forward_mean": float(hist["nfe_forward"].mean()), "skipped": len(fc.skipped),
            "jax_devices": len(__import__("jax").devices()), "rss_phases_mb": memory}
    forecast = forecast.rename(columns={fc.id_column: "unique_id", fc.date_column: "ds"})
    return forecast, info


def _run_statsforecast(method: str, train: pd.DataFrame, h: int, season: int) -> tuple[pd.DataFrame, dict]:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, SeasonalNaive

    cores = os.cpu_count() or 1
    model = AutoETS(season_length=SEASON) if method == "autoets" else SeasonalNaive(season_length=season)
    warm, _ = make_panel(2 * cores, seed=12345)  # numba compiles here, untimed
    StatsForecast(models=[model], freq="MS", n_jobs=cores).forecast(df=fill_gaps(warm), h=h)
    start = time.perf_counter()
    filled = fill_gaps(train)
    out = StatsForecast(models=[model], freq="MS", n_jobs=cores).forecast(df=filled, h=h)
    done = time.perf_counter()
    out = out.reset_index() if "unique_id" not in out.columns else out
    name = [c for c in out.columns if c not in ("unique_id", "ds")][0]
    forecast = out.rename(columns={name: "y"})[["unique_id", "ds", "y"]]
    return forecast, {"fit_s": done - start, "predict_s": 0.0, "n_jobs": cores,
                      "filled_rows": len(filled) - len(train)}


def rss_now_mb() -> float | None:
    """This process's resident set now (``VmRSS``), in MB; None where ``/proc`` has no such line.

    Read just after a cell's input is made, it is the floor that the method's peak is measured against:
    the panel's frames are the benchmark's, not the method's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_cell(cell: dict) -> dict:
    train, test, h, season = _data(cell)
    rss_input = rss_now_mb()  # the input made, the method's libraries not yet imported
    if cell["method"] == "pyanode":
        forecast, info = _run_pyanode(cell, train, h)
    else:
        forecast, info = _run_statsforecast(cell["method"], train, h, season)
    rss_method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before scoring's merges
    scores = mase(train, test, forecast, season)
    n = train["unique_id"].nunique()
    total = info["fit_s"] + info["predict_s"]
    info.update(series=n, total_s=total, series_per_s=n / total, mase_mean=float(scores.mean()),
                mase_median=float(scores.median()), mase_season=season,
                rss_input_mb=rss_input, rss_method_mb=rss_method,
                rss_self_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                rss_workers_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return info


# ---------------------------------------------------------------------------------------------------------
# The parent: cells in subprocesses, memory polled, results cached

def _tree_memory(proc) -> tuple[float, float]:
    """(summed RSS, summed PSS) in MB of ``proc`` and its descendants."""
    import psutil

    rss = pss = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            full = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += full.rss
        pss += getattr(full, "pss", full.rss)
    return rss / 2**20, pss / 2**20


def launch(cell: dict, timeout: float, env: dict | None = None) -> dict:
    import psutil

    command = [sys.executable, str(Path(__file__).resolve()), "--cell", json.dumps(cell)]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, **(env or {})))
    proc = psutil.Process(child.pid)
    peak_rss = peak_pss = 0.0
    while child.poll() is None:
        if time.perf_counter() - start > timeout:
            child.kill()
            child.communicate()
            return {"error": f"timeout after {timeout:.0f} s"}
        rss, pss = _tree_memory(proc)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.5)
    out, err = child.communicate()
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if child.returncode != 0 or not lines:
        return {"error": f"exit {child.returncode}", "stderr_tail": err[-4000:]}
    result = json.loads(lines[-1][len("RESULT "):])
    result.update(tree_rss_peak_mb=peak_rss, tree_pss_peak_mb=peak_pss,
                  process_s=time.perf_counter() - start, load_before=load)
    return result


def _cells(a: argparse.Namespace) -> list[tuple[str, dict, dict | None]]:
    cells = []
    for n in a.series:
        for m in a.methods:
            cells.append((f"panel/{n}/{m}", {"kind": "panel", "n": n, "method": m, "seed": a.seed}, None))
    if not a.no_stocks:
        for m in a.methods:
            cells.append((f"stocks/{m}", {"kind": "stocks", "method": m}, None))
    if not a.no_devices:
        env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={max(a.devices)} {a.xla_flags}".strip()}
        for d in a.devices:
            cells.append((f"devices/{a.device_series}/{d}", {"kind": "panel", "n": a.device_series,
                          "method": "pyanode", "seed": a.seed, "iterations": 100, "batch": 64,
                          "devices": d}, env))
    return cells


def _wanted(key: str, rerun: list[str]) -> bool:
    return any(key.startswith(r) or key.split("/")[-1] == r for r in rerun)


def _fmt(x, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def above_input(r: dict) -> float | None:
    """The method's own peak: the process's peak RSS up to the method's return (the scoring after it merges
    whole panels, and is the benchmark's) less its RSS once the input was made; None for a cell run before
    both were recorded."""
    if r.get("rss_input_mb") is None or r.get("rss_method_mb") is None:
        return None
    return r["rss_method_mb"] - r["rss_input_mb"]


def per_series_kb(results: dict, method: str) -> float | None:
    """KB of peak RSS above input per series, from the slope between the smallest and largest panel of
    ``method`` (what each more series costs; the fixed cost, libraries and compiled programs, cancels)."""
    cells = sorted((int(k.split("/")[1]), above_input(r)) for k, r in results.items()
                   if k.startswith("panel/") and k.endswith("/" + method) and "error" not in r
                   and above_input(r) is not None)
    if len(cells) < 2 or cells[0][0] == cells[-1][0]:
        return None
    (n0, m0), (n1, m1) = cells[0], cells[-1]
    return (m1 - m0) * 1024 / (n1 - n0)


PHASES = ("imported", "prepare", "train", "fit", "predict")


def phase_memory(r: dict) -> dict[str, tuple[float, float]] | None:
    """pyanode's RSS above the input at the end of each phase and its peak up to then (MB): the library
    imported, every series prepared (structure, calibration, record), the shared model trained, the whole
    fit returned, the forecasts made. None for a cell run before phases were recorded."""
    phases, floor = r.get("rss_phases_mb"), r.get("rss_input_mb")
    if not phases or floor is None or any(p not in phases for p in PHASES):
        return None
    return {p: (phases[p][0] - floor, phases[p][1] - floor) for p in PHASES}


def phase_memory_table(results: dict) -> list[str]:
    """The table of :func:`phase_memory` per panel, and each phase's growth per series (the slope between
    the smallest and the largest panel): what grows with the number of series, and in which phase."""
    cells = sorted((int(k.split("/")[1]), phase_memory(r)) for k, r in results.items()
                   if k.startswith("panel/") and k.endswith("/pyanode") and "error" not in r
                   and phase_memory(r) is not None)
    if not cells:
        return []
    title = "pyanode's RSS above the input at the end of each phase, MB (in brackets: its peak so far)"
    lines = ["", title, "", "| panel | " + " | ".join(PHASES) + " |", "|---|" + "---:|" * len(PHASES)]
    for n, m in cells:
        lines.append(f"| {n:,} | " + " | ".join(f"{m[p][0]:.0f} ({m[p][1]:.0f})" for p in PHASES) + " |")
    (n0, m0), (n1, m1) = cells[0], cells[-1]
    if n1 > n0:
        slope = {p: tuple((m1[p][i] - m0[p][i]) * 1024 / (n1 - n0) for i in (0, 1)) for p in PHASES}
        grown = " | ".join(f"{slope[p][0]:.1f} ({slope[p][1]:.1f})" for p in PHASES)
        lines.append(f"| KB per series | {grown} |")
    return lines


def tables(results: dict) -> str:
    lines = ["| panel | method | fit s | predict s | total s | series/s | peak RSS MB (main) | "
             "RSS MB with input | peak RSS MB (method) | peak RSS above input MB | peak PSS MB (tree) | "
             "mean MASE | median MASE |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = [k for k in results if not k.startswith("devices/")]
    keys.sort(key=lambda k: (k.split("/")[0] != "panel", int(k.split("/")[1]) if k.startswith("panel") else 0,
                             METHODS.index(k.split("/")[-1])))
    for k in keys:
        r = results[k]
        name = f"{int(k.split('/')[1]):,} series" if k.startswith("panel") else "stocks (5)"
        if "error" in r:
            lines.append(f"| {name} | {k.split('/')[-1]} | {r['error']} |")
            continue
        lines.append(f"| {name} | {k.split('/')[-1]} | {_fmt(r['fit_s'])} | {_fmt(r['predict_s'])} | "
                     f"{_fmt(r['total_s'])} | {_fmt(r['series_per_s'])} | {_fmt(r['rss_self_mb'], '.0f')} | "
                     f"{_fmt(r.get('rss_input_mb'), '.0f')} | {_fmt(r.get('rss_method_mb'), '.0f')} | "
                     f"{_fmt(above_input(r), '.0f')} | "
                     f"{_fmt(r['tree_pss_peak_mb'], '.0f')} | {_fmt(r['mase_mean'], '.3f')} | "
                     f"{_fmt(r['mase_median'], '.3f')} |")
    slopes = [(m, per_series_kb(results, m)) for m in METHODS]
    shown = [f"{m} {kb:.1f}" for m, kb in slopes if kb is not None]
    if shown:
        lines += ["", "Peak RSS above input, KB per series (slope between the smallest and largest panel): "
                  + ", ".join(shown)]
    pya = [k for k in keys if k.endswith("/pyanode") and "error" not in results[k]]
    if pya:
        lines += ["", "| panel | prepare s | train s (steps s, first step s) | rest of fit s | predict s | "
                  "iterations |", "|---|---|---|---|---|---|"]
        for k in pya:
            r = results[k]
            rest = r["fit_s"] - (r["prepare_s"] or 0) - (r["train_s"] or 0)
            name = k.split("/")[1] if k.startswith("panel") else "stocks"
            lines.append(f"| {name} | {_fmt(r['prepare_s'])} | "
                         f"{_fmt(r['train_s'])} ({_fmt(r['step_s_total'])}, {_fmt(r['first_step_s'])}) | "
                         f"{_fmt(rest)} | {_fmt(r['predict_s'])} | {r['iterations_run']} |")
    lines += phase_memory_table(results)
    dev = sorted((k for k in results if k.startswith("devices/")),
                 key=lambda k: [int(x) for x in k.split("/")[1:]])
    if dev:
        lines += ["", "| series | devices | s per iteration (after the first) | speed-up | "
                  "first iteration s | mean NFE forward | fit s |", "|---|---|---|---|---|---|---|"]
        base = {k.split("/")[1]: results[k]["step_s_per_iteration"] for k in dev
                if k.endswith("/1") and "error" not in results[k]}
        for k in dev:
            r, (_, n, d) = results[k], k.split("/")
            if "error" in r:
                lines.append(f"| {n} | {d} | {r['error']} |")
                continue
            speed = base[n] / r["step_s_per_iteration"] if n in base else None
            lines.append(f"| {n} | {d} | {r['step_s_per_iteration']:.4f} | {_fmt(speed, '.2f')} | "
                         f"{r['first_step_s']:.1f} | {r['nfe_forward_mean']:.1f} | {r['fit_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    ap.add_argument("--cell", help=argparse.SUPPRESS)
    ap.add_argument("--series", type=ints, default=[1000, 10000], help="panel sizes (comma-separated)")
    ap.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--devices", type=ints, default=[1, 2, 4])
    ap.add_argument("--device-series", type=int, default=1000)
    ap.add_argument("--xla-flags", default="", help="more XLA_FLAGS for the device-scaling cells")
    ap.add_argument("--no-stocks", action="store_true")
    ap.add_argument("--no-devices", action="store_true")
    ap.add_argument("--rerun", type=lambda s: s.split(","), default=[])
    ap.add_argument("--cache", type=Path, default=RESULTS)
    ap.add_argument("--timeout", type=float, default=5400.0, help="seconds per cell")
    a = ap.parse_args()
    if set(a.methods) - set(METHODS):
        ap.error(f"--methods: choose from {', '.join(METHODS)}")
    if a.cell:
        print("RESULT " + json.dumps(run_cell(json.loads(a.cell))), flush=True)
        return
    results = json.loads(a.cache.read_text()) if a.cache.exists() else {}
    for key, cell, env in _cells(a):
        if key in results and "error" not in results[key] and not _wanted(key, a.rerun):
            print(f"{key}: cached", flush=True)
            continue
        print(f"{key}: running", flush=True)
        results[key] = launch(cell, a.timeout, env)
        r = results[key]
        done = (f"{r['total_s']:.1f} s, MASE {r['mase_mean']:.3f}, PSS {r['tree_pss_peak_mb']:.0f} MB"
                if "error" not in r else r["error"] + "\n" + r.get("stderr_tail", ""))
        print(f"{key}: {done}", flush=True)
        a.cache.parent.mkdir(parents=True, exist_ok=True)
        a.cache.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(tables(results))


if __name__ == "__main__":
    main()
