"""The ODE engine: with :mod:`pyanode.adjoint` and :mod:`pyanode.solvers`, the only code that calls diffrax.

``solve`` integrates ``dy/dt = f(t, y, args)`` from ``t0`` to ``ts[-1]`` and returns the state at every
time in ``ts``. Solvers are chosen by name, adaptive ones are driven by a PID step-size controller with
``rtol``/``atol`` (SciML's ``reltol``/``abstol``), and gradients are computed by one of three sensitivity
algorithms (``sensealg``, named after SciMLSensitivity's):

* ``"interpolating"`` -- continuous adjoint reading the forward state from the forward solve's dense
  interpolation (SciML's ``InterpolatingAdjoint``); see :mod:`pyanode.adjoint`.
* ``"backsolve"`` -- continuous adjoint that re-solves the state backwards (``BacksolveAdjoint``).
* ``"checkpoint"`` -- discretise-then-optimise: reverse-mode through the solver's steps with recursive
  checkpointing (the exact gradient of the discrete solve).

Every solve reports its statistics: accepted and rejected steps and forward NFE (number of vector-field
evaluations). The backward NFE of a gradient is reported through ``nfe_probe``: pass a scalar zero and
its gradient is the number of vector-field evaluations (VJPs) the backward pass made.

Precision: JAX computes in float32 unless x64 is enabled; call :func:`enable_x64` once (before creating
arrays) for float64 solves and gradients (or use ``with jax.enable_x64(True):`` for a scoped switch).
Nothing is cast down silently.

Compilation: tolerances and ``dt`` travel as arrays, so eager solves that only change them (or the
arrays of ``f``, ``y0``, ``args``) reuse the compiled solve.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pyanode import adjoint as _adjoint
from pyanode.solvers import (
    SENSEALGS,
    SOLVERS,
    Problem,
    SolveError,
    Stats,
    diffeqsolve,
    forward_nfe,
    get_solver,
    make_problem,
)

__all__ = [
    "SOLVERS",
    "SENSEALGS",
    "Solution",
    "SolveError",
    "Stats",
    "attach_backward_nfe",
    "enable_x64",
    "get_solver",
    "solve",
]


def enable_x64(enabled: bool = True) -> None:
    """Switch JAX (and so every pyanode solve) to float64. Call before creating arrays."""
    jax.config.update("jax_enable_x64", enabled)


class Solution(eqx.Module):
    """The result of :func:`solve`: states ``ys`` at times ``ts``, ``stats``, optional dense output."""

    ts: jax.Array
    ys: jax.Array
    stats: Stats
    interpolation: Any = None  # a diffrax dense interpolation when ``dense=True``

    def evaluate(self, t: jax.Array) -> jax.Array:
        """The continuous solution at time ``t`` (needs ``dense=True``)."""
        if self.interpolation is None:
            raise SolveError("this solution has no dense output; call solve(..., dense=True)")
        return self.interpolation.evaluate(t)


# ----------------------------------------------------------------------------------------------
# Backward-NFE reporting: the gradient with respect to a zero "probe" is the backward NFE.


@jax.custom_vjp
def attach_backward_nfe(ys: jax.Array, probe: jax.Array, count: jax.Array) -> jax.Array:
    """Identity on ``ys``; in reverse mode the probe's cotangent becomes ``count``."""
    del probe, count
    return ys


def _attach_fwd(ys, probe, count):
    return ys, (probe, count)


def _attach_bwd(res, ct):
    probe, count = res
    return ct, jnp.asarray(count, probe.dtype), jnp.zeros_like(count)


attach_backward_nfe.defvjp(_attach_fwd, _attach_bwd)


# ----------------------------------------------------------------------------------------------
# Solve


def _is_concrete(*xs: Any) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))


