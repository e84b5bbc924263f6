r"""Continuous adjoints for the engine: ``"interpolating"`` (optionally checkpointed) and ``"backsolve"``.

The adjoint method (Chen, Rubanova, Bettencourt & Duvenaud, "Neural Ordinary Differential Equations",
NeurIPS 2018, following Pontryagin) computes the gradient of a loss
:math:`L(y(t_1), \dots, y(t_N))` of the solution of :math:`\dot y = f(t, y, \theta)`, :math:`y(t_0) =
y_0`, by solving a second ODE backwards in time. The adjoint :math:`a(t) = \partial L / \partial y(t)`
and the parameter adjoint :math:`a_\theta(t)` obey

.. math::

    \dot a = -a^\top \frac{\partial f}{\partial y}(t, y(t), \theta), \qquad
    \dot a_\theta = -a^\top \frac{\partial f}{\partial \theta}(t, y(t), \theta),

from :math:`a(t_N) = \partial L / \partial y(t_N)`, :math:`a_\theta(t_N) = 0` down to :math:`t_0`. At
every save time :math:`t_i` the adjoint jumps by the cotangent of that output,
:math:`a(t_i^-) = a(t_i^+) + \partial L / \partial y(t_i)`, so the backward pass is solved segment by
segment between consecutive save times (a ``lax.scan`` over segments, each a diffrax solve). At the
end :math:`\partial L / \partial y_0 = a(t_0)` and :math:`\partial L / \partial \theta = a_\theta(t_0)`.
Both right-hand sides come from one vector-Jacobian product of ``f`` per evaluation; that VJP is the
unit of the backward NFE.

The methods differ in where :math:`y(t)` comes from during the backward solve:

* **interpolating** (SciMLSensitivity's ``InterpolatingAdjoint``, whose design this follows): the
  forward solve keeps its dense output (the solver's own continuous extension), and the backward pass
  evaluates it at whatever times the adjoint solver asks for. The state is never integrated backwards,
  so the method is as stable as the forward solve. Memory: the dense output, i.e. O(steps).
* **interpolating with checkpointing**: the forward solve keeps only the states at checkpoints -- the
  save times ``ts`` (``checkpointing=True``), plus ``n - 1`` extra, evenly spaced times when
  ``checkpointing=n`` (an int). In the backward pass each segment between checkpoints is first
  re-solved forwards from its checkpoint with dense output, then the adjoint is solved backwards over
  it reading that local interpolation. Memory: the checkpoints plus one segment's dense output; the
  cost is one extra forward solve. Each re-solve has a static budget of
  ``min(max_steps, 4 * ceil(max_steps / segments) + 64)`` steps (JAX needs static buffer sizes); a
  segment that needs more (very uneven step density) makes the gradient NaN rather than wrong --
  then use more checkpoints or ``checkpointing=False``.
* **backsolve** (SciML's ``BacksolveAdjoint``; also torchdiffeq's ``odeint_adjoint``): the state is
  integrated backwards alongside the adjoints, :math:`\dot y = f` from :math:`y(t_{i+1})` to
  :math:`t_i`. O(1) memory beyond the outputs, but the backward state can drift from the forward one
  (badly so for stiff or chaotic systems). As in SciML's default, the state is reset to the saved
  forward value at every save time, which bounds that drift to one segment.

The backward solves use the same solver, ``rtol``/``atol`` and (for fixed-step solvers) the same ``dt``
as the forward solve; implicit solvers are used implicitly on the adjoint system too. The error
control of the backward solve acts on all of :math:`(a, a_\theta)` (and :math:`y` for backsolve); since
the adjoint system is linear in the cotangents, it is solved for the cotangents divided by their
largest magnitude, so that ``atol`` means the same whatever the scale of the loss.

Gradients flow to ``y0``, to every floating-point array of ``args`` and to the arrays that ``f`` holds
(an equinox module's fields, or arrays a plain function closes over). Gradients with respect to
``t0`` and ``ts`` are not computed (they are zero). The dense interpolation returned with
``dense=True`` is not differentiable through these adjoints (use ``sensealg="checkpoint"`` for that).
Higher-order derivatives (differentiating the backward pass) are not supported.

The backward NFE (vector-field VJPs, plus the forward re-solves when checkpointing) is computed from
the backward solves' step counts with the engine's counting rule and returned as the cotangent of the
engine's ``nfe_probe`` (-1 for implicit solvers, whose evaluations depend on Newton iterations).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from pyanode import solvers

__all__ = ["solve_continuous"]


@dataclasses.dataclass(frozen=True)
class _Config:
    """Static description of one continuous-adjoint solve (hashable; travels as a static argument)."""

    sensealg: str
    problem: solvers.Problem
    static_f: Any
    static_args: Any
    dense: bool  # keep the forward dense output (for the user, or for the interpolating adjoint)
    n_extra: int  # extra evenly spaced checkpoints (checkpointing=int)
    checkpointing: bool
    segment_max_steps: int
    t_dtype: str


class _VectorField(eqx.Module):
    """The user's vector field with its arrays passed in as ``theta`` (a module so that repeated eager
    solves hit diffrax's compilation cache)."""

    cfg: _Config = eqx.field(static=True)

    def __call__(self, t, y, theta):
        return _call(self.cfg, theta, t, y)


