"""Forecasting a time series with an augmented neural ODE: ``pyanode.fit(df) -> Forecaster``.

The modules follow the data, one way; each imports only modules listed before it:

* :mod:`~pyanode.forecast.data` -- a CSV or DataFrame in: dates found, rows sorted, columns chosen,
  outliers masked, and a :class:`~pyanode.forecast.data.DataReport` of what was done;
* :mod:`~pyanode.forecast.grid` -- arrays on the time grid: grid step, positions, lag windows;
* :mod:`~pyanode.forecast.structure` -- each column's trend, cycles and transform, chosen by backtest;
* :mod:`~pyanode.forecast.model` -- the augmented neural ODE of the residuals and its rollout;
* :mod:`~pyanode.forecast.fitting` -- training windows, the window loss and validation on
  :mod:`pyanode.loop`;
* :mod:`~pyanode.forecast.io` -- the model file format (JSON and arrays, never a pickle);
* :mod:`~pyanode.forecast.forecaster` -- :func:`fit`, which runs the steps above in order, and the
  :class:`Forecaster` it returns: ``predict``, ``evaluate``, ``plot``, ``save``; :func:`load`.

:mod:`~pyanode.forecast.baselines` holds the naive forecasts and metrics every forecast is scored against;
:mod:`~pyanode.forecast.intervals` the prediction intervals (conformal calibration on backtests);
:mod:`~pyanode.forecast.panel` many series in long format, one shared model (``fit(df, id_column=...)``).
"""

from pyanode.forecast.data import DataError, DataReport
from pyanode.forecast.forecaster import Forecaster, fit, load
from pyanode.forecast.io import ModelFileError
from pyanode.forecast.model import Config, ForecastModel
from pyanode.forecast.panel import PanelForecaster
from pyanode.forecast.structure import ColumnStructure, Structure

__all__ = [
    "ColumnStructure",
    "Config",
    "DataError",
    "DataReport",
    "ForecastModel",
    "Forecaster",
    "ModelFileError",
    "PanelForecaster",
    "Structure",
    "fit",
    "load",
]
