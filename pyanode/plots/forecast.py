"""Forecast figures: history, forecast and (when known) the truth, one panel per column."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["plot_forecast"]


def plot_forecast(
    train: pd.DataFrame,
    forecast: pd.DataFrame,
    truth: pd.DataFrame | None = None,
    *,
    history_steps: int | None = None,
    report: Any = None,
    title: str | None = None,
    level: list[float] | None = None,
):
    """One panel per column: the (cleaned) history, the forecast from its end, and the truth.

    With ``level`` (percent), the forecast's interval columns ``c-lo-L`` and ``c-hi-L`` are shaded, the
    wider levels lighter, under one legend entry ("80% / 95% interval").

    ``history_steps`` limits how much history is drawn (default: about three forecast lengths, at
    least a year of daily data when there is that much), so the forecast is not squeezed to a sliver.
    Returns the matplotlib Figure (not shown; call ``savefig``).
    """
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cols = [c for c in forecast.columns if c in train.columns]  # not the interval columns
    if history_steps is None:
        history_steps = max(3 * len(forecast), 400)
    hist = train.iloc[-history_steps:]
    fig, axes = plt.subplots(len(cols), 1, figsize=(10, 2.4 * len(cols) + 0.6), sharex=True, squeeze=False)
    for ax, c in zip(axes[:, 0], cols, strict=True):
        # Missing and masked values are skipped, so sparse columns still draw as a line.
        h = hist[c].dropna()
        ax.plot(h.index, h.to_numpy(), color="0.35", lw=0.9, label="history")
        # Join the forecast to the last observed value so the two lines meet.
        last = hist[c].dropna()
        fx, fy = forecast.index, forecast[c].to_numpy()
        if len(last):
            fx = pd.DatetimeIndex([last.index[-1]]).append(fx)
            fy = np.concatenate([[last.iloc[-1]], fy])
        ax.plot(fx, fy, color="tab:red", lw=1.8, label="forecast")
        _bands(ax, forecast, c, level, (last.index[-1], last.iloc[-1]) if len(last) else None)
        if truth is not None and c in truth:
            ax.plot(truth.index, truth[c], color="tab:blue", lw=0.9, marker=".", ms=3, label="truth")
        ax.axvline(train.index[-1], color="0.6", ls="--", lw=0.8)
        ax.set_ylabel(c)
        ax.grid(alpha=0.3)
        if report is not None and getattr(report, "outliers", {}).get(c):
            count = report.outliers[c]
            ax.text(0.01, 0.92, f"{count} outlier{'s' if count != 1 else ''} masked", transform=ax.transAxes,
                    fontsize=8, color="0.4", va="top")
    fig.suptitle(title or f"Forecast from {train.index[-1].date()} ({len(forecast)} dates)")
    fig.autofmt_xdate()
    # The legend sits under the title, above the panels, in a band kept free of them.
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.3 / fig.get_figheight()))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    box = axes[0, 0].get_position()
    fig.legend(handles, labels, loc="lower left", ncol=max(3, len(handles)), fontsize=8, frameon=False,
               bbox_to_anchor=(box.x0, box.y1), borderaxespad=0.1)
    return fig


def _bands(ax: Any, forecast: pd.DataFrame, column: str, level: list[float] | None,
           start: tuple[Any, float] | None) -> None:
    """Shade each level's interval of ``column``: widest first and lightest, the narrowest (drawn last,
    darkest) carrying the one legend entry for all of them; from ``start`` (the last observation) with
    no width, as the forecast line is joined to it."""
    if not level:
        return
    levels = sorted(level)
    label = " / ".join(f"{lv:g}%" for lv in levels) + " interval"
    for rank, lv in enumerate(reversed(levels)):
        lo, hi = f"{column}-lo-{lv:g}", f"{column}-hi-{lv:g}"
        if lo in forecast and hi in forecast:
            narrowest = rank == len(levels) - 1
            x = forecast.index
            ylo, yhi = forecast[lo].to_numpy(dtype=float), forecast[hi].to_numpy(dtype=float)
            if start is not None:
                x = pd.DatetimeIndex([start[0]]).append(x)
                ylo, yhi = np.concatenate([[start[1]], ylo]), np.concatenate([[start[1]], yhi])
            ax.fill_between(x, ylo, yhi, color="tab:red", lw=0, zorder=1,
                            alpha=0.15 + 0.2 * rank / max(len(levels) - 1, 1),
                            label=label if narrowest else None)
