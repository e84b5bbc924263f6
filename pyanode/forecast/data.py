"""Step 1 of the forecaster: data in. Read a CSV or DataFrame, find the dates, clean, mask outliers.

Data flow through :mod:`pyanode.forecast` (each module reads only what the ones before it produce):
**data** (this module: a frame of dated numeric columns and a report of what was done to it) ->
:mod:`~pyanode.forecast.grid` (arrays on the time grid) -> :mod:`~pyanode.forecast.model` (the ODE) ->
:mod:`~pyanode.forecast.fitting` (training on :mod:`pyanode.loop`) -> :mod:`~pyanode.forecast.forecaster`
(predict, evaluate, plot) -> :mod:`~pyanode.forecast.io` (the model file).

A CSV path or a DataFrame goes through :func:`load_frame` (dates found, rows sorted, duplicate dates
refused or merged, non-numeric columns reported and dropped), then :func:`clean` (infinite values
refused, outliers masked). Missing values stay missing (NaN); they are masked in the loss, never
invented.

Outliers are found with the robust z-score of Iglewicz & Hoaglin, ``z = 0.6745 (x - median) / MAD``
(the MAD of a normal sample is 0.6745 sigma, so ``z`` is on the scale of a standard score but is not
dragged by the outliers themselves). Values with ``|z| > threshold`` both against the whole column and
against their 15 neighbours (rolling median/MAD) are masked; the second test spares trending series.
The default threshold is deliberately loose (6, not the textbook 3.5) because real daily series have
heavy but genuine tails (a stormy day's wind speed) while data-entry errors are far out (Delhi's
7679 hPa is at ``z`` of about 670, a 938 hPa day at 7).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pandas as pd

from pyanode.errors import PyanodeError

__all__ = ["DataError", "DataReport", "clean", "load_frame", "resample_frame"]

DATE_NAMES = ("date", "datetime", "time", "timestamp", "ds", "day", "period", "month")
DEDUPE = ("mean", "first", "last")


class DataError(PyanodeError):
    """The data cannot be used as given; the message says what is wrong and what to do."""


@dataclasses.dataclass
class DataReport:
    """What was done to the data on its way to the model (shown by the CLI, kept on the Forecaster)."""

    rows: int = 0
    start: str = ""
    end: str = ""
    date_column: str = ""
    columns: list[str] = dataclasses.field(default_factory=list)
    ignored: dict[str, str] = dataclasses.field(default_factory=dict)  # column -> reason
    duplicates_merged: int = 0
    unsorted: bool = False
    missing: dict[str, int] = dataclasses.field(default_factory=dict)
    outliers: dict[str, int] = dataclasses.field(default_factory=dict)
    outlier_examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def lines(self) -> list[str]:
        """A few human-readable lines: what was read, ignored, merged and masked."""
        out = [f"{self.rows} rows from {self.start} to {self.end}; modelled: {', '.join(self.columns)}"]
        for col, why in self.ignored.items():
            out.append(f"ignored column {col!r}: {why}")
        if self.unsorted:
            out.append("rows were not in date order; sorted them")
        out.extend(self.notes)
        if self.duplicates_merged:
            out.append(f"merged {self.duplicates_merged} duplicate-date rows")
        for col, k in self.missing.items():
            if k:
                out.append(f"{col}: {k} missing values (masked in the loss)")
        for col, k in self.outliers.items():
            if k:
                ex = ", ".join(self.outlier_examples.get(col, [])[:3])
                out.append(f"{col}: {k} outlier{'s' if k != 1 else ''} masked ({ex})")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataReport:
        return cls(**d)


# ----------------------------------------------------------------------------------------------
# Reading


def _read_csv(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p} is a directory; give a CSV file")
    raw = p.read_bytes()
    if not raw.strip():
        raise DataError(f"{p} is empty; give a CSV file with a header row and data rows")
    if raw[:2] == b"\x1f\x8b" or raw[:4] in (b"PK\x03\x04", b"\x89PNG") or b"\x00" in raw[:4096]:
        raise DataError(f"{p} is a binary file, not a CSV text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{p} is not UTF-8 text (byte {err.start}); save it as UTF-8 CSV") from None
    # Leading comment lines ("# Data source: ...") are common above the header; skip them.
    lines = text.splitlines(keepends=True)
    skip = 0
    while skip < len(lines) and lines[skip].lstrip().startswith("#"):
        skip += 1
    text = "".join(lines[skip:])
    if not text.strip():
        raise DataError(f"{p} has only comment lines; give a CSV file with a header row and data rows")
    try:
        df = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{p} is not a readable CSV file: {first}") from None
    if len(df) == 0:
        raise DataError(f"{p} has a header but no data rows")
    if df.shape[1] < 2:
        raise DataError(f"{p} has one column; a CSV with a date column and numeric columns is needed")
    return df


def _parse_dates(values: pd.Series | pd.Index) -> pd.DatetimeIndex | None:
    """Parse dates if (nearly) all of them parse, else None."""
    if isinstance(values, pd.DatetimeIndex):
        return values
    s = pd.Series(values)
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return None  # numbers are data, not dates
    try:
        parsed = pd.to_datetime(s, errors="coerce", format="mixed")
    except (ValueError, TypeError):
        return None
    if parsed.isna().all() or parsed.isna().mean() > 0.0:
        return None if parsed.notna().mean() < 0.5 else pd.DatetimeIndex(parsed)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(None)
    return pd.DatetimeIndex(parsed)


def _find_dates(df: pd.DataFrame, date_column: str | None) -> tuple[pd.DataFrame, str]:
    """Return the frame indexed by its dates (a DatetimeIndex) and the name of the date column."""
    if date_column is not None:
        if date_column not in df.columns:
            if df.index.name == date_column:
                df = df.reset_index()
            else:
                raise DataError(
                    f"no column named {date_column!r}; the columns are: {', '.join(map(str, df.columns))}"
                )
        idx = _parse_dates(df[date_column])
        if idx is None or idx.isna().any():
            bad = df[date_column][pd.to_datetime(df[date_column], errors="coerce", format="mixed").isna()]
            example = f" (e.g. {bad.iloc[0]!r})" if len(bad) else ""
            raise DataError(f"column {date_column!r} has values that are not dates{example}")
        return df.drop(columns=[date_column]).set_index(idx.rename(date_column)), date_column
    if isinstance(df.index, pd.DatetimeIndex):
        idx = df.index
        if idx.tz is not None:
            idx = idx.tz_convert(None)
        return df.set_axis(idx, axis=0), str(df.index.name or "date")
    if not isinstance(df.index, pd.RangeIndex):
        idx = _parse_dates(df.index)
        if idx is not None and not idx.isna().any():
            return df.set_axis(idx, axis=0), str(df.index.name or "date")
    named = [c for c in df.columns if str(c).strip().lower() in DATE_NAMES]
    named += [
        c for c in df.columns
        if c not in named and any(k in str(c).lower() for k in ("date", "time", "timestamp"))
    ]
    candidates = named + [c for c in df.columns if c not in named]
    for c in candidates:
        idx = _parse_dates(df[c])
        if idx is None:
            if c in named:
                bad = df[c][pd.to_datetime(df[c], errors="coerce", format="mixed").isna()]
                example = f" (e.g. {bad.iloc[0]!r})" if len(bad) else ""
                raise DataError(f"date column {c!r} has values that do not parse as dates{example}")
            continue
        if idx.isna().any():
            k = int(idx.isna().sum())
            bad = df[c][np.asarray(idx.isna())].iloc[0]
            raise DataError(f"date column {c!r}: {k} values do not parse as dates (e.g. {bad!r})")
        return df.drop(columns=[c]).set_index(idx.rename(str(c))), str(c)
    raise DataError(
        "no date column found: name one with --date-column / date_column=, or give a column "
        f"named date/time/timestamp (columns: {', '.join(map(str, df.columns))})"
    )


def load_frame(
    data: str | Path | pd.DataFrame,
    *,
    date_column: str | None = None,
    columns: list[str] | None = None,
    dedupe: str | None = None,
    resample: str | None = None,
) -> tuple[pd.DataFrame, DataReport]:
    """Read a CSV path or a DataFrame into a float frame indexed by sorted, unique dates.

    Args:
        data: a CSV path or a DataFrame (with a DatetimeIndex or a date column).
        date_column: the name of the date column (default: found, see the module docstring).
        columns: the columns to model (default: every numeric column).
        dedupe: what to do with rows sharing a date: ``None`` refuses them (naming the dates);
            ``"mean"``, ``"first"`` or ``"last"`` merge them.
        resample: a pandas offset alias (e.g. ``"MS"`` for month starts, ``"W"``): average the data
            over those periods first.

    Returns:
        The frame (float64 columns, NaN where missing) and a :class:`DataReport`.
    """
    if dedupe is not None and dedupe not in DEDUPE:
        raise DataError(f"unknown dedupe {dedupe!r}; choose one of: {', '.join(DEDUPE)}")
    if isinstance(data, pd.DataFrame):
        df = data.copy()
        if len(df) == 0:
            raise DataError("the DataFrame has no rows")
    elif isinstance(data, (str, Path)):
        df = _read_csv(data)
    else:
        raise DataError(f"expected a CSV path or a pandas DataFrame, got {type(data).__name__}")
    df.columns = [str(c) for c in df.columns]
    df, date_col = _find_dates(df, date_column)
    report = DataReport(date_column=date_col)

    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError(
                f"column(s) {', '.join(map(repr, missing))} not in the data; "
                f"available: {', '.join(df.columns)}"
            )
        for c in df.columns:
            if c not in columns:
                report.ignored[c] = "not selected"
        df = df[list(columns)]

    keep = []
    for c in df.columns:
        col = df[c]
        if pd.api.types.is_bool_dtype(col):
            report.ignored[c] = "boolean, not numeric"
            continue
        num = pd.to_numeric(col, errors="coerce") if not pd.api.types.is_numeric_dtype(col) else col
        text_bad = int(num.isna().sum() - col.isna().sum())
        if not pd.api.types.is_numeric_dtype(col) and text_bad > 0.5 * max(1, int(col.notna().sum())):
            report.ignored[c] = "not numeric"
            continue
        if text_bad:
            report.ignored[f"{c} (some cells)"] = f"{text_bad} non-numeric cells treated as missing"
        if num.notna().sum() == 0:
            raise DataError(f"column {c!r} has no values (all missing); drop it or pick --columns")
        keep.append(c)
        df[c] = num.astype("float64")
    if not keep:
        raise DataError("no numeric column to model; the data needs at least one column of numbers")
    df = df[keep].astype("float64")

    arr = df.to_numpy()
    if np.isinf(arr).any():
        bad = [c for c in keep if np.isinf(df[c].to_numpy()).any()]
        first = df.index[np.isinf(df[bad[0]].to_numpy())][0]
        raise DataError(
            f"column(s) {', '.join(map(repr, bad))} contain infinite values (first on {first.date()}); "
            "replace them with numbers or leave the cells empty"
        )

    if not df.index.is_monotonic_increasing:
        report.unsorted = True
        df = df.sort_index(kind="stable")
    dup = df.index.duplicated(keep=False)
    if dup.any():
        dates = sorted({str(d.date()) if d == d.normalize() else str(d) for d in df.index[dup]})
        if dedupe is None:
            shown = ", ".join(dates[:5]) + (f" and {len(dates) - 5} more" if len(dates) > 5 else "")
            raise DataError(
                f"{len(dates)} duplicate date(s): {shown}; remove them or merge them with "
                "--dedupe mean (dedupe='mean')"
            )
        report.duplicates_merged = int(dup.sum() - len(dates))
        df = getattr(df.groupby(level=0, sort=True), dedupe)()

    if resample is not None:
        df = resample_frame(df, resample, report)

    report.rows = len(df)
    daily = bool((df.index == df.index.normalize()).all())
    report.start, report.end = (str(d.date()) if daily else str(d) for d in (df.index[0], df.index[-1]))
    report.columns = list(df.columns)
    return df, report


def _local_z(x: pd.Series, fallback: float, window: int = 15) -> pd.Series:
    """Robust z-score against the neighbours: (x - rolling median) / rolling MAD, over valid values."""
    v = x.dropna()
    roll = v.rolling(window, center=True, min_periods=3)
    med = roll.median()
    mad = (v - med).abs().rolling(window, center=True, min_periods=3).median()
    mad = mad.where(mad > 0, fallback)
    return (0.6745 * (v - med) / mad).reindex(x.index).fillna(0.0)


def resample_frame(df: pd.DataFrame, resample: str, report: DataReport) -> pd.DataFrame:
    """Average over pandas periods (e.g. ``"MS"``); a nearly empty last period is dropped and reported."""
    try:
        groups = df.resample(resample)
        counts = groups.size()
        out = groups.mean()
    except (ValueError, TypeError) as err:
        raise DataError(f"bad --resample offset {resample!r} (use a pandas offset such as MS, W, D): "
                        f"{str(err).splitlines()[0]}") from None
    keep_rows = counts > 0
    # A last period holding a small part of its rows (one day of a month) would anchor the forecast
    # on a mean of almost nothing; drop it and say so.
    if len(counts) > 2 and counts.iloc[-1] < 0.5 * counts[counts > 0].median():
        keep_rows.iloc[-1] = False
        report.notes.append(f"dropped the last {resample} period ({counts.index[-1].date()}): only "
                            f"{counts.iloc[-1]} of about {int(counts[counts > 0].median())} rows")
    out = out[keep_rows.to_numpy()].dropna(how="all")
    if len(out) == 0:
        raise DataError(f"no data left after resampling to {resample!r}")
    report.rows = len(out)
    report.start, report.end = str(out.index[0].date()), str(out.index[-1].date())
    return out


def clean(
    df: pd.DataFrame,
    report: DataReport | None = None,
    *,
    threshold: float = 6.0,
    center: pd.Series | None = None,
    spread: pd.Series | None = None,
) -> tuple[pd.DataFrame, DataReport, pd.Series, pd.Series]:
    """Mask outliers as NaN and count missing values.

    A value is an outlier when its robust z-score is above ``threshold`` both against the whole column
    (median/MAD) and against its neighbours (rolling median/MAD over 15 rows): a level that is merely
    high because the series trends upwards (a stock price) is locally normal and kept, while a spike such
    as Delhi's 7679 hPa is extreme on both counts.

    ``center``/``spread`` (median and MAD) default to the data's own; pass the training data's to clean
    a test set the same way. Returns the cleaned frame, the report, and the median and MAD used.
    """
    report = report if report is not None else DataReport(columns=list(df.columns), rows=len(df))
    if center is None:
        center = df.median()
    if spread is None:
        spread = (df - center).abs().median()
        # A column that is constant on more than half its values has MAD 0; fall back to the std.
        spread = spread.where(spread > 0, df.std(ddof=0)).fillna(0.0)
    out = df.copy()
    for c in df.columns:
        x = df[c]
        report.missing[c] = int(x.isna().sum())
        if spread[c] > 0 and threshold is not None and np.isfinite(threshold):
            z = 0.6745 * (x - center[c]) / spread[c]
            bad = (z.abs() > threshold) & (_local_z(x, spread[c]).abs() > threshold)
            report.outliers[c] = int(bad.sum())
            report.outlier_examples[c] = [f"{v:.6g} on {str(d)[:10]}" for d, v in x[bad].items()][:5]
            out.loc[bad, c] = np.nan
        else:
            report.outliers[c] = 0
    return out, report, center, spread