def _state_at(cfg: _Config, interpolation: Any, t: jax.Array) -> jax.Array:
    """``y(t)`` from the forward interpolation.

    Some implicit methods (Kvaerno5: c = 1.23) evaluate stages beyond the end of a step, which in the
    last backward step lies outside the interpolation's range (where diffrax returns NaN). There the
    state is continued linearly from the nearest end, which keeps the stage smooth.
    """
    if not cfg.problem.spec.implicit:
        return interpolation.evaluate(t)
    lo, hi = interpolation.t0, interpolation.t1
    inside = jnp.clip(t, jnp.minimum(lo, hi), jnp.maximum(lo, hi))
    return interpolation.evaluate(inside) + (t - inside) * interpolation.derivative(inside)


class _InterpolatingAdjointField(eqx.Module):
    r"""``(a, a_theta)' = -(a^T df/dy, a^T df/dtheta)`` with ``y(t)`` read from an interpolation."""

    cfg: _Config = eqx.field(static=True)

    def __call__(self, t, state, ctx):
        a, _ = state
        interpolation, theta = ctx
        _, da, dtheta = _adjoint_rhs(self.cfg, t, _state_at(self.cfg, interpolation, t), a, theta)
        return jnp.negative(da), _tree_neg(dtheta)


class _BacksolveAdjointField(eqx.Module):
    r"""``(y, a, a_theta)' = (f, -a^T df/dy, -a^T df/dtheta)``: the state is integrated too."""

    cfg: _Config = eqx.field(static=True)

    def __call__(self, t, state, theta):
        y, a, _ = state
        fy, da, dtheta = _adjoint_rhs(self.cfg, t, y, a, theta)
        return fy, jnp.negative(da), _tree_neg(dtheta)


def _tree_neg(tree: Any) -> Any:
    return jtu.tree_map(jnp.negative, tree)


def _call(cfg: _Config, theta: Any, t: jax.Array, y: jax.Array) -> jax.Array:
    """Evaluate the user's vector field at parameters ``theta`` = (arrays of f, arrays of args)."""
    f = eqx.combine(theta[0], cfg.static_f)
    args = eqx.combine(theta[1], cfg.static_args)
    return f(jnp.asarray(t, dtype=cfg.t_dtype), y, args)


def _adjoint_rhs(cfg: _Config, t: jax.Array, y: jax.Array, a: jax.Array, theta: Any):
    """``(f(t, y), a^T df/dy, a^T df/dtheta)`` from one VJP of the vector field."""
    fy, vjp = jax.vjp(lambda yy, th: _call(cfg, th, t, yy), y, theta)
    da, dtheta = vjp(a)
    return fy, da, dtheta


