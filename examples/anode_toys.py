# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Augmented Neural ODEs: the toy experiments
#
# This notebook reproduces the toy figures of *Augmented Neural ODEs* (Dupont, Doucet & Teh, NeurIPS
# 2019) with pyanode.
#
# 1. **g1d**: the map `g(x) = -x` on the two points `x = -1` and `x = +1`. A neural ODE's flow is a
#    homeomorphism, so its trajectories cannot cross and it cannot send `-1 -> 1` and `1 -> -1`;
#    trained with the mean squared error it maps both points to about 0. An ANODE with one extra
#    dimension can, and so can a ResNet, whose discrete steps jump across each other.
# 2. **Concentric spheres** in 2-D: -1 inside radius 0.5, +1 between radii 1 and 1.5. A NODE needs a
#    complicated flow (and many function evaluations, NFE) to squeeze the classes apart; an ANODE lifts
#    one class into the extra dimension and learns faster with fewer NFEs.
#
# Run it as a notebook, or as a script: `python examples/anode_toys.py`. Figures go to the folder in
# `ANODE_TOYS_OUT` (default `anode_toys_figures`); `ANODE_TOYS_ITERATIONS` scales the training length.

# %%
# %matplotlib inline

# %%
import os
from pathlib import Path

import jax

from pyanode.datasets import g1d, spheres
from pyanode.models import ODENet, ResNet
from pyanode.plots import (
    plot_features,
    plot_history,
    plot_trajectories,
    plot_trajectories_1d,
    plot_vector_field,
    save_figure,
)
from pyanode.train import evaluate, train

OUT = Path(os.environ.get("ANODE_TOYS_OUT", "anode_toys_figures"))
OUT.mkdir(parents=True, exist_ok=True)
ITERATIONS = int(os.environ.get("ANODE_TOYS_ITERATIONS", "300"))
SEED = 0
key = jax.random.PRNGKey(SEED)

# %% [markdown]
# ## 1. g1d: a function a NODE cannot represent
#
# No read-out layer here: the prediction is the first component of `h(T)` itself, so the flow alone
# has to do the work (with a linear read-out a NODE could cheat with an identity flow and a weight of
# -1). The ODE is solved with dopri5 at `rtol = atol = 1e-3`, as in the paper's code.

# %%
data = g1d()
models = {
    "NODE": ODENet(1, 32, 1, augment_dim=0, time_dependent=True, readout=False, key=key),
    "ANODE (augment 1)": ODENet(1, 32, 1, augment_dim=1, time_dependent=True, readout=False, key=key),
    "ResNet (5 layers)": ResNet(1, 32, 1, num_layers=5, time_dependent=True, readout=False, key=key),
}
results = {
    name: train(
        m,
        data.x,
        data.y,
        iterations=ITERATIONS,
        batch_size=None,
        lr=1e-2,
        loss="mse",
        seed=SEED,
        description=name,
    )
    for name, m in models.items()
}
for name, r in results.items():
    mse = evaluate(r.final_model, data.x, data.y, loss="mse")["loss"]
    print(f"{name:20s} MSE {mse:.2e}  forward NFE {r.history['nfe_forward'].iloc[-1]}")

# %% [markdown]
# The NODE's two trajectories approach each other but never cross, and both end near 0 (MSE about 1).
# The ANODE's cross in this projection because they pass each other in the augmented dimension, and the
# ResNet's jump over each other between steps.

# %%
fig = plot_trajectories_1d({n: r.final_model for n, r in results.items()}, data.x, data.y)
save_figure(fig, OUT / "g1d_trajectories.png")
fig  # noqa: B018 (shows the figure in a notebook)

# %%
fig = plot_history({n: r.history for n, r in results.items()}, title="g1d: training")
save_figure(fig, OUT / "g1d_loss_nfe.png")
fig  # noqa: B018 (shows the figure in a notebook)

# %% [markdown]
# ## 2. Concentric spheres in 2-D
#
# Both models have a linear read-out and a time-dependent vector field of width 32; the ANODE has one
# extra dimension. Minibatches of 64, Adam. `accuracy="sign"` scores the sign of the prediction against
# the +-1 label.

# %%
data = spheres(seed=SEED)
sphere_models = {
    "NODE": ODENet(2, 32, 1, augment_dim=0, time_dependent=True, key=key),
    "ANODE (augment 1)": ODENet(2, 32, 1, augment_dim=1, time_dependent=True, key=key),
}
sphere_results = {
    name: train(
        m,
        data.x,
        data.y,
        iterations=ITERATIONS,
        batch_size=64,
        lr=1e-2,
        accuracy="sign",
        seed=SEED,
        description=name,
    )
    for name, m in sphere_models.items()
}
for name, r in sphere_results.items():
    scores = evaluate(r.final_model, data.x, data.y, accuracy="sign", batch_size=len(data))
    nfe = r.history["nfe_forward"].iloc[-20:].mean()
    print(
        f"{name:20s} loss {scores['loss']:.4f}  accuracy {scores['accuracy']:.3f}  "
        f"forward NFE (last 20) {nfe:.1f}"
    )

# %%
fig = plot_history({n: r.history for n, r in sphere_results.items()}, title="spheres: training")
save_figure(fig, OUT / "spheres_loss_nfe.png")
fig  # noqa: B018 (shows the figure in a notebook)

# %% [markdown]
# The learned vector fields at `t = 0` (for the ANODE, on the plane where the augmented coordinate is
# 0, i.e. where the data starts), the trajectories of a few points, and the final features `h(T)` that
# the linear read-out has to separate. The ANODE's features are separated along the extra axis.

# %%
for name, r in sphere_results.items():
    tag = "anode" if "ANODE" in name else "node"
    m = r.final_model
    save_figure(
        plot_vector_field(m, data.x, data.y, title=f"{name}: vector field"),
        OUT / f"spheres_vector_field_{tag}.png",
    )
    save_figure(
        plot_trajectories(m, data.x, data.y, title=f"{name}: trajectories"),
        OUT / f"spheres_trajectories_{tag}.png",
    )
    save_figure(
        plot_features(m, data.x, data.y, title=f"{name}: features"), OUT / f"spheres_features_{tag}.png"
    )

# %%
plot_trajectories(sphere_results["ANODE (augment 1)"].final_model, data.x, data.y)

# %%
plot_features(sphere_results["NODE"].final_model, data.x, data.y, title="NODE: features")

# %% [markdown]
# The same experiments run from the shell, with `summary.json`, `history.csv` and these figures:
#
# ```
# pyanode experiment g1d --model node,anode,resnet --out runs/g1d
# pyanode experiment spheres --model node,anode --augment 1 --out runs/spheres
# ```
