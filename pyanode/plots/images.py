"""Figures for the image experiments: test images with predictions, and test accuracy during training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["plot_predictions", "plot_test_curves"]


def _to_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """A ``(C, H, W)`` image in [0, 1] as something ``imshow`` draws: grey for one channel, RGB for three."""
    image = np.clip(np.asarray(image, dtype=float), 0.0, 1.0)
    if image.shape[0] == 1:
        return image[0], "gray"
    return np.transpose(image[:3], (1, 2, 0)), None


def plot_predictions(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    classes: Sequence[str],
    *,
    columns: int = 8,
    title: str | None = None,
) -> Figure:
    """A grid of test images, each titled with its true class and every model's predicted class.

    ``images``: ``(N, C, H, W)`` in [0, 1]; ``labels``: ``(N,)``; ``predictions``: ``{model label:
    predicted classes (N,)}``. A prediction is green when right and red when wrong.
    """
    n = len(images)
    columns = max(1, min(columns, n))
    rows = int(np.ceil(n / columns))
    names = list(predictions)
    fig = Figure(figsize=(1.5 * columns, (1.45 + 0.22 * len(names)) * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        picture, cmap = _to_display(images[i])
        ax.imshow(picture, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"true: {classes[int(labels[i])]}", fontsize=8, pad=2 + 11 * len(names))
        for j, name in enumerate(names):
            guess = int(predictions[name][i])
            color = "tab:green" if guess == int(labels[i]) else "tab:red"
            ax.text(
                0.5, 1.02 + 0.13 * (len(names) - 1 - j), f"{name}: {classes[guess]}", transform=ax.transAxes,
                ha="center", va="bottom", fontsize=7, color=color,
            )  # fmt: skip
    if title:
        fig.suptitle(title)
    return fig


def plot_test_curves(histories: Mapping[str, pd.DataFrame], *, title: str | None = None) -> Figure:
    """Test accuracy and test-set forward NFE against the training iteration, one line per model.

    Uses the ``test_accuracy`` and ``test_nfe_forward`` columns that the image experiments' evaluation
    callback adds to the training history (rows without an evaluation are skipped).
    """
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    ax_acc, ax_nfe = fig.subplots(1, 2)
    for i, (label, hist) in enumerate(histories.items()):
        if "test_accuracy" not in hist:
            continue
        rows = hist.dropna(subset=["test_accuracy"])
        it = rows["iteration"].to_numpy()
        ax_acc.plot(it, 100 * rows["test_accuracy"].to_numpy(), "o-", color=f"C{i}", label=label)
        if "test_nfe_forward" in rows:
            ax_nfe.plot(it, rows["test_nfe_forward"].to_numpy(), "o-", color=f"C{i}", label=label)
    ax_acc.set_title("test accuracy (%)")
    ax_nfe.set_title("NFE (forward) on the test set")
    for ax in (ax_acc, ax_nfe):
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig
