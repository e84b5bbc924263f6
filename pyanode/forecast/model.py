"""Step 4 of the forecaster: the model, an Augmented Neural ODE for what the structure leaves over.

The model (Dupont, Doucet & Teh, "Augmented Neural ODEs", NeurIPS 2019):

    h(t0) = E([x(t0 - (W-1) dt), ..., x(t0)], s(t0))        (encoder, linear; h in R^(n + augment))
    dh/dt = r * f_theta(h, s(t)) - kappa * h + C h             (vector field: MLP and a linear part)
    x_hat(t) = h(t)[:n]                                        (readout: the first n components)

``x`` are the n modelled columns' residuals after their closed-form structure (trend and seasonal
cycles, :mod:`pyanode.forecast.structure`), in standardised units; ``s(t)`` are calendar Fourier
features of the structure's periods (the dynamics may depend on the season or the hour); ``r`` is a
fixed rate that makes O(1) outputs of the MLP mean an O(1) change over a few data steps. ``kappa >= 0``
starts at the decay rate of the residual's AR(1) fit (``phi = exp(-kappa dt)``) and the MLP's last layer
at zero, so training starts from the closed-form model and learns what it misses (a universal
differential equation, in SciML's words). The ``augment`` extra dimensions start from the encoder, so
they can carry what the observed columns alone do not determine, such as where in a cycle of several
years the series is, or an anomaly that persists for months.

Where a column's residual is a damped oscillation (its AR(2) fit has complex roots, as the lynx's
ten-year cycle has) or two decays, a fast and a slow one (El Nino's), one augmented dimension starts as
its second coordinate: the coupling ``C`` (zero elsewhere) makes the pair the second-order linear ODE whose
solution through the last two residuals is the AR(2)'s forecast
(:func:`pyanode.forecast.structure.second_order_fit`), and the encoder starts it at the value that puts the
pair's path through both. This is the paper's point in its simplest form: a one-dimensional linear ODE
can only decay towards zero, never overshoot and come back; one extra dimension lets the flow turn.

:func:`rollout` encodes the initial states from the lag windows of :mod:`pyanode.forecast.grid` and
integrates the ODE with :func:`pyanode.solve`; everything that varies with the data (lags, dates, save
times) is an argument, so one compiled program serves every series of the same shape.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pyanode.engine import SENSEALGS, SOLVERS, solve
from pyanode.errors import PyanodeError
from pyanode.forecast.grid import lag_count, recent_count
from pyanode.forecast.structure import FASTEST, SLOWEST, second_order_roots

__all__ = ["ACTIVATIONS", "Config", "ForecastModel", "PERIOD_DAYS", "as_ftype", "calendar_features",
           "check_options", "ftype", "masked_mse", "parse_seasonality", "rollout"]

PERIOD_DAYS = {"daily": 1.0, "weekly": 7.0, "yearly": 365.25}
ACTIVATIONS = {"tanh": jnp.tanh, "swish": jax.nn.swish, "softplus": jax.nn.softplus, "relu": jax.nn.relu}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a forecaster's model and training (stored as JSON in saved files).

    Everything here is static in the compiled programs, so it holds only what the model's shapes and
    numerics need: two series with the same shape of data share one compiled program.
    """

    columns: tuple[str, ...]
    augment: int = 2
    hidden: int = 32
    depth: int = 2
    activation: str = "tanh"
    solver: str = "tsit5"
    rtol: float = 1e-3
    atol: float = 1e-4
    sensealg: str = "checkpoint"
    periods: tuple[float, ...] = ()  # seasonal periods in days
    harmonics: int = 2
    lookback: int = 90  # encoder window in steps
    window: int = 128  # training window in steps
    batch: int = 32
    iterations: int = 400
    lr: float = 1e-2
    weight_decay: float = 1e-4
    validation: int = 0  # steps held out at the end for early stopping
    patience: int = 10  # validation checks without improvement before stopping
    ema: float = 0.95  # decay of the running average of the parameters (the returned model)
    half_life: float = 0.0  # recency weighting of training windows, in steps (0: uniform)
    # Columns whose residual starts as a second-order linear ODE, the i-th with augmented dimension n + i.
    second_order: tuple[int, ...] = ()
    seed: int = 0
    step_days: float = 1.0  # grid step
    unit_days: float = 365.25  # ODE time unit
    epoch_days: float = 0.0  # first grid date, days since 1970-01-01

    @property
    def n(self) -> int:
        return len(self.columns)

    @property
    def state(self) -> int:
        return self.n + self.augment

    @property
    def dt(self) -> float:
        """The grid step in ODE time units."""
        return self.step_days / self.unit_days

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def program_key(self, name: str) -> str:
        """What a compiled program of this model depends on: everything but what only the host reads (the
        seed, first date, column names, recency weighting, validation length, patience and which columns
        start as second-order ODEs: initial values of the parameters), the periods' lengths (an array of
        the model, :attr:`ForecastModel.periods`; their number is the features' shape) and the encoder's
        lookback beyond the rows of its input (:func:`~pyanode.forecast.grid.lag_count`; the lag windows
        are made on the host), so that other series of the same shape share it."""
        d = self.to_json()
        for k in ("seed", "epoch_days", "columns", "half_life", "validation", "patience", "second_order"):
            d.pop(k)
        d["periods"] = len(self.periods)
        d["lookback"] = lag_count(self.lookback)
        return f"{name}|n={self.n}|" + json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, d: dict) -> Config:
        d = dict(d)
        d["columns"] = tuple(d["columns"])
        d["periods"] = tuple(d["periods"])
        d["second_order"] = tuple(int(j) for j in d.get("second_order", ()))
        return cls(**d)


