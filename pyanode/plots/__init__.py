"""matplotlib figures: training curves and toy-experiment figures (:mod:`pyanode.plots.training`)."""

from pyanode.plots.training import (
    plot_features,
    plot_history,
    plot_trajectories,
    plot_trajectories_1d,
    plot_vector_field,
    save_figure,
)

__all__ = [
    "plot_features",
    "plot_history",
    "plot_trajectories",
    "plot_trajectories_1d",
    "plot_vector_field",
    "save_figure",
]
