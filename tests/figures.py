"""Test helper: the matplotlib Figure behind each PNG an experiment saves, to check what it plots."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def saved_figures() -> Iterator[dict]:
    """Record each figure an experiment saves, by file name: the matplotlib Figure that made each PNG."""
    import pyanode.plots

    figures = {}
    real = pyanode.plots.save_figure

    def spy(fig, path, **kwargs):
        figures[Path(path).name] = fig
        return real(fig, path, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pyanode.plots, "save_figure", spy)
        yield figures


# What a subprocess's Figure.savefig also writes (JSON beside the run): per axes, its y label, each line's
# label and data (dates as matplotlib date numbers) and how many filled bands it has.
_RECORDER = r"""
import json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.dates as mdates
import numpy as np
from matplotlib.figure import Figure

real = Figure.savefig
folder = os.environ["PYANODE_TEST_FIGURES"]

def as_numbers(values):
    values = np.asarray(values)
    if values.dtype.kind in "fiu":
        return values.astype(float).tolist()
    return [float(v) for v in mdates.date2num(values)]

def spy(self, fname, *args, **kwargs):
    real(self, fname, *args, **kwargs)
    axes = [{"ylabel": ax.get_ylabel(), "bands": len(ax.collections),
             "lines": [{"label": ln.get_label(), "x": as_numbers(ln.get_xdata()),
                        "y": as_numbers(ln.get_ydata())} for ln in ax.lines]} for ax in self.axes]
    k = len(os.listdir(folder))
    with open(os.path.join(folder, f"figure-{k}.json"), "w") as f:
        json.dump({"suptitle": self._suptitle.get_text() if self._suptitle else "", "axes": axes}, f)

Figure.savefig = spy
from pyanode.cli import main
sys.argv = ["pyanode", *sys.argv[1:]]
main()
"""


def run_recording_figures(args: list[str], cwd: Path, env: dict, timeout: int = 600):
    """Run ``pyanode ARGS`` in a subprocess that records every figure it saves; returns the completed
    process and the recorded figures (see ``_RECORDER``), in the order they were saved."""
    import json
    import subprocess
    import sys
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="pyanode-figures-"))
    res = subprocess.run([sys.executable, "-c", _RECORDER, *map(str, args)], cwd=cwd, capture_output=True,
                         text=True, env=dict(env, PYANODE_TEST_FIGURES=str(folder)), timeout=timeout)
    count = len(list(folder.iterdir()))
    figures = [json.loads((folder / f"figure-{k}.json").read_text()) for k in range(count)]
    return res, figures


def assert_forecast_drawn(figure: dict, forecast, truth=None, bands: int | None = None) -> None:
    """Each column's panel draws the forecast (joined to the last observation) at its dates and values,
    the truth where given, and ``bands`` shaded intervals."""
    import matplotlib.dates as mdates
    import numpy as np

    by_label = {ax["ylabel"]: ax for ax in figure["axes"]}
    columns = [c for c in forecast.columns if "-lo-" not in c and "-hi-" not in c and "-q" not in c]
    assert set(columns) <= set(by_label), (columns, list(by_label))
    for c in columns:
        lines = {ln["label"]: ln for ln in by_label[c]["lines"]}
        drawn = lines["forecast"]
        np.testing.assert_allclose(drawn["y"][1:], forecast[c].to_numpy(), rtol=1e-5)
        np.testing.assert_allclose(drawn["x"][1:], mdates.date2num(forecast.index.to_pydatetime()))
        assert len(lines["history"]["y"]) > 0 and lines["history"]["y"][-1] == drawn["y"][0]
        if truth is not None:
            np.testing.assert_allclose(lines["truth"]["y"], truth[c].to_numpy(), rtol=1e-9)
        if bands is not None:
            assert by_label[c]["bands"] == bands, (c, by_label[c]["bands"])
