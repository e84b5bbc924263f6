"""Time, memory and accuracy of gradients: pyanode's three sensitivity algorithms vs torchdiffeq.

The problem (the same on both sides, float64): a 4-dimensional state, dy/dt = A y + 0.3 MLP(y) with A a
fixed, slightly damped pair of rotations (so the step count grows with the time span) and MLP a 4-64-64-4
tanh network; the loss is the mean squared distance of the state from 0.5 at 50 saved times; the
gradient is taken with respect to the MLP's weights. Adaptive Tsit5 (pyanode) and dopri5 (torchdiffeq,
its default) with rtol = atol = 1e-6. The time span is chosen for about 10, 100 and 1000 steps.

Measured per configuration:

* time per gradient: warm (compiled) calls, the median of several;
* memory: for JAX, the compiled program's temporary buffers (``memory_analysis().temp_size_in_bytes``;
  every JAX solve sizes its buffers statically from ``max_steps``, which is set to twice the measured
  step count plus 64 for every method); for torch, the growth of the process's peak resident set
  (``VmHWM``, reset just before the first gradient) over the resident size before it, measured in a fresh
  subprocess per configuration (an upper estimate: it includes allocator overhead);
* accuracy: the relative L2 error of the gradient against ``sensealg="checkpoint"`` at rtol = atol =
  1e-10 (the exact gradient of a very accurate discrete solve).

Run: ``python benchmarks/adjoints.py [--json results.json] [--repeats 9]``. Prints a markdown table
(progress on stderr); Linux only (reads /proc for the torch memory figure).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

RTOL = 1e-6
N_SAVE = 50
SPANS = {"~10 steps": 0.33, "~100 steps": 3.3, "~1000 steps": 33.0}
OMEGA = 2 * math.pi


def rotation_matrix() -> np.ndarray:
    w = OMEGA
    return np.array(
        [[-0.02, w, 0, 0], [-w, -0.02, 0, 0], [0, 0, -0.02, 1.7 * w], [0, 0, -1.7 * w, -0.02]],
        dtype=np.float64,
    )


Y0 = np.array([1.0, -0.5, 0.3, 0.8])


def _median_time(fn, repeats: int, budget_s: float = 8.0) -> float:
    """Median wall time of warm calls (at least 2, at most ``repeats``, within about ``budget_s``)."""
    times = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 2 or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# ----------------------------------------------------------------------------------------------
# JAX / pyanode side


def _field(t, y, args):
    net, a = args
    return a @ y + 0.3 * net(y)


def make_mlp():
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    mlp = eqx.nn.MLP(4, 4, 64, 2, activation=jnp.tanh, key=jax.random.PRNGKey(0))
    return jax.tree_util.tree_map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, mlp)


def jax_side(repeats: int) -> tuple[list[dict], dict[str, list[float]], dict]:
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import pyanode

    mlp = make_mlp()
    params, static = eqx.partition(mlp, eqx.is_inexact_array)
    a_matrix = jnp.asarray(rotation_matrix())
    y0 = jnp.asarray(Y0)

    def loss(p, probe, ts, sensealg, checkpointing, rtol, max_steps):
        sol = pyanode.solve(
            _field, y0, ts, args=(eqx.combine(p, static), a_matrix), rtol=rtol, atol=rtol, sensealg=sensealg,
            checkpointing=checkpointing, max_steps=max_steps, nfe_probe=probe,
        )  # fmt: skip
        return jnp.mean((sol.ys - 0.5) ** 2)

    def flat(tree):
        return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])

    rows, references = [], {}
    zero = jnp.zeros(())
    for label, span in SPANS.items():
        ts = jnp.linspace(0.0, span, N_SAVE)
        forward = pyanode.solve(_field, y0, ts, args=(mlp, a_matrix), rtol=RTOL, atol=RTOL, max_steps=100_000)
        steps = int(forward.stats.num_steps)
        max_steps = 2 * steps + 64
        reference = jax.jit(jax.grad(loss), static_argnums=(3, 4, 5, 6))(
            params, zero, ts, "checkpoint", False, 1e-10, 100_000
        )
        references[label] = flat(reference).tolist()
        n_ckpt = math.isqrt(max_steps) + 1
        variants = [
            ("checkpoint", "checkpoint", False),
            ("interpolating", "interpolating", False),
            ("interpolating, checkpoints at ts", "interpolating", True),
            (f"interpolating, {n_ckpt} checkpoints", "interpolating", n_ckpt),
            ("backsolve", "backsolve", False),
        ]
        for name, sensealg, checkpointing in variants:
            grad = jax.grad(loss, argnums=(0, 1))
            compiled = (
                jax.jit(grad, static_argnums=(3, 4, 5, 6))
                .lower(params, zero, ts, sensealg, checkpointing, RTOL, max_steps)
                .compile()
            )
            temp = compiled.memory_analysis().temp_size_in_bytes
            g, nfe_backward = jax.block_until_ready(compiled(params, zero, ts))
            seconds = _median_time(
                lambda c=compiled, ts=ts: jax.block_until_ready(c(params, zero, ts)), repeats
            )
            ref = np.asarray(references[label])
            rows.append(
                {
                    "size": label,
                    "steps": steps,
                    "method": f"pyanode {name}",
                    "ms_per_gradient": 1e3 * seconds,
                    "memory_bytes": int(temp),
                    "memory_kind": "XLA temp buffers",
                    "rel_error": float(np.linalg.norm(flat(g) - ref) / np.linalg.norm(ref)),
                    "nfe_backward": int(nfe_backward),
                }
            )
            print(f"  {label:12s} {rows[-1]['method']:45s} {1e3 * seconds:9.2f} ms", file=sys.stderr)
    return rows, references, _mlp_arrays(mlp)


def _mlp_arrays(mlp) -> dict[str, np.ndarray]:
    out = {}
    for i, layer in enumerate(mlp.layers):
        out[f"w{i}"] = np.asarray(layer.weight)
        out[f"b{i}"] = np.asarray(layer.bias)
    return out


# ----------------------------------------------------------------------------------------------
# torch side (one subprocess per configuration, for a clean peak-memory reading)


def _proc_status_bytes(field: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux: writing 5 to clear_refs), so the peak is this run's."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def torch_worker(config: dict) -> dict:
    import torch
    import torchdiffeq

    torch.set_default_dtype(torch.float64)
    weights = np.load(config["weights"])

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l0 = torch.nn.Linear(4, 64)
            self.l1 = torch.nn.Linear(64, 64)
            self.l2 = torch.nn.Linear(64, 4)
            with torch.no_grad():
                for i, layer in enumerate((self.l0, self.l1, self.l2)):
                    layer.weight.copy_(torch.from_numpy(weights[f"w{i}"]))
                    layer.bias.copy_(torch.from_numpy(weights[f"b{i}"]))
            self.register_buffer("a", torch.from_numpy(rotation_matrix()))

        def forward(self, t, y):
            net = self.l2(torch.tanh(self.l1(torch.tanh(self.l0(y)))))
            return y @ self.a.T + 0.3 * net

    field = Field()
    y0 = torch.from_numpy(Y0)
    ts = torch.linspace(0.0, config["span"], N_SAVE)
    solve = torchdiffeq.odeint_adjoint if config["method"] == "odeint_adjoint" else torchdiffeq.odeint
    params = list(field.parameters())

    def gradient():
        ys = solve(field, y0, ts, rtol=RTOL, atol=RTOL, method="dopri5")
        loss = torch.mean((ys - 0.5) ** 2)
        return torch.autograd.grad(loss, params)

    baseline = _proc_status_bytes("VmRSS")
    _reset_peak_rss()
    started = time.perf_counter()
    grads = gradient()
    first = time.perf_counter() - started
    peak = _proc_status_bytes("VmHWM")
    # torch compiles nothing, so a first call that is already slow counts as a timing.
    seconds = first if first > 5.0 else _median_time(gradient, config["repeats"], budget_s=10.0)
    flat = np.concatenate([g.detach().numpy().ravel() for g in grads])
    ref = np.asarray(config["reference"])
    return {
        "ms_per_gradient": 1e3 * seconds,
        "memory_bytes": max(0, peak - baseline),
        "memory_kind": "peak RSS growth",
        "rel_error": float(np.linalg.norm(flat - ref) / np.linalg.norm(ref)),
    }


def torch_side(weights: dict, references: dict, steps: dict, repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "weights.npz")
        np.savez(path, **weights)
        for label, span in SPANS.items():
            for method in ("odeint", "odeint_adjoint"):
                config = {
                    "weights": path, "span": span, "method": method, "repeats": repeats,
                    "reference": references[label],
                }  # fmt: skip
                proc = subprocess.run(
                    [sys.executable, __file__, "--torch-worker", json.dumps(config)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(
                    {"size": label, "steps": steps[label], "method": f"torchdiffeq {method}", **result}
                )
                print(
                    f"  {label:12s} {rows[-1]['method']:45s} {result['ms_per_gradient']:9.2f} ms",
                    file=sys.stderr,
                )
    return rows


# ----------------------------------------------------------------------------------------------


def markdown(rows: list[dict]) -> str:
    lines = [
        "| steps | method | ms / gradient | speed-up vs `odeint_adjoint` | time vs backsolve | memory (KiB) "
        "| gradient rel. error | backward NFE |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size in SPANS:
        group = sorted(
            (r for r in rows if r["size"] == size),
            key=lambda r: (r["method"].startswith("torch"), r["method"]),
        )
        ms = {r["method"]: r["ms_per_gradient"] for r in group}
        for r in group:
            memory = f"{r['memory_bytes'] / 1024:.0f}" + (
                "" if r["memory_kind"].startswith("XLA") else " (RSS)"
            )
            lines.append(
                f"| {r['steps']} | {r['method'].removeprefix('pyanode ')} | {r['ms_per_gradient']:.1f} "
                f"| {ms['torchdiffeq odeint_adjoint'] / r['ms_per_gradient']:.0f}x "
                f"| {r['ms_per_gradient'] / ms['pyanode backsolve']:.2f} | {memory} | {r['rel_error']:.1e} "
                f"| {r.get('nfe_backward', '')} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--repeats", type=int, default=5, help="warm calls per timing (median)")
    parser.add_argument("--torch-worker", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.torch_worker:
        print(json.dumps(torch_worker(json.loads(opts.torch_worker))))
        return

    started = time.perf_counter()
    jax_rows, references, weights = jax_side(opts.repeats)
    steps = {r["size"]: r["steps"] for r in jax_rows}
    rows = jax_rows + torch_side(weights, references, steps, opts.repeats)
    rows.sort(key=lambda r: (list(SPANS).index(r["size"]), r["method"]))
    print(markdown(rows))
    print(f"\n(total benchmark time {time.perf_counter() - started:.0f} s)")
    if opts.json:
        folder = os.path.dirname(os.path.abspath(opts.json))
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as fh:
            json.dump(rows, fh, indent=2)
        os.replace(fh.name, opts.json)


if __name__ == "__main__":
    main()
