"""``pyanode solve-demo``: a tiny solve that shows the engine, its accuracy and its statistics."""

from __future__ import annotations

import typer

from pyanode.cli import app


@app.command("solve-demo")
def solve_demo(
    solver: str = typer.Option("tsit5", help="Solver name, e.g. tsit5, dopri5, kvaerno5."),
    rtol: float = typer.Option(1e-6, help="Relative tolerance."),
    atol: float = typer.Option(1e-6, help="Absolute tolerance."),
) -> None:
    """Solve a harmonic oscillator over ten periods and compare with the exact solution."""
    import jax.numpy as jnp
    import numpy as np

    from pyanode.engine import solve

    def f(t, y, args):
        return jnp.stack([y[1], -y[0]])

    ts = jnp.linspace(0.0, 20 * np.pi, 11)
    sol = solve(f, jnp.array([1.0, 0.0]), ts, solver=solver, rtol=rtol, atol=atol)
    exact = np.stack([np.cos(np.asarray(ts)), -np.sin(np.asarray(ts))], axis=1)
    err = float(np.max(np.abs(np.asarray(sol.ys) - exact)))
    typer.echo(
        f"harmonic oscillator y'' = -y over ten periods with {solver}, rtol={rtol:g}, atol={atol:g}"
    )
    typer.echo(f"max |error| vs cos/sin: {err:.2e}")
    typer.echo("stats: " + ", ".join(f"{k}={v}" for k, v in sol.stats.as_dict().items()))
