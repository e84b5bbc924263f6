"""A seeded panel of realistic monthly series in long format (``unique_id, ds, y``), for the panel benchmark.

Each series is drawn on its own (from ``numpy.random.default_rng([seed, i])``, so series ``i`` is the same
whatever the panel's size):

* a length of 48 to 240 training months plus the 18-month test (M4's monthly horizon), starting in a month
  between 1980 and 2005;
* a level (10 to 10,000, log-uniform) that wanders a little (a random walk), and a trend: linear (40%),
  damped (30%, ``phi`` 0.90-0.98) or none (30%);
* yearly seasonality: additive (40%), multiplicative (35%) or none (25%), of varying strength, its shape a
  random mix of two harmonics;
* multiplicative noise of 1% to 15%;
* in about one series in five, one to three gaps (missing months, single or a short run) in the training
  part, and in about one in ten, an outlier (the value times 2-4 or divided by 2-4), also in training.

Values stay positive (floored at 1% of the level). :func:`make_panel` returns ``(train, test)``: the test is
each series' last :data:`HORIZON` months, which are never gapped or spoilt.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HORIZON = 18  # M4's monthly horizon
SEASON = 12


def draw_series(i: int, seed: int = 0, horizon: int = HORIZON) -> tuple[np.ndarray, np.ndarray]:
    """Series ``i`` of the panel with this ``seed``: its months (as ``datetime64[M]``) and values, training
    months then the ``horizon`` test months (gaps left out)."""
    rng = np.random.default_rng([seed, i])
    n = int(rng.integers(48, 241)) + horizon
    start = np.datetime64(f"{int(rng.integers(1980, 2006))}-01", "M") + int(rng.integers(0, 12))
    t = np.arange(n, dtype=float)
    level = np.exp(rng.uniform(np.log(10.0), np.log(10_000.0)))
    # Trend: a yearly growth of -5% to +15% of the level, straight, damped or absent.
    slope = level * rng.uniform(-0.05, 0.15) / 12
    kind = rng.choice(["linear", "damped", "none"], p=[0.4, 0.3, 0.3])
    if kind == "damped":
        phi = rng.uniform(0.90, 0.98)
        trend = slope * phi * (1 - phi**t) / (1 - phi)
    else:
        trend = slope * t if kind == "linear" else np.zeros(n)
    wander = np.cumsum(rng.normal(0.0, 0.01 * level, n))
    base = np.maximum(level + trend + wander, 0.05 * level)
    # Yearly seasonality: two harmonics with random phases, scaled to a peak of about 1.
    m = 2 * np.pi * t / SEASON
    second = rng.uniform(0, 0.6) * np.sin(2 * m + rng.uniform(0, 2 * np.pi))
    shape = np.sin(m + rng.uniform(0, 2 * np.pi)) + second
    shape /= np.abs(shape).max()
    strength = rng.uniform(0.05, 0.4)
    season = rng.choice(["additive", "multiplicative", "none"], p=[0.4, 0.35, 0.25])
    if season == "additive":
        y = base + strength * level * shape
    elif season == "multiplicative":
        y = base * (1 + strength * shape)
    else:
        y = base.copy()
    y *= 1 + rng.normal(0.0, rng.uniform(0.01, 0.15), n)
    y = np.maximum(y, 0.01 * level)
    train_n = n - horizon
    if rng.random() < 0.1:  # an outlier somewhere in training (not in the first two years)
        k = int(rng.integers(24, train_n))
        factor = rng.uniform(2, 4)
        y[k] = y[k] * factor if rng.random() < 0.5 else y[k] / factor
    keep = np.ones(n, dtype=bool)
    if rng.random() < 0.2:  # gaps: 1-3 runs of 1-2 missing months, not in the first or last year of training
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(12, train_n - 12))
            keep[k : k + int(rng.integers(1, 3))] = False
    return (start + np.arange(n))[keep], y[keep]


def make_panel(n_series: int, seed: int = 0, horizon: int = HORIZON) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, test)`` long frames (``unique_id, ds, y``) of ``n_series`` series; the test is each series'
    last ``horizon`` months."""
    drawn = [draw_series(i, seed, horizon) for i in range(n_series)]

    def frame(part: slice) -> pd.DataFrame:
        ids = np.concatenate([np.full(len(m[part]), f"S{i:05d}") for i, (m, _) in enumerate(drawn)])
        ds = np.concatenate([m[part] for m, _ in drawn]).astype("datetime64[ns]")
        return pd.DataFrame({"unique_id": ids, "ds": ds, "y": np.concatenate([y[part] for _, y in drawn])})

    return frame(slice(None, -horizon)), frame(slice(-horizon, None))
