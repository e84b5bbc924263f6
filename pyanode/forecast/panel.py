"""Many series at once: a long-format panel (``unique_id, ds, y``), one global neural ODE for all of them.

What each series keeps of its own, and what they share:

* its own everything that is closed-form: cleaning (outliers by its own median/MAD), its grid, its
  structure (trend, cycles, transform and scaling chosen by its own backtest) and its interval
  calibration (:func:`pyanode.forecast.forecaster.prepare_series`, as for a single series);
* one shared model of the residuals (:class:`~pyanode.forecast.model.ForecastModel`): the encoder and the
  vector field see each series in its own standardised units, so a pattern learned on one (how an anomaly
  decays, how the dynamics change with the season) serves all. This is the "global model" that
  forecasting competitions since M4 found to beat per-series models on many short series.

Training is the single-series recipe (:mod:`pyanode.forecast.fitting`), with the windows drawn on the
host: each iteration draws ``batch`` origins across the panel (each series equally likely, its recent
origins more so) from a generator seeded by ``(seed, iteration)``, and only those windows travel to the
device. So device memory is bounded by the batch, not by the number of series, and the same draw is
made by every process of a multi-host run, which then shards the batch over its devices
(:class:`pyanode.parallel.DataParallel`: ``devices=N`` on one host; with :func:`jax.distributed.initialize`
first, over hosts). Validation forecasts the held-out tails of up to :data:`VALIDATION_SERIES` series.

Forecasts of all series run as one compiled program over chunks of :data:`PREDICT_CHUNK` series.

On the host, memory is bounded the same way: the series are prepared in worker processes a chunk at a
time, each prepared series' record goes to a temporary file as it comes back
(:class:`~pyanode.forecast.store.RecordStore`), and training, forecasting and saving read the records one
at a time. What stays in memory per series is its id, a slot in the file and, for training, its residuals
as float32.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import numpy as np
import pandas as pd

from pyanode.errors import PyanodeError
from pyanode.forecast.data import (
    DataError,
    DataReport,
    PanelLoader,
    PanelRows,
    load_panel,
    read_panel,
    tz_from_name,
    tz_name,
)
from pyanode.forecast.fitting import (
    _pad,
    local_copy,
    outcome,
    train_validated,
    validation_tails,
    windows_loss,
)
from pyanode.forecast.forecaster import (
    Forecaster,
    Prepared,
    _forecast,
    _utc_naive,
    positions_since,
    prepare_series,
    residual_arrays,
    trained,
    training_windows,
    with_second_order,
)
from pyanode.forecast.grid import GridArrays, forward_filled, lag_windows
from pyanode.forecast.intervals import Calibration
from pyanode.forecast.io import write_model_file
from pyanode.forecast.model import Config, ForecastModel, as_ftype, ftype
from pyanode.forecast.store import RecordStore
from pyanode.forecast.structure import CALENDAR, Structure

__all__ = ["PREDICT_CHUNK", "FrameLayout", "PanelForecaster", "PanelWindows", "SeriesRecord", "SeriesViews",
           "VALIDATION_SERIES", "fit_panel"]

VALIDATION_SERIES = 64  # series whose held-out tails judge the model (a seeded random choice)
PREDICT_CHUNK = 256  # series per call of the compiled forecast program (the last chunk is padded)


class WindowBatch(eqx.Module):
    """One training batch drawn on the host: encoder inputs, origin dates and the windows' targets."""

    lags: jax.Array  # (B, m, n)
    days: jax.Array  # (B,)
    targets: jax.Array  # (B, L + 1, n)


