"""The one training loop: optimiser steps, EMA, validation, early stopping, progress, Ctrl-C, history.

Every pyanode trainer runs on :func:`run_loop`: :func:`pyanode.train.train` (classifiers and regressors,
minibatches of ``(x, y)``) and :func:`pyanode.fit` (windows of a time series). Each supplies only what
is its own:

* ``loss(model, nfe_probe, batch, iteration) -> (value, aux)``: the scalar to minimise and a dict of
  per-iteration metrics, at least ``"nfe_forward"`` (the forward NFE of the batch's solve; pass
  ``nfe_probe`` to :func:`pyanode.solve` so that its gradient is the backward NFE);
* ``batches(iteration) -> batch``: any pytree of arrays (host or device), drawn however the trainer likes;
* optionally ``validate(model, iteration) -> {"val_loss": ..., ...}``, scored on a schedule.

The loop owns the rest, the same for everyone. One jitted step per iteration computes the loss, its
gradient and the backward NFE, applies the optax update and, when asked, updates a running average of
the parameters, ``avg <- d avg + (1 - d) params`` with ``d = min(ema, (k - 1) / (k + 9))`` at iteration
``k`` (Polyak averaging: the average of the recent iterates is a steadier model than the last one; the
ramp lets the average forget the initialisation). Data travel as arguments of the step, never as
constants baked into it, so the compiled step is reused for every batch, every call with the same model
structure, and (through JAX's persistent compilation cache) every process.

The model returned (``LoopResult.model``):

* with validation: the candidate (the average when ``ema`` is given, else the parameters) with the lowest
  ``val_loss`` among the checks from ``select_from`` on; ``patience`` checks without improvement stop
  training early;
* with ``keep_lowest_train_loss``: the parameters that gave the lowest minibatch loss (kept on the device);
* otherwise the last candidate.

A non-finite loss stops training (the parameters it produced are not kept). Ctrl-C
(``KeyboardInterrupt``) stops training cleanly: the result is the best model by the rule above, or the
latest candidate when no validation score exists yet, and ``stopped`` says which was kept.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import pandas as pd

__all__ = ["LoopResult", "TrainResult", "progress_bar", "run_loop"]

Loss = Callable[[Any, jax.Array, Any, jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]


@dataclasses.dataclass
class LoopResult:
    """What :func:`run_loop` returns.

    Attributes:
        model: the model chosen by the rule in the module docstring.
        final_model: the parameters after the last completed iteration.
        history: one row per completed iteration: ``iteration`` (1-based), ``loss``, the loss's other
            metrics (e.g. ``accuracy``), ``nfe_forward``, ``nfe_backward``, ``seconds`` (cumulative
            training time, evaluations excluded; the first row includes compiling the step) and the
            validation columns (NaN between checks).
        best_iteration: the iteration whose model was kept (0: the starting model).
        best_validation: the kept model's ``val_loss`` (None without one).
        stopped: why training ended, in words (``"completed"``, early stop, non-finite loss, interrupt).
        interrupted: True if training stopped on Ctrl-C.
    """

    model: Any
    final_model: Any
    history: pd.DataFrame
    best_iteration: int
    best_validation: float | None = None
    stopped: str = "completed"
    interrupted: bool = False


TrainResult = LoopResult  # the name pyanode.train has always used


class _State(eqx.Module):
    """Everything the step carries from one iteration to the next (a pytree of arrays)."""

    params: Any
    opt_state: Any
    average: Any  # the running average of the parameters (None without EMA)
    best_params: Any  # lowest-minibatch-loss parameters (None unless kept)
    best_loss: jax.Array
    best_iteration: jax.Array


@functools.lru_cache(maxsize=64)
def _compiled_step(static: Any, optimizer: optax.GradientTransformation, loss: Loss, ema: float | None,
                   keep_lowest: bool) -> Callable:
    """The jitted step for one model structure, optimiser and loss (compiled once, then reused)."""

    def objective(params, probe, batch, it):
        value, aux = loss(eqx.combine(params, static), probe, batch, it)
        return value, aux

    grad_fn = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)

    @jax.jit
    def step(state: _State, it: jax.Array, batch: Any) -> tuple[_State, dict[str, jax.Array]]:
        probe = jnp.zeros((), jnp.result_type(float))
        (value, aux), (grads, nfe_backward) = grad_fn(state.params, probe, batch, it)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        average = state.average
        if ema is not None:
            decay = jnp.minimum(ema, (it - 1) / (it + 9.0))
            # (A parameter that stays as it is stays exactly so in the average, as a fixed one must.)
            average = jax.tree_util.tree_map(
                lambda a, p: jnp.where(a == p, a, decay * a + (1 - decay) * p), average, params)
        best_params, best_loss, best_it = state.best_params, state.best_loss, state.best_iteration
        if keep_lowest:
            # The parameters that produced the lowest loss, kept on the device (no host round trip).
            better = value < best_loss
            best_params = jax.tree_util.tree_map(
                lambda p, b: jnp.where(better, p, b), state.params, best_params)
            best_loss = jnp.where(better, value.astype(best_loss.dtype), best_loss)
            best_it = jnp.where(better, it, best_it)
        new = _State(params, opt_state, average, best_params, best_loss, best_it)
        return new, {"loss": value, **aux, "nfe_backward": nfe_backward}

    return step


def progress_bar(enabled: bool, console: Any = None):
    """The rich progress bar every trainer shows: description, bar, M/N, loss/NFE text, ETA."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    # The bar takes what the numbers leave, so that all of them fit an 80-column terminal (the time taken
    # is in the history and in the line the trainers print at the end).
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TextColumn("ETA"), TimeRemainingColumn(),
        console=console or Console(stderr=True), disable=not enabled, transient=False, expand=True,
    )


