"""Prediction intervals and quantile forecasts, calibrated by split conformal prediction on the training
data's own past.

Every forecast is made in standardised units ``z`` (:mod:`pyanode.forecast.structure`): the point forecast
at ``h`` grid steps after the last training date is ``zhat(h) = mu(t0 + h) + xhat(h)``, mapped to the
column's units by ``from_standard`` (``exp`` for log columns). The intervals are built around it in the
same units, so log columns get multiplicative intervals.

**Calibration (at fit time, :func:`calibrate`).** For each column, the chosen structure (its trend,
cycles and recency weighting) is refitted by the same weighted ridge normal equations on the data before
each of ``K`` origins ``o`` (up to :data:`ORIGINS`, evenly spaced over the last third of the training
data), and forecasts the next ``H`` steps as the structure's backtest does: ``mu_o(o + h)`` plus the last
residual decaying as an AR(1), ``r_o phi_o^h`` (or, for a persistent column, the residual's current level
carrying on, with the residual's own cycle where it has one, as the forecaster's: ``persistent_ahead``).
Where the truth is observed, the signed errors

    e[o, h] = z(o + h) - zhat_o(h),          h = 1 .. H

are collected (``H``: the fit's ``horizon``). These closed-form forecasts stand in for the neural ODE's:
refitting the ODE ``K`` times would cost ``K`` fits.

* *Scale per step.* ``sigma_h^2`` is the mean of ``e[o, h]^2`` over the origins; it is made non-decreasing
  in ``h`` by isotonic regression (pool adjacent violators, weighted by the counts: the uncertainty of a
  forecast cannot shrink further ahead), smoothed by a three-point moving average (which keeps it
  non-decreasing) and its square root taken. Past ``H`` it grows like a random walk's,
  ``sigma_h = sigma_H sqrt(h / H)``; between the origin (``sigma_0 = 0``) and ``H`` it is interpolated
  linearly, so dates between grid steps are covered too.
* *Shape.* The normalised errors ``s = e[o, h] / sigma_h``, pooled over all ``(o, h)`` (``n`` of them)
  and sorted, are the calibration scores. For a central interval of level ``L = 1 - alpha`` the multipliers
  are the order statistics

      q_hi = s_(ceil((n + 1)(1 - alpha/2))),     q_lo = s_(floor((n + 1) alpha/2))

  (clamped to the sample's ends): split conformal prediction's finite-sample correction, which gives
  coverage of at least ``1 - alpha`` when the scores of the future are exchangeable with those of the
  past. The quantile ``tau`` is ``s_(ceil((n + 1) tau))`` above the median and ``s_(floor((n + 1) tau))``
  below it.

**Intervals: two models, one calibration.** The scores above are those of the closed-form model
(structure plus AR(1) decay, ``ztilde(h)``); the point forecast is the neural ODE's, ``zhat(h)``, which
starts from that model and learns what it misses. The ODE was never backtested at ``K`` origins (that
would cost ``K`` fits), so its own error distribution is unknown; how far it departs from the calibrated
model, ``d(h) = zhat(h) - ztilde(h)``, is the part of its uncertainty that can be seen without refitting
it. Each bound reaches as far as the closed-form model's does, at this step or any earlier grid step:

    lo(h) = zhat(h) - D_lo(h) + q_lo sigma_h,     D_lo(h) = max(0, d(h), max_{k <= ceil(h)} d(k)),
    hi(h) = zhat(h) + D_hi(h) + q_hi sigma_h,     D_hi(h) = max(0, -d(h), max_{k <= ceil(h)} -d(k)),

mapped back with ``from_standard`` (``k``: grid steps). So the interval contains the closed-form model's
conformal interval (whose coverage guarantee, under exchangeability, carries over) and the one around
the point forecast; it widens where the learned field moves the forecast away from what was calibrated,
and once the two models have disagreed by ``d`` it does not narrow again further ahead (that the forecasts
meet again later is no evidence that the truth will). Where the two forecasts agree, ``D = 0``.
Quantiles below the median reach down by ``D_lo``, those above up by ``D_hi``; the median is the point
model's own. ``q_lo <= 0 <= q_hi`` is enforced (the point forecast always lies inside). Because
``sigma_h`` and ``D`` are non-decreasing along the grid and the multipliers of a wider level are further
out, the intervals widen weakly with the horizon (in standardised units; in the column's units for
columns without the log transform) and nest (95% contains 80%). A column with too few observations to
backtest gets ``sigma_h = 1`` (the standardised data's spread) and Gaussian multipliers.

On the forecast suite (BENCHMARKS.md) the reach raised the mean coverage from 73.6% / 88.8% to about
77.6% / 91.3% (80% / 95%) at a lower mean MSIS at 95% and the same at 80%.

Not modelled: the neural ODE's parameter uncertainty beyond its departure from the closed-form model (an
ensemble of fits), and any change of regime after the training data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

from pyanode.errors import PyanodeError
from pyanode.forecast.structure import Structure, refit_errors

__all__ = ["CRPS_QUANTILES", "Calibration", "ColumnCalibration", "band_columns", "calibrate",
           "check_levels", "check_quantiles", "departure_envelope", "interval_metrics", "with_intervals"]

ORIGINS = 40  # most backtest origins per column
MIN_SCORES = 8  # fewer normalised errors than this: Gaussian multipliers instead
SIGMA_FLOOR = 1e-9
CRPS_QUANTILES = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05 .. 0.95


# -- input checks -----------------------------------------------------------------------------------------

def _numbers(values: float | Sequence[float], name: str) -> list[float]:
    seq = [values] if isinstance(values, (int, float, np.integer, np.floating)) else values
    try:
        out = [float(v) for v in seq]
    except (TypeError, ValueError):
        raise PyanodeError(f"{name} must be a number or a list of numbers, got {values!r}") from None
    if any(isinstance(v, bool) for v in seq):
        raise PyanodeError(f"{name} must be numbers, got {values!r}")
    if not out:
        raise PyanodeError(f"{name} is empty; give at least one value, e.g. {name}=[80, 95]"
                           if name == "level" else f"{name} is empty; give at least one value, e.g. "
                           f"{name}=[0.1, 0.5, 0.9]")
    return out


def check_levels(level: float | Sequence[float]) -> list[float]:
    """Interval levels in percent, each strictly between 0 and 100, sorted and without repeats."""
    out = _numbers(level, "level")
    bad = [v for v in out if not 0 < v < 100]
    if bad:
        raise PyanodeError(f"level (--level) must be between 0 and 100 (a percentage, e.g. 80 or 95), got "
                           f"{bad[0]:g}")
    return sorted(set(out))


def check_quantiles(quantiles: float | Sequence[float]) -> list[float]:
    """Quantile levels, each strictly between 0 and 1, sorted and without repeats."""
    out = _numbers(quantiles, "quantiles")
    bad = [v for v in out if not 0 < v < 1]
    if bad:
        raise PyanodeError(f"quantiles must be between 0 and 1 (e.g. 0.1, 0.5, 0.9), got {bad[0]:g}")
    return sorted(set(out))


def band_columns(column: str, level: float) -> tuple[str, str]:
    """Names of a column's interval bounds (statsforecast's naming): ``c-lo-80``, ``c-hi-80``."""
    return f"{column}-lo-{level:g}", f"{column}-hi-{level:g}"


def quantile_column(column: str, tau: float) -> str:
    """Name of a column's quantile forecast: ``c-q0.1``."""
    return f"{column}-q{tau:g}"


