"""Forecasting with an augmented neural ODE: ``pyanode.fit(df) -> Forecaster``.

The model (an Augmented Neural ODE, Dupont, Doucet & Teh, NeurIPS 2019, driven by the calendar):

    h(t0) = E([x(t0 - (W-1) dt), ..., x(t0)], s(t0))        (encoder, linear; h in R^(n + augment))
    dh/dt = r * f_theta(h, s(t))                               (vector field, MLP)
    x_hat(t) = h(t)[:n]                                        (readout: the first n components)

``x`` are the n modelled columns, scaled with training statistics; ``s(t)`` are calendar Fourier
features (``sin/cos(2 pi k t / P)`` for a yearly and/or weekly period ``P``; none for the autonomous model
of the SciML weather tutorial); ``r`` is a fixed rate that makes O(1) outputs of the MLP mean an O(1)
change over a few data steps. The ``augment`` extra dimensions start from the encoder (zeros in the
tutorial's model), so they can carry what the observed columns alone do not determine, such as how far
the present is from the usual season (an anomaly that persists for months).

Training is multiple shooting anchored on the data: each training window starts at an observed date ``t0``
(the encoder reads the last ``W`` observations, exactly what a forecast from the end of the data does) and the
ODE is integrated ``L`` steps ahead; the loss is the masked mean squared error between the readout and the
observations in the window (missing and outlier values carry no weight). A curriculum grows the part of the
window that counts in the loss (L/8, L/4, L/2, then all of it), the tutorial's growing-prefix trick applied to
each window. Gradients come from :func:`pyanode.solve` with the chosen ``sensealg``, by default
``"checkpoint"`` (backpropagation through the solver's steps): the loss reads every day of a 128-day window,
and a continuous adjoint (``"interpolating"``, the SciML tutorial's choice) must stop at each of those 129
save times, so it costs 10x-12x more per gradient here while giving the same forecasts (Delhi, three seeds:
equal test MAE to three digits; BENCHMARKS.md). AdamW with warm-up and cosine decay, gradient clipping.
Windows are drawn more often the more recent they are (the chance halves every ``half_life`` steps back), so
the learned seasonal attractor follows the present regime (Delhi's dry 2016) rather than the average of all
years. The model kept is a running average (EMA) of the parameters, steadier than the last iterate. A
validation tail (the last steps of the data) is forecast from just before it every few iterations; training
stops early when it stops improving and the best averaged parameters are kept. Ctrl-C stops training and keeps
the best model so far; the same ``seed`` gives the same model and forecast.

This windowed training is a form of multiple shooting in which each shooting node's state comes from
the data through the encoder (rather than being a free parameter), which keeps the cost per iteration
independent of the series' length and trains exactly the map a forecast uses.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from pyanode._io import atomic_path
from pyanode.engine import SENSEALGS, SOLVERS, solve
from pyanode.errors import PyanodeError
from pyanode.timeseries import (
    DataError,
    DataReport,
    Scaler,
    baseline_forecasts,
    clean,
    load_frame,
    metrics,
    resample_frame,
)

__all__ = ["Forecaster", "ForecastModel", "ModelFileError", "fit", "load"]

FORMAT = "pyanode-forecaster"
FORMAT_VERSION = 1
SEASONALITIES = ("auto", "none", "yearly", "weekly", "yearly+weekly")
ACTIVATIONS = {"tanh": jnp.tanh, "swish": jax.nn.swish, "softplus": jax.nn.softplus, "relu": jax.nn.relu}


class ModelFileError(PyanodeError):
    """A saved forecaster file that cannot be read (missing, corrupt, or not a pyanode model)."""


# ----------------------------------------------------------------------------------------------
# Configuration and the time grid


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a forecaster's model and training (stored as JSON in saved files)."""

    columns: tuple[str, ...]
    augment: int = 2
    hidden: int = 32
    depth: int = 2
    activation: str = "tanh"
    solver: str = "tsit5"
    rtol: float = 1e-3
    atol: float = 1e-4
    sensealg: str = "checkpoint"
    periods: tuple[float, ...] = ()  # seasonal periods in days
    harmonics: int = 2
    lookback: int = 90  # encoder window in steps
    window: int = 128  # training window in steps
    batch: int = 32
    iterations: int = 400
    lr: float = 1e-2
    weight_decay: float = 1e-4
    validation: int = 0  # steps held out at the end for early stopping
    patience: int = 10  # validation checks without improvement before stopping
    ema: float = 0.95  # decay of the running average of the parameters (the returned model)
    half_life: float = 0.0  # recency weighting of training windows, in steps (0: uniform)
    seed: int = 0
    step_days: float = 1.0  # grid step
    unit_days: float = 365.25  # ODE time unit
    epoch_days: float = 0.0  # first grid date, days since 1970-01-01

    @property
    def n(self) -> int:
        return len(self.columns)

    @property
    def state(self) -> int:
        return self.n + self.augment

    @property
    def dt(self) -> float:
        """The grid step in ODE time units."""
        return self.step_days / self.unit_days

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Config:
        d = dict(d)
        d["columns"] = tuple(d["columns"])
        d["periods"] = tuple(d["periods"])
        return cls(**d)