def check_options(
    augment: int, hidden: int, depth: int, solver: str, rtol: float, atol: float, sensealg: str,
    seasonality: str, iterations: int | None, activation: str,
) -> None:
    if not isinstance(augment, (int, np.integer)) or augment < 0:
        raise PyanodeError(f"augment must be a non-negative integer, got {augment!r}")
    if hidden < 1 or depth < 1:
        raise PyanodeError(f"hidden and depth must be positive, got hidden={hidden}, depth={depth}")
    if solver not in SOLVERS or not SOLVERS[solver].adaptive:
        adaptive = [k for k, v in SOLVERS.items() if v.adaptive]
        raise PyanodeError(f"unknown or fixed-step solver {solver!r}; choose one of: {', '.join(adaptive)}")
    if not (rtol > 0 and atol > 0):
        raise PyanodeError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    if sensealg not in SENSEALGS:
        raise PyanodeError(f"unknown sensealg {sensealg!r}; choose one of: {', '.join(SENSEALGS)}")
    parse_seasonality(seasonality)
    if iterations is not None and iterations < 1:
        raise PyanodeError(f"iterations must be a positive integer, got {iterations}")
    if activation not in ACTIVATIONS:
        raise PyanodeError(f"unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}")


def parse_seasonality(seasonality: str) -> tuple[float, ...] | None:
    """``"auto"`` -> None (chosen by backtest); ``"none"`` -> (); ``"daily+yearly"`` -> (1.0, 365.25)."""
    if seasonality == "auto":
        return None
    if seasonality == "none":
        return ()
    names = seasonality.split("+")
    bad = [s for s in names if s not in PERIOD_DAYS]
    if bad or not names:
        raise PyanodeError(f"unknown seasonality {seasonality!r}; use auto, none, or one or more of "
                           f"{', '.join(PERIOD_DAYS)} joined by '+' (e.g. daily+weekly)")
    return tuple(sorted(PERIOD_DAYS[s] for s in set(names)))


def ftype() -> Any:
    """JAX's default float (float32, or float64 after :func:`pyanode.enable_x64`): all arrays use it."""
    return jnp.result_type(float)


def as_ftype(x: Any) -> jax.Array:
    """``x`` as a JAX array of :func:`ftype`, cast on the host and copied to the device as it is
    (``jnp.asarray`` compiles a small program per shape: a fraction of a second of a first fit, many times
    over)."""
    return jax.device_put(np.asarray(x, ftype()))


def calendar_features(t_days: jax.Array, periods: Sequence[float] | jax.Array, harmonics: int) -> jax.Array:
    """``[sin(2 pi k t / P), cos(2 pi k t / P)]`` for each period P and k = 1..harmonics (t in days), in
    that order. ``periods`` may be an array of the program (traced), so that one program serves any."""
    periods = jnp.asarray(periods, dtype=jnp.result_type(t_days))
    if periods.shape[0] == 0:
        return jnp.zeros((*jnp.shape(t_days), 0), dtype=jnp.result_type(t_days))
    k = jnp.arange(1, harmonics + 1, dtype=periods.dtype)
    w = (2 * math.pi * k[None, :] / periods[:, None]).reshape(-1)  # (P * harmonics,)
    angle = jnp.asarray(t_days)[..., None] * w
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(*angle.shape[:-1], 2 * w.shape[0])


