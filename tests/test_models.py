"""Models: shapes, augmentation, vector-field architecture, ODE block accuracy, ResNet = Euler."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import pyanode
from pyanode.errors import PyanodeError
from pyanode.models import NONLINEARITIES, ODEBlock, ODEFunc, ODENet, ResNet

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize(("augment", "time_dependent"), [(0, False), (3, True)])
def test_odenet_shapes_and_state(augment, time_dependent):
    model = ODENet(2, 16, 3, augment_dim=augment, time_dependent=time_dependent, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(1), (7, 2))
    pred, nfe = model.forward(x)
    assert pred.shape == (7, 3)
    assert int(nfe) > 0 and int(nfe) == 1 + 6 * (int(nfe) - 1) // 6  # dopri5: 1 + 6 per step
    assert model.features(x).shape == (7, 2 + augment)
    first = model.block.func.layers[0]
    assert first.weight.shape == (16, 2 + augment + int(time_dependent))
    assert model.block.func.layers[2].weight.shape == (2 + augment, 16)


def test_augmentation_appends_zeros_and_trajectory_starts_there():
    model = ODENet(2, 8, 1, augment_dim=3, key=KEY)
    x = jnp.array([[0.5, -1.0], [2.0, 3.0]])
    h0 = model.initial_state(x)
    np.testing.assert_array_equal(np.asarray(h0), [[0.5, -1.0, 0, 0, 0], [2.0, 3.0, 0, 0, 0]])
    ts, states = model.trajectory(x, num_times=5)
    assert states.shape == (5, 2, 5)
    np.testing.assert_array_equal(np.asarray(states[0]), np.asarray(h0))
    np.testing.assert_allclose(np.asarray(states[-1]), np.asarray(model.features(x)), rtol=1e-5, atol=1e-6)


def test_readout_free_prediction_is_first_state_components():
    model = ODENet(1, 8, 1, augment_dim=2, readout=False, key=KEY)
    x = jnp.array([[-1.0], [1.0]])
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model.features(x)[:, :1]))
    assert model.readout_layer is None
    with pytest.raises(PyanodeError, match="output_dim"):
        ODENet(1, 8, 4, augment_dim=2, readout=False, key=KEY)


def test_time_input_changes_the_field_only_when_time_dependent():
    h = jnp.ones((3, 4))
    f_t = ODEFunc(4, 8, time_dependent=True, nonlinearity="tanh", key=KEY)
    f_a = ODEFunc(4, 8, time_dependent=False, nonlinearity="tanh", key=KEY)
    assert not np.allclose(f_t(0.0, h), f_t(1.0, h))
    np.testing.assert_array_equal(f_a(0.0, h), f_a(1.0, h))
    # One unbatched state gives the same field as a row of a batch.
    np.testing.assert_allclose(f_t(0.3, h[0]), f_t(0.3, h)[0], rtol=1e-6)


@pytest.mark.parametrize("name", sorted(NONLINEARITIES))
def test_nonlinearity_matches_a_manual_mlp(name):
    f = ODEFunc(3, 5, nonlinearity=name, key=KEY)
    h = jax.random.normal(jax.random.PRNGKey(2), (4, 3))
    act = {
        "relu": lambda v: np.maximum(v, 0),
        "tanh": np.tanh,
        "softplus": lambda v: np.log1p(np.exp(v)),
        "swish": lambda v: v / (1 + np.exp(-v)),
    }[name]
    a = np.asarray(h, np.float64)
    for i, layer in enumerate(f.layers):
        a = a @ np.asarray(layer.weight, np.float64).T + np.asarray(layer.bias, np.float64)
        if i < 2:
            a = act(a)
    np.testing.assert_allclose(np.asarray(f(0.0, h, None)), a, rtol=1e-5, atol=1e-6)


class _Linear(eqx.Module):
    A: jax.Array

    def __call__(self, t, h, args):
        return h @ self.A.T


def test_ode_block_matches_matrix_exponential():
    A = jnp.array([[-0.5, 1.0], [-1.0, -0.2]])
    block = ODEBlock(_Linear(A), solver="tsit5", rtol=1e-7, atol=1e-7, T=2.0)
    h0 = jnp.array([[1.0, 0.0], [0.3, -2.0]])
    hT, nfe = block(h0)
    exact = np.asarray(h0) @ scipy.linalg.expm(2.0 * np.asarray(A)).T
    np.testing.assert_allclose(np.asarray(hT), exact, rtol=1e-5, atol=1e-5)
    assert int(nfe) == int(block.solve(h0).stats.nfe_forward)


class _RowDecay(eqx.Module):
    """Each row (y, k) decays as y' = -k y with its own constant rate k: a fast row and a slow row."""

    def __call__(self, t, h, args=None):
        return jnp.stack([-h[..., 1] * h[..., 0], jnp.zeros_like(h[..., 1])], axis=-1)


