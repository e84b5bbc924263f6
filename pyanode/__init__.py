"""pyanode: Neural ODEs and Augmented Neural ODEs (Dupont, Doucet & Teh, NeurIPS 2019) in JAX.

Public API:

* :func:`fit` / :class:`Forecaster` / :func:`load` -- forecast a DataFrame or CSV with an augmented NODE.
* :func:`solve` -- the ODE engine (named solvers, rtol/atol, three sensitivity algorithms, NFE stats);
  :func:`enable_x64` switches to float64.
* :mod:`pyanode.models` -- ``ODEFunc``, ``ODEBlock``, ``ODENet`` (ANODE when ``augment_dim > 0``),
  ``ResNet``, ``ConvODEFunc``, ``ConvODENet``.
* :func:`train` -- optax training with loss/accuracy/NFE history, progress, Ctrl-C, seeds;
  :func:`save_model` / :func:`load_model`.
* :mod:`pyanode.datasets` (toy sets, image loaders), :mod:`pyanode.experiments` (the paper's
  experiments), :mod:`pyanode.plots` (figures).
"""

from pyanode import datasets, experiments, models, plots
from pyanode.engine import SENSEALGS, SOLVERS, Solution, SolveError, Stats, enable_x64, solve
from pyanode.errors import PyanodeError
from pyanode.forecaster import Forecaster, fit, load
from pyanode.models import ConvODEFunc, ConvODENet, ODEBlock, ODEFunc, ODENet, ResNet
from pyanode.train import TrainResult, load_model, save_model, train

__all__ = [
    "SENSEALGS",
    "SOLVERS",
    "ConvODEFunc",
    "ConvODENet",
    "Forecaster",
    "ODEBlock",
    "ODEFunc",
    "ODENet",
    "PyanodeError",
    "ResNet",
    "Solution",
    "SolveError",
    "Stats",
    "TrainResult",
    "datasets",
    "enable_x64",
    "experiments",
    "fit",
    "load",
    "load_model",
    "models",
    "plots",
    "save_model",
    "solve",
    "train",
]

__version__ = "0.1.0"
