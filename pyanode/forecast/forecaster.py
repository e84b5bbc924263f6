"""Step 5 of the forecaster: :func:`fit`, and the fitted :class:`Forecaster` it returns, which predicts,
evaluates, plots and saves.

:func:`fit` runs the steps before this one in order: read and clean (:mod:`~pyanode.forecast.data`), lay
the series on its grid and choose the seasonal periods (:mod:`~pyanode.forecast.grid`), build the model
(:mod:`~pyanode.forecast.model`), train it (:mod:`~pyanode.forecast.fitting`).

A forecast integrates the model's ODE from the last training date: the encoder reads the lag window that
ends there (:mod:`pyanode.forecast.grid`), and :func:`pyanode.forecast.model.rollout` solves to the
requested dates in one compiled program (the dates are arguments: a new horizon of the same length reuses
it). :func:`load` reads a model file (:mod:`pyanode.forecast.io`) back into a Forecaster.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from pyanode.cache import enable_compilation_cache
from pyanode.errors import PyanodeError
from pyanode.forecast.baselines import baseline_forecasts, metrics
from pyanode.forecast.data import DataError, DataReport, clean, load_frame, resample_frame
from pyanode.forecast.fitting import fit_model
from pyanode.forecast.grid import (
    Scaler,
    days_since_epoch,
    grid_arrays,
    grid_positions,
    lag_windows,
    seasonal_periods,
)
from pyanode.forecast.io import read_model_file, write_model_file
from pyanode.forecast.model import Config, ForecastModel, check_options, ftype, rollout

__all__ = ["Forecaster", "fit", "load"]

PERIODS = {"none": (), "yearly": (365.25,), "weekly": (7.0,), "yearly+weekly": (365.25, 7.0)}


class Forecaster:
    """A fitted forecaster: ``predict``, ``evaluate``, ``plot``, ``save``; ``report`` and ``history``.

    Made by :func:`fit` or :func:`load`; holds the model, the per-column scaling, the cleaned training
    data (the forecast starts from its last observations) and what was done to the data.
    """

    def __init__(self, model: ForecastModel, scaler: Scaler, train: pd.DataFrame, report: DataReport,
                 history: pd.DataFrame, info: dict, center: pd.Series, spread: pd.Series,
                 outlier_threshold: float, resample: str | None = None):
        self.model = model
        self.scaler = scaler
        self.train = train
        self.report = report
        self.history = history
        self.info = info
        self._center, self._spread = center, spread
        self.outlier_threshold = outlier_threshold
        self.resample = resample

    @property
    def config(self) -> Config:
        return self.model.config

    @property
    def columns(self) -> list[str]:
        return list(self.config.columns)

    @property
    def end(self) -> pd.Timestamp:
        """The last training date: forecasts start here."""
        return self.train.index[-1]

    def __repr__(self) -> str:
        c = self.config
        return (f"Forecaster(columns={self.columns}, augment={c.augment}, periods_days={list(c.periods)}, "
                f"trained_until={self.end.date()}, iterations={len(self.history)})")

    def future_dates(self, horizon: int) -> pd.DatetimeIndex:
        """The next ``horizon`` dates at the data's frequency after the last training date."""
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise PyanodeError(f"horizon must be a positive integer, got {horizon!r}")
        freq = None
        if len(self.train) >= 3:
            with pd.option_context("future.infer_freq_returns_offset", True):
                freq = pd.infer_freq(self.train.index[-min(len(self.train), 50):])
        if freq is not None:
            return pd.date_range(self.end, periods=horizon + 1, freq=freq)[1:]
        if self.config.step_days == 1.0 and (self.train.index.day_of_week < 5).all():
            # Business-day data (weekends never observed): forecast business days.
            return pd.bdate_range(self.end + pd.Timedelta(days=1), periods=horizon)
        months = {365.25 / 12: 1, 365.25 / 4: 3, 365.25: 12}.get(self.config.step_days)
        if months is not None:
            return pd.DatetimeIndex([self.end + pd.DateOffset(months=months * (k + 1))
                                     for k in range(horizon)])
        step = pd.Timedelta(days=self.config.step_days)
        return pd.DatetimeIndex([self.end + step * (k + 1) for k in range(horizon)])

    def predict(self, horizon: int | None = None, *, dates: Sequence | pd.DatetimeIndex | None = None
                ) -> pd.DataFrame:
        """Forecast ``horizon`` steps ahead, or at the given ``dates`` (on or after the last training date).

        Returns a DataFrame indexed by the dates, with the training columns in their original units.
        """
        if (horizon is None) == (dates is None):
            raise PyanodeError("give either horizon=N or dates=[...] to predict")
        if dates is None:
            idx = self.future_dates(horizon)
        else:
            try:
                idx = pd.DatetimeIndex(pd.to_datetime(pd.Index(dates), format="mixed"))
            except (ValueError, TypeError) as err:
                raise PyanodeError(f"dates must be parseable dates: {str(err).splitlines()[0]}") from None
            if len(idx) == 0:
                raise PyanodeError("dates is empty")
            if (idx < self.end).any():
                first = idx[idx < self.end][0]
                raise PyanodeError(
                    f"cannot forecast {first.date()}: it is before the end of the training data "
                    f"({self.end.date()}); forecasts start from the last training date")
        c = self.config
        uniq = idx.unique().sort_values()
        tau = np.asarray((uniq - self.end) / pd.Timedelta(days=1), dtype=np.float64) / c.unit_days
        taus = np.concatenate([[0.0], tau[tau > 0]])
        arrays = grid_arrays(self.train, self.scaler, self._positions(), c.epoch_days, c.step_days)
        lags = lag_windows(arrays.filled, c.lookback)[-1:]
        pred = _forecast(self.model, jnp.asarray(lags, ftype()), jnp.asarray(arrays.days[-1:], ftype()),
                         jnp.asarray(taus, ftype()))
        z = np.asarray(pred[0], dtype=np.float64)
        if tau[0] > 0:  # the origin (tau = 0) was only the start of the solve
            z = z[1:]
        values = self.scaler.inverse(z)
        out = pd.DataFrame(values, index=uniq, columns=self.columns).reindex(idx)
        out.index.name = self.train.index.name or "date"
        return out

    def _positions(self) -> np.ndarray:
        days = days_since_epoch(self.train.index)
        return np.rint((days - self.config.epoch_days) / self.config.step_days).astype(np.int64)

    def _test_frame(self, test: pd.DataFrame | str | Path, date_column: str | None = None,
                    dedupe: str | None = None) -> tuple[pd.DataFrame, DataReport]:
        df, rep = load_frame(test, date_column=date_column, dedupe=dedupe)
        missing = [col for col in self.columns if col not in df.columns]
        if missing:
            raise DataError(
                f"the test data lack the training column(s) {', '.join(map(repr, missing))} "
                f"(test columns: {', '.join(df.columns)})")
        df = df[self.columns]
        df, rep, _, _ = clean(df, rep, threshold=self.outlier_threshold, center=self._center,
                              spread=self._spread)
        if self.resample is not None:
            df = resample_frame(df, self.resample, rep)
        df = df[df.index > self.end]
        if len(df) == 0:
            raise DataError(
                f"the test data have no dates after the end of the training data ({self.end.date()})")
        return df, rep

    def evaluate(self, test: pd.DataFrame | str | Path, *, date_column: str | None = None,
                 dedupe: str | None = None) -> pd.DataFrame:
        """MAE and RMSE per column of the model and the baselines on the test dates after training.

        The test data are cleaned like the training data (outliers by the training median/MAD are
        masked, see :attr:`test_report`); dates on or before the last training date are skipped.
        Returns a frame with rows ``model``, ``persistence``, ``seasonal_naive``, ``mean`` and columns
        ``(column, metric)``.
        """
        truth, rep = self._test_frame(test, date_column, dedupe)
        self.test_report = rep
        preds = {"model": self.predict(dates=truth.index), **baseline_forecasts(self.train, truth.index)}
        table = {name: metrics(p, truth) for name, p in preds.items()}
        frame = pd.DataFrame({
            (col, m): {name: table[name][col][m] for name in table}
            for col in self.columns for m in ("mae", "rmse")
        })
        frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["column", "metric"])
        return frame

    def plot(self, test: pd.DataFrame | str | Path | None = None, *, horizon: int | None = None,
             history_steps: int | None = None):
        """History, forecast and (with ``test``) truth per column; returns a matplotlib Figure."""
        from pyanode.plots.forecast import plot_forecast

        truth = None
        if test is not None:
            truth, _ = self._test_frame(test)
            pred = self.predict(dates=truth.index)
        else:
            pred = self.predict(horizon=horizon or 30)
        return plot_forecast(self.train, pred, truth, history_steps=history_steps, report=self.report)

    # -- files -------------------------------------------------------------------------------

    def save(self, path: str | Path, *, force: bool = True) -> Path:
        """Write the forecaster to one file (a zip of JSON and ``.npy`` arrays; no pickles).

        The file is written atomically (a temporary file in the same folder, then renamed).
        """
        path = Path(path)
        if path.exists() and not force:
            raise PyanodeError(f"{path} exists; pass --force (force=True) to overwrite it")
        meta = {
            "report": self.report.to_dict(), "info": self.info, "outlier_threshold": self.outlier_threshold,
            "index_name": self.train.index.name, "index_unit": self.train.index.unit,
            "resample": self.resample, "history_columns": list(self.history.columns),
        }
        arrays = {
            "scaler_mean": self.scaler.mean, "scaler_std": self.scaler.std,
            "center": self._center.to_numpy(np.float64), "spread": self._spread.to_numpy(np.float64),
            "train_values": self.train.to_numpy(np.float64),
            "train_dates": self.train.index.to_numpy().astype("datetime64[ns]").astype(np.int64),
            "history": self.history.to_numpy(np.float64),
            "history_iterations": self.history.index.to_numpy(np.int64),
        }
        return write_model_file(path, meta, self.model, arrays)