def _check_options(
    augment: int, hidden: int, depth: int, solver: str, rtol: float, atol: float, sensealg: str,
    seasonality: str, iterations: int | None, activation: str,
) -> None:
    if not isinstance(augment, (int, np.integer)) or augment < 0:
        raise PyanodeError(f"augment must be a non-negative integer, got {augment!r}")
    if hidden < 1 or depth < 1:
        raise PyanodeError(f"hidden and depth must be positive, got hidden={hidden}, depth={depth}")
    if solver not in SOLVERS or not SOLVERS[solver].adaptive:
        adaptive = [k for k, v in SOLVERS.items() if v.adaptive]
        raise PyanodeError(f"unknown or fixed-step solver {solver!r}; choose one of: {', '.join(adaptive)}")
    if not (rtol > 0 and atol > 0):
        raise PyanodeError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    if sensealg not in SENSEALGS:
        raise PyanodeError(f"unknown sensealg {sensealg!r}; choose one of: {', '.join(SENSEALGS)}")
    if seasonality not in SEASONALITIES:
        raise PyanodeError(f"unknown seasonality {seasonality!r}; choose one of: {', '.join(SEASONALITIES)}")
    if iterations is not None and iterations < 1:
        raise PyanodeError(f"iterations must be a positive integer, got {iterations}")
    if activation not in ACTIVATIONS:
        raise PyanodeError(f"unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}")


CALENDAR_STEPS = (1.0, 7.0, 365.25 / 12, 365.25 / 4, 365.25)  # days: daily, weekly, monthly, ...


