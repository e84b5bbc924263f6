"""pyanode: Neural ODEs and Augmented Neural ODEs (Dupont, Doucet & Teh, NeurIPS 2019) in JAX.

Public API:

* :func:`fit` / :class:`Forecaster` / :func:`load` -- forecast a DataFrame or CSV with an augmented NODE
  (the package :mod:`pyanode.forecast`, one module per step of the data's way through it);
  ``fit(df, id_column=...)`` fits a long-format panel with one shared model (:class:`PanelForecaster`).
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

import os as _os

# XLA's own C++ log lines (slow-compilation alarms and the like) are not for pyanode's users; they must be
# silenced before JAX loads XLA. A TF_CPP_MIN_LOG_LEVEL the user set wins (0 shows everything).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pyanode import datasets, experiments, forecast, loop, models, plots, train  # noqa: E402
from pyanode.cache import enable_compilation_cache  # noqa: E402
from pyanode.engine import SENSEALGS, SOLVERS, Solution, SolveError, Stats, enable_x64, solve  # noqa: E402
from pyanode.errors import PyanodeError  # noqa: E402
from pyanode.forecast import Forecaster, PanelForecaster, fit, load  # noqa: E402
from pyanode.models import ConvODEFunc, ConvODENet, ODEBlock, ODEFunc, ODENet, ResNet  # noqa: E402

__all__ = [
    "SENSEALGS",
    "SOLVERS",
    "ConvODEFunc",
    "ConvODENet",
    "Forecaster",
    "ODEBlock",
    "ODEFunc",
    "ODENet",
    "PanelForecaster",
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