def _check_inputs(f: Callable, y0: jax.Array, ts: jax.Array, t0: jax.Array, args: Any) -> None:
    # numpy, not jnp, on concrete inputs: under jit a jnp op on a concrete array is staged (a tracer).
    if ts.ndim != 1 or ts.shape[0] < 1:
        raise SolveError(f"ts must be a 1-D array of save times, got shape {tuple(ts.shape)}")
    if _is_concrete(ts):
        tsn = np.asarray(ts)
        if not np.all(np.isfinite(tsn)):
            raise SolveError("ts contains NaN or inf; give finite save times")
        if tsn.shape[0] > 1 and not np.all(np.diff(tsn) > 0):
            bad = int(np.argmax(np.diff(tsn) <= 0))
            raise SolveError(
                f"ts must be strictly increasing, but ts[{bad}]={tsn[bad]:g} >= "
                f"ts[{bad + 1}]={tsn[bad + 1]:g}; sort the times and drop duplicates"
            )
        if _is_concrete(t0) and float(np.asarray(t0)) > float(tsn[0]):
            raise SolveError(
                f"t0={float(np.asarray(t0)):g} is after the first save time {tsn[0]:g}; "
                "give t0 <= ts[0] (or leave t0 out to start at ts[0])"
            )
    if _is_concrete(y0) and not np.all(np.isfinite(np.asarray(y0))):
        raise SolveError("y0 contains NaN or inf; give a finite initial state")
    try:
        out = eqx.filter_eval_shape(f, t0, y0, args)  # args may hold non-arrays (e.g. a module)
    except TypeError as err:
        if "positional argument" not in str(err):
            raise
        raise SolveError(f"f must be called as f(t, y, args) (diffrax's convention; add an unused args "
                         f"parameter): {str(err).splitlines()[0]}") from None
    if out.shape != y0.shape:
        raise SolveError(
            f"the vector field returned shape {tuple(out.shape)} for a state of shape "
            f"{tuple(y0.shape)}; f(t, y, args) must return an array shaped like y0"
        )


def _time_reached(
    f: Callable, y0: jax.Array, args: Any, t0: jax.Array, ts: jax.Array, problem: Problem
) -> float:
    """Where a failed solve stopped: re-run it (error path only) saving just its final time."""
    adjoint = diffrax.RecursiveCheckpointAdjoint()
    sol = _diffeqsolve(f, y0, args, t0, ts[-1], problem, adjoint, diffrax.SaveAt(t1=True))
    return float(np.asarray(sol.ts)[-1])


def _raise_if_failed(
    sol: diffrax.Solution, ts: jax.Array, ys: jax.Array, problem: Problem, reached: Callable[[], float]
) -> None:
    """Turn a failed solve into a SolveError that says where it stopped and what to try."""
    finite = np.all(np.isfinite(np.asarray(ys).reshape(ys.shape[0], -1)), axis=1)
    if sol.result == diffrax.RESULTS.successful and finite.all():
        return
    tsn = np.asarray(ts)
    if sol.result == diffrax.RESULTS.max_steps_reached:
        raise SolveError(
            f"the solver took max_steps={problem.max_steps} steps and stopped at t={reached():g} "
            f"before reaching t={tsn[-1]:g}; the solution may blow up there (then no solver gets past "
            "it: shorten the time span), or the problem may be stiff: try solver='kvaerno5' or "
            "'kencarp4', looser rtol/atol, or a larger max_steps"
        )
    last = int(np.argmin(finite)) - 1 if not finite.all() else tsn.shape[0] - 1
    where = f" (last finite state saved at t={tsn[last]:g})" if last >= 0 else ""
    if sol.result != diffrax.RESULTS.successful:
        raise SolveError(
            f"the ODE solve failed{where}: {sol.result}; check the vector field for NaN or inf, "
            "or try a stiff solver such as 'kvaerno5' or tighter rtol/atol"
        )
    first_bad = tsn[last + 1]
    raise SolveError(
        f"the state became NaN or inf by t={first_bad:g}{where}; the solution may blow up: "
        "check the vector field, shorten the time span, or tighten rtol/atol"
    )


def _diffeqsolve(
    f: Callable,
    y0: jax.Array,
    args: Any,
    t0: jax.Array,
    t1: jax.Array,
    problem: Problem,
    adjoint: diffrax.AbstractAdjoint,
    saveat: diffrax.SaveAt,
) -> diffrax.Solution:
    """One forward diffrax solve to ``t1`` (never raises inside; failures are in ``sol.result``)."""
    return diffeqsolve(
        problem.make_term(f),
        problem.make_solver(),
        t0=t0,
        t1=t1,
        dt0=problem.first_step(t0.dtype),
        y0=y0,
        args=args,
        saveat=saveat,
        stepsize_controller=problem.controller,
        max_steps=problem.max_steps,
        adjoint=adjoint,
        throw=False,
    )