def _info(row: Mapping[str, float], best_val: float | None) -> str:
    val = f" val {best_val:.3g}" if best_val is not None else ""
    return f"loss {row['loss']:.3g}{val} NFE {row['nfe_forward']}/{row['nfe_backward']}"


def run_loop(
    model: Any,
    loss: Loss,
    batches: Callable[[int], Any],
    optimizer: optax.GradientTransformation,
    iterations: int,
    *,
    ema: float | None = None,
    validate: Callable[[Any, int], Mapping[str, float]] | None = None,
    validate_every: int = 100,
    validate_at_start: bool = False,
    select_from: int = 1,
    patience: int | None = None,
    keep_lowest_train_loss: bool = False,
    callback: Callable[[int, Any, dict[str, float]], None] | None = None,
    progress: bool = True,
    description: str = "training",
    console: Any = None,
    replicated: Any = None,
    opt_state_hook: Callable[[Any], Any] | None = None,
    program_key: str | None = None,
) -> LoopResult:
    """Train ``model`` for ``iterations`` optimiser steps (see the module docstring for the rules).

    Args:
        model: an equinox module; its inexact arrays are the parameters.
        loss: ``loss(model, nfe_probe, batch, iteration) -> (value, aux)``; a function defined once (not a
            fresh closure per call) so that its compiled step is reused.
        batches: ``batches(iteration) -> batch`` for iterations 1..``iterations``.
        optimizer: any optax transformation.
        iterations: number of optimiser steps.
        ema: decay of the running average of the parameters (None: no average; the parameters are the
            candidate model).
        validate: ``validate(model, iteration) -> {name: value}``, called with the candidate every
            ``validate_every`` iterations and at the last one; its values become history columns, and a
            ``"val_loss"`` entry (lower is better) chooses the model from iteration ``select_from`` on.
        validate_at_start: also score the starting model (iteration 0), so that "best" is defined even
            if the first update makes things worse.
        patience: validation checks without improvement before stopping early (None: never).
        keep_lowest_train_loss: without validation, return the lowest-minibatch-loss parameters.
        callback: ``callback(iteration, model, row)`` after each iteration; raising ``KeyboardInterrupt``
            in it stops training like Ctrl-C.
        progress, description, console: the progress bar (on stderr unless ``console`` says otherwise).
        replicated: a sharding to place the parameters and optimiser state on (data-parallel training;
            ``batches`` then returns batches placed with the matching batch sharding).
        opt_state_hook: ``opt_state -> opt_state`` applied once after ``optimizer.init`` (e.g. to set an
            injected learning rate).
        program_key: names everything static in the step (model structure, optimiser, loss) so that its
            traced program is kept on disk and later processes skip tracing it
            (:func:`pyanode.cache.cached_program`); None: trace in every process.

    Returns:
        :class:`LoopResult`.
    """
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = jax.jit(optimizer.init)(params)  # (one small program, where eager init compiles several)
    if opt_state_hook is not None:
        opt_state = opt_state_hook(opt_state)
    ftype = jnp.result_type(float)
    state = _State(
        params, opt_state, params if ema is not None else None, params if keep_lowest_train_loss else None,
        jnp.asarray(jnp.inf, ftype), jnp.asarray(0, jnp.int32),
    )
    if replicated is not None:
        state = jax.device_put(state, replicated)
    step = _compiled_step(static, optimizer, loss, ema, keep_lowest_train_loss)
    if program_key is not None and replicated is None:
        from pyanode.cache import cached_program

        loss_name = f"{getattr(loss, '__module__', '?')}.{getattr(loss, '__qualname__', repr(loss))}"
        step = cached_program(step, (state, jnp.asarray(1, jnp.int32), batches(1)),
                              f"run_loop-step|{program_key}|{loss_name}|ema={ema}|keep_lowest={keep_lowest_train_loss}")

    def candidate(s: _State) -> Any:
        return s.average if ema is not None else s.params

    rows: list[dict[str, float]] = []
    best: tuple[float, int, Any] | None = None  # (val_loss, iteration, params) of the best check
    checks_without_gain = 0
    stopped = "completed"
    interrupted = False
    seconds = 0.0

    def check(it: int) -> dict[str, float]:
        nonlocal best, checks_without_gain
        scores = {k: float(v) for k, v in validate(eqx.combine(candidate(state), static), it).items()}
        v = scores.get("val_loss")
        if v is not None and it >= select_from and math.isfinite(v):
            if best is None or v < best[0]:
                best = (v, it, candidate(state))
                checks_without_gain = 0
            else:
                checks_without_gain += 1
        return scores

    bar = progress_bar(progress, console)
    task = bar.add_task(description, total=iterations, info="")
    try:
        with bar:
            if validate is not None and validate_at_start:
                check(0)
            for it in range(1, iterations + 1):
                t_start = time.perf_counter()
                batch = batches(it)
                new_state, metrics = step(state, jnp.asarray(it, jnp.int32), batch)
                metrics = jax.device_get(metrics)
                seconds += time.perf_counter() - t_start
                value = float(metrics.pop("loss"))
                if not math.isfinite(value):
                    stopped = f"loss became {value} at iteration {it}; kept the model from before it"
                    break
                state = new_state
                nfe = {k: int(round(float(metrics.pop(k)))) for k in ("nfe_forward", "nfe_backward")}
                row: dict[str, float] = {"iteration": it, "loss": value}
                row.update({k: float(v) for k, v in metrics.items()})
                row.update(nfe, seconds=seconds)
                last = it == iterations
                if validate is not None and (it % validate_every == 0 or last):
                    row.update(check(it))
                rows.append(row)
                bar.update(task, advance=1, info=_info(row, best[0] if best else None))
                if callback is not None:
                    callback(it, eqx.combine(state.params, static), row)
                if patience is not None and checks_without_gain >= patience and not last:
                    stopped = f"early stop at iteration {it} (validation stopped improving)"
                    break
    except KeyboardInterrupt:
        interrupted = True

    done = len(rows)
    if best is not None:
        kept, best_iteration, best_validation = best[2], best[1], best[0]
        what = f"the best validated model (iteration {best_iteration})"
    elif keep_lowest_train_loss and math.isfinite(float(state.best_loss)):
        kept, best_iteration, best_validation = state.best_params, int(state.best_iteration), None
        what = f"the lowest-loss parameters (iteration {best_iteration})"
    else:
        kept, best_iteration, best_validation = candidate(state), done, None
        noun = "running average of the parameters" if ema is not None else "parameters"
        why = " (no validation score yet)" if validate is not None else ""
        what = f"the {noun} at iteration {done}{why}"
    if interrupted:
        stopped = f"interrupted at iteration {done}; kept {what}"

    history = pd.DataFrame(rows)
    if history.empty:
        history = pd.DataFrame(columns=["iteration", "loss", "nfe_forward", "nfe_backward", "seconds"])
    for k in ("iteration", "nfe_forward", "nfe_backward"):
        history[k] = history[k].astype(int)
    return LoopResult(
        model=eqx.combine(kept, static),
        final_model=eqx.combine(state.params, static),
        history=history,
        best_iteration=best_iteration,
        best_validation=best_validation,
        stopped=stopped,
        interrupted=interrupted,
    )
