"""Forecast figures: history, forecast and (when known) the truth, one panel per column."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["plot_forecast", "plot_panel"]

GRID_FROM = 6  # more columns than this are drawn in a grid of two columns of panels,
GRID_THREE_FROM = 16  # and more than this in three


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
    """One panel per column: the (cleaned) history, the forecast from its end, and the truth. More than
    :data:`GRID_FROM` columns are laid out in a grid of two or three columns of panels, read row by row.

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
    # Many columns go in a grid, read row by row, so that the figure stays a page rather than a scroll.
    n = len(cols)
    across = 1 if n <= GRID_FROM else 2 if n <= GRID_THREE_FROM else 3
    rows = math.ceil(n / across)
    fig, axes = plt.subplots(rows, across, figsize=(10 if across == 1 else 8 * across, 2.4 * rows + 0.6),
                             sharex=True, squeeze=False)
    cells = list(axes.ravel())
    for ax in cells[n:]:
        fig.delaxes(ax)
    for ax, c in zip(cells[:n], cols, strict=True):
        _draw(ax, hist, forecast, truth, c, level, train.index[-1])
        ax.set_ylabel(c)
        if report is not None and getattr(report, "outliers", {}).get(c):
            count = report.outliers[c]
            ax.text(0.01, 0.92, f"{count} outlier{'s' if count != 1 else ''} masked", transform=ax.transAxes,
                    fontsize=8, color="0.4", va="top")
    from pyanode.forecast.data import format_when

    fig.suptitle(title or f"Forecast from {format_when(train.index[-1])} ({len(forecast)} dates)")
    _legend_on_top(fig, axes)
    for ax in cells[max(0, n - across) : n]:  # each grid column's lowest panel shows the dates
        ax.xaxis.set_tick_params(labelbottom=True)
        for label in ax.get_xticklabels():
            label.set(rotation=30, horizontalalignment="right")
    return fig


def plot_panel(series: list[tuple[str, str, pd.DataFrame, pd.DataFrame, pd.DataFrame | None]], column: str, *,
               level: list[float] | None = None, history_steps: int | None = None, title: str | None = None):
    """A few series of a panel, one row each: ``(id, caption, train, forecast, truth)`` per row, drawing
    ``column`` as :func:`plot_forecast` does (history, forecast, truth, shaded intervals)."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(series), 1, figsize=(10, 2.4 * len(series) + 0.6), squeeze=False)
    for ax, (sid, caption, train, forecast, truth) in zip(axes[:, 0], series, strict=True):
        steps = history_steps if history_steps is not None else max(3 * len(forecast), 400)
        _draw(ax, train.iloc[-steps:], forecast, truth, column, level, train.index[-1])
        ax.set_ylabel(column)
        # The caption sits inside the panel (the legend takes the band above the first one).
        ax.text(0.01, 0.95, f"{sid}: {caption}" if caption else str(sid), transform=ax.transAxes, fontsize=9,
                va="top", bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    fig.suptitle(title or f"{column}: {len(series)} series")
    _legend_on_top(fig, axes, dates_on_every_panel=True)  # (the series' dates differ: no shared axis)
    return fig


def _draw(ax: Any, hist: pd.DataFrame, forecast: pd.DataFrame, truth: pd.DataFrame | None, c: str,
          level: list[float] | None, train_end: Any) -> None:
    """One column's history, forecast (joined to the last observation), intervals and truth."""
    # Missing and masked values are skipped, so sparse columns still draw as a line; long gaps stay gaps.
    h = hist[c].dropna()
    ax.plot(*_broken_at_gaps(h), color="0.35", lw=0.9, label="history")
    fx, fy = forecast.index, forecast[c].to_numpy()
    if len(h):
        fx = pd.DatetimeIndex([h.index[-1]]).append(fx)
        fy = np.concatenate([[h.iloc[-1]], fy])
    ax.plot(fx, fy, color="tab:red", lw=1.8, label="forecast")
    _bands(ax, forecast, c, level, (h.index[-1], h.iloc[-1]) if len(h) else None)
    if truth is not None and c in truth:
        ax.plot(truth.index, truth[c], color="tab:blue", lw=0.9, marker=".", ms=3, label="truth")
    ax.axvline(train_end, color="0.6", ls="--", lw=0.8)
    ax.grid(alpha=0.3)


GAP_BREAK = 5  # the history line breaks where observations are more than this many typical steps apart


def _broken_at_gaps(h: pd.Series) -> tuple[pd.Index, np.ndarray]:
    """``h``'s dates and values with a NaN (a break in the drawn line) in every gap longer than
    :data:`GAP_BREAK` typical steps (the median step between observations), so that a stretch without
    data is not drawn as a straight line through it; isolated missing values, weekends of business-day
    data and every-other-day columns are joined as before."""
    x, y = h.index, h.to_numpy(np.float64)
    if len(h) < 3 or not isinstance(x, pd.DatetimeIndex):
        return x, y
    gaps = np.diff(x.asi8)
    cut = np.flatnonzero(gaps > GAP_BREAK * np.median(gaps))
    if not len(cut):
        return x, y
    mids = x[cut] + (x[cut + 1] - x[cut]) / 2
    order = np.argsort(np.concatenate([x.asi8, mids.asi8]), kind="stable")
    return x.append(mids)[order], np.concatenate([y, np.full(len(cut), np.nan)])[order]


def _legend_on_top(fig: Any, axes: Any, dates_on_every_panel: bool = False) -> None:
    """Dates slanted (under every panel, or under the lowest only); the legend under the title, above the
    panels, in a band kept free of them."""
    if dates_on_every_panel:
        for ax in axes.ravel():
            for label in ax.get_xticklabels():
                label.set(rotation=30, horizontalalignment="right")
    else:
        fig.autofmt_xdate()
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.3 / fig.get_figheight()))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    box = axes[0, 0].get_position()
    fig.legend(handles, labels, loc="lower left", ncol=max(3, len(handles)), fontsize=8, frameon=False,
               bbox_to_anchor=(box.x0, box.y1), borderaxespad=0.1)


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