def solve(
    f: Callable[[jax.Array, jax.Array, Any], jax.Array],
    y0: jax.Array,
    ts: jax.Array,
    *,
    args: Any = None,
    solver: str = "tsit5",
    rtol: float = 1e-6,
    atol: float = 1e-6,
    dt: float | None = None,
    dt0: float | None = None,
    t0: float | jax.Array | None = None,
    sensealg: str = "interpolating",
    checkpointing: bool | int = False,
    max_steps: int = 4096,
    dense: bool = False,
    nfe_probe: jax.Array | None = None,
) -> Solution:
    """Solve ``dy/dt = f(t, y, args)`` and return the states at the times ``ts``.

    Args:
        f: vector field ``f(t, y, args) -> dy/dt`` (diffrax's convention); may be an equinox module
            whose arrays receive gradients.
        y0: initial state at ``t0``.
        ts: strictly increasing save times; the solve runs from ``t0`` to ``ts[-1]``. Traced times (under
            ``jit``, where they are not checked) may also repeat, each repeat saving the same state: the
            forecaster's training stops a solve early that way
            (:func:`pyanode.forecast.fitting.windows_loss`).
        args: any pytree passed to ``f``; gradients flow to its arrays.
        solver: ``tsit5`` (default), ``dopri5``, ``dopri8``, ``bosh3``; fixed-step ``euler``,
            ``midpoint``, ``heun``, ``rk4`` (need ``dt``); stiff ``kvaerno5``, ``kencarp4``.
        rtol, atol: relative and absolute tolerances of the PID step-size controller.
        dt: step size of a fixed-step solver. dt0: first step of an adaptive one (default: chosen).
        t0: start time (default ``ts[0]``).
        sensealg: ``interpolating``, ``backsolve`` or ``checkpoint`` (see the module docstring).
        checkpointing: for ``interpolating``, keep the forward state only at checkpoints and re-solve
            each segment with dense output in the backward pass (bounded memory): ``True`` puts the
            checkpoints at ``ts``; an int ``n`` adds ``n - 1`` evenly spaced ones (see
            :mod:`pyanode.adjoint`).
        max_steps: most steps before a :class:`SolveError` that names the time reached (under
            ``jit`` nothing can be raised: the unreached outputs are inf).
        dense: keep the dense interpolation (``Solution.evaluate``); it is differentiable only with
            ``sensealg="checkpoint"`` (the continuous adjoints differentiate ``ys``).
        nfe_probe: a scalar zero; its gradient is the backward NFE of this solve: vector-field VJPs
            (plus forward re-solves when checkpointing) for the continuous adjoints, one VJP per
            forward evaluation for ``checkpoint`` (recomputation inside diffrax's recursive
            checkpointing is not counted); -1 for implicit solvers.

    Returns:
        :class:`Solution` with ``ys`` of shape ``(len(ts), *y0.shape)`` and ``stats``.

    Raises:
        SolveError: a bad option or input, or (outside ``jit``) a failed solve, with a message that
            says what to change.
    """
    y0 = jnp.asarray(y0)
    if not jnp.issubdtype(y0.dtype, jnp.floating):
        y0 = y0.astype(jnp.result_type(float))
    ts = jnp.asarray(ts, dtype=y0.dtype)
    if t0 is None:
        # Indexing would be staged under jit; keep t0 concrete when ts is, so it can be checked.
        if ts.ndim != 1 or ts.shape[0] < 1:
            t0 = jnp.zeros((), y0.dtype)  # _check_inputs reports the bad ts
        else:
            t0 = jnp.asarray(np.asarray(ts)[0]) if _is_concrete(ts) else ts[0]
    else:
        t0 = jnp.asarray(t0, dtype=y0.dtype)
    if sensealg not in SENSEALGS:
        raise SolveError(f"unknown sensealg {sensealg!r}; choose one of: {', '.join(SENSEALGS)}")
    problem = make_problem(solver, rtol, atol, dt, dt0, max_steps)
    _check_inputs(f, y0, ts, t0, args)
    if sensealg == "checkpoint":
        sol = _diffeqsolve(
            f, y0, args, t0, ts[-1], problem, diffrax.RecursiveCheckpointAdjoint(),
            diffrax.SaveAt(ts=ts, dense=dense),
        )
        stats = Stats(
            sol.stats["num_accepted_steps"],
            sol.stats["num_rejected_steps"],
            forward_nfe(problem.spec, sol.stats["num_steps"]),
        )
        ys = sol.ys
        if nfe_probe is not None:
            # Reverse mode through the steps makes one VJP per forward evaluation.
            ys = attach_backward_nfe(ys, nfe_probe, stats.nfe_forward)
    else:
        sol, ys, stats = _adjoint.solve_continuous(
            sensealg, f, y0, args, t0, ts, problem, dense, checkpointing, nfe_probe
        )

    if _is_concrete(ys):
        _raise_if_failed(sol, ts, ys, problem, lambda: _time_reached(f, y0, args, t0, ts, problem))
    interpolation = sol.interpolation if dense else None
    return Solution(ts=ts, ys=ys, stats=stats, interpolation=interpolation)
