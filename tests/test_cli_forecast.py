"""``pyanode forecast`` on the command line: outputs, refusal to overwrite, and every bad input (exit 2)."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from figures import assert_forecast_drawn, run_recording_figures
from typer.testing import CliRunner

from pyanode.cli import app

runner = CliRunner()


def _csv(path, n=120, start="2022-01-01"):
    idx = pd.date_range(start, periods=n, freq="D")
    t = np.arange(n)
    df = pd.DataFrame({"date": idx.strftime("%Y-%m-%d"), "a": np.sin(t / 10.0) + 5, "b": np.cos(t / 7.0)})
    df.to_csv(path, index=False)
    return path


def _cli(args, cwd):
    """Run the real command in a subprocess (proves: exit code, one line, no traceback)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "pyanode", "forecast", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300)


def _one_line_error(res, *needles):
    err = res.stderr if isinstance(res, subprocess.CompletedProcess) else res.output
    code = res.returncode if isinstance(res, subprocess.CompletedProcess) else res.exit_code
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for n in needles:
        assert n in lines[0], lines[0]


def test_a_series_that_wanders_is_forecast_without_training(tmp_path):
    """A random walk: its departures persist, so by default the neural ODE is not trained, and the command
    says so in its one training line (and still writes the forecast)."""
    rng = np.random.default_rng(3)
    idx = pd.date_range("2022-01-01", periods=240, freq="D")
    pd.DataFrame({"date": idx.strftime("%Y-%m-%d"), "walk": 50 + np.cumsum(rng.normal(size=240))}).to_csv(
        tmp_path / "walk.csv", index=False)
    res = _cli(["walk.csv", "--horizon", "10", "--plot", ""], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "training: none; not trained: every column's departures persist" in res.stdout
    assert "the neural ODE was not trained: every column's departures from its structure" in res.stdout
    assert len(pd.read_csv(tmp_path / "forecast.csv")) == 10


def test_end_to_end_with_test_file(tmp_path):
    _csv(tmp_path / "train.csv", 120)
    full = pd.read_csv(_csv(tmp_path / "all.csv", 140))
    full.iloc[120:].to_csv(tmp_path / "test.csv", index=False)
    res, figures = run_recording_figures(["forecast", "train.csv", "--test", "test.csv", "--iterations", "6",
                                          "--save", "m.pyanode"], tmp_path,
                                         dict(os.environ, JAX_PLATFORMS="cpu"))
    assert res.returncode == 0, res.stderr
    out = pd.read_csv(tmp_path / "forecast.csv", index_col=0, parse_dates=True)
    assert list(out.columns) == ["a", "b"] and len(out) == 20 and out.index[0] == pd.Timestamp("2022-05-01")
    # The figure draws the written forecast, the test values and the history, one panel per column.
    truth = pd.read_csv(tmp_path / "test.csv", index_col=0, parse_dates=True)
    assert len(figures) == 1
    assert_forecast_drawn(figures[0], out, truth, bands=0)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"a", "b"}
    assert set(metrics["a"]) == {"model", "persistence", "seasonal_naive", "mean"}
    assert set(metrics["a"]["model"]) == {"mae", "rmse", "mase"}
    # The scores are those of the written forecast against the test file (MASE: over the in-sample MAE of
    # the one-step naive forecast, M4's scale for daily data).
    train, test = pd.read_csv(tmp_path / "train.csv"), pd.read_csv(tmp_path / "test.csv")
    for col in ("a", "b"):
        mae = float(np.mean(np.abs(out[col].to_numpy() - test[col].to_numpy())))
        scale = float(np.mean(np.abs(np.diff(train[col].to_numpy()))))
        assert metrics[col]["model"]["mae"] == pytest.approx(mae, rel=1e-4)
        assert metrics[col]["model"]["mase"] == pytest.approx(mae / scale, rel=1e-4)
    assert "MAE" in res.stdout and "persistence" in res.stdout
    # Outputs exist now: a second run is refused before any work, naming the file.
    again = _cli(["train.csv", "--test", "test.csv", "--iterations", "6"], tmp_path)
    _one_line_error(again, "forecast.csv", "--force")
    # The saved model loads and reproduces the written forecast.
    import pyanode.forecast as F

    fc = F.load(tmp_path / "m.pyanode")
    np.testing.assert_allclose(fc.predict(dates=out.index).to_numpy(), out.to_numpy(), rtol=1e-5)


