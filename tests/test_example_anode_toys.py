"""The toy-experiment notebook runs end to end (as a notebook, through jupytext and nbclient)."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "anode_toys.py"


@pytest.mark.slow
def test_anode_toys_notebook_runs_and_writes_figures(tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("ANODE_TOYS_OUT", str(tmp_path / "figs"))
    monkeypatch.setenv("ANODE_TOYS_ITERATIONS", "60")
    nb = jupytext.read(EXAMPLE)
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
    assert all((tmp_path / "figs" / n).stat().st_size > 10_000 for n in expected)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
