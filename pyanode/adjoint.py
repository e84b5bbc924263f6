"""Continuous adjoints for the engine: interpolating (SciML's InterpolatingAdjoint) and backsolve.

TEMPORARY: both names currently route to diffrax's own adjoints while the real implementation is
written; see the engine issue.
"""

from __future__ import annotations

from typing import Any

import diffrax
import jax

from pyanode import engine


def solve_continuous(
    sensealg: str,
    f: Any,
    y0: jax.Array,
    args: Any,
    t0: jax.Array,
    ts: jax.Array,
    problem: engine.Problem,
    dense: bool,
    checkpointing: bool,
    nfe_probe: jax.Array | None,
) -> tuple[diffrax.Solution, jax.Array, engine.Stats]:
    """Forward solve whose reverse mode is the continuous adjoint named by ``sensealg``."""
    adj = (
        diffrax.BacksolveAdjoint()
        if sensealg == "backsolve"
        else diffrax.RecursiveCheckpointAdjoint()
    )
    sol = engine._diffeqsolve(f, y0, args, t0, ts, problem, adj, dense)
    stats = engine.Stats(
        sol.stats["num_accepted_steps"],
        sol.stats["num_rejected_steps"],
        engine.forward_nfe(problem.spec, sol.stats["num_steps"]),
    )
    ys = sol.ys
    if nfe_probe is not None:
        ys = engine.attach_backward_nfe(ys, nfe_probe, stats.nfe_forward)
    return sol, ys, stats
