"""The ODE engine: accuracy against analytic solutions, convergence orders, stiffness, NFE rule, errors."""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pyanode
from pyanode.engine import SolveError


def decay(t, y, args):
    return -args * y


def oscillator(t, y, args):
    return jnp.stack([y[1], -y[0]])


def van_der_pol(t, y, mu):
    return jnp.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


def oscillator_error(solver, rtol, **kw):
    ts = jnp.linspace(0.0, 20 * np.pi, 41)  # ten periods
    sol = pyanode.solve(oscillator, jnp.array([1.0, 0.0]), ts, solver=solver, rtol=rtol, atol=rtol, **kw)
    tn = np.asarray(ts)
    exact = np.stack([np.cos(tn), -np.sin(tn)], axis=1)
    return float(np.max(np.abs(np.asarray(sol.ys) - exact))), sol


def test_decay_matches_exponential(x64):
    ts = jnp.linspace(0.0, 5.0, 11)
    errors = []
    for rtol in (1e-4, 1e-7, 1e-10):
        sol = pyanode.solve(decay, jnp.array([2.0, -1.0]), ts, args=0.7, rtol=rtol, atol=rtol)
        exact = np.exp(-0.7 * np.asarray(ts))[:, None] * np.array([2.0, -1.0])
        errors.append(float(np.max(np.abs(np.asarray(sol.ys) - exact))))
    assert errors[0] < 1e-3
    assert errors[2] < 1e-8
    assert errors[0] > errors[1] > errors[2]


def test_oscillator_ten_periods_error_shrinks_with_rtol(x64):
    errors = [oscillator_error("tsit5", rtol)[0] for rtol in (1e-4, 1e-6, 1e-8, 1e-10)]
    assert errors[-1] < 1e-7
    # Every hundredfold tighter tolerance buys at least a tenfold smaller global error.
    assert all(b < a / 10 for a, b in zip(errors, errors[1:], strict=False)), errors


@pytest.mark.parametrize(("solver", "tight"), [("dopri5", 1e-9), ("dopri8", 1e-9), ("bosh3", 1e-7)])
def test_other_adaptive_solvers_are_accurate(x64, solver, tight):
    loose, _ = oscillator_error(solver, tight * 1e4, max_steps=20000)
    error, sol = oscillator_error(solver, tight, max_steps=20000)
    assert error < 1e3 * tight and error < loose / 30, (loose, error)
    assert int(sol.stats.num_accepted_steps) > 0