@eqx.filter_jit
def _forecast(model: ForecastModel, lags: jax.Array, days: jax.Array, taus: jax.Array) -> jax.Array:
    return rollout(model, lags, days, taus, max_steps=65536)[0]


def load(path: str | Path) -> Forecaster:
    """Read a forecaster written by :meth:`Forecaster.save`. Never runs code from the file."""
    meta, model, arr = read_model_file(Path(path))
    cols = list(model.config.columns)
    idx = pd.DatetimeIndex(arr["train_dates"].astype("datetime64[ns]"), name=meta.get("index_name"))
    idx = idx.as_unit(meta.get("index_unit", "ns"))
    train = pd.DataFrame(arr["train_values"], index=idx, columns=cols)
    history_columns = meta.get("history_columns", ["loss", "nfe_forward", "nfe_backward", "seconds"])
    history = pd.DataFrame(arr["history"], columns=history_columns,
                           index=pd.Index(arr.get("history_iterations", np.arange(len(arr["history"]))),
                                          name="iteration"))
    for k in ("nfe_forward", "nfe_backward"):
        history[k] = history[k].astype(np.int64)
    return Forecaster(
        model, Scaler(arr["scaler_mean"], arr["scaler_std"]), train, DataReport.from_dict(meta["report"]),
        history, meta["info"], pd.Series(arr["center"], index=cols), pd.Series(arr["spread"], index=cols),
        meta["outlier_threshold"], meta.get("resample"),
    )