class ForecastModel(eqx.Module):
    """Encoder and vector field of the forecaster (an equinox pytree; see the module docstring)."""

    encoder: eqx.nn.Linear
    field: eqx.nn.MLP
    log_decay: jax.Array  # log kappa per state dimension (ODE time units)
    coupling: jax.Array  # C (state, state), ODE time units
    # The calendar features' periods (days), ``config.periods`` as an array: an argument of the compiled
    # programs rather than a constant in them, so that series with other cycles of the same number (a
    # free cycle of the data's own length) share them. Fixed: no gradient reaches it
    # (:meth:`features`), and weight decay spares it (:func:`decayed_leaves`).
    periods: jax.Array
    config: Config = eqx.field(static=True)

    def __init__(self, config: Config, key: jax.Array | int, phi: Sequence[float] | None = None,
                 second_order: Sequence[tuple[float, float] | None] | None = None):
        """``key``: a JAX random key or an integer seed; ``phi``: per-column AR(1) coefficients per grid step
        of the residuals (the decay's start); ``second_order``: per column, its residual's AR(2)
        coefficients or None, read for the columns ``config.second_order`` names (their start; without
        it they start as the others do, as a model a saved file's parameters are read into may)."""
        c = config
        nf = 2 * c.harmonics * len(c.periods)
        rng = np.random.default_rng(_seed_words(key))
        m = lag_count(c.lookback)
        enc = _shaped(eqx.nn.Linear, m * c.n + nf, c.state)
        # Start the encoder at "the mean of the last few observations, augmented dims at zero".
        w = np.zeros((c.state, m * c.n + nf))
        k = recent_count(c.lookback)
        recent = min(k, 3)
        for j in range(c.n):
            for lag in range(recent):
                w[j, (k - 1 - lag) * c.n + j] = 1.0 / recent
        field = _shaped(eqx.nn.MLP, c.state + nf, c.state, c.hidden, c.depth,
                        activation=ACTIVATIONS[c.activation])
        # Each layer starts as equinox's (and PyTorch's) default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn
        # with numpy: drawing with jax.random compiles a program per layer shape, seconds of a first fit.
        # The last layer starts at zero: the model starts as the closed-form one (structure plus the decay).
        arrays = []
        for i, layer in enumerate(field.layers):
            out_size, in_size = layer.weight.shape
            lim = 1.0 / math.sqrt(in_size) if i < len(field.layers) - 1 else 0.0
            arrays += [as_ftype(rng.uniform(-lim, lim, (out_size, in_size))),
                       as_ftype(rng.uniform(-lim, lim, (out_size,)))]
        self.field = eqx.tree_at(lambda f: [x for y in f.layers for x in (y.weight, y.bias)], field, arrays)
        # kappa = -log(phi) / dt, at most 2 / dt (an e-fold within half a step is as good as instant).
        phis = np.clip(np.asarray(list(phi) if phi is not None else [0.9] * c.n, dtype=np.float64),
                       FASTEST, SLOWEST)
        kappa = -np.log(phis) / c.dt
        # The augmented dimensions are the slow memory (an anomaly that lasts for months): they start with
        # a decay time of the encoder's lookback, or the slowest column's when that is slower still.
        slow = min(kappa.min(), 1.0 / (max(c.lookback, 1) * c.dt))
        kappa = np.concatenate([kappa, np.full(c.augment, slow)])
        coupling = np.zeros((c.state, c.state))
        for i, j in enumerate(c.second_order if second_order is not None else ()):
            block, back = _second_order_block(second_order[j], c.dt)
            pair = [j, c.n + i]
            kappa[pair] = -block[0, 0]
            coupling[j, c.n + i], coupling[c.n + i, j] = block[0, 1], block[1, 0]
            # Start the pair at the last residual x(t0) and the second coordinate a(t0) whose path passes
            # through x(t0 - dt): x(t0 - dt) = back[0, 0] x(t0) + back[0, 1] a(t0).
            w[j] = 0.0
            w[j, (k - 1) * c.n + j] = 1.0
            w[c.n + i, (k - 1) * c.n + j] = -back[0, 0] / back[0, 1]
            w[c.n + i, (k - 2) * c.n + j] = 1.0 / back[0, 1]
        self.encoder = eqx.tree_at(lambda m: (m.weight, m.bias), enc,
                                   (as_ftype(w), as_ftype(np.zeros(c.state))))
        self.log_decay = as_ftype(np.log(kappa))
        self.coupling = as_ftype(coupling)
        self.periods = as_ftype(np.asarray(c.periods, dtype=np.float64).reshape(-1))
        self.config = config

    @property
    def rate(self) -> float:
        # O(1) field outputs mean an O(1) change over about eight grid steps.
        return 1.0 / (8.0 * self.config.dt)

    def features(self, t_days: jax.Array) -> jax.Array:
        return calendar_features(t_days, jax.lax.stop_gradient(self.periods), self.config.harmonics)

    def encode(self, lags: jax.Array, t_days: jax.Array) -> jax.Array:
        """Initial states from the last ``lookback`` (scaled, gap-filled) observations, shape (B, W, n)."""
        x = jnp.concatenate([lags.reshape(lags.shape[0], -1), self.features(t_days)], axis=-1)
        return jax.vmap(self.encoder)(x)


