"""Conv NODE / ANODE: convolutions, augmentation, parameter counts, an analytic solve, gradients, NFE."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pyanode.errors import PyanodeError
from pyanode.models.conv import (
    ConvODEFunc,
    ConvODENet,
    _conv,
    conv_param_count,
    count_params,
    matched_num_filters,
)

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_im2col_conv_equals_equinox_conv(k):
    layer = eqx.nn.Conv2d(4, 7, k, padding=k // 2, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 4, 9, 6))
    np.testing.assert_allclose(_conv(layer, x), jax.vmap(layer)(x), atol=2e-6)


def test_vector_field_is_the_reference_architecture():
    """Three convs (1x1, 3x3, 1x1) with ReLU; time enters as a constant first channel of every conv."""
    f = ConvODEFunc(3, 5, time_dependent=True, key=KEY)
    assert [c.weight.shape for c in f.convs] == [(5, 4, 1, 1), (5, 6, 3, 3), (3, 6, 1, 1)]
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 6, 6))

    def reference(t, h):
        for i, conv in enumerate(f.convs):
            h = jnp.concatenate([jnp.full((h.shape[0], 1, *h.shape[2:]), t), h], axis=1)
            h = jax.vmap(conv)(h)
            h = jax.nn.relu(h) if i < 2 else h
        return h

    np.testing.assert_allclose(f(0.3, x), reference(0.3, x), atol=1e-6)
    np.testing.assert_allclose(f(0.3, x[0]), reference(0.3, x)[0], atol=1e-6)  # unbatched state
    assert float(jnp.max(jnp.abs(f(0.9, x) - f(0.1, x)))) > 1e-3
    autonomous = ConvODEFunc(3, 5, time_dependent=False, key=KEY)
    np.testing.assert_array_equal(autonomous(0.9, x), autonomous(0.1, x))


def test_parameter_counts_match_the_paper_pair():
    def shape(*args, **kwargs):  # the models' structure, nothing drawn (drawing compiles per layer shape)
        return eqx.filter_eval_shape(lambda: ConvODENet(*args, **kwargs, key=KEY))

    node = shape((1, 28, 28), 92, 10, 0, True)
    anode = shape((1, 28, 28), 64, 10, 5, True)
    assert count_params(node) == conv_param_count((1, 28, 28), 92, 10, 0, True) == 85_316
    assert count_params(anode) == conv_param_count((1, 28, 28), 64, 10, 5, True) == 85_462
    assert matched_num_filters((1, 28, 28), 10, 85_462, 0, True) == 92
    for args in [((3, 32, 32), 12, 10, 2, False, (3, 3, 3)), ((1, 8, 8), 7, 4, 1, True, (1, 3, 1))]:
        assert count_params(shape(*args[:5], kernel_sizes=args[5])) == conv_param_count(*args)
    # The same count from a model's arrays as from its shape.
    small = ConvODENet((1, 8, 8), 7, 4, 1, True, kernel_sizes=(1, 3, 1), key=KEY)
    assert count_params(small) == conv_param_count((1, 8, 8), 7, 4, 1, True, (1, 3, 1))


def test_augmentation_appends_zero_channels_and_shapes():
    model = ConvODENet((3, 8, 8), 6, 10, augment_dim=2, key=KEY)
    x = jax.random.uniform(KEY, (5, 3, 8, 8))
    h0 = model.initial_state(x)
    assert h0.shape == (5, 5, 8, 8)
    np.testing.assert_array_equal(h0[:, :3], x)
    np.testing.assert_array_equal(h0[:, 3:], 0.0)
    logits, nfe = model.forward(x)
    assert logits.shape == (5, 10) and int(nfe) >= 7
    assert model.features(x).shape == (5, 5, 8, 8)


def test_constant_vector_field_gives_the_exact_flow():
    """With the last conv's weights zero, f(t, h) = b (its bias) and h(T) = h(0) + T b exactly."""
    model = ConvODENet((1, 6, 6), 4, 3, augment_dim=2, T=1.0, key=KEY)
    bias = jnp.array([0.5, -1.0, 2.0])
    last = model.block.func.convs[2]
    model = eqx.tree_at(
        lambda m: (m.block.func.convs[2].weight, m.block.func.convs[2].bias),
        model,
        (jnp.zeros_like(last.weight), bias[:, None, None]),
    )
    x = jax.random.uniform(KEY, (4, 1, 6, 6))
    h = model.features(x)
    expected = model.initial_state(x) + bias[None, :, None, None]
    np.testing.assert_allclose(h, expected, atol=1e-5)
    flat = expected.reshape(4, -1)
    np.testing.assert_allclose(model(x), flat @ model.linear.weight.T + model.linear.bias, atol=1e-4)


