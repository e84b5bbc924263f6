"""Write a second forecast suite, of real series outside the shared one, for ``forecast_accuracy.py --suite``.

The shared suite's nine series are the ones every forecasting change is scored on, so a change may come to
fit them rather than series in general. This suite is a check on that: other real series of the kinds the
forecaster must handle (weekly, monthly multivariate with trends, monthly prices, hourly), in the suite's
format, from data the project can read offline:

* ``seattle_weather_weekly``: Seattle's daily weather 2012-2015 (NOAA, as shipped in ``vega_datasets``),
  weekly means of its four numeric columns;
* ``delhi_weekly``: the Delhi climate training file (``../shared/data``), weekly means of its four columns;
* ``us_employment_monthly``: US employment by sector 2006-2015, 23 columns, thousands of jobs (BLS, in
  ``vega_datasets``): trends, the 2008 recession and its recovery;
* ``stock_<symbol>_monthly``: monthly closing prices of five stocks 2000-2010 (``vega_datasets``), one series
  each;
* ``seattle_temps_hourly``: Seattle's hourly temperatures in 2010 (NOAA, ``vega_datasets``).

Horizons and MASE seasons are M4's, as in the shared suite (weekly 13 and 1, monthly 18 and 12, hourly 48
and 24). Run::

    python benchmarks/second_suite.py OUT_FOLDER
    python benchmarks/forecast_accuracy.py --suite OUT_FOLDER --cache benchmarks/results/second_suite.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from forecast_accuracy import suite_dir  # noqa: E402

# frequency -> (horizon, MASE season): M4's; half-hourly (not in M4) two days ahead, a day's season
M4 = {"YS": (6, 1), "W": (13, 1), "MS": (18, 12), "QS": (8, 4), "h": (48, 24), "30min": (96, 48)}


def series() -> dict[str, tuple[pd.DataFrame, str, str]]:
    """``{name: (frame indexed by date, frequency, source)}``."""
    from vega_datasets import local_data

    out: dict[str, tuple[pd.DataFrame, str, str]] = {}
    weather = local_data.seattle_weather().set_index("date").drop(columns="weather")
    out["seattle_weather_weekly"] = (weather.resample("W").mean(), "W",
                                     "vega_datasets seattle-weather.csv (NOAA), weekly means")
    delhi = pd.read_csv(suite_dir().parent / "DailyDelhiClimateTrain.csv", parse_dates=["date"],
                        index_col="date")
    out["delhi_weekly"] = (delhi.resample("W").mean(), "W", "../DailyDelhiClimateTrain.csv, weekly means")
    jobs = local_data.us_employment()
    jobs.index = pd.DatetimeIndex(jobs.pop("month"), name="month")
    out["us_employment_monthly"] = (jobs.astype(float), "MS", "vega_datasets us-employment.csv (BLS)")
    stocks = local_data.stocks()
    for symbol, rows in stocks.groupby("symbol"):
        frame = rows.set_index(pd.DatetimeIndex(rows["date"], name="date"))[["price"]]
        out[f"stock_{symbol.lower()}_monthly"] = (frame, "MS", "vega_datasets stocks.csv")
    temps = local_data.seattle_temps().set_index("date")
    out["seattle_temps_hourly"] = (temps, "h", "vega_datasets seattle-temps.csv (NOAA)")
    return out


def write_suite(folder: Path, frames: dict[str, tuple[pd.DataFrame, str, str]] | None = None) -> Path:
    """The CSV files and ``suite.json`` of ``frames`` (default: :func:`series`) in ``folder`` (made if
    needed); returns the ``suite.json`` path."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = []
    for name, (frame, freq, source) in (series() if frames is None else frames).items():
        date_column = frame.index.name or "date"
        frame.rename_axis(date_column).to_csv(folder / f"{name}.csv")
        horizon, season = M4[freq]
        specs.append({"name": name, "file": f"{name}.csv", "date_column": date_column,
                      "columns": list(frame.columns), "frequency": freq, "horizon": horizon, "season": season,
                      "rows": len(frame), "source": source})
    path = folder / "suite.json"
    path.write_text(json.dumps({"series": specs}, indent=1) + "\n")
    return path


def main(frames: Callable[[], dict[str, tuple[pd.DataFrame, str, str]]] = series, doc: str | None = None
         ) -> None:
    """The command line: write the suite of ``frames()`` to the folder given."""
    p = argparse.ArgumentParser(description=(doc or __doc__).split("\n\n")[0])
    p.add_argument("folder", type=Path, help="where to write the suite (CSV files and suite.json)")
    print(f"wrote {write_suite(p.parse_args().folder, frames())}")


if __name__ == "__main__":
    main()
