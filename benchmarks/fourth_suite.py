"""Write a fourth forecast suite, of economic and geophysical series from statsmodels' bundled data sets, for
``forecast_accuracy.py --suite``: quarterly macroeconomic series through the 2008 recession, a seasonal
monthly index, an annual river flow and a weekly series with a steady trend and a yearly cycle. statsmodels
is installed with the ``bench`` extra; its data sets ship inside the package, so nothing is downloaded.

* ``elec_equip_monthly``: euro-area new orders for electrical equipment, an index, monthly, January 1995 to
  May 2016 (statsmodels ``elec_equip``; Eurostat);
* ``nile_annual``: the Nile's annual flow at Aswan, 1871-1970, 10^8 m^3 (statsmodels ``nile``; Durbin and
  Koopman, 2001);
* ``co2_weekly``: atmospheric CO2 at Mauna Loa, ppm, weekly: the last 800 weeks to December 2001, the
  few missing weeks interpolated (statsmodels ``co2``; Scripps);
* ``us_macro_quarterly``: US real GDP, CPI, unemployment rate and real investment, quarterly, 1959 Q1 to
  2009 Q3, four columns (statsmodels ``macrodata``; FRED);
* ``danish_money_quarterly``: Danish log real money and log real income, quarterly, 1974 Q1 to 1987 Q3
  (statsmodels ``danish_data``; Johansen and Juselius, 1990).

Horizons and MASE seasons are M4's, as in the other suites (:data:`second_suite.M4`; yearly 6 and 1). Run::

    python benchmarks/fourth_suite.py OUT_FOLDER
    python benchmarks/forecast_accuracy.py --suite OUT_FOLDER --cache benchmarks/results/fourth_suite.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from second_suite import main  # noqa: E402

CO2_WEEKS = 800  # the last weeks of the CO2 record: the forecaster's defaults then fit in seconds


def series() -> dict[str, tuple[pd.DataFrame, str, str]]:
    """``{name: (frame indexed by date, frequency, source)}``."""
    from statsmodels.datasets import co2, danish_data, elec_equip, macrodata, nile

    def dated(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.astype(float).rename_axis("date")

    orders = elec_equip.load_pandas().data
    orders.columns = ["orders"]
    flow = nile.load_pandas().data
    flow.index = pd.to_datetime(flow["year"].astype(int).astype(str) + "-01-01")
    weekly = co2.load_pandas().data.interpolate().iloc[-CO2_WEEKS:]
    macro = macrodata.load_pandas().data
    macro.index = pd.PeriodIndex.from_fields(year=macro["year"].astype(int),
                                             quarter=macro["quarter"].astype(int), freq="Q").to_timestamp()
    money = danish_data.load_pandas().data
    return {
        "elec_equip_monthly": (dated(orders), "MS", "statsmodels elec_equip (Eurostat)"),
        "nile_annual": (dated(flow[["volume"]]), "YS", "statsmodels nile (Durbin and Koopman 2001)"),
        "co2_weekly": (dated(weekly), "W", "statsmodels co2 (Scripps, Mauna Loa), last 800 weeks"),
        "us_macro_quarterly": (dated(macro[["realgdp", "cpi", "unemp", "realinv"]]), "QS",
                               "statsmodels macrodata (FRED)"),
        "danish_money_quarterly": (dated(money[["lrm", "lry"]]), "QS",
                                   "statsmodels danish_data (Johansen and Juselius 1990)"),
    }


if __name__ == "__main__":
    main(series, __doc__)
