"""The paper's toy experiments: g1d, concentric spheres, shifted sines and the identity map.

Each trains the requested models (NODE, ANODE with ``augment`` extra dimensions, ResNet) on the same data
from the same seed and writes the loss/NFE curves, and the trajectory, vector-field and feature figures
(Dupont, Doucet & Teh 2019, figures 2-8). Model initialisation depends only on the seed and the model
kind, so adding a model to a run does not change the others' numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from pyanode.datasets import toy as toydata
from pyanode.experiments.registry import (
    MODEL_KINDS,
    Experiment,
    ExperimentResult,
    RunConfig,
    register,
)

__all__ = ["ToySpec", "build_model", "run_toy"]


@dataclasses.dataclass(frozen=True)
class ToySpec:
    """How a toy experiment builds its data and models.

    Attributes:
        data: ``data(seed) -> ToyData``.
        loss: training loss name (see :data:`pyanode.train.LOSSES`).
        readout: False for g1d, whose prediction must be the flow's own output ``h_1(T)``.
        time_dependent: feed ``t`` to the ODE vector field (the reference's NODE is time-dependent).
        num_layers: ResNet depth.
    """

    data: Callable[[int], toydata.ToyData]
    loss: str = "smooth_l1"
    readout: bool = True
    time_dependent: bool = True
    num_layers: int = 5


def model_label(kind: str, settings: dict[str, Any], spec: ToySpec) -> str:
    if kind == "anode":
        return f"ANODE (augment {settings['augment']})"
    if kind == "resnet":
        return f"ResNet ({spec.num_layers} layers)"
    return "NODE"


def build_model(kind: str, data: toydata.ToyData, spec: ToySpec, settings: dict[str, Any], seed: int) -> Any:
    """The ``kind`` model for ``data``, initialised from ``(seed, kind)``."""
    import jax

    from pyanode.models import ODENet, ResNet

    key = jax.random.fold_in(jax.random.PRNGKey(seed), MODEL_KINDS.index(kind))
    out_dim = int(data.y.shape[1])
    if kind == "resnet":
        return ResNet(
            data.dim,
            settings["hidden"],
            out_dim,
            num_layers=spec.num_layers,
            time_dependent=spec.time_dependent,
            readout=spec.readout,
            key=key,
        )
    return ODENet(
        data.dim,
        settings["hidden"],
        out_dim,
        augment_dim=settings["augment"] if kind == "anode" else 0,
        time_dependent=spec.time_dependent,
        readout=spec.readout,
        solver=settings["solver"],
        rtol=settings["rtol"],
        atol=settings["atol"],
        sensealg=settings["sensealg"],
        key=key,
    )


def count_parameters(model: Any) -> int:
    import equinox as eqx
    import jax

    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))))


def run_toy(spec: ToySpec, config: RunConfig) -> ExperimentResult:
    """Train ``config.models`` on the toy data and write the figures into ``config.out``."""
    import jax.numpy as jnp

    from pyanode import plots
    from pyanode.train import ACCURACIES, LOSSES, save_model, train

    s = dict(config.settings)
    data = spec.data(config.seed)
    accuracy = "sign" if data.task == "sign" else None
    histories: dict[str, pd.DataFrame] = {}
    trained: dict[str, tuple[str, Any]] = {}
    summaries: list[dict[str, Any]] = []
    interrupted = False
    for kind in config.models:
        model = build_model(kind, data, spec, s, config.seed)
        label = model_label(kind, s, spec)
        result = train(
            model,
            data.x,
            data.y,
            iterations=s["iterations"],
            batch_size=s["batch_size"],
            lr=s["lr"],
            loss=spec.loss,
            accuracy=accuracy,
            seed=config.seed,
            progress=config.progress,
            description=f"{config.name} {label}",
        )
        hist = result.history
        if hist.empty:
            interrupted = True
            break
        # After Ctrl-C keep the best model so far; otherwise report the model training ended with.
        final = result.model if result.interrupted else result.final_model
        # One solve of the whole set gives the figures' trajectories and the final scores (saving at
        # intermediate times does not change diffrax's steps, so states[-1] is the forward pass's h(T)).
        ts, states = final.trajectory(jnp.asarray(data.x), num_times=40)
        pred = final.readout(states[-1])
        scores = {"loss": float(LOSSES[spec.loss](pred, jnp.asarray(data.y)))}
        if accuracy is not None:
            scores["accuracy"] = float(ACCURACIES[accuracy](pred, jnp.asarray(data.y)))
        summary = {
            "model": kind,
            "label": label,
            "augment": s["augment"] if kind == "anode" else 0,
            "hidden": s["hidden"],
            "iterations": int(len(hist)),
            "final_loss": scores["loss"],
            "nfe_forward_final": int(hist["nfe_forward"].iloc[-1]),
            "nfe_backward_final": int(hist["nfe_backward"].iloc[-1]),
            "nfe_forward_mean": float(hist["nfe_forward"].mean()),
            "nfe_backward_mean": float(hist["nfe_backward"].mean()),
            "seconds": float(hist["seconds"].iloc[-1]),
            "parameters": count_parameters(final),
            "best_iteration": result.best_iteration,
            "interrupted": result.interrupted,
        }
        if accuracy is not None:
            summary["final_accuracy"] = scores["accuracy"]
        if kind == "resnet":
            summary["num_layers"] = spec.num_layers
        summaries.append(summary)
        histories[label] = hist
        trained[kind] = (label, final, (np.asarray(ts), np.asarray(states)))
        save_model(config.out / f"model_{kind}.eqx", final, metadata={"experiment": config.name}, force=True)
        if result.interrupted:
            interrupted = True
            break

    figures = []
    if histories:
        figures.append(
            plots.save_figure(
                plots.plot_history(histories, title=f"{config.name}: training"), config.out / "loss_nfe.png"
            )
        )
        figures += _toy_figures(data, trained, config)
    tagged = [h.assign(model=kind) for kind, h in zip(config.models, histories.values(), strict=False)]
    history = pd.concat(tagged, ignore_index=True) if tagged else pd.DataFrame(columns=["model"])
    if not history.empty:
        history = history[["model"] + [c for c in history.columns if c != "model"]]
    return ExperimentResult(summaries=summaries, history=history, figures=figures, interrupted=interrupted)


def _toy_figures(data: toydata.ToyData, trained: dict[str, tuple[str, Any]], config: RunConfig) -> list:
    from pyanode import plots

    out, figures = config.out, []
    if data.dim == 1:
        pick = np.sort(np.random.default_rng(0).choice(len(data), size=min(len(data), 40), replace=False))
        fig = plots.plot_trajectories_1d(
            {label: model for label, model, _ in trained.values()},
            data.x[pick],
            data.y[pick],
            trajectories={label: (ts, states[:, pick]) for label, _, (ts, states) in trained.values()},
        )
        fig.suptitle(f"{config.name}: trajectories h(t)")
        figures.append(plots.save_figure(fig, out / "trajectories.png"))
    elif data.dim == 2:
        for kind, (label, model, (_, states)) in trained.items():
            figures.append(
                plots.save_figure(
                    plots.plot_vector_field(model, data.x, data.y, title=f"{label}: vector field at t=0"),
                    out / f"vector_field_{kind}.png",
                )
            )
            figures.append(
                plots.save_figure(
                    plots.plot_trajectories(
                        model, data.x, data.y, title=f"{label}: trajectories", states=states
                    ),
                    out / f"trajectories_{kind}.png",
                )
            )
            figures.append(
                plots.save_figure(
                    plots.plot_features(
                        model, data.x, data.y, title=f"{label}: features h(T)", features=states[-1]
                    ),
                    out / f"features_{kind}.png",
                )
            )
    return figures


_ODE_DEFAULTS = dict(solver="dopri5", rtol=1e-3, atol=1e-3, sensealg="checkpoint")

TOYS: dict[str, tuple[str, ToySpec, dict[str, Any]]] = {
    "g1d": (
        "g(x) = -x on {-1, 1}, fitted by the flow alone: a NODE cannot, an ANODE and a ResNet can",
        ToySpec(data=lambda seed: toydata.g1d(seed=seed), loss="mse", readout=False),
        dict(augment=1, iterations=300, hidden=32, batch_size=None, lr=1e-2, **_ODE_DEFAULTS),
    ),
    "spheres": (
        "concentric spheres in 2-D (-1 inside radius 0.5, +1 for radius 1 to 1.5)",
        ToySpec(data=lambda seed: toydata.spheres(seed=seed)),
        dict(augment=1, iterations=600, hidden=32, batch_size=64, lr=1e-3, **_ODE_DEFAULTS),
    ),
    "sines": (
        "two shifted sine curves (shift 1.4, noise 0.1), labelled +1 and -1",
        ToySpec(data=lambda seed: toydata.sines(seed=seed)),
        dict(augment=1, iterations=600, hidden=32, batch_size=64, lr=1e-3, **_ODE_DEFAULTS),
    ),
    "identity": (
        "the identity map on [-1, 1] (1-D regression through a linear readout, smooth-L1 loss)",
        ToySpec(data=lambda seed: toydata.identity(seed=seed)),
        dict(augment=1, iterations=300, hidden=32, batch_size=64, lr=1e-3, **_ODE_DEFAULTS),
    ),
}

for _name, (_description, _spec, _defaults) in TOYS.items():
    register(
        Experiment(
            name=_name,
            description=_description,
            run=lambda config, _spec=_spec: run_toy(_spec, config),
            defaults=_defaults,
            models=MODEL_KINDS,
            default_models=("node", "anode"),
        )
    )
