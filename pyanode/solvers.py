"""What a solve is, before any array: named solvers, step-size control, statistics, errors.

Shared by :mod:`pyanode.engine` (forward solves and the ``checkpoint`` gradient) and
:mod:`pyanode.adjoint` (the continuous adjoints), which both import it and not each other: the engine
dispatches to the adjoints, the adjoints read the problem description from here.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from pyanode.errors import PyanodeError

__all__ = [
    "SENSEALGS",
    "SOLVERS",
    "Problem",
    "SolveError",
    "SolverSpec",
    "Stats",
    "diffeqsolve",
    "forward_nfe",
    "get_solver",
    "make_problem",
]

class SolveError(PyanodeError):
    """A problem with a solve that the user can act on; the message says what to change."""


# ----------------------------------------------------------------------------------------------
# Solvers

_rk4_tableau = diffrax.ButcherTableau(
    c=np.array([0.5, 0.5, 1.0]),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]) - np.array([0.0, 1.0, 0.0, 0.0]),
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
)


class RK4(diffrax.AbstractERK):
    """The classical 4th-order Runge--Kutta method (4 stages, fixed step)."""

    tableau = _rk4_tableau
    interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):  # noqa: D102
        del terms
        return 4


@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """What pyanode needs to know about a solver: how to build it and how to count its NFE."""

    make: Callable[[], diffrax.AbstractSolver]
    adaptive: bool
    stages: int  # vector-field evaluations per step (explicit methods)
    fsal: bool  # first-same-as-last: the last stage of a step is the first of the next
    implicit: bool = False
    order: int = 0


SOLVERS: dict[str, SolverSpec] = {
    "tsit5": SolverSpec(diffrax.Tsit5, True, 7, True, order=5),
    "dopri5": SolverSpec(diffrax.Dopri5, True, 7, True, order=5),
    "dopri8": SolverSpec(diffrax.Dopri8, True, 14, True, order=8),
    "bosh3": SolverSpec(diffrax.Bosh3, True, 4, True, order=3),
    "euler": SolverSpec(diffrax.Euler, False, 1, False, order=1),
    "midpoint": SolverSpec(diffrax.Midpoint, False, 2, False, order=2),
    "heun": SolverSpec(diffrax.Heun, False, 2, False, order=2),
    "rk4": SolverSpec(RK4, False, 4, False, order=4),
    "kvaerno5": SolverSpec(diffrax.Kvaerno5, True, 7, False, implicit=True, order=5),
    "kencarp4": SolverSpec(diffrax.KenCarp4, True, 7, False, implicit=True, order=4),
}

SENSEALGS = ("interpolating", "backsolve", "checkpoint")


def get_solver(name: str) -> SolverSpec:
    """Look a solver up by name, with an error that lists the valid names."""
    try:
        return SOLVERS[name.lower()]
    except (KeyError, AttributeError):
        raise SolveError(f"unknown solver {name!r}; choose one of: {', '.join(SOLVERS)}") from None


def forward_nfe(spec: SolverSpec, num_steps: jax.Array) -> jax.Array:
    """Vector-field evaluations of an explicit solve of ``num_steps`` steps (accepted + rejected).

    An FSAL method evaluates ``f`` once at the start and ``stages - 1`` times per step (the first
    stage of each step reuses the last stage of the previous one; a rejected step still costs its
    stages). Other explicit methods cost ``stages`` per step. Implicit methods' counts depend on
    their Newton iterations, so they are not given by a rule (reported as -1).
    """
    if spec.implicit:
        return jnp.full_like(num_steps, -1)
    if spec.fsal:
        return 1 + (spec.stages - 1) * num_steps
    return spec.stages * num_steps


# ----------------------------------------------------------------------------------------------
# Results


class Stats(eqx.Module):
    """Statistics of one solve (arrays, so they survive ``jax.jit``)."""

    num_accepted_steps: jax.Array
    num_rejected_steps: jax.Array
    nfe_forward: jax.Array

    @property
    def num_steps(self) -> jax.Array:
        return self.num_accepted_steps + self.num_rejected_steps

    def as_dict(self) -> dict[str, int]:
        return {
            "num_accepted_steps": int(self.num_accepted_steps),
            "num_rejected_steps": int(self.num_rejected_steps),
            "nfe_forward": int(self.nfe_forward),
        }



# ----------------------------------------------------------------------------------------------
# The problem

@dataclasses.dataclass(frozen=True)
class Problem:
    """Everything a solve needs except the arrays; shared with :mod:`pyanode.adjoint`."""

    spec: SolverSpec
    controller: diffrax.AbstractStepSizeController
    dt0: float | None
    max_steps: int
    rtol: float = 1e-6
    atol: float = 1e-6

    def first_step(self, dtype: Any, backwards: bool = False) -> jax.Array | None:
        """``dt0`` for diffrax, as an array so that a new step size does not trigger a recompile."""
        if self.dt0 is None or (backwards and self.spec.adaptive):
            return None  # the controller picks the first step
        return jnp.asarray(-self.dt0 if backwards else self.dt0, dtype=dtype)

    def make_solver(
        self, controller: diffrax.AbstractStepSizeController | None = None
    ) -> diffrax.AbstractSolver:
        if self.spec.implicit:
            # diffrax's default chord iteration stalls on oscillatory problems (and on the adjoint
            # system, which reads a time-varying interpolation); full Newton does not.
            c = self.controller if controller is None else controller
            return self.spec.make(root_finder=optx.Newton(rtol=c.rtol, atol=c.atol))
        return self.spec.make()

    def make_term(self, f: Callable) -> diffrax.AbstractTerm:
        term = diffrax.ODETerm(f)
        if self.spec.make is diffrax.KenCarp4:
            # KenCarp4 is an IMEX method; the whole vector field is treated implicitly.
            zero = diffrax.ODETerm(_zero_field)
            return diffrax.MultiTerm(zero, term)
        return term


def _zero_field(t: Any, y: Any, args: Any) -> Any:
    return jax.tree_util.tree_map(jnp.zeros_like, y)


def make_problem(
    solver: str,
    rtol: float,
    atol: float,
    dt: float | None,
    dt0: float | None,
    max_steps: int,
) -> Problem:
    """Validate the solver options and build the step-size controller."""
    spec = get_solver(solver)
    if not (max_steps >= 1):
        raise SolveError(f"max_steps must be a positive integer, got {max_steps}")
    if spec.adaptive:
        if not (rtol > 0 and atol > 0):
            raise SolveError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
        # Arrays, not floats: a new tolerance is then no recompile of the (eager) solve.
        controller = diffrax.PIDController(rtol=jnp.asarray(rtol), atol=jnp.asarray(atol))
        return Problem(spec, controller, dt0 if dt0 is not None else dt, max_steps, rtol, atol)
    step = dt if dt is not None else dt0
    if step is None or not step > 0:
        raise SolveError(
            f"solver {solver!r} takes fixed steps: give a positive dt (e.g. dt=0.01), "
            "or use an adaptive solver such as 'tsit5'"
        )
    return Problem(spec, diffrax.ConstantStepSize(), float(step), max_steps)




# ----------------------------------------------------------------------------------------------
# The one call into diffrax


@contextlib.contextmanager
def _runtime_errors_as_nan() -> Iterator[None]:
    """Trace equinox's run-time checks as NaN outputs rather than host callbacks, for this block only.

    diffrax checks ``saveat.ts`` at run time with ``equinox.error_if``, which (in equinox's default
    ``EQX_ON_ERROR=raise`` mode) compiles to a host callback, and JAX never writes a program with a
    host callback to its persistent compilation cache. pyanode checks concrete save times itself before
    solving (:func:`pyanode.solve`), and a failed solve under ``jit`` is documented to give non-finite
    outputs, so nothing is lost. A user who set ``EQX_ON_ERROR`` keeps their choice.
    """
    from equinox import _errors

    if getattr(_errors, "EQX_ON_ERROR", None) != "raise":
        yield
        return
    _errors.EQX_ON_ERROR = "nan"
    try:
        yield
    finally:
        _errors.EQX_ON_ERROR = "raise"


def diffeqsolve(*args: Any, **kwargs: Any) -> diffrax.Solution:
    """:func:`diffrax.diffeqsolve`, traced so that the program can be cached (see above)."""
    with _runtime_errors_as_nan():
        return diffrax.diffeqsolve(*args, **kwargs)