def _grid(index: pd.DatetimeIndex) -> tuple[float, np.ndarray, int]:
    """The grid step (days), each row's grid position, and how many rows share a position.

    The step is the median spacing, snapped to a calendar step (a day, a week, a mean month of 30.44
    days, a quarter, a year) when within 10% of one, so that month starts (28 to 31 days apart) land
    one per position. Rows go to the nearest position: a gap is simply positions without observations.
    """
    days = (index - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
    days = np.asarray(days, dtype=np.float64)
    med = float(np.median(np.diff(days)))
    for cal in CALENDAR_STEPS:
        if abs(med - cal) <= 0.1 * cal:
            med = cal
            break
    pos = np.rint((days - days[0]) / med).astype(np.int64)
    return med, pos, int(len(pos) - len(np.unique(pos)))


def _auto_periods(index: pd.DatetimeIndex, step_days: float, values: pd.DataFrame) -> tuple[float, ...]:
    """Seasonal periods for ``seasonality="auto"``.

    Yearly when the data span at least a year and are sampled at least monthly; weekly when the data are
    daily or finer, span at least eight weeks, and the day of the week explains a significant part of
    the day-to-day variation (one-way ANOVA of the de-trended values on the weekday, p < 0.001 in some
    column) -- weather does not know the day of the week, shop sales do.
    """
    span = (index[-1] - index[0]) / pd.Timedelta(days=1)
    periods = []
    if span >= 365 and step_days <= 31:
        periods.append(365.25)
    if step_days <= 1.0 and span >= 56:
        from scipy import stats

        detrended = values - values.rolling(7, center=True, min_periods=4).mean()
        dow = index.day_of_week
        for c in values.columns:
            groups = [detrended[c][(dow == d) & detrended[c].notna().to_numpy()].to_numpy() for d in range(7)]
            groups = [g for g in groups if len(g) > 2]
            if len(groups) == 7 and stats.f_oneway(*groups).pvalue < 1e-3:
                periods.append(7.0)
                break
    return tuple(periods)


# ----------------------------------------------------------------------------------------------
# The model


def _ftype() -> Any:
    """JAX's default float (float32, or float64 after :func:`pyanode.enable_x64`): all arrays use it."""
    return jnp.result_type(float)


def calendar_features(t_days: jax.Array, periods: Sequence[float], harmonics: int) -> jax.Array:
    """``[sin(2 pi k t / P), cos(2 pi k t / P)]`` for each period P and k = 1..harmonics (t in days)."""
    feats = []
    for p in periods:
        for k in range(1, harmonics + 1):
            w = 2 * math.pi * k / p
            feats += [jnp.sin(w * t_days), jnp.cos(w * t_days)]
    if not feats:
        return jnp.zeros((*jnp.shape(t_days), 0), dtype=jnp.result_type(t_days))
    return jnp.stack(feats, axis=-1)


class ForecastModel(eqx.Module):
    """Encoder and vector field of the forecaster (an equinox pytree; see the module docstring)."""

    encoder: eqx.nn.Linear
    field: eqx.nn.MLP
    config: Config = eqx.field(static=True)

    def __init__(self, config: Config, key: jax.Array):
        c = config
        nf = 2 * c.harmonics * len(c.periods)
        k1, k2 = jax.random.split(key)
        m = _encoder_inputs(c.lookback)
        enc = eqx.nn.Linear(m * c.n + nf, c.state, key=k1)
        # Start the encoder at "the mean of the last few observations, augmented dims at zero".
        w = np.zeros((c.state, m * c.n + nf))
        k = _n_recent(c.lookback)
        recent = min(k, 3)
        for j in range(c.n):
            for lag in range(recent):
                w[j, (k - 1 - lag) * c.n + j] = 1.0 / recent
        self.encoder = eqx.tree_at(lambda m: (m.weight, m.bias), enc,
                                   (jnp.asarray(w, _ftype()), jnp.zeros((c.state,), _ftype())))
        field = eqx.nn.MLP(c.state + nf, c.state, c.hidden, c.depth, activation=ACTIVATIONS[c.activation],
                           key=k2)
        # A small last layer: the model starts close to "nothing changes" (persistence).
        last = field.layers[-1]
        field = eqx.tree_at(lambda m: (m.layers[-1].weight, m.layers[-1].bias), field,
                            (last.weight * 0.1, jnp.zeros_like(last.bias)))
        self.field = field
        self.config = config

    @property
    def rate(self) -> float:
        # O(1) field outputs mean an O(1) change over about eight grid steps.
        return 1.0 / (8.0 * self.config.dt)

    def features(self, t_days: jax.Array) -> jax.Array:
        return calendar_features(t_days, self.config.periods, self.config.harmonics)

    def encode(self, lags: jax.Array, t_days: jax.Array) -> jax.Array:
        """Initial states from the last ``lookback`` (scaled, gap-filled) observations, shape (B, W, n)."""
        x = jnp.concatenate([lags.reshape(lags.shape[0], -1), self.features(t_days)], axis=-1)
        return jax.vmap(self.encoder)(x)


def _vector_field(t: jax.Array, h: jax.Array, args: Any) -> jax.Array:
    """``dh/dt`` for a batch of windows: ``args = (model, origin_days)``; ``t`` is time since the origin."""
    model, origin_days = args
    c = model.config
    s = model.features(origin_days + t * c.unit_days)
    return model.rate * jax.vmap(model.field)(jnp.concatenate([h, s.astype(h.dtype)], axis=-1))


def _rollout(
    model: ForecastModel, lags: jax.Array, origin_days: jax.Array, taus: jax.Array,
    nfe_probe: jax.Array | None = None, max_steps: int = 4096,
) -> tuple[jax.Array, jax.Array]:
    """Readouts (B, len(taus), n) at times ``taus`` (ODE units, taus[0] = 0) after each origin."""
    c = model.config
    h0 = model.encode(lags, origin_days)
    # The engine passes ``args`` through as arrays (gradients flow to them); the static parts of the
    # model (activation functions, configuration) travel in the closure.
    params, static = eqx.partition(model, eqx.is_array)

    def f(t, h, args):
        return _vector_field(t, h, (eqx.combine(args[0], static), args[1]))

    sol = solve(
        f, h0, taus, args=(params, origin_days), solver=c.solver, rtol=c.rtol, atol=c.atol,
        sensealg=c.sensealg, max_steps=max_steps, nfe_probe=nfe_probe,
    )
    return jnp.swapaxes(sol.ys[..., : c.n], 0, 1), sol.stats.nfe_forward


def _masked_mse(pred: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
    obs = ~jnp.isnan(target)
    w = jnp.where(obs, weight, 0.0)
    sq = jnp.where(obs, (pred - jnp.nan_to_num(target)) ** 2, 0.0)
    return jnp.sum(w * sq) / jnp.maximum(jnp.sum(w), 1.0)


# ----------------------------------------------------------------------------------------------
# Training


@dataclasses.dataclass
class _Arrays:
    """Training data on the grid: scaled values with NaN (``y``), gap-filled values (``filled``)."""

    y: np.ndarray  # (T, n)
    filled: np.ndarray  # (T, n)
    days: np.ndarray  # (T,) grid dates, days since 1970-01-01


def _grid_arrays(clean_df: pd.DataFrame, scaler: Scaler, config: Config, pos: np.ndarray) -> _Arrays:
    T = int(pos[-1]) + 1
    vals = scaler.transform(clean_df.to_numpy(dtype=np.float64))
    y = np.full((T, config.n), np.nan)
    if len(np.unique(pos)) == len(pos):
        y[pos] = vals
    else:  # rows that fall on the same grid step are averaged
        merged = pd.DataFrame(vals).groupby(pos).mean()
        y[merged.index.to_numpy()] = merged.to_numpy()
    filled = pd.DataFrame(y).ffill().bfill().fillna(0.0).to_numpy()
    days = config.epoch_days + config.step_days * np.arange(T)
    return _Arrays(y=y, filled=filled, days=days)


def _n_recent(lookback: int) -> int:
    return min(7, lookback)


def _encoder_inputs(lookback: int) -> int:
    """Rows of the encoder's input: the last few values, then trailing means over lookback/3, lookback."""
    return _n_recent(lookback) + (2 if lookback > _n_recent(lookback) else 0)


def _lag_windows(filled: np.ndarray, lookback: int) -> np.ndarray:
    """(T, m, n): per step, its last few values (newest last) and its trailing means (multi-scale).

    The recent values fix the present state; the means over the last ``lookback / 3`` and ``lookback``
    steps tell the encoder how far the recent past sits from the usual season (an anomaly that can
    persist for months, as a dry winter does), without a long, noisy input.
    """
    k = _n_recent(lookback)
    pad = np.concatenate([np.repeat(filled[:1], lookback - 1, axis=0), filled], axis=0)
    idx = np.arange(len(filled))[:, None] + np.arange(lookback - k, lookback)[None, :]
    parts = [pad[idx]]
    if lookback > k:
        csum = np.concatenate([np.zeros((1, filled.shape[1])), np.cumsum(pad, axis=0)], axis=0)
        end = np.arange(len(filled)) + lookback
        for w in (max(1, lookback // 3), lookback):
            parts.append(((csum[end] - csum[end - w]) / w)[:, None, :])
    return np.concatenate(parts, axis=1)


def _train(
    model: ForecastModel, arrays: _Arrays, *, progress: bool, console: Any = None
) -> tuple[ForecastModel, pd.DataFrame, dict]:
    c = model.config
    T = len(arrays.y)
    t_fit = T - c.validation
    L = c.window
    lags = jnp.asarray(_lag_windows(arrays.filled, c.lookback), _ftype())
    # Targets for each origin i: y[i .. i+L], NaN (no weight) beyond the training part.
    ypad = np.concatenate([arrays.y[:t_fit], np.full((L, c.n), np.nan)], axis=0)
    targets = jnp.asarray(np.stack([ypad[i : i + L + 1] for i in range(t_fit)]), _ftype())
    days = jnp.asarray(arrays.days, _ftype())
    taus = jnp.asarray(c.dt * np.arange(L + 1), _ftype())
    n_origins = max(t_fit - 1, 1)
    # Recent windows are drawn more often (weight halves every ``half_life`` steps back), so the
    # learned seasonal attractor follows the present regime rather than the average of all years.
    age = (n_origins - 1 - np.arange(n_origins)).astype(np.float64)
    logits = -np.log(2.0) * age / c.half_life if c.half_life > 0 else np.zeros(n_origins)
    origin_p = jnp.asarray(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum(), _ftype())

    val = None
    if c.validation > 0:
        o = t_fit - 1
        val = (lags[o : o + 1], days[o : o + 1], jnp.asarray(c.dt * np.arange(c.validation + 1), _ftype()),
               jnp.asarray(arrays.y[o : o + c.validation + 1][None], _ftype()))

    schedule = optax.warmup_cosine_decay_schedule(c.lr / 10, c.lr, max(1, c.iterations // 20), c.iterations,
                                                  c.lr / 20)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=c.weight_decay))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = opt.init(params)
    ema = params

    def loss_fn(params, probe, idx, weight):
        m = eqx.combine(params, static)
        pred, nfe = _rollout(m, lags[idx], days[idx], taus, probe)
        return _masked_mse(pred, targets[idx], weight[None, :, None]), nfe

    @eqx.filter_jit
    def step(params, ema, opt_state, it, key):
        idx = jax.random.choice(jax.random.fold_in(key, it), n_origins, (c.batch,), p=origin_p)
        # Curriculum: the loss counts the first L/8, L/4, L/2 steps of the windows, then all of them.
        stage = jnp.minimum(4 * it // max(c.iterations, 1), 3)
        horizon = jnp.maximum(L // (2 ** (3 - stage)), 1)
        weight = (jnp.arange(L + 1) <= horizon).astype(_ftype())
        (loss, nfe), (grads, nfe_b) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            params, jnp.zeros(()), idx, weight)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        # Polyak averaging: the average of the recent iterates is a steadier model than the last one.
        decay = jnp.minimum(c.ema, it / (it + 10.0))
        ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
        return params, ema, opt_state, loss, nfe, nfe_b

    @eqx.filter_jit
    def val_loss(params):
        m = eqx.combine(params, static)
        pred, _ = _rollout(m, val[0], val[1], val[2], max_steps=16384)
        return _masked_mse(pred, val[3], jnp.ones((1, val[2].shape[0], 1)))

    key = jax.random.PRNGKey(c.seed)
    rows = []
    best = (math.inf, params)
    checks_without_gain = 0
    check_every = max(10, c.iterations // 30)
    info = {"stopped": "completed", "best_iteration": 0, "best_validation": None}
    start = time.perf_counter()
    bar = _progress(progress, console)
    task = bar.add_task("fitting", total=c.iterations, loss=float("nan"), nfe=0, val="-") if bar else None
    try:
        if bar:
            bar.start()
        for it in range(c.iterations):
            params, ema, opt_state, loss, nfe, nfe_b = step(params, ema, opt_state, jnp.asarray(it), key)
            loss = float(loss)
            if not math.isfinite(loss):
                info["stopped"] = f"loss became {loss} at iteration {it}"
                break
            rows.append((loss, int(nfe), int(nfe_b), time.perf_counter() - start))
            if bar:
                vtxt = f"{info['best_validation']:.4f}" if info["best_validation"] is not None else "-"
                bar.update(task, advance=1, loss=loss, nfe=int(nfe) + int(nfe_b), val=vtxt)
            last = it == c.iterations - 1
            if val is not None and ((it + 1) % check_every == 0 or last):
                # Only the later stages train on windows as long as a forecast; judge those.
                v = float(val_loss(ema)) if 4 * it >= c.iterations else math.inf
                if v < best[0]:
                    best = (v, ema)
                    info["best_iteration"], info["best_validation"] = it + 1, v
                    checks_without_gain = 0
                elif math.isfinite(v):
                    checks_without_gain += 1
                    if checks_without_gain >= c.patience and not last:
                        info["stopped"] = f"early stop at iteration {it + 1} (validation stopped improving)"
                        break
            elif val is None:
                best = (0.0, ema)  # without a validation tail, the final average is the model
                info["best_iteration"] = it + 1
    except KeyboardInterrupt:
        info["stopped"] = f"interrupted at iteration {len(rows)} (kept the best model so far)"
    finally:
        if bar:
            bar.stop()
    final = best[1] if math.isfinite(best[0]) else ema
    history = pd.DataFrame(rows, columns=["loss", "nfe_forward", "nfe_backward", "seconds"])
    history.index.name = "iteration"
    return eqx.combine(final, static), history, info


def _progress(enabled: bool, console: Any):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[val]}  NFE {task.fields[nfe]}"),
        TimeRemainingColumn(), console=console or Console(stderr=True), transient=False,
    )


# ----------------------------------------------------------------------------------------------
# The public object


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
        arrays = _grid_arrays(self.train, self.scaler, c, self._positions())
        lags = _lag_windows(arrays.filled, c.lookback)[-1:]
        pred, _ = _predict_jit(self.model, jnp.asarray(lags, _ftype()),
                               jnp.asarray(arrays.days[-1:], _ftype()), jnp.asarray(taus, _ftype()))
        z = np.asarray(pred[0], dtype=np.float64)
        if tau[0] > 0:  # the origin (tau = 0) was only the start of the solve
            z = z[1:]
        values = self.scaler.inverse(z)
        out = pd.DataFrame(values, index=uniq, columns=self.columns).reindex(idx)
        out.index.name = self.train.index.name or "date"
        return out

    def _positions(self) -> np.ndarray:
        days = np.asarray((self.train.index - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1))
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
            "format": FORMAT, "version": FORMAT_VERSION, "config": self.config.to_json(),
            "report": self.report.to_dict(), "info": self.info,
            "outlier_threshold": self.outlier_threshold, "index_name": self.train.index.name,
            "index_unit": self.train.index.unit, "resample": self.resample,
        }
        buf = io.BytesIO()
        eqx.tree_serialise_leaves(buf, self.model)
        arrays = {
            "scaler_mean": self.scaler.mean, "scaler_std": self.scaler.std,
            "center": self._center.to_numpy(np.float64), "spread": self._spread.to_numpy(np.float64),
            "train_values": self.train.to_numpy(np.float64),
            "train_dates": self.train.index.to_numpy().astype("datetime64[ns]").astype(np.int64),
            "history": self.history.to_numpy(np.float64),
        }
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("meta.json", json.dumps(meta, indent=1))
            z.writestr("model.eqx", buf.getvalue())
            for name, arr in arrays.items():
                b = io.BytesIO()
                np.save(b, np.ascontiguousarray(arr), allow_pickle=False)
                z.writestr(f"{name}.npy", b.getvalue())
        return path


@eqx.filter_jit
def _predict_jit(model, lags, days, taus):
    return _rollout(model, lags, days, taus, max_steps=65536)


def load(path: str | Path) -> Forecaster:
    """Read a forecaster written by :meth:`Forecaster.save`. Never runs code from the file."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not a saved forecaster")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "meta.json" not in names:
                raise ModelFileError(f"{path} is not a pyanode forecaster (no meta.json inside)")
            meta = json.loads(z.read("meta.json").decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ModelFileError(f"{path} is not a pyanode forecaster file")
            if meta.get("version") != FORMAT_VERSION:
                raise ModelFileError(f"{path} has format version {meta.get('version')}; this pyanode reads "
                                     f"version {FORMAT_VERSION}")
            arr = {n[:-4]: np.load(io.BytesIO(z.read(n)), allow_pickle=False)
                   for n in names if n.endswith(".npy")}
            config = Config.from_json(meta["config"])
            skeleton = ForecastModel(config, jax.random.PRNGKey(0))
            model = eqx.tree_deserialise_leaves(io.BytesIO(z.read("model.eqx")), skeleton)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError, EOFError, RuntimeError) as err:
        raise ModelFileError(f"{path} is not a readable pyanode forecaster file "
                             f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
                             ) from None
    cols = list(config.columns)
    idx = pd.DatetimeIndex(arr["train_dates"].astype("datetime64[ns]"), name=meta.get("index_name"))
    idx = idx.as_unit(meta.get("index_unit", "ns"))
    train = pd.DataFrame(arr["train_values"], index=idx, columns=cols)
    history = pd.DataFrame(arr["history"], columns=["loss", "nfe_forward", "nfe_backward", "seconds"])
    for k in ("nfe_forward", "nfe_backward"):
        history[k] = history[k].astype(np.int64)
    history.index.name = "iteration"
    return Forecaster(
        model, Scaler(arr["scaler_mean"], arr["scaler_std"]), train, DataReport.from_dict(meta["report"]),
        history, meta["info"], pd.Series(arr["center"], index=cols), pd.Series(arr["spread"], index=cols),
        meta["outlier_threshold"], meta.get("resample"),
    )


# ----------------------------------------------------------------------------------------------
# fit


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
    """Fit an augmented neural ODE forecaster to a time series (see the module docstring for the model).

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
        dedupe, resample: see :func:`pyanode.timeseries.load_frame`.
        outlier_threshold: robust z-score above which a value is masked as an outlier.
        seed: seeds the initial parameters and the choice of windows (same seed, same forecast).
        progress: show a progress bar (stderr) with loss, validation loss, NFE and ETA.

    Returns:
        A fitted :class:`Forecaster`.
    """
    _check_options(augment, hidden, depth, solver, rtol, atol, sensealg, seasonality, iterations, activation)
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
    step_days, pos, merged = _grid(df.index)
    if merged:
        report.notes.append(f"{merged} rows fell on the same {step_days:.4g}-day grid step as another row "
                            "and were averaged into it")
    T = int(pos[-1]) + 1
    if seasonality == "auto":
        periods = _auto_periods(df.index, step_days, df)
    else:
        periods = tuple({"none": (), "yearly": (365.25,), "weekly": (7.0,),
                         "yearly+weekly": (365.25, 7.0)}[seasonality])
    win = window if window is not None else min(128, max(2, T // 2))
    # About three months of history (90 daily steps, 13 weekly, 3 monthly), at most an eighth of the data.
    look = lookback if lookback is not None else max(1, min(round(90 / step_days) or 1, T // 8))
    if validation is None:
        validation = min(win, T // 24) if T >= 48 else 0
    if not 0 <= validation < T // 2:
        raise PyanodeError(
            f"validation must be between 0 and {T // 2 - 1} steps for these data, got {validation}")
    if iterations is None:
        iterations = 400
    if half_life is None:
        half_life = max(win, T // 8)
    config = Config(
        columns=tuple(df.columns), augment=int(augment), hidden=hidden, depth=depth, activation=activation,
        solver=solver, rtol=rtol, atol=atol, sensealg=sensealg, periods=periods, lookback=look,
        window=win, batch=batch, patience=patience, half_life=float(half_life or 0.0), iterations=iterations,
        lr=lr, validation=validation, seed=seed,
        step_days=step_days, unit_days=365.25 if step_days >= 1 else 1.0,
        epoch_days=float((df.index[0] - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)),
    )
    scaler = Scaler.fit(df)
    model = ForecastModel(config, jax.random.PRNGKey(seed))
    arrays = _grid_arrays(df, scaler, config, pos)
    model, history, info = _train(model, arrays, progress=progress, console=console)
    return Forecaster(model, scaler, df, report, history, info, center, spread, outlier_threshold, resample)
