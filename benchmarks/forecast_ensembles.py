"""Does an ensemble pay on the forecast suite? pyanode's defaults fitted with several seeds, and the
ensembles one could build from them, scored as ``forecast_accuracy.py`` scores a method.

Issue 11 asks for variance reduced by ensembling (several seeds or configurations, combined by median) if it
pays on the suite. For each series and origin of the suite (the protocol of ``forecast_accuracy.py``), this
fits ``pyanode.fit(train, horizon=len(test), seed=s)`` for every seed ``s`` and forecasts the test dates with
the fitted model and with its learned vector field switched off (the closed-form structure and the learned
linear decay). Scored, by MASE with M4's scale:

* each seed alone;
* the mean and the median of the seeds' forecasts (an ensemble of seeds; costs one fit per seed);
* the first seed's forecast averaged with its own field-off forecast (the learned part shrunk by half,
  which costs nothing extra);
* the first seed's field-off forecast.

The peers' MASE (for the win counts) come from ``forecast_accuracy.py``'s cache.

    python benchmarks/forecast_ensembles.py [--seeds 0,1,2] [--series name,...]
        [--peers benchmarks/results/forecast_accuracy.json] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forecast_accuracy as fa  # noqa: E402

PEERS = ("snaive", "autoets", "autotheta", "autoarima", "mstl", "prophet")


def fit_seeds(train, dates, seeds: list[int]) -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    """Each seed's forecast of ``dates`` and its field-off forecast, and the seconds of each fit."""
    import pyanode
    from pyanode.forecast.fitting import field_scaled

    cols = list(train.columns)
    preds, offs, secs = [], [], []
    for seed in seeds:
        start = time.perf_counter()
        fc = pyanode.fit(train, progress=False, horizon=len(dates), seed=seed)
        preds.append(fc.predict(dates=dates)[cols].to_numpy(np.float64))
        secs.append(time.perf_counter() - start)
        fc.model = field_scaled(fc.model, 0.0)
        offs.append(fc.predict(dates=dates)[cols].to_numpy(np.float64))
    return preds, offs, secs


def variants(preds: list[np.ndarray], offs: list[np.ndarray], seeds: list[int]) -> dict[str, np.ndarray]:
    """The forecasts compared: each seed, the seeds' mean and median, seed 0 half-shrunk, seed 0 field off."""
    out = {f"seed {s}": p for s, p in zip(seeds, preds, strict=True)}
    out["mean of seeds"] = np.mean(preds, axis=0)
    out["median of seeds"] = np.median(preds, axis=0)
    out["field halved"] = (preds[0] + offs[0]) / 2
    out["field off"] = offs[0]
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--series", default="", help="comma-separated suite names (default all)")
    p.add_argument("--peers", type=Path, default=Path(__file__).parent / "results" / "forecast_accuracy.json")
    p.add_argument("--json", type=Path, help="write the scores here")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    folder = fa.suite_dir()
    specs = json.loads((folder / "suite.json").read_text())["series"]
    names = [s for s in args.series.split(",") if s] or [s["name"] for s in specs]
    peers = json.loads(args.peers.read_text())["results"] if args.peers.exists() else {}
    scores: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, list[float]] = {}
    for spec in (s for s in specs if s["name"] in names):
        df, bounds = fa.load_series(spec, folder)
        for b in bounds:
            train, dates = df.iloc[: b[0]], df.index[b[0] : b[1]]
            preds, offs, secs = fit_seeds(train, dates, seeds)
            seconds.setdefault(spec["name"], []).extend(secs)
            for name, pred in variants(preds, offs, seeds).items():
                mase = fa.score_origin(df, b, spec["season"], pred)["mase"]
                scores.setdefault(spec["name"], {}).setdefault(name, []).append(mase)
        print(spec["name"], {k: round(float(np.mean(v)), 3) for k, v in scores[spec["name"]].items()},
              flush=True)
    table = {s: {k: float(np.mean(v)) for k, v in d.items()} for s, d in scores.items()}
    kinds = list(next(iter(table.values())))
    lines = ["| series | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
    lines += [f"| {s} | " + " | ".join(f"{row[k]:.3f}" for k in kinds) + " |" for s, row in table.items()]
    means = {k: float(np.mean([row[k] for row in table.values()])) for k in kinds}
    lines.append("| **mean MASE** | " + " | ".join(f"{means[k]:.3f}" for k in kinds) + " |")
    wins = {k: {m: sum(row[k] < peers[s][m]["mase"] for s, row in table.items() if m in peers.get(s, {}))
                for m in PEERS} for k in kinds}
    if peers:
        lines += ["", "Series won against each peer (of " + str(len(table)) + "):", "",
                  "| forecast | " + " | ".join(PEERS) + " |", "|---|" + "---:|" * len(PEERS)]
        lines += [f"| {k} | " + " | ".join(str(wins[k][m]) for m in PEERS) + " |" for k in kinds]
    print("\n".join(lines))
    out = {"seeds": seeds, "mase": table, "mean_mase": means, "wins": wins,
           "fit_seconds": {s: float(np.sum(v)) for s, v in seconds.items()}}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
