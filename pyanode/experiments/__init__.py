"""The paper's experiments, runnable with :func:`run_experiment` or ``pyanode experiment NAME``.

Importing this package registers the toy experiments (:mod:`pyanode.experiments.toy`) and, when present,
the image experiments (:mod:`pyanode.experiments.images`) in :data:`EXPERIMENTS`.
"""

import importlib

from pyanode.experiments.registry import (
    EXPERIMENTS,
    MODEL_KINDS,
    SETTINGS,
    Experiment,
    ExperimentResult,
    RunConfig,
    prepare_out,
    register,
    run_experiment,
)
from pyanode.experiments.toy import ToySpec, run_toy

try:  # image experiments register themselves through the same registry
    importlib.import_module("pyanode.experiments.images")
except ModuleNotFoundError as _err:
    if _err.name != "pyanode.experiments.images":
        raise

__all__ = [
    "EXPERIMENTS",
    "MODEL_KINDS",
    "SETTINGS",
    "Experiment",
    "ExperimentResult",
    "RunConfig",
    "ToySpec",
    "prepare_out",
    "register",
    "run_experiment",
    "run_toy",
]
