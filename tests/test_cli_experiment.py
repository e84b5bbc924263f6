"""``pyanode experiment`` through the real command line: outputs, figures, refusals, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from figures import saved_figures
from matplotlib.colors import to_rgba
from typer.testing import CliRunner

from pyanode.cli import app
from pyanode.train import load_model

runner = CliRunner()

SUMMARY_KEYS = {
    "model",
    "augment",
    "iterations",
    "final_loss",
    "nfe_forward_final",
    "nfe_backward_final",
    "seconds",
    "parameters",
}


def _is_png(path) -> bool:
    """A light check of a figure on disk: a PNG image of real size (what it shows is checked on the
    Figure that made it, see :func:`figures.saved_figures`)."""
    img = matplotlib.image.imread(path)
    return img.ndim == 3 and min(img.shape[:2]) > 200


def _check_history_figure(fig, history: pd.DataFrame, labels: dict[str, str], columns: list[str]) -> None:
    """loss_nfe.png: a panel per column; per model a thin line with exactly its per-iteration values
    and a thick running mean labelled with the model; the panel's data limits cover the values."""
    assert len(fig.axes) == len(columns)
    assert fig.axes[0].get_legend_handles_labels()[1] == list(labels.values())
    for ax, column in zip(fig.axes, columns, strict=True):
        assert len(ax.lines) == 2 * len(labels)
        for i, (kind, label) in enumerate(labels.items()):
            rows = history[history["model"] == kind]
            raw, smooth = ax.lines[2 * i], ax.lines[2 * i + 1]
            np.testing.assert_array_equal(raw.get_xdata(), rows["iteration"])
            np.testing.assert_allclose(raw.get_ydata(), rows[column], rtol=1e-12)
            np.testing.assert_array_equal(smooth.get_xdata(), rows["iteration"])
            assert smooth.get_label() == label
        (x0, y0), (x1, y1) = ax.dataLim.get_points()
        assert x0 <= history["iteration"].min() and x1 >= history["iteration"].max()
        assert y0 <= history[column].min() and y1 >= history[column].max()


def _invoke(*args):
    return runner.invoke(app, ["experiment", *args])


@pytest.fixture(scope="module")
def g1d_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "g1d"
    with saved_figures() as figures:
        result = _invoke(
            "g1d", "--model", "node,anode,resnet", "--iterations", "10", "--out", str(out), "--quiet"
        )
    assert result.exit_code == 0, result.output
    return out, figures


def test_g1d_writes_summary_history_and_figures(g1d_run):
    from pyanode.datasets import g1d

    g1d_run, figures = g1d_run
    summary = json.loads((g1d_run / "summary.json").read_text())
    assert summary["experiment"] == "g1d" and summary["settings"]["iterations"] == 10
    models = summary["models"]
    assert [m["model"] for m in models] == ["node", "anode", "resnet"]
    for m in models:
        assert SUMMARY_KEYS <= set(m) and m["iterations"] == 10 and m["parameters"] > 0
        assert m["nfe_forward_final"] > 0 and m["nfe_backward_final"] > 0
    assert [m["augment"] for m in models] == [0, 1, 0]
    hist = pd.read_csv(g1d_run / "history.csv")
    assert list(hist.columns) == ["model", "iteration", "loss", "nfe_forward", "nfe_backward", "seconds"]
    assert hist.groupby("model").size().to_dict() == {"anode": 10, "node": 10, "resnet": 10}
    # The summary's final numbers are the history's last rows.
    last = hist.groupby("model").last()
    for m in models:
        assert last.loc[m["model"], "nfe_forward"] == m["nfe_forward_final"]
    assert {p.name for p in g1d_run.glob("model_*.eqx")} == {
        "model_node.eqx",
        "model_anode.eqx",
        "model_resnet.eqx",
    }
    assert set(figures) == {"loss_nfe.png", "trajectories.png"} == set(summary["figures"])
    assert all(_is_png(g1d_run / name) for name in figures)
    labels = {m["model"]: m["label"] for m in models}
    _check_history_figure(figures["loss_nfe.png"], hist, labels, ["loss", "nfe_forward", "nfe_backward"])

    # trajectories.png: per model, h_1(t) of both inputs as the saved model computes it (the loaded
    # model is the trained one), each line starting at its input; the targets -x are marked at t = T.
    data = g1d(seed=0)
    panels = figures["trajectories.png"].axes
    assert [ax.get_title() for ax in panels] == list(labels.values())
    for ax, m in zip(panels, models, strict=True):
        model = load_model(g1d_run / f"model_{m['model']}.eqx")
        ts, states = (np.asarray(a) for a in model.trajectory(jnp.asarray(data.x), num_times=40))
        assert len(ts) == (6 if m["model"] == "resnet" else 40)  # a ResNet of 5 layers: 6 states
        assert len(ax.lines) == len(data.x)
        for line in ax.lines:
            (j,) = np.flatnonzero(data.x[:, 0] == line.get_ydata()[0])
            np.testing.assert_allclose(line.get_xdata(), ts, rtol=1e-6)
            np.testing.assert_allclose(line.get_ydata(), states[:, j, 0], rtol=1e-5, atol=1e-6)
        # The summary's final loss (MSE of h_1(T) against -x) is the plotted end points'.
        assert np.mean((states[-1, :, 0] - data.y[:, 0]) ** 2) == pytest.approx(m["final_loss"], rel=1e-5)
        (targets,) = ax.collections
        np.testing.assert_allclose(targets.get_offsets(), np.c_[np.full(2, ts[-1]), data.y[:, 0]])


