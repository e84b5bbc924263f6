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

Files are read as people write them: plain, gzip- or zip-compressed CSV text, or Parquet (with the
optional ``pyarrow``). The delimiter (``,`` ``;`` tab ``|``), the decimal mark and the thousands separator
are found from the values (or given: ``sep``, ``decimal``, ``thousands``) and reported when they are not
the default. Numbers are converted strictly: a cell that does not fit the chosen marks is reported as
non-numeric, never read as another number. Dates written day and month as numbers (``02/01/2020``) are
read in one order for the whole column, decided by a value whose day is above 12; when no value decides it
the column is refused with an example (give ``dayfirst`` or ``date_format``), never guessed. Dates with a
UTC offset or a time zone name stay in that zone; several offsets (daylight saving time) are converted
to UTC and reported.

Outliers are found with the robust z-score of Iglewicz & Hoaglin, ``z = 0.6745 (x - median) / MAD``
(the MAD of a normal sample is 0.6745 sigma, so ``z`` is on the scale of a standard score but is not
dragged by the outliers themselves). Values with ``|z| > threshold`` both against the whole column and
against their 15 neighbours (rolling median/MAD) are masked; the second test spares trending series.
The default threshold is deliberately loose (6, not the textbook 3.5) because real daily series have
heavy but genuine tails (a stormy day's wind speed) while data-entry errors are far out (Delhi's
7679 hPa is at ``z`` of about 670, a 938 hPa day at 7).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import gzip
import importlib.util
import io
import re
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pyanode.errors import PyanodeError

__all__ = ["DataError", "DataReport", "PanelLoader", "PanelRows", "clean", "load_frame", "load_panel",
           "parse_dates", "read_panel", "resample_frame", "tz_from_name", "tz_name"]

DATE_NAMES = ("date", "datetime", "time", "timestamp", "ds", "day", "period", "month")
DEDUPE = ("mean", "first", "last")
SEPARATORS = (",", ";", "\t", "|")
DECIMALS = (".", ",")


class DataError(PyanodeError):
    """The data cannot be used as given; the message says what is wrong and what to do."""


@dataclasses.dataclass(slots=True)  # without a per-object dict: a panel keeps one report per series
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
    # How the file was read; each is shown by lines() only when it is not the default.
    source: str = ""  # "gzip", "zip" or "parquet" ("" for plain CSV text or a DataFrame)
    delimiter: str = ","
    decimal: str = "."
    thousands: str = ""
    date_order: str = ""  # "day-first" or "month-first" when dates were written as 02/01/2020
    timezone: str = ""  # the dates' time zone ("+05:30", "UTC", "Europe/Berlin"); "" for none

    def read_as(self) -> str:
        """One line on what was detected about the file, or "" when everything was the default."""
        parts = []
        if self.source:
            parts.append("Parquet file" if self.source == "parquet" else f"{self.source}-compressed CSV")
        if self.delimiter != ",":
            parts.append(f"delimiter {'tab' if self.delimiter == chr(9) else repr(self.delimiter)}")
        if self.decimal != ".":
            parts.append(f"decimal mark {self.decimal!r}")
        if self.thousands:
            parts.append(f"thousands separator {self.thousands!r}")
        if self.date_order:
            parts.append(f"dates {self.date_order}")
        if self.timezone:
            parts.append(f"time zone {self.timezone}")
        return "read as: " + "; ".join(parts) if parts else ""

    def lines(self) -> list[str]:
        """A few human-readable lines: what was read, detected, ignored, merged and masked."""
        out = [f"{self.rows} rows from {self.start} to {self.end}; modelled: {', '.join(self.columns)}"]
        if self.read_as():
            out.append(self.read_as())
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
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ----------------------------------------------------------------------------------------------
# Reading