@pytest.mark.parametrize(("solver", "order"), [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_fixed_step_solvers_converge_at_their_order(x64, solver, order):
    dts = np.array([0.1, 0.05, 0.025, 0.0125])
    errors = []
    for dt in dts:
        sol = pyanode.solve(oscillator, jnp.array([1.0, 0.0]), jnp.array([0.0, 2.0]), solver=solver, dt=dt)
        errors.append(np.max(np.abs(np.asarray(sol.ys[-1]) - np.array([np.cos(2.0), -np.sin(2.0)]))))
        assert int(sol.stats.num_accepted_steps) == round(2.0 / dt)
        assert int(sol.stats.num_rejected_steps) == 0
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.15, slope


def test_stiff_van_der_pol_needs_an_implicit_solver(x64):
    y0, ts = jnp.array([2.0, 0.0]), jnp.linspace(0.0, 1000.0, 5)
    sol = pyanode.solve(
        van_der_pol, y0, ts, args=1000.0, solver="kencarp4", rtol=1e-5, atol=1e-5, max_steps=1000
    )
    # Slow manifold: y0 decreases from 2 past 1 and then jumps to about -2 (the relaxation jump at t ~ 807).
    ys = np.asarray(sol.ys)
    assert np.all(np.diff(ys[:4, 0]) < 0) and 1.0 < ys[3, 0] < 1.5
    assert -2.0 < ys[4, 0] < -1.7
    assert int(sol.stats.num_steps) < 400
    assert int(sol.stats.nfe_forward) == -1  # implicit: evaluations depend on Newton, not counted
    with pytest.raises(SolveError) as info:
        pyanode.solve(van_der_pol, y0, ts, args=1000.0, solver="tsit5", rtol=1e-5, atol=1e-5, max_steps=1000)
    message = str(info.value)
    assert "max_steps=1000" in message and "kvaerno5" in message and "looser rtol/atol" in message
    reached = float(re.search(r"stopped at t=([0-9.e+-]+)", message).group(1))
    assert 0.0 < reached < 250.0  # the explicit solver crawls: far short of the first save time


@pytest.mark.parametrize(
    ("solver", "dt"),
    [("tsit5", None), ("dopri5", None), ("dopri8", None), ("bosh3", None)]
    + [(name, 0.1) for name in ("euler", "midpoint", "heun", "rk4")],
)
def test_nfe_rule_matches_direct_count(solver, dt):
    calls = []

    def counted(t, y, args):
        jax.debug.callback(lambda: calls.append(1))
        return jnp.tanh(args @ y)

    matrix = jnp.array([[-0.5, 1.0], [-1.0, -0.2]])
    run = jax.jit(
        lambda m: (
            pyanode.solve(
                counted,
                jnp.array([1.0, 0.5]),
                jnp.linspace(0.0, 3.0, 7),
                args=m,
                solver=solver,
                dt=dt,
                rtol=1e-6,
                atol=1e-6,
            ).stats
        )
    )
    stats = jax.block_until_ready(run(matrix))
    calls.clear()
    stats = jax.block_until_ready(run(matrix))
    spec = pyanode.SOLVERS[solver]
    steps = int(stats.num_accepted_steps) + int(stats.num_rejected_steps)
    expected = 1 + (spec.stages - 1) * steps if spec.fsal else spec.stages * steps
    assert int(stats.nfe_forward) == expected == len(calls)


def test_dense_output_and_float_precision(x64):
    sol = pyanode.solve(
        oscillator, jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0, 2.0]), rtol=1e-10, atol=1e-10, dense=True
    )
    assert sol.ys.dtype == jnp.float64
    for t in (0.3, 1.7):
        assert abs(float(sol.evaluate(t)[0]) - np.cos(t)) < 1e-7
    with pytest.raises(SolveError, match="dense=True"):
        pyanode.solve(oscillator, jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])).evaluate(0.5)


def test_float32_by_default():
    sol = pyanode.solve(decay, jnp.array([1.0]), jnp.array([0.0, 1.0]), args=1.0)
    assert sol.ys.dtype == jnp.float32
    assert abs(float(sol.ys[-1, 0]) - np.exp(-1.0)) < 1e-5


# numpy, not jnp, in the parameters: a jnp array made at collection starts JAX's thread pools, and a
# process forked after that (mutmut's forkserver forks each mutant from a collected session) deadlocks.
@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"solver": "rk45"}, r"unknown solver 'rk45'; choose one of: tsit5, dopri5, .*kencarp4"),
        ({"sensealg": "adjoint"}, r"unknown sensealg 'adjoint'; choose one of: interpolating"),
        ({"solver": "rk4"}, r"takes fixed steps: give a positive dt"),
        ({"rtol": 0.0}, r"rtol and atol must be positive"),
        ({"ts": np.array([0.0, 2.0, 1.0])}, r"strictly increasing.*ts\[1\]=2 >= ts\[2\]=1; sort the times"),
        ({"ts": np.array([0.0, 1.0, 1.0])}, r"strictly increasing.*drop duplicates"),
        ({"ts": np.array([1.0, 0.0])}, r"strictly increasing, but ts\[0\]=1 >= ts\[1\]=0; sort the times"),
        ({"ts": np.zeros((2, 3))}, r"ts must be a 1-D array of save times, got shape \(2, 3\)"),
        ({"ts": np.zeros(0)}, r"ts must be a 1-D array of save times, got shape \(0,\)"),
        ({"y0": np.array([1.0, np.nan])}, r"y0 contains NaN or inf; give a finite initial state"),
        (
            {"y0": np.ones(3)},
            r"returned shape \(2,\) for a state of shape \(3,\); f\(t, y, args\) must return",
        ),
        ({"t0": 0.5}, r"t0=0.5 is after the first save time 0; give t0 <= ts\[0\]"),
        ({"checkpointing": 0}, r"checkpointing must be True, False or a positive number"),
    ],
)
def test_errors_say_what_to_do(kwargs, pattern):
    call = {"y0": jnp.array([1.0, 0.0]), "ts": jnp.array([0.0, 1.0])} | kwargs
    y0, ts = call.pop("y0"), call.pop("ts")
    with pytest.raises(SolveError, match=pattern):
        pyanode.solve(oscillator, y0, ts, **call)


