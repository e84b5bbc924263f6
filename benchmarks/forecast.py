"""Seconds per training iteration of the Delhi forecaster: pyanode vs PyTorch + torchdiffeq, side by side.

Same model and data in both: 4 Delhi columns + 2 augmented dimensions, yearly calendar forcing (2 harmonics),
vector field MLP (6 + 4) -> 32 -> 32 -> 6 with tanh, linear encoder of the last 7 days and the 30- and 90-day
means, a batch of 32 windows of 128 days, masked MSE, AdamW with gradient clipping; rtol = 1e-3, atol = 1e-4.
pyanode: Tsit5 with `sensealg="checkpoint"` (the forecaster's default) and with the interpolating adjoint, and
the default end-to-end `fit`; torchdiffeq: dopri5 with `odeint` (backprop through the solver) and
`odeint_adjoint`. Also times the whole default fit (what `pyanode forecast` does on Delhi).

    python benchmarks/forecast.py [--iterations 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd


def pyanode_seconds(iterations: int, sensealg: str) -> tuple[float, float]:
    from pyanode import fit
    from pyanode.datasets import delhi_climate

    start = time.perf_counter()
    fc = fit(delhi_climate()[0], iterations=iterations, validation=0, sensealg=sensealg, progress=False)
    total = time.perf_counter() - start
    s = fc.history["seconds"].to_numpy()
    return (s[-1] - s[0]) / (len(s) - 1), total  # the first iteration includes compilation


def torch_seconds(iterations: int, adjoint: bool, threads: int) -> float:
    import torch
    from torchdiffeq import odeint, odeint_adjoint

    from pyanode.datasets import delhi_climate
    from pyanode.forecast.data import clean, load_frame
    from pyanode.forecast.grid import GridArrays, days_since_epoch, grid_positions, lag_windows
    from pyanode.forecast.model import Config

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    df, rep = load_frame(delhi_climate()[0])
    df, rep, _, _ = clean(df, rep)
    step, pos, _ = grid_positions(df.index)
    n, aug, L, B, look = 4, 2, 128, 32, 90
    cfg = Config(columns=tuple(df.columns), step_days=step, lookback=look, window=L, periods=(365.25,),
                 epoch_days=float(days_since_epoch(df.index[:1])[0]))
    y = np.full((pos[-1] + 1, n), np.nan)
    y[pos] = ((df - df.mean()) / df.std(ddof=0)).to_numpy()
    arrays = GridArrays(y=y, filled=pd.DataFrame(y).ffill().bfill().to_numpy(),
                        days=cfg.epoch_days + step * np.arange(len(y)))
    lags = torch.tensor(lag_windows(arrays.filled, look), dtype=torch.float32)
    T = len(arrays.y)
    ypad = np.concatenate([arrays.y, np.full((L, n), np.nan)])
    targets = torch.tensor(np.stack([ypad[i : i + L + 1] for i in range(T - 1)]), dtype=torch.float32)
    days = torch.tensor(arrays.days, dtype=torch.float32)
    taus = torch.tensor(cfg.dt * np.arange(L + 1), dtype=torch.float32)
    rate = 1.0 / (8.0 * cfg.dt)

    def feats(t_days):
        w = [2 * math.pi * k / 365.25 for k in (1, 2)]
        return torch.stack([f(wk * t_days) for wk in w for f in (torch.sin, torch.cos)], -1)

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(n + aug + 4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                torch.nn.Linear(32, n + aug))
            self.origin = None

        def forward(self, t, h):
            return rate * self.net(torch.cat([h, feats(self.origin + t * cfg.unit_days)], -1))

    field = Field()
    encoder = torch.nn.Linear(lags.shape[1] * n + 4, n + aug)
    params = list(field.parameters()) + list(encoder.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-4)
    solve = odeint_adjoint if adjoint else odeint
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        idx = torch.randint(0, T - 1, (B,), generator=gen)
        field.origin = days[idx]
        h0 = encoder(torch.cat([lags[idx].reshape(B, -1), feats(days[idx])], -1))
        kw = {"adjoint_params": tuple(field.parameters())} if adjoint else {}
        ys = solve(field, h0, taus, method="dopri5", rtol=1e-3, atol=1e-4, **kw)[..., :n].transpose(0, 1)
        tgt = targets[idx]
        obs = ~torch.isnan(tgt)
        loss = ((ys - torch.nan_to_num(tgt)) ** 2)[obs].mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.mean(times[1:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="PyTorch intra-op threads (1 is fastest here)")
    a = ap.parse_args()
    rows = []
    for sensealg in ("checkpoint", "interpolating"):
        per, total = pyanode_seconds(a.iterations, sensealg)
        rows.append((f"pyanode tsit5, sensealg={sensealg}", per, f"{a.iterations}-iteration fit {total:.1f} s"
                     " incl. compile"))
    rows.append(("torchdiffeq dopri5 odeint", torch_seconds(a.iterations, False, a.threads), ""))
    adj = torch_seconds(max(3, a.iterations // 4), True, a.threads)
    rows.append(("torchdiffeq dopri5 odeint_adjoint", adj, ""))
    odeint = rows[2][1]
    print(f"{'method':45s} {'s/iteration':>12s} {'odeint/this':>12s}")
    for name, sec, note in rows:
        print(f"{name:45s} {sec:12.4f} {odeint / sec:11.1f}x  {note}")
    start = time.perf_counter()
    from pyanode import fit
    from pyanode.datasets import delhi_climate

    fit(delhi_climate()[0], progress=False)
    print(f"default fit on Delhi (what `pyanode forecast` does): {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