def _solve(
    cfg: _Config,
    dynamic: tuple[jax.Array | None, diffrax.AbstractStepSizeController],
    vf: Callable,
    t_start: jax.Array,
    t_end: jax.Array,
    y_start: Any,
    ctx: Any,
    saveat: diffrax.SaveAt,
    max_steps: int,
    backwards: bool,
    guess: jax.Array | None = None,
) -> diffrax.Solution:
    """A diffrax solve with the problem's solver and controller, in either time direction.

    ``guess`` (adaptive solves only) is a segment length to try as the first step, used when it is
    positive (else the controller chooses): the backward pass restarts at every save time, and a
    segment shorter than the forward solve's mean step is then usually done in one step, without the
    controller's own first-step search.
    """
    problem = cfg.problem
    step, controller = dynamic
    if step is None or (backwards and problem.spec.adaptive):
        dt0 = None
    else:
        dt0 = -step if backwards else step

    def run(first_step):
        return solvers.diffeqsolve(
            problem.make_term(vf),
            problem.make_solver(controller),
            t0=t_start,
            t1=t_end,
            dt0=first_step,
            y0=y_start,
            args=ctx,
            saveat=saveat,
            stepsize_controller=controller,
            max_steps=max_steps,
            throw=False,
        )

    if guess is None or not problem.spec.adaptive:
        return run(dt0)
    return jax.lax.cond(guess > 0, lambda: run(-guess if backwards else guess), lambda: run(dt0))


def _save_times(ts: jax.Array, t0: jax.Array, n_extra: int) -> tuple[jax.Array, jax.Array]:
    """Forward save times: ``ts`` merged with ``n_extra`` evenly spaced checkpoints.

    Returns the sorted times and, for each entry of ``ts``, its position among them.
    """
    if n_extra == 0:
        return ts, jnp.arange(ts.shape[0])
    extra = jnp.linspace(t0, ts[-1], n_extra + 2, dtype=ts.dtype)[1:-1]
    times = jnp.concatenate([ts, extra])
    order = jnp.argsort(times, stable=True)
    position = jnp.argsort(order)[: ts.shape[0]]
    return times[order], position


def _forward(cfg: _Config, theta: Any, y0: jax.Array, t0: jax.Array, ts: jax.Array, dynamic: Any):
    """The forward solve (outside autodiff: its reverse mode is the continuous adjoint)."""

    vf = _VectorField(cfg)
    save_ts, position = _save_times(ts, t0, cfg.n_extra)
    saveat = diffrax.SaveAt(ts=save_ts, dense=cfg.dense)
    sol = _solve(cfg, dynamic, vf, t0, ts[-1], y0, theta, saveat, cfg.problem.max_steps, backwards=False)
    return sol, sol.ys[position], save_ts, position


@eqx.filter_custom_vjp
def _continuous(vjp_arg, t0, ts, dynamic, cfg):
    theta, y0, _probe = vjp_arg
    sol, ys, _, _ = _forward(cfg, theta, y0, t0, ts, dynamic)
    return ys, sol


@_continuous.def_fwd
def _continuous_fwd(perturbed, vjp_arg, t0, ts, dynamic, cfg):
    del perturbed
    theta, y0, _probe = vjp_arg
    sol, ys, save_ts, _ = _forward(cfg, theta, y0, t0, ts, dynamic)
    interpolation = sol.interpolation if (cfg.sensealg == "interpolating" and not cfg.checkpointing) else None
    mean_step = (ts[-1] - t0) / jnp.maximum(sol.stats["num_accepted_steps"], 1)
    return (ys, sol), (sol.ys, save_ts, interpolation, mean_step)


