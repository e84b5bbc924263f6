"""Files as people write them (issue 14): day-first dates, time zones, delimiters, decimal marks, thousands
separators, compressed CSVs and Parquet -- read back to the same dates and values, or refused in one line.

These go through :func:`pyanode.forecast.data.load_frame` (fast); tests/test_cli_forecast.py runs the
same files through the real command line.
"""

import datetime
import gzip
import io
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyanode.forecast.data import DataError, DataReport, load_frame, parse_dates, tz_from_name, tz_name
from pyanode.forecast.grid import days_since_epoch


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_day_first_dates_are_read_day_first_for_the_whole_column(tmp_path):
    # Written by Excel in a UK locale: the 13th decides the order for every row, including 02/01/2020.
    p = _write(tmp_path / "uk.csv", "Date,x\n02/01/2020,1\n12/01/2020,2\n13/01/2020,3\n")
    df, rep = load_frame(p)
    assert list(df.index) == list(pd.to_datetime(["2020-01-02", "2020-01-12", "2020-01-13"]))
    assert df["x"].tolist() == [1.0, 2.0, 3.0]
    assert rep.date_order == "day-first" and "dates day-first" in "\n".join(rep.lines())
    # The same dates month first (a US export): 01/13/2020 decides the other way.
    us = _write(tmp_path / "us.csv", "Date,x\n01/02/2020,1\n01/12/2020,2\n01/13/2020,3\n")
    df, rep = load_frame(us)
    assert list(df.index) == list(pd.to_datetime(["2020-01-02", "2020-01-12", "2020-01-13"]))
    assert rep.date_order == "month-first"


def test_undecided_day_month_order_is_refused_never_guessed(tmp_path):
    # Every day is at most 12: 02/01/2020 could be 2 January or February 1.
    p = _write(tmp_path / "amb.csv", "date,x\n" + "".join(f"{d:02d}/01/2020,{d}\n" for d in range(1, 13)))
    with pytest.raises(DataError) as err:
        load_frame(p)
    msg = str(err.value)
    assert "\n" not in msg and "'01/01/2020'" in msg and "--dayfirst" in msg and "--date-format" in msg
    df, rep = load_frame(p, dayfirst=True)
    assert df.index[1] == pd.Timestamp("2020-01-02") and rep.date_order == "day-first"
    df, rep = load_frame(p, dayfirst=False)
    assert df.index[1] == pd.Timestamp("2020-02-01") and rep.date_order == "month-first"
    df, _ = load_frame(p, date_format="%d/%m/%Y")
    assert df.index[11] == pd.Timestamp("2020-01-12")
    # Both orders in one column: refused, naming one value of each.
    mixed = _write(tmp_path / "mixed.csv", "date,x\n13/01/2020,1\n01/14/2020,2\n")
    with pytest.raises(DataError, match="'13/01/2020'.*'01/14/2020'"):
        load_frame(mixed)
    # An explicit order that a value contradicts: that value is named, not swapped.
    with pytest.raises(DataError, match="01/14/2020"):
        load_frame(mixed, dayfirst=True)


def test_utc_offset_stays_in_the_data_zone(tmp_path):
    p = _write(tmp_path / "ist.csv", "date,x\n2020-01-02T00:00:00+05:30,1\n2020-01-03T00:00:00+05:30,2\n")
    df, rep = load_frame(p)
    assert tz_name(df.index.tz) == "+05:30" and rep.timezone == "+05:30"
    assert df.index[0] == pd.Timestamp("2020-01-02 00:00", tz=tz_from_name("+05:30"))
    assert str(df.index[0]) == "2020-01-02 00:00:00+05:30"  # the wall time of the data, not UTC
    # Calendar time counts local days: midnight in Delhi is a whole day.
    assert days_since_epoch(df.index)[0] == (pd.Timestamp("2020-01-02") - pd.Timestamp("1970-01-01")).days
    assert "time zone +05:30" in "\n".join(rep.lines())


def test_calendar_days_whatever_the_index_unit():
    # pandas keeps dates in seconds, ms, us or ns; the model's calendar time is the same in each.
    idx = pd.DatetimeIndex(["1970-01-02 12:00", "1969-12-31 18:00", "2020-01-02 00:00:30", None])
    for unit in ("s", "ms", "us", "ns"):
        got = days_since_epoch(idx.as_unit(unit))
        np.testing.assert_array_equal(got[:2], [1.5, -0.25])
        assert got[2] == 18263 + 30 / 86400 and np.isnan(got[3])