def _read_file(path: str | Path, sep: str | None) -> tuple[pd.DataFrame, str, str]:
    """Read a CSV (plain, gzip or zip) as text cells, or a Parquet file; returns (frame, source, sep)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p} is a directory; give a CSV file")
    raw = p.read_bytes()
    if not raw.strip():
        raise DataError(f"{p} is empty; give a CSV file with a header row and data rows")
    if raw[:4] == b"PAR1" or p.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(p), "parquet", ","
    source = ""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{p} is a damaged gzip file ({err}); compress the CSV again") from None
        source = "gzip"
    elif raw[:4] == b"PK\x03\x04":
        raw, source = _unzip(p, raw), "zip"
    if not raw.strip():
        raise DataError(f"{p} holds an empty file; give a CSV file with a header row and data rows")
    if raw[:4] in (b"PK\x03\x04", b"\x89PNG", b"PAR1") or raw[:2] == b"\x1f\x8b" or b"\x00" in raw[:4096]:
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
    given = sep is not None
    if sep is None:
        sep = _sniff_separator(text)
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{p} is not a readable CSV file: {first}") from None
    if len(df) == 0:
        raise DataError(f"{p} has a header but no data rows")
    if df.shape[1] < 2:
        if given:
            raise DataError(f"{p} has one column when split at {sep!r}; a date column and numeric columns "
                            "are needed: give the delimiter the file uses with --sep (sep=), or leave it out "
                            "to find it")
        raise DataError(f"{p} has one column (no , ; tab or | between the values); a date column and numeric "
                        "columns are needed: give the delimiter with --sep (sep=)")
    if not isinstance(df.index, pd.RangeIndex):
        # pandas quietly makes the surplus leading fields an index: every value would shift one column.
        raise DataError(f"{p}: the data rows have more fields than the header; a value holds the delimiter "
                        f"{sep!r} without quotes (e.g. a date written 'Jan 01, 2000'): quote such values, or "
                        "give the delimiter with --sep (sep=)")
    return df, source, sep


def _unzip(p: Path, raw: bytes) -> bytes:
    """The one data file inside a zip archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            names = [n for n in z.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
            if "[Content_Types].xml" in names:
                raise DataError(f"{p} is a spreadsheet (Excel/OpenDocument), not a CSV; save it as CSV")
            if len(names) != 1:
                raise DataError(f"{p} is a zip archive of {len(names)} files; it must hold exactly one CSV "
                                f"({', '.join(names[:5])})")
            return z.read(names[0])
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{p} is a damaged zip file ({err})") from None


def _read_parquet(p: Path) -> pd.DataFrame:
    if importlib.util.find_spec("pyarrow") is None:
        raise DataError(f"reading the Parquet file {p} needs pyarrow: pip install 'pyanode[parquet]'")
    try:
        df = pd.read_parquet(p, engine="pyarrow")
    except Exception as err:  # noqa: BLE001 - pyarrow raises its own error types for damaged files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{p} is not a readable Parquet file: {first}") from None
    if len(df) == 0:
        raise DataError(f"{p} has no data rows")
    if isinstance(df.index, pd.DatetimeIndex):
        df = df.reset_index(names=df.index.name or "date")
    if df.shape[1] < 2:
        raise DataError(f"{p} has one column; a date column and numeric columns are needed")
    return df


def _sniff_separator(text: str) -> str:
    """The delimiter that splits the header and (nearly) every row of the first 50 lines alike.

    Among ``,`` ``;`` tab ``|``, one qualifies when the header splits into at least two fields and at
    least 90% of the rows into as many (quotes respected); the most fields wins, ties go to the comma.
    """
    sample = [ln for ln in text.splitlines()[:50] if ln.strip()]
    best, best_k = ",", 1
    for cand in SEPARATORS:
        rows = list(csv.reader(sample, delimiter=cand, quotechar='"'))
        if not rows:
            continue
        k = len(rows[0])
        same = sum(len(r) == k for r in rows[1:])
        if k > best_k and (len(rows) == 1 or same >= 0.9 * (len(rows) - 1)):
            best, best_k = cand, k
    return best


# ----------------------------------------------------------------------------------------------
# Numbers


def _number_kind(cell: str) -> str | None:
    """What a cell says about the decimal mark and thousands separator.

    ``plain`` (digits only), ``point``/``comma`` (that mark is the decimal mark: ``3.14``, ``1.200,5``),
    ``group.``/``group,`` (that mark groups thousands: ``1,200,300``), ``amb.``/``amb,`` (one mark
    before exactly three digits, ``1,200``: either), or None (not a number, e.g. ``02.01.2020``).
    """
    m = re.fullmatch(r"[+-]?\s*(\d[\d.,]*|[.,]\d+)(?:[eE][+-]?\d+)?", cell.strip())
    if m is None:
        return None
    body = m.group(1)
    if body[-1] in ".,":
        return None
    dots, commas = body.count("."), body.count(",")
    if not dots and not commas:
        return "plain"
    if dots and commas:
        last = "." if body.rfind(".") > body.rfind(",") else ","
        other = "," if last == "." else "."
        whole = body[: body.rfind(last)]
        if body.count(last) > 1 or not re.fullmatch(rf"\d{{1,3}}(?:\{other}\d{{3}})+", whole):
            return None
        return "point" if last == "." else "comma"
    mark = "." if dots else ","
    name = "point" if dots else "comma"
    if dots + commas > 1:
        return f"group{mark}" if re.fullmatch(rf"\d{{1,3}}(?:\{mark}\d{{3}})+", body) else None
    whole, frac = body.split(mark)
    if len(frac) == 3 and re.fullmatch(r"[1-9]\d{0,2}", whole):
        return f"amb{mark}"
    return name


def _decide_marks(cells: dict[str, list[str]], sep: str, decimal: str | None, thousands: str | None
                  ) -> tuple[str, str]:
    """The decimal mark and thousands separator for the value columns' text cells (column -> cells).

    Decided by the values that decide it (``3.14`` or ``1,200,300``: a decimal point; ``1,5`` or
    ``1.200,5``: a decimal comma). ``1,200`` alone could be either: in a comma-delimited file (where such
    a cell must be quoted) the comma groups thousands; in any other file it is refused.
    """
    if decimal is not None and decimal not in DECIMALS:
        raise DataError(f"decimal mark must be '.' or ',', got {decimal!r}")
    if thousands is not None and len(thousands) > 1:
        raise DataError(f"thousands separator must be one character, got {thousands!r}")
    examples: dict[str, str] = {}
    for values in cells.values():
        kinds = {v: _number_kind(v) for v in values}
        if sum(k is not None for k in kinds.values()) < 0.5 * max(1, len(kinds)):
            continue  # a text column: its cells say nothing about numbers
        for v, k in kinds.items():
            if k is not None:
                examples.setdefault(k, v)
            if k in ("point", "comma") and "." in v and "," in v:
                examples.setdefault("group," if k == "point" else "group.", v)
    point = examples.get("point") or examples.get("group,")
    comma = examples.get("comma") or examples.get("group.")
    if decimal is None:
        if thousands in DECIMALS:
            decimal = "," if thousands == "." else "."
        elif point and comma:
            raise DataError(f"numbers are written with both '.' and ',' as the decimal mark (e.g. {point!r} "
                            f"and {comma!r}); give --decimal . or --decimal , (decimal=)")
        elif comma:
            decimal = ","
        elif point or "amb," not in examples or sep == ",":
            decimal = "."
        else:
            ex = examples["amb,"]
            raise DataError(f"numbers such as {ex!r} could have a decimal comma or a thousands separator; "
                            "give --decimal , or --thousands , (decimal= / thousands=)")
    if thousands is None:
        other = "," if decimal == "." else "."
        thousands = other if (f"amb{other}" in examples or f"group{other}" in examples) else ""
    if thousands == decimal:
        raise DataError(f"the decimal mark and the thousands separator must differ (both {decimal!r})")
    return decimal, thousands


def _to_numbers(col: pd.Series, decimal: str, thousands: str) -> pd.Series:
    """Text cells to float, strictly: a cell that does not fit the marks becomes NaN (and is reported)."""
    text = col.astype(object).where(col.notna())
    text = text.map(lambda v: v.strip() if isinstance(v, str) else v)
    if thousands:
        t = re.escape(thousands)
        d = re.escape(decimal)
        grouped = text.str.fullmatch(rf"[+-]?\d{{1,3}}(?:{t}\d{{3}})+(?:{d}\d*)?(?:[eE][+-]?\d+)?", na=False)
        has = text.str.contains(t, na=False)
        text = text.where(~has | grouped)  # a separator out of place: not a number
        text = text.str.replace(thousands, "", regex=False)
    if decimal != ".":
        text = text.where(~text.str.contains(".", regex=False, na=False))
        text = text.str.replace(decimal, ".", regex=False)
    return pd.to_numeric(text, errors="coerce")


# ----------------------------------------------------------------------------------------------
# Dates

_TZ_SUFFIX = re.compile(
    r"^(?P<base>.*\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s*[AaPp]\.?[Mm]\.?)?)\s*"
    r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?|UTC|GMT|[A-Za-z]+/[A-Za-z_]+(?:/[A-Za-z_]+)?)$")
_YEAR_LAST = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(?=$|[ T])(.*)$")
_YEAR_FIRST = re.compile(r"^(\d{4})([/.-])(\d{1,2})\2(\d{1,2})(?=$|[ T])(.*)$")
_MONTH_YEAR = re.compile(r"^(\d{1,2})[/.-](\d{4})$")


def tz_name(tz: datetime.tzinfo) -> str:
    """A time zone as text: ``UTC``, a fixed offset ``+05:30``, or a zone name ``Europe/Berlin``."""
    name = getattr(tz, "key", None) or getattr(tz, "zone", None)
    offset = tz.utcoffset(None)
    if offset is not None and (name is None or name == "UTC"):
        minutes = int(offset.total_seconds() // 60)
        if minutes == 0:
            return "UTC"
        sign = "+" if minutes > 0 else "-"
        return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return str(name or tz)


def tz_from_name(name: str) -> datetime.tzinfo | str:
    """The inverse of :func:`tz_name` (zone names are left to pandas)."""
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})?", name)
    if m is None:
        return "UTC" if name in ("Z", "UTC", "GMT") else name
    minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
    if minutes == 0:
        return "UTC"
    return datetime.timezone(datetime.timedelta(minutes=minutes if m.group(1) == "+" else -minutes))


