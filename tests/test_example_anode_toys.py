"""The toy-experiment notebook runs end to end (as a notebook, through jupytext and nbclient)."""

from __future__ import annotations

from pathlib import Path

import pytest
from figures import SAVEFIG_RECORDER, assert_every_axes_draws_data, recorded_figures

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "anode_toys.py"


@pytest.mark.slow
def test_anode_toys_notebook_runs_and_writes_figures(tmp_path, monkeypatch):
    """The notebook runs and saves each figure with data on every panel (the loss/NFE curves one point per
    training iteration)."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    monkeypatch.setenv("ANODE_TOYS_OUT", str(tmp_path / "figs"))
    monkeypatch.setenv("ANODE_TOYS_ITERATIONS", "60")
    (tmp_path / "recorded").mkdir()
    monkeypatch.setenv("PYANODE_TEST_FIGURES", str(tmp_path / "recorded"))  # the kernel inherits it
    nb = jupytext.read(EXAMPLE)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SAVEFIG_RECORDER))
    nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    names = {p.name for p in (tmp_path / "figs").glob("*.png")}
    expected = {"g1d_trajectories.png", "g1d_loss_nfe.png", "spheres_loss_nfe.png"}
    expected |= {
        f"spheres_{k}_{m}.png"
        for k in ("vector_field", "trajectories", "features")
        for m in ("node", "anode")
    }
    assert expected <= names
    recorded = {f["file"]: f for f in recorded_figures(tmp_path / "recorded")}
    assert expected <= set(recorded)
    for name in expected:
        assert_every_axes_draws_data(recorded[name])
    curves = recorded["g1d_loss_nfe.png"]["axes"]
    assert max(len(ln["x"]) for ax in curves for ln in ax["lines"]) == 60
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
