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

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import equinox as eqx
import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Tick

from pyanode.cache import enable_compilation_cache
from pyanode.errors import PyanodeError
from pyanode.forecast.baselines import baseline_forecasts, mase_scales, metrics
from pyanode.forecast.data import (
    DataError,
    DataReport,
    clean,
    format_when,
    load_frame,
    parse_dates,
    resample_frame,
    tz_from_name,
    tz_name,
)
from pyanode.forecast.fitting import (
    fit_model,
    outcome,
    padded_rollout_args,
    rollout_program,
    untrained,
)
from pyanode.forecast.grid import (
    SNAP,
    GridArrays,
    days_since_epoch,
    forward_filled,
    grid_positions,
    lag_windows,
)
from pyanode.forecast.intervals import (
    CRPS_QUANTILES,
    Calibration,
    calibrate,
    check_levels,
    check_quantiles,
    interval_metrics,
    with_intervals,
)
from pyanode.forecast.io import read_model_file, write_model_file
from pyanode.forecast.model import Config, ForecastModel, check_options, parse_seasonality
from pyanode.forecast.structure import (
    CALENDAR,
    CYCLE_P,
    RECENT_ROWS,
    TIE,
    Structure,
    choose_structure,
    period_name,
    persistent_ahead,
    second_order_ahead,
    second_order_words,
    state_period,
)

if TYPE_CHECKING:
    from pyanode.forecast.panel import PanelForecaster

__all__ = ["Forecaster", "fit", "load"]

