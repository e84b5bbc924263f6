"""pyanode: Neural ODEs and Augmented Neural ODEs (Dupont, Doucet & Teh, NeurIPS 2019) in JAX.

Public API:

* :func:`solve` -- the ODE engine (solvers, tolerances, three sensitivity algorithms, NFE stats).
* :func:`enable_x64` -- switch to float64.
"""

from pyanode.engine import SENSEALGS, SOLVERS, Solution, SolveError, Stats, enable_x64, solve
from pyanode.errors import PyanodeError

__all__ = [
    "SENSEALGS",
    "SOLVERS",
    "PyanodeError",
    "Solution",
    "SolveError",
    "Stats",
    "enable_x64",
    "solve",
]

__version__ = "0.1.0"
