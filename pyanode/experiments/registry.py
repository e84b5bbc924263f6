"""The experiment registry and runner behind ``pyanode experiment NAME``.

An :class:`Experiment` names a paper experiment, its default settings, the models it can train and a
``run(config) -> ExperimentResult`` function. Registering one (:func:`register`) makes it available to
:func:`run_experiment` and to the command line, whose ``--help`` lists every registered name. The toy
experiments live in :mod:`pyanode.experiments.toy`; image experiments register themselves the same way
from :mod:`pyanode.experiments.images`.

:func:`run_experiment` owns what every experiment shares: validating options (with the experiment's own
``check``) before the output folder is created, refusing to overwrite a non-empty output folder without
``force``, removing the folder it created when the run is refused before writing anything, and writing
``summary.json`` and ``history.csv`` atomically.
The run function trains its models, writes its figures into ``config.out`` and returns the numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pyanode._io import atomic_path
from pyanode.errors import PyanodeError

__all__ = [
    "EXPERIMENTS",
    "MODEL_KINDS",
    "Experiment",
    "ExperimentResult",
    "RunConfig",
    "register",
    "run_experiment",
]

#: Model kinds a toy experiment can train: a NODE, an ANODE (``augment`` extra dimensions) and the
#: discrete ResNet baseline. Image experiments may define their own kinds.
MODEL_KINDS = ("node", "anode", "resnet")

#: Settings every experiment has a default for; the command line overrides them one by one.
SETTINGS = ("augment", "iterations", "hidden", "batch_size", "lr", "solver", "rtol", "atol", "sensealg")


# Options that only some experiments take: a data folder, data-parallel devices, a training subset, a
# number of epochs (which then sets the iterations), random shifts of the training images (pixels) and
# the learning-rate schedule.
EXTRA_OPTIONS = ("data_dir", "devices", "subset", "epochs", "shift", "schedule")

#: Learning-rate schedules: the paper's constant rate, or a cosine decay to 1% of it at the last iteration.
SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One run of an experiment: its name, models, output folder, seed and the resolved settings.

    ``settings`` holds every key of :data:`SETTINGS` (command-line value, else the experiment's default;
    ``batch_size`` None means full batch). The :data:`EXTRA_OPTIONS` (``data_dir``, ``devices``,
    ``subset``, ``epochs``, ``shift``, ``schedule``) are only set for experiments that accept them (image
    experiments).
    """

    name: str
    models: tuple[str, ...]
    out: Path
    seed: int
    settings: Mapping[str, Any]
    progress: bool = True
    data_dir: Path | None = None
    devices: int | None = None
    subset: int | None = None
    epochs: int | None = None
    shift: int | None = None
    schedule: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]


