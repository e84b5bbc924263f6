"""pyanode: Neural ODEs and Augmented Neural ODEs (Dupont, Doucet & Teh, NeurIPS 2019) in JAX.

Public API:

* :func:`fit` / :class:`Forecaster` / :func:`load` -- forecast a DataFrame or CSV with an augmented NODE
  (the package :mod:`pyanode.forecast`, one module per step of the data's way through it).
* :func:`solve` -- the ODE engine (named solvers, rtol/atol, three sensitivity algorithms, NFE stats);
  :func:`enable_x64` switches to float64.
* :mod:`pyanode.models` -- ``ODEFunc``, ``ODEBlock``, ``ODENet`` (ANODE when ``augment_dim > 0``),
  ``ResNet``, ``ConvODEFunc``, ``ConvODENet``.
* :mod:`pyanode.train` -- ``train(model, x, y, ...)``: optax training with a loss/accuracy/NFE history,
  progress bar, Ctrl-C keeping the best model, seeds; ``save_model`` / ``load_model``.
* :mod:`pyanode.loop` -- the one training loop both of the above run on.
* :func:`enable_compilation_cache` -- JAX's persistent compilation cache (on by default in ``fit``).
* :mod:`pyanode.datasets` (toy sets, image loaders), :mod:`pyanode.experiments` (the paper's
  experiments), :mod:`pyanode.plots` (figures).
"""

from pyanode import datasets, experiments, forecast, loop, models, plots, train
from pyanode.cache import enable_compilation_cache
from pyanode.engine import SENSEALGS, SOLVERS, Solution, SolveError, Stats, enable_x64, solve
from pyanode.errors import PyanodeError
from pyanode.forecast import Forecaster, fit, load
from pyanode.models import ConvODEFunc, ConvODENet, ODEBlock, ODEFunc, ODENet, ResNet

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
    "datasets",
    "enable_compilation_cache",
    "enable_x64",
    "experiments",
    "forecast",
    "fit",
    "load",
    "loop",
    "models",
    "plots",
    "solve",
    "train",
]

__version__ = "0.1.0"
