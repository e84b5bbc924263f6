"""Training loop: reproducibility, history, NFE columns, best model, Ctrl-C, save/load, sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from pyanode.datasets import spheres
from pyanode.errors import PyanodeError
from pyanode.models import ODENet, ResNet
from pyanode.train import LOSSES, evaluate, load_model, read_header, save_model, train

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def small_spheres():
    return spheres(num_inner=64, num_outer=128, seed=1)


def _model():
    # The spheres experiment's ANODE, so that the compiled step is shared with tests/test_experiments.py.
    return ODENet(2, 32, 1, augment_dim=1, time_dependent=True, key=KEY)


def _fit(data, seed=0, iterations=12, **kw):
    return train(
        _model(),
        data.x,
        data.y,
        iterations=iterations,
        batch_size=64,
        seed=seed,
        progress=False,
        accuracy="sign",
        **kw,
    )


@pytest.fixture(scope="module")
def fitted(small_spheres):
    return _fit(small_spheres)


def test_same_seed_same_history_and_different_seed_differs(small_spheres, fitted):
    a, b = fitted, _fit(small_spheres)
    cols = ["loss", "accuracy", "nfe_forward", "nfe_backward"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols])
    c = _fit(small_spheres, seed=1)
    assert not np.array_equal(a.history["loss"].to_numpy(), c.history["loss"].to_numpy())


def test_transform_sees_every_batch_and_keeps_the_batch_order(small_spheres, fitted):
    seen = []

    def identity(xb, rng):
        assert isinstance(rng, np.random.Generator)
        seen.append(xb.copy())
        return xb

    same = _fit(small_spheres, transform=identity)
    assert len(seen) == 12 and all(b.shape == (64, 2) for b in seen)
    pd.testing.assert_series_equal(same.history["loss"], fitted.history["loss"])  # same batches, same losses
    # A transform that changes the inputs changes the losses from the first step on.
    scaled = _fit(small_spheres, iterations=3, transform=lambda xb, rng: 3.0 * xb)
    assert abs(scaled.history["loss"].iloc[0] - fitted.history["loss"].iloc[0]) > 1e-2


def test_history_columns_and_nfe_are_positive_integers(fitted):
    h = fitted.history
    assert list(h.columns) == ["iteration", "loss", "accuracy", "nfe_forward", "nfe_backward", "seconds"]
    assert h["iteration"].tolist() == list(range(1, 13))
    for col in ("nfe_forward", "nfe_backward"):
        assert pd.api.types.is_integer_dtype(h[col]) and (h[col] > 0).all()
    # dopri5 evaluates the field 1 + 6 * steps times; checkpointed reverse mode makes one VJP per evaluation.
    assert ((h["nfe_forward"] - 1) % 6 == 0).all()
    assert (h["nfe_backward"] == h["nfe_forward"]).all()
    assert h["seconds"].is_monotonic_increasing and (h["accuracy"].between(0, 1)).all()


def test_training_reduces_the_loss_and_evaluate_agrees(small_spheres):
    r = _fit(small_spheres, iterations=60, lr=1e-2)
    h = r.history
    assert h["loss"].iloc[-10:].mean() < 0.6 * h["loss"].iloc[:5].mean()
    n = len(small_spheres)  # one solve for the whole set, like the direct call below
    scores = evaluate(r.final_model, small_spheres.x, small_spheres.y, accuracy="sign", batch_size=n)
    pred = np.asarray(r.final_model(jnp.asarray(small_spheres.x)))
    r_ = pred - small_spheres.y
    smooth_l1 = np.where(np.abs(r_) < 1, 0.5 * r_**2, np.abs(r_) - 0.5).mean()
    assert scores["loss"] == pytest.approx(smooth_l1, rel=1e-4)
    assert scores["accuracy"] == pytest.approx(np.mean(np.sign(pred) == small_spheres.y), abs=1e-6)


def test_loss_functions_match_their_formulas():
    pred = jnp.array([[0.2], [3.0], [-1.5]])
    y = jnp.array([[0.0], [1.0], [1.0]])
    assert float(LOSSES["smooth_l1"](pred, y)) == pytest.approx((0.5 * 0.04 + 1.5 + 2.0) / 3, rel=1e-6)
    assert float(LOSSES["mse"](pred, y)) == pytest.approx((0.04 + 4 + 6.25) / 3, rel=1e-6)
    logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    labels = jnp.array([0, 1])
    lse = np.log(np.exp([2, 0, 0]).sum()), np.log(np.exp([0, 0, 1]).sum())
    expected = ((lse[0] - 2) + (lse[1] - 0)) / 2
    assert float(LOSSES["cross_entropy"](logits, labels)) == pytest.approx(expected, rel=1e-6)


def test_learning_rate_is_used_and_custom_optimizer_accepted(small_spheres):
    import equinox as eqx
    import optax

    start = _model()

    def max_change(result):
        a = jax.tree_util.tree_leaves(eqx.filter(start, eqx.is_inexact_array))
        b = jax.tree_util.tree_leaves(eqx.filter(result.final_model, eqx.is_inexact_array))
        return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(a, b, strict=True))

    # Adam moves each parameter by at most about lr per step (3 steps here); SGD by lr * gradient.
    small = max_change(_fit(small_spheres, iterations=3, lr=1e-5))
    big = max_change(_fit(small_spheres, iterations=3, lr=1e-2))
    assert 1e-6 < small <= 3.3e-5 and 1e-3 < big <= 3.3e-2
    assert max_change(_fit(small_spheres, iterations=3, optimizer=optax.sgd(1e-9))) < 1e-6


def test_classification_with_cross_entropy_and_accuracy():
    rng = np.random.default_rng(0)
    centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    labels = rng.integers(0, 3, 150)
    x = (centres[labels] + 0.3 * rng.standard_normal((150, 2))).astype(np.float32)
    model = ODENet(2, 16, 3, augment_dim=1, key=KEY)
    r = train(model, x, labels, iterations=80, batch_size=50, lr=1e-2, loss="cross_entropy", progress=False)
    assert "accuracy" in r.history
    assert evaluate(r.final_model, x, labels, loss="cross_entropy")["accuracy"] > 0.95


def test_keyboard_interrupt_returns_history_so_far_and_the_best_model():
    x = np.array([[-1.0], [1.0]], np.float32)
    model = ODENet(1, 32, 1, augment_dim=1, time_dependent=True, readout=False, key=KEY)  # g1d's ANODE
    k = 25

    def stop(it, current, row):
        if it == k:
            raise KeyboardInterrupt

    r = train(
        model, x, -x, iterations=200, batch_size=None, lr=1e-2, loss="mse", progress=False, callback=stop
    )
    assert r.interrupted and len(r.history) == k
    # Full batch: each row's loss is the loss of the parameters before that update, so the best model
    # is the one with the lowest loss in the history.
    best_row = int(r.history["loss"].idxmin())
    assert r.best_iteration == r.history["iteration"][best_row]
    best_loss = evaluate(r.model, x, -x, loss="mse")["loss"]
    assert best_loss == pytest.approx(r.history["loss"].min(), rel=1e-5)
    assert best_loss <= r.history["loss"].iloc[-1] * (1 + 1e-5)


def test_validation_and_eval_fn_columns_and_best_by_validation(small_spheres):
    val = spheres(num_inner=30, num_outer=60, seed=7)
    calls = []

    def eval_fn(m):
        calls.append(1)
        return {"test_accuracy": evaluate(m, val.x, val.y, accuracy="sign")["accuracy"]}

    r = _fit(small_spheres, iterations=20, validation=(val.x, val.y), eval_fn=eval_fn, eval_every=5)
    h = r.history
    rows = h["val_loss"].notna()
    assert h.loc[rows, "iteration"].tolist() == [5, 10, 15, 20] and len(calls) == 4
    assert h["test_accuracy"].notna().sum() == 4 and "val_accuracy" in h
    best_val = evaluate(r.model, val.x, val.y, accuracy="sign")["loss"]
    assert best_val <= h["val_loss"].min() + 1e-6


def test_save_load_round_trip_is_exact(tmp_path, small_spheres, fitted):
    for model in (fitted.final_model, ResNet(2, 8, 1, num_layers=3, augment_dim=2, key=KEY)):
        path = save_model(tmp_path / f"{type(model).__name__}.eqx", model, metadata={"note": "x"})
        loaded = load_model(path)
        x = jnp.asarray(small_spheres.x[:50])
        np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(loaded(x)))
        assert read_header(path)["hyperparams"] == model.hyperparams()
    with pytest.raises(PyanodeError, match="already exists"):
        save_model(path, model)
    save_model(path, model, force=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    (tmp_path / "junk.eqx").write_bytes(b"not a model\n")
    with pytest.raises(PyanodeError, match="not a pyanode model"):
        load_model(tmp_path / "junk.eqx")


def test_bad_training_options_are_clear_errors(small_spheres):
    model = ODENet(2, 8, 1, key=KEY)
    x, y = small_spheres.x, small_spheres.y
    with pytest.raises(PyanodeError, match="unknown loss"):
        train(model, x, y, loss="hinge", progress=False)
    with pytest.raises(PyanodeError, match="iterations"):
        train(model, x, y, iterations=0, progress=False)
    with pytest.raises(PyanodeError, match="rows"):
        train(model, x, y[:5], progress=False)
    with pytest.raises(PyanodeError, match="sharding"):
        train(model, x, y, sharding="gpu", progress=False)


def test_data_parallel_sharding_matches_single_device(tmp_path):
    """Two host CPU devices: the sharded run must give the same numbers as the unsharded one."""
    script = textwrap.dedent(
        """
        import json, jax, numpy as np
        from jax.sharding import Mesh
        from pyanode.datasets import spheres
        from pyanode.models import ODENet
        from pyanode.train import train
        from pyanode.errors import PyanodeError
        assert len(jax.devices()) == 2
        d = spheres(num_inner=40, num_outer=88, seed=3)
        m = ODENet(2, 16, 1, augment_dim=1, key=jax.random.PRNGKey(0))
        kw = dict(iterations=6, batch_size=32, progress=False, accuracy="sign")
        mesh = Mesh(np.array(jax.devices()), ("data",))
        a = train(m, d.x, d.y, **kw).history
        b = train(m, d.x, d.y, sharding=mesh, **kw).history
        try:
            train(m, d.x, d.y, sharding=mesh, iterations=1, batch_size=31, progress=False)
            err = ""
        except PyanodeError as e:
            err = str(e)
        print(json.dumps({"a": a["loss"].tolist(), "b": b["loss"].tolist(),
                          "na": a["nfe_forward"].tolist(), "nb": b["nfe_forward"].tolist(), "err": err}))
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["a"], out["b"], rtol=1e-4)
    assert out["na"] == out["nb"]
    assert "multiple of 2" in out["err"]


def test_data_that_do_not_fit_the_model_are_refused_in_one_line():
    # A width, an output size or labels that do not fit the model: a PyanodeError that says what to change,
    # before anything trains (broadcasting (n, 2) against (n, 1) would otherwise train on a wrong loss).
    x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    y = np.sign(x[:, :1])
    key = KEY
    with pytest.raises(PyanodeError, match=r"^the model gives \(2,\) per row but y has \(1,\) per row"):
        train(ODENet(data_dim=2, hidden_dim=8, output_dim=2, key=key), x, y, iterations=2, progress=False)
    with pytest.raises(PyanodeError, match=r"^x has 2 features per row but the model takes data_dim=3"):
        train(ODENet(data_dim=3, hidden_dim=8, output_dim=1, key=key), x, y, iterations=2, progress=False)
    with pytest.raises(PyanodeError, match=r"^cross_entropy needs one integer class label per row"):
        train(ODENet(data_dim=2, hidden_dim=8, output_dim=2, key=key), x, y, iterations=2, progress=False,
              loss="cross_entropy")