def test_gradient_matches_finite_differences_and_backward_nfe(x64):
    model = ConvODENet((1, 5, 5), 3, 4, augment_dim=1, time_dependent=True, rtol=1e-10, atol=1e-10, key=KEY)
    model = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model)
    x = jax.random.uniform(KEY, (3, 1, 5, 5), dtype=jnp.float64)
    y = jnp.array([0, 2, 3])

    @jax.jit
    def loss(scales, probe):
        # scale the weights of the second and third conv: a 2-D slice of the parameter space
        m = eqx.tree_at(
            lambda m: (m.block.func.convs[1].weight, m.block.func.convs[2].weight),
            model,
            (model.block.func.convs[1].weight * scales[0], model.block.func.convs[2].weight * scales[1]),
        )
        logits, nfe = m.forward(x, probe)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(3), y]), nfe

    ones = jnp.ones(2)
    (value, nfe), (g, probe_grad) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(ones, 0.0)
    eps = 1e-2  # the adaptive steps make the loss piecewise smooth at the 1e-10 level: a wide stencil
    for i in range(2):
        e = jnp.zeros(2).at[i].set(eps)
        fd = (loss(ones + e, 0.0)[0] - loss(ones - e, 0.0)[0]) / (2 * eps)
        assert float(g[i]) == pytest.approx(float(fd), rel=1e-3, abs=3e-6)
    assert abs(float(g[1])) > 1e-3  # the third conv's gradient is large enough for rel=1e-3 to bite
    # discretise-then-optimise: one vector-field VJP per forward evaluation
    assert int(nfe) > 7 and float(probe_grad) == float(nfe)


def test_bad_inputs_are_refused():
    model = ConvODENet((1, 8, 8), 4, 10, key=KEY)
    with pytest.raises(
        PyanodeError, match=r"expected images of shape \(batch, 1, 8, 8\), got \(2, 8, 8, 1\)"
    ):
        model(jnp.zeros((2, 8, 8, 1)))
    with pytest.raises(PyanodeError, match="img_size must be"):
        ConvODENet((8, 8), 4, 10, key=KEY)
    with pytest.raises(PyanodeError, match="augment_dim must be an integer >= 0"):
        ConvODENet((1, 8, 8), 4, 10, augment_dim=-1, key=KEY)
    with pytest.raises(PyanodeError, match="kernel_sizes must be three odd"):
        ConvODENet((1, 8, 8), 4, 10, kernel_sizes=(2, 3, 1), key=KEY)
    with pytest.raises(PyanodeError, match="ODEBlock needs an adaptive solver"):
        ConvODENet((1, 8, 8), 4, 10, solver="euler", key=KEY)


def test_save_and_load_round_trip(tmp_path):
    from pyanode.train import load_model, save_model

    model = ConvODENet((1, 8, 8), 4, 10, augment_dim=2, time_dependent=True, key=KEY)
    path = save_model(tmp_path / "conv.eqx", model)
    again = load_model(path)
    assert isinstance(again, ConvODENet) and again.hyperparams() == model.hyperparams()
    x = jax.random.uniform(KEY, (3, 1, 8, 8))
    np.testing.assert_array_equal(again(x), model(x))