def _bad_files(d):
    _csv(d / "good.csv")
    (d / "folder").mkdir()
    (d / "empty.csv").write_text("")
    (d / "header.csv").write_text("date,a,b\n")
    (d / "image.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (d / "packed.csv").write_bytes(gzip.compress(b"date,a\n2020-01-01,1\n"))
    (d / "latin1.csv").write_bytes("date,temp\u00e9\n2020-01-01,1\n".encode("latin-1"))
    (d / "nodate.csv").write_text("x,y\n1,2\n3,4\n5,6\n")
    (d / "baddate.csv").write_text("date,a\n2020-01-01,1\nyesterday,2\n2020-01-03,3\n")
    (d / "text.csv").write_text("date,name\n2020-01-01,x\n2020-01-02,y\n")
    (d / "allnan.csv").write_text("date,a,b\n2020-01-01,1,\n2020-01-02,2,\n2020-01-03,3,\n")
    (d / "inf.csv").write_text("date,a\n2020-01-01,1\n2020-01-02,inf\n2020-01-03,3\n")
    (d / "short.csv").write_text("date,a\n2020-01-01,1\n2020-01-02,2\n2020-01-03,3\n")
    (d / "dups.csv").write_text("date,a\n2020-01-01,1\n2020-01-02,2\n2020-01-02,3\n")
    pd.read_csv(d / "good.csv").rename(columns={"b": "c"}).to_csv(d / "othercols.csv", index=False)


BAD = [
    (["missing.csv"], "no such file"),
    (["folder"], "directory"),
    (["empty.csv"], "empty"),
    (["header.csv"], "no data rows"),
    (["image.csv"], "binary"),
    (["packed.csv"], "'a' has fewer than 2"),  # a gzip-compressed CSV is read (issue 14): its one row
    (["latin1.csv"], "UTF-8"),
    (["nodate.csv"], "no date column"),
    (["baddate.csv"], "yesterday"),
    (["text.csv"], "no numeric column"),
    (["allnan.csv"], "'b'"),
    (["inf.csv"], "infinite"),
    (["short.csv"], "too few"),
    (["dups.csv"], "2020-01-02"),
    (["good.csv", "--test", "othercols.csv"], "'b'"),
    (["good.csv", "--solver", "warp9"], "warp9"),
    (["good.csv", "--horizon", "-4"], "--horizon"),
    (["good.csv", "--sensealg", "magic"], "magic"),
    (["good.csv", "--augment", "-1"], "augment"),
    (["good.csv", "--iterations", "0"], "iterations"),
    (["good.csv", "--rtol", "-1"], "rtol"),
    (["good.csv", "--resample", "nonsense"], "resample"),
    (["good.csv", "--dedupe", "median"], "dedupe"),
    (["good.csv", "--columns", "a,zzz"], "zzz"),
    (["good.csv", "--plot", "figure.csv"], "cannot draw a figure as .csv"),
    (["good.csv", "--out", "same.png", "--plot", "same.png"], "--plot and --out are the same file"),
    (["good.csv", "--out", "good.csv", "--force"], "--out good.csv is an input file"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[a[0] + (a[1] if len(a) > 1 else "") for a, _ in BAD])
def test_bad_input_one_line_exit_2(tmp_path, monkeypatch, args, needle):
    _bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["forecast", *args])
    _one_line_error(res, needle)
    assert not (tmp_path / "forecast.csv").exists()


def test_bad_inputs_through_a_real_subprocess(tmp_path):
    _bad_files(tmp_path)
    for name, needle in [("image.csv", "binary"), ("baddate.csv", "yesterday"), ("folder", "directory")]:
        _one_line_error(_cli([name], tmp_path), needle)
    # pandas' own warning about the spelling of an offset (some versions) is not shown before the error.
    _one_line_error(_cli(["good.csv", "--resample", "nonsense"], tmp_path), "not a pandas offset")
    # Refusing to overwrite, through the real command.
    (tmp_path / "forecast.png").write_text("keep me")
    _one_line_error(_cli(["good.csv"], tmp_path), "forecast.png")
    assert (tmp_path / "forecast.png").read_text() == "keep me"


@pytest.mark.slow  # a full default fit (about 50 s); the CI slow step runs it when pyanode/forecast changes
def test_a_csv_nobody_tuned_for_seattle_weather(tmp_path):
    """A new user's first try on another real daily series: Seattle's NOAA weather 2012-2015.

    The file ships in the ``vega_datasets`` wheel (public-domain NOAA data). Nothing in pyanode was tuned to
    it: slash-separated dates, a non-numeric ``weather`` column, zero-inflated precipitation. The default
    command must run, say what it ignored, and forecast the last 92 days sensibly: on the temperatures and
    the wind far better than persistence, and within the range the series has ever taken.
    """
    from importlib.resources import files

    raw = pd.read_csv(files("vega_datasets") / "_data" / "seattle-weather.csv", dtype={"date": str})
    raw.iloc[:-92].to_csv(tmp_path / "seattle.csv", index=False)
    raw.iloc[-92:].to_csv(tmp_path / "seattle_test.csv", index=False)
    res, figures = run_recording_figures(["forecast", "seattle.csv", "--test", "seattle_test.csv"], tmp_path,
                                         dict(os.environ, JAX_PLATFORMS="cpu"))
    assert res.returncode == 0, res.stderr
    assert "ignored column 'weather': not numeric" in res.stderr + res.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for column in ("temp_max", "temp_min", "wind"):
        model, persistence = metrics[column]["model"]["mae"], metrics[column]["persistence"]["mae"]
        assert model < 0.8 * persistence, (column, model, persistence)
    forecast = pd.read_csv(tmp_path / "forecast.csv", index_col=0, parse_dates=True)
    assert list(forecast.columns) == ["precipitation", "temp_max", "temp_min", "wind"]
    assert len(forecast) == 92 and forecast.index[0] == pd.Timestamp("2015-10-01")
    numeric = raw.drop(columns=["date", "weather"])
    assert ((forecast >= numeric.min()) & (forecast <= numeric.max())).all().all(), forecast.describe()
    truth = pd.read_csv(tmp_path / "seattle_test.csv", index_col=0, parse_dates=True)[forecast.columns]
    assert_forecast_drawn(figures[0], forecast, truth, bands=0)


@pytest.mark.slow  # about 50 s; CI's main job runs this command before the tests and checks its outputs
def test_example_delhi_runs_without_a_file(tmp_path):
    """`pyanode forecast --example delhi`: the packaged training file is fitted and its test file scored."""
    res = _cli(["--example", "delhi", "--iterations", "4", "--quiet"], tmp_path)
    assert res.returncode == 0, res.stderr
    out = pd.read_csv(tmp_path / "forecast.csv", index_col=0, parse_dates=True)
    # The test file's dates after the last training date (2017-01-01), one forecast each.
    assert out.index.equals(pd.date_range("2017-01-02", "2017-04-24", freq="D"))
    assert list(out.columns) == ["meantemp", "humidity", "wind_speed", "meanpressure"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == set(out.columns)
    from pyanode.datasets import delhi_climate

    _, test = delhi_climate()
    err = (out["meantemp"] - test["meantemp"].loc[out.index]).abs().mean()
    assert metrics["meantemp"]["model"]["mae"] == pytest.approx(err, rel=1e-4)


def test_example_bad_uses(tmp_path, monkeypatch):
    _csv(tmp_path / "train.csv")
    monkeypatch.chdir(tmp_path)  # in process (the real subprocess: test_bad_inputs_through_a_real_subprocess)
    for args, needles in [(["--example", "paris"], ("unknown example 'paris'", "delhi")),
                          (["train.csv", "--example", "delhi"], ("not both",)), ([], ("--example delhi",))]:
        _one_line_error(runner.invoke(app, ["forecast", *args]), *needles)


# ----------------------------------------------------------------------------------------------
# Files as people write them (issue 14), through the real command line.


def _de_file(path, n=40):
    """As German Excel writes a daily series: ';' between fields, day-first dates, decimal commas and '.'
    grouping thousands; then gzip-compressed."""
    idx = pd.date_range("2021-01-01", periods=n, freq="D")
    values = 1000.0 + 300.0 * np.sin(np.arange(n) / 4.0)
    german = [f"{v:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".") for v in values]  # 1.234,56
    rows = [f"{d:%d.%m.%Y};{v}" for d, v in zip(idx, german, strict=True)]
    path.write_bytes(gzip.compress(("Datum;Umsatz\n" + "\n".join(rows) + "\n").encode()))
    return idx, values


def test_cli_gzip_semicolon_decimal_comma_day_first(tmp_path):
    idx, values = _de_file(tmp_path / "umsatz.csv.gz")
    res = _cli(["umsatz.csv.gz", "--horizon", "3", "--iterations", "2", "--save", "m.pyanode", "--plot", ""],
               tmp_path)
    assert res.returncode == 0, res.stderr
    assert ("read as: gzip-compressed CSV; delimiter ';'; decimal mark ','; thousands separator '.'; "
            "dates day-first") in res.stdout
    import pyanode.forecast as F

    fc = F.load(tmp_path / "m.pyanode")
    assert fc.train.index.equals(idx)  # 01.02.2021 is 1 February, as every row with a day above 12 says
    np.testing.assert_allclose(fc.train["Umsatz"].to_numpy(), np.round(values, 2))
    out = pd.read_csv(tmp_path / "forecast.csv", index_col=0, parse_dates=True)
    assert list(out.index) == list(pd.date_range(idx[-1] + pd.Timedelta(days=1), periods=3, freq="D"))


def test_cli_utc_offset_forecasts_in_the_data_zone(tmp_path):
    n = 40
    idx = pd.date_range("2020-01-01", periods=n, freq="D", tz="Asia/Kolkata")
    pd.DataFrame({"date": [d.isoformat() for d in idx], "x": np.sin(np.arange(n) / 5.0) + 3.0}).to_csv(
        tmp_path / "ist.csv", index=False)
    res = _cli(["ist.csv", "--horizon", "4", "--iterations", "2", "--save", "m.pyanode", "--plot", ""],
               tmp_path)
    assert res.returncode == 0, res.stderr
    assert "time zone +05:30" in res.stdout
    text = (tmp_path / "forecast.csv").read_text().splitlines()
    assert text[1].startswith("2020-02-10 00:00:00+05:30,"), text[:2]  # local midnight, not 18:30 UTC
    import pyanode.forecast as F

    fc = F.load(tmp_path / "m.pyanode")  # the saved model keeps the zone
    assert str(fc.train.index[0]) == "2020-01-01 00:00:00+05:30"
    assert str(fc.future_dates(1)[0]) == "2020-02-10 00:00:00+05:30"


def test_cli_refusals_for_files_people_write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "amb.csv").write_text("date,x\n" + "".join(f"{d:02d}/01/2020,{d}\n" for d in range(1, 13)))
    (tmp_path / "semi.csv").write_text("date;x\n2020-01-01;1,200\n2020-01-02;950\n2020-01-03;970\n")
    cases = [
        (["amb.csv"], ["'01/01/2020'", "--dayfirst"]),
        (["amb.csv", "--date-format", "%Y-%m-%d"], ["not dates", "01/01/2020"]),
        (["semi.csv"], ["'1,200'", "--decimal", "--thousands"]),
        (["semi.csv", "--sep", ","], ["one column when split at ','", "--sep"]),
        (["semi.csv", "--decimal", "x"], ["decimal mark"]),
    ]
    for args, needles in cases:
        res = runner.invoke(app, ["forecast", *args])
        _one_line_error(res, *needles)
    # Told the order, the ambiguous file reads (refused later only for being short: 12 rows are enough).
    from pyanode.forecast.data import load_frame

    df, _ = load_frame(tmp_path / "amb.csv", dayfirst=True)
    assert df.index[1] == pd.Timestamp("2020-01-02")


def test_cli_date_column_columns_resample_dedupe_and_force(tmp_path, monkeypatch):
    """The reading options succeed through the command: the named date column (of two date-like ones),
    the chosen columns in the asked order, twice-daily readings averaged per day, a repeated reading
    merged; then ``--force`` overwrites the outputs, and an output path that is a folder is refused."""
    n = 100  # days, two readings a day, the 11th reading repeated
    stamps = pd.date_range("2023-03-01 06:00", periods=2 * n, freq="12h")
    t = np.arange(2 * n) / 2.0
    df = pd.DataFrame({"logged": (stamps + pd.Timedelta(days=400)).strftime("%Y-%m-%d %H:%M"),
                       "b": np.cos(t / 7.0), "when": stamps.strftime("%Y-%m-%d %H:%M"),
                       "a": np.sin(t / 10.0) + 5, "c": t})
    df = pd.concat([df.iloc[:11], df.iloc[10:11].assign(a=df["a"].iloc[10] + 1.0), df.iloc[11:]])
    df.to_csv(tmp_path / "readings.csv", index=False)
    monkeypatch.chdir(tmp_path)
    args = ["forecast", "readings.csv", "--date-column", "when", "--columns", "a,b", "--resample", "D",
            "--dedupe", "mean", "--iterations", "2", "--plot", "", "--quiet"]
    no_dedupe = [a for a in args if a not in ("--dedupe", "mean")]
    _one_line_error(runner.invoke(app, no_dedupe), "--dedupe")  # the repeated reading needs it
    res = runner.invoke(app, [*args, "--horizon", "5"])
    assert res.exit_code == 0, res.output
    out = pd.read_csv(tmp_path / "forecast.csv")
    assert list(out.columns) == ["when", "a", "b"]  # the date column keeps its name
    # Daily steps after the last day of the "when" column (not "logged", 400 days later).
    assert list(out["when"]) == [str(d.date()) for d in pd.date_range("2023-06-09", periods=5, freq="D")]
    res = runner.invoke(app, [*args, "--horizon", "7"])
    _one_line_error(res, "forecast.csv", "--force")
    assert len(pd.read_csv(tmp_path / "forecast.csv")) == 5  # untouched
    res = runner.invoke(app, [*args, "--horizon", "7", "--force"])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "forecast.csv")) == 7
    (tmp_path / "out_dir").mkdir()
    _one_line_error(runner.invoke(app, [*args, "--out", "out_dir"]), "out_dir")


