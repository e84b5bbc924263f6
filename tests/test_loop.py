"""The one training loop: EMA, validation and early stopping, non-finite losses, Ctrl-C, lowest-loss keeping.

A one-parameter model with a quadratic loss and plain SGD makes every iterate known in closed form:
``w_k = c + (w_0 - c) (1 - 2 lr)^k``, so the loop's bookkeeping can be checked exactly.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pyanode.loop import run_loop
from tests.compiles import xla_compiles

LR, C, W0 = 0.1, 3.0, 0.0


class Scalar(eqx.Module):
    w: jax.Array


def quadratic(model, probe, batch, it):
    """(w - c)^2 with c the batch; the "forward NFE" is 5 per step (backward: the probe's gradient, 0)."""
    return jnp.sum((model.w - batch) ** 2), {"nfe_forward": jnp.asarray(5)}


def iterate(k: int) -> float:
    return C + (W0 - C) * (1 - 2 * LR) ** k


def run(iterations=10, **kw):
    return run_loop(Scalar(jnp.asarray(W0)), quadratic, lambda it: jnp.asarray(C), optax.sgd(LR), iterations,
                    progress=False, **kw)


def test_sgd_iterates_history_and_final_model():
    res = run(10)
    assert float(res.final_model.w) == pytest.approx(iterate(10), rel=1e-6)
    h = res.history
    assert h["iteration"].tolist() == list(range(1, 11))
    # The loss of iteration k is measured before its update, at w_{k-1}.
    np.testing.assert_allclose(h["loss"], [(iterate(k - 1) - C) ** 2 for k in range(1, 11)], rtol=1e-5)
    assert (h["nfe_forward"] == 5).all() and (h["nfe_backward"] == 0).all()
    assert h["seconds"].is_monotonic_increasing
    assert res.stopped == "completed" and not res.interrupted
    assert float(res.model.w) == float(res.final_model.w) and res.best_iteration == 10


def test_ema_is_the_ramped_running_average_of_the_iterates():
    res = run(12, ema=0.9)
    avg = None
    for k in range(1, 13):
        d = min(0.9, (k - 1) / (k + 9))
        avg = iterate(k) if avg is None else d * avg + (1 - d) * iterate(k)
    assert float(res.model.w) == pytest.approx(avg, rel=1e-5)
    assert float(res.final_model.w) == pytest.approx(iterate(12), rel=1e-6)
    assert abs(float(res.model.w) - iterate(12)) > 1e-3  # the average lags the iterates


def test_early_stopping_keeps_the_best_validated_model():
    scores = {2: 5.0, 4: 3.0, 6: 4.0, 8: 4.5, 10: 6.0}  # best at iteration 4, then no gain
    seen = []

    def validate(model, it):
        seen.append((it, float(model.w)))
        return {"val_loss": scores.get(it, 9.0)}

    res = run(20, validate=validate, validate_every=2, patience=2)
    assert res.best_iteration == 4 and res.best_validation == 3.0
    assert float(res.model.w) == pytest.approx(iterate(4), rel=1e-6)
    assert res.stopped == "early stop at iteration 8 (validation stopped improving)"
    assert len(res.history) == 8 and [it for it, _ in seen] == [2, 4, 6, 8]
    assert res.history["val_loss"].dropna().tolist() == [5.0, 3.0, 4.0, 4.5]


def test_validation_before_select_from_does_not_choose():
    res = run(10, validate=lambda m, it: {"val_loss": 1.0 / it}, validate_every=1, select_from=6)
    # 1/it only improves, so the last check wins; checks 1..5 were scored but could not be chosen.
    assert res.best_iteration == 10 and res.history["val_loss"].notna().sum() == 10


def test_non_finite_loss_stops_and_keeps_the_model_from_before():
    def exploding(model, probe, batch, it):
        value = jnp.where(it >= 4, jnp.nan, jnp.sum((model.w - batch) ** 2))
        return value, {"nfe_forward": jnp.asarray(1)}

    res = run_loop(Scalar(jnp.asarray(W0)), exploding, lambda it: jnp.asarray(C), optax.sgd(LR), 10,
                   progress=False)
    assert res.stopped == "loss became nan at iteration 4; kept the model from before it"
    assert len(res.history) == 3 and np.isfinite(float(res.model.w))
    assert float(res.final_model.w) == pytest.approx(iterate(3), rel=1e-6)


def test_ctrl_c_before_any_validation_keeps_the_latest_average_and_says_so():
    def interrupt(it, model, row):
        if it == 7:
            raise KeyboardInterrupt

    res = run(50, ema=0.5, validate=lambda m, it: {"val_loss": 1.0}, validate_every=20, callback=interrupt)
    assert res.interrupted and len(res.history) == 7 and res.best_iteration == 7
    avg = None
    for k in range(1, 8):
        d = min(0.5, (k - 1) / (k + 9))
        avg = iterate(k) if avg is None else d * avg + (1 - d) * iterate(k)
    assert float(res.model.w) == pytest.approx(avg, rel=1e-5)  # trained, not the starting w = 0
    assert res.stopped == ("interrupted at iteration 7; kept the running average of the parameters at "
                           "iteration 7 (no validation score yet)")


def test_ctrl_c_after_a_validation_keeps_the_validated_model():
    def interrupt(it, model, row):
        if it == 7:
            raise KeyboardInterrupt

    res = run(50, validate=lambda m, it: {"val_loss": 1.0}, validate_every=5, callback=interrupt)
    assert res.interrupted and res.best_iteration == 5
    assert float(res.model.w) == pytest.approx(iterate(5), rel=1e-6)
    assert res.stopped == "interrupted at iteration 7; kept the best validated model (iteration 5)"


def test_keep_lowest_train_loss_returns_the_parameters_before_the_best_step():
    # The loss goes down then up (batches move the target away): the lowest loss is at iteration 3.
    targets = {1: 1.0, 2: 1.0, 3: 0.0, 4: 10.0, 5: 10.0}
    res = run_loop(Scalar(jnp.asarray(0.5)), quadratic, lambda it: jnp.asarray(targets[it]), optax.sgd(LR), 5,
                   keep_lowest_train_loss=True, progress=False)
    losses = res.history["loss"].to_numpy()
    assert res.best_iteration == int(np.argmin(losses)) + 1
    w_before = [0.5]
    for k in range(1, 5):
        w_before.append(w_before[-1] - LR * 2 * (w_before[-1] - targets[k]))
    assert float(res.model.w) == pytest.approx(w_before[res.best_iteration - 1], rel=1e-6)


def test_one_compiled_step_for_repeated_runs():
    from pyanode.loop import _compiled_step

    opt = optax.sgd(LR)
    before = _compiled_step.cache_info()
    for _ in range(3):
        run_loop(Scalar(jnp.asarray(W0)), quadratic, lambda it: jnp.asarray(C), opt, 2, progress=False)
    after = _compiled_step.cache_info()
    assert after.misses - before.misses == 1 and after.hits - before.hits == 2



def test_a_disk_cached_step_compiles_once(tmp_path, monkeypatch):
    """The first step gets fresh (uncommitted) arrays, later ones the step's own (committed) output; the
    disk-cached step must compile once, not once per mix (it compiled twice: seconds per forecaster fit)."""
    monkeypatch.setenv("PYANODE_CACHE_DIR", str(tmp_path))
    after_step: list[int] = []
    with xla_compiles() as compiles:
        # A loss no other test uses (its own shift), so no compiled step is in memory from before; float32,
        # not weakly typed, like a real model's parameters (whose type the step keeps).
        result = run_loop(
            Scalar(jnp.asarray(W0, jnp.float32)), lambda m, p, b, it: quadratic(m, p, b + 0.125, it),
            lambda it: jnp.asarray(C - 0.125, jnp.float32), optax.sgd(LR), 5, progress=False,
            program_key="test-compiles-once", callback=lambda *a: after_step.append(len(compiles)))
    assert list(tmp_path.glob("programs/*.jaxexport"))  # the step went through the disk cache
    assert float(result.model.w) == pytest.approx(iterate(5), rel=1e-6)
    assert after_step[0] >= 1 and after_step[1:] == [after_step[0]] * 4, after_step  # nothing after step 1


def test_the_progress_bar_fits_an_80_column_terminal():
    # Every number (iterations, loss, validation, NFE, ETA) stays on the line; the bar shrinks.
    import io

    from rich.console import Console

    from pyanode.loop import _info, progress_bar

    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    with progress_bar(True, console) as bar:
        task = bar.add_task("fitting", total=400, info="")
        row = {"loss": 1.355e-4, "nfe_forward": 127, "nfe_backward": 127}
        bar.update(task, completed=229, info=_info(row, 6.768e-5))
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", out.getvalue().replace("\r", "\n"))  # (cursor codes)
    last = [ln for ln in text.splitlines() if "fitting" in ln][-1]
    for part in ("fitting", "229/400", "loss 0.000135", "val 6.77e-05", "NFE 127/127", "ETA"):
        assert part in last, (part, last)
    assert len(last.rstrip()) <= 80