def test_zone_names_and_mixed_offsets(tmp_path):
    utc = _write(tmp_path / "utc.csv", "time,x\n2020-01-02 10:00:00 UTC,1\n2020-01-02 11:00:00 UTC,2\n")
    df, rep = load_frame(utc)
    assert rep.timezone == "UTC" and df.index[0] == pd.Timestamp("2020-01-02 10:00", tz="UTC")
    named = _write(tmp_path / "berlin.csv", "time,x\n2020-01-02 10:00 Europe/Berlin,1\n2020-01-02 11:00 "
                   "Europe/Berlin,2\n")
    df, rep = load_frame(named)
    assert rep.timezone == "Europe/Berlin" and df.index[0].hour == 10
    # Berlin data written with their offsets across the spring change: converted to UTC and reported.
    dst = _write(tmp_path / "dst.csv", "time,x\n2020-03-28T12:00:00+01:00,1\n2020-03-29T12:00:00+02:00,2\n")
    df, rep = load_frame(dst)
    assert rep.timezone == "UTC"
    assert list(df.index) == [pd.Timestamp("2020-03-28 11:00", tz="UTC"), pd.Timestamp("2020-03-29 10:00",
                                                                                       tz="UTC")]
    assert any("+01:00, +02:00" in n and "UTC" in n for n in rep.notes)
    some = _write(tmp_path / "some.csv", "time,x\n2020-03-28T12:00:00+01:00,1\n2020-03-29T12:00:00,2\n")
    with pytest.raises(DataError, match="some dates have a time zone"):
        load_frame(some)
    # A DataFrame with a zone keeps it.
    frame = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.date_range("2020-01-01", periods=2, tz="Asia/Tokyo"))
    df, rep = load_frame(frame)
    assert str(df.index.tz) == "Asia/Tokyo" and rep.timezone == "Asia/Tokyo"


def test_semicolon_file_with_decimal_commas(tmp_path):
    # As German Excel saves it: ';' between the fields, ',' as the decimal mark, '.' grouping thousands.
    p = _write(tmp_path / "de.csv",
               "Datum;Temperatur;Umsatz\n01.02.2020;1,5;1.200,50\n13.02.2020;-2,25;950\n")
    df, rep = load_frame(p)
    assert list(df.index) == [pd.Timestamp("2020-02-01"), pd.Timestamp("2020-02-13")]
    assert df["Temperatur"].tolist() == [1.5, -2.25] and df["Umsatz"].tolist() == [1200.5, 950.0]
    assert (rep.delimiter, rep.decimal, rep.thousands, rep.date_order) == (";", ",", ".", "day-first")
    assert rep.read_as() == ("read as: delimiter ';'; decimal mark ','; thousands separator '.'; "
                             "dates day-first")


def test_quoted_thousands_separators(tmp_path):
    p = _write(tmp_path / "us.csv", 'date,sales,price\n2020-01-01,"1,200",3.5\n2020-01-02,"12,345,678",4\n'
               '2020-01-03,950,"1,000.25"\n')
    df, rep = load_frame(p)
    assert df["sales"].tolist() == [1200.0, 12345678.0, 950.0] and df["price"].tolist() == [3.5, 4.0, 1000.25]
    assert rep.thousands == "," and rep.decimal == "." and "thousands separator ','" in rep.read_as()
    # In a semicolon file '1,200' could be 1.2 or 1200: refused unless told.
    semi = _write(tmp_path / "semi.csv", "date;x\n2020-01-01;1,200\n2020-01-02;950\n")
    with pytest.raises(DataError, match=r"'1,200'.*--decimal , or --thousands ,"):
        load_frame(semi)
    assert load_frame(semi, thousands=",")[0]["x"].tolist() == [1200.0, 950.0]
    assert load_frame(semi, decimal=",")[0]["x"].tolist() == [1.2, 950.0]
    # Both decimal marks in one file: refused, naming both.
    both = _write(tmp_path / "both.csv", "date;x\n2020-01-01;1,5\n2020-01-02;2.25\n")
    with pytest.raises(DataError, match=r"'2.25' and '1,5'"):
        load_frame(both)


