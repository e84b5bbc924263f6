"""2-D concentric spheres: pyanode (JAX) against the paper's stack (PyTorch + torchdiffeq), side by side.

Both train the same ANODE (augment 1, the reference's MLP vector field of width 32 with time input, linear
read-out) from the same initial weights, on the same minibatches, with dopri5 at rtol = atol = 1e-3,
smooth-L1 loss and Adam (lr 1e-3). pyanode runs its real training loop (`pyanode.train.train`, one jitted
step with forward and backward NFE); torchdiffeq runs `odeint` (backpropagation through the solver, the
reference code's default) in the usual PyTorch loop. Reported: median warm time per iteration, the ratio,
the loss on the whole data set after the same number of iterations, and the mean forward NFE.

    python benchmarks/spheres.py [--iterations 300] [--batch-sizes 64,256] [--threads 1] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def make_models(seed: int):
    import jax

    from pyanode.models import ODENet

    return ODENet(
        2,
        32,
        1,
        augment_dim=1,
        time_dependent=True,
        solver="dopri5",
        rtol=1e-3,
        atol=1e-3,
        sensealg="checkpoint",
        key=jax.random.PRNGKey(seed),
    )


def torch_model(jax_model):
    """The same network in PyTorch, with the JAX model's initial weights copied in."""
    import torch
    from torch import nn

    class ODEFunc(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.fc1 = nn.Linear(dim + 1, hidden)
            self.fc2 = nn.Linear(hidden, hidden)
            self.fc3 = nn.Linear(hidden, dim)
            self.nfe = 0

        def forward(self, t, h):
            self.nfe += 1
            tt = torch.ones_like(h[:, :1]) * t
            x = torch.relu(self.fc1(torch.cat([tt, h], 1)))
            x = torch.relu(self.fc2(x))
            return self.fc3(x)

    class ANODE(nn.Module):
        def __init__(self):
            super().__init__()
            self.func = ODEFunc(3, 32)
            self.readout = nn.Linear(3, 1)

        def forward(self, x):
            from torchdiffeq import odeint

            h0 = torch.cat([x, torch.zeros(x.shape[0], 1)], 1)
            ts = torch.tensor([0.0, 1.0])
            hT = odeint(self.func, h0, ts, method="dopri5", rtol=1e-3, atol=1e-3)[-1]
            return self.readout(hT)

    net = ANODE()
    layers = jax_model.block.func.layers
    with torch.no_grad():
        for tl, jl in zip((net.func.fc1, net.func.fc2, net.func.fc3), layers, strict=True):
            tl.weight.copy_(torch.tensor(np.asarray(jl.weight)))
            tl.bias.copy_(torch.tensor(np.asarray(jl.bias)))
        net.readout.weight.copy_(torch.tensor(np.asarray(jax_model.readout_layer.weight)))
        net.readout.bias.copy_(torch.tensor(np.asarray(jax_model.readout_layer.bias)))
    return net


def batches(n: int, batch: int, iterations: int, seed: int):
    """The minibatch order of pyanode.train.train (a permutation per epoch, remainder dropped)."""
    rng = np.random.default_rng(seed)
    order = np.empty(0, dtype=np.int64)
    for _ in range(iterations):
        if order.shape[0] < batch:
            order = rng.permutation(n)
        idx, order = order[:batch], order[batch:]
        yield idx


def run_torch(net, x, y, batch, iterations, seed):
    import torch

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.tensor(x), torch.tensor(y)
    times, nfes = [], []
    for idx in batches(len(x), batch, iterations, seed):
        t0 = time.perf_counter()
        ii = torch.as_tensor(idx)
        net.func.nfe = 0
        pred = net(xt[ii])
        loss = torch.nn.functional.smooth_l1_loss(pred, yt[ii])
        nfes.append(net.func.nfe)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        final = float(torch.nn.functional.smooth_l1_loss(net(xt), yt))
    return np.array(times), final, float(np.mean(nfes))


def run_pyanode(model, x, y, batch, iterations, seed):
    import jax.numpy as jnp

    from pyanode.train import LOSSES, train

    r = train(
        model,
        x,
        y,
        iterations=iterations,
        batch_size=batch,
        lr=1e-3,
        loss="smooth_l1",
        seed=seed,
        progress=False,
    )
    times = np.diff(np.concatenate([[0.0], r.history["seconds"].to_numpy()]))
    final = float(LOSSES["smooth_l1"](r.final_model(jnp.asarray(x)), jnp.asarray(y)))
    return times, final, float(r.history["nfe_forward"].mean())


def step_only(model, x, y, batch, repeats=50):
    """Profile: the jitted step alone on one fixed batch (no host loop), median seconds per call."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from pyanode import train as T

    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = T._adam()
    state = opt.init(params)
    best = (params, jnp.asarray(jnp.inf), jnp.asarray(0, jnp.int32))
    step = T._compiled_step(static, opt, "smooth_l1", None, True)
    xb, yb = jnp.asarray(x[:batch]), jnp.asarray(y[:batch])
    out = step(params, state, best, jnp.asarray(1), xb, yb)
    jax.block_until_ready(out)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(step(params, state, best, jnp.asarray(1), xb, yb))
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument(
        "--threads", type=int, default=1, help="PyTorch intra-op threads (1 was fastest here)"
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    args = parser.parse_args()

    import jax
    import torch

    import pyanode
    from pyanode.datasets import spheres

    torch.set_num_threads(args.threads)
    data = spheres(seed=0)
    warm = min(20, args.iterations // 4)
    print(
        f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), pyanode {pyanode.__version__}"
    )
    print(
        f"2-D spheres, {len(data)} points, ANODE augment 1, dopri5 rtol=atol=1e-3, Adam 1e-3, "
        f"{args.iterations} iterations, median over iterations {warm + 1}..{args.iterations}"
    )
    seeds = [int(v) for v in args.seeds.split(",")]
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        tj_all, tt_all, lj_all, lt_all, nj_all, nt_all = [], [], [], [], [], []
        for seed in seeds:
            jm = make_models(seed)
            tm = torch_model(jm)
            tj, lj, nj = run_pyanode(jm, data.x, data.y, batch, args.iterations, seed)
            tt, lt, nt = run_torch(tm, data.x, data.y, batch, args.iterations, seed)
            tj_all.append(tj[warm:])
            tt_all.append(tt[warm:])
            lj_all.append(lj)
            lt_all.append(lt)
            nj_all.append(nj)
            nt_all.append(nt)
        sj = step_only(jm, data.x, data.y, batch)
        mj, mt = np.median(np.concatenate(tj_all)), np.median(np.concatenate(tt_all))
        rows.append((batch, mj, mt, mt / mj, lj_all, lt_all, np.mean(nj_all), np.mean(nt_all), sj))
    print()
    print(f"seeds {seeds} (initial weights and minibatch order); losses: mean (min..max) over seeds")
    print(
        "| batch | pyanode ms/it | torchdiffeq ms/it | speed-up | pyanode loss | torchdiffeq loss "
        "| pyanode NFE | torchdiffeq NFE | pyanode jitted step alone ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    def fmt(v):
        return f"{np.mean(v):.4f} ({np.min(v):.4f}..{np.max(v):.4f})"

    for b, mj, mt, ratio, lj, lt, nj, nt, sj in rows:
        print(
            f"| {b} | {1e3 * mj:.2f} | {1e3 * mt:.2f} | {ratio:.2f}x | {fmt(lj)} | {fmt(lt)} | {nj:.1f} | "
            f"{nt:.1f} | {1e3 * sj:.2f} |"
        )
    # Same seed = same initial weights and minibatches on both sides, so compare losses seed by seed.
    print()
    for b, *_, lj, lt, _nj, _nt, _sj in rows:
        diff = np.log(np.asarray(lj)) - np.log(np.asarray(lt))
        spread = np.std(diff, ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        print(
            f"batch {b}: pyanode loss lower on {int(np.sum(diff < 0))} of {len(diff)} seeds; "
            f"geometric mean ratio pyanode / torchdiffeq {np.exp(diff.mean()):.2f} "
            f"(x/ {np.exp(2 * spread):.2f} for 2 standard errors)"
        )


if __name__ == "__main__":
    main()