@dataclasses.dataclass
class _Dates:
    """A parsed date column: the index (NaT where a value did not parse) and what was found out."""

    index: pd.DatetimeIndex
    order: str = ""
    timezone: str = ""
    note: str = ""
    problem: str = ""  # why the column cannot be used as it is (ambiguous order, mixed zones)


def _two_digit_year(y: str) -> int:
    return int(y) if len(y) == 4 else (2000 + int(y) if int(y) < 69 else 1900 + int(y))


def _parse_dates(values: pd.Series | pd.Index, dayfirst: bool | None = None, date_format: str | None = None
                 ) -> _Dates | None:
    """Parse a column of dates, or return None when it is not one (numbers, or mostly not dates)."""
    if isinstance(values, pd.DatetimeIndex):
        return _Dates(values, timezone=tz_name(values.tz) if values.tz is not None else "")
    s = pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(s):
        idx = pd.DatetimeIndex(s)
        return _Dates(idx, timezone=tz_name(idx.tz) if idx.tz is not None else "")
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return None  # numbers are data, not dates
    text = s.astype(object).where(s.notna()).map(lambda v: str(v).strip() if v == v and v is not None else v)
    present = text.notna() & (text != "")
    if not present.any() or text[present].map(lambda v: _number_kind(v) is not None).all():
        return None
    if date_format is not None:
        out = _parse_with_format(text, date_format)
    else:
        out = _parse_auto(text, dayfirst)
    if out.problem:
        return out  # dates, but not usable as written: the caller says why
    if out.index.notna().mean() < 0.5 or out.index[present.to_numpy()].notna().mean() < 0.5:
        return None
    return out


