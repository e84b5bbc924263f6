"""Work-precision of the continuous adjoints: interpolating vs backsolve at equal gradient accuracy.

Backsolve (Chen et al. 2018; torchdiffeq's ``odeint_adjoint``) recovers the forward state y(t) by solving
the ODE backwards in time together with the adjoint. When the forward dynamics contract (damping, a
stable equilibrium: most fitted models), the backward reconstruction is unstable: a local error made at
time t grows like exp(damping x (t - t0)) on the way back, so backsolve's gradient error stalls far above
its tolerance, or needs a much tighter tolerance (more steps) to reach a given accuracy. The interpolating
adjoint reads y(t) from the forward solve's dense output and has no such error growth.

Problem (float64): a 4-dimensional state, dy/dt = A y + 0.3 MLP(y), where A is a pair of rotations with
damping ``--damping`` (1.0 by default: the state contracts by e^-1 per time unit) and MLP a 4-64-64-4 tanh
network; the loss is the mean squared distance of the state from 0.5 at 50 saved times on [0, span];
the gradient is taken with respect to the MLP's weights. Tsit5 with rtol = atol = tol for tol in a sweep;
the reference gradient is ``sensealg="checkpoint"`` at rtol = atol = 1e-12.

For each method and tolerance: the relative L2 error of the gradient, the median time per warm gradient
and the backward NFE. Then, for a few target accuracies, the fastest tolerance of each method that meets
the target and the time ratio backsolve / interpolating ("at equal accuracy").

    python benchmarks/adjoint_accuracy.py [--span 10] [--damping 1.0] [--plot work_precision.png]
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time

import numpy as np
from adjoints import _median_time  # the same warm-call timing as the main adjoint benchmark

TOLERANCES = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
TARGETS = (1e-2, 1e-4, 1e-6)
METHODS = ("interpolating", "backsolve")


def system_matrix(slow: float, fast: float) -> np.ndarray:
    """Two rotations (frequencies 1 and 1.7), decaying at rates ``slow`` and ``fast``."""
    w, a, b = 2 * math.pi, -slow, -fast
    return np.array([[a, w, 0, 0], [-w, a, 0, 0], [0, 0, b, 1.7 * w], [0, 0, -1.7 * w, b]], dtype=np.float64)


def measure(span: float, damping: tuple[float, float], saves: int) -> list[dict]:
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import pyanode

    mlp = eqx.nn.MLP(4, 4, 64, 2, activation=jnp.tanh, key=jax.random.PRNGKey(0))
    mlp = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, mlp)
    params, static = eqx.partition(mlp, eqx.is_inexact_array)
    a_matrix = jnp.asarray(system_matrix(*damping))
    y0 = jnp.array([1.0, -0.5, 0.3, 0.8])
    ts = jnp.linspace(0.0, span, saves)

    def field(t, y, args):
        net, a = args
        return a @ y + 0.3 * net(y)

    def loss(p, probe, sensealg, tol):
        sol = pyanode.solve(
            field, y0, ts, args=(eqx.combine(p, static), a_matrix), rtol=tol, atol=tol, sensealg=sensealg,
            max_steps=100_000, nfe_probe=probe,
        )  # fmt: skip
        return jnp.mean((sol.ys - 0.5) ** 2)

    def flat(tree) -> np.ndarray:
        return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])

    zero = jnp.zeros(())
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=(2, 3))
    reference = flat(grad(params, zero, "checkpoint", 1e-12)[0])
    rows = []
    for method in METHODS:
        for tol in TOLERANCES:
            g, nfe = jax.block_until_ready(grad(params, zero, method, tol))
            call = functools.partial(grad, params, zero, method, tol)
            seconds = _median_time(lambda c=call: jax.block_until_ready(c()), 7, 5.0)
            error = float(np.linalg.norm(flat(g) - reference) / np.linalg.norm(reference))
            rows.append({"method": method, "tol": tol, "ms": 1e3 * seconds, "error": error, "nfe": int(nfe)})
            print(f"  {method:14s} tol {tol:.0e}: error {error:.1e}, {1e3 * seconds:8.2f} ms, "
                  f"backward NFE {int(nfe)}", file=sys.stderr)  # fmt: skip
    return rows


def cheapest(rows: list[dict], method: str, target: float) -> dict | None:
    """The fastest run of ``method`` whose gradient error is at most ``target`` (None if none is)."""
    ok = [r for r in rows if r["method"] == method and r["error"] <= target]
    return min(ok, key=lambda r: r["ms"]) if ok else None


def markdown(rows: list[dict]) -> str:
    lines = [
        "| tol | interpolating error | ms | NFE | backsolve error | ms | NFE |",
        "|---|---|---|---|---|---|---|",
    ]
    by = {(r["method"], r["tol"]): r for r in rows}
    for tol in TOLERANCES:
        i, b = by["interpolating", tol], by["backsolve", tol]
        lines.append(
            f"| {tol:.0e} | {i['error']:.1e} | {i['ms']:.1f} | {i['nfe']} "
            f"| {b['error']:.1e} | {b['ms']:.1f} | {b['nfe']} |"
        )
    lines += [
        "",
        "| target error | interpolating: tol, ms | backsolve: tol, ms | backsolve / interpolating |",
        "|---|---|---|---|",
    ]
    for target in TARGETS:
        i, b = cheapest(rows, "interpolating", target), cheapest(rows, "backsolve", target)
        cells = [f"{r['tol']:.0e}, {r['ms']:.1f}" if r else "not reached" for r in (i, b)]
        ratio = f"{b['ms'] / i['ms']:.1f}x" if (i and b) else ("interpolating only" if i else "-")
        lines.append(f"| {target:.0e} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for method, style in zip(METHODS, ("o-", "s--"), strict=True):
        rs = [r for r in rows if r["method"] == method]
        ax.loglog([r["ms"] for r in rs], [r["error"] for r in rs], style, label=method)
        for r in rs[::2]:
            ax.annotate(f"{r['tol']:.0e}", (r["ms"], r["error"]), fontsize=7, xytext=(4, 2),
                        textcoords="offset points")  # fmt: skip
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("ms per gradient (log scale)")
    ax.set_ylabel("relative gradient error")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--span", type=float, default=10.0, help="time span of the 50 saved times")
    parser.add_argument("--damping", default="0.1,2", help="decay rates of the two rotations: SLOW,FAST")
    parser.add_argument("--saves", type=int, default=2, help="saved times in the loss (2: t0 and the end)")
    parser.add_argument("--plot", help="write the work-precision diagram to this PNG")
    opts = parser.parse_args()
    started = time.perf_counter()
    damping = tuple(float(x) for x in opts.damping.split(","))
    rows = measure(opts.span, damping, opts.saves)
    print(markdown(rows))
    print(f"\n(total benchmark time {time.perf_counter() - started:.0f} s)")
    if opts.plot:
        title = f"Work-precision: decay rates {opts.damping}, span {opts.span:g}, {opts.saves} saved times"
        plot(rows, opts.plot, title)


if __name__ == "__main__":
    main()
