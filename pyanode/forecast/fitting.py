"""Step 4 of the forecaster: training the model on the series, on the one training loop.

Training is multiple shooting anchored on the data: each training window starts at an observed date ``t0``
(the encoder reads the last ``W`` observations, exactly what a forecast from the end of the data does) and the
ODE is integrated ``L`` steps ahead; the loss is the masked mean squared error between the readout and the
observations in the window (missing and outlier values carry no weight). A curriculum grows the part of the
window that counts in the loss (L/8, L/4, L/2, then all of it), the SciML tutorial's growing-prefix trick
applied to each window; the solve stops where the counted part ends, so the early stages cost less.
Gradients come from :func:`pyanode.solve` with the chosen ``sensealg``, by default
``"checkpoint"`` (backpropagation through the solver's steps): the loss reads every day of a 128-day window,
and a continuous adjoint (``"interpolating"``, the SciML tutorial's choice) must stop at each of those 129
save times, so it costs 10x-12x more per gradient here while giving the same forecasts (Delhi, three seeds:
equal test MAE to three digits; BENCHMARKS.md). AdamW with warm-up and cosine decay, gradient clipping.

Windows are drawn more often the more recent they are (the chance halves every ``half_life`` steps back), so
the learned seasonal attractor follows the present regime (Delhi's dry 2016) rather than the average of all
years. The model kept is a running average (EMA) of the parameters, steadier than the last iterate. A
validation tail (the last steps of the data) is forecast every few iterations, from four origins in it and as
far ahead as the forecasts asked for will go (a rolling-origin test of the tail); training stops early when
it stops improving and the best averaged parameters are kept. The same tail then judges how much of the
learned field to trust: all of it, half of it or none (the closed-form start), and with several columns
each column's own choice among the three (:func:`column_mix`), whichever forecasts the tail best (a field
fitted to noise is not kept). All of this (steps, EMA,
validation, early stopping, progress bar, Ctrl-C) but the verdict is :func:`pyanode.loop.run_loop`, the loop
the classifiers train on too; this module supplies the window loss, its data, the validation score and
the verdict.

This windowed training is a form of multiple shooting in which each shooting node's state comes from the data
through the encoder (rather than being a free parameter), which keeps the cost per iteration independent of
the series' length and trains exactly the map a forecast uses.

The series travels into the compiled step as arguments (:class:`WindowData`), padded to a size bucket, so
that fits of the same model on other data of similar length reuse one compiled program (in this process,
and across processes through JAX's persistent compilation cache, see :mod:`pyanode.cache`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from pyanode.cache import cached_program
from pyanode.errors import PyanodeError
from pyanode.forecast.grid import GridArrays, lag_windows
from pyanode.forecast.model import Config, ForecastModel, as_ftype, decayed_leaves, ftype, masked_mse, rollout
from pyanode.loop import LoopResult, run_loop

__all__ = ["WindowData", "bucket", "column_mix", "field_scaled", "fit_model",
           "held_out_errors", "local_copy", "outcome", "padded_rollout_args", "rollout_program",
           "train_validated", "untrained", "validation_origins", "validation_tails", "window_loss",
           "windows_loss"]


def bucket(size: int) -> int:
    """``size`` rounded up to the next of 4, 5, 6 or 7 times a power of two (at most 25% padding).

    Arrays padded to these sizes give the compiled training step a handful of shapes across all series
    lengths, so the compilation cache is hit by fits on other data of similar length.
    """
    if size <= 8:
        return max(size, 1)
    power = 2 ** (int(math.log2(size)) - 2)
    return power * math.ceil(size / power)


def _pad(x: np.ndarray, size: int, value: float) -> np.ndarray:
    return np.concatenate([x, np.full((size - len(x), *x.shape[1:]), value, dtype=x.dtype)], axis=0)


class WindowData(eqx.Module):
    """What the window loss reads, passed to the compiled step as arguments (never baked in as constants).

    ``lags``/``days``: the encoder's inputs and the date of every grid step; ``targets``: the scaled
    training values, NaN beyond the training part, so that the ``L + 1`` values after origin ``i`` are
    ``targets[i : i + L + 1]``; ``cdf``: cumulative probability of drawing each origin; ``key``: the
    seed's random key. All but ``key`` are padded to a size bucket (padding is never drawn).
    """

    lags: jax.Array
    days: jax.Array
    targets: jax.Array
    cdf: jax.Array
    key: jax.Array

    @classmethod
    def build(cls, arrays: GridArrays, config: Config) -> WindowData:
        c = config
        T, L = len(arrays.y), c.window
        t_fit = T - c.validation
        n_origins = max(t_fit - 1, 1)
        # Recent windows are drawn more often (weight halves every ``half_life`` steps back), so the
        # learned seasonal attractor follows the present regime rather than the average of all years.
        age = (n_origins - 1 - np.arange(n_origins)).astype(np.float64)
        logits = -np.log(2.0) * age / c.half_life if c.half_life > 0 else np.zeros(n_origins)
        p = np.exp(logits - logits.max())
        cdf = np.cumsum(p / p.sum())
        size = bucket(T)
        targets = np.concatenate([arrays.y[:t_fit], np.full((L, c.n), np.nan)], axis=0)
        return cls(
            lags=as_ftype(_pad(lag_windows(arrays.filled, c.lookback), size, 0.0)),
            days=as_ftype(_pad(arrays.days, size, 0.0)),
            targets=as_ftype(_pad(targets, size + L, np.nan)),
            cdf=as_ftype(_pad(cdf, size, cdf[-1])),
            key=jax.random.PRNGKey(c.seed),
        )


def windows_loss(model: ForecastModel, probe: jax.Array, lags: jax.Array, days: jax.Array, target: jax.Array,
                 it: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked MSE of the forecasts from a batch of origins (encoder inputs ``lags``, dates ``days``)
    against the ``L + 1`` values after each (``target``, (B, L + 1, n)), over the curriculum's part."""
    c = model.config
    L = c.window
    # Curriculum: the loss counts the first L/8, L/4, L/2 steps of the windows, then all of them.
    stage = jnp.minimum(4 * (it - 1) // max(c.iterations, 1), 3)
    horizon = jnp.maximum(L // (2 ** (3 - stage)), 1)
    steps = jnp.arange(L + 1)
    weight = (steps <= horizon).astype(ftype())
    # The solve stops at the horizon: the save times past it repeat its last one (they carry no weight),
    # so an early stage costs what its part of the window does, not what the whole window does.
    taus = c.dt * jnp.minimum(steps, horizon).astype(ftype())
    pred, nfe = rollout(model, lags, days, taus, probe)
    return masked_mse(pred, target, weight[None, :, None]), {"nfe_forward": nfe}


def window_loss(model: ForecastModel, probe: jax.Array, data: WindowData, it: jax.Array
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """:func:`windows_loss` of ``batch`` windows drawn by recency from one series."""
    c = model.config
    # Draw origins by inverse-CDF sampling (what jax.random.choice does, with the CDF precomputed once).
    u = jax.random.uniform(jax.random.fold_in(data.key, it - 1), (c.batch,), dtype=data.cdf.dtype)
    idx = jnp.searchsorted(data.cdf, data.cdf[-1] * (1 - u))
    target = data.targets[idx[:, None] + jnp.arange(c.window + 1)[None, :]]
    return windows_loss(model, probe, data.lags[idx], data.days[idx], target, it)


VALIDATION_ORIGINS = 4  # forecasts from the start of the held-out tail and three later points in it


def rollout_program(model: ForecastModel, lags: jax.Array, days: jax.Array, taus: jax.Array) -> Any:
    """``program(params, lags, days, taus)``: :func:`rollout`'s readouts compiled for ``model``'s shape and
    these arguments' shapes. One program serves the held-out tail's scores during training, the verdict on
    the learned field and a forecast of the same horizon (:func:`padded_rollout_args`), so a fit compiles
    one solve rather than three (two where the forecast's dates lie off the grid, as month starts do)."""
    params, static = eqx.partition(model, eqx.is_array)
    return cached_program(lambda p, *a: rollout(eqx.combine(p, static), *a, max_steps=65536)[0],
                          (params, lags, days, taus), model.config.program_key("forecast"))


def padded_rollout_args(lags: np.ndarray, days: np.ndarray, taus: np.ndarray) -> tuple[jax.Array, ...]:
    """The arguments of :func:`rollout_program` padded to the shapes it is compiled for: at least
    ``VALIDATION_ORIGINS`` origins (the last repeated: copies of a single origin leave its adaptive steps,
    and so its forecast, as they are) and ``2**k + 1`` times (the last repeated: the solve stops there),
    so that forecasts of other horizons, and the held-out tail's, share programs."""
    def repeated(x: np.ndarray, size: int) -> jax.Array:
        x = np.asarray(x)
        return as_ftype(np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)]))

    rows = max(len(lags), VALIDATION_ORIGINS)
    return (repeated(lags, rows), repeated(days, rows),
            repeated(taus, 2 ** math.ceil(math.log2(max(len(taus) - 1, 1))) + 1))


