"""MLP neural ODEs (NODE / ANODE) and the discrete ResNet baseline of Dupont, Doucet & Teh (2019).

A neural ODE maps an input ``x`` in R^d to ``h(T)`` where ``h(0) = x`` and ``dh/dt = f(t, h)``. The flow
``x -> h(T)`` is a homeomorphism, so trajectories of different inputs never cross and some functions (the
map ``x -> -x`` in 1-D, concentric spheres in d-D) cannot be represented. An *augmented* neural ODE (ANODE)
solves instead in R^(d+p) from ``[x, 0]``: the ``p`` extra dimensions give the flow room to move the
classes past each other (paper, section 4).

Conventions shared by every model here (and by :mod:`pyanode.train`):

* ``model(x)`` maps a batch ``(batch, data_dim)`` to predictions ``(batch, output_dim)``.
* ``model.forward(x, nfe_probe=None)`` returns ``(prediction, nfe_forward)``; differentiating the output
  with respect to the scalar ``nfe_probe`` gives the backward NFE (see :func:`pyanode.solve`).
* The whole batch is solved as **one** ODE on the ``(batch, d+p)`` state, as in the reference code, so the
  adaptive step is shared by the batch and NFE counts are per batch, as in the paper's figures.
* ``model.hyperparams()`` returns the keyword arguments that rebuild the model (``key`` aside), which is
  what :func:`pyanode.train.save_model` stores next to the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from pyanode.engine import SENSEALGS, attach_backward_nfe, get_solver, solve
from pyanode.errors import PyanodeError

__all__ = ["NONLINEARITIES", "ODEBlock", "ODEFunc", "ODENet", "ResNet"]

NONLINEARITIES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
    "tanh": jnp.tanh,
    "swish": jax.nn.swish,
}


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PyanodeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_nonlinearity(name: str) -> str:
    if name not in NONLINEARITIES:
        raise PyanodeError(f"unknown nonlinearity {name!r}; choose one of: {', '.join(NONLINEARITIES)}")
    return name


def _linear(layer: eqx.nn.Linear, h: jax.Array) -> jax.Array:
    """An ``eqx.nn.Linear`` applied to the last axis of a batch (one matmul, not a vmap)."""
    out = h @ layer.weight.T
    return out if layer.bias is None else out + layer.bias


class ODEFunc(eqx.Module):
    """The paper's MLP vector field ``f(t, h)`` on R^(d+p).

    ``Linear(d+p (+1), hidden) -> act -> Linear(hidden, hidden) -> act -> Linear(hidden, d+p)``; with
    ``time_dependent=True`` the time ``t`` is concatenated to the input (the ``+1``). Works on a single
    state ``(d+p,)`` or a batch ``(batch, d+p)``; called as ``f(t, h, args)`` (diffrax's convention).
    """

    layers: tuple[eqx.nn.Linear, eqx.nn.Linear, eqx.nn.Linear]
    dim: int = eqx.field(static=True)
    hidden_dim: int = eqx.field(static=True)
    time_dependent: bool = eqx.field(static=True)
    nonlinearity: str = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        *,
        time_dependent: bool = False,
        nonlinearity: str = "relu",
        key: jax.Array,
    ) -> None:
        self.dim = _check_positive_int("dim", dim)
        self.hidden_dim = _check_positive_int("hidden_dim", hidden_dim)
        self.time_dependent = bool(time_dependent)
        self.nonlinearity = _check_nonlinearity(nonlinearity)
        k1, k2, k3 = jax.random.split(key, 3)
        self.layers = (
            eqx.nn.Linear(dim + int(self.time_dependent), hidden_dim, key=k1),
            eqx.nn.Linear(hidden_dim, hidden_dim, key=k2),
            eqx.nn.Linear(hidden_dim, dim, key=k3),
        )

    def __call__(self, t: jax.Array, h: jax.Array, args: Any = None) -> jax.Array:
        act = NONLINEARITIES[self.nonlinearity]
        x = h
        if self.time_dependent:
            tt = jnp.broadcast_to(jnp.asarray(t, h.dtype), h.shape[:-1] + (1,))
            x = jnp.concatenate([tt, h], axis=-1)
        x = act(_linear(self.layers[0], x))
        x = act(_linear(self.layers[1], x))
        return _linear(self.layers[2], x)


class ODEBlock(eqx.Module):
    """Integrates a vector field from ``t = 0`` to ``t = T`` with :func:`pyanode.solve`.

    Defaults follow the reference code: ``dopri5`` with ``rtol = atol = 1e-3``, so NFE counts are
    comparable with the paper's. ``sensealg="checkpoint"`` (discretise-then-optimise, the reference's
    default ``odeint``) gives exact gradients of the discrete solve; ``"interpolating"`` or ``"backsolve"``
    use a continuous adjoint, whose backward NFE is what the paper plots.
    """

    func: eqx.Module
    T: float = eqx.field(static=True)
    solver: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    sensealg: str = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        func: eqx.Module,
        *,
        T: float = 1.0,
        solver: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-3,
        sensealg: str = "checkpoint",
        max_steps: int = 4096,
    ) -> None:
        spec = get_solver(solver)
        if not spec.adaptive:
            raise PyanodeError(
                f"ODEBlock needs an adaptive solver (tsit5, dopri5, dopri8, bosh3), got {solver!r}; "
                "for fixed steps use ResNet, which is the Euler discretisation"
            )
        if spec.implicit:
            raise PyanodeError(f"solver {solver!r} is implicit and not supported in ODE blocks; use dopri5")
        if sensealg not in SENSEALGS:
            raise PyanodeError(f"unknown sensealg {sensealg!r}; choose one of: {', '.join(SENSEALGS)}")
        if not (rtol > 0 and atol > 0):
            raise PyanodeError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
        if not T > 0:
            raise PyanodeError(f"the end time T must be positive, got {T}")
        self.func = func
        self.T = float(T)
        self.solver = solver.lower()
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.sensealg = sensealg
        self.max_steps = _check_positive_int("max_steps", max_steps)

    def solve(self, h0: jax.Array, ts: jax.Array | None = None, nfe_probe: jax.Array | None = None):
        """The :class:`pyanode.Solution` from ``h0`` at time 0 to the times ``ts`` (default ``[T]``)."""
        ts = jnp.asarray([self.T], h0.dtype) if ts is None else jnp.asarray(ts, h0.dtype)
        return solve(
            self.func,
            h0,
            ts,
            t0=0.0,
            solver=self.solver,
            rtol=self.rtol,
            atol=self.atol,
            sensealg=self.sensealg,
            max_steps=self.max_steps,
            nfe_probe=nfe_probe,
        )

    def __call__(self, h0: jax.Array, nfe_probe: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """``(h(T), forward NFE)``."""
        sol = self.solve(h0, nfe_probe=nfe_probe)
        return sol.ys[-1], sol.stats.nfe_forward

    def trajectory(self, h0: jax.Array, ts: jax.Array) -> jax.Array:
        """States at the times ``ts`` (with ``ts[0] >= 0``), shape ``(len(ts), *h0.shape)``."""
        ts = jnp.asarray(ts, h0.dtype)
        if float(ts[0]) == 0.0:
            # The engine saves from t0=0; time 0 itself is the initial state.
            rest = self.solve(h0, ts[1:]).ys if ts.shape[0] > 1 else jnp.zeros((0, *h0.shape), h0.dtype)
            return jnp.concatenate([h0[None], rest], axis=0)
        return self.solve(h0, ts).ys


def _augment(x: jax.Array, augment_dim: int) -> jax.Array:
    """``[x, 0]``: ``augment_dim`` zeros appended to the last axis (the ANODE initial state)."""
    if augment_dim == 0:
        return x
    return jnp.concatenate([x, jnp.zeros(x.shape[:-1] + (augment_dim,), x.dtype)], axis=-1)


def _check_readout(readout: bool, output_dim: int, state_dim: int) -> None:
    if not readout and output_dim > state_dim:
        raise PyanodeError(
            f"without a read-out the prediction is the first output_dim={output_dim} components of the "
            f"{state_dim}-dimensional state; use output_dim <= {state_dim} or readout=True"
        )


class ODENet(eqx.Module):
    """NODE (``augment_dim=0``) or ANODE (``augment_dim=p > 0``) with an MLP vector field.

    ``x -> [x, 0_p] -> h(T) -> Linear(d+p, output_dim)``. With ``readout=False`` there is no linear
    layer and the prediction is the first ``output_dim`` components of ``h(T)``: the flow alone must fit
    the data, which is how the paper shows that a NODE cannot represent ``g(x) = -x`` (with a read-out a
    NODE could fit it by an identity flow and a weight of -1).
    """

    block: ODEBlock
    readout_layer: eqx.nn.Linear | None
    data_dim: int = eqx.field(static=True)
    hidden_dim: int = eqx.field(static=True)
    output_dim: int = eqx.field(static=True)
    augment_dim: int = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        hidden_dim: int,
        output_dim: int = 1,
        augment_dim: int = 0,
        time_dependent: bool = False,
        nonlinearity: str = "relu",
        readout: bool = True,
        solver: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-3,
        sensealg: str = "checkpoint",
        T: float = 1.0,
        max_steps: int = 4096,
        *,
        key: jax.Array,
    ) -> None:
        self.data_dim = _check_positive_int("data_dim", data_dim)
        self.hidden_dim = _check_positive_int("hidden_dim", hidden_dim)
        self.output_dim = _check_positive_int("output_dim", output_dim)
        self.augment_dim = _check_positive_int("augment_dim", augment_dim, minimum=0)
        state_dim = data_dim + augment_dim
        _check_readout(readout, output_dim, state_dim)
        kf, kr = jax.random.split(key)
        func = ODEFunc(
            state_dim, hidden_dim, time_dependent=time_dependent, nonlinearity=nonlinearity, key=kf
        )
        self.block = ODEBlock(
            func, T=T, solver=solver, rtol=rtol, atol=atol, sensealg=sensealg, max_steps=max_steps
        )
        self.readout_layer = eqx.nn.Linear(state_dim, output_dim, key=kr) if readout else None

    @property
    def state_dim(self) -> int:
        return self.data_dim + self.augment_dim

    def hyperparams(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this model (with a ``key``)."""
        f = self.block.func
        return dict(
            data_dim=self.data_dim,
            hidden_dim=self.hidden_dim,
            output_dim=self.output_dim,
            augment_dim=self.augment_dim,
            time_dependent=f.time_dependent,
            nonlinearity=f.nonlinearity,
            readout=self.readout_layer is not None,
            solver=self.block.solver,
            rtol=self.block.rtol,
            atol=self.block.atol,
            sensealg=self.block.sensealg,
            T=self.block.T,
            max_steps=self.block.max_steps,
        )

    def initial_state(self, x: jax.Array) -> jax.Array:
        """``[x, 0]``, shape ``(batch, d+p)``."""
        return _augment(jnp.asarray(x), self.augment_dim)

    def readout(self, h: jax.Array) -> jax.Array:
        """Prediction from a final state (or a trajectory of states): linear layer or first components."""
        if self.readout_layer is None:
            return h[..., : self.output_dim]
        return _linear(self.readout_layer, h)

    def features(self, x: jax.Array) -> jax.Array:
        """The final state ``h(T)`` (the features the read-out sees)."""
        return self.block(self.initial_state(x))[0]

    def forward(self, x: jax.Array, nfe_probe: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """``(prediction, forward NFE of this batch's solve)``."""
        h, nfe = self.block(self.initial_state(x), nfe_probe)
        return self.readout(h), nfe

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.forward(x)[0]

    def trajectory(self, x: jax.Array, num_times: int = 50) -> tuple[jax.Array, jax.Array]:
        """``(times, states)``: the state at ``num_times`` equally spaced times in ``[0, T]``."""
        ts = jnp.linspace(0.0, self.block.T, num_times)
        return ts, self.block.trajectory(self.initial_state(x), ts)

    def vector_field(self, t: float, h: jax.Array) -> jax.Array:
        """``f(t, h)`` on states of shape ``(..., d+p)``."""
        return self.block.func(jnp.asarray(t, h.dtype), h, None)


class ResNet(eqx.Module):
    """The discrete baseline: ``num_layers`` residual steps ``h <- h + dt * f_k(t_k, h)``, ``dt = T/L``.

    Each ``f_k`` is the :class:`ODEFunc` MLP (one per layer, as in the reference; ``shared_weights=True``
    uses one for all layers, which makes the network exactly the explicit Euler solve of that ODE). The
    discretisation error is what lets ResNet trajectories jump across each other (paper, section 3), so a
    ResNet can represent ``g(x) = -x`` where a NODE cannot. NFE is the number of layers, forward and
    backward.
    """

    funcs: tuple[ODEFunc, ...]
    readout_layer: eqx.nn.Linear | None
    data_dim: int = eqx.field(static=True)
    hidden_dim: int = eqx.field(static=True)
    output_dim: int = eqx.field(static=True)
    augment_dim: int = eqx.field(static=True)
    num_layers: int = eqx.field(static=True)
    shared_weights: bool = eqx.field(static=True)
    T: float = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        hidden_dim: int,
        output_dim: int = 1,
        num_layers: int = 5,
        augment_dim: int = 0,
        time_dependent: bool = False,
        nonlinearity: str = "relu",
        readout: bool = True,
        shared_weights: bool = False,
        T: float = 1.0,
        *,
        key: jax.Array,
    ) -> None:
        self.data_dim = _check_positive_int("data_dim", data_dim)
        self.hidden_dim = _check_positive_int("hidden_dim", hidden_dim)
        self.output_dim = _check_positive_int("output_dim", output_dim)
        self.augment_dim = _check_positive_int("augment_dim", augment_dim, minimum=0)
        self.num_layers = _check_positive_int("num_layers", num_layers)
        self.shared_weights = bool(shared_weights)
        if not T > 0:
            raise PyanodeError(f"the end time T must be positive, got {T}")
        self.T = float(T)
        state_dim = data_dim + augment_dim
        _check_readout(readout, output_dim, state_dim)
        kf, kr = jax.random.split(key)
        keys = jax.random.split(kf, 1 if shared_weights else num_layers)
        self.funcs = tuple(
            ODEFunc(state_dim, hidden_dim, time_dependent=time_dependent, nonlinearity=nonlinearity, key=k)
            for k in keys
        )
        self.readout_layer = eqx.nn.Linear(state_dim, output_dim, key=kr) if readout else None

    @property
    def state_dim(self) -> int:
        return self.data_dim + self.augment_dim

    def hyperparams(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this model (with a ``key``)."""
        f = self.funcs[0]
        return dict(
            data_dim=self.data_dim,
            hidden_dim=self.hidden_dim,
            output_dim=self.output_dim,
            num_layers=self.num_layers,
            augment_dim=self.augment_dim,
            time_dependent=f.time_dependent,
            nonlinearity=f.nonlinearity,
            readout=self.readout_layer is not None,
            shared_weights=self.shared_weights,
            T=self.T,
        )

    def initial_state(self, x: jax.Array) -> jax.Array:
        return _augment(jnp.asarray(x), self.augment_dim)

    def readout(self, h: jax.Array) -> jax.Array:
        if self.readout_layer is None:
            return h[..., : self.output_dim]
        return _linear(self.readout_layer, h)

    def _states(self, h: jax.Array) -> list[jax.Array]:
        dt = self.T / self.num_layers
        states = [h]
        for k in range(self.num_layers):
            f = self.funcs[0 if self.shared_weights else k]
            h = h + dt * f(jnp.asarray(k * dt, h.dtype), h, None)
            states.append(h)
        return states

    def features(self, x: jax.Array) -> jax.Array:
        return self._states(self.initial_state(x))[-1]

    def forward(self, x: jax.Array, nfe_probe: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """``(prediction, number of residual-function evaluations)``."""
        h = self.features(x)
        nfe = jnp.asarray(self.num_layers, jnp.int32)
        if nfe_probe is not None:
            h = attach_backward_nfe(h, nfe_probe, nfe)  # one VJP per layer in the backward pass
        return self.readout(h), nfe

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.forward(x)[0]

    def trajectory(self, x: jax.Array, num_times: int | None = None) -> tuple[jax.Array, jax.Array]:
        """``(times, states)`` at the ``num_layers + 1`` layer boundaries (``num_times`` is ignored)."""
        del num_times
        states = jnp.stack(self._states(self.initial_state(x)))
        return jnp.linspace(0.0, self.T, self.num_layers + 1), states

    def vector_field(self, t: float, h: jax.Array) -> jax.Array:
        """The residual function of the layer active at time ``t``."""
        k = min(int(t / self.T * self.num_layers), self.num_layers - 1)
        f = self.funcs[0 if self.shared_weights else k]
        return f(jnp.asarray(t, h.dtype), h, None)
