"""Step 5 of the forecaster: the fitted :class:`Forecaster`, which predicts, evaluates, plots and saves.

A forecast integrates the model's ODE from the last training date: the encoder reads the lag window that
ends there (:mod:`pyanode.forecast.grid`), and :func:`pyanode.forecast.model.rollout` solves to the
requested dates in one compiled program (the dates are arguments: a new horizon of the same length reuses
it). :func:`load` reads a model file (:mod:`pyanode.forecast.io`) back into a Forecaster.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from pyanode.errors import PyanodeError
from pyanode.forecast.baselines import baseline_forecasts, metrics
from pyanode.forecast.data import DataError, DataReport, clean, load_frame, resample_frame
from pyanode.forecast.grid import Scaler, days_since_epoch, grid_arrays, lag_windows
from pyanode.forecast.io import read_model_file, write_model_file
from pyanode.forecast.model import Config, ForecastModel, ftype, rollout

__all__ = ["Forecaster", "load"]


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
