"""One process of the multi-process panel test (tests/test_forecast_panel.py), run as a script:

    python tests/panel_worker.py NUM_PROCESSES PROCESS_ID PORT OUT.npz [DEVICES]

With more than one process, joins the others through ``jax.distributed.initialize`` (CPU collectives)
and trains data-parallel over every process's device; with one, trains on ``DEVICES`` of its own
(default: one, not sharded). Fits the same small panel for a few iterations in float64 and writes the
trained parameters (process 0).
"""

import sys

import jax
import numpy as np
import pandas as pd

PANEL_ITERATIONS = 4


def panel() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        dates = pd.date_range("2015-01-01", periods=60 + 6 * i, freq="MS")
        y = 10 + i + np.sin(2 * np.pi * dates.month / 12) + rng.normal(0, 0.3, len(dates))
        rows += [(f"s{i}", d, v) for d, v in zip(dates, y, strict=True)]
    return pd.DataFrame(rows, columns=["id", "date", "y"])


def main(processes: int, process_id: int, port: str, out: str, devices: int | None = None) -> None:
    jax.config.update("jax_enable_x64", True)
    if processes > 1:
        jax.distributed.initialize(f"localhost:{port}", num_processes=processes, process_id=process_id)
    import pyanode

    fc = pyanode.fit(panel(), id_column="id", iterations=PANEL_ITERATIONS, batch=4, validation=0,
                     horizon=6, progress=False, devices=len(jax.devices()) if processes > 1 else devices)
    if process_id == 0:
        leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(fc.model) if hasattr(x, "shape")]
        np.savez(out, *leaves)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4],
         int(sys.argv[5]) if len(sys.argv) > 5 else None)
