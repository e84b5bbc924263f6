"""Seconds of one ``pyanode.fit`` + ``predict`` per suite series, cold (empty compilation cache) and warm
(the same fit again in a new process, reading the cache), for the code in a given source tree.

Each fit runs in its own process, so a cold fit pays everything a user's first fit pays: importing,
tracing and compiling; the seconds JAX reports spending on the latter two, and how many programs XLA
compiled, are given beside the fit's.
To compare two versions side by side, give both source trees; their fits are interleaved series by
series, so that a machine's changing load falls on both alike::

    python benchmarks/fit_seconds.py --tree OLD_TREE --tree . --json benchmarks/results/fit_seconds.json

The training rows are each series' first origin of ``benchmarks/forecast_accuracy.py`` (the rows before
its first test window); the forecast covers that window's dates, and the fit is told that horizon, as
``benchmarks/forecast_accuracy.py`` tells it (and the command does).

With ``--shift K`` the warm fit is of another series of the same frequency and size: the same rows but
the first ``K`` (the same forecast window), so other values and, where the structure finds a cycle of the
data's own length, another period. It measures what a user's next series costs once the cache holds the
first's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from forecast_accuracy import load_series, suite_dir  # noqa: E402

SERIES = ("airpassengers_monthly", "ausbeer_quarterly", "seattle_weather_daily", "sf_temps_hourly")

FIT = """
import sys, time, pandas as pd
t0 = time.perf_counter()
import jax.monitoring
compiling = []  # (event, seconds) tracing, lowering and XLA-compiling each program, as JAX reports them
def heard(event, seconds, **kw):
    if event.startswith("/jax/core/compile/"):
        compiling.append((event, seconds))
jax.monitoring.register_event_duration_secs_listener(heard)
import pyanode
df = pd.read_pickle(sys.argv[1]); dates = pd.read_pickle(sys.argv[2])
t1 = time.perf_counter()
n = len(compiling)
fc = pyanode.fit(df, progress=False, horizon=len(dates))
fc.predict(dates=dates)
ours = compiling[n:]
print(round(t1 - t0, 3), round(time.perf_counter() - t1, 3), round(sum(s for _, s in ours), 3),
      sum(e.endswith("backend_compile_duration") for e, _ in ours))
"""


def _time_fit(tree: Path, train: Path, dates: Path, cache: Path) -> tuple[float, float, float, int]:
    """Seconds to import, to fit and forecast, and of the latter compiling (tracing, lowering, XLA), and
    how many programs XLA compiled (none when all were read from the cache)."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYANODE_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", FIT, str(train), str(dates)], env=env, capture_output=True,
                         text=True, check=True, cwd=tempfile.gettempdir())
    import_s, fit_s, compile_s, programs = out.stdout.split()[-4:]
    return float(import_s), float(fit_s), float(compile_s), int(programs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", type=Path, required=True, help="source tree (repeatable)")
    ap.add_argument("--series", default=",".join(SERIES))
    ap.add_argument("--shift", type=int, default=0,
                    help="the warm fit leaves out this many first rows (another series of the same size)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    folder = suite_dir()
    specs = {s["name"]: s for s in json.loads((folder / "suite.json").read_text())["series"]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.series.split(","):
            df, bounds = load_series(specs[name], folder)
            start, stop = bounds[0]
            train, dates = Path(tmp, f"{name}.pkl"), Path(tmp, f"{name}-dates.pkl")
            df.iloc[:start].to_pickle(train)
            df.index[start:stop].to_series().to_pickle(dates)
            train2 = Path(tmp, f"{name}-shifted.pkl")
            df.iloc[args.shift : start].to_pickle(train2)
            for k, tree in enumerate(args.tree):
                cache = Path(tmp, f"cache-{name}-{k}")
                cold = _time_fit(tree.resolve(), train, dates, cache)
                warm = _time_fit(tree.resolve(), train2, dates, cache)
                row = {"series": name, "tree": str(k), "rows": start, "shift": args.shift,
                       "import_s": cold[0], "cold_fit_s": cold[1], "cold_compile_s": cold[2],
                       "cold_programs": cold[3],
                       "warm_fit_s": warm[1], "warm_compile_s": warm[2], "warm_programs": warm[3]}
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