def test_a_cell_that_does_not_fit_the_marks_is_missing_not_another_number(tmp_path):
    p = _write(tmp_path / "x.csv",
               "date;x\n2020-01-01;1,5\n2020-01-02;2,5\n2020-01-03;12.5.7\n2020-01-04;3,5\n")
    df, rep = load_frame(p)
    assert df["x"].iloc[:2].tolist() == [1.5, 2.5] and np.isnan(df["x"].iloc[2]) and df["x"].iloc[3] == 3.5
    assert "x (some cells)" in rep.ignored


def test_given_sep_and_tab_files(tmp_path):
    tab = _write(tmp_path / "t.tsv", "date\tx\ty\n2020-01-01\t1.5\t2\n2020-01-02\t2.5\t3\n")
    df, rep = load_frame(tab)
    assert rep.delimiter == "\t" and df["y"].tolist() == [2.0, 3.0] and "delimiter tab" in rep.read_as()
    pipe = _write(tmp_path / "p.txt", "date|x\n2020-01-01|1\n2020-01-02|2\n")
    assert load_frame(pipe, sep="|")[0]["x"].tolist() == [1.0, 2.0]
    with pytest.raises(DataError, match="one column.*--sep"):
        load_frame(pipe, sep=",")


def _frame_csv_bytes():
    return b"date,x\n2020-01-01,1.5\n2020-01-02,2.5\n2020-01-03,3.5\n"


def test_gzip_zip_and_parquet_files_are_read_directly(tmp_path):
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(_frame_csv_bytes()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("data/a.csv", _frame_csv_bytes())
    (tmp_path / "a.zip").write_bytes(buf.getvalue())
    for name, source in (("a.csv.gz", "gzip"), ("a.zip", "zip")):
        df, rep = load_frame(tmp_path / name)
        assert df["x"].tolist() == [1.5, 2.5, 3.5] and rep.source == source
        assert f"{source}-compressed CSV" in rep.read_as()
    frame = pd.DataFrame({"x": [1.5, 2.5, 3.5]}, index=pd.date_range("2020-01-01", periods=3, name="date",
                                                                      tz="Asia/Kolkata"))
    pytest.importorskip("pyarrow")
    frame.to_parquet(tmp_path / "a.parquet")
    df, rep = load_frame(tmp_path / "a.parquet")
    assert df["x"].tolist() == [1.5, 2.5, 3.5] and str(df.index.tz) == "Asia/Kolkata"
    assert rep.source == "parquet" and df.index[0] == pd.Timestamp("2020-01-01", tz="Asia/Kolkata")
    # Two files in one zip: refused, naming them.
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as z:
        z.writestr("a.csv", _frame_csv_bytes())
        z.writestr("b.csv", _frame_csv_bytes())
    with pytest.raises(DataError, match="2 files.*a.csv"):
        load_frame(tmp_path / "two.zip")
    # Compressed twice: what is inside the gzip is not text.
    (tmp_path / "twice.csv.gz").write_bytes(gzip.compress(gzip.compress(_frame_csv_bytes())))
    with pytest.raises(DataError, match=r"twice.csv.gz is a binary file, not a CSV text file$"):
        load_frame(tmp_path / "twice.csv.gz")


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "a.parquet").write_bytes(b"PAR1" + bytes(20) + b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "pyarrow" else real(n, *a))
    with pytest.raises(DataError, match=r"needs pyarrow: pip install 'pyanode\[parquet\]'"):
        load_frame(tmp_path / "a.parquet")