def fit(
    data: pd.DataFrame | str | Path,
    augment: int = 2,
    *,
    columns: Sequence[str] | None = None,
    date_column: str | None = None,
    hidden: int = 32,
    depth: int = 2,
    activation: str = "tanh",
    solver: str = "tsit5",
    rtol: float = 1e-3,
    atol: float = 1e-4,
    sensealg: str = "checkpoint",
    seasonality: str = "auto",
    iterations: int | None = None,
    lr: float = 1e-2,
    batch: int = 32,
    window: int | None = None,
    lookback: int | None = None,
    validation: int | None = None,
    half_life: float | None = None,
    patience: int = 10,
    dedupe: str | None = None,
    resample: str | None = None,
    outlier_threshold: float = 6.0,
    seed: int = 0,
    progress: bool = True,
    console: Any = None,
) -> Forecaster:
    """Fit an augmented neural ODE forecaster to a time series (the model: :mod:`pyanode.forecast.model`).

    Args:
        data: a DataFrame (DatetimeIndex or a date column) or a CSV path.
        augment: extra state dimensions beyond the n modelled columns (0: a plain neural ODE).
        columns: the columns to model (default: all numeric ones; others are reported and ignored).
        date_column: the date column's name (default: found automatically).
        hidden, depth, activation: the vector field MLP's width, number of hidden layers, nonlinearity.
        solver, rtol, atol, sensealg: passed to :func:`pyanode.solve` (adaptive solvers only).
        seasonality: ``auto`` (yearly and/or weekly chosen from the data), ``none`` (autonomous model),
            ``yearly``, ``weekly`` or ``yearly+weekly``.
        iterations: optimiser steps (default 400).
        lr, batch: AdamW learning rate (warm-up then cosine decay) and windows per step.
        window: training window in data steps (default: 128, at most half the data).
        lookback: steps the encoder reads before each forecast origin (default: about 90 days, at
            most an eighth of the data).
        validation: steps held out at the end for early stopping (default: about 4% of the data,
            at most ``window``; 0 disables early stopping).
        half_life: recency weighting of the training windows, in steps: a window's chance of being
            drawn halves every ``half_life`` steps back (default: the larger of ``window`` and an
            eighth of the data; 0 for uniform).
        patience: validation checks (every ~10 iterations) without improvement before stopping.
        dedupe, resample: see :func:`pyanode.forecast.data.load_frame`.
        outlier_threshold: robust z-score above which a value is masked as an outlier.
        seed: seeds the initial parameters and the choice of windows (same seed, same forecast).
        progress: show a progress bar (stderr) with loss, validation loss, NFE and ETA.

    Returns:
        A fitted :class:`Forecaster`.
    """
    check_options(augment, hidden, depth, solver, rtol, atol, sensealg, seasonality, iterations, activation)
    enable_compilation_cache()
    df, report = load_frame(data, date_column=date_column, columns=list(columns) if columns else None,
                            dedupe=dedupe)
    # Outliers are judged at the data's own resolution, before any averaging would smear them.
    df, report, center, spread = clean(df, report, threshold=outlier_threshold)
    if resample is not None:
        df = resample_frame(df, resample, report)
    for col in df.columns:
        if df[col].notna().sum() < 2:
            raise DataError(f"column {col!r} has fewer than 2 usable values after masking outliers")
    if len(df) < 8:
        raise DataError(f"{len(df)} rows are too few to fit a forecaster; at least 8 dated rows are needed")
    step_days, pos, merged = grid_positions(df.index)
    if merged:
        report.notes.append(f"{merged} rows fell on the same {step_days:.4g}-day grid step as another row "
                            "and were averaged into it")
    T = int(pos[-1]) + 1
    periods = seasonal_periods(df.index, step_days, df) if seasonality == "auto" else PERIODS[seasonality]
    win = window if window is not None else min(128, max(2, T // 2))
    # About three months of history (90 daily steps, 13 weekly, 3 monthly), at most an eighth of the data.
    look = lookback if lookback is not None else max(1, min(round(90 / step_days) or 1, T // 8))
    if validation is None:
        validation = min(win, T // 24) if T >= 48 else 0
    if not 0 <= validation < T // 2:
        raise PyanodeError(
            f"validation must be between 0 and {T // 2 - 1} steps for these data, got {validation}")
    if half_life is None:
        half_life = max(win, T // 8)
    config = Config(
        columns=tuple(df.columns), augment=int(augment), hidden=hidden, depth=depth, activation=activation,
        solver=solver, rtol=rtol, atol=atol, sensealg=sensealg, periods=periods, lookback=look,
        window=win, batch=batch, patience=patience, half_life=float(half_life or 0.0),
        iterations=iterations if iterations is not None else 400, lr=lr, validation=validation, seed=seed,
        step_days=step_days, unit_days=365.25 if step_days >= 1 else 1.0,
        epoch_days=float(days_since_epoch(df.index[:1])[0]),
    )
    scaler = Scaler.fit(df)
    model = ForecastModel(config, jax.random.PRNGKey(seed))
    arrays = grid_arrays(df, scaler, pos, config.epoch_days, config.step_days)
    result = fit_model(model, arrays, progress=progress, console=console)
    if result.history.empty:  # nothing was trained: there is no model to forecast with
        if result.interrupted:
            raise KeyboardInterrupt
        raise PyanodeError(f"training failed at its first step ({result.stopped.split(';')[0]}); look for "
                           "extreme values in the data, or try a smaller lr or tighter rtol/atol")
    history = result.history.set_index("iteration")
    info = {"stopped": result.stopped, "best_iteration": result.best_iteration,
            "best_validation": result.best_validation}
    return Forecaster(result.model, scaler, df, report, history, info, center, spread, outlier_threshold,
                      resample)