def test_out_is_not_overwritten_without_force(g1d_run):
    g1d_run, _ = g1d_run
    before = (g1d_run / "summary.json").read_text()
    result = _invoke("g1d", "--model", "node", "--iterations", "2", "--out", str(g1d_run), "--quiet")
    assert result.exit_code == 2
    assert "not empty" in result.output and "--force" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (g1d_run / "summary.json").read_text() == before


def _points_3d(collection) -> np.ndarray:
    """The data points of a 3-D scatter (matplotlib keeps them as ``_offsets3d``)."""
    return np.stack([np.asarray(c, dtype=float) for c in collection._offsets3d], axis=1)


@pytest.mark.slow  # an experiment run (about 45 s); the g1d tests run the command by default
def test_spheres_writes_2d_figures_with_force(tmp_path):
    from pyanode.datasets import spheres

    out = tmp_path / "sph"
    out.mkdir()
    (out / "old.txt").write_text("old")
    args = ["spheres", "--model", "node,anode", "--iterations", "8", "--out", str(out), "--quiet"]
    assert _invoke(*args).exit_code == 2
    with saved_figures() as figures:
        result = _invoke(*args, "--force")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert all(0 <= m["final_accuracy"] <= 1 for m in summary["models"])
    history = pd.read_csv(out / "history.csv")
    assert "accuracy" in history.columns
    kinds, kinds_figures = ("node", "anode"), ("vector_field", "trajectories", "features")
    names = {f"{fig}_{kind}.png" for kind in kinds for fig in kinds_figures}
    assert set(figures) == names | {"loss_nfe.png"} == set(summary["figures"])
    assert all(_is_png(out / name) for name in figures)
    labels = {m["model"]: m["label"] for m in summary["models"]}
    columns = ["loss", "accuracy", "nfe_forward", "nfe_backward"]
    _check_history_figure(figures["loss_nfe.png"], history, labels, columns)

    # The other figures show the saved (= trained) models on the data: the same solve of all 2,000
    # points that the experiment made, h(t) at 40 times.
    data = spheres(seed=0)
    colours = np.array([to_rgba("tab:red") if y > 0 else to_rgba("tab:blue") for y in data.y[:, 0]])
    for m in summary["models"]:
        kind, model = m["model"], load_model(out / f"model_{m['model']}.eqx")
        _, states = model.trajectory(jnp.asarray(data.x), num_times=40)
        states = np.asarray(states)
        dims = 3 if kind == "anode" else 2  # one augmented dimension: drawn in 3-D
        # The summary's accuracy is the sign accuracy of the read-out of these features.
        pred = np.asarray(model.readout(jnp.asarray(states[-1])))
        assert np.mean(np.sign(pred) == data.y) == pytest.approx(m["final_accuracy"], abs=1e-6)

        # features: every point's h(T), coloured by its class.
        (ax,) = figures[f"features_{kind}.png"].axes
        (points,) = ax.collections
        drawn = _points_3d(points) if dims == 3 else points.get_offsets()
        np.testing.assert_allclose(drawn, states[-1][:, :dims], rtol=1e-5, atol=1e-6)
        drawn_colours, expected = points.get_facecolors()[:, :3], colours[:, :3]
        if dims == 3:  # a drawn 3-D scatter holds its colours in depth order: compare them as a multiset
            drawn_colours, expected = (c[np.lexsort(c.T)] for c in (drawn_colours, expected))
        np.testing.assert_allclose(drawn_colours, expected)

        # trajectories: 80 of the points, each path h(t) from its input to its feature.
        ax = figures[f"trajectories_{kind}.png"].axes[0]
        assert len(ax.lines) == 80
        for line in ax.lines:
            path = np.stack(line.get_data_3d() if dims == 3 else line.get_data(), axis=1)
            (j,) = np.flatnonzero((data.x == path[0, :2]).all(axis=1))
            np.testing.assert_allclose(path, states[:, j, :dims], rtol=1e-5, atol=1e-6)

        # vector field: the data points over streamlines coloured by the speed |f| of the model's field,
        # sampled on a 25 x 25 grid of the square that the axes show (1.1 times the data's extent).
        ax, _colorbar = figures[f"vector_field_{kind}.png"].axes
        lim = 1.1 * np.abs(data.x).max()
        assert ax.get_xlim() == pytest.approx((-lim, lim)) and ax.get_ylim() == pytest.approx((-lim, lim))
        stream, scatter = ax.collections
        np.testing.assert_array_equal(scatter.get_offsets(), data.x)
        axis = np.linspace(-lim, lim, 25)
        grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
        grid = np.c_[grid, np.zeros((len(grid), dims - 2))].astype(np.float32)
        speed = np.hypot(*np.asarray(model.vector_field(0.0, jnp.asarray(grid)))[:, :2].T)
        assert len(stream.get_segments()) > 100
        assert (stream.norm.vmin, stream.norm.vmax) == pytest.approx((speed.min(), speed.max()), rel=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["g1d", "--iterations", "abc"], "--iterations must be an integer"),
        (["g1d", "--lr", "-1"], "--lr must be a positive number"),
        (["g1d", "--model", "node,transformer"], "unknown model 'transformer'"),
        (["moons"], "unknown experiment 'moons'"),
        (["g1d", "--data-dir", "."], "--data-dir does not apply"),
        (["g1d", "--sensealg", "magic"], "unknown --sensealg"),
    ],
)
def test_bad_options_are_one_line_exit_2(tmp_path, args, message):
    result = _invoke(*args, "--out", str(tmp_path / "o"), "--quiet")
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_help_lists_every_registered_experiment():
    from pyanode.experiments import EXPERIMENTS

    result = _invoke("--help")
    assert result.exit_code == 0
    for name in EXPERIMENTS:
        assert name in result.output