def test_parse_dates_and_zone_names_round_trip():
    assert parse_dates(["13/01/2020", "14/01/2020"])[0] == pd.Timestamp("2020-01-13")
    with pytest.raises(DataError, match="could be day first or month first"):
        parse_dates(["01/02/2020"])
    with pytest.raises(DataError, match=r"^not parseable as dates: 'soon'$"):
        parse_dates(["2020-01-01", "2020-01-02", "soon"])  # mostly dates: the one that is not is named
    with pytest.raises(DataError, match=r"^not parseable as dates: 'soon'$"):
        parse_dates(["soon", "later"])  # not dates at all
    # An index of date strings is parsed and keeps its name.
    months = pd.Index(["2020-01", "2020-02"], name="month")
    frame, _ = load_frame(pd.DataFrame({"x": [1.0, 2.0]}, index=months))
    assert frame.index.name == "month" and frame.index[1] == pd.Timestamp("2020-02-01")
    # A DataFrame gives its dates, an index or a column (a test set passed as the dates to forecast).
    test = pd.DataFrame({"day": ["2020-01-13", "2020-01-14"], "x": [1.0, 2.0]})
    want = pd.DatetimeIndex(["2020-01-13", "2020-01-14"])
    assert list(parse_dates(test)) == list(want)
    assert list(parse_dates(test.set_index(pd.to_datetime(test["day"])).drop(columns="day"))) == list(want)
    # Not a one-dimensional collection: one line that says what to pass.
    for bad, got in (("2020-01-01", "str"), (np.zeros((2, 2)), r"ndarray of shape \(2, 2\)")):
        with pytest.raises(DataError, match=rf"^dates must be a list, .*; got {got} \(one date: "):
            parse_dates(bad)
    for name in ("+05:30", "-03:00", "UTC", "Europe/Berlin"):
        assert tz_name(pd.Timestamp("2020-01-01", tz=tz_from_name(name)).tz) == name
    assert tz_name(datetime.timezone(datetime.timedelta(hours=-3, minutes=-30))) == "-03:30"
    # A report from an older model file (before these fields existed) still loads.
    assert DataReport.from_dict({"rows": 3, "columns": ["x"]}).delimiter == ","


# ----------------------------------------------------------------------------------------------
# The property: whatever way a series is written, reading it gives back the same dates and values, or a
# clear error -- never different data.

DATE_FORMATS = {
    "D": ["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d %b %Y", "%b %d, %Y", "%d-%m-%Y"],
    "h": ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%d.%m.%Y %H:%M"],
    "MS": ["%Y-%m", "%Y-%m-%d", "%m/%Y", "%d/%m/%Y", "%m/%d/%Y", "%b %Y", "%B %Y"],
}


@st.composite
def written_series(draw):
    freq = draw(st.sampled_from(["D", "h", "MS"]))
    n = draw(st.integers(3, 40))
    start = pd.Timestamp(draw(st.dates(datetime.date(1990, 1, 1), datetime.date(2030, 12, 31))))
    idx = pd.date_range(start, periods=n, freq=freq)
    fmt = draw(st.sampled_from(DATE_FORMATS[freq]))
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    # Tools in decimal-comma locales use ';' (or a tab) between fields; a comma-delimited file with
    # decimal commas is not something a tool writes.
    decimal = draw(st.sampled_from([".", ","] if sep != "," else ["."]))
    digits = draw(st.integers(0, 4))
    values = draw(st.lists(st.floats(-1e5, 1e5, allow_nan=False), min_size=n, max_size=n))
    zones = [None, None, "+05:30", "-04:00", "Z"] if freq == "h" else [None]
    zone = draw(st.sampled_from(zones))
    return freq, idx, fmt, sep, decimal, digits, np.round(values, digits), zone


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(written_series())
def test_reading_any_way_of_writing_gives_the_same_data_or_a_clear_error(tmp_path, case):
    freq, idx, fmt, sep, decimal, digits, values, zone = case
    dates = [d.strftime(fmt) + (zone or "") for d in idx]
    cells = [f"{v:.{digits}f}".replace(".", decimal) for v in values]
    text = f"date{sep}value\n" + "".join(f"{d}{sep}{c}\n" for d, c in zip(dates, cells, strict=True))
    path = tmp_path / "series.csv"
    path.write_text(text, encoding="utf-8")
    try:
        df, rep = load_frame(path)
    except DataError as err:
        msg = str(err)
        assert "\n" not in msg
        # The only refusals: an order no value decides, a comma that could be either mark, or a date
        # that holds the delimiter unquoted (as '%b %d, %Y' does in a comma file).
        assert ("could be day first or month first" in msg or "could have a decimal comma" in msg
                or "more fields than the header" in msg), msg
        return
    expected = idx
    if zone is not None:
        expected = idx.tz_localize(tz_from_name(zone))
    got = df.index.tz_localize(None) if df.index.tz is not None and zone is None else df.index
    assert got.equals(pd.DatetimeIndex(expected)) or list(got) == list(expected), (text[:200], got[:3])
    np.testing.assert_allclose(df["value"].to_numpy(), values, rtol=0, atol=10.0 ** -(digits + 1))
    assert rep.delimiter == sep
    if digits > 0:  # with whole numbers only there is no decimal mark to find, and none is needed
        assert rep.decimal == decimal


