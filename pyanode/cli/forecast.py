"""``pyanode forecast``: fit an augmented neural ODE to a CSV time series and forecast it.

Outputs (each written atomically; an existing file is refused unless ``--force``):

* ``--out`` (default ``forecast.csv``): the forecast, indexed by date, same columns and units as the input;
* ``--plot`` (default ``forecast.png``): history, forecast and truth per column;
* ``--metrics`` (default ``metrics.json``, only with ``--test``): per column, ``mae`` and ``rmse`` of the
  ``model`` and of the baselines ``persistence``, ``seasonal_naive`` and ``mean``;
* ``--save`` (no default): the fitted model, for :func:`pyanode.load`.

Pass ``--plot ''`` (an empty name) to skip the figure.

With ``--id COLUMN`` the file is a long-format panel (one row per series and date): one shared model is
fitted to every series (:mod:`pyanode.forecast.panel`); the forecast CSV is long too (``id, date,
columns...``), ``metrics.json`` holds ``overall`` (the mean over series), ``series`` (each one's scores),
``skipped`` and ``not_scored``, and the figure shows the best, median and worst series.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from pyanode._io import atomic_path
from pyanode.cli import app, fail
from pyanode.errors import PyanodeError


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename it into place."""
    with atomic_path(path) as tmp:
        write(tmp)


def _outputs(paths: list[Path | None], force: bool) -> None:
    for p in paths:
        if p is None:
            continue
        if p.is_dir():
            raise PyanodeError(f"{p} is a directory; give a file name")
        if p.exists() and not force:
            raise PyanodeError(f"{p} exists; pass --force to overwrite it")
        if not p.parent.exists():
            raise PyanodeError(f"folder {p.parent} does not exist (for {p})")


def _console(quiet: bool) -> Any:
    """Where the command prints: in a terminal, long lines wrap at words; piped or redirected, each line
    stays whole (as a program reading it expects)."""
    from rich.console import Console

    console = Console(quiet=quiet, highlight=False)
    console.soft_wrap = not console.is_terminal
    return console


def _check_figure_format(path: Path) -> None:
    """A figure's file type is its suffix (none: PNG); one matplotlib cannot write fails before the fit."""
    from matplotlib.backend_bases import FigureCanvasBase

    kind = path.suffix.lstrip(".").lower()
    known = FigureCanvasBase.get_supported_filetypes()
    if kind and kind not in known:
        raise PyanodeError(f"--plot {path}: cannot draw a figure as .{kind}; give a name ending in "
                           f".png, .svg or .pdf (or one of {', '.join('.' + k for k in sorted(known))})")


def _distinct(outputs: list[tuple[str, Path | None]], inputs: tuple) -> None:
    """No two outputs in one file, and no output over an input file (which --force must not overwrite)."""
    read = {Path(given).resolve() for given in inputs if given is not None and Path(given).exists()}
    seen: dict[Path, str] = {}
    for option, p in outputs:
        if p is None:
            continue
        key = p.resolve()
        if key in seen:
            raise PyanodeError(f"{option} and {seen[key]} are the same file ({p}); give each its own name")
        if key in read:
            raise PyanodeError(f"{option} {p} is an input file; give the output another name")
        seen[key] = option