def test_console_script_error_is_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyanode",
            "experiment",
            "g1d",
            "--augment",
            "x",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --augment must be an integer >= 0, got 'x'"


def test_solve_demo_through_the_real_command_line():
    """``pyanode solve-demo``: exit 0, and the error it prints is the small one of a tsit5 solve of
    y'' = -y over ten periods at rtol = atol = 1e-6 (float32), with statistics that obey the NFE rule."""
    import pyanode

    proc = subprocess.run(
        [sys.executable, "-m", "pyanode", "solve-demo"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "harmonic oscillator y'' = -y over ten periods with tsit5, rtol=1e-06, atol=1e-06"
    error = float(re.fullmatch(r"max \|error\| vs cos/sin: (\S+)", lines[1]).group(1))
    stats = dict(re.findall(r"(\w+)=(\d+)", lines[2]))
    assert set(stats) == {"num_accepted_steps", "num_rejected_steps", "nfe_forward"}
    steps = int(stats["num_accepted_steps"]) + int(stats["num_rejected_steps"])
    assert int(stats["nfe_forward"]) == 1 + 6 * steps and steps > 50
    assert 0 < error < 1e-4
    # The printed error is the real one: the same solve here, against cos/sin.
    ts = jnp.linspace(0.0, 20 * np.pi, 11)
    sol = pyanode.solve(
        lambda t, y, args: jnp.stack([y[1], -y[0]]), jnp.array([1.0, 0.0]), ts, rtol=1e-6, atol=1e-6
    )
    exact = np.stack([np.cos(np.asarray(ts)), -np.sin(np.asarray(ts))], axis=1)
    assert error == pytest.approx(np.max(np.abs(np.asarray(sol.ys) - exact)), rel=0.01)