class Forecaster:
    """A fitted forecaster: ``predict``, ``evaluate``, ``plot``, ``save``; ``report`` and ``history``.

    Made by :func:`fit` or :func:`load`; holds the model, each column's closed-form structure (trend,
    seasonal cycles, transform and scaling; :attr:`structure`), the cleaned training data (the forecast
    starts from its last observations) and what was done to the data.
    """

    def __init__(self, model: ForecastModel, structure: Structure, train: pd.DataFrame, report: DataReport,
                 history: pd.DataFrame, info: dict, center: pd.Series, spread: pd.Series,
                 outlier_threshold: float, resample: str | None = None,
                 calibration: Calibration | None = None):
        self.model = model
        self.structure = structure
        self.train = train
        self.report = report
        self.history = history
        self.info = info
        self._center, self._spread = center, spread
        self.outlier_threshold = outlier_threshold
        self.resample = resample
        # Prediction intervals (issue 12): split conformal calibration, pyanode.forecast.intervals.
        self.calibration = calibration

    @property
    def config(self) -> Config:
        return self.model.config

    @property
    def columns(self) -> list[str]:
        return list(self.config.columns)

    @property
    def horizon(self) -> int:
        """Steps ahead the fit judged its structure's forecasts (the ``horizon`` given to :func:`fit`, or its
        default: M4's horizon for the data's frequency, or a quarter of the longest cycle the data could
        show where that is longer); how far the command and :meth:`plot` forecast unless told."""
        return self.structure.columns[0].trusted

    @property
    def end(self) -> pd.Timestamp:
        """The last training date: forecasts start here."""
        return self.train.index[-1]

    def __repr__(self) -> str:
        c = self.config
        return (f"Forecaster(columns={self.columns}, augment={c.augment}, periods_days={list(c.periods)}, "
                f"trained_until={format_when(self.end)}, iterations={len(self.history)})")

    def structure_report(self) -> pd.DataFrame:
        """Each column's chosen structure and the backtest scores that chose it (MAE in the column's units
        over the last windows of the training data; the best few candidates, the chosen one first)."""
        rows = []
        for col, s in zip(self.columns, self.structure.columns, strict=True):
            for rank, (name, score) in enumerate(s.scores):
                rows.append({"column": col, "candidate": name, "backtest_mae": score, "chosen": rank == 0})
        return pd.DataFrame(rows, columns=["column", "candidate", "backtest_mae", "chosen"])

    def future_dates(self, horizon: int) -> pd.DatetimeIndex:
        """The next ``horizon`` dates at the data's frequency after the last training date.

        With a time zone, the dates are in the training data's zone; daily and longer steps follow the
        local calendar (midnight stays midnight across daylight saving changes), shorter ones the clock.
        """
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise PyanodeError(f"horizon must be a positive integer, got {horizon!r}")
        tz = self.train.index.tz
        wall = self.train.index.tz_localize(None) if tz is not None else self.train.index
        end = wall[-1]
        freq = None
        if len(self.train) >= 3:
            with _infer_freq_returns_offset():
                inferred = pd.infer_freq(wall[-min(len(wall), 50):])
            freq = to_offset(inferred) if inferred is not None else None
        if freq is not None and tz is not None and isinstance(freq, Tick) and freq.nanos < 86_400 * 10**9:
            # Sub-daily steps follow the clock, not the wall time (an hour is an hour across DST).
            return pd.date_range(self.end, periods=horizon + 1, freq=freq)[1:]
        if freq is not None:
            out = pd.date_range(end, periods=horizon + 1, freq=freq)[1:]
        elif self.config.step_days == 1.0 and (wall.day_of_week < 5).all():
            # Business-day data (weekends never observed): forecast business days.
            out = pd.bdate_range(end + pd.Timedelta(days=1), periods=horizon)
        else:
            months = {365.25 / 12: 1, 365.25 / 4: 3, 365.25: 12}.get(self.config.step_days)
            if months is not None:
                out = pd.DatetimeIndex([end + pd.DateOffset(months=months * (k + 1)) for k in range(horizon)])
            else:
                step = pd.Timedelta(days=self.config.step_days)
                out = pd.DatetimeIndex([end + step * (k + 1) for k in range(horizon)])
        if tz is not None:
            out = out.tz_localize(tz, ambiguous=np.zeros(len(out), dtype=bool), nonexistent="shift_forward")
        return out.as_unit(self.train.index.unit) if hasattr(out, "as_unit") else out

    def _in_zone(self, idx: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """Dates in the training data's time zone (dates without one are taken as the data's local time)."""
        tz = self.train.index.tz
        if tz is None and idx.tz is not None:
            raise PyanodeError(f"the training dates have no time zone but these do ({idx[0]}); give dates "
                               "without one")
        if tz is None:
            return idx
        if idx.tz is None:
            try:
                return idx.tz_localize(tz, ambiguous="raise", nonexistent="raise")
            except Exception as err:  # noqa: BLE001 - pandas' DST errors differ between versions
                raise PyanodeError(f"dates not valid in the data's time zone {tz_name(tz)}: "
                                   f"{str(err).splitlines()[0]}") from None
        return idx.tz_convert(tz)

    def predict(self, horizon: int | None = None, *,
                dates: Sequence | pd.DatetimeIndex | pd.DataFrame | None = None,
                level: float | Sequence[float] | None = None, quantiles: float | Sequence[float] | None = None
                ) -> pd.DataFrame:
        """Forecast ``horizon`` steps ahead, or at the given ``dates`` (on or after the last training date).

        ``dates`` are read like the data's dates (``02/01/2020`` only when a value decides the order);
        dates without a time zone are taken in the training data's zone, others converted to it.
        Returns a DataFrame indexed by the dates, with the training columns in their original units.

        ``level`` (percent, e.g. ``[80, 95]``) adds each column's prediction intervals beside it,
        ``c-lo-80``, ``c-hi-80``, ...; ``quantiles`` (e.g. ``[0.1, 0.5, 0.9]``) its quantile forecasts
        ``c-q0.1``, ...: calibrated on backtests of the training data (:mod:`pyanode.forecast.intervals`).
        """
        want_levels = check_levels(level) if level is not None else None
        want_quantiles = check_quantiles(quantiles) if quantiles is not None else None
        if (horizon is None) == (dates is None):
            raise PyanodeError("give either horizon=N or dates=[...] to predict")
        if dates is None:
            idx = self.future_dates(horizon)
        else:
            idx = self._in_zone(parse_dates(dates))
            if len(idx) == 0:
                raise PyanodeError("dates is empty")
            if (idx < self.end).any():
                first = idx[idx < self.end][0]
                raise PyanodeError(
                    f"cannot forecast {format_when(first)}: it is before the end of the training data "
                    f"({format_when(self.end)}); forecasts start from the last training date")
        c = self.config
        uniq = idx.unique().sort_values()
        ahead = (days_since_epoch(uniq) - days_since_epoch(self.train.index[-1:])[0]) / c.step_days
        # The neural ODE's residual at a date within a tenth of a step of a grid step is the one at that
        # step, as the training rows were placed (month starts on a mean-month grid: 28 to 31 days apart);
        # the structure is still read at the date itself. So the solve's times are the grid's, as the fit's
        # held-out tail's were, and the forecast runs the program that the fit compiled.
        ahead = np.where(np.abs(ahead - np.rint(ahead)) <= SNAP, np.rint(ahead), ahead)
        tau = c.dt * ahead
        # The intervals need the forecast at every grid step up to the last date asked for; solved with
        # or without them, so that both share one compiled program (and one point forecast).
        grid = c.dt * np.arange(1, math.ceil(ahead[-1] - 1e-9) + 1)
        taus = np.union1d(np.concatenate([[0.0], tau[tau > 0]]), grid)
        arrays = residual_arrays(self.structure, self.train, self._positions())
        lags = lag_windows(arrays.filled, c.lookback)[-1:]
        pred = _forecast(self.model, lags, arrays.days[-1:], taus)
        resid_all = np.asarray(pred[0], dtype=np.float64)
        resid = resid_all[np.searchsorted(taus, tau)]  # tau = 0: the origin, the start of the solve
        out = self.forecast_from_residuals(uniq, resid, want_levels, want_quantiles,
                                           resid_all[np.searchsorted(taus, grid)]).reindex(idx)
        out.index.name = self.train.index.name or "date"
        return out

    def forecast_from_residuals(self, dates: pd.DatetimeIndex, resid: np.ndarray,
                                level: Sequence[float] | None = None,
                                quantiles: Sequence[float] | None = None,
                                grid_resid: np.ndarray | None = None) -> pd.DataFrame:
        """The forecast at sorted unique ``dates`` from the model's residual forecast there (standardised
        units, (len(dates), n)): the structure added back, in the columns' units, with intervals (which
        need ``grid_resid``, the residual forecast at grid steps 1, 2, ... up to the last date)."""
        positions = (days_since_epoch(dates) - self.structure.epoch_days) / self.config.step_days
        persistent = np.array([c.persistent for c in self.structure.columns])
        intervals = level is not None or quantiles is not None
        if intervals or persistent.any():
            last = self._positions()[-1]
            grid = last + np.arange(1, (0 if grid_resid is None else len(grid_resid)) + 1.0)
            closed_form = self._closed_form_residual(np.concatenate([grid, positions]))
            # How far the point forecast departs from the other model's, the closed form's or, where the point
            # is the closed form, the neural ODE's (mu cancels): the intervals hold both models' bands.
            departure = None if grid_resid is None else grid_resid - closed_form[: len(grid)]
            here = resid - closed_form[len(grid) :]
            if persistent.any():
                # A residual with a unit root carries on its current level: the neural ODE cannot foresee
                # a random walk's steps, and its learned decay would pull the forecast back to the structure.
                resid = np.where(persistent, closed_form[len(grid) :], resid)
                here = np.where(persistent, -here, here)
                if departure is not None:
                    departure = np.where(persistent, -departure, departure)
        point_z = self.structure.mu(positions) + resid
        out = pd.DataFrame(self.structure.from_standard(point_z), index=dates, columns=self.columns)
        if intervals:  # issue 12: pyanode.forecast.intervals
            out = with_intervals(out, point_z, positions - last, departure, here, self.structure,
                                 self._calibration(), check_levels(level) if level is not None else None,
                                 check_quantiles(quantiles) if quantiles is not None else None)
        out.index.name = self.train.index.name or "date"
        return out

    def _closed_form_residual(self, positions: np.ndarray) -> np.ndarray:
        """The closed-form model's residual forecast at grid ``positions`` (standardised units): each
        column's last observed residual decaying as its AR(1), ``r phi^(t - t_last)``, or as its AR(2) where
        the model starts it as a second-order ODE (:attr:`Config.second_order`), or, if it is persistent,
        its current level carrying on with the cycle the residual has now
        (:func:`~pyanode.forecast.structure.persistent_ahead`), as the structure's and the calibration's
        backtests forecast (:func:`pyanode.forecast.intervals.backtest_errors`; they take the AR(1) for every
        decaying column), plus its drift where that is significant, or its
        current slope where its steps have a unit root too (``ColumnStructure.drift``, decided once on the
        whole training data; the backtests carry none)."""
        arrays = residual_arrays(self.structure, self.train, self._positions())
        y = arrays.y
        out = np.zeros((len(positions), y.shape[1]))
        for j, c in enumerate(self.structure.columns):
            seen = np.flatnonzero(np.isfinite(y[:, j]))
            if j in self.config.second_order:
                # The model's start: the pair's path through the last two (gap-filled) residuals it encodes.
                out[:, j] = second_order_ahead(arrays.filled[-2, j], arrays.filled[-1, j], c.second_order,
                                               positions - (len(y) - 1))
            elif len(seen) and c.persistent:
                recent = y[-RECENT_ROWS:, j]
                period = state_period(c.periods, self.config.step_days)
                out[:, j] = (persistent_ahead(recent, period, len(y) - len(recent), np.rint(positions))
                             + c.drift_ahead(positions))
            elif len(seen):
                out[:, j] = y[seen[-1], j] * c.phi ** np.maximum(positions - seen[-1], 0.0)
        return out

    def scaled_backtest_error(self, column: str) -> float:
        """The backtest MAE that chose ``column``'s structure over its in-sample seasonal-naive MAE (the
        MASE scale): how hard the series was to forecast before the model."""
        j = self.columns.index(column)
        scale = mase_scales(self.train[[column]], self.config.step_days)[column]
        return float(self.structure.columns[j].scores[0][1] / scale) if scale > 0 else float("nan")

    def _positions(self) -> np.ndarray:
        return positions_since(self.train.index, self.structure.epoch_days, self.config.step_days)

    def _calibration(self) -> Calibration:
        if self.calibration is None:
            raise PyanodeError("this forecaster has no interval calibration (it was made without one); "
                               "fit it again to forecast with level= or quantiles=")
        return self.calibration

    def _test_frame(self, test: pd.DataFrame | str | Path, date_column: str | None = None,
                    dedupe: str | None = None) -> tuple[pd.DataFrame, DataReport]:
        df, rep = load_frame(test, date_column=date_column, dedupe=dedupe)
        df = df.set_axis(self._in_zone(df.index), axis=0)  # the training data's time zone (issue 14)
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
                f"the test data have no dates after the end of the training data ({format_when(self.end)})")
        return df, rep

    def evaluate(self, test: pd.DataFrame | str | Path, *, date_column: str | None = None,
                 dedupe: str | None = None, level: float | Sequence[float] | None = None) -> pd.DataFrame:
        """MAE, RMSE and MASE per column of the model and the baselines on the test dates after training.

        The test data are cleaned like the training data (outliers by the training median/MAD are
        masked, see :attr:`test_report`); dates on or before the last training date are skipped. MASE
        is scaled by the training data's in-sample seasonal-naive MAE with the M4 season
        (:func:`pyanode.forecast.baselines.mase_season`). Returns a frame with rows ``model``,
        ``persistence``, ``seasonal_naive``, ``mean`` and columns ``(column, metric)``.

        With ``level`` (percent, e.g. ``[80, 95]``) the ``model`` row also gets, per column, the
        empirical coverage of each interval (``coverage-80``), the M4 mean scaled interval score
        (``msis-80``) and the CRPS approximated from the quantiles 0.05 .. 0.95 (``crps``), both scaled
        like MASE (:func:`pyanode.forecast.intervals.interval_metrics`); the baselines' are NaN.
        """
        levels = check_levels(level) if level is not None else None
        truth, rep = self._test_frame(test, date_column, dedupe)
        self.test_report = rep
        model = self.predict(dates=truth.index, level=levels, quantiles=CRPS_QUANTILES if levels else None)
        preds = {"model": model, **baseline_forecasts(self.train, truth.index)}
        scales = mase_scales(self.train, self.config.step_days)
        table = {name: metrics(p, truth, scales) for name, p in preds.items()}
        names = ["mae", "rmse", "mase"]
        if levels is not None:  # issue 12: interval scores of the model
            scores = interval_metrics(model, truth, scales, levels)
            for col in self.columns:
                table["model"][col].update(scores[col])
            names += [f"{k}-{lv:g}" for k in ("coverage", "msis") for lv in levels] + ["crps"]
        frame = pd.DataFrame({
            (col, m): {name: table[name][col].get(m, np.nan) for name in table}
            for col in self.columns for m in names
        })
        frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["column", "metric"])
        return frame

    def plot(self, test: pd.DataFrame | str | Path | None = None, *, horizon: int | None = None,
             history_steps: int | None = None, level: float | Sequence[float] | None = None):
        """History, forecast and (with ``test``) truth per column, with shaded prediction intervals of
        each ``level`` (percent); returns a matplotlib Figure. Without ``test`` or ``horizon`` the
        forecast reaches as far as the fit was told it would (its ``horizon``, or that default)."""
        from pyanode.plots.forecast import plot_forecast

        truth = None
        if test is not None:
            truth, _ = self._test_frame(test)
            pred = self.predict(dates=truth.index, level=level)
        else:
            pred = self.predict(horizon=horizon or self.horizon, level=level)
        return plot_forecast(self.train, pred, truth, history_steps=history_steps, report=self.report,
                             level=check_levels(level) if level is not None else None)

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
            "index_tz": tz_name(self.train.index.tz) if self.train.index.tz is not None else None,
            "resample": self.resample, "history_columns": list(self.history.columns),
            "structure": self.structure.to_json(),
            "calibration": self.calibration.to_json() if self.calibration is not None else None,
        }
        arrays = {
            "center": self._center.to_numpy(np.float64), "spread": self._spread.to_numpy(np.float64),
            "train_values": self.train.to_numpy(np.float64),
            "train_dates": _utc_naive(self.train.index).to_numpy().astype("datetime64[ns]").astype(np.int64),
            "history": self.history.to_numpy(np.float64),
            "history_iterations": self.history.index.to_numpy(np.int64),
        }
        return write_model_file(path, meta, self.model, arrays)


