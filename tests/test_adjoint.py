"""Sensitivity algorithms: finite differences, mutual agreement, backward NFE against a direct count."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pyanode

CONFIGS = {
    "checkpoint": ("checkpoint", False),
    "interpolating": ("interpolating", False),
    "interpolating+checkpointing": ("interpolating", True),
    "backsolve": ("backsolve", False),
}


class MLPField(eqx.Module):
    """dy/dt = scale * MLP(y) + shift, with (scale, shift) passed as ``args``."""

    mlp: eqx.nn.MLP

    def __call__(self, t, y, args):
        return args["scale"] * self.mlp(y) + args["shift"] * jnp.cos(t)


def mlp_problem():
    field = MLPField(eqx.nn.MLP(3, 3, 16, 2, activation=jnp.tanh, key=jax.random.PRNGKey(0)))
    y0 = jnp.array([0.5, -0.3, 0.2])
    args = {"scale": jnp.array(0.8), "shift": jnp.array([0.1, 0.0, -0.2])}
    return field, y0, args


TS = np.linspace(0.2, 2.0, 6)  # the loss reads six saved times; t0 = 0 is before the first
WEIGHTS = np.linspace(0.5, 1.5, 18).reshape(6, 3)


def mlp_loss(params, sensealg, checkpointing, rtol):
    field, y0, args = params
    sol = pyanode.solve(
        field, y0, TS, args=args, t0=0.0, rtol=rtol, atol=rtol, sensealg=sensealg, checkpointing=checkpointing
    )
    return jnp.sum(WEIGHTS * jnp.sin(sol.ys))


def tree_dot(a, b):
    # numpy: the float64 arrays may be compared outside the x64 context.
    pairs = zip(jtu.tree_leaves(a), jtu.tree_leaves(b), strict=True)
    return sum(float(np.vdot(np.asarray(x), np.asarray(y))) for x, y in pairs)


def max_relative_difference(a, b):
    pairs = zip(jtu.tree_leaves(a), jtu.tree_leaves(b), strict=True)
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / np.max(np.abs(np.asarray(y)))) for x, y in pairs
    )


@pytest.fixture(scope="module")
def mlp_gradients():
    """Gradients of the MLP loss for every configuration (float64, tight tolerances), computed once."""
    with jax.enable_x64(True):
        params = jtu.tree_map(
            lambda x: jnp.asarray(x, jnp.float64) if eqx.is_inexact_array(x) else x, mlp_problem()
        )
        grads = {}
        for name, (sensealg, checkpointing) in CONFIGS.items():
            grad = eqx.filter_jit(
                eqx.filter_grad(lambda p, s=sensealg, c=checkpointing: mlp_loss(p, s, c, 1e-10))
            )
            grads[name] = grad(params)
        loss = eqx.filter_jit(lambda p: mlp_loss(p, "checkpoint", False, 1e-12))
        # Central differences along: 3 random directions in all of (parameters, y0, args), each
        # coordinate of y0, and each leaf of args.
        diff, static = eqx.partition(params, eqx.is_inexact_array)
        leaves, treedef = jtu.tree_flatten(diff)
        directions = []
        for k in range(3):
            keys = jax.random.split(jax.random.PRNGKey(10 + k), len(leaves))
            directions.append(
                jtu.tree_unflatten(
                    treedef,
                    [jax.random.normal(q, x.shape, x.dtype) for q, x in zip(keys, leaves, strict=True)],
                )
            )
        zero = jtu.tree_map(jnp.zeros_like, diff)
        for i in range(3):
            directions.append(eqx.tree_at(lambda d: d[1], zero, jnp.zeros(3).at[i].set(1.0)))
        directions.append(eqx.tree_at(lambda d: d[2]["scale"], zero, jnp.array(1.0)))
        directions.append(eqx.tree_at(lambda d: d[2]["shift"], zero, jnp.array([1.0, -1.0, 0.5])))
        h = 1e-3
        fd = []
        for v in directions:
            plus = eqx.combine(jtu.tree_map(lambda x, d: x + h * d, diff, v), static)
            minus = eqx.combine(jtu.tree_map(lambda x, d: x - h * d, diff, v), static)
            fd.append(float((loss(plus) - loss(minus)) / (2 * h)))
        # Fourth-order differences cancel the h^2 truncation error of the central ones.
        fd4 = []
        for v, f1 in zip(directions, fd, strict=True):
            plus = eqx.combine(jtu.tree_map(lambda x, d: x + 2 * h * d, diff, v), static)
            minus = eqx.combine(jtu.tree_map(lambda x, d: x - 2 * h * d, diff, v), static)
            f2 = float((loss(plus) - loss(minus)) / (4 * h))
            fd4.append((4 * f1 - f2) / 3)
        return grads, directions, np.array(fd4)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gradient_matches_finite_differences(mlp_gradients, name):
    grads, directions, fd = mlp_gradients
    grad = grads[name]
    diff = eqx.filter(grad, eqx.is_inexact_array)
    assert jtu.tree_leaves(diff[0])[0].dtype == jnp.float64
    # Gradients reach the MLP's weights, y0 and both leaves of args.
    assert all(np.max(np.abs(np.asarray(x))) > 0 for x in jtu.tree_leaves(diff))
    analytic = np.array([float(tree_dot(diff, v)) for v in directions])
    relative = np.abs(analytic - fd) / np.abs(fd)
    assert np.all(relative <= 1e-5), relative


def test_sensealgs_agree_at_tight_tolerance(mlp_gradients):
    grads, _, _ = mlp_gradients
    reference = eqx.filter(grads["checkpoint"], eqx.is_inexact_array)
    for name, grad in grads.items():
        assert max_relative_difference(eqx.filter(grad, eqx.is_inexact_array), reference) < 1e-7, name
    # Checkpointing re-solves each segment, which must not change the gradient beyond the tolerance.
    a = eqx.filter(grads["interpolating"], eqx.is_inexact_array)
    b = eqx.filter(grads["interpolating+checkpointing"], eqx.is_inexact_array)
    assert max_relative_difference(a, b) < 1e-7


def random_field(t, y, args):
    w, b = args
    return jnp.tanh(w @ y + b) - 0.3 * y


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), horizon=st.floats(0.5, 3.0))
def test_random_fields_agree_across_sensealgs(seed, horizon):
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
        w = 1.5 * jax.random.normal(k1, (4, 4), jnp.float64)
        b = jax.random.normal(k2, (4,), jnp.float64)
        y0 = jax.random.normal(k3, (4,), jnp.float64)
        ts = jnp.linspace(0.0, 1.0, 8) * horizon
        grads = {
            name: _random_field_grad(name, w, b, y0, ts)
            for name in ("checkpoint", "interpolating", "backsolve")
        }
        for name in ("interpolating", "backsolve"):
            assert max_relative_difference(grads[name], grads["checkpoint"]) < 1e-5, name


def _loss_random(params, ts, sensealg):
    w, b, y0 = params
    sol = pyanode.solve(random_field, y0, ts, args=(w, b), rtol=1e-9, atol=1e-9, sensealg=sensealg)
    return jnp.sum(sol.ys**2) + jnp.sum(sol.ys[-1])


_random_field_grads = {
    name: jax.jit(jax.grad(lambda p, ts, n=name: _loss_random(p, ts, n)))
    for name in ("checkpoint", "interpolating", "backsolve")
}


def _random_field_grad(name, w, b, y0, ts):
    return _random_field_grads[name]((w, b, y0), ts)


@pytest.mark.parametrize(
    ("sensealg", "checkpointing", "solver"),
    [
        ("interpolating", False, "tsit5"),
        ("interpolating", True, "bosh3"),
        ("interpolating", 4, "rk4"),
        ("backsolve", False, "tsit5"),
    ],
)
def test_backward_nfe_matches_direct_count(sensealg, checkpointing, solver):
    calls = []

    def counted(t, y, args):
        jax.debug.callback(lambda: calls.append(1))
        return jnp.tanh(args @ y)

    def loss(matrix, probe):
        sol = pyanode.solve(
            counted, jnp.array([1.0, 0.5]), jnp.linspace(0.0, 3.0, 6), args=matrix, t0=-0.5, solver=solver,
            dt=0.1, rtol=1e-5, atol=1e-5, sensealg=sensealg, checkpointing=checkpointing, nfe_probe=probe,
        )  # fmt: skip
        return jnp.sum(sol.ys**2), sol.stats.nfe_forward

    grad = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
    matrix = jnp.array([[-0.5, 1.0], [-1.0, -0.2]])
    jax.block_until_ready(grad(matrix, jnp.zeros(())))
    calls.clear()
    (_, nfe_backward), nfe_forward = jax.block_until_ready(grad(matrix, jnp.zeros(())))
    # Every call of f during the backward pass is a VJP (or, when checkpointing, a forward re-solve).
    assert int(nfe_backward) == len(calls) - int(nfe_forward)
    assert int(nfe_backward) > 0


def exact_decay_gradient(rate, y0, ts):
    # L = sum_i y(t_i)^2 with y = y0 exp(-rate t): dL/drate = sum -2 t y^2, dL/dy0 = sum 2 y exp(-rate t).
    y = y0 * np.exp(-rate * ts)
    return float(np.sum(-2 * ts * y**2)), float(np.sum(2 * y * np.exp(-rate * ts)))


@pytest.mark.parametrize(
    ("solver", "sensealg", "tolerance"),
    [
        ("rk4", "interpolating", 1e-6),
        ("rk4", "backsolve", 1e-6),
        ("midpoint", "interpolating", 1e-3),
        ("kvaerno5", "interpolating", 1e-5),
        ("kencarp4", "backsolve", 1e-5),
    ],
)
def test_gradients_with_fixed_step_and_implicit_solvers(x64, solver, sensealg, tolerance):
    ts = np.linspace(0.25, 2.0, 8)

    def loss(rate, y0):
        sol = pyanode.solve(
            lambda t, y, k: -k * y, y0, ts, args=rate, t0=0.0, solver=solver, dt=0.01, rtol=1e-9, atol=1e-9,
            sensealg=sensealg,
        )  # fmt: skip
        return jnp.sum(sol.ys**2)

    g_rate, g_y0 = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.array(0.7), jnp.array(1.3))
    e_rate, e_y0 = exact_decay_gradient(0.7, 1.3, ts)
    assert abs(float(g_rate) - e_rate) / abs(e_rate) < tolerance
    assert abs(float(g_y0) - e_y0) / abs(e_y0) < tolerance


@pytest.mark.parametrize("sensealg", ["interpolating", "backsolve"])
def test_gradient_reaches_arrays_a_plain_function_closes_over(sensealg):
    ts = jnp.linspace(0.0, 1.0, 5)

    def loss(rate):
        sol = pyanode.solve(lambda t, y, args: -rate * y, jnp.array([1.0]), ts, sensealg=sensealg)
        return jnp.sum(sol.ys)

    g = jax.jit(jax.grad(loss))(jnp.array(0.5, jnp.float32))
    exact = float(np.sum(-np.asarray(ts) * np.exp(-0.5 * np.asarray(ts))))
    assert g.dtype == jnp.float32  # float32 by default, gradients too
    assert abs(float(g) - exact) < 1e-4
