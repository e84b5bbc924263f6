"""The paper's toy claims, reproduced at small scale with fixed seeds, and the experiment registry."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from pyanode.datasets import g1d, spheres
from pyanode.errors import PyanodeError
from pyanode.experiments import (
    EXPERIMENTS,
    Experiment,
    ExperimentResult,
    register,
    run_experiment,
)
from pyanode.experiments.toy import TOYS, build_model
from pyanode.train import evaluate, train


def _train_toy(name, kind, data, iterations, **overrides):
    _, spec, defaults = TOYS[name]
    settings = {**defaults, **overrides}
    model = build_model(kind, data, spec, settings, seed=0)
    return train(
        model,
        data.x,
        data.y,
        iterations=iterations,
        batch_size=settings["batch_size"],
        lr=settings["lr"],
        loss=spec.loss,
        accuracy="sign" if data.task == "sign" else None,
        progress=False,
    )


def test_g1d_node_cannot_fit_but_anode_and_resnet_can():
    """Paper, section 3: a NODE flow preserves the order of -1 < 1, so it cannot map x to -x."""
    data = g1d()
    x = jnp.asarray(data.x)
    mse = {}
    trajectories = {}
    for kind in ("node", "anode", "resnet"):
        model = _train_toy("g1d", kind, data, iterations=150).final_model
        states = np.asarray(model.trajectory(x, num_times=30)[1])  # (times, 2 points, state)
        mse[kind] = float(np.mean((states[-1, :, 0] - data.y[:, 0]) ** 2))  # prediction = h_1(T)
        trajectories[kind] = states[..., 0]
    # Mapping both points to 0 costs MSE 1; a NODE can do no better than that.
    assert mse["node"] > 0.5
    assert mse["anode"] < 0.01 and mse["resnet"] < 0.01
    gap = {k: t[:, 1] - t[:, 0] for k, t in trajectories.items()}  # h(t; x=1) - h(t; x=-1)
    # The order never flips: the flow's trajectories cannot cross. The solve is exact only to its
    # tolerance (rtol = atol = 1e-3): once both points have been squeezed to within 1e-4 of each other
    # near 0, the computed gap may dip below zero by that much (measured: -5e-5), never by more.
    assert gap["node"][0] == 2.0 and gap["node"].min() > -1e-3
    assert gap["resnet"][0] > 0 and gap["resnet"][-1] < 0  # the discrete steps jump across
    assert gap["anode"][0] > 0 and gap["anode"][-1] < -1  # they pass in the augmented dimension


def test_spheres_anode_lower_loss_and_fewer_nfe_than_node():
    """Paper, section 5: on 2-D spheres the ANODE learns faster and needs fewer function evaluations."""
    data = spheres()
    out = {}
    for kind in ("node", "anode"):
        r = _train_toy("spheres", kind, data, iterations=200, lr=1e-2)
        scores = evaluate(r.final_model, data.x, data.y, accuracy="sign", batch_size=len(data))
        out[kind] = (scores["loss"], r.history["nfe_forward"].iloc[-20:].mean(), r.history["nfe_forward"])
    assert out["anode"][0] < 0.5 * out["node"][0]
    assert out["anode"][1] < out["node"][1]
    assert out["anode"][2].iloc[-1] < out["node"][2].iloc[-1]


def test_registry_lists_the_toys_and_rejects_bad_runs(tmp_path):
    assert {"g1d", "spheres", "sines", "identity"} <= set(EXPERIMENTS)
    with pytest.raises(PyanodeError, match="unknown experiment"):
        run_experiment("moons", out=tmp_path / "a")
    with pytest.raises(PyanodeError, match="unknown model 'lstm'"):
        run_experiment("g1d", out=tmp_path / "a", models="node,lstm")
    with pytest.raises(PyanodeError, match="augment >= 1"):
        run_experiment("g1d", out=tmp_path / "a", models="anode", augment=0)
    with pytest.raises(PyanodeError, match="only applies to the anode"):
        run_experiment("g1d", out=tmp_path / "a", models="node", augment=3)
    with pytest.raises(PyanodeError, match="--data-dir does not apply"):
        run_experiment("spheres", out=tmp_path / "a", data_dir=tmp_path)
    with pytest.raises(PyanodeError, match="--solver"):
        run_experiment("spheres", out=tmp_path / "a", solver="euler")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(PyanodeError, match="not empty"):
        run_experiment("g1d", out=tmp_path / "full")
    assert not (tmp_path / "a").exists()  # nothing was created by the refused runs


def test_a_registered_experiment_runs_through_the_runner(tmp_path):
    """What an image experiment does: register with its own defaults and options, get config back."""
    seen = {}

    def run(config):
        seen["config"] = config
        history = pd.DataFrame({"model": ["anode"] * 2, "iteration": [1, 2], "loss": [1.0, 0.5]})
        summary = {"model": "anode", "augment": config["augment"], "iterations": 2, "final_loss": 0.5}
        return ExperimentResult(summaries=[summary], history=history)

    defaults = dict(
        augment=5,
        iterations=2,
        hidden=92,
        batch_size=256,
        lr=1e-3,
        solver="dopri5",
        rtol=1e-3,
        atol=1e-3,
        sensealg="checkpoint",
    )
    exp = register(
        Experiment(
            "fake-images",
            "a test experiment",
            run,
            defaults,
            models=("node", "anode"),
            default_models=("anode",),
            options=frozenset({"data_dir", "devices"}),
        )
    )
    try:
        with pytest.raises(ValueError, match="already registered"):
            register(Experiment("fake-images", "again", run, defaults))
        summary = run_experiment("fake-images", out=tmp_path / "o", data_dir=tmp_path, devices=2, lr=0.5)
        cfg = seen["config"]
        assert cfg.models == ("anode",) and cfg.devices == 2 and cfg.data_dir == tmp_path
        assert cfg["lr"] == 0.5 and cfg["hidden"] == 92 and cfg["batch_size"] == 256
        on_disk = json.loads((tmp_path / "o" / "summary.json").read_text())
        assert on_disk == json.loads(json.dumps(summary)) and on_disk["models"][0]["augment"] == 5
        assert pd.read_csv(tmp_path / "o" / "history.csv")["loss"].tolist() == [1.0, 0.5]
    finally:
        EXPERIMENTS.pop(exp.name)


def test_a_refused_run_leaves_no_output_folder(tmp_path):
    """An experiment's check refuses before the folder exists; a refusal from inside the run removes the
    folder the runner made for it, but never a folder that was there before or holds something."""
    calls = []

    def check(config):
        calls.append(("check", config.out.exists()))
        if config["hidden"] == 1:
            raise PyanodeError("hidden 1 refused by check")

    def run(config):
        calls.append(("run", config.out.is_dir()))
        if config["hidden"] == 2:
            (config.out / "partial.txt").write_text("x")
        raise PyanodeError("refused by run")

    defaults = dict(augment=1, iterations=2, hidden=8, batch_size=None, lr=1e-3, solver="dopri5",
                    rtol=1e-3, atol=1e-3, sensealg="checkpoint")
    exp = register(Experiment("fake-refusing", "a test experiment", run, defaults, check=check))
    try:
        with pytest.raises(PyanodeError, match="refused by check"):
            run_experiment("fake-refusing", out=tmp_path / "a", hidden=1)
        assert calls == [("check", False)] and not (tmp_path / "a").exists()  # run never called
        with pytest.raises(PyanodeError, match="refused by run"):
            run_experiment("fake-refusing", out=tmp_path / "b")
        assert calls[-2:] == [("check", False), ("run", True)] and not (tmp_path / "b").exists()
        (tmp_path / "mine").mkdir()  # the user's empty folder stays
        with pytest.raises(PyanodeError, match="refused by run"):
            run_experiment("fake-refusing", out=tmp_path / "mine")
        assert (tmp_path / "mine").is_dir()
        with pytest.raises(PyanodeError, match="refused by run"):  # what the run wrote stays
            run_experiment("fake-refusing", out=tmp_path / "c", hidden=2)
        assert (tmp_path / "c" / "partial.txt").exists()
    finally:
        EXPERIMENTS.pop(exp.name)


def test_ctrl_c_during_an_experiment_writes_what_was_done(tmp_path, monkeypatch):
    import pyanode.train as train_module
    from tests.ctrl_c import ctrl_c_at

    ctrl_c_at(monkeypatch, train_module, "train", 7)
    summary = run_experiment("g1d", out=tmp_path / "o", models="node,anode", iterations=50, progress=False)
    assert summary["interrupted"] is True
    assert [(m["model"], m["iterations"], m["interrupted"]) for m in summary["models"]] == [("node", 7, True)]
    assert len(pd.read_csv(tmp_path / "o" / "history.csv")) == 7
    assert (tmp_path / "o" / "model_node.eqx").exists() and (tmp_path / "o" / "trajectories.png").exists()


@pytest.mark.parametrize(("name", "kind"), [("sines", "node"), ("identity", "anode")])
def test_sines_and_identity_learn_and_save_the_final_model(tmp_path, monkeypatch, name, kind):
    """The other two toy experiments: the model learns its data, and the saved model_KIND.eqx, loaded
    back with pyanode.train.load_model, is the model training ended with (the same predictions)."""
    import jax.numpy as jnp

    import pyanode.train as train_module
    from pyanode.datasets import identity, sines
    from pyanode.train import LOSSES, load_model

    finals = []
    real_train = train_module.train

    def keep_final(*args, **kwargs):
        result = real_train(*args, **kwargs)
        finals.append(result.final_model)
        return result

    monkeypatch.setattr(train_module, "train", keep_final)
    iterations = 40
    summary = run_experiment(name, out=tmp_path, models=kind, iterations=iterations, lr=1e-2, progress=False)
    (m,) = summary["models"]
    assert (m["model"], m["iterations"]) == (kind, iterations)
    history = pd.read_csv(tmp_path / "history.csv")
    assert len(history) == iterations and set(history["model"]) == {kind}
    data = {"sines": sines, "identity": identity}[name](seed=0)
    x = jnp.asarray(data.x)

    loaded = load_model(tmp_path / f"model_{kind}.eqx")
    (final,) = finals
    pred = np.asarray(loaded(x))
    np.testing.assert_array_equal(pred, np.asarray(final(x)))
    # The summary scored that model on the whole set (smooth-L1, the toys' loss).
    assert float(LOSSES["smooth_l1"](jnp.asarray(pred), jnp.asarray(data.y))) == pytest.approx(
        m["final_loss"], rel=1e-5
    )
    if name == "sines":
        # Two shifted sine curves: the sign of the prediction gives the curve, for almost every point.
        accuracy = float(np.mean(np.sign(pred) == data.y))
        assert accuracy == pytest.approx(m["final_accuracy"], abs=1e-6) and accuracy > 0.95
        assert {f"{fig}_{kind}.png" for fig in ("vector_field", "trajectories", "features")} <= set(
            summary["figures"]
        )
    else:
        # The identity map: learned to within a few hundredths everywhere on [-1, 1].
        assert history["loss"].iloc[-1] < 0.01 * history["loss"].iloc[0]
        assert np.max(np.abs(pred - data.x)) < 0.1
        assert summary["figures"] == ["loss_nfe.png", "trajectories.png"]
