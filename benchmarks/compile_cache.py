"""Wall time of `pyanode forecast` with JAX's persistent compilation cache: cold, warm, and on other data.

Runs the real command in fresh processes, one after another, with a new empty cache folder:

1. `pyanode forecast --example delhi` with an empty cache (compiles everything);
2. the same command again (the programs come from the cache);
3. `pyanode forecast OTHER.csv`: a different file with the same columns and frequency (Delhi's rows from
   2013-03-01 to 2016-10-01, 1,310 days: other dates, other values, another length), warm cache;
4. the same file with an empty cache of its own, for comparison;
5. `pyanode forecast --example delhi` with the cache turned off (`PYANODE_CACHE_DIR=off`).

    python benchmarks/compile_cache.py [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], cache: str, cwd: Path) -> float:
    env = dict(os.environ, PYANODE_CACHE_DIR=cache)
    start = time.perf_counter()
    command = [sys.executable, "-m", "pyanode", "forecast", *args, "--quiet", "--force"]
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1, help="repeat the whole sequence and report medians")
    a = ap.parse_args()
    from pyanode.datasets import delhi_climate

    rows: dict[str, list[float]] = {}
    for _ in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            train, _ = delhi_climate()
            train.loc["2013-03-01":"2016-10-01"].to_csv(tmp / "other.csv")
            cache, other_cache = str(tmp / "cache"), str(tmp / "other-cache")
            steps = [
                ("delhi, empty cache", ["--example", "delhi"], cache),
                ("delhi again, warm cache", ["--example", "delhi"], cache),
                ("other.csv, warm cache (from delhi)", ["other.csv"], cache),
                ("other.csv, empty cache", ["other.csv"], other_cache),
                ("delhi, cache off", ["--example", "delhi"], "off"),
            ]
            for name, args, where in steps:
                rows.setdefault(name, []).append(run(args, where, tmp))
    first = statistics.median(rows["delhi, empty cache"])
    print(f"{'run':40s} {'wall s':>8s} {'/ first':>8s}")
    for name, secs in rows.items():
        s = statistics.median(secs)
        print(f"{name:40s} {s:8.1f} {s / first:8.2f}")


if __name__ == "__main__":
    main()