def _parse_with_format(text: pd.Series, date_format: str) -> _Dates:
    try:
        with warnings.catch_warnings():  # (pandas 2 warns of mixed offsets, handled below, to the user)
            warnings.simplefilter("ignore", FutureWarning)
            parsed = pd.to_datetime(text, format=date_format, errors="coerce")
    except (ValueError, TypeError) as err:
        if "Mixed timezones" not in str(err):  # pandas 3 raises for several UTC offsets; older ones don't
            raise DataError(f"bad --date-format {date_format!r}: {str(err).splitlines()[0]}") from None
        parsed = None
    note = ""
    if parsed is None or not pd.api.types.is_datetime64_any_dtype(parsed):  # several UTC offsets
        parsed = pd.to_datetime(text, format=date_format, errors="coerce", utc=True)
        note = "dates had several UTC offsets; converted them to UTC"
    idx = pd.DatetimeIndex(parsed)
    return _Dates(idx, timezone=tz_name(idx.tz) if idx.tz is not None else "", note=note)


def _parse_auto(text: pd.Series, dayfirst: bool | None) -> _Dates:
    """Dates in any common writing, one day/month order for the whole column, zones kept."""
    cells = text.where(text != "")
    split = cells.str.extract(_TZ_SUFFIX)
    base = split["base"].where(split["base"].notna(), cells)
    zone = split["tz"]
    # Numeric dates with the year last: decide the order from the values, once for the column.
    m = base.str.extract(_YEAR_LAST)
    has = m[0].notna()
    order, problem = "", ""
    if has.any():
        first, second = m[0][has].astype(int), m[2][has].astype(int)
        day_first_ex = base[has][(first > 12).to_numpy()]
        month_first_ex = base[has][(second > 12).to_numpy()]
        if dayfirst is not None:
            order = "day-first" if dayfirst else "month-first"
        elif len(day_first_ex) and len(month_first_ex):
            problem = (f"dates are written both day first ({day_first_ex.iloc[0]!r}) and month first "
                       f"({month_first_ex.iloc[0]!r}); make them one order or give --date-format")
        elif len(day_first_ex):
            order = "day-first"
        elif len(month_first_ex):
            order = "month-first"
        else:
            ex = cells[has].iloc[0]
            problem = (f"dates such as {ex!r} could be day first or month first and no value decides it; "
                       "give --dayfirst or --monthfirst (dayfirst=True/False), or --date-format "
                       f"(date_format=, e.g. '%d{m[1][has].iloc[0]}%m{m[1][has].iloc[0]}%Y')")
        if order:
            day, month = (m[0], m[2]) if order == "day-first" else (m[2], m[0])
            iso = [f"{_two_digit_year(y):04d}-{int(mo):02d}-{int(d):02d}{rest}"
                   for d, mo, y, rest in zip(day[has], month[has], m[3][has], m[4][has], strict=True)]
            base = base.copy()
            base[has] = iso
    m = base.str.extract(_YEAR_FIRST)
    yf = m[0].notna()
    if yf.any():
        base = base.copy()
        base[yf] = [f"{y}-{int(mo):02d}-{int(d):02d}{rest}" for y, mo, d, rest in
                    zip(m[0][yf], m[2][yf], m[3][yf], m[4][yf], strict=True)]
    m = base.str.extract(_MONTH_YEAR)
    my = m[0].notna()
    if my.any():
        base = base.copy()
        base[my] = [f"{y}-{int(mo):02d}" for mo, y in zip(m[0][my], m[1][my], strict=True)]
    numeric_form = has | yf | my
    parsed = pd.Series(pd.to_datetime(base, format="ISO8601", errors="coerce"), index=base.index)
    rest = parsed.isna() & base.notna() & ~numeric_form
    if rest.any():  # month names and other wordy forms ("2 Jan 2020", "January 2020")
        parsed[rest] = pd.to_datetime(base[rest], format="mixed", errors="coerce")
    naive = pd.DatetimeIndex(parsed)
    if naive.tz is not None:
        naive = naive.tz_localize(None)
    return _localize(naive, zone, cells, order, problem)


def _zone_key(z: str) -> str:
    """One spelling per zone: ``Z``, ``GMT``, ``+00:00`` are all ``UTC``; ``+0530`` is ``+05:30``."""
    t = tz_from_name(z)
    return t if isinstance(t, str) else tz_name(t)