def test_the_score_table_lines_up_each_metric_of_a_column():
    # One row per metric and method; the methods' values of one metric and column have the same decimals
    # (three significant digits for the smallest), so they line up.
    import io

    from rich.console import Console

    from pyanode.cli.forecast import _scores

    cols = pd.MultiIndex.from_product([["a", "b"], ["mae", "rmse", "mase"]])
    table = pd.DataFrame([[1.0, 1.2, 0.5, 44.04, 47.9, 7.17], [4.4, 5.0, 0.914, 8.18, 9.9, 1.33]],
                         index=["model", "persistence"], columns=cols)
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(_scores("scores", table, ["a", "b"]))
    rows = [[cell.strip() for cell in ln.split("│")[1:-1]] for ln in out.getvalue().splitlines() if "│" in ln]
    assert rows[0] == ["MAE", "model", "1.00", "44.04"] and rows[1] == ["", "persistence", "4.40", "8.18"]
    assert rows[4] == ["MASE", "model", "0.500", "7.17"] and rows[5] == ["", "persistence", "0.914", "1.33"]


def test_ctrl_c_during_training_writes_the_forecast_and_exits_130(tmp_path, monkeypatch):
    # Interrupted at iteration 3: the model so far forecasts, every output is written, and the exit code
    # (130, as `pyanode experiment` gives) tells a script that the run did not finish.
    import pyanode.forecast.fitting as fit_module
    from tests.ctrl_c import ctrl_c_at

    ctrl_c_at(monkeypatch, fit_module, "run_loop", 3)
    monkeypatch.chdir(tmp_path)
    _csv(tmp_path / "train.csv", 120)
    res = runner.invoke(app, ["forecast", "train.csv", "--iterations", "20", "--horizon", "5"])
    assert res.exit_code == 130, res.output
    assert "interrupted at iteration 3" in res.output
    assert "interrupted: the model trained so far made the forecast; its outputs were written" in res.output
    assert len(pd.read_csv(tmp_path / "forecast.csv")) == 5 and (tmp_path / "forecast.png").stat().st_size


