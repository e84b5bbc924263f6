"""Write a third forecast suite, of real series of kinds the other two lack, for ``forecast_accuracy.py
--suite``: a half-hourly series with daily and weekly cycles, a seasonal monthly series and a smooth
quarterly trend, from the copies of R's data sets that ``pmdarima`` bundles (in the ``bench`` extra; read
from the installed package, nothing is downloaded):

* ``taylor_halfhourly``: half-hourly electricity demand in England and Wales, Monday 5 June to Sunday 27
  August 2000, megawatts (Taylor, 2003, "Short-term electricity demand forecasting using double seasonal
  exponential smoothing", J. Oper. Res. Soc. 54; R's ``forecast::taylor``);
* ``wineind_monthly``: Australian wine sales by wine makers in bottles of at most 1 litre, monthly,
  January 1980 to August 1994 (R's ``forecast::wineind``);
* ``austres_quarterly``: Australian residents, thousands, quarterly, 1971 Q2 to 1993 Q2 as R dates it (R's
  ``datasets::austres``; dated here by the first day of each quarter).

Horizons and MASE seasons as in the second suite (:data:`second_suite.M4`). Run::

    python benchmarks/third_suite.py OUT_FOLDER
    python benchmarks/forecast_accuracy.py --suite OUT_FOLDER --cache benchmarks/results/third_suite.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from second_suite import main  # noqa: E402


def series() -> dict[str, tuple[pd.DataFrame, str, str]]:
    """``{name: (frame indexed by date, frequency, source)}``."""
    from pmdarima.datasets import load_austres, load_taylor, load_wineind

    def frame(values, start: str, freq: str, column: str) -> pd.DataFrame:
        index = pd.date_range(start, periods=len(values), freq=freq, name="date")
        return pd.DataFrame({column: pd.Series(values, dtype=float).to_numpy()}, index=index)

    return {
        "taylor_halfhourly": (frame(load_taylor(), "2000-06-05", "30min", "demand"), "30min",
                              "pmdarima load_taylor (Taylor 2003; R forecast::taylor)"),
        "wineind_monthly": (frame(load_wineind(), "1980-01-01", "MS", "wine"), "MS",
                            "pmdarima load_wineind (R forecast::wineind)"),
        "austres_quarterly": (frame(load_austres(), "1971-04-01", "QS", "residents"), "QS",
                              "pmdarima load_austres (R datasets::austres)"),
    }


if __name__ == "__main__":
    main(series, __doc__)