def _localize(naive: pd.DatetimeIndex, zone: pd.Series, cells: pd.Series, order: str, problem: str) -> _Dates:
    """Put the parsed wall times in their zones: one zone is kept; several are converted to UTC."""
    ok = np.asarray(naive.notna())
    zones = zone[ok]
    if problem or not zones.notna().any():
        return _Dates(naive, order=order, problem=problem)
    if zones.isna().any():
        seen = cells[ok]
        with_tz = seen[zones.notna().to_numpy()].iloc[0]
        without = seen[zones.isna().to_numpy()].iloc[0]
        return _Dates(naive, order=order, problem="some dates have a time zone and some do not "
                                                  f"(e.g. {with_tz!r} and {without!r})")
    keys = zone.map(lambda z: _zone_key(z) if isinstance(z, str) else z)
    unique = list(dict.fromkeys(keys[ok]))
    shown = ", ".join(unique[:4]) + (" ..." if len(unique) > 4 else "")
    if len(unique) > 1 and (naive[ok] == naive[ok].normalize()).all():
        # Days written as local midnights, the offset changing with daylight saving: in UTC they would
        # start at 23:00 or 22:00 of the day before, and the forecast's dates with them.
        return _Dates(naive, order=order, note=f"dates are days at local midnight with {len(unique)} UTC "
                                               f"offsets ({shown}); read as calendar days")
    try:
        if len(unique) == 1:
            idx = naive.tz_localize(tz_from_name(unique[0]), ambiguous="raise", nonexistent="raise")
            return _Dates(idx, order=order, timezone=tz_name(idx.tz))
        utc = np.full(len(naive), np.datetime64("NaT"), dtype="datetime64[ns]")
        for z in unique:
            sel = (keys == z).to_numpy() & ok
            part = naive[sel].tz_localize(tz_from_name(z), ambiguous="raise", nonexistent="raise")
            utc[sel] = part.tz_convert("UTC").tz_localize(None).to_numpy().astype("datetime64[ns]")
    except Exception as err:  # noqa: BLE001 - unknown zone names, times that do not exist in a zone
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return _Dates(naive, order=order, problem=f"cannot place the dates in their time zone ({first})")
    return _Dates(pd.DatetimeIndex(utc).tz_localize("UTC"), order=order, timezone="UTC",
                  note=f"dates had {len(unique)} different UTC offsets or zones ({shown}); "
                       "converted them to UTC")


def parse_dates(values: Sequence | pd.Index | pd.Series | pd.DataFrame, *, dayfirst: bool | None = None,
                date_format: str | None = None) -> pd.DatetimeIndex:
    """Parse dates by the rules of :func:`load_frame` (one day/month order, zones kept); refuse otherwise.
    A DataFrame (a test set, say) gives its dates: its date index or date column, found as the data's are."""
    if isinstance(values, pd.DatetimeIndex):
        return values
    if isinstance(values, pd.DataFrame):
        return _find_dates(values, None, dayfirst, date_format)[0].index
    if isinstance(values, (str, bytes)) or np.ndim(values) != 1:
        shape = f" of shape {np.shape(values)}" if np.ndim(values) > 1 else ""
        raise DataError("dates must be a list, Series or index of dates, or a DataFrame with dates; got "
                        f"{type(values).__name__}{shape} (one date: dates=['2020-01-01'])")
    res = _parse_dates(pd.Index(values), dayfirst, date_format)
    if res is not None and res.problem:
        raise DataError(res.problem)
    if res is None or res.index.isna().any():
        vals = pd.Series(pd.Index(values))
        bad = vals[np.asarray(res.index.isna())] if res is not None else vals
        raise DataError(f"not parseable as dates: {bad.iloc[0]!r}" if len(bad) else "no dates given")
    return res.index


def _find_dates(df: pd.DataFrame, date_column: str | None, dayfirst: bool | None = None,
                date_format: str | None = None) -> tuple[pd.DataFrame, str, _Dates]:
    """Return the frame indexed by its dates (a DatetimeIndex), the date column's name, and the parse."""

    def checked(c: str, res: _Dates | None, what: str) -> _Dates:
        if res is None:
            col = df[c] if c in df.columns else pd.Series(df.index)
            bad = col[pd.to_datetime(col, errors="coerce", format="mixed").isna()] if len(col) else col
            bad = bad if len(bad) else col.dropna()
            example = f" (e.g. {bad.iloc[0]!r})" if len(bad) else ""
            raise DataError(f"{what} {c!r} has values that are not dates{example}")
        if res.problem:
            raise DataError(f"{what} {c!r}: {res.problem}")
        if res.index.isna().any():
            k = int(res.index.isna().sum())
            col = df[c] if c in df.columns else pd.Series(df.index)
            bad = col[np.asarray(res.index.isna())].iloc[0]
            raise DataError(f"{what} {c!r}: {k} values do not parse as dates (e.g. {bad!r})")
        return res

    if date_column is not None:
        if date_column not in df.columns:
            if df.index.name == date_column:
                df = df.reset_index()
            else:
                raise DataError(
                    f"no column named {date_column!r}; the columns are: {', '.join(map(str, df.columns))}"
                )
        res = checked(date_column, _parse_dates(df[date_column], dayfirst, date_format), "column")
        return df.drop(columns=[date_column]).set_index(res.index.rename(date_column)), date_column, res
    if isinstance(df.index, pd.DatetimeIndex):
        res = _parse_dates(df.index)
        return df, str(df.index.name or "date"), res
    if not isinstance(df.index, pd.RangeIndex):
        res = _parse_dates(df.index, dayfirst, date_format)
        if res is not None and not res.problem and not res.index.isna().any():
            return df.set_axis(res.index.rename(df.index.name), axis=0), str(df.index.name or "date"), res
    named = [c for c in df.columns if str(c).strip().lower() in DATE_NAMES]
    named += [
        c for c in df.columns
        if c not in named and any(k in str(c).lower() for k in ("date", "time", "timestamp"))
    ]
    candidates = named + [c for c in df.columns if c not in named]
    for c in candidates:
        res = _parse_dates(df[c], dayfirst, date_format)
        if res is None and c not in named:
            continue
        res = checked(c, res, "date column")
        return df.drop(columns=[c]).set_index(res.index.rename(str(c))), str(c), res
    raise DataError(
        "no date column found: name one with --date-column / date_column=, or give a column "
        f"named date/time/timestamp (columns: {', '.join(map(str, df.columns))})"
    )