def test_a_field_without_args_is_told_the_convention():
    with pytest.raises(SolveError, match=r"^f must be called as f\(t, y, args\) \(diffrax's convention"):
        pyanode.solve(lambda t, y: -y, jnp.array([1.0]), jnp.linspace(0.0, 1.0, 3))


def test_nan_state_is_reported():
    def breaks(t, y, args):
        return -y + jnp.where(t > 0.5, jnp.nan, 0.0)

    with pytest.raises(
        SolveError, match=r"NaN or inf by t=0.8 \(last finite state saved at t=0.4\).*check the vector"
    ):
        pyanode.solve(breaks, jnp.array([1.0]), jnp.linspace(0.0, 1.6, 5), solver="euler", dt=0.1)
    # An adaptive solver rejects the NaN steps until it runs out of steps; the error says where.
    with pytest.raises(SolveError, match=r"stopped at t=0.5"):
        pyanode.solve(breaks, jnp.array([1.0]), jnp.linspace(0.0, 1.6, 5), max_steps=200)


def test_enable_x64_is_the_switch_to_float64():
    before = jax.config.jax_enable_x64
    try:
        pyanode.enable_x64()
        sol = pyanode.solve(decay, jnp.array([1.0]), jnp.array([0.0, 1.0]), args=1.0, rtol=1e-12, atol=1e-12)
        assert sol.ys.dtype == jnp.float64
        assert abs(float(sol.ys[-1, 0]) - np.exp(-1.0)) < 1e-11  # beyond float32's resolution
    finally:
        pyanode.enable_x64(before)


def test_dt0_is_the_first_step_of_an_adaptive_solver():
    """bosh3 evaluates its first step at t0, t0 + dt0/2, t0 + 3 dt0/4 and t0 + dt0: the times show dt0."""
    times = []

    def recorded(t, y, args):
        jax.debug.callback(lambda s: times.append(float(s)), t)
        return -y

    for dt0 in (0.3, 0.02):  # dt0 travels as an array: one compiled solve serves both
        times.clear()
        sol = pyanode.solve(recorded, jnp.array([1.0]), jnp.array([0.0, 1.0]), solver="bosh3", dt0=dt0)
        np.testing.assert_allclose(times[:4], [0.0, dt0 / 2, 3 * dt0 / 4, dt0], rtol=1e-6)
        assert abs(float(sol.ys[-1, 0]) - np.exp(-1.0)) < 1e-5  # the controller takes over after it
    # A fixed-step solver takes dt0 as its step when dt is not given: ten Euler steps of 0.1.
    sol = pyanode.solve(decay, jnp.array([1.0]), jnp.array([0.0, 1.0]), args=1.0, solver="euler", dt0=0.1)
    assert int(sol.stats.num_accepted_steps) == 10
    assert float(sol.ys[-1, 0]) == pytest.approx(0.9**10, rel=1e-6)


@pytest.mark.parametrize("max_steps", [0, -3])
def test_max_steps_below_one_is_a_clear_error(max_steps):
    with pytest.raises(SolveError, match=rf"max_steps must be a positive integer, got {max_steps}$"):
        pyanode.solve(decay, jnp.array([1.0]), jnp.array([0.0, 1.0]), args=1.0, max_steps=max_steps)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_ts_is_a_clear_error(bad):
    with pytest.raises(SolveError, match=r"ts contains NaN or inf; give finite save times"):
        pyanode.solve(decay, jnp.array([1.0]), jnp.array([0.0, bad, 2.0]), args=1.0)


def test_under_jit_the_times_not_reached_within_max_steps_are_inf():
    """Nothing can be raised inside jit: the states the solver never reached come back as inf."""
    ts = jnp.linspace(0.0, 5.0, 11)

    @jax.jit
    def run(y0):
        return pyanode.solve(decay, y0, ts, args=1.0, solver="euler", dt=0.25, max_steps=3).ys

    ys = np.asarray(run(jnp.array([1.0])))
    # Three Euler steps of 0.25 reach t = 0.75: the saves at t = 0 and 0.5 are real, the rest inf.
    np.testing.assert_allclose(ys[:2, 0], [1.0, 0.75**2], rtol=1e-6)
    assert np.isposinf(ys[2:]).all()
    # An adaptive solve that runs out of steps under jit does the same.
    ys = np.asarray(jax.jit(lambda y0: pyanode.solve(decay, y0, ts, args=1.0, max_steps=2).ys)(jnp.ones(1)))
    assert ys[0, 0] == 1.0 and np.isposinf(ys[-1]).all()