def test_batch_is_one_ode_with_a_shared_step(x64):
    """The whole batch is one solve: every row takes the steps its hardest row needs.

    A row decaying at rate 40 needs ~16 dopri5 steps at rtol = atol = 1e-3, one at rate 2 only 4. In one
    shared solve the slow row rides along the fast row's small steps, so the batch costs what the fast
    row costs and the slow row comes out far more accurate than when it is solved alone; solving the
    rows separately would give each row exactly its solo result.
    """
    model = ODENet(2, 8, 1, readout=False, rtol=1e-3, atol=1e-3, key=KEY)
    model = eqx.tree_at(lambda m: m.block.func, model, _RowDecay())
    fast, slow = jnp.array([[1.0, 40.0]]), jnp.array([[1.0, 2.0]])
    both = jnp.concatenate([fast, slow])
    (y_fast, nfe_fast), (y_slow, nfe_slow) = model.forward(fast), model.forward(slow)
    y_both, nfe_both = model.forward(both)
    assert int(nfe_slow) == 1 + 6 * 4 and int(nfe_fast) > 4 * int(nfe_slow)
    # One NFE for the batch, that of its hardest row: the error norm covers both rows, so the fast row's
    # error, averaged with the slow row's, sets the step (a few more rejected steps at most).
    assert int(nfe_fast) <= int(nfe_both) <= int(nfe_fast) + 3 * 6
    solo_error = abs(float(y_slow[0, 0]) - np.exp(-2.0))
    shared_error = abs(float(y_both[1, 0]) - np.exp(-2.0))
    assert solo_error > 1e-4  # 4 steps of size 0.25 at rate 2
    assert shared_error < 1e-3 * solo_error  # 16 small steps: the slow row took the fast row's steps
    # The fast row too is not its solo solve: the step is chosen from the whole batch's error.
    assert float(y_both[0, 0]) != float(y_fast[0, 0])
    # Row order does not matter: the same single solve.
    y_swapped, nfe_swapped = model.forward(both[::-1])
    assert int(nfe_swapped) == int(nfe_both)
    np.testing.assert_allclose(np.asarray(y_swapped[::-1]), np.asarray(y_both), rtol=1e-12)


def test_resnet_shared_weights_is_explicit_euler():
    L, T = 4, 1.0
    net = ResNet(2, 8, 1, num_layers=L, shared_weights=True, time_dependent=True, T=T, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(4), (5, 2))
    euler = pyanode.solve(net.funcs[0], x, jnp.array([T]), t0=0.0, solver="euler", dt=T / L).ys[-1]
    np.testing.assert_allclose(np.asarray(net.features(x)), np.asarray(euler), rtol=1e-5, atol=1e-6)


def test_resnet_equals_a_manual_residual_loop():
    L = 3
    net = ResNet(2, 8, 2, num_layers=L, augment_dim=1, time_dependent=True, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(5), (5, 2))
    h = np.concatenate([np.asarray(x), np.zeros((5, 1))], axis=1)
    for k in range(L):
        h = h + (1.0 / L) * np.asarray(net.funcs[k](k / L, jnp.asarray(h, jnp.float32), None))
    np.testing.assert_allclose(np.asarray(net.features(x)), h, rtol=1e-5, atol=1e-6)
    ts, states = net.trajectory(x)
    assert states.shape == (L + 1, 5, 3)
    np.testing.assert_allclose(np.asarray(ts), np.linspace(0, 1, L + 1))
    pred = np.asarray(net(x))
    lin = net.readout_layer
    np.testing.assert_allclose(
        pred, h @ np.asarray(lin.weight).T + np.asarray(lin.bias), rtol=1e-5, atol=1e-6
    )


def test_nfe_probe_gives_backward_nfe():
    x = jnp.ones((3, 2))
    net = ResNet(2, 8, 1, num_layers=6, key=KEY)
    back = jax.grad(lambda p: jnp.sum(net.forward(x, p)[0]))(jnp.zeros(()))
    assert float(back) == 6.0
    model = ODENet(2, 8, 1, sensealg="checkpoint", key=KEY)
    back = jax.grad(lambda p: jnp.sum(model.forward(x, p)[0]))(jnp.zeros(()))
    assert float(back) == float(model.forward(x)[1]) > 0


@pytest.mark.parametrize("cls", [ODENet, ResNet])
def test_hyperparams_rebuild_the_same_structure(cls):
    model = cls(3, 8, 2, augment_dim=1, time_dependent=True, nonlinearity="softplus", key=KEY)
    again = cls(**model.hyperparams(), key=jax.random.PRNGKey(9))
    assert jax.tree_util.tree_structure(model) == jax.tree_util.tree_structure(again)
    assert model.hyperparams() == again.hyperparams()


def test_bad_model_options_are_clear_errors():
    with pytest.raises(PyanodeError, match="nonlinearity"):
        ODEFunc(2, 4, nonlinearity="sigmoidal", key=KEY)
    with pytest.raises(PyanodeError, match="adaptive solver"):
        ODENet(2, 4, solver="euler", key=KEY)
    with pytest.raises(PyanodeError, match="sensealg"):
        ODENet(2, 4, sensealg="magic", key=KEY)
    with pytest.raises(PyanodeError, match="augment_dim"):
        ODENet(2, 4, augment_dim=-1, key=KEY)
    with pytest.raises(PyanodeError, match="num_layers"):
        ResNet(2, 4, num_layers=0, key=KEY)