def held_out_errors(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(2, n): per column, the summed squared error of the forecasts ``pred`` against ``target`` (the first
    ``len(target)`` origins; NaN targets carry no weight) and how many values each sum has: each
    column's held-out MSE is ``sums / counts``, all columns' ``sum(sums) / sum(counts)``."""
    pred = np.asarray(pred, np.float64)[: len(target), : target.shape[1]]
    obs = ~np.isnan(target)
    sq = np.where(obs, (pred - np.nan_to_num(target)) ** 2, 0.0)
    return np.stack([sq.sum(axis=(0, 1)), obs.sum(axis=(0, 1)).astype(np.float64)])


@functools.lru_cache(maxsize=16)
def _optimizer(lr: float, iterations: int, weight_decay: float) -> optax.GradientTransformation:
    # Cached: the same options give the same optimiser object, so the loop reuses its compiled step.
    schedule = optax.warmup_cosine_decay_schedule(lr / 10, lr, max(1, iterations // 20), iterations, lr / 20)
    return optax.chain(optax.clip_by_global_norm(1.0),
                       optax.adamw(schedule, weight_decay=weight_decay, mask=decayed_leaves))


def validation_tails(y: np.ndarray, origins: list[int], span: int, reach: int = 1) -> np.ndarray:
    """(len(origins), steps + 1, n): the values from each origin to ``span`` steps after it, NaN past them
    and past the data. ``steps`` is ``span``, or ``reach`` when longer, rounded up to a power of two, so
    that other series of similar length reuse the compiled program, and that a forecast ``reach`` steps
    ahead does too (NaN targets carry no weight)."""
    steps = 2 ** math.ceil(math.log2(max(span, reach, 1)))
    return np.stack([_pad(y[o : o + span + 1], steps + 1, np.nan) for o in origins])


def fit_model(model: ForecastModel, arrays: GridArrays, *, horizon: int | None = None, progress: bool = True,
              console: Any = None) -> LoopResult:
    """Train ``model`` on the grid arrays of one series (the recipe in the module docstring); ``horizon``:
    the steps ahead that will be forecast, which the held-out tail judges (None: all of the tail)."""
    c = model.config
    data = WindowData.build(arrays, c)
    val = None
    if c.validation > 0:
        first = len(arrays.y) - c.validation - 1
        span = c.validation if horizon is None else max(1, min(horizon, c.validation))
        origins = validation_origins(first, c.validation, span)
        # Solved as far as the forecasts will go, so that they run the same compiled program.
        tails = validation_tails(arrays.y, origins, span, reach=horizon or 1)
        at = np.asarray(origins)
        val = (*padded_rollout_args(np.asarray(data.lags)[at], np.asarray(data.days)[at],
                                    c.dt * np.arange(tails.shape[1])), tails)
    return train_validated(model, window_loss, lambda it: data, val, progress=progress, console=console)


def validation_origins(first: int, validation: int, span: int) -> list[int]:
    """Where the held-out tail's forecasts start: just before the tail and at later points in it (with what
    the encoder would see there), so that one lucky or unlucky start does not decide which model is kept.
    Each is judged ``span`` steps ahead: when that is the whole tail, from its start and each quarter of
    it to its end (as before); when the forecasts asked for are shorter, spread so that their windows
    cover the tail, the rolling-origin evaluation the forecasts will face."""
    if span >= validation:
        return sorted({first + k * validation // VALIDATION_ORIGINS for k in range(VALIDATION_ORIGINS)})
    room = validation - span
    return sorted({first + round(k * room / (VALIDATION_ORIGINS - 1)) for k in range(VALIDATION_ORIGINS)})


def train_validated(model: ForecastModel, loss: Any, batches: Any, val: tuple | None, *, progress: bool,
                    console: Any, replicated: Any = None) -> LoopResult:
    """:func:`pyanode.loop.run_loop` with this module's optimiser and validation (``val``: the arguments of
    :func:`rollout_program` as :func:`padded_rollout_args` gives them, and the held-out values from each
    origin, see :func:`validation_tails`), then the held-out tail's verdict on the learned field."""
    c = model.config
    validate = None
    if val is not None:
        *args, target = val
        target = np.asarray(target, np.float64)
        program = rollout_program(model, *args)

        def errors(m: ForecastModel) -> np.ndarray:
            if replicated is not None:  # data-parallel: score this process's copy of the parameters
                m = local_copy(m)
            return held_out_errors(program(eqx.filter(m, eqx.is_array), *args), target)

        def overall(e: np.ndarray) -> float:
            return float(e[0].sum() / max(e[1].sum(), 1.0))

        def validate(m: ForecastModel, it: int) -> dict[str, float]:
            return {"val_loss": overall(errors(m))}

    result = run_loop(
        model, loss, batches, _optimizer(c.lr, c.iterations, c.weight_decay), c.iterations,
        ema=c.ema, validate=validate, validate_every=max(10, c.iterations // 30),
        # Only the later curriculum stages train on windows as long as a forecast; judge those.
        select_from=-(-c.iterations // 4) + 1, patience=c.patience, progress=progress, description="fitting",
        console=console, program_key=c.program_key("window_loss"), replicated=replicated,
    )
    if validate is None or result.best_validation is None or result.interrupted:
        return result
    # How much of the learned field to trust, judged on the held-out tail: all of it, half of it (its
    # output scaled by 1/2), or none (the closed-form start). A field fitted to noise is not kept.
    candidates = {"the trained model": result.model,
                  "the trained model with half its learned field": field_scaled(result.model, 0.5),
                  "the closed-form start (the learned field did not help on the held-out tail)": model}
    if c.n == 1:
        scored = {k: (m, result.best_validation if m is result.model else validate(m, 0)["val_loss"])
                  for k, m in candidates.items()}
    else:
        # Several columns: each may trust the field to its own degree, the choice each column's own held-out
        # errors make among the three, validated as a whole like the others. One solve per candidate gives
        # both its score and its columns'.
        sums = {k: errors(m) for k, m in candidates.items()}
        scored = {k: (m, result.best_validation if m is result.model else overall(sums[k]))
                  for k, m in candidates.items()}
        per_column = np.stack([e[0] / np.maximum(e[1], 1.0) for e in sums.values()])
        # A candidate whose forecast failed (NaN) is never a column's pick.
        pick = [(1.0, 0.5, 0.0)[i] for i in np.argmin(np.nan_to_num(per_column, nan=np.inf), axis=0)]
        if len(set(pick)) > 1:
            mixed = column_mix(result.model, model, pick)
            scored["the learned field per column (weights " + ", ".join(f"{w:g}" for w in pick) + ")"] = (
                mixed, overall(errors(mixed)))
    # (A NaN score, from a forecast that failed, is never the least.)
    name, (kept, score) = min(scored.items(), key=lambda kv: kv[1][1] if math.isfinite(kv[1][1])
                              else math.inf)
    # The scores behind the choice, for the report (BENCHMARKS.md: without this verdict the learned
    # field ruins some forecasts).
    verdict = ("held-out MSE: trained {:.4g}, half its field {:.4g}, closed form {:.4g}"
               .format(*(v for _, v in list(scored.values())[:3])))
    if len(scored) > 3:
        verdict += f", per column {list(scored.values())[3][1]:.4g}"
    stopped = f"{result.stopped}; kept {name}; {verdict}"
    if kept is result.model:
        return dataclasses.replace(result, stopped=stopped)
    return dataclasses.replace(result, model=kept, best_validation=score,
                               best_iteration=0 if kept is model else result.best_iteration, stopped=stopped)


def outcome(result: LoopResult, what: str = "training") -> tuple[pd.DataFrame, dict]:
    """The history (indexed by iteration) and ``info`` of a finished fit; a fit that trained nothing
    re-raises Ctrl-C or stops with a one-line error (there is no model to forecast with)."""
    if result.history.empty:
        if result.interrupted:
            raise KeyboardInterrupt
        raise PyanodeError(f"{what} failed at its first step ({result.stopped.split(';')[0]}); look for "
                           "extreme values in the data, or try a smaller lr or tighter rtol/atol")
    info = {"stopped": result.stopped, "best_iteration": result.best_iteration,
            "best_validation": result.best_validation}
    return result.history.set_index("iteration"), info


def untrained(notes: list[str]) -> tuple[pd.DataFrame, dict]:
    """The history (no rows) and ``info`` of a fit that trains nothing because every column's departures
    persist; says why in ``notes`` (the data report's)."""
    notes.append("the neural ODE was not trained: every column's departures from its structure persist (a "
                 "unit root), so each is forecast as its current level carried on, which a learned field "
                 "cannot foresee; pass iterations to train it anyway (it then widens the intervals where it "
                 "disagrees)")
    history = pd.DataFrame({k: pd.Series(dtype=np.int64 if k.startswith("nfe") else np.float64)
                            for k in ("loss", "nfe_forward", "nfe_backward", "seconds", "val_loss")},
                           index=pd.Index([], dtype=np.int64, name="iteration"))
    info = {"stopped": "not trained: every column's departures persist (the report says why)",
            "best_iteration": 0, "best_validation": None}
    return history, info


def local_copy(tree: Any) -> Any:
    """Every array of ``tree`` as this process's own copy on its default device (a replicated array of a
    multi-device or multi-host run becomes an ordinary one)."""
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(np.asarray(x.addressable_data(0))) if isinstance(x, jax.Array) else x, tree)


def column_mix(trained: ForecastModel, start: ForecastModel, weights: Sequence[float]) -> ForecastModel:
    """``trained`` with observed column ``j``'s learned field output scaled by ``weights[j]``; a column at 0
    is the closed-form ``start``'s (its encoder row, decay and coupling too), so it evolves on its own. A
    second-order column's augmented dimension (its second coordinate) goes with it."""
    c = trained.config
    state = np.concatenate([np.asarray(weights, np.float64), np.ones(c.augment)])
    for i, j in enumerate(c.second_order):
        state[c.n + i] = weights[j]
    w = jnp.asarray(state, ftype())
    off = jnp.asarray(state == 0)
    last = trained.field.layers[-1]
    return eqx.tree_at(
        lambda m: (m.field.layers[-1].weight, m.field.layers[-1].bias, m.encoder.weight, m.encoder.bias,
                   m.log_decay, m.coupling), trained,
        (last.weight * w[:, None], last.bias * w,
         jnp.where(off[:, None], start.encoder.weight, trained.encoder.weight),
         jnp.where(off, start.encoder.bias, trained.encoder.bias),
         jnp.where(off, start.log_decay, trained.log_decay),
         jnp.where(off[:, None], start.coupling, trained.coupling)))


def field_scaled(model: ForecastModel, weight: float) -> ForecastModel:
    """``model`` with its learned field's output scaled by ``weight`` (0: switched off)."""
    last = model.field.layers[-1]
    return eqx.tree_at(lambda m: (m.field.layers[-1].weight, m.field.layers[-1].bias), model,
                       (last.weight * weight, last.bias * weight))