def decayed_leaves(params: Any) -> Any:
    """The weight-decay mask of a model's parameters (a :class:`ForecastModel` of arrays, or of ``None``
    where not trained): True for every parameter but the fixed :attr:`ForecastModel.periods`."""
    return eqx.tree_at(lambda m: m.periods, jax.tree_util.tree_map(lambda _: True, params), False)


def _second_order_block(coef: tuple[float, float] | None, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """The 2x2 linear ODE ``M`` (ODE time units, equal diagonal entries) whose first coordinate, sampled every
    ``dt``, follows the AR(2) ``coef`` (roots ``z``), and ``exp(-M dt)``, one step back.

    Complex roots ``z = rho exp(+-i theta)`` give ``M = [[s, w], [-w, s]]`` (``s = log(rho) / dt``,
    ``w = theta / dt``): a damped rotation. Two positive real roots give ``M = [[m, d], [d, m]]`` with
    eigenvalues ``log(z) / dt``: two decays."""
    if coef is None:
        raise PyanodeError("a second-order column needs its AR(2) coefficients")
    z = second_order_roots(coef)
    lam = np.log(z) / dt
    if z[0].imag:
        s, w = float(lam[0].real), float(abs(lam[0].imag))
        block = np.array([[s, w], [-w, s]])
        back = math.exp(-s * dt) * np.array([[math.cos(w * dt), -math.sin(w * dt)],
                                             [math.sin(w * dt), math.cos(w * dt)]])
    else:
        m, d = float(np.mean(lam.real)), float(abs(lam[0].real - lam[1].real) / 2)
        block = np.array([[m, d], [d, m]])
        back = math.exp(-m * dt) * np.array([[math.cosh(d * dt), -math.sinh(d * dt)],
                                             [-math.sinh(d * dt), math.cosh(d * dt)]])
    return block, back


def _seed_words(key: jax.Array | int) -> list[int]:
    """A numpy seed from a JAX random key's words, or from an integer seed as ``PRNGKey(seed)`` holds it."""
    if isinstance(key, (int, np.integer)):
        return [(int(key) >> 32) & 0xFFFFFFFF, int(key) & 0xFFFFFFFF]
    if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return [int(w) for w in np.asarray(key).ravel()]


def _shaped(cls: type, *args: Any, **kwargs: Any) -> Any:
    """An equinox layer's structure, its arrays as shapes only (nothing is drawn or compiled)."""
    return eqx.filter_eval_shape(lambda: cls(*args, **kwargs, key=jax.random.PRNGKey(0)))


def _vector_field(t: jax.Array, h: jax.Array, args: Any) -> jax.Array:
    """``dh/dt`` for a batch of windows: ``args = (model, origin_days)``; ``t`` is time since the origin."""
    model, origin_days = args
    c = model.config
    s = model.features(origin_days + t * c.unit_days)
    drive = model.rate * jax.vmap(model.field)(jnp.concatenate([h, s.astype(h.dtype)], axis=-1))
    return drive - jnp.exp(model.log_decay) * h + h @ model.coupling.T


def rollout(
    model: ForecastModel, lags: jax.Array, origin_days: jax.Array, taus: jax.Array,
    nfe_probe: jax.Array | None = None, max_steps: int = 4096,
) -> tuple[jax.Array, jax.Array]:
    """Readouts (B, len(taus), n) at times ``taus`` (ODE units, taus[0] = 0) after each origin."""
    c = model.config
    h0 = model.encode(lags, origin_days)
    # The engine passes ``args`` through as arrays (gradients flow to them); the static parts of the
    # model (activation functions, configuration) travel in the closure.
    params, static = eqx.partition(model, eqx.is_array)

    def f(t, h, args):
        return _vector_field(t, h, (eqx.combine(args[0], static), args[1]))

    sol = solve(
        f, h0, taus, args=(params, origin_days), solver=c.solver, rtol=c.rtol, atol=c.atol,
        sensealg=c.sensealg, max_steps=max_steps, nfe_probe=nfe_probe,
    )
    return jnp.swapaxes(sol.ys[..., : c.n], 0, 1), sol.stats.nfe_forward


def masked_mse(pred: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
    obs = ~jnp.isnan(target)
    w = jnp.where(obs, weight, 0.0)
    sq = jnp.where(obs, (pred - jnp.nan_to_num(target)) ** 2, 0.0)
    # One reduction for both sums: with the batch split over devices it is one all-reduce, where two
    # independent ones may be started in different orders on different devices (XLA's CPU runtime then
    # waits forever on a multi-device host).
    total, count = jnp.sum(jnp.stack(jnp.broadcast_arrays(w * sq, w)), axis=tuple(range(1, 1 + sq.ndim)))
    return total / jnp.maximum(count, 1.0)
