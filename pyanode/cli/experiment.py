"""``pyanode experiment NAME``: run one of the paper's experiments and write its numbers and figures."""

from __future__ import annotations

import math

import typer

from pyanode.cli import app, fail
from pyanode.errors import PyanodeError
from pyanode.experiments import EXPERIMENTS, run_experiment


def _names() -> str:
    return ", ".join(sorted(EXPERIMENTS))


def _int(option: str, text: str | None, minimum: int) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise PyanodeError(f"{option} must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise PyanodeError(f"{option} must be an integer >= {minimum}, got {text!r}")
    return value


def _float(option: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise PyanodeError(f"{option} must be a positive number, got {text!r}")
    return value


def _help() -> str:
    lines = ["Run one of the ANODE paper's experiments; writes summary.json, history.csv and figures.", ""]
    lines += [f"{name}: {EXPERIMENTS[name].description}" for name in sorted(EXPERIMENTS)]
    # Blank lines keep click from re-flowing the list into one paragraph.
    return "\n\n".join(lines)


@app.command("experiment", help=_help())
def experiment(
    name: str = typer.Argument(..., help=f"Experiment: one of {_names()}.", show_default=False),
    model: str = typer.Option(
        None, "--model", help="Model(s), comma-separated: node, anode, resnet (default: node,anode)."
    ),
    augment: str = typer.Option(
        None, "--augment", metavar="K",
        help="Extra dimensions of the ANODE (image experiments: also sizes the parameter-matched NODE).",
    ),
    iterations: str = typer.Option(None, "--iterations", metavar="N", help="Training iterations per model."),
    seed: str = typer.Option("0", "--seed", metavar="S", help="Seed of data, initialisation and batches."),
    out: str = typer.Option(None, "--out", metavar="DIR", help="Output folder (default: runs/NAME)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty --out folder."),
    hidden: str = typer.Option(None, "--hidden", metavar="H", help="Hidden width of the vector field."),
    batch_size: str = typer.Option(None, "--batch-size", metavar="B", help="Minibatch size."),
    lr: str = typer.Option(None, "--lr", metavar="LR", help="Adam learning rate."),
    solver: str = typer.Option(None, "--solver", help="Adaptive solver: dopri5 (default), tsit5, ..."),
    rtol: str = typer.Option(None, "--rtol", metavar="R", help="Relative tolerance (default 1e-3)."),
    atol: str = typer.Option(None, "--atol", metavar="A", help="Absolute tolerance (default 1e-3)."),
    sensealg: str = typer.Option(
        None, "--sensealg", help="Gradient: checkpoint (default), interpolating or backsolve."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars or result table."),
    data_dir: str = typer.Option(None, "--data-dir", metavar="DIR", help="Image experiments: data folder."),
    devices: str = typer.Option(
        None,
        "--devices",
        metavar="N",
        help="Image experiments: data-parallel devices.",
    ),
    subset: str = typer.Option(
        None, "--subset", metavar="N", help="Image experiments: train on N images only."
    ),
    epochs: str = typer.Option(
        None, "--epochs", metavar="E", help="Image experiments: epochs (sets the iterations)."
    ),
    shift: str = typer.Option(
        None, "--shift", metavar="P",
        help="Image experiments: move each training image by a random offset of up to P pixels (default 0).",
    ),
    schedule: str = typer.Option(
        None, "--schedule", help="Image experiments: learning rate constant (default) or cosine (to 1%).",
    ),
) -> None:
    try:
        if name not in EXPERIMENTS:
            raise PyanodeError(f"unknown experiment {name!r}; choose one of: {_names()}")
        summary = run_experiment(
            name,
            out=out if out is not None else f"runs/{name}",
            models=model,
            seed=_int("--seed", seed, 0),
            force=force,
            progress=not quiet,
            data_dir=data_dir,
            devices=_int("--devices", devices, 1),
            subset=_int("--subset", subset, 1),
            epochs=_int("--epochs", epochs, 1),
            shift=_int("--shift", shift, 0),
            schedule=schedule,
            augment=_int("--augment", augment, 0),
            iterations=_int("--iterations", iterations, 1),
            hidden=_int("--hidden", hidden, 1),
            batch_size=_int("--batch-size", batch_size, 1),
            lr=_float("--lr", lr),
            solver=solver.lower() if solver is not None else None,
            rtol=_float("--rtol", rtol),
            atol=_float("--atol", atol),
            sensealg=sensealg,
        )
    except PyanodeError as err:
        fail(str(err))
        return
    if not quiet:
        _print_summary(summary, out if out is not None else f"runs/{name}")
    if summary.get("interrupted"):
        typer.echo("interrupted: results so far were written", err=True)
        raise typer.Exit(130)


def _print_summary(summary: dict, out: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['experiment']} (seed {summary['seed']})")
    cols = [
        "model",
        "iterations",
        "final_loss",
        "final_accuracy",
        "nfe_forward_final",
        "nfe_backward_final",
        "seconds",
        "parameters",
    ]
    cols = [c for c in cols if any(c in m for m in summary["models"])]
    for c in cols:
        table.add_column(c.replace("_", " "), justify="left" if c == "model" else "right")
    for m in summary["models"]:
        cells = []
        for c in cols:
            v = m.get(c, "")
            cells.append(m["label"] if c == "model" else f"{v:.4g}" if isinstance(v, float) else str(v))
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(f"wrote summary.json, history.csv and {len(summary['figures'])} figures to {out}")