def format_when(ts: pd.Timestamp) -> str:
    """A date as people write it: the day alone at midnight, with the time of day otherwise (hourly data)."""
    ts = pd.Timestamp(ts)
    if ts == ts.normalize():
        return str(ts.date())
    return ts.strftime("%Y-%m-%d %H:%M:%S" if ts.second else "%Y-%m-%d %H:%M")


def _is_row_number(name: str, col: pd.Series) -> bool:
    """A column pandas named ``Unnamed: k`` (no header) holding 0, 1, 2, ... or 1, 2, 3, ...: the row index
    that ``DataFrame.to_csv`` writes unless told ``index=False``, not a series to forecast."""
    if not re.fullmatch(r"Unnamed: \d+", name) or len(col) < 2:
        return False
    v = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)  # (files are read as text)
    return bool(np.all(np.diff(v) == 1) and v[0] in (0, 1))


def load_frame(
    data: str | Path | pd.DataFrame,
    *,
    date_column: str | None = None,
    columns: list[str] | None = None,
    dedupe: str | None = None,
    resample: str | None = None,
    dayfirst: bool | None = None,
    date_format: str | None = None,
    sep: str | None = None,
    decimal: str | None = None,
    thousands: str | None = None,
) -> tuple[pd.DataFrame, DataReport]:
    """Read a file (CSV, gzip/zip CSV, Parquet) or a DataFrame into a float frame of sorted, unique dates.

    Args:
        data: a file path or a DataFrame (with a DatetimeIndex or a date column).
        date_column: the name of the date column (default: found, see the module docstring).
        columns: the columns to model (default: every numeric column).
        dedupe: what to do with rows sharing a date: ``None`` refuses them (naming the dates);
            ``"mean"``, ``"first"`` or ``"last"`` merge them.
        resample: a pandas offset alias (e.g. ``"MS"`` for month starts, ``"W"``): average the data
            over those periods first.
        dayfirst: ``True`` reads ``02/01/2020`` as 2 January, ``False`` as February 1; ``None`` (default)
            decides from the values and refuses a column that no value decides.
        date_format: a ``strftime`` format for the dates (e.g. ``"%d.%m.%Y %H:%M"``), instead of finding
            it.
        sep: the delimiter (default: found among ``,`` ``;`` tab ``|``).
        decimal: the decimal mark, ``"."`` or ``","`` (default: found from the values).
        thousands: the thousands separator (default: found; ``""`` for none).

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
        if sep is not None and (len(sep) != 1 or sep in '"0123456789'):
            raise DataError(f"the delimiter must be one character such as ';' or a tab, got {sep!r}")
        df, source, found_sep = _read_file(data, sep)
    else:
        raise DataError(f"expected a file path or a pandas DataFrame, got {type(data).__name__}")
    if not isinstance(data, (str, Path)):
        source, found_sep = "", ","
    df.columns = [str(c).strip() for c in df.columns]
    df, date_col, dates = _find_dates(df, date_column, dayfirst, date_format)
    report = DataReport(date_column=date_col, source=source, delimiter=found_sep, date_order=dates.order,
                        timezone=dates.timezone)
    if dates.note:
        report.notes.append(dates.note)

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
    else:
        for c in [c for c in df.columns if _is_row_number(c, df[c])]:
            report.ignored[c] = "row numbers (an index written with the data), not a series"
            df = df.drop(columns=c)

    text_cols = {c: [str(v) for v in pd.unique(df[c].dropna())] for c in df.columns
                 if not pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])}
    report.decimal, report.thousands = _decide_marks(text_cols, found_sep, decimal, thousands)
    keep = []
    for c in df.columns:
        col = df[c]
        if pd.api.types.is_bool_dtype(col):
            report.ignored[c] = "boolean, not numeric"
            continue
        numeric = pd.api.types.is_numeric_dtype(col)
        num = col if numeric else _to_numbers(col, report.decimal, report.thousands)
        text_bad = int(num.isna().sum() - col.isna().sum())
        if not numeric and text_bad > 0.5 * max(1, int(col.notna().sum())):
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


@dataclasses.dataclass(frozen=True)
class PanelLoader:
    """How each series of a panel is read once its rows are picked out: :func:`load_frame`'s options and
    what the whole file's read found (kept on every series' report). Small and picklable, so a worker
    process can load the series it is handed."""

    date_column: str
    source: str
    delimiter: str
    date_order: str
    timezone: str
    columns: tuple[str, ...] | None = None
    dedupe: str | None = None
    decimal: str | None = None
    thousands: str | None = None

    def load(self, rows: pd.DataFrame) -> tuple[pd.DataFrame, DataReport]:
        """One series' rows (indexed by date) as :func:`load_frame` reads them; raises :class:`DataError`."""
        df, rep = load_frame(rows, columns=list(self.columns) if self.columns is not None else None,
                             dedupe=self.dedupe, decimal=self.decimal, thousands=self.thousands)
        rep.date_column, rep.source, rep.delimiter = self.date_column, self.source, self.delimiter
        rep.date_order, rep.timezone = self.date_order, self.timezone
        return df, rep