@pytest.mark.parametrize("freq, rows, steps", [("h", 200, 48), ("D", 800, 91), ("QS", 40, 8)])
def test_without_a_horizon_the_forecast_reaches_as_far_as_the_fit_judged(tmp_path, monkeypatch, freq, rows,
                                                                        steps):
    """No --test or --horizon: M4's horizon for the data's frequency, or a quarter of a year for daily data
    that span two years (the library's default, ``Forecaster.horizon``); the same steps for each series of a
    panel. A random walk, so that nothing is trained."""
    rng = np.random.default_rng(5)
    idx = pd.date_range("2000-01-01", periods=rows, freq=freq)
    walk = pd.DataFrame({"date": idx.strftime("%Y-%m-%d %H:%M"), "y": 50 + np.cumsum(rng.normal(size=rows))})
    walk.to_csv(tmp_path / "walk.csv", index=False)
    pd.concat([walk.assign(shop=s) for s in ("a", "b")]).to_csv(tmp_path / "shops.csv", index=False)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["forecast", "walk.csv", "--plot", "", "--quiet"])
    assert res.exit_code == 0, res.output
    out = pd.read_csv(tmp_path / "forecast.csv", index_col=0, parse_dates=True)
    assert out.index.equals(pd.date_range(idx[-1], periods=steps + 1, freq=freq)[1:])
    res = runner.invoke(app, ["forecast", "shops.csv", "--id", "shop", "--out", "panel.csv", "--plot", "",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "panel.csv").groupby("shop").size().to_dict() == {"a": steps, "b": steps}