def test_stats_as_dict_gives_plain_ints():
    sol = pyanode.solve(decay, jnp.array([1.0]), jnp.array([0.0, 1.0]), args=1.0, solver="rk4", dt=0.125)
    assert sol.stats.as_dict() == {"num_accepted_steps": 8, "num_rejected_steps": 0, "nfe_forward": 32}
    # Adaptive, with rejected steps, and after jit (the stats are arrays until as_dict).
    stats = jax.jit(
        lambda y0: pyanode.solve(
            van_der_pol, y0, jnp.array([0.0, 3.0]), args=5.0, rtol=1e-8, atol=1e-8, dt0=1.0
        ).stats
    )(jnp.array([2.0, 0.0]))
    d = stats.as_dict()
    assert list(d) == ["num_accepted_steps", "num_rejected_steps", "nfe_forward"]
    assert all(type(v) is int for v in d.values())
    assert d["num_rejected_steps"] > 0 and d["num_accepted_steps"] > 10
    assert d["num_accepted_steps"] + d["num_rejected_steps"] == int(stats.num_steps)
    assert d["nfe_forward"] == 1 + 6 * int(stats.num_steps)  # tsit5: FSAL, 7 stages
    assert json.loads(json.dumps(d)) == d


def test_checkpoint_sensealg_is_the_exact_discrete_solve_with_its_gradient_and_dense_output(x64):
    """rk4 on dy/dt = -k y multiplies y by P(k h) = 1 - kh + (kh)^2/2 - (kh)^3/6 + (kh)^4/24 per step, so with
    ``sensealg="checkpoint"`` (reverse mode through the steps) the states and the gradient are exact."""
    h, k = 0.125, 0.8
    x = k * h
    p = 1 - x + x**2 / 2 - x**3 / 6 + x**4 / 24
    dp = (-1 + x - x**2 / 2 + x**3 / 6) * h  # d P(k h) / dk
    ts = jnp.array([0.0, 0.5, 1.0])

    def run(rate, probe=None, dense=False):
        return pyanode.solve(decay, jnp.array([2.0]), ts, args=rate, solver="rk4", dt=h,
                             sensealg="checkpoint", dense=dense, nfe_probe=probe)

    sol = run(k, dense=True)
    np.testing.assert_allclose(np.asarray(sol.ys[:, 0]), [2.0, 2 * p**4, 2 * p**8], rtol=1e-13)
    assert sol.stats.as_dict() == {"num_accepted_steps": 8, "num_rejected_steps": 0, "nfe_forward": 32}
    assert float(sol.evaluate(0.5)[0]) == pytest.approx(2 * p**4, rel=1e-13)  # a step end: exact
    assert abs(float(sol.evaluate(0.3)[0]) - 2 * np.exp(-k * 0.3)) < 1e-5
    grad, nfe = jax.grad(lambda rate, probe: run(rate, probe).ys[-1, 0], argnums=(0, 1))(k, jnp.zeros(()))
    assert float(grad) == pytest.approx(2 * 8 * p**7 * dp, rel=1e-12)
    assert float(nfe) == 32.0  # the backward NFE: one VJP per forward evaluation, 8 steps of 4 stages


def test_running_out_of_steps_names_the_time_reached_for_a_field_with_args():
    """The error path re-solves to find where the solve stopped; it passes ``args`` on (here the rate)."""
    with pytest.raises(SolveError) as info:
        pyanode.solve(decay, jnp.array([1.0]), jnp.array([0.0, 1.0]), args=1.0, solver="euler", dt=0.25,
                      max_steps=2)
    assert str(info.value) == (
        "the solver took max_steps=2 steps and stopped at t=0.5 before reaching t=1; the solution may blow "
        "up there (then no solver gets past it: shorten the time span), or the problem may be stiff: try "
        "solver='kvaerno5' or 'kencarp4', looser rtol/atol, or a larger max_steps"
    )