@dataclasses.dataclass(frozen=True)
class PanelRows:
    """A long-format panel read and grouped once, each series' rows picked out only when asked for.

    Loading every series at once holds a DataFrame per series beside the input (for 10,000 series, more
    memory than the rows themselves); a fit takes them one by one instead and drops each when done."""

    frame: pd.DataFrame  # every row, indexed by date, without the id column
    ids: list[str]  # the series, in the order of their first row
    order: np.ndarray  # row positions grouped by series (each series' in the data's order)
    bounds: np.ndarray  # series i's rows are order[bounds[i] : bounds[i + 1]]
    loader: PanelLoader

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, i: int) -> pd.DataFrame:
        """Series ``i``'s rows, as read (not yet loaded: see :attr:`loader`)."""
        return self.frame.iloc[self.order[self.bounds[i] : self.bounds[i + 1]]]


def _group_ids(ids: pd.Series) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The series (ids as stripped text, in the order of their first row), the row positions grouped by
    series and each group's bounds. Only the distinct ids are made text: converting every row's id would
    make a string object per row (a copy of the id column many times its size)."""
    codes, uniques = pd.factorize(ids)
    names = pd.Series(uniques).astype(str).str.strip()
    series, keys = pd.factorize(names)  # ids that differ only by spaces (or type: 1 and "1") are one series
    row_series = series[codes]
    order = np.argsort(row_series, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(row_series, minlength=len(keys)))])
    return [str(k) for k in keys], order, bounds


def read_panel(
    data: str | Path | pd.DataFrame,
    id_column: str,
    *,
    date_column: str | None = None,
    columns: list[str] | None = None,
    dedupe: str | None = None,
    dayfirst: bool | None = None,
    date_format: str | None = None,
    sep: str | None = None,
    decimal: str | None = None,
    thousands: str | None = None,
) -> PanelRows:
    """Read a long-format panel (see :func:`load_panel`) without loading its series: the dates of the whole
    file parsed together, the rows grouped by series. A DataFrame given is not changed (nor copied whole)."""
    if isinstance(data, pd.DataFrame):
        raw, source, found_sep = data, "", ","
        if id_column not in raw.columns and id_column in (raw.index.names or []):
            raw = raw.reset_index(level=id_column)  # a new frame
    elif isinstance(data, (str, Path)):
        raw, source, found_sep = _read_file(data, sep)
    else:
        raise DataError(f"expected a file path or a pandas DataFrame, got {type(data).__name__}")
    names = [str(c).strip() for c in raw.columns]
    if len(raw) == 0:
        raise DataError("the data have no rows")
    if id_column not in names:
        raise DataError(f"no id column {id_column!r}; the columns are: {', '.join(names)}; name the "
                        "column that says which series a row belongs to with --id (id_column=)")
    at = names.index(id_column)
    ids = raw.iloc[:, at]
    if ids.isna().any():
        raise DataError(f"{int(ids.isna().sum())} rows have no id in column {id_column!r} (first at row "
                        f"{int(np.flatnonzero(ids.isna())[0]) + 1}); fill or remove them")
    keys, order, bounds = _group_ids(ids)
    rest = [k for k in range(len(names)) if k != at]
    raw = raw.iloc[:, rest]  # a new frame: renaming its columns leaves the caller's alone
    raw.columns = [names[k] for k in rest]
    raw, date_col, dates = _find_dates(raw, date_column, dayfirst, date_format)
    if columns is not None:
        missing = [c for c in columns if c not in raw.columns]
        if missing:
            raise DataError(f"column(s) {', '.join(map(repr, missing))} not in the data; "
                            f"available: {', '.join(raw.columns)}")
    loader = PanelLoader(date_col, source, found_sep, dates.order, dates.timezone,
                         tuple(columns) if columns is not None else None, dedupe, decimal, thousands)
    return PanelRows(raw, keys, order, bounds, loader)


def load_panel(
    data: str | Path | pd.DataFrame,
    id_column: str,
    *,
    date_column: str | None = None,
    columns: list[str] | None = None,
    dedupe: str | None = None,
    dayfirst: bool | None = None,
    date_format: str | None = None,
    sep: str | None = None,
    decimal: str | None = None,
    thousands: str | None = None,
) -> tuple[dict[str, tuple[pd.DataFrame, DataReport]], dict[str, str]]:
    """Read a long-format panel (one row per series and date, e.g. ``unique_id, ds, y``) into one frame
    per series, each read as :func:`load_frame` reads a single series.

    The dates of the whole file are parsed together (one day/month order for every series). Returns the
    series that read, ``{id: (frame, report)}`` in the order of their first row, and those that did not,
    ``{id: reason}`` (a duplicate date without ``dedupe``, a column with no values, ...). A fit reads the
    series one at a time instead (:func:`read_panel`).
    """
    panel = read_panel(data, id_column, date_column=date_column, columns=columns, dedupe=dedupe,
                       dayfirst=dayfirst, date_format=date_format, sep=sep, decimal=decimal,
                       thousands=thousands)
    series: dict[str, tuple[pd.DataFrame, DataReport]] = {}
    bad: dict[str, str] = {}
    for i, key in enumerate(panel.ids):
        try:
            series[key] = panel.loader.load(panel.rows(i))
        except DataError as err:
            bad[key] = str(err)
    return series, bad


def _column_medians(values: np.ndarray) -> np.ndarray:
    """Each column's median over its non-NaN values (NaN for a column without any), as pandas' ``median``
    gives, without numpy's slow ``nanmedian`` path for small arrays."""
    out = np.full(values.shape[1], np.nan)
    for k in range(values.shape[1]):
        x = values[:, k]
        x = x[~np.isnan(x)]
        if len(x):
            out[k] = np.median(x)
    return out


