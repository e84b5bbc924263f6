"""``pyanode experiment`` through the real command line: outputs, figures, refusals, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pyanode.cli import app

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


def _distinct_colours(path) -> int:
    img = matplotlib.image.imread(path)
    pixels = (img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    return len(np.unique(pixels, axis=0))


def _invoke(*args):
    return runner.invoke(app, ["experiment", *args])


@pytest.fixture(scope="module")
def g1d_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "g1d"
    result = _invoke(
        "g1d", "--model", "node,anode,resnet", "--iterations", "30", "--out", str(out), "--quiet"
    )
    assert result.exit_code == 0, result.output
    return out


def test_g1d_writes_summary_history_and_figures(g1d_run):
    summary = json.loads((g1d_run / "summary.json").read_text())
    assert summary["experiment"] == "g1d" and summary["settings"]["iterations"] == 30
    models = summary["models"]
    assert [m["model"] for m in models] == ["node", "anode", "resnet"]
    for m in models:
        assert SUMMARY_KEYS <= set(m) and m["iterations"] == 30 and m["parameters"] > 0
        assert m["nfe_forward_final"] > 0 and m["nfe_backward_final"] > 0
    assert [m["augment"] for m in models] == [0, 1, 0]
    hist = pd.read_csv(g1d_run / "history.csv")
    assert list(hist.columns) == ["model", "iteration", "loss", "nfe_forward", "nfe_backward", "seconds"]
    assert hist.groupby("model").size().to_dict() == {"anode": 30, "node": 30, "resnet": 30}
    # The summary's final numbers are the history's last rows.
    last = hist.groupby("model").last()
    for m in models:
        assert last.loc[m["model"], "nfe_forward"] == m["nfe_forward_final"]
    for name in ("loss_nfe.png", "trajectories.png"):
        assert _distinct_colours(g1d_run / name) > 50
    assert {p.name for p in g1d_run.glob("model_*.eqx")} == {
        "model_node.eqx",
        "model_anode.eqx",
        "model_resnet.eqx",
    }


def test_out_is_not_overwritten_without_force(g1d_run):
    before = (g1d_run / "summary.json").read_text()
    result = _invoke("g1d", "--model", "node", "--iterations", "2", "--out", str(g1d_run), "--quiet")
    assert result.exit_code == 2
    assert "not empty" in result.output and "--force" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (g1d_run / "summary.json").read_text() == before


def test_spheres_writes_2d_figures_with_force(tmp_path):
    out = tmp_path / "sph"
    out.mkdir()
    (out / "old.txt").write_text("old")
    args = ["spheres", "--model", "node,anode", "--iterations", "8", "--out", str(out), "--quiet"]
    assert _invoke(*args).exit_code == 2
    result = _invoke(*args, "--force")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert all(0 <= m["final_accuracy"] <= 1 for m in summary["models"])
    assert "accuracy" in pd.read_csv(out / "history.csv").columns
    for kind in ("node", "anode"):
        for fig in ("vector_field", "trajectories", "features"):
            assert _distinct_colours(out / f"{fig}_{kind}.png") > 50, (fig, kind)
    assert _distinct_colours(out / "loss_nfe.png") > 50


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