def batch_loss(model: ForecastModel, probe: jax.Array, batch: WindowBatch, it: jax.Array
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The window loss of :mod:`pyanode.forecast.fitting` on a batch drawn by :class:`PanelWindows`."""
    return windows_loss(model, probe, batch.lags, batch.days, batch.targets, it)


class PanelWindows:
    """The training windows of every series, kept on the host; ``windows(it)`` draws iteration ``it``'s.

    Every series has the same chance of being drawn; within it, an origin's chance halves every
    ``half_life`` steps back from the series' own training end (inverse-CDF sampling, in closed form for
    these geometric weights, so nothing is kept per origin). Targets are NaN past each series' training
    part (its held-out tail included), so a window never reads another series.

    The pool keeps each series' residuals ``y`` once, in float32 (what the targets are made of), and a few
    numbers per series. The encoder's inputs (:func:`lag_windows` of the series up to the origin, gap-filled
    as :func:`forward_filled` fills it, which is how ``filled`` is made) and the dates are made for the drawn
    origins only. So the pool holds four bytes per value, whatever the lookback, the window or the number
    of origins.
    """

    def __init__(self, arrays: Sequence[GridArrays], held_out: Sequence[int], config: Config):
        values, offsets, fitted, first_day, step = [], [0], [], [], []
        for a, v in zip(arrays, held_out, strict=True):
            T = len(a.y)
            values.append(np.asarray(a.y, np.float32))
            offsets.append(offsets[-1] + T)
            fitted.append(T - v)
            first_day.append(float(a.days[0]))
            step.append(float(a.days[1] - a.days[0]) if T > 1 else 0.0)
        self.values = np.concatenate(values)
        self.offsets = np.asarray(offsets, np.int64)  # series s is rows offsets[s] to offsets[s + 1] - 1
        self.fitted = np.asarray(fitted, np.int64)  # its rows before the held-out tail
        self.first_day, self.step = np.asarray(first_day), np.asarray(step)
        self.config = config

    def origins(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The series and the origin in it (counted from its start) of uniform draws ``u`` in [0, 1).

        ``u * S`` picks series ``s`` by its integer part; the fraction ``f`` picks the origin ``k`` among
        the series' ``n`` origins (each row before the last of its training part), weighted ``r ** (n - 1 -
        k)`` with ``r = 2 ** (-1 / half_life)``: the first ``k`` whose cumulative weight exceeds ``f``,
        ``(r ** (n - 1 - k) - r ** n) / (1 - r ** n) > f``, which is ``k = floor(n - log_r(f (1 - r ** n)
        + r ** n))``."""
        S = len(self.fitted)
        scaled = u * S
        s = np.minimum(scaled.astype(np.int64), S - 1)
        f = np.clip(scaled - s, 0.0, 1.0)
        n = np.maximum(self.fitted[s] - 1, 1)
        half_life = self.config.half_life
        if half_life > 0:
            log_r = -math.log(2.0) / half_life
            r_n = np.exp(log_r * n)
            k = np.floor(n - np.log(f * (1.0 - r_n) + r_n) / log_r)
        else:
            k = np.floor(f * n)
        return s, np.clip(k, 0, n - 1).astype(np.int64)

    def windows(self, it: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Iteration ``it``'s batch, the same in every process given the same seed."""
        c = self.config
        s, k = self.origins(np.random.default_rng([c.seed, it]).random(c.batch))
        first, rows = self.offsets[s], self.offsets[s] + k
        lags = np.stack([lag_windows(forward_filled(self.values[a : row + 1].astype(np.float64)),
                                     c.lookback)[-1] for a, row in zip(first, rows, strict=True)])
        ahead = np.arange(c.window + 1)[None, :]
        inside = (k[:, None] + ahead) < self.fitted[s][:, None]
        target = np.where(inside[..., None], self.values[np.where(inside, rows[:, None] + ahead, 0)], np.nan)
        return lags.astype(np.float32), self.first_day[s] + self.step[s] * k, target.astype(np.float32)


def train_panel(model: ForecastModel, arrays: Sequence[GridArrays], held_out: Sequence[int], *,
                horizon: int | None = None, devices: int | None = None, progress: bool = True,
                console: Any = None) -> Any:
    """Train the shared ``model`` on the residuals of every series (the recipe in the module docstring);
    ``held_out[i]``: steps at the end of series ``i`` kept out of training to validate on (0: none), each
    forecast from its start and judged ``horizon`` steps ahead (None: to its end).
    Returns :class:`pyanode.loop.LoopResult` with the model as this process's own arrays."""
    c = model.config
    pool = PanelWindows(arrays, held_out, c)
    ft = ftype()
    dp = None
    if devices is not None and (devices > 1 or jax.process_count() > 1):
        from pyanode.parallel import DataParallel

        dp = DataParallel.create(devices)
        dp.check_batch_size(c.batch)

    def batches(it: int) -> WindowBatch:
        lags, days, target = pool.windows(it)
        if dp is not None:
            return dp.shard(WindowBatch(lags.astype(ft), days.astype(ft), target.astype(ft)))
        return WindowBatch(as_ftype(lags), as_ftype(days), as_ftype(target))

    val = None
    judged = [i for i, v in enumerate(held_out) if v > 0]
    if judged:
        chosen = np.sort(np.random.default_rng(c.seed).permutation(judged)[:VALIDATION_SERIES])
        span = max(held_out[i] for i in chosen)
        span = span if horizon is None else max(1, min(horizon, span))  # as far as the forecasts will go
        lags, days, tails = [], [], []
        for i in chosen:
            a = arrays[i]
            first = len(a.y) - held_out[i] - 1
            lags.append(lag_windows(a.filled[: first + 1], c.lookback)[-1])
            days.append(a.days[first])
            tails.append(validation_tails(a.y, [first], span)[0])
        val = (as_ftype(np.stack(lags)), as_ftype(np.asarray(days)),
               as_ftype(c.dt * np.arange(tails[0].shape[0])), np.stack(tails))
    if dp is None:
        return train_validated(model, batch_loss, batches, val, progress=progress, console=console)

    # Several devices: the parameters are replicated over the mesh; validation runs on this process's copy.
    result = train_validated(dp.replicate(model), batch_loss, batches, val, progress=progress,
                             console=console, replicated=dp.replicated)
    return dataclasses.replace(result, model=local_copy(result.model),
                               final_model=local_copy(result.final_model))


@dataclasses.dataclass(frozen=True)
class FrameLayout:
    """How a series' training frame is laid out (the same for every series of a panel, kept once)."""

    columns: tuple[str, ...]
    index_name: str | None
    unit: str  # the dates' resolution ("ns", "us", ...)
    tz: str | None  # the dates' time zone (:func:`pyanode.forecast.data.tz_name`), None for none

    def index(self, dates: np.ndarray) -> pd.DatetimeIndex:
        """The dates (int64 nanoseconds since 1970, UTC for dates with a zone) as the frame's index."""
        index = pd.DatetimeIndex(dates.astype("datetime64[ns]"), name=self.index_name).as_unit(self.unit)
        return index.tz_localize("UTC").tz_convert(tz_from_name(self.tz)) if self.tz is not None else index


@dataclasses.dataclass(frozen=True, eq=False)
class SeriesRecord:
    """What a panel keeps of one series: its cleaned training rows as plain arrays, what was done to
    them, its structure and interval calibration. A :class:`Prepared` without its pandas objects: for
    a series of a few hundred rows, a DataFrame and two Series cost more memory than their values, and a
    panel keeps one record per series."""

    values: np.ndarray  # (rows, n) cleaned values (outliers NaN)
    dates: np.ndarray  # (rows,) int64 nanoseconds since 1970, UTC for dates with a time zone
    positions: np.ndarray  # (rows,) int32 grid position of each row
    # The median and MAD the outliers were judged by, per column (Python floats: an array per series would
    # cost more than its values).
    center: tuple[float, ...]
    spread: tuple[float, ...]
    step_days: float
    layout: FrameLayout
    report: DataReport
    structure: Structure
    calibration: Calibration | None

    @classmethod
    def of(cls, frame: pd.DataFrame, positions: np.ndarray, center: pd.Series, spread: pd.Series,
           step_days: float, report: DataReport, structure: Structure, calibration: Calibration | None
           ) -> SeriesRecord:
        index = frame.index
        layout = FrameLayout(tuple(map(str, frame.columns)), index.name, index.unit,
                             tz_name(index.tz) if index.tz is not None else None)
        dates = _utc_naive(index).to_numpy().astype("datetime64[ns]").astype(np.int64)
        return cls(frame.to_numpy(np.float64), dates, np.asarray(positions, np.int32),
                   tuple(map(float, center)), tuple(map(float, spread)),
                   float(step_days), layout, report, structure, calibration)

    @classmethod
    def from_prepared(cls, p: Prepared) -> SeriesRecord:
        return cls.of(p.frame, p.positions, p.center, p.spread, p.step_days, p.report, p.structure,
                      p.calibration)

    @classmethod
    def from_forecaster(cls, f: Forecaster) -> SeriesRecord:
        return cls.of(f.train, f._positions(), f._center, f._spread, f.config.step_days, f.report,
                      f.structure, f.calibration)

    @property
    def steps(self) -> int:
        """The grid's length."""
        return int(self.positions[-1]) + 1

    def frame(self) -> pd.DataFrame:
        """The cleaned training rows as the fit saw them (dates in their zone and resolution)."""
        lay = self.layout
        return pd.DataFrame(self.values, index=lay.index(self.dates), columns=list(lay.columns))

    def forecaster(self, model: ForecastModel, history: pd.DataFrame, info: dict, outlier_threshold: float,
                   resample: str | None) -> Forecaster:
        """A :class:`Forecaster` of this series with ``model``."""
        cols = list(self.layout.columns)
        return Forecaster(model, self.structure, self.frame(), self.report, history, info,
                          pd.Series(self.center, index=cols), pd.Series(self.spread, index=cols),
                          outlier_threshold, resample, self.calibration)


class SeriesViews(Mapping[str, Forecaster]):
    """``{id: Forecaster}`` over :class:`SeriesRecord` s sharing one model: each lookup makes a Forecaster
    view of its series (cheap: a frame from the record's arrays). The records of a fitted or loaded panel
    are kept on file (:class:`~pyanode.forecast.store.RecordStore`), so the panel holds a few integers per
    series in memory, not its values, closed-form parts and pandas objects."""

    def __init__(self, records: Mapping[str, SeriesRecord], model: ForecastModel, history: pd.DataFrame,
                 info: dict, outlier_threshold: float, resample: str | None):
        self.records, self.model, self.history, self.info = records, model, history, info
        self.outlier_threshold, self.resample = outlier_threshold, resample

    def __getitem__(self, sid: str) -> Forecaster:
        return self.records[sid].forecaster(self.model, self.history, self.info, self.outlier_threshold,
                                            self.resample)

    def __contains__(self, sid: object) -> bool:  # without making a view
        return sid in self.records

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


def _records(series: Mapping[str, Forecaster]) -> Iterator[SeriesRecord]:
    """Every series' record in turn (without making Forecaster views where the panel keeps records)."""
    if isinstance(series, SeriesViews):
        return iter(series.records.values())
    return (SeriesRecord.from_forecaster(f) for f in series.values())


@dataclasses.dataclass
class PanelForecaster:
    """A fitted panel: one shared model and, per series, a :class:`Forecaster` view of it (its own
    structure, calibration, cleaned training data and report; kept on file, :class:`SeriesViews`, and made
    into a Forecaster when asked for). Made by :func:`fit_panel`
    (``pyanode.fit(df, id_column=...)``) or :func:`pyanode.forecast.load`.

    Attributes:
        model: the shared augmented neural ODE (None when each series has its own, ``shared=False``:
            ``series[id].model``).
        id_column, date_column: the names the output frames use.
        series: ``{id: Forecaster}`` in the order of the data (a read-only mapping).
        skipped: ``{id: reason}`` for the series left out (with ``skip_bad_series``).
        history, info: the training history and how training ended (per-series models: the histories
            indexed by ``(id, iteration)``, and each series' own in ``series[id].history``).
    """

    model: ForecastModel | None
    id_column: str
    date_column: str
    series: Mapping[str, Forecaster]
    skipped: dict[str, str]
    history: pd.DataFrame
    info: dict

    @property
    def config(self) -> Config:
        """The shared model's configuration (per-series models: the first series')."""
        return (self.model if self.model is not None else next(iter(self.series.values())).model).config

    @property
    def columns(self) -> list[str]:
        return list(self.config.columns)

    @property
    def ids(self) -> list[str]:
        return list(self.series)

    @property
    def horizon(self) -> int:
        """The median over series of each one's :attr:`Forecaster.horizon`: how far the command forecasts
        every series unless told (as the fit trained the shared model, when not given a horizon)."""
        return int(np.median([r.structure.columns[0].trusted for r in _records(self.series)]))

    def __repr__(self) -> str:
        return (f"PanelForecaster({len(self.series)} series, columns={self.columns}, "
                f"augment={self.config.augment}, skipped={len(self.skipped)}, "
                f"iterations={len(self.history)})")

    def report_lines(self) -> list[str]:
        """What was fitted and what was left out, in a few lines."""
        lengths, described = [], {}
        for r in _records(self.series):
            lengths.append(len(r.values))
            for col, s in zip(self.columns, r.structure.columns, strict=True):
                key = f"{col}: {s.describe()}"
                described[key] = described.get(key, 0) + 1
        out = [f"{len(self.series)} series, {min(lengths)} to {max(lengths)} rows each "
               f"(median {int(np.median(lengths))}); modelled: {', '.join(self.columns)}; "
               + ("one shared model" if self.model is not None else "a model per series")]
        for key, k in sorted(described.items(), key=lambda kv: -kv[1])[:5]:
            out.append(f"structure {key} ({k} series)")
        for sid, why in self.skipped.items():
            out.append(f"skipped series {sid!r}: {why}")
        return out

    def _frame(self, per_series: Iterable[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
        """Per-series frames indexed by date -> one long frame ``id, date, columns...``. Each frame is
        reduced to its arrays as it comes, so a generator of them never holds a frame per series."""
        ids, lengths, dates, values = [], [], [], []
        columns, index = None, None
        for sid, frame in per_series:
            ids.append(sid)
            lengths.append(len(frame))
            dates.append(_utc_naive(frame.index).to_numpy().astype("datetime64[ns]"))
            values.append(frame.to_numpy())
            columns, index = list(frame.columns), frame.index[:0]
        if index is None:
            raise PyanodeError("no series to forecast")
        when = pd.DatetimeIndex(np.concatenate(dates)).as_unit(index.unit)
        if index.tz is not None:
            when = when.tz_localize("UTC").tz_convert(index.tz)
        data = np.concatenate(values)
        out = pd.DataFrame({self.id_column: np.repeat(np.asarray(ids, dtype=object), lengths),
                            self.date_column: when})
        return pd.concat([out, pd.DataFrame(data, columns=columns)], axis=1)

    def predict(self, horizon: int | None = None, *, dates: pd.DataFrame | None = None,
                level: float | Sequence[float] | None = None,
                quantiles: float | Sequence[float] | None = None, ids: Sequence[str] | None = None
                ) -> pd.DataFrame:
        """Forecast every series (or ``ids``) ``horizon`` steps past its own end, or at ``dates``: a long
        frame with the id and date columns. Returns the long format ``id, date, columns...`` (with
        ``level``/``quantiles``, each column's interval and quantile columns, as
        :meth:`Forecaster.predict`)."""
        if (horizon is None) == (dates is None):
            raise PyanodeError("give either horizon=N or dates=<frame of id and date columns> to predict")
        chosen = self._chosen(ids)
        if dates is not None:
            wanted = self._split(dates)
            missing = [sid for sid in wanted if sid not in self.series]
            if missing:
                raise PyanodeError(f"no fitted series {missing[0]!r} (fitted: {_shown(self.ids)})")
            return self._frame((sid, self.series[sid].predict(dates=d, level=level, quantiles=quantiles))
                               for sid, d in wanted.items())
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise PyanodeError(f"horizon must be a positive integer, got {horizon!r}")
        if self.model is None:  # a model per series: each forecasts on its own
            return self._frame((sid, self.series[sid].predict(horizon, level=level, quantiles=quantiles))
                               for sid in chosen)
        return self._frame(self._forecasts(chosen, horizon, level, quantiles))

    def _forecasts(self, ids: list[str], horizon: int, level: float | Sequence[float] | None,
                   quantiles: float | Sequence[float] | None) -> Iterator[tuple[str, pd.DataFrame]]:
        """Each series' forecast ``horizon`` steps past its end, chunk by chunk of :data:`PREDICT_CHUNK`
        series: one compiled program solves the same H steps from each series' end."""
        size = PREDICT_CHUNK if len(ids) > PREDICT_CHUNK else len(ids)  # one shape for every chunk
        for start in range(0, len(ids), PREDICT_CHUNK):
            chunk = ids[start : start + PREDICT_CHUNK]
            views = [self.series[sid] for sid in chunk]
            for sid, f, resid in zip(chunk, views, self._rollouts(views, horizon, size), strict=True):
                # The rows are the grid steps 1 .. H: the intervals' grid forecast too.
                yield sid, f.forecast_from_residuals(f.future_dates(horizon), resid, level, quantiles, resid)

    def _chosen(self, ids: Sequence[str] | None) -> list[str]:
        if ids is None:
            return self.ids
        unknown = [sid for sid in ids if sid not in self.series]
        if unknown:
            raise PyanodeError(f"no fitted series {unknown[0]!r} (fitted: {_shown(self.ids)})")
        return [str(sid) for sid in ids]

    def _split(self, frame: pd.DataFrame) -> dict[str, pd.Series]:
        """A long frame of ``id, date`` rows -> each series' dates."""
        if not isinstance(frame, pd.DataFrame):
            raise PyanodeError("dates must be a DataFrame with the id and date columns")
        missing = [c for c in (self.id_column, self.date_column) if c not in frame.columns]
        if missing:
            raise DataError(f"no column {missing[0]!r} in the dates (columns: "
                            f"{', '.join(map(str, frame.columns))}); give the {self.id_column!r} and "
                            f"{self.date_column!r} columns")
        return {str(k): g[self.date_column] for k, g in frame.groupby(self.id_column, sort=False)}

    def _rollouts(self, views: list[Forecaster], horizon: int, size: int) -> list[np.ndarray]:
        """Residual forecasts (H, n) of each series, from one call of the compiled program (padded to
        ``size`` series)."""
        c = self.config
        lags, days = [], []
        for f in views:
            arrays = residual_arrays(f.structure, f.train, f._positions())
            lags.append(lag_windows(arrays.filled, c.lookback)[-1])
            days.append(arrays.days[-1])
        pred = _forecast(self.model, _pad(np.stack(lags), size, 0.0),
                         _pad(np.asarray(days), size, float(days[0])), c.dt * np.arange(horizon + 1))
        return list(np.asarray(pred[: len(views), 1:], dtype=np.float64))

    def test_frames(self, test: pd.DataFrame | str | Path, *, date_column: str | None = None,
                    dedupe: str | None = None) -> dict[str, pd.DataFrame]:
        """The test data of each fitted series as read (long format in; uncleaned), for
        :meth:`Forecaster.evaluate`. Series without test rows, or whose rows do not read, are left out and
        named in :attr:`test_skipped`."""
        frames, bad = load_panel(test, self.id_column, date_column=date_column or self.date_column,
                                 dedupe=dedupe)
        out, self.test_skipped = {}, {sid: why for sid, why in bad.items() if sid in self.series}
        for sid, f in self.series.items():
            if sid in frames:
                try:
                    f._test_frame(frames[sid][0])
                    out[sid] = frames[sid][0]
                except DataError as err:
                    self.test_skipped[sid] = str(err)
            elif sid not in self.test_skipped:
                self.test_skipped[sid] = "no rows in the test data"
        if not out:
            raise DataError("no fitted series has test rows after its training end "
                            f"({_shown([f'{k}: {v}' for k, v in self.test_skipped.items()], 3)})")
        return out

    def evaluate(self, test: pd.DataFrame | str | Path | dict[str, pd.DataFrame], *,
                 level: float | Sequence[float] | None = None, date_column: str | None = None,
                 dedupe: str | None = None) -> pd.DataFrame:
        """Per series, :meth:`Forecaster.evaluate` on its test dates: rows ``(id, method)``, columns
        ``(column, metric)``; the mean over series is :meth:`summary`. ``test``: long-format data (or
        :meth:`test_frames`' result); series with no test rows after their training end are left out and
        named in :attr:`test_skipped`."""
        frames = test if isinstance(test, dict) else self.test_frames(test, date_column=date_column,
                                                                       dedupe=dedupe)
        tables = {sid: self.series[sid].evaluate(frame, level=level) for sid, frame in frames.items()}
        return pd.concat(tables, names=[self.id_column, "method"])

    @staticmethod
    def summary(table: pd.DataFrame) -> pd.DataFrame:
        """The mean over series of an :meth:`evaluate` table, per method (rows) and (column, metric)."""
        return table.groupby(level="method", sort=False).mean()

    def plot(self, test: pd.DataFrame | str | Path | dict[str, pd.DataFrame] | None = None, *,
             horizon: int | None = None, level: float | Sequence[float] | None = None,
             ids: Sequence[str] | None = None, column: str | None = None):
        """A readable selection: the best, median and worst series by test MASE (with ``test``; without,
        by the backtest error that chose each structure, scaled like MASE), or the given ``ids``."""
        from pyanode.forecast.intervals import check_levels
        from pyanode.plots.forecast import plot_panel

        column = column or self.columns[0]
        if column not in self.columns:
            raise PyanodeError(f"no modelled column {column!r} (columns: {', '.join(self.columns)})")
        levels = check_levels(level) if level is not None else None
        truths: dict[str, pd.DataFrame] = {}
        if test is not None:
            frames = test if isinstance(test, dict) else self.test_frames(test)
            score = self.evaluate(frames).xs("model", level="method")[(column, "mase")]
            truths = {sid: self.series[sid]._test_frame(frame)[0] for sid, frame in frames.items()}
        else:
            score = pd.Series({sid: f.scaled_backtest_error(column) for sid, f in self.series.items()})
        if ids is None:
            ranked = score.dropna().sort_values()
            picks = {"best": ranked.index[0], "median": ranked.index[len(ranked) // 2],
                     "worst": ranked.index[-1]}
            what = "test MASE" if test is not None else "backtest MAE / in-sample naive MAE"
            rows = {}
            for label, sid in picks.items():
                rows.setdefault(sid, f"{label} of {len(ranked)} by {what} ({score[sid]:.3g})")
        else:
            rows = {sid: "" for sid in self._chosen(ids)}
        series = []
        for sid, caption in rows.items():
            f = self.series[sid]
            truth = truths.get(sid)
            pred = (f.predict(dates=truth.index, level=levels) if truth is not None
                    else f.predict(horizon=horizon or f.horizon, level=levels))
            series.append((sid, caption, f.train, pred, truth))
        return plot_panel(series, column, level=levels,
                          title=f"{column}: {len(series)} of {len(self.series)} series")

    def save(self, path: str | Path, *, force: bool = True) -> Path:
        """Write the panel to one file (as :meth:`Forecaster.save`: JSON and arrays, atomically)."""
        path = Path(path)
        if path.exists() and not force:
            raise PyanodeError(f"{path} exists; pass --force (force=True) to overwrite it")
        names = ("reports", "structures", "calibrations", "lengths", "center", "spread", "train_values",
                 "train_dates")
        fields: dict[str, list] = {k: [] for k in names}
        layout = None
        for r in _records(self.series):  # one record at a time: a panel may keep them on file
            layout = r.layout
            fields["reports"].append(r.report.to_dict())
            fields["structures"].append(r.structure.to_json())
            fields["calibrations"].append(r.calibration.to_json() if r.calibration is not None else None)
            fields["lengths"].append(len(r.values))
            for name, value in (("center", r.center), ("spread", r.spread), ("train_values", r.values),
                                ("train_dates", r.dates)):
                fields[name].append(value)
        view = next(iter(self.series.values()))
        meta = {
            "kind": "panel", "id_column": self.id_column, "date_column": self.date_column,
            "ids": self.ids, "skipped": self.skipped, "info": self.info,
            "history_columns": list(self.history.columns),
            "outlier_threshold": view.outlier_threshold, "resample": view.resample,
            "index_unit": layout.unit, "index_tz": layout.tz,
            **{k: fields[k] for k in ("reports", "structures", "calibrations")},
        }
        arrays = {
            "lengths": np.asarray(fields["lengths"], np.int64),
            "center": np.stack(fields["center"]),
            "spread": np.stack(fields["spread"]),
            "train_values": np.concatenate(fields["train_values"]),
            "train_dates": np.concatenate(fields["train_dates"]),
        }
        if self.model is not None:
            arrays["history"] = self.history.to_numpy(np.float64)
            arrays["history_iterations"] = self.history.index.to_numpy(np.int64)
            return write_model_file(path, meta, self.model, arrays)
        # A model per series: every model, history and ending.
        views = list(self.series.values())
        meta["infos"] = [f.info for f in views]
        arrays["history"] = np.concatenate([f.history.to_numpy(np.float64) for f in views])
        arrays["history_iterations"] = np.concatenate([f.history.index.to_numpy(np.int64) for f in views])
        arrays["history_lengths"] = np.asarray([len(f.history) for f in views], np.int64)
        return write_model_file(path, meta, views[0].model, arrays, models=[f.model for f in views])


def panel_from_file(meta: dict, model: ForecastModel, arr: dict[str, np.ndarray]) -> PanelForecaster:
    """The :class:`PanelForecaster` of a file written by :meth:`PanelForecaster.save`."""
    cols = list(model.config.columns)
    shared = not meta["_models"]
    cut = np.concatenate([[0], np.cumsum(arr.get("history_lengths", [len(arr["history"])]))])
    histories = []
    for k in range(len(cut) - 1):
        h = pd.DataFrame(arr["history"][cut[k] : cut[k + 1]], columns=meta["history_columns"],
                         index=pd.Index(arr["history_iterations"][cut[k] : cut[k + 1]], name="iteration"))
        histories.append(h.astype({"nfe_forward": np.int64, "nfe_backward": np.int64}))
    layout = FrameLayout(tuple(cols), meta["date_column"], meta.get("index_unit", "ns"), meta.get("index_tz"))
    step_days = model.config.step_days
    records = RecordStore()
    bounds = np.concatenate([[0], np.cumsum(arr["lengths"])])
    for i, sid in enumerate(meta["ids"]):
        lo, hi = bounds[i], bounds[i + 1]
        structure, cal = Structure.from_json(meta["structures"][i]), meta["calibrations"][i]
        dates = arr["train_dates"][lo:hi]
        positions = positions_since(layout.index(dates), structure.epoch_days, step_days).astype(np.int32)
        center, spread = tuple(arr["center"][i].tolist()), tuple(arr["spread"][i].tolist())
        records.put(sid, SeriesRecord(arr["train_values"][lo:hi], dates, positions, center, spread,
                                      step_days, layout, DataReport.from_dict(meta["reports"][i]), structure,
                                      Calibration.from_json(cal) if cal else None))
    threshold, resample = meta["outlier_threshold"], meta.get("resample")
    if shared:
        return PanelForecaster(model, meta["id_column"], meta["date_column"],
                               SeriesViews(records, model, histories[0], meta["info"], threshold, resample),
                               dict(meta["skipped"]), histories[0], meta["info"])
    series = {sid: r.forecaster(meta["_models"][i], histories[i], meta["infos"][i], threshold, resample)
              for i, (sid, r) in enumerate(records.items())}
    history = pd.concat({sid: f.history for sid, f in series.items()},
                        names=[meta["id_column"], "iteration"])
    return PanelForecaster(None, meta["id_column"], meta["date_column"], series, dict(meta["skipped"]),
                           history, meta["info"])


def _shown(items: list, limit: int = 5) -> str:
    text = ", ".join(map(str, items[:limit]))
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def fit_panel(
    data: pd.DataFrame | str | Path,
    id_column: str,
    *,
    read_options: dict[str, Any],
    columns: Sequence[str] | None = None,
    date_column: str | None = None,
    dedupe: str | None = None,
    resample: str | None = None,
    outlier_threshold: float = 6.0,
    horizon: int | None = None,
    seasonal: tuple[float, ...] | None = None,
    window: int | None = None,
    lookback: int | None = None,
    validation: int | None = None,
    half_life: float | None = None,
    skip_bad_series: bool = False,
    shared: bool = True,
    devices: int | None = None,
    jobs: int | None = None,
    progress: bool = True,
    console: Any = None,
    make_config: Callable[..., Config],
    train_persistent: bool = False,
) -> PanelForecaster:
    """Fit one global model to every series of a long-format panel (see the module docstring); called by
    :func:`pyanode.fit` with ``id_column``. A series that cannot be used (too few rows, a duplicate date, a
    grid step unlike the others') stops the fit with a message naming it, or with ``skip_bad_series`` is
    left out and listed in :attr:`PanelForecaster.skipped`. With ``shared=False``, a series whose every
    column's departures persist is not trained unless ``train_persistent`` (as :func:`pyanode.fit` does
    unless given ``iterations``)."""
    panel = read_panel(data, id_column, date_column=date_column, columns=list(columns) if columns else None,
                       dedupe=dedupe, **read_options)
    options = {"outlier_threshold": outlier_threshold, "resample": resample, "horizon": horizon,
               "seasonal": seasonal}
    store = RecordStore()  # each prepared series' record, kept on file as it comes
    outcomes = _prepare_all(panel, options, jobs, store)
    del panel  # the rows as read are not needed past here
    # Series whose rows did not read come first, as when every series was loaded before any was prepared.
    bad = {sid: str(why) for sid, why in outcomes.items() if isinstance(why, Unreadable)}
    prepared: dict[str, Summary] = {}
    for sid, done in outcomes.items():
        if isinstance(done, Summary):
            prepared[sid] = done
        elif not isinstance(done, Unreadable):
            bad[sid] = done
    del outcomes
    # Every series must share the grid step: the model's time unit and calendar are one for all.
    steps = pd.Series({sid: p.step_days for sid, p in prepared.items()})
    if len(steps):
        common = float(steps.mode().iloc[0])
        for sid in steps.index[~np.isclose(steps.to_numpy(), common)]:
            bad[sid] = (f"its step is {_step_name(steps[sid])} but most series' is {_step_name(common)}; "
                        "fit series of each frequency separately, or give --resample (resample=) to put them "
                        "on one")
            prepared.pop(sid)
            store.pop_key(sid)
    if bad and not skip_bad_series:
        sid, why = next(iter(bad.items()))
        more = (f" ({len(bad) - 1} more series {'has' if len(bad) == 2 else 'have'} problems)" if len(bad) > 1
                else "")
        raise DataError(f"series {sid!r}: {why}{more}; fix the data, or pass --skip-bad-series "
                        "(skip_bad_series=True) to fit the rest")
    if not prepared:
        raise DataError(f"no series can be fitted ({_shown([f'{k}: {v}' for k, v in bad.items()], 3)})")
    ids = list(prepared)
    first = store[ids[0]]
    step_days = first.step_days
    median_steps = int(np.median([p.steps for p in prepared.values()]))
    if horizon is None:  # each series' backtest horizon (its frequency's, or a quarter of its longest cycle)
        horizon = int(np.median([p.trusted for p in prepared.values()]))
    options = training_windows(median_steps, step_days, window, lookback, validation, half_life, horizon)
    # The shared field sees the calendar's phases only: a free cycle (structure.free_cycle) is one series'
    # own, and a union of many would be many inputs.
    periods = tuple(sorted({q for p in prepared.values() for q in p.periods if q in CALENDAR}))
    config = make_config(columns=first.layout.columns, periods=periods, step_days=step_days, epoch_days=0.0,
                         **options)
    phi = np.median([p.phis for p in prepared.values()], axis=0)
    model = ForecastModel(config, config.seed, phi=phi)
    date_column = first.report.date_column or "date"
    if not shared:
        return _fit_each(store, bad, id_column, date_column, make_config,
                         (window, lookback, validation, half_life), outlier_threshold=outlier_threshold,
                         resample=resample, progress=progress, console=console,
                         train_persistent=train_persistent)
    # Each series holds out the same tail to validate on, when it is long enough to spare it.
    v = config.validation
    held_out = [v if p.steps - v >= max(8, 2 * v) else 0 for p in prepared.values()]
    arrays = _Residuals(store, held_out)
    del prepared
    result = train_panel(model, arrays, held_out, horizon=horizon, devices=devices, progress=progress,
                         console=console)
    history, info = outcome(result)
    series = SeriesViews(store, result.model, history, info, outlier_threshold, resample)
    return PanelForecaster(result.model, id_column, date_column, series, bad, history, info)


class _Residuals(Sequence[GridArrays]):
    """Each prepared series' residual arrays (:func:`residual_arrays`, its structure refitted before its
    held-out tail of ``held_out[i]`` steps), made from its record when asked for and not kept: the training
    pool copies what it needs of them, so a panel never holds them all at once."""

    def __init__(self, records: Mapping[str, SeriesRecord], held_out: Sequence[int]):
        self._records, self._ids, self._held_out = records, list(records), list(held_out)

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, i: int) -> GridArrays:  # type: ignore[override]
        p = self._records[self._ids[i]]
        return residual_arrays(p.structure, p.values, p.positions, self._held_out[i])


def _fit_each(prepared: Mapping[str, SeriesRecord], bad: dict[str, str], id_column: str, date_column: str,
              make_config: Callable[..., Config], options: tuple, outlier_threshold: float,
              resample: str | None, progress: bool, console: Any, train_persistent: bool = False
              ) -> PanelForecaster:
    """``shared=False``: a model per series, each fitted as :func:`pyanode.fit` fits a single series (its
    field sees its own cycles, a free cycle, structure.free_cycle, among them, as its fit alone would)."""
    series = {}
    interrupted = False
    for sid, p in prepared.items():
        config = make_config(columns=p.layout.columns, periods=p.structure.periods,
                             step_days=p.step_days, epoch_days=p.structure.epoch_days,
                             **training_windows(p.steps, p.step_days, *options,
                                                p.structure.columns[0].trusted))
        config = with_second_order(config, p.structure, p.report)
        model = ForecastModel(config, config.seed, phi=Summary.of(p).phis,
                              second_order=[s.second_order for s in p.structure.columns])
        model, history, info, interrupted = trained(
            model, p.structure, p.values, p.positions, p.report, train_persistent=train_persistent,
            progress=progress, console=console, what=f"training series {sid!r}")
        series[sid] = p.forecaster(model, history, info, outlier_threshold, resample)
        if interrupted:  # Ctrl-C: keep the series fitted so far
            break
    history = pd.concat({sid: f.history for sid, f in series.items()}, names=[id_column, "iteration"])
    info = {"stopped": ("interrupted: " if interrupted else "")
                       + f"a model per series ({len(series)} of {len(prepared)} fitted)",
            "best_iteration": None, "best_validation": None}
    return PanelForecaster(None, id_column, date_column, series, bad, history, info)


PARALLEL_FROM = 64  # series: fewer are prepared in this process (starting workers costs seconds)
PREPARE_CHUNK = 128  # series handed to a worker at once (a second or so of its work)


class Unreadable(str):
    """Why a series' rows did not read (:meth:`PanelLoader.load`'s error), told apart from why a series
    that read could not be prepared: a fit lists the unreadable series first."""


class Summary(NamedTuple):
    """What the fit needs to know of a prepared series beside its record (which is kept on file)."""

    steps: int  # its grid's length
    step_days: float
    periods: tuple[float, ...]  # its structure's cycles
    phis: tuple[float, ...]  # its columns' residual decay rates
    trusted: int  # its backtest horizon

    @classmethod
    def of(cls, r: SeriesRecord) -> Summary:
        cols = r.structure.columns
        return cls(r.steps, r.step_days, r.structure.periods, tuple(s.phi for s in cols), cols[0].trusted)


# A prepared series (its record, pickled, and its summary), or why not (an :class:`Unreadable` when it did
# not read).
Outcome = tuple[bytes, Summary] | str


def _prepare_chunk(chunk: list[tuple[str, pd.DataFrame]], loader: PanelLoader, options: dict[str, Any]
                   ) -> list[tuple[str, Outcome]]:
    """Load and prepare each series of ``chunk`` (its id and rows as read). Run in a worker, so the loading
    is spread over the cores too and each loaded frame lives only while its series is prepared. The
    records come back pickled: the parent files them without unpickling."""
    out: list[tuple[str, Outcome]] = []
    for sid, rows in chunk:
        try:
            df, rep = loader.load(rows)
        except DataError as err:
            out.append((sid, Unreadable(err)))
            continue
        try:
            record = SeriesRecord.from_prepared(prepare_series(df, rep, **options))
        except DataError as err:
            out.append((sid, str(err)))
            continue
        out.append((sid, (pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL), Summary.of(record))))
    return out


def _prepare_all(panel: PanelRows, options: dict[str, Any], jobs: int | None, store: RecordStore
                 ) -> dict[str, Summary | str]:
    """Prepare every series (:func:`prepare_series`) over ``jobs`` worker processes: each prepared series'
    :class:`SeriesRecord` goes into ``store`` as it comes, and the result gives, in the order of
    ``panel.ids``, its :class:`Summary` or why it could not be prepared (an :class:`Unreadable` when its
    rows did not read).

    Each series' rows are picked out of the panel only when its chunk is handed out, and loaded and
    prepared in the worker, so no more than the chunks in flight (two per worker, of at most
    :data:`PREPARE_CHUNK` series) are ever held as frames: the parent keeps the rows as read and a
    summary per series, never a frame or a record.

    The closed-form work is per series and independent (numpy, no JAX), so it spreads over the cores.
    The workers are forked, where the system can (Linux): a spawned worker would re-run the caller's
    script from the top, which a script without an ``if __name__ == "__main__"`` guard cannot survive.
    The children run no JAX code, so JAX's warning about forking a multithreaded process (its threads'
    locks) does not concern them and is silenced. Elsewhere the series are prepared here, one by one."""
    ids = panel.ids
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 1:
        raise PyanodeError(f"n_jobs must be a positive integer, got {jobs}")
    import multiprocessing

    def take(part: Sequence[int]) -> list[tuple[str, pd.DataFrame]]:
        return [(ids[i], panel.rows(i)) for i in part]

    def keep(outcomes: list[tuple[str, Outcome]]) -> list[tuple[str, Summary | str]]:
        kept: list[tuple[str, Summary | str]] = []
        for sid, done in outcomes:
            if isinstance(done, str):
                kept.append((sid, done))
            else:
                store.put_pickled(sid, done[0])
                kept.append((sid, done[1]))
        return kept

    if jobs == 1 or len(ids) < PARALLEL_FROM or "fork" not in multiprocessing.get_all_start_methods():
        result = {sid: done for i in range(len(ids))
                  for sid, done in keep(_prepare_chunk(take([i]), panel.loader, options))}
    else:
        import concurrent.futures
        import warnings

        # A few chunks per worker, to even out the load, and never more than PREPARE_CHUNK series: the chunks
        # in flight (two per worker) are what the parent holds of the rows handed out.
        size = max(1, min(math.ceil(len(ids) / (4 * jobs)), PREPARE_CHUNK))
        parts = [range(k, min(k + size, len(ids))) for k in range(0, len(ids), size)]
        done: dict[int, list[tuple[str, Summary | str]]] = {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")
                                                        ) as pool:
                running: dict[concurrent.futures.Future, int] = {}
                for k, part in enumerate(parts):
                    running[pool.submit(_prepare_chunk, take(part), panel.loader, options)] = k
                    while len(running) >= 2 * jobs or (k == len(parts) - 1 and running):
                        finished, _ = concurrent.futures.wait(running, return_when="FIRST_COMPLETED")
                        for future in finished:
                            done[running.pop(future)] = keep(future.result())
        result = {sid: summary for k in range(len(parts)) for sid, summary in done[k]}
    store.arrange(sid for sid, done in result.items() if not isinstance(done, str))  # the data's order
    return result


def _step_name(step_days: float) -> str:
    names = {1.0: "a day", 7.0: "a week", 365.25 / 12: "a month", 365.25 / 4: "a quarter", 365.25: "a year"}
    for k, name in names.items():
        if math.isclose(step_days, k):
            return name
    return f"{step_days * 24:.4g} hours" if step_days < 1 else f"{step_days:.4g} days"