def _rolling_median(v: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Centred rolling median over an odd ``window`` (what pandas' ``rolling(window, center=True,
    min_periods=min_periods).median()`` gives): near the ends the window holds fewer values, and a window
    with fewer than ``min_periods`` non-NaN values gives NaN."""
    if len(v) == 0:
        return np.empty(0)
    half = window // 2
    padded = np.concatenate([np.full(half, np.nan), v, np.full(half, np.nan)])
    ordered = np.sort(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)  # NaNs last
    counts = (~np.isnan(ordered)).sum(axis=1)
    rows = np.arange(len(v))
    with np.errstate(invalid="ignore"):
        med = (ordered[rows, np.maximum(counts - 1, 0) // 2] + ordered[rows, counts // 2]) / 2
    return np.where(counts >= min_periods, med, np.nan)


def _local_z(x: np.ndarray, fallback: float, window: int = 15) -> np.ndarray:
    """Robust z-score against the neighbours, (x - rolling median) / rolling MAD, over the valid values
    (15 of them, centred); 0 where ``x`` is NaN."""
    seen = ~np.isnan(x)
    v = x[seen]
    med = _rolling_median(v, window, 3)
    mad = _rolling_median(np.abs(v - med), window, 3)
    with np.errstate(invalid="ignore"):
        mad = np.where(mad > 0, mad, fallback)
    out = np.zeros(len(x))
    out[seen] = np.nan_to_num(0.6745 * (v - med) / mad, nan=0.0)
    return out


PARTIAL_PERIOD = 0.85  # a first or last resampled period with fewer rows than this share of the typical


def resample_frame(df: pd.DataFrame, resample: str, report: DataReport) -> pd.DataFrame:
    """Average over pandas periods (e.g. ``"MS"``); a first or last period holding only part of its rows is
    dropped, and the report says so."""
    try:
        # (pandas warns of its own deprecated spellings, "H" for "h" and the like, from inside this module:
        # the offset is understood, so the user has nothing to act on)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            groups = df.resample(resample)
        counts = groups.size()
        out = groups.mean()
    except (ValueError, TypeError):
        raise DataError(f"bad --resample offset {resample!r}: not a pandas offset; use one such as MS (month "
                        "starts), W (weeks), D (days) or h (hours)") from None
    keep_rows = counts > 0
    # A first or last period holding only part of its rows (a day of a month, 20 hours of a day) averages
    # what it holds, and a within-period cycle then shows as a jump that the forecast starts from; drop
    # it and say so. (0.85: a February, 28 of 31 days, or a month missing a day or two, is whole.)
    typical = counts[counts > 0].median()
    dropped = 0
    for end, which in ((-1, "last"), (0, "first")):
        if len(counts) > 2 and keep_rows.iloc[end] and counts.iloc[end] < PARTIAL_PERIOD * typical:
            keep_rows.iloc[end] = False
            dropped += 1
            report.notes.append(f"dropped the {which} {resample} period ({counts.index[end].date()}): only "
                                f"{counts.iloc[end]} of about {int(typical)} rows")
    out = out[keep_rows.to_numpy()].dropna(how="all")
    if len(out) == 0:
        raise DataError(f"no data left after resampling to {resample!r}")
    used = int(counts[keep_rows].sum())
    report.notes.insert(len(report.notes) - dropped,
                        f"resampled to {resample}: {used} rows averaged into {len(out)} periods")
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
    values = df.to_numpy(dtype=np.float64, na_value=np.nan)
    if center is None:
        center = pd.Series(_column_medians(values), index=df.columns)
    if spread is None:
        mad = _column_medians(np.abs(values - center.reindex(df.columns).to_numpy(np.float64)))
        # A column that is constant on more than half its values has MAD 0; fall back to the std.
        std = df.std(ddof=0).to_numpy(np.float64)
        spread = pd.Series(np.where(mad > 0, mad, std), index=df.columns).fillna(0.0)
    out = df.copy()
    for k, c in enumerate(df.columns):
        x = values[:, k]
        report.missing[c] = int(np.isnan(x).sum())
        if spread[c] > 0 and threshold is not None and np.isfinite(threshold):
            with np.errstate(invalid="ignore"):
                z = 0.6745 * (x - center[c]) / spread[c]
                bad = (np.abs(z) > threshold) & (np.abs(_local_z(x, spread[c])) > threshold)
            report.outliers[c] = int(bad.sum())
            report.outlier_examples[c] = [f"{v:.6g} on {str(d)[:10]}" for d, v in zip(df.index[bad][:5],
                                                                                   x[bad][:5], strict=True)]
            if bad.any():
                out.loc[bad, c] = np.nan
        else:
            report.outliers[c] = 0
    return out, report, center, spread