@_continuous.def_bwd
def _continuous_bwd(residuals, grad_obj, perturbed, vjp_arg, t0, ts, dynamic, cfg):
    del perturbed
    ys_saved, save_ts, interpolation, mean_step = residuals
    theta, y0, probe = vjp_arg
    ct_ys = grad_obj[0]
    if ct_ys is None:
        ct_ys = jnp.zeros((ts.shape[0], *y0.shape), y0.dtype)
    _, position = _save_times(ts, t0, cfg.n_extra)
    ct_saved = jnp.zeros_like(ys_saved).at[position].add(ct_ys)

    # The grid of segment ends: t0 first (a segment of length zero when t0 == ts[0]).
    grid_t = jnp.concatenate([t0[None], save_ts])
    grid_y = jnp.concatenate([y0[None], ys_saved])
    # The adjoint system is linear in the cotangents, so it is solved for cotangents divided by their
    # largest magnitude and scaled back at the end. This makes the backward error control independent
    # of the loss's scale (atol would otherwise be measured in units of dL/dy).
    scale = jnp.max(jnp.abs(ct_saved))
    scale = jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0).astype(y0.dtype)
    grid_ct = jnp.concatenate([jnp.zeros_like(y0)[None], ct_saved]) / scale
    spec = cfg.problem.spec
    forward_vf = _VectorField(cfg)
    interpolating_vf = _InterpolatingAdjointField(cfg)
    backsolve_vf = _BacksolveAdjointField(cfg)

    def nfe(num_steps, t_start, t_end):
        # A zero-length segment makes no evaluations at all.
        count = solvers.forward_nfe(spec, num_steps)
        return jnp.where(t_start == t_end, 0, count)

    ok_result = diffrax.RESULTS.successful

    def segment(carry, inputs):
        a, a_th, count, ok = carry
        t_lo, t_hi, y_lo, y_hi, ct_hi = inputs
        a = a + ct_hi
        # A segment shorter than the forward solve's mean step is tried in one step (the usual case with
        # many save times); longer ones let the controller choose. Why not always guess: diffrax spends
        # one evaluation more than the NFE rule counts when a given first step is rejected, which is
        # likely for a long segment and rare for a short one (then the backward NFE is one low).
        length = t_hi - t_lo
        guess = jnp.where((length > 0) & (length <= mean_step), length, 0.0)
        if cfg.sensealg == "backsolve":
            sol = _solve(
                cfg,
                dynamic,
                backsolve_vf,
                t_hi,
                t_lo,
                (y_hi, a, a_th),
                theta,
                diffrax.SaveAt(t1=True),
                cfg.problem.max_steps,
                backwards=True,
                guess=guess,
            )
            _, a, a_th = jtu.tree_map(lambda x: x[-1], sol.ys)
        else:
            if cfg.checkpointing:
                seg = _solve(
                    cfg,
                    dynamic,
                    forward_vf,
                    t_lo,
                    t_hi,
                    y_lo,
                    theta,
                    diffrax.SaveAt(t1=True, dense=True),
                    cfg.segment_max_steps,
                    backwards=False,
                )
                interp = seg.interpolation
                count = count + nfe(seg.stats["num_steps"], t_lo, t_hi)
                ok = ok & (seg.result == ok_result)
            else:
                interp = interpolation
            sol = _solve(
                cfg,
                dynamic,
                interpolating_vf,
                t_hi,
                t_lo,
                (a, a_th),
                (interp, theta),
                diffrax.SaveAt(t1=True),
                cfg.problem.max_steps,
                backwards=True,
                guess=guess,
            )
            a, a_th = jtu.tree_map(lambda x: x[-1], sol.ys)
        count = count + nfe(sol.stats["num_steps"], t_hi, t_lo)
        ok = ok & (sol.result == ok_result)
        return (a, a_th, count, ok), None

    a_th0 = jtu.tree_map(jnp.zeros_like, theta)
    init = (jnp.zeros_like(y0), a_th0, jnp.zeros((), jnp.int32), jnp.array(True))
    inputs = (grid_t[:-1], grid_t[1:], grid_y[:-1], grid_y[1:], grid_ct[1:])
    (a, a_th, count, ok), _ = jax.lax.scan(segment, init, inputs, reverse=True)
    a = (a + grid_ct[0]) * scale
    a_th = jtu.tree_map(lambda g: g * scale.astype(g.dtype), a_th)

    # A failed backward solve (or a checkpoint segment over budget) gives NaN, never a wrong number.
    poison = jnp.where(ok, 1.0, jnp.nan).astype(y0.dtype)
    grad_theta = jtu.tree_map(lambda g: g * poison.astype(g.dtype), a_th)
    if spec.implicit:
        count = jnp.full_like(count, -1)
    return grad_theta, a * poison, jnp.asarray(count, probe.dtype)


