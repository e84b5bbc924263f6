"""Step 3 of the forecaster: the known part of each column -- level, trend and seasonal cycles -- chosen by
backtest, so that the neural ODE models only the dynamics around it.

SciML calls a model made of a known structure plus a learned vector field a *universal differential
equation*. Here, per column ``c`` on the data's grid (step index ``t``),

    g_c(y_c(t)) = m_c + s_c * (mu_c(t) + x_c(t))

where ``g_c`` is the identity or the logarithm (a multiplicative series becomes additive), ``m_c`` and
``s_c`` standardise ``g_c(y_c)``, ``mu_c`` is the closed-form structure

    mu_c(t) = a + b u + d max(0, u - 2/3)                              (trend: flat, linear or local)
              + sum_P sum_k [alpha_Pk sin(2 pi k t_days / P) + beta_Pk cos(2 pi k t_days / P)]

(``u = t / T`` for ``T`` fitted steps; the "local" trend bends once, two thirds of the way through the
data, so the slope it carries past the data is that of the recent third), and ``x_c`` is the residual
that the augmented neural ODE of :mod:`pyanode.forecast.model` integrates forward.

Which transform, which trend and which seasonal periods (daily, weekly, yearly: those the grid step
resolves, the data span twice and the column shows, :func:`cycle_p_values`; and a cycle of the column's own
length that no calendar names, as the lynx's ten years or the sunspots' eleven, where its periodogram shows
one and, at the period of the residual's own damped cycle, where it keeps its phase, :func:`free_cycle`;
only where departures decay) each column gets is chosen
as AutoETS chooses among its models, but
by forecasting rather than by likelihood: every candidate is fitted by ridge least squares on the data
before each of three to eight origins at the end of the training data, forecasts the next ``horizon``
steps (its residual decaying as an AR(1) does, ``x(t0 + h) = phi^h x(t0)``, i.e. a linear ODE), and the
candidate with the lowest mean absolute error (in the column's own units) wins. The scores are kept, so
the report can say why. The winner is refitted on all the data; its ``phi`` starts the neural ODE's
linear decay, or, where the residual's AR(2) is a second-order linear ODE (a damped cycle, as the lynx's
departures are, or a fast and a slow decay: :func:`second_order_fit`), that ODE, carried with one of the
model's augmented dimensions (:mod:`pyanode.forecast.model`).

Whether departures from the structure decay or *persist* is decided first, once per column and transform
(its values, and their logs where it is positive: a multiplicative series' departures may wander in its
units and not in its logs), as AutoARIMA decides its differencing by a unit-root test before it chooses
the rest: if the augmented Dickey-Fuller test does not reject a unit root in the residual around a linear
trend and every seasonal cycle, the residual wanders (a random walk around the structure, as ARIMA's
differencing or exponential smoothing's level assumes). Every candidate on that scale then forecasts its
residual's current level (the local level model's, :func:`residual_level`) carried on undiminished, and so
does the fitted forecaster: the series is forecast
from where it is, not pulled back to a lagging fit, and the neural ODE, which cannot foresee a random
walk's steps, models the columns whose departures decay. Where the series' cycle changes from year to
year (a calendar cycle of whole steps: a year of months or quarters, a day of hours, a week of days), the
residual keeps a cycle of its own beside its level, and every such candidate, and the fitted forecaster,
carries it on (:func:`residual_cycle`), as seasonal ARIMA's seasonal difference and Holt-Winters' seasonal
state do. Where such a residual's steps over the last
``horizon`` steps drift significantly (:func:`residual_drift`: a trend that changed since the structure was
fitted), the fitted forecaster carries the drift on as well, as a random walk with drift would; and where
the residual's steps have a unit root too (a second test, as ARIMA differences twice a series whose growth
rate wanders), its current slope (:func:`residual_slope`) is carried on instead.
Past the data, a trend keeps its slope for the horizon asked for (what the backtest judged) and then
fades, as a damped trend does, so that forecasts far beyond that horizon stay level rather than run
off with a slope fitted to a few recent weeks.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["ColumnStructure", "Structure", "backtest_horizon", "candidate_periods", "choose_structure",
           "cycle_p_values", "f_survival", "fisher_g_survival", "free_cycle", "harmonics_for",
           "level_discount", "period_name", "refit_errors",
           "residual_drift", "residual_level", "residual_slope", "second_order_ahead", "second_order_fit",
           "second_order_roots", "second_order_words", "unit_root_test"]

TRENDS = ("flat", "linear", "local")
KNOT = 2.0 / 3.0  # where the local trend bends, as a fraction of the fitted span
TIE = 0.02  # candidates within this fraction of the best score are near-ties: the simplest wins
LEVEL_DISCOUNT = 0.95  # at most: a persistent residual's level averages over about 20 steps or fewer
RECENT_ROWS = 2048  # residual rows that estimate the AR(1) coefficient and test for a unit root
UNIT_ROOT_ROWS = 20  # fewer regression rows than this: no unit-root test (the residual decays)
DRIFT_T = 2.0  # t-ratio from which a persistent residual's recent drift is carried on (about 5 %, two-sided)
# A decay's factor per grid step, phi or an AR(2) root's modulus, lies in [FASTEST, SLOWEST]: an e-fold within
# half a step is as good as instant, and a factor of 1 would never decay.
FASTEST, SLOWEST = math.exp(-2.0), 0.999
CYCLE_P = 0.05  # a seasonal period is a candidate where its cycle is significant at this level
RIDGE = 0.1  # ridge penalty on the seasonal coefficients (standardised data); the trend is not shrunk
DAY, WEEK, YEAR = 1.0, 7.0, 365.25
PERIOD_NAMES = {DAY: "daily", WEEK: "weekly", YEAR: "yearly"}
CALENDAR = (DAY, WEEK, YEAR)
FREE_HARMONICS = 2  # a cycle of the data's own length (no calendar's): its fundamental and first overtone
FREE_CYCLES_SEEN = 3  # the data cover such a cycle at least this many times
PHASE_PARTS = 3  # a free cycle at the AR(2)'s own period must keep its phase through this many parts
FREE_SHORTEST = 4.0  # steps: a shorter cycle's shape is not sampled (near two steps, barely its sign)
STATE_CYCLES = 4  # a persistent residual's own cycle (residual_cycle) needs at least this many cycles seen
STATE_DISCOUNTS = np.linspace(0.0, LEVEL_DISCOUNT, 20)  # the discounts residual_cycle chooses from


def backtest_horizon(step_days: float) -> int:
    """Default steps ahead judged by the backtest (the M4 competition's horizons per frequency)."""
    if step_days < 1.0 / 24 - 1e-9:
        return max(2, round(2.0 / step_days))  # two days of sub-hourly data
    for limit, h in ((1.0 / 24, 48), (1.0, 14), (7.0, 13), (31.0, 18), (92.0, 8)):
        if step_days <= limit + 1e-9:
            return h
    return 6


def harmonics_for(period_days: float, step_days: float) -> int:
    """Fourier harmonics of a period: yearly 10 and weekly 3 (Prophet's defaults), daily 12 (a daily
    profile often has a sharp morning rise), a period of the data's own (:func:`free_cycle`)
    :data:`FREE_HARMONICS`; at most Nyquist."""
    if period_days not in CALENDAR:
        default = FREE_HARMONICS
    else:
        default = 10 if period_days >= YEAR else 3 if period_days >= WEEK else 12
    return max(0, min(default, int(period_days / step_days / 2 + 1e-9)))


def period_name(period_days: float) -> str:
    """``daily``, ``weekly``, ``yearly``, or a free cycle's length in the largest fitting unit."""
    if period_days in PERIOD_NAMES:
        return PERIOD_NAMES[period_days]
    for unit, word in ((YEAR, "year"), (WEEK, "week"), (DAY, "day")):
        if period_days >= 2 * unit:
            return f"{period_days / unit:.3g}-{word}"
    return f"{period_days * 24:.3g}-hour"


def candidate_periods(step_days: float, span_days: float) -> tuple[float, ...]:
    """Daily, weekly and yearly cycles that the grid resolves (two or more steps per cycle) and that the
    data cover at least twice."""
    return tuple(p for p in (DAY, WEEK, YEAR) if p / step_days >= 2 - 1e-9
                 and span_days >= 2 * p - step_days and harmonics_for(p, step_days))


def _faded(t: np.ndarray, fitted_steps: int, trusted: int) -> np.ndarray:
    """Trend time: ``t`` up to ``trusted`` steps past the last fitted step, then a slope that fades with
    the same time constant (a damped trend: it adds at most ``trusted`` more steps' worth of slope).

    A trend is only judged by the backtest as far as its horizon; carried further at full slope, a local
    trend of a few weeks would run a yearly series off the chart."""
    if trusted <= 0:
        return t
    last = fitted_steps - 1
    ahead = np.maximum(t - last, 0.0)
    beyond = np.maximum(ahead - trusted, 0.0)
    faded = np.minimum(ahead, trusted) + trusted * (1.0 - np.exp(-beyond / trusted))
    return np.where(t > last, last + faded, t)


def _trend_basis(t: np.ndarray, fitted_steps: int, trend: str) -> np.ndarray:
    u = t / max(fitted_steps, 1)
    cols = [np.ones_like(u)]
    if trend in ("linear", "local"):
        cols.append(u)
    if trend == "local":
        cols.append(np.maximum(0.0, u - KNOT))
    return np.stack(cols, axis=1)


def _season_basis(days: np.ndarray, periods: tuple[float, ...], step_days: float) -> np.ndarray:
    """Columns ``sin(w_k t), cos(w_k t)`` for the harmonics ``w_k = 2 pi k / P`` of each period ``P``, in
    that order (every sine and cosine of a period in one call each)."""
    blocks = [np.zeros((len(days), 0))]
    for p in periods:
        w = 2 * math.pi * np.arange(1, harmonics_for(p, step_days) + 1) / p
        angle = days[:, None] * w[None, :]
        blocks.append(np.stack([np.sin(angle), np.cos(angle)], axis=2).reshape(len(days), 2 * len(w)))
    return np.concatenate(blocks, axis=1)


@dataclasses.dataclass(frozen=True)
class Part:
    """One fitted candidate: trend, cycles, recency weighting and coefficients."""

    trend: str  # "flat" | "linear" | "local"
    periods: tuple[float, ...]  # days
    half_life: float  # recency weighting of the fit, in steps (0: none)
    coef: tuple[float, ...]  # trend coefficients, then seasonal ones

    def mu(self, t: np.ndarray, fitted_steps: int, epoch_days: float, step_days: float, trusted: int = 0
           ) -> np.ndarray:
        """``mu`` at grid positions ``t``; past the data the trend's slope fades after ``trusted`` steps."""
        x = np.concatenate([_trend_basis(_faded(t, fitted_steps, trusted), fitted_steps, self.trend),
                            _season_basis(epoch_days + step_days * t, self.periods, step_days)], axis=1)
        return x @ np.asarray(self.coef)

    def describe(self) -> str:
        words = [self.trend + " trend"]
        words += [period_name(p) + " cycle" for p in self.periods]
        if self.half_life:
            words.append(f"recent data weighted (half-life {self.half_life:g} steps)")
        return ", ".join(words)


@dataclasses.dataclass(frozen=True)
class ColumnStructure:
    """One column's transform, standardisation and structure (``mu``: the mean of its parts' fits; the
    backtest's winner is the one part ``choose_structure`` gives)."""

    transform: str  # "none" | "log"
    mean: float  # standardisation of the transformed values
    std: float
    parts: tuple[Part, ...]  # the backtest's winner
    fitted_steps: int  # T of u = t / T
    phi: float  # AR(1) coefficient of the residual per grid step
    trusted: int  # steps past the data the trend keeps its slope (the horizon asked for); then it fades
    scores: tuple[tuple[str, float], ...] = ()  # backtest MAE of the best candidates, chosen first
    # The residual has a unit root: its forecast is its current level (:func:`residual_level`), carried on
    # undiminished, rather than its last value decaying as its AR(1) with ``phi``.
    persistent: bool = False
    # What decided it: the unit-root statistic and its 5 % critical value (None: not tested, as asked).
    unit_root: tuple[float, float] | None = None
    # A persistent residual's drift per grid step over the last ``trusted`` steps, where it is significant
    # (:func:`residual_drift`; 0: none), or its current slope where its steps have a unit root too
    # (:func:`residual_slope`): carried on past the data with the trend's fading (:func:`_faded`).
    drift: float = 0.0
    # For a persistent residual: the unit-root statistic of its steps and its 5 % critical value (None: not
    # tested). Not rejected: the slope persists, and ``drift`` is the current slope.
    slope_unit_root: tuple[float, float] | None = None
    # A decaying residual's AR(2) coefficients where it is a second-order linear ODE (a damped oscillation
    # or two decays, :func:`second_order_fit`), which a model with an augmented dimension to spare starts
    # from (``Config.second_order``); None: it decays as its AR(1) with ``phi``.
    second_order: tuple[float, float] | None = None
    # Each seasonal period tested (days) and its cycle's p-value (:func:`cycle_p_values`): those at or above
    # CYCLE_P were no candidates. Empty: none tested (no period the data span twice, or the periods given).
    cycle_tests: tuple[tuple[float, float], ...] = ()

    @property
    def periods(self) -> tuple[float, ...]:
        return tuple(sorted({p for part in self.parts for p in part.periods}))

    @property
    def slope_persists(self) -> bool:
        """Whether the departures' steps have a unit root too, so that their current slope carries on."""
        return self.slope_unit_root is not None and self.slope_unit_root[0] > self.slope_unit_root[1]

    def describe(self) -> str:
        return (self.parts[0].describe() + (", log scale" if self.transform == "log" else "")
                + (", departures from it persist" if self.persistent else "")
                + (" and so does their slope" if self.slope_persists
                   else " and drift" if self.drift else ""))

    def drift_ahead(self, t: np.ndarray) -> np.ndarray:
        """The drift's contribution at grid positions ``t`` past the data (0 up to the last fitted step)."""
        ahead = _faded(np.asarray(t, np.float64), self.fitted_steps, self.trusted) - (self.fitted_steps - 1)
        return self.drift * np.maximum(ahead, 0.0)

    def mu(self, t: np.ndarray, epoch_days: float, step_days: float) -> np.ndarray:
        return np.mean([p.mu(t, self.fitted_steps, epoch_days, step_days, self.trusted) for p in self.parts],
                       axis=0)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["scores"] = [list(s) for s in self.scores]
        d["cycle_tests"] = [list(c) for c in self.cycle_tests]
        return d

    @classmethod
    def from_json(cls, d: dict) -> ColumnStructure:
        d = dict(d)
        d["parts"] = tuple(Part(p["trend"], tuple(p["periods"]), float(p["half_life"]), tuple(p["coef"]))
                           for p in d["parts"])
        d["scores"] = tuple((str(a), float(b)) for a, b in d.get("scores", ()))
        d["cycle_tests"] = tuple((float(a), float(b)) for a, b in d.get("cycle_tests", ()))
        for key in ("unit_root", "slope_unit_root", "second_order"):
            if d.get(key) is not None:
                d[key] = tuple(float(x) for x in d[key])
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class Structure:
    """The closed-form part of every column (see the module docstring)."""

    columns: tuple[ColumnStructure, ...]
    step_days: float
    epoch_days: float

    def mu(self, t: np.ndarray) -> np.ndarray:
        """``mu(t)`` (standardised units), shape (len(t), n), at grid positions ``t`` (may be fractional)."""
        t = np.asarray(t, dtype=np.float64)
        return np.stack([c.mu(t, self.epoch_days, self.step_days) for c in self.columns], axis=1)

    def to_standard(self, values: np.ndarray) -> np.ndarray:
        """Transformed and standardised values (T, n) (NaN stays NaN; log of a non-positive value is NaN)."""
        out = np.empty_like(values, dtype=np.float64)
        for j, c in enumerate(self.columns):
            v = values[:, j].astype(np.float64)
            if c.transform == "log":
                with np.errstate(invalid="ignore", divide="ignore"):
                    v = np.where(v > 0, np.log(np.where(v > 0, v, 1.0)), np.nan)
            out[:, j] = (v - c.mean) / c.std
        return out

    def from_standard(self, z: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_standard`: values in the columns' own units."""
        out = np.empty_like(z, dtype=np.float64)
        for j, c in enumerate(self.columns):
            v = z[..., j] * c.std + c.mean
            out[..., j] = np.exp(np.clip(v, -700, 700)) if c.transform == "log" else v
        return out

    def refitted(self, y: np.ndarray, steps: int) -> Structure:
        """This structure (each column's transform, scaling, trend, cycles and weighting, as chosen) with its
        coefficients fitted to the first ``steps`` grid rows of ``y`` (T, n) only (values in the columns'
        own units, NaN where unobserved): the structure a forecast from step ``steps`` would have had.

        The model's held-out tail is judged on residuals after this structure, so that they are out of
        sample there, as a forecast's are: after the structure fitted to all the data (recent rows weighted
        most), the tail's residuals are the fit's own, small, and a model that forecasts them back to zero
        (the closed-form start) looks better there than it will be past the data.

        A part with fewer observations before ``steps`` than coefficients (a column that starts late) keeps
        its coefficients."""
        z = self.to_standard(y[:steps])
        columns = []
        for j, c in enumerate(self.columns):
            parts = []
            for p in c.parts:
                cols = _columns(p.trend, p.periods, p.periods, self.step_days)
                if np.isfinite(z[:, j]).sum() < len(cols):
                    parts.append(p)
                    continue
                basis = _bases(steps, [], self.epoch_days, self.step_days, p.periods)[steps]
                coef = _Normal(z[:, j], steps, basis, p.half_life).fit(cols)[0]
                parts.append(dataclasses.replace(p, coef=tuple(float(x) for x in coef)))
            columns.append(dataclasses.replace(c, parts=tuple(parts), fitted_steps=steps))
        return dataclasses.replace(self, columns=tuple(columns))

    @property
    def periods(self) -> tuple[float, ...]:
        """Every seasonal period used by some column (the vector field sees each one's phase)."""
        return tuple(sorted({p for c in self.columns for p in c.periods}))

    def to_json(self) -> dict:
        return {"columns": [c.to_json() for c in self.columns], "step_days": self.step_days,
                "epoch_days": self.epoch_days}

    @classmethod
    def from_json(cls, d: dict) -> Structure:
        return cls(tuple(ColumnStructure.from_json(c) for c in d["columns"]), float(d["step_days"]),
                   float(d["epoch_days"]))


def _ar1(r: np.ndarray) -> float:
    """Least-squares AR(1) coefficient of a residual on the grid (NaN in gaps), clipped to [0, 0.999]."""
    a, b = r[1:], r[:-1]
    ok = np.isfinite(a) & np.isfinite(b)
    den = float(np.sum(b[ok] ** 2))
    if den <= 0:
        return 0.0
    return float(np.clip(np.sum(a[ok] * b[ok]) / den, 0.0, SLOWEST))


def second_order_roots(coef: tuple[float, float]) -> np.ndarray:
    """The roots ``z`` of ``z^2 - a1 z - a2`` for an AR(2) ``coef = (a1, a2)``: a complex pair, or two real
    roots with zero imaginary parts."""
    z = np.roots([1.0, -coef[0], -coef[1]]).astype(np.complex128)
    return np.where(np.abs(z.imag) < 1e-12, z.real + 0j, z)


def second_order_fit(r: np.ndarray) -> tuple[float, float] | None:
    """The least-squares AR(2) coefficients ``(a1, a2)`` of a residual on the grid (NaN in gaps),

        r(t) = a1 r(t-1) + a2 r(t-2) + e(t),

    where they describe a second-order linear ODE: the roots ``z`` of ``z^2 - a1 z - a2`` are a complex pair
    (a damped oscillation, as the lynx's cycle of about ten years) or two positive reals (a fast and a slow
    decay, as El Nino's departures), each of modulus in ``[exp(-2), 0.999]`` (the AR(1) coefficient's
    range), and distinct; else None (the residual decays as its AR(1)). A complex pair of larger modulus (a
    cycle that does not fade, or grows) keeps its period with the modulus clipped to 0.999. A negative real
    root alternates sign every step, which no ODE does; a root near zero adds nothing to the AR(1)."""
    r = np.asarray(r, dtype=np.float64)
    ok = np.isfinite(r[2:]) & np.isfinite(r[1:-1]) & np.isfinite(r[:-2])
    x = np.stack([r[1:-1][ok], r[:-2][ok]], axis=1)
    if ok.sum() < 8 or np.linalg.matrix_rank(x) < 2:
        return None
    a1, a2 = (float(v) for v in np.linalg.lstsq(x, r[2:][ok], rcond=None)[0])
    z = second_order_roots((a1, a2))
    if z[0].imag and abs(z[0]) > SLOWEST:
        # A cycle that does not fade (a sine's roots lie on the unit circle): its period kept, its modulus
        # clipped to the AR(1) coefficient's bound, as _ar1 clips phi.
        a1, a2 = 2 * SLOWEST * math.cos(np.angle(z[0])), -(SLOWEST**2)
        z = second_order_roots((a1, a2))
    if not z[0].imag and (np.any(z.real <= 0) or abs(z[0] - z[1]) < 1e-3):
        return None  # a sign flip every step, or a repeated root
    if np.any(np.abs(z) < FASTEST) or np.any(np.abs(z) > SLOWEST + 1e-12):
        return None
    return a1, a2


def second_order_ahead(previous: float, last: float, coef: tuple[float, float], s: np.ndarray) -> np.ndarray:
    """The AR(2) ``coef``'s forecast ``s`` steps (may be fractional) after a residual's ``last`` value, with
    ``previous`` the one before it: ``r(s) = Re(c1 z1^s + c2 z2^s)`` over the roots ``z`` (the solution of the
    second-order linear ODE through both values, :func:`second_order_fit`)."""
    z = second_order_roots(coef)
    # c1 + c2 = last, c1 / z1 + c2 / z2 = previous.
    c = np.linalg.solve(np.array([[1.0, 1.0], [1.0 / z[0], 1.0 / z[1]]]), np.array([last, previous], complex))
    s = np.asarray(s, dtype=np.float64)
    return np.real(c[0] * z[0] ** s + c[1] * z[1] ** s)


def second_order_words(coef: tuple[float, float]) -> str:
    """What an AR(2) of :func:`second_order_fit` does, in words: a damped cycle (its period in steps and how
    much of its size each step keeps) or two decays (their half-lives in steps)."""
    z = second_order_roots(coef)
    if z[0].imag:
        rho, theta = float(abs(z[0])), float(abs(np.angle(z[0])))
        return f"a damped cycle of {2 * math.pi / theta:.3g} steps (each step keeps {rho:.3g} of its size)"
    fast, slow = sorted(float(v) for v in z.real)
    return (f"a fast and a slow decay (half-lives {math.log(0.5) / math.log(fast):.3g} and "
            f"{math.log(0.5) / math.log(slow):.3g} steps)")


def _adf_statistic(r: np.ndarray) -> float:
    """The augmented Dickey-Fuller statistic of ``r``: the t-ratio of ``gamma`` in the least-squares
    regression

        r(t) - r(t-1) = a + gamma r(t-1) + sum_{i=1..p} d_i (r(t-i) - r(t-i-1)) + e(t)

    with ``p = floor(n^(1/3))`` lagged differences (Said & Dickey, 1984); NaN if it has fewer than
    :data:`UNIT_ROOT_ROWS` rows. Gaps (NaN) are closed, the observed values taken in order: data that skip
    weekends or holidays would otherwise leave no row with all its terms observed. Strongly negative: ``r``
    reverts to its mean; near zero: it wanders as a random walk does."""
    r = r[np.isfinite(r)]
    n = len(r)
    p = int(np.cbrt(n))
    d = np.diff(r)
    rows = n - 1 - p
    if rows < UNIT_ROOT_ROWS:
        return math.nan
    x = np.column_stack([np.ones(rows), r[p:-1]] + [d[p - i : n - 1 - i] for i in range(1, p + 1)])
    y = d[p:]
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    sigma2 = float(resid @ resid) / max(len(y) - x.shape[1], 1)
    se = math.sqrt(max(float(sigma2 * np.linalg.pinv(x.T @ x)[1, 1]), 0.0))
    return float(coef[1] / se) if se > 0 else math.nan


def unit_root_test(r: np.ndarray, trend: bool = True) -> tuple[float, float]:
    """The augmented Dickey-Fuller statistic of the residual ``r`` around a fitted trend (NaN in gaps,
    :func:`_adf_statistic`) and its 5 % critical value: MacKinnon's (2010) response surface for a regression
    with a constant and a linear trend (the residual's trend was fitted), -3.41 for long series, lower for
    short ones; with ``trend=False``, for a constant only (-2.86: the steps of a residual, whose trend was
    taken out with its level). A statistic above the critical value does not reject a unit root: as
    AutoARIMA chooses its differencing by a unit-root test before it chooses the rest, this decides once
    per column whether departures from the structure persist or decay, and for those that persist, whether
    their steps wander too (a second difference), so that their slope persists (NaN: too few rows to test;
    they decay)."""
    n = max(int(np.isfinite(r).sum()), 1)
    if not trend:
        return _adf_statistic(r), -2.86154 - 2.8903 / n - 4.234 / n**2
    return _adf_statistic(r), -3.41049 - 4.394 / n - 9.036 / n**2


def cycle_p_values(z: np.ndarray, basis: np.ndarray, periods: tuple[float, ...], step_days: float, phi: float
                   ) -> dict[float, float]:
    """The p-value of each seasonal period's Fourier terms in the regression of the column ``z`` (T,) (NaN
    where unobserved) on a linear trend and every period of ``periods`` (columns of ``basis`` (T, K), the
    full basis of :func:`_bases`: the unit-root test's reference), with errors that follow an AR(1) with
    coefficient ``phi``.

    Generalised least squares by prewhitening (Cochrane & Orcutt, 1949): ``z(t) - phi z(t-1)`` is regressed
    on ``X(t) - phi X(t-1)``, whose errors are then white, and each period's block of harmonics is tested
    by the F-test of the regression without it against the one with every period. The backtest passes the
    AR(1) coefficient of the reference's residual: for a random walk it is near 1, and the steps are
    regressed on the cycles' steps. Its wandering would swamp a cycle in its levels
    (tests/test_forecast_structure.py: a cycle twice a step's size, found every time in the steps and three
    times in four in the levels), and plain least squares in levels would take slow noise for a long cycle
    (a yearly one in daily data). Estimated rather than set to 1 where the unit-root test keeps the
    departures, it also keeps a smooth yearly cycle in noisy daily data whose curving trend the test took
    for a random walk: their steps are mostly the day-to-day noise, in which the cycle's small steps are
    lost. Estimated with the cycles in the regression, ``phi`` comes out low where they absorb slow noise,
    and the test then finds a yearly cycle in a third of daily series without one (BENCHMARKS.md): it errs
    towards keeping a candidate, which the backtest judges."""
    ok = np.isfinite(z[1:]) & np.isfinite(z[:-1])
    y = (z[1:] - phi * z[:-1])[ok]
    x = (basis[1:] - phi * basis[:-1])[ok]
    # Normal equations once (einsum, not a multi-threaded BLAS: see _Normal); each regression is a sub-block.
    gram, rhs, yy = np.einsum("ti,tj->ij", x, x), x.T @ y, float(y @ y)

    def rss_rank(cols: np.ndarray) -> tuple[float, int]:
        g = gram[cols[:, None], cols]
        # pinv: with phi = 1 the constant's column is zero (a step has no level), so g may be singular.
        rss = yy - float(rhs[cols] @ np.linalg.pinv(g, hermitian=True) @ rhs[cols])
        return max(rss, 0.0), int(np.linalg.matrix_rank(g, hermitian=True))

    full = _columns("linear", periods, periods, step_days)
    rss, rank = rss_rank(full)
    out = {}
    for p in periods:
        others = tuple(q for q in periods if q != p)
        rss_without, rank_without = rss_rank(_columns("linear", others, periods, step_days))
        q, dof = rank - rank_without, len(y) - rank
        if q <= 0 or dof <= 0 or rss <= 0:
            out[p] = 0.0 if rss <= 0 < rss_without else 1.0
            continue
        stat = ((rss_without - rss) / q) / (rss / dof)
        out[p] = f_survival(stat, q, dof)
    return out


def fisher_g_survival(g: float, m: int) -> float:
    """``P(G > g)`` for Fisher's (1929) statistic ``G``, the largest of ``m`` periodogram ordinates of white
    noise over their sum (the test for a hidden periodicity at an unknown frequency), by the first term of
    its exact null distribution, ``m (1 - g)^(m-1)``: an upper bound that the alternating series' next
    term, about half its square, separates from the exact value, so it is exact enough wherever the test
    rejects (a p-value of 0.05 is off by about 0.001)."""
    if m < 2 or g <= 0:
        return 1.0
    if g >= 1:
        return 0.0
    return float(min(1.0, math.exp(math.log(m) + (m - 1) * math.log1p(-g))))


def free_cycle(r: np.ndarray, step_days: float, phi: float) -> tuple[float, float] | None:
    """The period (days) of the strongest cycle in a residual ``r`` (T,) (NaN in gaps) that no calendar
    period explains, and its p-value: a cycle of the data's own length, as the lynx's ten years or the
    sunspots' eleven, which no calendar names.

    The residual is prewhitened by its AR(1) ``phi`` (as :func:`cycle_p_values` does: a slow wander would
    otherwise pass for a long cycle), and the largest ordinate of its periodogram over the Fourier
    frequencies is tested by Fisher's g test (:func:`fisher_g_survival`), which allows for having looked
    at every frequency. The period is then refined between the neighbouring Fourier frequencies (the
    largest ordinate of the discrete-time Fourier transform on a grid of 64 there). Only periods the data
    cover :data:`FREE_CYCLES_SEEN` times or more, of :data:`FREE_SHORTEST` steps or more and not within 5%
    of a calendar period or one of its harmonics, are candidates; None where there is none or the residual
    is short.

    The test finds a cycle that keeps its period and phase, but also a stochastic one, whose phase drifts
    as an AR(2)'s with complex roots does (96.5% of 200 such series of 120 steps, modulus 0.87, showed
    one): the damped cycle the residual's second-order start carries (:func:`second_order_fit`). So where
    the residual's AR(2) is a damped cycle within 25% of the period found, the cycle must also keep its
    phase through the data's thirds (:func:`_keeps_phase`; about one such series in six passes), and
    :func:`choose_structure` judges a free cycle that wins its backtest once more, against the same
    structure without it, both forecasting their residuals as the model starts to (the backtest's AR(1)
    decay favours any cycle over none)."""
    e = np.asarray(r[1:] - phi * r[:-1], dtype=np.float64)
    e = np.where(np.isfinite(e), e, 0.0)
    m = len(e)
    if m < 8 * FREE_CYCLES_SEEN or not np.any(e):
        return None
    e = e - e.mean()
    power = np.abs(np.fft.rfft(e)) ** 2
    k = np.arange(len(power))
    fourier = (k >= 1) & (2 * k < m)  # Fourier frequencies 1..floor((m-1)/2): no mean, no Nyquist
    steps = np.where(k > 0, m / np.maximum(k, 1), np.inf)
    days = steps * step_days
    calendar = _near_calendar(days)
    allowed = fourier & (steps >= FREE_SHORTEST) & (steps * FREE_CYCLES_SEEN <= m) & ~calendar
    if not allowed.any() or power[fourier].sum() <= 0:
        return None
    peak = int(np.argmax(np.where(allowed, power, -1.0)))
    p_value = fisher_g_survival(float(power[peak] / power[fourier].sum()), int(fourier.sum()))
    if p_value >= CYCLE_P:
        return None
    freq = np.linspace(peak - 1, peak + 1, 65)[1:-1] / m  # cycles per step
    t = np.arange(m)
    dtft = np.abs(np.exp(-2j * math.pi * freq[:, None] * t[None, :]) @ e) ** 2
    period = float(step_days / freq[int(np.argmax(dtft))])
    if _near_calendar(period) or not FREE_SHORTEST * step_days <= period <= m * step_days / FREE_CYCLES_SEEN:
        return None
    ar2 = second_order_fit(r)
    if ar2 is not None and (z := second_order_roots(ar2))[0].imag:
        steps_ar2 = 2 * math.pi / abs(np.angle(z[0]))
        if abs(steps_ar2 * step_days / period - 1) < 0.25 and not _keeps_phase(r, period / step_days):
            return None  # the AR(2)'s own damped cycle, whose phase drifts: the second-order start's
    return period, p_value


def _keeps_phase(r: np.ndarray, period_steps: float, parts: int = PHASE_PARTS) -> bool:
    """Whether a cycle of ``period_steps`` keeps its phase through ``r`` (NaN in gaps): fitted (a sine and a
    cosine) on each of ``parts`` consecutive parts of the data, it lowers every other part's sum of squares,
    ``2 c_j . c_i > |c_i|^2`` for every pair (coefficient pairs ``c``). A fixed cycle in noise passes; a
    stochastic one, whose phase drifts as an AR(2)'s with complex roots does, seldom does over parts of a
    few cycles each (tests/test_forecast_structure.py)."""
    t = np.arange(len(r), dtype=np.float64)
    angle = 2 * math.pi * t / period_steps
    x = np.stack([np.ones_like(t), np.sin(angle), np.cos(angle)], axis=1)
    coefs = []
    for part in np.array_split(np.flatnonzero(np.isfinite(r)), parts):
        if len(part) < 4:
            return False
        coefs.append(np.linalg.lstsq(x[part], r[part], rcond=None)[0][1:])
    return all(2 * cj @ ci > ci @ ci for i, ci in enumerate(coefs) for j, cj in enumerate(coefs) if i != j)


def _near_calendar(period_days: np.ndarray | float) -> np.ndarray:
    """Whether each period lies within 5% of a calendar period or one of the harmonics its cycle is fitted
    with (:func:`harmonics_for`'s defaults): such a cycle is the calendar one's to fit."""
    harmonic = np.array([c / h for c, count in ((DAY, 12), (WEEK, 3), (YEAR, 10))
                         for h in range(1, count + 1)])
    p = np.asarray(period_days, dtype=np.float64)[..., None]
    return np.any(np.abs(p - harmonic) < 0.05 * harmonic, axis=-1)


def f_survival(stat: float, d1: float, d2: float) -> float:
    """``P(F > stat)`` for an F distribution with ``d1`` and ``d2`` degrees of freedom: the regularised
    incomplete beta function ``I_x(d2 / 2, d1 / 2)`` at ``x = d2 / (d2 + d1 stat)``, by its continued
    fraction (DLMF 8.17.22, evaluated by the modified Lentz method) where that converges fast, and by the
    symmetry ``I_x(a, b) = 1 - I_(1-x)(b, a)`` elsewhere. (scipy.stats would cost a cold fit 0.6 s of
    imports for this one number.)"""
    if stat <= 0:
        return 1.0
    x, a, b = d2 / (d2 + d1 * stat), d2 / 2.0, d1 / 2.0
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (a * math.log(x) + b * math.log1p(-x)
                 - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction ``1 / (1 + d1 / (1 + d2 / (1 + ...)))`` of the incomplete beta function,
    with ``d(2m) = m (b - m) x / ((a + 2m - 1)(a + 2m))`` and
    ``d(2m+1) = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))``, by the modified Lentz method."""
    tiny = 1e-300

    def guard(v: float) -> float:
        return v if abs(v) > tiny else tiny

    c, d = 1.0, 1.0 / guard(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 1000):
        for coefficient in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 / guard(1.0 + coefficient * d)
            c = guard(1.0 + coefficient / c)
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def level_discount(r: np.ndarray) -> np.ndarray:
    """The discount ``beta`` (C,) of the local level model ``r(t) = l(t) + e(t)``, ``l(t) = l(t-1) + n(t)``
    (white noises ``e`` and ``n``), for each row of ``r`` (C, L) (NaN in gaps).

    The model's differences are an MA(1), ``r(t) - r(t-1) = a(t) - beta a(t-1)``, whose lag-one
    autocorrelation ``rho = -beta / (1 + beta^2)`` (moments of the observed differences) gives ``beta``, the
    invertible root (Harvey, 1989). A pure random walk (``rho = 0``) gives 0; the noisier the steps around the
    level, the larger, up to :data:`LEVEL_DISCOUNT`."""
    d = r[:, 1:] - r[:, :-1]
    num, den = np.nansum(d[:, 1:] * d[:, :-1], axis=1), np.nansum(d**2, axis=1)
    rho = np.clip(np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0), -0.5, 0.0)
    safe = np.where(rho < 0, rho, -1.0)
    beta = np.where(rho < 0, (1 - np.sqrt(np.maximum(1 - 4 * safe**2, 0.0))) / (-2 * safe), 0.0)
    return np.minimum(beta, LEVEL_DISCOUNT)


def residual_level(r: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """The current level of each row of ``r`` (C, L) (NaN off ``observed`` (L,)), a residual that wanders:
    the local level model's forecast (simple exponential smoothing), the exponentially weighted mean of the
    observed values ``sum_k beta^k r(T-k) / sum_k beta^k`` with ``beta`` from :func:`level_discount` (0: the
    last value)."""
    beta = level_discount(r)
    seen = np.flatnonzero(observed)
    w = beta[:, None] ** (seen[-1] - seen)[None, :].astype(np.float64)
    return np.sum(w * r[:, seen], axis=1) / np.sum(w, axis=1)


def state_period(periods: Sequence[float], step_days: float) -> int:
    """The cycle whose changes a persistent residual carries (:func:`residual_cycle`), in grid steps: the
    shortest calendar cycle of ``periods`` that is a whole number of steps (a year of months or quarters, a
    day of hours, a week of days); 0 where none is."""
    steps = [p / step_days for p in periods if p in CALENDAR]
    return min((round(n) for n in steps if abs(n - round(n)) < 1e-6 and round(n) >= 2), default=0)


def residual_cycle(r: np.ndarray, period: int, first: int = 0) -> np.ndarray:
    """The cycle a persistent residual ``r`` (grid steps ``first, first + 1, ...``; NaN in gaps) has now,
    (period,) indexed by grid step modulo ``period``; zeros where fewer than :data:`STATE_CYCLES` cycles
    show it.

    The structure's cycle has one fixed shape (recent data weighted at most). Where the series' own cycle
    changes from year to year, as seasonal ARIMA's seasonal difference and Holt-Winters' seasonal state
    allow, the residual keeps a cycle of its own. Its departures from their centred moving average over one
    cycle, read at one phase cycle after cycle, are then a local level: each phase's current value is their
    exponentially weighted mean, with one discount for every phase, the one of :data:`STATE_DISCOUNTS` whose
    forecasts of each cycle from the ones before have the least squared error (as exponential smoothing
    fits its parameters). Where the cycle does not change, the departures at a phase are noise, the
    discount is large and the smoothed values near zero; where it changes as a random walk would, the last
    cycle's departures carry on."""
    out = np.zeros(period)
    n = len(r)
    if period < 2 or n < STATE_CYCLES * period + period:
        return out
    weights = np.ones(period + 1 - period % 2)
    if period % 2 == 0:  # the 2 x period moving average centres an even cycle
        weights[0] = weights[-1] = 0.5
    weights /= weights.sum()
    half = len(weights) // 2
    departure = np.full(n, np.nan)
    departure[half : n - half] = r[half : n - half] - np.convolve(r, weights, mode="valid")  # NaN spreads
    steps = first + np.arange(n)
    cycles = steps // period - steps[0] // period
    table = np.full((cycles[-1] + 1, period), np.nan)  # cycle x phase
    table[cycles, steps % period] = departure
    table = table[np.isfinite(table).any(axis=1)]
    if len(table) < STATE_CYCLES:
        return out
    # The smoothing as a weighted mean, sum_k beta^k x(c - k) / sum_k beta^k, so that the first cycles
    # weigh no more than the discount gives them.
    beta = STATE_DISCOUNTS[:, None]
    total, weight = np.zeros((len(STATE_DISCOUNTS), period)), np.zeros((len(STATE_DISCOUNTS), period))
    sse = np.zeros(len(STATE_DISCOUNTS))
    for row in table:  # each cycle: forecast by the smoothing so far, then smoothed in
        seen = np.isfinite(row)
        known = seen & (weight > 0)
        sse += np.sum(np.where(known, row - total / np.where(known, weight, 1.0), 0.0) ** 2, axis=1)
        total = np.where(seen, beta * total + row, total)  # (NaN where unseen, and not taken)
        weight = np.where(seen, beta * weight + 1.0, weight)
    best = int(np.argmin(sse))
    out = np.where(weight[best] > 0, total[best] / np.where(weight[best] > 0, weight[best], 1.0), 0.0)
    return out - out.mean()


def persistent_ahead(r: np.ndarray, period: int, first: int, ahead: np.ndarray) -> np.ndarray:
    """A persistent residual ``r`` (grid steps ``first, ...``; NaN in gaps) forecast at grid steps
    ``ahead``: the current level of the residual without its own cycle (:func:`residual_level`), plus that
    cycle (:func:`residual_cycle`; none where ``period`` is 0)."""
    observed = np.isfinite(r)
    if not period:
        return np.full(len(ahead), residual_level(r[None], observed)[0])
    cycle = residual_cycle(r, period, first)
    level = residual_level((r - cycle[(first + np.arange(len(r))) % period])[None], observed)[0]
    return level + cycle[np.asarray(ahead, dtype=np.int64) % period]


def residual_slope(r: np.ndarray) -> float:
    """The current slope of a residual whose steps wander (NaN in gaps): the local level of its recent
    steps (:func:`residual_level` of ``r(t) - r(t-1)`` over the last :data:`RECENT_ROWS` rows), as
    Holt's linear method smooths its slope; 0 without two observed steps in a row.

    Where the steps themselves have a unit root (a second difference, as ARIMA takes for a series whose
    growth rate wanders), the slope a residual has now is the best guess of the slope it keeps: a
    population that grows more slowly than a decade ago goes on growing at today's rate."""
    d = np.diff(r[-RECENT_ROWS:])
    ok = np.isfinite(d)
    if not ok.any():
        return 0.0
    return float(residual_level(d[None], ok)[0])


def residual_drift(r: np.ndarray, steps: int) -> float:
    """The drift per step of a residual that wanders (NaN in gaps): the mean of its step-to-step changes
    over the last ``steps`` steps, where it is significant (its t-ratio, the mean over its standard error,
    at least :data:`DRIFT_T`), else 0.

    A random walk's steps average to zero; a persistent residual whose recent steps do not is drifting away
    from the structure (a trend that changed since the structure was fitted, as a recovery after a
    recession does), and carrying its level on flat would lag further behind at every step ahead. Only
    clear drifts are carried: the forecast suites' persistent series whose steps merely wander (stock
    prices, the beer, the woollen yarn) lose accuracy when every drift is (BENCHMARKS.md).

    The standard error allows for steps that follow each other (a recession's run of falls): ``sd / sqrt(n)``
    times ``sqrt((1 + rho) / (1 - rho))``, the variance of the mean of an AR(1) of lag-one correlation
    ``rho``, estimated on the residual's steps over its last :data:`RECENT_ROWS` rows (the window alone is too
    short to say) and taken as 0 where negative. Without it, steps with ``rho = 0.8`` and no drift at all
    read as a drift about half the time (tests/test_forecast_structure.py), and a long forecast carries
    that drift on for years."""
    d = np.diff(r[-(steps + 1):])
    d = d[np.isfinite(d)]
    if len(d) < 3:
        return 0.0
    sd = float(np.std(d, ddof=1))
    mean = float(np.mean(d))
    history = np.diff(r[-RECENT_ROWS:])
    rho = _ar1(history - np.nanmean(history))
    se = sd / math.sqrt(len(d)) * math.sqrt((1 + rho) / (1 - rho))
    return mean if se > 0 and abs(mean) / se >= DRIFT_T else 0.0


def _bases(T: int, cuts: Sequence[int], epoch_days: float, step_days: float, periods: tuple[float, ...]
           ) -> dict[int, np.ndarray]:
    """``{cut: (T, K) basis}`` for each of ``cuts`` and ``T``: the local trend scaled to ``cut`` fitted
    steps, then every seasonal column of ``periods`` (the same for every cut: made once); candidates use
    subsets of its columns."""
    t = np.arange(T, dtype=np.float64)
    season = _season_basis(epoch_days + step_days * t, periods, step_days)
    return {cut: np.concatenate([_trend_basis(t, cut, "local"), season], axis=1) for cut in [*cuts, T]}


def _columns(trend: str, periods: tuple[float, ...], all_periods: tuple[float, ...], step_days: float
             ) -> np.ndarray:
    idx = list(range(TRENDS.index(trend) + 1))
    start = len(TRENDS)
    for p in all_periods:
        k = 2 * harmonics_for(p, step_days)
        if p in periods:
            idx += range(start, start + k)
        start += k
    return np.asarray(idx)


@dataclasses.dataclass(frozen=True)
class _Candidate:
    transform: str
    trend: str
    periods: tuple[float, ...]
    half_life: float  # steps; 0: every row weighs the same
    persistent: bool = False  # the residual's level carries on, rather than its last value decaying

    @property
    def name(self) -> str:
        return _candidate_name(self.transform, self.trend, self.periods, self.half_life, self.persistent)


@functools.lru_cache(maxsize=4096)
def _candidate_name(transform: str, trend: str, periods: tuple[float, ...], half_life: float,
                    persistent: bool = False) -> str:
    """A candidate's name in the scores; one string object per name, shared by every series' scores."""
    return "+".join([trend, *(period_name(p) for p in periods)]
                    + (["log"] if transform == "log" else [])
                    + ([f"recent(half-life {half_life:g})"] if half_life else [])
                    + (["persistent"] if persistent else []))


def _half_lives(periods: tuple[float, ...], step_days: float, horizon: int, steps: int) -> list[float]:
    """Recency weightings tried with a candidate (steps; 0: none): one, four and sixteen times its longest
    cycle (or the horizon, without a cycle), those shorter than the data. A short half-life lets the level,
    trend and cycle shapes follow the present, as the smoothing of exponential smoothing does."""
    unit = max(round(max(periods) / step_days), 1) if periods else max(horizon, 1)
    return [0.0] + [float(unit * m) for m in (16, 4, 1) if unit * m < steps]  # simplest (longest) first


def _candidates(periods: tuple[float, ...], transforms: dict[str, bool], step_days: float, horizon: int,
                exact: bool, steps: int) -> list[_Candidate]:
    """Every transform x trend x subset of the periods (only all of them if ``exact``) x weighting,
    simplest first; ``transforms`` maps each transform to whether its departures persist.

    A free cycle (:func:`free_cycle`) is a candidate only on a scale whose departures decay: a series that
    wanders as a random walk does (an unemployment rate's "business cycle") does not keep to a cycle of
    fixed length and phase, as the calendar's cycles are kept to."""
    subsets = [s for r in range(len(periods) + 1) for s in itertools.combinations(periods, r)]
    if exact:
        subsets = [tuple(periods)]
    out = []
    for transform, persistent in transforms.items():
        for trend in TRENDS:
            for s in subsets:
                if persistent and not exact and any(p not in CALENDAR for p in s):
                    continue
                for half_life in _half_lives(s, step_days, horizon, steps):
                    out.append(_Candidate(transform, trend, s, half_life, persistent))
    return out


def _transformed(v: np.ndarray, transform: str) -> tuple[np.ndarray, float, float]:
    obs = np.isfinite(v)
    g = np.log(np.where(obs & (v > 0), v, 1.0)) if transform == "log" else v
    mean, std = float(np.mean(g[obs])), float(np.std(g[obs])) or 1.0
    return np.where(obs, (g - mean) / std, np.nan), mean, std


def _weights(t: np.ndarray, end: int, half_life: float) -> np.ndarray:
    return np.exp(-np.log(2.0) * (end - 1 - t) / half_life) if half_life > 0 else np.ones_like(t)


class _Normal:
    """Weighted normal equations of the full basis on ``z[:cut]``; a candidate solves a sub-block."""

    def __init__(self, z: np.ndarray, cut: int, basis: np.ndarray, half_life: float):
        obs = np.isfinite(z[:cut])
        self.t = np.flatnonzero(obs)
        x = basis[:cut][obs]
        xw = x * _weights(self.t.astype(np.float64), cut, half_life)[:, None]
        # einsum, not BLAS: a multi-threaded BLAS on a busy 2-core machine is 30x slower for this shape.
        self.gram, self.rhs = np.einsum("ti,tj->ij", xw, x), xw.T @ z[:cut][obs]
        self.z, self.cut, self.basis = z, cut, basis

    def fit(self, cols: np.ndarray) -> tuple[np.ndarray, float, float, int]:
        """Ridge coefficients (no penalty on the trend), AR(1) phi, last residual and its step."""
        penalty = np.where(cols >= len(TRENDS), RIDGE, 0.0)
        g = self.gram[cols[:, None], cols] + np.diag(penalty) + 1e-9 * np.eye(len(cols))
        coef = np.linalg.solve(g, self.rhs[cols])
        # phi from the recent residuals only: it describes the present, and long series stay cheap.
        start = max(0, self.cut - RECENT_ROWS)
        resid = self.z[start : self.cut] - self.basis[start : self.cut][:, cols] @ coef
        return coef, _ar1(resid), float(resid[self.t[-1] - start]), int(self.t[-1])


GRAM_BLOCK = 64  # rows per block of the backtest's Gram products (see _gram)
WEIGHTED_ELEMENTS = 2**22  # at most this many weighted basis values at once (32 MB) in the backtest


def _gram(xw: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``xw[h]' x`` for every ``h`` (H, K, K): the sum over blocks of :data:`GRAM_BLOCK` rows of the blocks'
    products, all in one batched matmul.

    Small blocks keep each BLAS product on one thread: a multi-threaded BLAS on a busy 2-core machine is
    tens of times slower for these shapes, and einsum (one thread, no BLAS) several times slower than
    single-threaded BLAS."""
    H, n, K = xw.shape
    blocks = -(-n // GRAM_BLOCK)
    pad = blocks * GRAM_BLOCK - n  # zero rows add nothing
    xw = np.concatenate([xw, np.zeros((H, pad, K))], axis=1).reshape(H, blocks, GRAM_BLOCK, K)
    x = np.concatenate([x, np.zeros((pad, K))]).reshape(blocks, GRAM_BLOCK, K)
    return np.sum(xw.transpose(0, 1, 3, 2) @ x, axis=1)


@dataclasses.dataclass(frozen=True)
class _Origins:
    """The backtest origins of one column: before each ``cut`` every candidate is fitted on the observed
    rows, after it it is judged on the window ``cut, ..., min(cut + h, T) - 1``.

    The candidates' normal equations are sub-blocks of those of the full basis (local trend, scaled to
    ``cut`` fitted steps, then every seasonal column). Per origin ``o`` and half-life ``k`` tried,

        gram[o, k] = X_o' W_ok X_o,    rhs[o, r, k] = X_o' W_ok z_r

    over the observed rows ``X_o`` before the cut, ``W_ok`` their recency weights and ``z_r`` the
    standardised values under transform ``r``. The Gram matrices do not depend on the transform, so they
    are made once for both."""

    half_lives: list[float]  # the weightings tried (index k)
    cuts: list[int]
    bases: list[np.ndarray]  # (T, K) each: the full basis on the whole grid, trend scaled to the cut
    last: np.ndarray  # (O,) the last observed step before each cut (a forecast starts from its residual)
    observations: np.ndarray  # (O,) observed rows before each cut
    gram: np.ndarray  # (O, H, K, K)
    rhs: np.ndarray  # (O, R, H, K)


def _origins(zs: np.ndarray, cuts: list[int], h: int, bases: dict[int, np.ndarray],
             half_lives: list[float]) -> _Origins:
    """The origins at ``cuts`` of a column whose transforms give ``zs`` (R, T) (NaN where unobserved),
    with the normal equations of each half-life. An origin with fewer than four observed rows before it,
    or none in its window, judges no candidate and is left out."""
    R, T = zs.shape
    H, K = len(half_lives), bases[T].shape[1]
    observed = np.isfinite(zs[0])
    kept, last, count, grams, rhss = [], [], [], [], []
    for cut in cuts:
        obs = observed[:cut]
        if obs.sum() < 4 or not observed[cut : cut + h].any():
            continue
        t = np.flatnonzero(obs)
        x = bases[cut][:cut][obs]
        gram, rhs = np.empty((H, K, K)), np.empty((R, H, K))
        group = max(1, WEIGHTED_ELEMENTS // x.size)  # half-lives at once: bounds the weighted copies
        for k in range(0, H, group):
            w = np.stack([_weights(t.astype(np.float64), cut, hl) for hl in half_lives[k : k + group]])
            xw = x[None] * w[:, :, None]
            gram[k : k + group] = _gram(xw, x)
            rhs[:, k : k + group] = np.einsum("hti,rt->rhi", xw, zs[:, :cut][:, obs])
        grams.append(gram)
        rhss.append(rhs)
        kept.append(cut)
        last.append(t[-1])
        count.append(len(t))
    return _Origins(half_lives, kept, [bases[c] for c in kept], np.asarray(last, dtype=np.int64),
                    np.asarray(count, dtype=np.int64), np.asarray(grams).reshape(-1, H, K, K),
                    np.asarray(rhss).reshape(-1, R, H, K))


def _ridge_coefficients(origins: _Origins, used: np.ndarray, transform: np.ndarray, weighting: np.ndarray,
                        judged: np.ndarray) -> np.ndarray:
    """Every candidate's ridge coefficients at every origin, (O, C, K) on the full basis (zero off the
    candidate's columns; zero where the origin does not judge it).

    Candidate ``c`` (basis columns ``S = used[c]``, transform index ``transform[c]``, half-life index
    ``weighting[c]``) solves :meth:`_Normal.fit`'s system on the sub-block ``S`` of its origin's normal
    equations, ``(G[S, S] + diag(ridge on the seasonal columns) + 1e-9 I) beta = b[S]``. Padded to the full
    basis, with the identity on the rows and columns off ``S`` and a zero right-hand side there, every
    system has the same size and all are solved in one batch. Elimination never mixes the two parts, so
    ``beta[S]`` is the sub-block's solution (up to rounding) and ``beta`` is zero off ``S``."""
    K = origins.gram.shape[-1]
    inside = used[:, :, None] & used[:, None, :]  # (C, K, K)
    g = np.where(inside, origins.gram[:, weighting], 0.0)  # (O, C, K, K)
    diag = np.arange(K)
    penalty = np.where(diag >= len(TRENDS), RIDGE, 0.0)
    g[..., diag, diag] = np.where(used, g[..., diag, diag] + penalty + 1e-9, 1.0)
    g[~judged] = np.eye(K)  # not judged there: any solvable system
    b = np.where(used & judged[..., None], origins.rhs[:, transform, weighting], 0.0)  # (O, C, K)
    return np.linalg.solve(g, b[..., None])[..., 0]


def _ar1_rows(r: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """:func:`_ar1` of each row of ``r`` (C, L), whose NaNs all lie off ``pairs`` (L - 1,): the steps ``i``
    with both ``r[:, i]`` and ``r[:, i + 1]`` observed."""
    a, b = r[:, 1:][:, pairs], r[:, :-1][:, pairs]
    num, den = np.sum(a * b, axis=1), np.sum(b**2, axis=1)
    return np.where(den > 0, np.clip(num / np.where(den > 0, den, 1.0), 0.0, SLOWEST), 0.0)


def _used(shapes: Sequence[tuple[str, tuple[float, ...]]], seasonal: tuple[float, ...], step_days: float,
          K: int) -> np.ndarray:
    """(C, K): which columns of the full basis (local trend, then every period of ``seasonal``) each
    ``(trend, periods)`` uses."""
    used = np.zeros((len(shapes), K), dtype=bool)
    columns: dict[tuple, np.ndarray] = {}
    for i, shape in enumerate(shapes):
        if shape not in columns:
            columns[shape] = _columns(*shape, seasonal, step_days)
        used[i, columns[shape]] = True
    return used


def _forecasts(z: np.ndarray, coef: np.ndarray, transform: np.ndarray, origins: _Origins, h: int,
               persistent: np.ndarray, second_order: bool = False, state: np.ndarray | None = None
               ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per origin ``o``: ``(o, ahead, zf)``, every candidate's standardised forecast ``zf`` (C, len(ahead))
    of the steps ``ahead`` after the cut.

    At an origin, candidate ``c`` (basis columns ``S_c``, transform ``r_c``: its row of ``z``) forecasts
    step ``t`` as

        z(t) = X_t[S_c] beta_c + phi_c^(t - t0) e(t0)      (or + the level of e, if persistent)

    with ``beta_c`` its ridge fit before the cut (``coef[o, c]``, a coefficient vector of the full basis,
    zero off ``S_c``: :func:`_ridge_coefficients`), ``e(t0)`` its residual at the last observed step ``t0``
    and ``phi_c`` the AR(1) coefficient of its recent residuals (as :meth:`_Normal.fit`, one candidate at a
    time); where ``persistent[c]``, the residuals' current level (:func:`residual_level`) carries on
    undiminished. One product gives every candidate's fitted values at an origin. With ``second_order``, a
    decaying residual that is a second-order linear ODE (:func:`second_order_fit`) follows its AR(2) path
    through its last two values instead, as the model's start does. With ``state`` (C,), a persistent
    candidate with ``state[c] > 0`` forecasts its level without its own cycle of that many steps plus that
    cycle (:func:`persistent_ahead`), as the fitted forecaster does."""
    T = z.shape[1]
    observed = np.isfinite(z[0])
    for o, (cut, basis, t0) in enumerate(zip(origins.cuts, origins.bases, origins.last, strict=True)):
        start = max(0, cut - RECENT_ROWS)  # phi from the recent residuals only (as _Normal.fit)
        ahead = np.arange(cut, min(cut + h, T))
        fitted = np.einsum("ck,tk->ct", coef[o], basis[start : ahead[-1] + 1])  # (C, steps)
        resid = z[transform, start:cut] - fitted[:, : cut - start]
        phi = _ar1_rows(resid, observed[start + 1 : cut] & observed[start : cut - 1])
        decaying = resid[:, t0 - start, None] * phi[:, None] ** (ahead - t0)
        for c in np.flatnonzero(~persistent) if second_order and t0 - start >= 1 else ():
            ar2 = second_order_fit(resid[c])
            last = resid[c, t0 - start - 1 : t0 - start + 1]
            if ar2 is not None and np.all(np.isfinite(last)):
                decaying[c] = second_order_ahead(last[0], last[1], ar2, ahead - t0)
        if persistent.any():
            persisting = residual_level(resid, observed[start:cut])[:, None]
            decaying = np.where(persistent[:, None], persisting, decaying)
            for c in np.flatnonzero(persistent & (state > 0)) if state is not None else ():
                decaying[c] = persistent_ahead(resid[c], int(state[c]), start, ahead)
        yield o, ahead, fitted[:, ahead - start] + decaying


def _backtest(v: np.ndarray, zs: dict[str, tuple[np.ndarray, float, float]], candidates: list[_Candidate],
              origins: _Origins, h: int, seasonal: tuple[float, ...], step_days: float,
              second_order: bool = False) -> np.ndarray:
    """Every candidate's backtest score: the mean over the origins of its mean absolute error (in the
    column's units ``v``) on the window after each (forecasts: :func:`_forecasts`); ``inf`` where no origin
    judged it. ``zs``: the standardised values, mean and spread under each transform
    (:func:`_transformed`), in the order of ``origins.rhs``. ``second_order``: see :func:`_forecasts`."""
    C = len(candidates)
    transforms = list(zs)
    transform = np.array([transforms.index(c.transform) for c in candidates])
    weighting = np.array([origins.half_lives.index(c.half_life) for c in candidates])
    z = np.stack([zs[tr][0] for tr in transforms])
    means, stds = np.array([zs[tr][1] for tr in transforms]), np.array([zs[tr][2] for tr in transforms])
    is_log = np.array([c.transform == "log" for c in candidates])
    used = _used([(c.trend, c.periods) for c in candidates], seasonal, step_days, origins.gram.shape[-1])
    # An origin judges the candidates it has enough observations to fit (as many as coefficients).
    judged = origins.observations[:, None] >= used.sum(axis=1)[None, :]
    coef = _ridge_coefficients(origins, used, transform, weighting, judged)
    observed = np.isfinite(v)
    errors = np.zeros((len(origins.cuts), C))
    persistent = np.array([c.persistent for c in candidates])
    state = np.array([state_period(c.periods, step_days) for c in candidates])  # a persistent one's own cycle
    for o, ahead, zf in _forecasts(z, coef, transform, origins, h, persistent, second_order, state):
        pred = zf * stds[transform, None] + means[transform, None]
        pred[is_log] = np.exp(np.clip(pred[is_log], -700, 700))
        ok = observed[ahead]
        errors[o] = np.mean(np.abs(pred[:, ok] - v[ahead][ok]), axis=1)
    count = judged.sum(axis=0)
    total = np.sum(np.where(judged, errors, 0.0), axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), math.inf)


def _free_cycles(y: np.ndarray, basis: np.ndarray, calendar: tuple[float, ...], step_days: float
                 ) -> dict[int, tuple[float, float]]:
    """``{column: (period in days, p-value)}`` of the columns with a free cycle (:func:`free_cycle`) in their
    residual around a linear trend and every calendar cycle (``basis``: the full basis of :func:`_bases` for
    ``calendar``), in their own units."""
    cols = _columns("linear", calendar, calendar, step_days)
    out = {}
    for j in range(y.shape[1]):
        z = _transformed(y[:, j], "none")[0]
        if np.isfinite(z).sum() < len(cols) + 8 * FREE_CYCLES_SEEN:
            continue
        r = z - basis[:, cols] @ _Normal(z, len(z), basis, 0.0).fit(cols)[0]
        found = free_cycle(r, step_days, _ar1(r))
        if found is not None:
            out[j] = found
    return out


def refit_errors(z: np.ndarray, column: ColumnStructure, cuts: Sequence[int], h: int, epoch_days: float,
                 step_days: float) -> np.ndarray:
    """Signed errors ``z(t) - zhat_o(t)`` (O, h) of ``column``'s structure refitted before each of ``cuts``
    (its parts' mean, each forecasting as in the backtest, :func:`_forecasts`), NaN where the truth is
    missing or past the data; an origin where a part cannot be fitted, or with nothing to judge in its
    window, is left out. ``z``: the column's standardised values on the grid (T,), NaN where unobserved."""
    periods = column.periods
    bases = _bases(len(z), cuts, epoch_days, step_days, periods)
    half_lives = sorted({p.half_life for p in column.parts})
    origins = _origins(z[None], list(cuts), h, bases, half_lives)
    used = _used([(p.trend, p.periods) for p in column.parts], periods, step_days, origins.gram.shape[-1])
    judged = origins.observations[:, None] >= used.sum(axis=1)[None, :]
    transform = np.zeros(len(column.parts), dtype=np.int64)
    weighting = np.array([half_lives.index(p.half_life) for p in column.parts])
    coef = _ridge_coefficients(origins, used, transform, weighting, judged)
    out = np.full((len(origins.cuts), h), np.nan)
    persistent = np.full(len(column.parts), column.persistent)
    state = np.array([state_period(p.periods, step_days) for p in column.parts])
    for o, ahead, zf in _forecasts(z[None], coef, transform, origins, h, persistent, state=state):
        if judged[o].all():
            out[o, : len(ahead)] = z[ahead] - zf.mean(axis=0)
    return out[np.isfinite(out).any(axis=1)]


def choose_structure(y: np.ndarray, step_days: float, epoch_days: float, horizon: int | None = None,
                     seasonal: tuple[float, ...] | None = None, origins: int | None = None,
                     persistence: bool | None = None, free_cycles: bool = True) -> Structure:
    """Choose and fit each column's structure by backtest (see the module docstring).

    Args:
        y: values on the grid (T, n) in the columns' own units, NaN where unobserved.
        step_days, epoch_days: the grid step and the first grid date (days since 1970-01-01).
        horizon: steps ahead each backtest forecast is judged on (default: :func:`backtest_horizon`, or a
            quarter of the longest candidate cycle when that is longer: 91 days for daily data).
        seasonal: the periods (days) to use, all of them (those the grid cannot resolve are dropped);
            default: every subset of :func:`candidate_periods` is a candidate.
        origins: backtest origins (windows of ``horizon`` steps at the end of the data); default: as many
            windows as the last third of the data holds, at least 3 and at most 8 (more windows, a
            steadier choice among many candidates).
        persistence: whether departures from the structure persist (their current level carried on)
            rather than decay, in every column; default: per column and transform, whether its residual
            around a linear trend and every seasonal cycle has a unit root (:func:`unit_root_test`).
        free_cycles: whether a column's own cycle of a length no calendar names (:func:`free_cycle`) may be
            a candidate beside the calendar ones (never with ``seasonal`` given).
    """
    T, n = y.shape
    t_all = np.arange(T, dtype=np.float64)
    exact = seasonal is not None
    if seasonal is None:
        seasonal = candidate_periods(step_days, step_days * (T - 1))
    seasonal = tuple(p for p in seasonal if harmonics_for(p, step_days))
    if horizon is None:
        # Unsaid, the forecast may well reach far: judge at least a quarter of the longest cycle ahead.
        longest = max(seasonal, default=0.0) / step_days
        horizon = max(backtest_horizon(step_days), round(longest / 4))
    h = trusted = max(1, int(horizon))
    if origins is None:
        origins = min(8, max(3, (T // 3) // max(h, 1)))
    # Each origin keeps at least two thirds of the data to fit on; fewer windows (or shorter) otherwise.
    h = max(1, min(h, T // (3 * origins) or 1))
    cuts = [T - k * h for k in range(origins, 0, -1) if T - k * h >= max(4, 2 * T // 3)]
    bases = _bases(T, cuts, epoch_days, step_days, seasonal)
    own = _free_cycles(y, bases[T], seasonal, step_days) if free_cycles and not exact else {}
    columns = []
    for j in range(n):
        v = y[:, j]
        # This column's periods and bases: the calendar's, and its own free cycle's (others' are theirs).
        mine = seasonal + ((own[j][0],) if j in own else ())
        basis = bases if j not in own else _bases(T, cuts, epoch_days, step_days, mine)
        obs = np.isfinite(v)
        log_ok = bool(obs.sum() >= 4 and np.all(v[obs] > 0))
        zs = {tr: _transformed(v, tr) for tr in (("none", "log") if log_ok else ("none",))}
        # The residual around a linear trend and every cycle, on each transform's scale: tested for a unit
        # root there (a multiplicative series' departures may wander in its units and not in its logs),
        # and on the column's own scale for its cycles.
        # (Calendar cycles only: a free cycle fitted with one amplitude leaves the cycle's changes of size in
        # the residual, which then wanders as a random walk would not -- the lynx's departures "persisted".)
        cols = _columns("linear", seasonal, mine, step_days)
        persistent, unit_roots, reference = {}, {}, {}
        for tr, (zt, _, _) in zs.items():
            reference[tr] = zt - basis[T][:, cols] @ _Normal(zt, T, basis[T], 0.0).fit(cols)[0]
            persistent[tr], unit_roots[tr] = bool(persistence), None
            if persistence is None:
                test = unit_root_test(reference[tr][-RECENT_ROWS:])
                persistent[tr] = bool(test[0] > test[1])  # (False for NaN: untested)
                unit_roots[tr] = test if math.isfinite(test[0]) else None
        cycles, p_values = mine, {}
        if not exact and mine:
            # Only cycles the data show are candidates: the backtest's few windows would otherwise pick a
            # spurious one as often as not (a stock price's "yearly cycle"). The reference residual's AR(1)
            # prewhitens the test, whether or not its departures persist (cycle_p_values). A free cycle was
            # found significant by its own test, which allows for the search over frequencies.
            p_values = cycle_p_values(zs["none"][0], basis[T], mine, step_days, _ar1(reference["none"]))
            if j in own:
                p_values[own[j][0]] = own[j][1]
            cycles = tuple(p for p in mine if p_values[p] < CYCLE_P)
        candidates = _candidates(cycles, persistent, step_days, h, exact, T)
        at = _origins(np.stack([z for z, _, _ in zs.values()]), cuts, h, basis,
                      sorted({c.half_life for c in candidates}))
        scores = _backtest(v, zs, candidates, at, h, mine, step_days)
        scored = [(float(s), c) for s, c in zip(scores, candidates, strict=True)]
        # The lowest error wins; among near-ties (within TIE of it) the simplest, listed first, wins.
        # (Averaging the best three candidates instead did worse on the forecast suite: mean MASE 1.34
        # against 1.21, closed form only.)
        best_score = min(s[0] for s in scored)
        win_score, winner = next((s, c) for s, c in scored
                                 if s <= best_score * (1 + TIE) or not math.isfinite(best_score))
        if any(p not in CALENDAR for p in winner.periods):
            # A free cycle judged again: the backtest forecasts residuals as AR(1) decays, against which a
            # fixed cycle beats a damped one that the second-order start would carry (free_cycle).
            plain = dataclasses.replace(winner, periods=tuple(p for p in winner.periods if p in CALENDAR))
            without, with_free = _backtest(v, zs, [plain, winner], at, h, mine, step_days, True)
            if without <= with_free * (1 + TIE):
                # (Its own backtest score; a weighting in whole free cycles may be no calendar candidate's.)
                win_score, winner = float(_backtest(v, zs, [plain], at, h, mine, step_days)[0]), plain
        ranking = [r for r in sorted(scored, key=lambda s: s[0]) if r[1] != winner]
        z, mean, std = zs[winner.transform]
        cols = _columns(winner.trend, winner.periods, mine, step_days)
        coef = _Normal(z, T, basis[T], winner.half_life).fit(cols)[0]
        part = Part(winner.trend, winner.periods, winner.half_life, tuple(float(c) for c in coef))
        column = ColumnStructure(transform=winner.transform, mean=mean, std=std, parts=(part,),
                                 fitted_steps=T, phi=0.0, trusted=trusted,
                                 scores=tuple((c.name, s) for s, c in [(win_score, winner)] + ranking[:7]))
        resid = z - column.mu(t_all, epoch_days, step_days)
        drift, slope_unit_root = 0.0, None
        if winner.persistent:
            # Do the departures' steps wander too (a second unit root)? Then their slope persists.
            slope_unit_root = unit_root_test(np.diff(resid[-RECENT_ROWS:]), trend=False)
            persists = bool(slope_unit_root[0] > slope_unit_root[1])  # (False for NaN: untested)
            drift = residual_slope(resid) if persists else residual_drift(resid, trusted)
            slope_unit_root = slope_unit_root if math.isfinite(slope_unit_root[0]) else None
        second_order = None if winner.persistent else second_order_fit(resid[-RECENT_ROWS:])
        columns.append(dataclasses.replace(column, phi=_ar1(resid[-RECENT_ROWS:]),
                                           persistent=winner.persistent,
                                           unit_root=unit_roots[winner.transform], drift=drift,
                                           slope_unit_root=slope_unit_root, second_order=second_order,
                                           cycle_tests=tuple(p_values.items())))
    return Structure(tuple(columns), float(step_days), float(epoch_days))