@dataclasses.dataclass
class ExperimentResult:
    """What a run function returns.

    Attributes:
        summaries: one dict per trained model with at least ``model, augment, iterations, final_loss,
            nfe_forward_final, nfe_backward_final, seconds, parameters`` (and ``final_accuracy`` where it
            applies).
        history: all models' training histories, with a ``model`` column.
        figures: paths of the figures written into the output folder.
        interrupted: True if Ctrl-C stopped training (results cover what was done).
        settings: settings the run derived from its options (e.g. the iterations that ``--epochs`` set),
            recorded in ``summary.json`` over the resolved ones.
    """

    summaries: list[dict[str, Any]]
    history: pd.DataFrame
    figures: list[Path] = dataclasses.field(default_factory=list)
    interrupted: bool = False
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    Attributes:
        name: the command-line name (``pyanode experiment NAME``).
        description: one line for ``--help``.
        run: ``run(config: RunConfig) -> ExperimentResult``; writes its figures into ``config.out``.
        defaults: a default for each key of :data:`SETTINGS`.
        models: the model kinds it can train; default_models: those trained when none are named.
        options: extra options it accepts, from :data:`EXTRA_OPTIONS`.
        node_matches_anode: the NODE is sized to match the ANODE of ``hidden`` and ``augment`` (the
            paper's equal-parameter comparison), so ``--augment`` applies to a NODE-only run too.
        check: ``check(config)`` raises :class:`PyanodeError` for options this experiment refuses; it runs
            before the output folder is created (``config.out`` does not exist yet).
    """

    name: str
    description: str
    run: Callable[[RunConfig], ExperimentResult]
    defaults: Mapping[str, Any]
    models: tuple[str, ...] = MODEL_KINDS
    default_models: tuple[str, ...] = ("node", "anode")
    options: frozenset[str] = frozenset()
    node_matches_anode: bool = False
    check: Callable[[RunConfig], None] | None = None

    def __post_init__(self) -> None:
        missing = [k for k in SETTINGS if k not in self.defaults]
        if missing:
            raise ValueError(f"experiment {self.name!r} has no defaults for {missing}")
        unknown = set(self.options) - set(EXTRA_OPTIONS)
        if unknown:
            raise ValueError(f"experiment {self.name!r} declares unknown options {sorted(unknown)}")


EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to :data:`EXPERIMENTS` (its name must be new)."""
    if experiment.name in EXPERIMENTS and EXPERIMENTS[experiment.name] is not experiment:
        raise ValueError(f"an experiment named {experiment.name!r} is already registered")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


# ----------------------------------------------------------------------------------------------
# Validation


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PyanodeError(f"--{name.replace('_', '-')} must be an integer >= {minimum}, got {value!r}")
    return value


def _positive_float(name: str, value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise PyanodeError(f"--{name} must be a positive number, got {value!r}")
    return float(value)


def _resolve_settings(exp: Experiment, models: tuple[str, ...], given: Mapping[str, Any]) -> dict[str, Any]:
    from pyanode.engine import SENSEALGS, SOLVERS

    s = {k: (given[k] if given.get(k) is not None else exp.defaults[k]) for k in SETTINGS}
    s["iterations"] = _positive_int("iterations", s["iterations"])
    s["hidden"] = _positive_int("hidden", s["hidden"])
    s["augment"] = _positive_int("augment", s["augment"], minimum=0)
    if s["batch_size"] is not None:
        s["batch_size"] = _positive_int("batch_size", s["batch_size"])
    for k in ("lr", "rtol", "atol"):
        s[k] = _positive_float(k, s[k])
    adaptive = [k for k, v in SOLVERS.items() if v.adaptive and not v.implicit]
    if s["solver"] not in adaptive:
        raise PyanodeError(
            f"unknown or unsupported --solver {s['solver']!r}; choose one of: {', '.join(adaptive)}"
        )
    if s["sensealg"] not in SENSEALGS:
        raise PyanodeError(f"unknown --sensealg {s['sensealg']!r}; choose one of: {', '.join(SENSEALGS)}")
    if "anode" in models and s["augment"] < 1:
        raise PyanodeError("an ANODE needs --augment >= 1 extra dimensions (0 would make it a NODE)")
    if (
        given.get("augment")
        and "anode" not in models
        and not exp.node_matches_anode
        and any(m in MODEL_KINDS for m in models)
    ):
        raise PyanodeError(
            "--augment only applies to the anode model; add anode to --model or drop --augment"
        )
    return s


def _parse_models(exp: Experiment, models: str | Sequence[str] | None) -> tuple[str, ...]:
    if models is None:
        return exp.default_models
    names = [m.strip().lower() for m in (models.split(",") if isinstance(models, str) else models)]
    names = [m for m in names if m]
    if not names:
        raise PyanodeError(f"--model is empty; choose from: {', '.join(exp.models)}")
    bad = [m for m in names if m not in exp.models]
    if bad:
        raise PyanodeError(f"unknown model {bad[0]!r} for {exp.name}; choose from: {', '.join(exp.models)}")
    return tuple(dict.fromkeys(names))


def prepare_out(out: str | os.PathLike, force: bool) -> Path:
    """Create ``out``; refuse an existing non-empty folder (or a file) unless ``force``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PyanodeError(f"--out {out} is a file, not a folder; give a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise PyanodeError(f"--out {out} exists and is not empty; pass --force to write into it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# ----------------------------------------------------------------------------------------------
# Runner


def run_experiment(
    name: str,
    *,
    out: str | os.PathLike,
    models: str | Sequence[str] | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    data_dir: str | os.PathLike | None = None,
    devices: int | None = None,
    subset: int | None = None,
    epochs: int | None = None,
    shift: int | None = None,
    schedule: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Run the registered experiment ``name`` and write its outputs into ``out``.

    ``settings`` override the experiment's defaults (``augment, iterations, hidden, batch_size, lr,
    solver, rtol, atol, sensealg``; None keeps the default). Writes ``summary.json`` (the settings and one
    entry per model), ``history.csv`` (every iteration of every model, with a ``model`` column) and the
    experiment's figures. Returns the summary as a dict.
    """
    if name not in EXPERIMENTS:
        raise PyanodeError(f"unknown experiment {name!r}; choose one of: {', '.join(sorted(EXPERIMENTS))}")
    exp = EXPERIMENTS[name]
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise PyanodeError(f"unknown setting(s) {sorted(unknown)}; known: {', '.join(SETTINGS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PyanodeError(f"--seed must be a non-negative integer, got {seed!r}")
    extra = {
        "data_dir": data_dir, "devices": devices, "subset": subset, "epochs": epochs, "shift": shift,
        "schedule": schedule,
    }
    for opt, value in extra.items():
        if value is not None and opt not in exp.options:
            users = sorted(n for n, e in EXPERIMENTS.items() if opt in e.options)
            where = f" (used by: {', '.join(users)})" if users else ""
            raise PyanodeError(
                f"--{opt.replace('_', '-')} does not apply to the {name} experiment, which makes its own "
                f"data on one device{where}; drop it"
            )
    for opt in ("devices", "subset", "epochs"):
        if extra[opt] is not None:
            _positive_int(opt, extra[opt])
    if shift is not None:
        _positive_int("shift", shift, minimum=0)
    if schedule is not None and schedule not in SCHEDULES:
        raise PyanodeError(f"--schedule must be one of: {', '.join(SCHEDULES)}; got {schedule!r}")
    chosen = _parse_models(exp, models)
    resolved = _resolve_settings(exp, chosen, settings)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise PyanodeError(f"--data-dir {data_dir} is not a folder")
    config = RunConfig(
        name=name,
        models=chosen,
        out=Path(out),
        seed=seed,
        settings=resolved,
        progress=progress,
        data_dir=Path(data_dir) if data_dir is not None else None,
        devices=devices,
        subset=subset,
        epochs=epochs,
        shift=shift,
        schedule=schedule,
    )
    if exp.check is not None:
        exp.check(config)
    created = not config.out.exists()
    out = prepare_out(out, force)
    try:
        result = exp.run(config)
    except PyanodeError:
        # A run refused after the folder was made (e.g. a data file missing from --data-dir) leaves
        # nothing behind: remove the folder if this run created it and nothing was written into it.
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    summary = {
        "experiment": name,
        "seed": seed,
        "settings": {
            **resolved,
            **{k: str(v) if isinstance(v, Path) else v for k, v in extra.items() if v is not None},
            **result.settings,
        },
        "interrupted": result.interrupted,
        "models": result.summaries,
        "figures": [Path(p).name for p in result.figures],
    }
    _write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n")
    _write_atomic(out / "history.csv", result.history.to_csv(index=False))
    return summary


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