# -- the calibration --------------------------------------------------------------------------------------

def _frozen(values: Sequence[float] | np.ndarray, dtype: type = np.float64) -> np.ndarray:
    out = np.array(values, dtype=dtype).reshape(-1)
    out.flags.writeable = False
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class ColumnCalibration:
    """One column's calibration: ``sigma[h - 1]`` (standardised units, non-decreasing) and the sorted
    normalised errors (empty: Gaussian multipliers), kept as read-only float arrays (a panel holds one per
    column of every series: a tuple of Python floats would take four times the memory).

    The scores are kept as float32: they are up to 40 origins x ``H`` steps per column, half of what a
    panel keeps per series, and a multiplier read from them needs no more than float32's seven digits (it
    is an empirical quantile of a few hundred backtest errors). Sorted float64 scores round to sorted
    float32 ones, and the saved file's numbers read back to the same float32 values."""

    sigma: np.ndarray
    scores: np.ndarray
    origins: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _frozen(self.sigma))
        object.__setattr__(self, "scores", _frozen(self.scores, np.float32))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ColumnCalibration) and self.origins == other.origins
                and np.array_equal(self.sigma, other.sigma) and np.array_equal(self.scores, other.scores))

    __hash__ = None  # type: ignore[assignment]  # equal by value, and arrays are not hashable

    def multiplier(self, tau: float) -> float:
        """The normalised error's conformal quantile ``tau`` (see the module docstring)."""
        n = len(self.scores)
        if n < MIN_SCORES:
            return NormalDist().inv_cdf(tau)
        k = math.ceil((n + 1) * tau) if tau >= 0.5 else math.floor((n + 1) * tau)
        return float(self.scores[min(max(k, 1), n) - 1])

    def band(self, level: float) -> tuple[float, float]:
        """``(q_lo, q_hi)`` of a central interval of ``level`` percent, with ``q_lo <= 0 <= q_hi``."""
        alpha = 1.0 - level / 100.0
        return min(self.multiplier(alpha / 2), 0.0), max(self.multiplier(1 - alpha / 2), 0.0)

    def scale(self, steps: np.ndarray) -> np.ndarray:
        """``sigma`` at (possibly fractional) steps after the origin: 0 at the origin, interpolated to
        ``H``, ``sigma_H sqrt(h / H)`` beyond."""
        steps = np.asarray(steps, dtype=np.float64)
        sig = np.asarray(self.sigma, dtype=np.float64)
        H = len(sig)
        inside = np.interp(np.clip(steps, 0.0, H), np.arange(H + 1.0), np.concatenate([[0.0], sig]))
        beyond = sig[-1] * np.sqrt(np.maximum(steps, H) / H)
        return np.where(steps > H, beyond, inside)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Every column's :class:`ColumnCalibration`, from backtests ``horizon`` steps ahead."""

    columns: tuple[ColumnCalibration, ...]
    horizon: int

    def to_json(self) -> dict:
        return {"horizon": self.horizon,
                "columns": [{"sigma": c.sigma.tolist(), "scores": c.scores.tolist(), "origins": c.origins}
                            for c in self.columns]}

    @classmethod
    def from_json(cls, d: dict) -> Calibration:
        cols = tuple(ColumnCalibration(c["sigma"], c["scores"], int(c.get("origins", 0)))
                     for c in d["columns"])
        return cls(cols, int(d["horizon"]))