def positions_since(index: pd.DatetimeIndex, epoch_days: float, step_days: float) -> np.ndarray:
    """Each date's grid position counted from the structure's epoch (a panel's series share one model, but
    each has its own first date)."""
    return np.rint((days_since_epoch(index) - epoch_days) / step_days).astype(np.int64)


def residual_arrays(structure: Structure, frame: pd.DataFrame | np.ndarray, positions: np.ndarray,
                    held_out: int = 0) -> GridArrays:
    """The data's residuals after their structure on the grid (NaN where unobserved) and gap-filled
    (the last residual carried forward; zero, the structure itself, before the first).

    With ``held_out`` > 0 (the model's validation tail, in grid steps), the structure is refitted to the
    steps before the tail (:meth:`Structure.refitted`), so that the tail's residuals are out of sample, as
    those of a forecast are: training and its held-out verdict see these residuals; a forecast, those after
    the structure fitted to all the data."""
    T = int(positions[-1]) + 1
    values = np.full((T, frame.shape[1]), np.nan)
    raw = np.asarray(frame, dtype=np.float64)
    if len(np.unique(positions)) == len(positions):
        values[positions] = raw
    else:  # rows sharing a grid step are averaged
        merged = pd.DataFrame(raw).groupby(positions).mean()
        values[merged.index.to_numpy()] = merged.to_numpy()
    if held_out > 0:
        structure = structure.refitted(values, T - held_out)
    resid = structure.to_standard(values) - structure.mu(np.arange(T))
    return GridArrays(y=resid, filled=forward_filled(resid),
                      days=structure.epoch_days + structure.step_days * np.arange(T))