def _differentiable_field(f: Any, t0: jax.Array, y0: jax.Array, args: Any) -> Any:
    """``f`` with every array it depends on visible as a pytree leaf.

    An equinox module already exposes its arrays. A plain function may close over traced arrays
    (e.g. ``lambda t, y, args: mlp(y)`` inside a loss): closure conversion hoists them into leaves so
    that they receive gradients. Functions that close over no tracers are used as they are, which
    keeps repeated eager solves on diffrax's compilation cache.
    """
    if isinstance(f, eqx.Module):
        return f
    converted = eqx.filter_closure_convert(f, t0, y0, args)
    if any(isinstance(c, jax.core.Tracer) for c in jtu.tree_leaves(converted)):
        return converted
    return f


def _num_extra_checkpoints(checkpointing: bool | int) -> tuple[bool, int]:
    if isinstance(checkpointing, bool):
        return checkpointing, 0
    if isinstance(checkpointing, numbers.Integral) and checkpointing >= 1:
        return True, int(checkpointing) - 1
    raise solvers.SolveError(
        "checkpointing must be True, False or a positive number of checkpoint intervals, "
        f"got {checkpointing!r}"
    )


def solve_continuous(
    sensealg: str,
    f: Any,
    y0: jax.Array,
    args: Any,
    t0: jax.Array,
    ts: jax.Array,
    problem: solvers.Problem,
    dense: bool,
    checkpointing: bool | int,
    nfe_probe: jax.Array | None,
) -> tuple[diffrax.Solution, jax.Array, solvers.Stats]:
    """Forward solve whose reverse mode is the continuous adjoint named by ``sensealg``.

    Returns the forward diffrax solution (for its result code and dense output), the states at ``ts``
    (differentiable through the adjoint) and the forward statistics.
    """
    checkpointing, n_extra = _num_extra_checkpoints(checkpointing)
    if sensealg == "backsolve":
        checkpointing, n_extra = False, 0  # backsolve keeps no checkpoints beyond the outputs
    theta_f, static_f = eqx.partition(_differentiable_field(f, t0, y0, args), eqx.is_inexact_array)
    theta_args, static_args = eqx.partition(args, eqx.is_inexact_array)
    segments = max(1, ts.shape[0] - 1 + n_extra)
    cfg = _Config(
        sensealg=sensealg,
        # The step size and the controller (tolerances) travel as arrays, not in this static config:
        # a new dt or rtol is then no recompile.
        problem=dataclasses.replace(problem, dt0=None, controller=None, rtol=0.0, atol=0.0),
        static_f=static_f,
        static_args=static_args,
        dense=dense or (sensealg == "interpolating" and not checkpointing),
        n_extra=n_extra,
        checkpointing=checkpointing,
        segment_max_steps=min(problem.max_steps, 4 * math.ceil(problem.max_steps / segments) + 64),
        t_dtype=str(t0.dtype),
    )
    probe = jnp.zeros((), y0.dtype) if nfe_probe is None else nfe_probe
    dynamic = (problem.first_step(t0.dtype), problem.controller)
    ys, sol = _continuous(((theta_f, theta_args), y0, probe), t0, ts, dynamic, cfg)
    stats = solvers.Stats(
        sol.stats["num_accepted_steps"],
        sol.stats["num_rejected_steps"],
        solvers.forward_nfe(problem.spec, sol.stats["num_steps"]),
    )
    return sol, ys, stats
