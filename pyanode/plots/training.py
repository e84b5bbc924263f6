"""Figures for training and for the paper's toy experiments (Dupont, Doucet & Teh 2019, figs 1-8).

* :func:`plot_history` -- loss, accuracy and forward/backward NFE per iteration, several models overlaid.
* :func:`plot_trajectories_1d` -- ``h(t)`` of 1-D inputs: NODE trajectories cannot cross, ANODE and
  ResNet ones can.
* :func:`plot_vector_field` -- the learned vector field on the data plane (at zero augmented coordinates).
* :func:`plot_trajectories` -- paths of 2-D inputs through the flow (in 3-D for one augmented dimension).
* :func:`plot_features` -- the final features ``h(T)`` that the read-out separates.

Everything uses matplotlib's object-oriented API (no pyplot state); :func:`save_figure` writes a PNG
atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pyanode._io import atomic_path

__all__ = [
    "plot_features",
    "plot_history",
    "plot_trajectories",
    "plot_trajectories_1d",
    "plot_vector_field",
    "save_figure",
]

_NEG, _POS = "tab:blue", "tab:red"


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) atomically: temp file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def _label_colors(y: Any, x: Any | None = None) -> np.ndarray:
    """Red for positive targets, blue for negative ones (by the input's sign when targets are continuous)."""
    y = np.asarray(y).reshape(len(y), -1)[:, 0]
    ref = y if x is None else np.asarray(x).reshape(len(x), -1)[:, 0]
    return np.where(ref > 0, _POS, _NEG)


def _smooth(values: np.ndarray) -> np.ndarray:
    window = max(1, len(values) // 40)
    return pd.Series(values).rolling(window, min_periods=1).mean().to_numpy()


def plot_history(histories: pd.DataFrame | Mapping[str, pd.DataFrame], *, title: str | None = None) -> Figure:
    """Loss (log scale), accuracy where present, forward NFE and backward NFE per iteration.

    ``histories`` is one :func:`pyanode.train.train` history or ``{label: history}`` to overlay models
    (e.g. NODE vs ANODE, as in the paper's figures 6 and 7). Thin lines are the per-iteration values,
    thick ones a running mean over 1/40 of the run.
    """
    if isinstance(histories, pd.DataFrame):
        histories = {"model": histories}
    panels = ["loss"]
    if any("accuracy" in h for h in histories.values()):
        panels.append("accuracy")
    panels += ["nfe_forward", "nfe_backward"]
    titles = {
        "loss": "training loss",
        "accuracy": "training accuracy",
        "nfe_forward": "NFE (forward)",
        "nfe_backward": "NFE (backward)",
    }
    fig = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for i, (label, hist) in enumerate(histories.items()):
        color = f"C{i}"
        it = hist["iteration"].to_numpy()
        for ax, col in zip(axes, panels, strict=True):
            if col not in hist:
                continue
            values = hist[col].to_numpy(dtype=float)
            ax.plot(it, values, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(it, _smooth(values), color=color, linewidth=2.0, label=label)
    for ax, col in zip(axes, panels, strict=True):
        ax.set_title(titles[col])
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if col == "loss":
            ax.set_yscale("log")
    axes[0].legend()
    if title:
        fig.suptitle(title)
    return fig


def plot_trajectories_1d(
    models: Mapping[str, Any],
    x: Any,
    y: Any | None = None,
    *,
    trajectories: Mapping[str, tuple[Any, Any]] | None = None,
) -> Figure:
    """``h_1(t)`` against ``t`` for 1-D inputs, one panel per model (the paper's figure 2).

    Trajectories start at the inputs (left) and end at the predictions (right); inputs below zero are
    blue, above zero red. A NODE's trajectories never cross, so it cannot map -1 to 1 and 1 to -1; an
    ANODE's can cross in this projection because they pass each other in the augmented dimension; a
    ResNet's jump across each other between its discrete steps. ``trajectories`` may give precomputed
    ``{label: (times, states)}`` (from ``model.trajectory(x)``) to avoid solving again.
    """
    x = jnp.asarray(x)
    colors = _label_colors(np.asarray(x))
    fig = Figure(figsize=(4.2 * len(models), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(models), sharey=True))
    for ax, (label, model) in zip(axes, models.items(), strict=True):
        if trajectories is not None and label in trajectories:
            ts, states = trajectories[label]
        else:
            ts, states = model.trajectory(x, num_times=60)
        ts, states = np.asarray(ts), np.asarray(states)
        discrete = ts.shape[0] == getattr(model, "num_layers", -1) + 1
        for j in range(states.shape[1]):
            ax.plot(ts, states[:, j, 0], color=colors[j], alpha=0.8, marker="o" if discrete else None)
        if y is not None:
            yy = np.asarray(y).reshape(len(y), -1)[:, 0]
            ax.scatter(np.full(len(yy), ts[-1]), yy, marker="x", color="black", zorder=3, label="target")
            ax.legend(loc="upper left")
        ax.set_title(label)
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("h(t) (first component)")
    return fig


def _grid(lim: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.linspace(-lim, lim, n)
    return np.meshgrid(g, g)


def plot_vector_field(
    model: Any,
    x: Any | None = None,
    y: Any | None = None,
    *,
    t: float = 0.0,
    lim: float | None = None,
    title: str | None = None,
) -> Figure:
    """The learned vector field ``f(t, h)`` in the plane of the first two state coordinates.

    For an ANODE the augmented coordinates are held at 0 (the slice the data starts on), so the arrows
    show the initial velocities of the data points. Streamlines give the direction, colour the speed;
    data points are overlaid when given (the paper's figure 5).
    """
    state_dim = model.state_dim
    if state_dim < 2:
        raise ValueError("plot_vector_field needs a state of at least 2 dimensions")
    if lim is None:
        lim = 1.1 * float(np.max(np.abs(np.asarray(x)[:, :2]))) if x is not None else 2.0
    gx, gy = _grid(lim, 25)
    pts = np.zeros((gx.size, state_dim), np.float32)
    pts[:, 0], pts[:, 1] = gx.ravel(), gy.ravel()
    v = np.asarray(model.vector_field(t, jnp.asarray(pts)))
    u, w = v[:, 0].reshape(gx.shape), v[:, 1].reshape(gx.shape)
    speed = np.hypot(u, w)
    fig = Figure(figsize=(5.2, 4.6), layout="constrained")
    ax = fig.subplots()
    # Streamlines show the flow's direction everywhere; colour carries the speed, which varies too much
    # across the plane for arrow lengths to stay readable.
    stream = ax.streamplot(gx, gy, u, w, color=speed, cmap="viridis", density=1.2, linewidth=1.0, zorder=1)
    fig.colorbar(stream.lines, ax=ax, label="speed |f| (first two components)")
    if x is not None:
        xs = np.asarray(x)
        colors = _label_colors(y if y is not None else xs)
        ax.scatter(xs[:, 0], xs[:, 1], c=colors, s=5, alpha=0.35, zorder=2)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("h1")
    ax.set_ylabel("h2")
    extra = " (augmented coordinates = 0)" if state_dim > 2 else ""
    ax.set_title(title or f"vector field at t={t:g}{extra}")
    return fig


def _pick(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n, k), replace=False))


def plot_trajectories(
    model: Any,
    x: Any,
    y: Any,
    *,
    num_points: int = 80,
    title: str | None = None,
    states: Any | None = None,
) -> Figure:
    """Paths of ``num_points`` inputs through the flow (the paper's figure 4 style).

    With one augmented dimension the paths are drawn in 3-D (h1, h2, a1), which shows an ANODE lifting
    one class over the other; otherwise in the plane of the first two state coordinates. ``states`` may
    give the precomputed ``model.trajectory(x)[1]`` of all of ``x`` (shape ``(times, len(x), d+p)``).
    """
    idx = _pick(len(x), num_points)
    xs, ys = np.asarray(x)[idx], np.asarray(y)[idx]
    colors = _label_colors(ys)
    if states is None:
        _, states = model.trajectory(jnp.asarray(xs), num_times=40)
        states = np.asarray(states)
    else:
        states = np.asarray(states)[:, idx]
    three_d = states.shape[-1] == 3
    fig = Figure(figsize=(5.2, 4.6), layout="constrained")
    ax = fig.add_subplot(projection="3d") if three_d else fig.subplots()
    for j in range(states.shape[1]):
        path = [states[:, j, k] for k in range(3 if three_d else 2)]
        ax.plot(*path, color=colors[j], alpha=0.6, linewidth=0.9)
    start = [states[0, :, k] for k in range(3 if three_d else 2)]
    end = [states[-1, :, k] for k in range(3 if three_d else 2)]
    ax.scatter(*start, c=colors, s=10, marker="o", alpha=0.9, label="start h(0)")
    ax.scatter(*end, c=colors, s=22, marker="*", edgecolors="black", linewidths=0.3, label="end h(T)")
    ax.set_xlabel("h1")
    ax.set_ylabel("h2")
    if three_d:
        ax.set_zlabel("a1 (augmented)")
    else:
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "trajectories")
    return fig


def plot_features(
    model: Any, x: Any, y: Any, *, title: str | None = None, features: Any | None = None
) -> Figure:
    """The final features ``h(T)`` coloured by class (3-D for a 3-dimensional state, else the first two).

    ``features`` may give the precomputed ``model.features(x)``.
    """
    feats = np.asarray(model.features(jnp.asarray(x)) if features is None else features)
    colors = _label_colors(y)
    three_d = feats.shape[-1] == 3
    fig = Figure(figsize=(5.2, 4.6), layout="constrained")
    ax = fig.add_subplot(projection="3d") if three_d else fig.subplots()
    cols = [feats[:, k] for k in range(min(feats.shape[-1], 3 if three_d else 2))]
    if len(cols) == 1:
        cols.append(np.zeros_like(cols[0]))
    ax.scatter(*cols, c=colors, s=6, alpha=0.6)
    ax.set_xlabel("h1(T)")
    ax.set_ylabel("h2(T)")
    if three_d:
        ax.set_zlabel("a1(T)")
    else:
        ax.grid(alpha=0.3)
    ax.set_title(title or "features h(T)")
    return fig