@contextlib.contextmanager
def _infer_freq_returns_offset() -> Iterator[None]:
    """Silence pandas' notice that ``infer_freq`` will return an offset, where that option exists.

    The option is only in some pandas versions (not in 2.0 to 2.3); callers pass the result through
    ``to_offset`` either way.
    """
    try:
        ctx = pd.option_context("future.infer_freq_returns_offset", True)
        ctx.__enter__()
    except (KeyError, AttributeError, pd.errors.OptionError):
        yield
        return
    try:
        yield
    finally:
        ctx.__exit__(None, None, None)


def _utc_naive(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Dates with a time zone as UTC without one (how the model file stores them); others as they are."""
    return index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index


def _forecast(model: ForecastModel, lags: np.ndarray, days: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """The residual forecasts (B, len(taus), n) from each origin, by the compiled program the fit's held-out
    tail used (:func:`pyanode.forecast.fitting.rollout_program`; the arguments padded so that forecasts of
    other horizons reuse it rather than compiling one each)."""
    args = padded_rollout_args(lags, days, taus)
    program = rollout_program(model, *args)
    return np.asarray(program(eqx.filter(model, eqx.is_array), *args))[: len(lags), : len(taus)]


def runner_up_note(scores: Sequence[tuple[str, float]]) -> str:
    """The report's words on the candidate after the chosen one (``scores``: the chosen first, then the
    rest by backtest MAE): the next best, or, where its MAE is lower, the near-tie the simpler one won."""
    if len(scores) < 2:
        return ""
    name, score = scores[1]
    if score < scores[0][1]:
        return f"; simpler than {name} ({score:.4g}), within {TIE:.0%} of it"
    return f"; next best {name}: {score:.4g}"


def load(path: str | Path) -> Forecaster | PanelForecaster:
    """Read a forecaster written by :meth:`Forecaster.save` (or a panel's, by
    :meth:`~pyanode.forecast.panel.PanelForecaster.save`). Never runs code from the file."""
    meta, model, arr = read_model_file(Path(path))
    if meta.get("kind") == "panel":
        from pyanode.forecast.panel import panel_from_file

        return panel_from_file(meta, model, arr)
    cols = list(model.config.columns)
    idx = pd.DatetimeIndex(arr["train_dates"].astype("datetime64[ns]"), name=meta.get("index_name"))
    idx = idx.as_unit(meta.get("index_unit", "ns"))
    if meta.get("index_tz"):  # the dates were saved as UTC; back to the training data's own zone
        idx = idx.tz_localize("UTC").tz_convert(tz_from_name(meta["index_tz"]))
    train = pd.DataFrame(arr["train_values"], index=idx, columns=cols)
    history_columns = meta["history_columns"]  # written by every version that load accepts
    history = pd.DataFrame(arr["history"], columns=history_columns,
                           index=pd.Index(arr.get("history_iterations", np.arange(len(arr["history"]))),
                                          name="iteration"))
    for k in ("nfe_forward", "nfe_backward"):
        history[k] = history[k].astype(np.int64)
    return Forecaster(
        model, Structure.from_json(meta["structure"]), train, DataReport.from_dict(meta["report"]),
        history, meta["info"], pd.Series(arr["center"], index=cols), pd.Series(arr["spread"], index=cols),
        meta["outlier_threshold"], meta.get("resample"),
        Calibration.from_json(meta["calibration"]) if meta.get("calibration") else None,
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
    horizon: int | None = None,
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
    dayfirst: bool | None = None,
    date_format: str | None = None,
    sep: str | None = None,
    decimal: str | None = None,
    thousands: str | None = None,
    id_column: str | None = None,
    skip_bad_series: bool = False,
    shared: bool = True,
    devices: int | None = None,
    n_jobs: int | None = None,
) -> Forecaster | PanelForecaster:
    """Fit an augmented neural ODE forecaster to a time series (the model: :mod:`pyanode.forecast.model`).

    Args:
        data: a DataFrame (DatetimeIndex or a date column) or a CSV path.
        augment: extra state dimensions beyond the n modelled columns (0: a plain neural ODE).
        columns: the columns to model (default: all numeric ones; others are reported and ignored).
        date_column: the date column's name (default: found automatically).
        hidden, depth, activation: the vector field MLP's width, number of hidden layers, nonlinearity.
        solver, rtol, atol, sensealg: passed to :func:`pyanode.solve` (adaptive solvers only).
        seasonality: ``auto`` (the daily, weekly and yearly cycles, a cycle of the column's own length
            where the data keep one, trend and transform of each column chosen by backtest,
            :mod:`pyanode.forecast.structure`), ``none``, or the cycles to use, e.g. ``yearly`` or
            ``daily+weekly`` (then no other: the trend and transform are still chosen by backtest).
        horizon: how many steps ahead the structure's backtest judges forecasts, and how far a trend
            keeps its slope before it fades; pass the horizon you will forecast. Default: the M4
            competition's for the frequency (48 hourly, 14 daily, 13 weekly, 18 monthly, 8 quarterly,
            6 yearly) or a quarter of the longest seasonal cycle the data show, whichever is longer.
        iterations: optimiser steps (default 400; by default none where every column's departures from
            its structure persist: those columns are forecast by their level carried on, not by the ODE).
        lr, batch: AdamW learning rate (warm-up then cosine decay) and windows per step.
        window: training window in data steps (default: twice the horizon rounded up to a power of
            two, from 32 to 128, at most half the data: the forecasts' reach, and no more, trained on).
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
        dayfirst, date_format, sep, decimal, thousands: how to read a file (see
            :func:`pyanode.forecast.data.load_frame`): ``dayfirst=True`` reads ``02/01/2020`` as 2 January
            (default: decided by the values, refused when none decides it), ``date_format`` a ``strftime``
            format for the dates, ``sep`` the delimiter, ``decimal`` the decimal mark, ``thousands`` the
            thousands separator (default: detected and reported in :attr:`Forecaster.report`).

        id_column: the column that names each row's series in long-format data (``unique_id, ds, y``):
            one global model is fitted to all of them (:mod:`pyanode.forecast.panel`); each series keeps
            its own cleaning, structure and intervals.
        skip_bad_series: with ``id_column``, leave out the series that cannot be used (too few rows, a
            duplicate date, another frequency than the rest) and list them in ``skipped``, rather than
            stopping with an error.
        shared: with ``id_column``, one model for every series (default); ``False`` fits a model per
            series (slower; for series with nothing in common).
        devices: with ``id_column``, train data-parallel over this many devices (one host's, or every
            host's after :func:`jax.distributed.initialize`); the batch must split evenly over them. For
            accelerators: the batch is solved as one ODE, so every solver step synchronises the devices,
            and on one CPU (forced host devices share its cores) that is slower than one device.
        n_jobs: with ``id_column``, processes that clean the series and choose their structures
            (default: one per core when there are 64 series or more).

    Returns:
        A fitted :class:`Forecaster`, or with ``id_column`` a
        :class:`~pyanode.forecast.panel.PanelForecaster`.
    """
    check_options(augment, hidden, depth, solver, rtol, atol, sensealg, seasonality, iterations, activation)
    if horizon is not None and (not isinstance(horizon, (int, np.integer)) or horizon < 1):
        raise PyanodeError(f"horizon must be a positive integer, got {horizon!r}")
    enable_compilation_cache()
    if id_column is not None:
        from pyanode.forecast.panel import fit_panel

        def make_config(**shape: Any) -> Config:
            return Config(augment=int(augment), hidden=hidden, depth=depth, activation=activation,
                          solver=solver, rtol=rtol, atol=atol, sensealg=sensealg, batch=batch,
                          patience=patience, iterations=iterations if iterations is not None else 400,
                          lr=lr, seed=seed, unit_days=365.25 if shape["step_days"] >= 1 else 1.0, **shape)

        return fit_panel(
            data, id_column, columns=columns, date_column=date_column, dedupe=dedupe,
            resample=resample, outlier_threshold=outlier_threshold, horizon=horizon,
            seasonal=parse_seasonality(seasonality), window=window, lookback=lookback, validation=validation,
            half_life=half_life, skip_bad_series=skip_bad_series, shared=shared, devices=devices, jobs=n_jobs,
            progress=progress, console=console, make_config=make_config,
            train_persistent=iterations is not None,
            read_options={"dayfirst": dayfirst, "date_format": date_format, "sep": sep, "decimal": decimal,
                          "thousands": thousands})
    df, report = load_frame(data, date_column=date_column, columns=list(columns) if columns else None,
                            dedupe=dedupe,
                            dayfirst=dayfirst, date_format=date_format, sep=sep, decimal=decimal,
                            thousands=thousands)
    prep = prepare_series(df, report, outlier_threshold=outlier_threshold, resample=resample, horizon=horizon,
                          seasonal=parse_seasonality(seasonality))
    df, report, structure = prep.frame, prep.report, prep.structure
    config = Config(
        columns=tuple(df.columns), augment=int(augment), hidden=hidden, depth=depth, activation=activation,
        solver=solver, rtol=rtol, atol=atol, sensealg=sensealg, periods=structure.periods,
        batch=batch, patience=patience, iterations=iterations if iterations is not None else 400, lr=lr,
        seed=seed, step_days=prep.step_days, unit_days=365.25 if prep.step_days >= 1 else 1.0,
        epoch_days=structure.epoch_days,
        **training_windows(prep.steps, prep.step_days, window, lookback, validation, half_life,
                           structure.columns[0].trusted),
    )
    config = with_second_order(config, structure, report)
    model = ForecastModel(config, seed, phi=[s.phi for s in structure.columns],
                          second_order=[s.second_order for s in structure.columns])
    model, history, info, _ = trained(model, structure, df, prep.positions, report,
                                      train_persistent=iterations is not None, progress=progress,
                                      console=console)
    return Forecaster(model, structure, df, report, history, info, prep.center, prep.spread,
                      outlier_threshold, resample, prep.calibration)


def trained(model: ForecastModel, structure: Structure, values: pd.DataFrame | np.ndarray,
            positions: np.ndarray, report: DataReport, *, train_persistent: bool, progress: bool,
            console: Any, what: str = "training") -> tuple[ForecastModel, pd.DataFrame, dict, bool]:
    """``model`` trained on one series' residuals after ``structure`` (values at grid ``positions``), with its
    history, ``info`` and whether Ctrl-C stopped it; or, where every column's departures persist and not
    ``train_persistent``, ``model`` as it starts, untrained (the report says why): a persistent column's
    point forecast is its residual's level carried on, never the neural ODE's, so training would change
    only how far its intervals reach."""
    if not train_persistent and all(col.persistent for col in structure.columns):
        return (model, *untrained(report.notes), False)
    arrays = residual_arrays(structure, values, positions, held_out=model.config.validation)
    # The held-out tail is judged as far ahead as the backtests judged the structure (the horizon asked).
    result = fit_model(model, arrays, horizon=structure.columns[0].trusted, progress=progress,
                       console=console)
    history, info = outcome(result, what)
    return result.model, history, info, result.interrupted


def with_second_order(config: Config, structure: Structure, report: DataReport) -> Config:
    """``config`` with the columns whose residual starts as a second-order linear ODE: those with an AR(2)
    that is one (:func:`pyanode.forecast.structure.second_order_fit`), in order, as many as the model has
    augmented dimensions to pair them with (and an encoder that reads the last two values); the report
    says what each does."""
    if config.lookback < 2:
        return config
    chosen = tuple(j for j, c in enumerate(structure.columns) if c.second_order is not None)[: config.augment]
    for i, j in enumerate(chosen):
        a = structure.columns[j].second_order
        report.notes.append(f"{config.columns[j]}: departures from it start as {second_order_words(a)}: "
                            f"AR(2) {a[0]:.3g}, {a[1]:.3g}, with augmented dimension {i + 1} as their "
                            "second coordinate")
    return dataclasses.replace(config, second_order=chosen)


@dataclasses.dataclass
class Prepared:
    """One series made ready for a model: cleaned, on its grid, its structure chosen and calibrated."""

    frame: pd.DataFrame  # cleaned (outliers NaN), resampled when asked
    report: DataReport
    center: pd.Series  # the median and MAD the outliers were judged by (the test data are cleaned alike)
    spread: pd.Series
    step_days: float
    positions: np.ndarray  # each row's grid position
    steps: int  # T, the grid's length (not the values on it: a panel keeps every series' Prepared a while)
    structure: Structure
    calibration: Calibration


def prepare_series(df: pd.DataFrame, report: DataReport, *, outlier_threshold: float, resample: str | None,
                   horizon: int | None, seasonal: tuple[float, ...] | None) -> Prepared:
    """Clean a loaded frame, lay it on its grid, choose its structure by backtest and calibrate its
    intervals (the steps of :func:`fit` before the model; a panel runs them once per series)."""
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
    epoch_days = float(days_since_epoch(df.index[:1])[0])
    grid_values = np.full((T, df.shape[1]), np.nan)
    grid_values[pos] = df.to_numpy(dtype=np.float64)  # (merged rows: the last; the structure needs no more)
    structure = choose_structure(grid_values, step_days, epoch_days, horizon=horizon, seasonal=seasonal)
    # Prediction intervals (issue 12): conformal scores from backtests of the chosen structures.
    calibration = calibrate(structure, grid_values, structure.columns[0].trusted)  # the backtest's horizon
    for col, s in zip(df.columns, structure.columns, strict=True):
        runner_up = runner_up_note(s.scores)
        unit_root = (f"; unit-root test: ADF {s.unit_root[0]:.2f} against {s.unit_root[1]:.2f} at 5%"
                     if s.unit_root is not None else "")
        if s.slope_unit_root is not None:
            unit_root += (f"; of its departures' steps: ADF {s.slope_unit_root[0]:.2f} against "
                          f"{s.slope_unit_root[1]:.2f}")
        cycles = "".join(f"; no {period_name(period)} cycle: not significant "
                         f"(F-test p = {p:.2g}, at least {CYCLE_P:g})"
                         for period, p in s.cycle_tests if p >= CYCLE_P)
        cycles += "".join(f"; a {period_name(period)} cycle in its periodogram (Fisher's test p = {p:.2g})"
                          for period, p in s.cycle_tests if period not in CALENDAR)
        report.notes.append(f"{col}: {s.describe()} (chosen by backtest: MAE {s.scores[0][1]:.4g}"
                            f"{runner_up}{unit_root}{cycles})")
    return Prepared(df, report, center, spread, step_days, pos, T, structure, calibration)


def training_windows(steps: int, step_days: float, window: int | None, lookback: int | None,
                     validation: int | None, half_life: float | None, horizon: int | None = None
                     ) -> dict[str, Any]:
    """The training window, encoder lookback, validation tail and recency half-life for a series of
    ``steps`` grid steps forecast ``horizon`` steps ahead (the defaults :func:`fit` documents), checked."""
    T = steps
    longest = min(128, max(2, T // 2))
    if window is not None:
        win = window
    elif horizon is not None:
        # Twice the reach the forecasts need (a power of two, so that other horizons share the program):
        # the curriculum's last stages train on windows as long as this, and a window far longer than any
        # forecast costs its solve without being judged (BENCHMARKS.md: accuracy within the spread, the
        # monthly and quarterly fits seconds shorter).
        win = min(longest, max(32, 2 ** math.ceil(math.log2(2 * horizon))))
    else:
        win = longest
    # About three months of history, at least 24 steps (two years of months, six of quarters): enough to
    # place the present in a cycle of several steps; at most an eighth of the data.
    look = lookback if lookback is not None else max(1, min(max(round(90 / step_days), 24), T // 8))
    if validation is None:
        validation = min(longest, T // 24) if T >= 48 else 0
    if not 0 <= validation < T // 2:
        raise PyanodeError(
            f"validation must be between 0 and {T // 2 - 1} steps for these data, got {validation}")
    if half_life is None:
        half_life = max(longest, T // 8)
    return {"window": win, "lookback": look, "validation": validation, "half_life": float(half_life or 0.0)}
