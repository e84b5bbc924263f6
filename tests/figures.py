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


# What Figure.savefig also writes in a process this code ran in first (JSON in $PYANODE_TEST_FIGURES):
# the saved file's name, the suptitle, and per axes its y label, each line's label and data (dates as
# matplotlib date numbers), how many collections (filled bands, scatter points, arrows) and images it has.
SAVEFIG_RECORDER = r"""
import json, os, re
import matplotlib
import matplotlib.dates as mdates
import numpy as np
from matplotlib.figure import Figure

_real_savefig = Figure.savefig

def _as_numbers(values):
    values = np.asarray(values)
    if values.dtype.kind in "fiu":
        return values.astype(float).tolist()
    return [float(v) for v in mdates.date2num(values)]

def _recording_savefig(self, fname, *args, **kwargs):
    _real_savefig(self, fname, *args, **kwargs)
    folder = os.environ["PYANODE_TEST_FIGURES"]
    axes = [{"ylabel": ax.get_ylabel(), "bands": len(ax.collections), "images": len(ax.images),
             "lines": [{"label": ln.get_label(), "x": _as_numbers(ln.get_xdata()),
                        "y": _as_numbers(ln.get_ydata())} for ln in ax.lines]} for ax in self.axes]
    k = len(os.listdir(folder))
    with open(os.path.join(folder, f"figure-{k}.json"), "w") as f:
        # pyanode writes through a temporary ".NAME.XXXXXXXX.tmp.png" beside NAME: record NAME.
        base = os.path.basename(str(fname))
        atomic = re.fullmatch(r"\.(.+)\.[^.]+\.tmp\.[^.]+", base)
        json.dump({"file": atomic.group(1) if atomic else base, "axes": axes,
                   "suptitle": self._suptitle.get_text() if self._suptitle else ""}, f)

Figure.savefig = _recording_savefig
"""

_RECORDER = 'import matplotlib\nmatplotlib.use("Agg")\n' + SAVEFIG_RECORDER + r"""
import sys
from pyanode.cli import main
sys.argv = ["pyanode", *sys.argv[1:]]
main()
"""


def recorded_figures(folder: Path) -> list[dict]:
    """The figures recorded in ``folder`` by :data:`SAVEFIG_RECORDER`, in the order they were saved."""
    import json

    return [json.loads((folder / f"figure-{k}.json").read_text()) for k in range(len(list(folder.iterdir())))]


def assert_every_axes_draws_data(figure: dict) -> None:
    """Each axes of a recorded figure draws something: a line of two or more points, a collection
    (scatter points, arrows, bands) or an image; an empty titled axes fails."""
    for k, ax in enumerate(figure["axes"]):
        drawn = any(len(ln["x"]) >= 2 for ln in ax["lines"]) or ax["bands"] > 0 or ax["images"] > 0
        assert drawn, (figure["file"], k, ax)


def run_recording_figures(args: list[str], cwd: Path, env: dict, timeout: int = 600):
    """Run ``pyanode ARGS`` in a subprocess that records every figure it saves; returns the completed
    process and the recorded figures (see ``_RECORDER``), in the order they were saved."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pyanode-figures-") as tmp:  # removed afterwards
        folder = Path(tmp)
        res = subprocess.run([sys.executable, "-c", _RECORDER, *map(str, args)], cwd=cwd, capture_output=True,
                             text=True, env=dict(env, PYANODE_TEST_FIGURES=str(folder)), timeout=timeout)
        return res, recorded_figures(folder)


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