@app.command("forecast")
def forecast(
    train: Path | None = typer.Argument(None, help="Training CSV: a date column and numeric columns."),
    example: str | None = typer.Option(
        None, "--example", help="Run on a packaged data set instead of TRAIN: delhi."
    ),
    test: Path | None = typer.Option(None, "--test", help="Test CSV: forecast its dates and score them."),
    horizon: int | None = typer.Option(
        None, "--horizon", help="Steps to forecast (default: as far as the fit judges forecasts, M4's "
                                "horizon for the data's frequency: 48 hours, 14 days, 13 weeks, 18 months, "
                                "8 quarters, 6 years; a quarter of a year for daily or finer data spanning "
                                "two years)."),
    date_column: str | None = typer.Option(None, "--date-column", help="Name of the date column."),
    columns: str | None = typer.Option(None, "--columns", help="Columns to model, comma-separated."),
    augment: int = typer.Option(2, "--augment", help="Extra (augmented) state dimensions."),
    solver: str = typer.Option("tsit5", "--solver", help="Adaptive ODE solver: tsit5, dopri5, ..."),
    rtol: float = typer.Option(1e-3, "--rtol", help="Relative tolerance."),
    atol: float = typer.Option(1e-4, "--atol", help="Absolute tolerance."),
    sensealg: str = typer.Option(
        "checkpoint", "--sensealg", help="Gradient: checkpoint (default), interpolating or backsolve."
    ),
    iterations: int | None = typer.Option(None, "--iterations", help="Training iterations (default 400)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same forecast)."),
    out: Path = typer.Option(Path("forecast.csv"), "--out", help="Forecast CSV to write."),
    plot: str = typer.Option("forecast.png", "--plot", help="Figure to write ('' for none)."),
    metrics: Path | None = typer.Option(None, "--metrics", help="Metrics JSON (with --test)."),
    save: Path | None = typer.Option(None, "--save", help="Save the fitted model here."),
    resample: str | None = typer.Option(None, "--resample", help="Average per pandas period, e.g. MS."),
    dedupe: str | None = typer.Option(None, "--dedupe", help="Merge same-date rows: mean/first/last."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or summary."),
    dayfirst: bool = typer.Option(
        False, "--dayfirst", help="Read 02/01/2020 as 2 January (default: decided by the values)."),
    monthfirst: bool = typer.Option(
        False, "--monthfirst", help="Read 02/01/2020 as February 1 (default: decided by the values)."),
    date_format: str | None = typer.Option(
        None, "--date-format", help="strftime format of the dates, e.g. '%d.%m.%Y %H:%M'."),
    sep: str | None = typer.Option(None, "--sep", help="Delimiter (default: found among , ; tab |)."),
    decimal: str | None = typer.Option(None, "--decimal", help="Decimal mark, . or , (default: found)."),
    thousands: str | None = typer.Option(
        None, "--thousands", help="Thousands separator (default: found; '' for none)."),
    level: list[float] | None = typer.Option(
        None, "--level", help="Intervals in percent: --level 80 95 (columns c-lo-80, c-hi-80, ...)."),
    quantiles: list[float] | None = typer.Option(
        None, "--quantiles", help="Quantile forecasts: --quantiles 0.1 0.5 0.9 (columns c-q0.1, ...)."),
    id_column: str | None = typer.Option(
        None, "--id", help="Long-format panel: the column naming each row's series (one shared model)."),
    skip_bad_series: bool = typer.Option(
        False, "--skip-bad-series", help="With --id: leave out series that cannot be fitted, and say why."),
    devices: int | None = typer.Option(
        None, "--devices", help="With --id: train data-parallel over this many devices."),
    per_series: bool = typer.Option(
        False, "--per-series", help="With --id: a model per series instead of one shared model."),
) -> None:
    """Fit an augmented neural ODE forecaster to TRAIN and forecast (and score) the future."""
    try:
        # How to read the files (issue 14): passed to load_frame and fit as they are.
        if dayfirst and monthfirst:
            raise PyanodeError("give --dayfirst or --monthfirst, not both")
        read = {"dayfirst": True if dayfirst else False if monthfirst else None, "date_format": date_format,
                "decimal": decimal, "thousands": thousands,
                "sep": {"tab": "\t", "\\t": "\t"}.get(sep, sep) if sep is not None else None}
        intervals = _interval_options(level, quantiles)  # issue 12, checked before any work
        if example is not None:
            _run_example(example, train, test, horizon, date_column, columns, augment, solver, rtol, atol,
                         sensealg, iterations, seed, out, plot, metrics, save, resample, dedupe, force, quiet,
                         read, intervals=intervals)
            return
        if train is None:
            raise PyanodeError("give a training CSV file (pyanode forecast FILE) or --example delhi")
        if id_column is None and (skip_bad_series or devices is not None or per_series):
            raise PyanodeError("--skip-bad-series, --per-series and --devices are for panels: give "
                               "--id COLUMN too")
        if per_series and devices is not None:
            raise PyanodeError("--devices shards the shared model's training; drop it with --per-series")
        if id_column is not None:
            _run_panel(train, test, horizon, id_column, (skip_bad_series, per_series), devices, date_column,
                       columns, augment, solver, rtol, atol, sensealg, iterations, seed, out, plot, metrics,
                       save, resample, dedupe, force, quiet, read, intervals)
            return
        _run(train, test, horizon, date_column, columns, augment, solver, rtol, atol, sensealg, iterations,
             seed, out, plot, metrics, save, resample, dedupe, force, quiet, read, intervals=intervals)
    except PyanodeError as err:
        fail(str(err))


def _interval_options(level: list[float] | None, quantiles: list[float] | None) -> dict:
    """``--level`` and ``--quantiles`` checked: ``{"level": [...] or None, "quantiles": [...] or None}``."""
    from pyanode.forecast.intervals import check_levels, check_quantiles

    return {"level": check_levels(level) if level else None,
            "quantiles": check_quantiles(quantiles) if quantiles else None}


EXAMPLES = ("delhi",)


def _run_example(example, train, test, horizon, *options, **keywords) -> None:
    """The main job on a packaged data set: fit its training file, forecast and score its test file."""
    from pyanode.datasets import delhi_climate_files

    if example not in EXAMPLES:
        raise PyanodeError(f"unknown example {example!r}; choose one of: {', '.join(EXAMPLES)}")
    if train is not None:
        raise PyanodeError("give a training file or --example, not both")
    with delhi_climate_files() as (train_csv, test_csv):
        if test is None and horizon is None:
            test = test_csv
        _run(train_csv, test, horizon, *options, **keywords)


def _scores(title: str, table: Any, columns: list[str]) -> Any:
    """A rich table: one row per metric (MAE, RMSE, MASE) and method, one column per data column, so
    that each cell holds one number and four columns fit an 80-character terminal."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric")
    t.add_column("method")
    for c in columns:
        t.add_column(c, justify="right")
    for metric in ("mae", "rmse", "mase"):
        # One number of decimals per cell group (a metric of a column), so that the methods line up.
        decimals = {c: _decimals([float(v) for v in table[(c, metric)]]) for c in columns}
        for k, name in enumerate(table.index):
            t.add_row(metric.upper() if k == 0 else "", name,
                      *[f"{table.loc[name, (c, metric)]:.{decimals[c]}f}" for c in columns],
                      end_section=k == len(table.index) - 1)
    return t


def _decimals(values: list[float]) -> int:
    """Decimals that give the smallest of ``values`` (the best score, usually) three significant digits
    (at least 0, at most 6)."""
    low = min((abs(v) for v in values if math.isfinite(v) and v != 0), default=0.0)
    return 2 if low == 0 else min(6, max(0, 2 - math.floor(math.log10(low))))


def training_line(fc: Any) -> str:
    """One line on the training: iterations, seconds and why it stopped (or why nothing was trained)."""
    if fc.history.empty:
        return f"training: none; {fc.info['stopped']}"
    return (f"training: {len(fc.history)} iterations in {fc.history['seconds'].iloc[-1]:.1f} s; "
            f"{fc.info['stopped']}; best iteration {fc.info['best_iteration']}")


def _checked(test, horizon, iterations, augment, plot, metrics, out, save, force, columns, inputs=()):
    """The options every run checks before any work: returns (plot path, metrics path, columns)."""
    if horizon is not None and horizon < 1:
        raise PyanodeError(f"--horizon must be a positive number of steps, got {horizon}")
    if horizon is not None and test is not None:
        raise PyanodeError("give --test (forecast its dates) or --horizon, not both")
    if iterations is not None and iterations < 1:
        raise PyanodeError(f"--iterations must be positive, got {iterations}")
    if augment < 0:
        raise PyanodeError(f"--augment must be 0 or more, got {augment}")
    plot_path = Path(plot) if plot else None
    if metrics is None and test is not None:
        metrics = Path("metrics.json")
    if metrics is not None and test is None:
        raise PyanodeError("--metrics needs --test (the truth to score against)")
    if plot_path is not None:
        _check_figure_format(plot_path)
    _outputs([out, plot_path, metrics, save], force)
    _distinct([("--out", out), ("--plot", plot_path), ("--metrics", metrics), ("--save", save)], inputs)
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    return plot_path, metrics, cols


def _run(train, test, horizon, date_column, columns, augment, solver, rtol, atol, sensealg, iterations,
         seed, out, plot, metrics, save, resample, dedupe, force, quiet, read=None, intervals=None) -> None:

    plot_path, metrics, cols = _checked(test, horizon, iterations, augment, plot, metrics, out, save, force,
                                        columns, inputs=(train, test))

    from pyanode.forecast import fit
    from pyanode.forecast.data import format_when, load_frame

    # Read both files first, so that bad data fail at once rather than after fitting.
    read = read or {}
    train_df, _ = load_frame(train, date_column=date_column, columns=cols, dedupe=dedupe, resample=resample,
                             **read)
    # The test frame stays at its own resolution: the forecaster masks its outliers, then resamples it.
    if test is not None:
        test_df, _ = load_frame(test, date_column=date_column, dedupe=dedupe, **read)
        missing = [c for c in train_df.columns if c not in test_df.columns]
        if missing:
            raise PyanodeError(f"{test}: lacks the training column(s) {', '.join(map(repr, missing))} "
                               f"(test columns: {', '.join(test_df.columns)})")
    out_console = _console(quiet)
    # The structure's backtest judges forecasts as far ahead as this run will forecast.
    ahead = horizon or (int((test_df.index > train_df.index[-1]).sum()) if test is not None else None) or None
    fc = fit(train, augment=augment, columns=cols, date_column=date_column, solver=solver, rtol=rtol,
               atol=atol, sensealg=sensealg, iterations=iterations, seed=seed, dedupe=dedupe,
               resample=resample, progress=not quiet, horizon=ahead, **read)
    for line in fc.report.lines():
        out_console.print(line, markup=False)
    out_console.print(training_line(fc), markup=False)

    if test is not None:
        bands = intervals or {"level": None, "quantiles": None}
        table = fc.evaluate(test_df, level=bands["level"])
        pred = fc.predict(dates=fc._test_frame(test_df)[0].index, **bands)
        for line in fc.test_report.lines()[1:]:
            out_console.print("test " + line, markup=False)
        title = f"test MAE / RMSE / MASE over {len(pred)} dates after {format_when(fc.end)}"
        out_console.print(_scores(title, table, fc.columns))
        payload = {c: {name: {m: float(table.loc[name, (c, m)]) for m in ("mae", "rmse", "mase")}
                       for name in table.index} for c in fc.columns}
        extra = [m for m in table.columns.get_level_values("metric").unique()
                 if m not in ("mae", "rmse", "mase")]
        for c in fc.columns:  # interval scores (issue 12): the model's only
            payload[c]["model"].update({m: float(table.loc["model", (c, m)]) for m in extra})
            if extra:
                out_console.print(f"test intervals {c}: " + ", ".join(
                    f"{m} {table.loc['model', (c, m)]:.3g}" for m in extra), markup=False)
        _atomic(metrics, lambda p: p.write_text(json.dumps(payload, indent=2) + "\n"))
    else:
        pred = fc.predict(horizon=horizon or fc.horizon, **(intervals or {}))

    _atomic(out, lambda p: pred.to_csv(p, float_format="%.6g"))
    fig = None
    if plot_path is not None:
        fig = fc.plot(test_df if test is not None else None, horizon=None if test is not None else len(pred),
                      level=(intervals or {}).get("level"))
    _write_rest(out_console, fc, out, plot_path, fig, metrics, save)


def _write_rest(console: Any, fc: Any, out: Path, plot_path: Path | None, fig: Any, metrics: Path | None,
                save: Path | None) -> None:
    """Write the figure and the model (each atomically) and say what was written."""
    written = [out]
    if plot_path is not None:
        _atomic(plot_path, lambda p: fig.savefig(p, dpi=110, format=plot_path.suffix.lstrip(".") or "png"))
        written.append(plot_path)
    if metrics is not None:
        written.append(metrics)
    if save is not None:
        fc.save(save, force=True)  # existence was checked before fitting; save() itself writes atomically
        written.append(save)
    console.print("wrote " + ", ".join(map(str, written)), markup=False)
    if str(fc.info.get("stopped", "")).startswith("interrupted"):
        # (as `pyanode experiment` does: a script can tell a stopped run from a finished one)
        typer.echo("interrupted: the model trained so far made the forecast; its outputs were written",
                   err=True)
        raise typer.Exit(130)


def _run_panel(train, test, horizon, id_column, panel_options, devices, date_column, columns, augment,
               solver, rtol, atol, sensealg, iterations, seed, out, plot, metrics, save, resample, dedupe,
               force, quiet, read, intervals) -> None:
    """``--id``: a long-format panel, one shared model (or one per series); outputs in long format too."""

    from pyanode.forecast import fit
    from pyanode.forecast.data import load_panel

    skip_bad_series, per_series = panel_options

    plot_path, metrics, cols = _checked(test, horizon, iterations, augment, plot, metrics, out, save, force,
                                        columns, inputs=(train, test))
    if devices is not None and devices < 1:
        raise PyanodeError(f"--devices must be a positive number, got {devices}")
    ahead = horizon
    if test is not None:  # read first, so that a bad test file fails before fitting
        test_series, _ = load_panel(test, id_column, date_column=date_column, dedupe=dedupe, **read)
        ahead = max(len(df) for df, _ in test_series.values()) if test_series else None
    out_console = _console(quiet)
    fc = fit(train, augment=augment, columns=cols, date_column=date_column, solver=solver, rtol=rtol,
             atol=atol, sensealg=sensealg, iterations=iterations, seed=seed, dedupe=dedupe, resample=resample,
             progress=not quiet, horizon=ahead, id_column=id_column, skip_bad_series=skip_bad_series,
             shared=not per_series, devices=devices, **read)
    for line in fc.report_lines():
        out_console.print(line, markup=False)
    out_console.print(training_line(fc), markup=False)
    bands = intervals or {"level": None, "quantiles": None}
    if test is not None:
        frames = fc.test_frames(test, date_column=date_column, dedupe=dedupe)
        for sid, why in fc.test_skipped.items():
            out_console.print(f"test: series {sid!r} not scored: {why}", markup=False)
        table = fc.evaluate(frames, level=bands["level"])
        overall = fc.summary(table)
        out_console.print(_scores(f"test MAE / RMSE / MASE, mean over {len(frames)} series", overall,
                                  fc.columns))
        mase = table.xs("model", level="method")
        naive = table.xs("seasonal_naive", level="method")
        for c in fc.columns:
            wins = int((mase[(c, "mase")] < naive[(c, "mase")]).sum())
            out_console.print(f"{c}: the model beats seasonal naive on {wins} of {len(frames)} series "
                              "(MASE)", markup=False)
        per_series = {
            sid: {c: {name: {m: float(table.loc[(sid, name), (c, m)]) for m in table[c].columns
                             if name == "model" or m in ("mae", "rmse", "mase")}
                      for name in overall.index} for c in fc.columns}
            for sid in frames}
        payload = {"overall": {c: {name: {m: float(overall.loc[name, (c, m)]) for m in overall[c].columns
                                          if name == "model" or m in ("mae", "rmse", "mase")}
                                   for name in overall.index} for c in fc.columns},
                   "series": per_series, "skipped": fc.skipped, "not_scored": fc.test_skipped}
        _atomic(metrics, lambda p: p.write_text(json.dumps(payload, indent=2) + "\n"))
        import pandas as pd

        dates = pd.concat([pd.DataFrame({id_column: sid,
                                         fc.date_column: fc.series[sid]._test_frame(f)[0].index})
                           for sid, f in frames.items()], ignore_index=True)
        pred = fc.predict(dates=dates, **bands)
    else:
        pred = fc.predict(horizon or fc.horizon, **bands)

    _atomic(out, lambda p: pred.to_csv(p, float_format="%.6g", index=False))
    fig = None
    if plot_path is not None:
        fig = fc.plot(frames if test is not None else None,
                      horizon=None if test is not None else horizon or fc.horizon, level=bands["level"])
    _write_rest(out_console, fc, out, plot_path, fig, metrics, save)