def test_an_unquoted_delimiter_inside_a_date_is_refused_not_shifted(tmp_path):
    """'Jan 01, 2000' unquoted in a comma file: pandas would quietly make 'Jan 01' an index and read the
    year as the date (year 1) and the date's year as the value; that is refused. Quoted, it reads."""
    bad = tmp_path / "bad.csv"
    bad.write_text("date,value\nJan 01, 2000,5\nJan 02, 2000,6\nJan 03, 2000,7\n")
    with pytest.raises(DataError, match="more fields than the header"):
        load_frame(bad)
    good = tmp_path / "good.csv"
    good.write_text('date,value\n"Jan 01, 2000",5\n"Jan 02, 2000",6\n"Jan 03, 2000",7\n')
    df, _ = load_frame(good)
    assert list(df.index) == list(pd.date_range("2000-01-01", periods=3))
    assert df["value"].tolist() == [5.0, 6.0, 7.0]


def test_two_digit_years_and_dates_without_their_midnight(tmp_path):
    # Two-digit years: 00-68 are 2000-2068, 69-99 are 1969-1999 (as strptime's %y).
    p = _write(tmp_path / "yy.csv", "date,x\n13/01/20,1\n31/12/68,2\n01/01/69,3\n")
    df, rep = load_frame(p)
    assert list(df.index) == list(pd.to_datetime(["1969-01-01", "2020-01-13", "2068-12-31"]))
    assert df["x"].tolist() == [3.0, 1.0, 2.0] and rep.date_order == "day-first"
    # Timestamps that leave out a midnight time (as some exports write them) are all read.
    p = _write(tmp_path / "t.csv", "time,x\n2020-01-01,1\n2020-01-01 12:00,2\n2020-01-02,3\n")
    df, rep = load_frame(p)
    assert list(df.index) == [pd.Timestamp(t) for t in ("2020-01-01", "2020-01-01 12:00", "2020-01-02")]
    assert (rep.start, rep.end) == ("2020-01-01 00:00:00", "2020-01-02 00:00:00")


def test_a_date_format_with_several_utc_offsets_converts_them_to_utc():
    """With ``date_format`` too (pandas 3 raises on mixed offsets where older pandas returned objects)."""
    df = pd.DataFrame({"date": ["2020-03-28 10:00 +0100", "2020-03-29 10:00 +0200", "2020-03-30 10:00 +0200"],
                       "y": [1.0, 2.0, 3.0]})
    frame, report = load_frame(df, date_format="%Y-%m-%d %H:%M %z")
    assert list(frame.index) == [pd.Timestamp("2020-03-28 09:00", tz="UTC"),
                                 pd.Timestamp("2020-03-29 08:00", tz="UTC"),
                                 pd.Timestamp("2020-03-30 08:00", tz="UTC")]
    assert "dates had several UTC offsets; converted them to UTC" in report.notes


def test_days_at_local_midnight_across_daylight_saving_stay_calendar_days(tmp_path):
    # pandas writes daily dates in a zone with daylight saving as midnights with two UTC offsets. In UTC
    # they would start at 23:00 or 22:00 of the day before; they are read as the days they name.
    days = pd.date_range("2021-03-20", periods=20, freq="D", tz="Europe/Berlin")
    pd.DataFrame({"date": days, "y": np.arange(20.0)}).to_csv(tmp_path / "tz.csv", index=False)
    df, rep = load_frame(tmp_path / "tz.csv")
    assert list(df.index) == list(pd.date_range("2021-03-20", periods=20, freq="D"))
    assert df["y"].tolist() == list(np.arange(20.0))
    assert ("dates are days at local midnight with 2 UTC offsets (+01:00, +02:00); read as calendar days"
            in rep.notes)
    # Times of day keep their instants: converted to UTC as before.
    hours = pd.date_range("2021-03-27 20:00", periods=12, freq="h", tz="Europe/Berlin")
    pd.DataFrame({"date": hours, "y": np.arange(12.0)}).to_csv(tmp_path / "tzh.csv", index=False)
    df, rep = load_frame(tmp_path / "tzh.csv")
    assert str(df.index.tz) == "UTC" and df.index[0] == pd.Timestamp("2021-03-27 19:00", tz="UTC")