def _isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for v, wt in zip(y, w, strict=True):
        blocks.append([float(v), float(wt), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            wt_sum = w1 + w2
            blocks.append([(m1 * w1 + m2 * w2) / wt_sum if wt_sum > 0 else (m1 + m2) / 2, wt_sum, n1 + n2])
    return np.concatenate([np.full(int(n), m) for m, _, n in blocks])


def _smooth_sigma(errors: np.ndarray) -> np.ndarray:
    """``sigma_h`` from errors ``(origins, H)`` (NaN where unobserved): RMS per step, isotonic on the
    variance, three-point moving average (edges repeated), square root. Steps without any error borrow
    their neighbours' (the isotonic fit ignores them through a zero weight)."""
    count = np.isfinite(errors).sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore"):
        var = np.where(count > 0, np.nansum(errors**2, axis=0) / np.maximum(count, 1), np.nan)
    known = np.flatnonzero(count > 0)
    var = np.interp(np.arange(len(var)), known, var[known])  # gaps only; ends held flat
    var = _isotonic(var, count)
    padded = np.concatenate([[var[0]], var, [var[-1]]])
    var = (padded[:-2] + padded[1:-1] + padded[2:]) / 3.0
    return np.sqrt(np.maximum(var, SIGMA_FLOOR**2))


def backtest_errors(z: np.ndarray, structure: Structure, j: int, horizon: int,
                    origins: int = ORIGINS) -> np.ndarray:
    """Signed errors ``e[o, h - 1]`` (standardised units; NaN where the truth is missing) of column ``j``'s
    chosen structure refitted before each origin (see the module docstring)."""
    T = len(z)
    first = max(4, T - T // 3)
    if first >= T:
        return np.zeros((0, horizon))
    cuts = np.unique(np.round(np.linspace(first, T - 1, min(origins, T - first))).astype(np.int64))
    return refit_errors(z, structure.columns[j], [int(c) for c in cuts], horizon, structure.epoch_days,
                        structure.step_days)


def calibrate(structure: Structure, y: np.ndarray, horizon: int, origins: int = ORIGINS) -> Calibration:
    """The interval calibration of every column (see the module docstring).

    Args:
        structure: the fitted structure (each column's chosen parts are refitted at every origin).
        y: the training values on the grid ``(T, n)``, in the columns' own units (NaN where unobserved).
        horizon: ``H``, the steps ahead of each backtest forecast.
        origins: most origins per column.
    """
    z_all = structure.to_standard(y)
    cols = []
    for j in range(y.shape[1]):
        errors = backtest_errors(z_all[:, j], structure, j, horizon, origins)
        if np.isfinite(errors).sum() < MIN_SCORES:
            cols.append(ColumnCalibration(np.ones(horizon), (), len(errors)))
            continue
        sigma = _smooth_sigma(errors)
        scores = (errors / sigma)[np.isfinite(errors)]
        cols.append(ColumnCalibration(sigma, np.sort(scores), len(errors)))
    return Calibration(tuple(cols), int(horizon))


# -- forecasts with intervals ----------------------------------------------------------------------------

def departure_envelope(steps: np.ndarray, grid_departure: np.ndarray, departure: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """How far each row's lower and upper bounds reach past the point forecast's own calibrated ones
    (standardised units, ``(len(steps), n)``, non-negative): the largest departure ``d = zhat - ztilde``
    below (for the lower bound: ``d > 0``) or above (upper: ``d < 0``) the point forecast at any grid step
    up to the row's, or at the row itself.

    Args:
        steps: grid steps after the last training date of each row.
        grid_departure: ``d`` at grid steps 1, 2, ..., at least up to ``ceil(max(steps))``.
        departure: ``d`` at the rows themselves.
    """
    zero = np.zeros((1, grid_departure.shape[1]))
    below = np.concatenate([zero, np.maximum.accumulate(np.maximum(grid_departure, 0.0), axis=0)])
    above = np.concatenate([zero, np.maximum.accumulate(np.maximum(-grid_departure, 0.0), axis=0)])
    k = np.clip(np.ceil(np.asarray(steps, dtype=np.float64) - 1e-9), 0, len(grid_departure)).astype(np.int64)
    return np.maximum(below[k], np.maximum(departure, 0.0)), np.maximum(above[k], np.maximum(-departure, 0.0))


def with_intervals(point: pd.DataFrame, point_z: np.ndarray, steps: np.ndarray, grid_departure: np.ndarray,
                   departure: np.ndarray, structure: Structure, calibration: Calibration,
                   level: Sequence[float] | None, quantiles: Sequence[float] | None) -> pd.DataFrame:
    """``point`` (columns in their units) with each column followed by its interval bounds, then its
    quantiles.

    Args:
        point: the point forecast in the columns' units.
        point_z: the same forecast in standardised units, ``(len(point), n)``.
        steps: grid steps after the last training date of each row (fractional between grid dates).
        grid_departure, departure: the point forecast minus the closed-form model's, standardised, at
            grid steps 1, 2, ... and at the rows (:func:`departure_envelope`).
        structure, calibration: the forecaster's.
        level, quantiles: checked lists (:func:`check_levels`, :func:`check_quantiles`) or None.
    """
    columns = list(point.columns)
    sig = np.stack([c.scale(steps) for c in calibration.columns], axis=1)
    reach_lo, reach_hi = departure_envelope(steps, grid_departure, departure)

    def units(mult: np.ndarray, side: float) -> np.ndarray:
        # side < 0: a lower bound or quantile, reaching down as far as the closed-form model's; > 0: up.
        shift = -reach_lo if side < 0 else reach_hi if side > 0 else 0.0
        return structure.from_standard(point_z + shift + mult[None, :] * sig)

    parts: dict[str, np.ndarray] = {}
    bands = {lv: [c.band(lv) for c in calibration.columns] for lv in level or ()}
    lows = {lv: units(np.array([b[0] for b in bs]), -1) for lv, bs in bands.items()}
    highs = {lv: units(np.array([b[1] for b in bs]), 1) for lv, bs in bands.items()}
    quant = {tau: units(np.array([c.multiplier(tau) for c in calibration.columns]), tau - 0.5)
             for tau in quantiles or ()}
    values = point.to_numpy(dtype=np.float64)
    for j, c in enumerate(columns):
        parts[c] = values[:, j]
        for lv in level or ():
            lo, hi = band_columns(c, lv)
            # The point forecast lies inside every interval (it does up to rounding; this makes it exact).
            parts[lo] = np.minimum(lows[lv][:, j], values[:, j])
            parts[hi] = np.maximum(highs[lv][:, j], values[:, j])
        for tau in quantiles or ():
            parts[quantile_column(c, tau)] = quant[tau][:, j]
    return pd.DataFrame(parts, index=point.index)


# -- scores -----------------------------------------------------------------------------------------------

def interval_metrics(pred: pd.DataFrame, truth: pd.DataFrame, scales: dict[str, float],
                     level: Sequence[float], quantiles: Sequence[float] = CRPS_QUANTILES
                     ) -> dict[str, dict[str, float]]:
    """Per column, over the dates where the truth is present:

    * ``coverage-L``: the fraction of truths inside the ``L`` % interval ``[lo, hi]``;
    * ``msis-L``: the M4 competition's mean scaled interval score, ``alpha = 1 - L/100``,
      ``mean((hi - lo) + 2/alpha (lo - y) [y < lo] + 2/alpha (y - hi) [y > hi]) / scale``;
    * ``crps``: the continuous ranked probability score approximated from the ``quantiles`` forecasts
      ``q_tau`` as twice the mean pinball loss ``rho_tau(y - q_tau)``,
      ``rho_tau(u) = max(tau u, (tau - 1) u)``, averaged over the quantiles and the dates, divided by
      ``scale``.

    ``scale`` is MASE's (:func:`pyanode.forecast.baselines.mase_scales`), so the scores compare across
    series. ``pred`` holds the band columns of ``level`` and the quantile columns of ``quantiles``.
    """
    out = {}
    for c in truth.columns:
        ok = truth[c].notna().to_numpy()
        y = truth[c].to_numpy(dtype=np.float64)[ok]
        scale = scales.get(c, float("nan"))
        scale = scale if scale > 0 else float("nan")
        d: dict[str, float] = {}
        for lv in level:
            lo_name, hi_name = band_columns(c, lv)
            lo = pred[lo_name].to_numpy(dtype=np.float64)[ok]
            hi = pred[hi_name].to_numpy(dtype=np.float64)[ok]
            alpha = 1.0 - lv / 100.0
            if len(y):
                d[f"coverage-{lv:g}"] = float(np.mean((y >= lo) & (y <= hi)))
                score = (hi - lo) + 2 / alpha * (lo - y) * (y < lo) + 2 / alpha * (y - hi) * (y > hi)
                d[f"msis-{lv:g}"] = float(np.mean(score)) / scale
            else:
                d[f"coverage-{lv:g}"] = d[f"msis-{lv:g}"] = float("nan")
        losses = []
        for tau in quantiles:
            u = y - pred[quantile_column(c, tau)].to_numpy(dtype=np.float64)[ok]
            losses.append(np.maximum(tau * u, (tau - 1) * u))
        d["crps"] = float(2 * np.mean(losses)) / scale if len(y) and losses else float("nan")
        out[c] = d
    return out
