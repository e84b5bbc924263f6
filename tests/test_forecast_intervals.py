"""Prediction intervals and quantile forecasts (issue 12): columns and units, containment, widening,
nesting, save/load, seeds, coverage on a series with known noise, the interval scores, bad input."""

import dataclasses
import json
import os
import subprocess
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from figures import assert_forecast_drawn, run_recording_figures  # noqa: E402

import pyanode.forecast as F  # noqa: E402
from pyanode.cli._multivalue import spread_values  # noqa: E402
from pyanode.errors import PyanodeError  # noqa: E402
from pyanode.forecast.baselines import mase_scales  # noqa: E402
from pyanode.forecast.intervals import (  # noqa: E402
    CRPS_QUANTILES,
    Calibration,
    ColumnCalibration,
    _isotonic,
    _smooth_sigma,
    calibrate,
    departure_envelope,
    interval_metrics,
)
from pyanode.forecast.structure import choose_structure, residual_level  # noqa: E402

FAST = dict(iterations=30, hidden=8, progress=False, seed=0)
H = 14
YEAR = 365.25


def _series(n: int, seed: int = 0) -> pd.DataFrame:
    """``a``: a yearly sine plus N(0, 1) noise (additive); ``b``: a growing series whose cycle scales with
    its level (multiplicative: the structure takes its log)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    idx = pd.date_range("2015-01-01", periods=n, freq="D")
    cycle = np.sin(2 * np.pi * t / YEAR)
    return pd.DataFrame({"a": 10 + 3 * cycle + rng.normal(0, 1, n),
                         "b": 50 * np.exp(0.6 * cycle + t / 700 + 0.1 * rng.normal(0, 1, n))}, index=idx)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return _series(2000 + 70)


@pytest.fixture(scope="module")
def fitted(data):
    return F.fit(data.iloc[:2000], horizon=H, **FAST)


def test_columns_units_and_default_output(fitted):
    plain = fitted.predict(horizon=20)
    pred = fitted.predict(horizon=20, level=[95, 80], quantiles=[0.1, 0.5, 0.9])
    assert list(plain.columns) == ["a", "b"]  # without level/quantiles: as before
    expected = [name for c in ("a", "b") for name in (c, f"{c}-lo-80", f"{c}-hi-80", f"{c}-lo-95",
                                                       f"{c}-hi-95", f"{c}-q0.1", f"{c}-q0.5", f"{c}-q0.9")]
    assert list(pred.columns) == expected
    assert pred.index.equals(plain.index)
    np.testing.assert_array_equal(pred[["a", "b"]].to_numpy(), plain.to_numpy())
    assert fitted.structure.columns[1].transform == "log"  # so the log path is what is tested below
    assert (pred.filter(like="b-").to_numpy() > 0).all()
    # In the column's units: the 80% half-width one step ahead is about 1.28 noise sds (sd 1).
    half = (pred["a-hi-80"] - pred["a-lo-80"]).iloc[0] / 2
    assert 0.9 < half < 1.8, half
    # Quantiles ascend; a log column's bounds are multiplicative around the point forecast.
    assert (pred["a-q0.1"] <= pred["a-q0.5"]).all() and (pred["a-q0.5"] <= pred["a-q0.9"]).all()
    ratio_hi = pred["b-hi-80"] / pred["b"]
    assert ratio_hi.iloc[0] > 1 and (pred["b-lo-80"] / pred["b"]).iloc[0] < 1
    # Dates inside the horizon get the same rows as the horizon forecast.
    sub = fitted.predict(dates=pred.index[[2, 5]], level=[80, 95], quantiles=[0.1, 0.5, 0.9])
    np.testing.assert_allclose(sub.to_numpy(), pred.iloc[[2, 5]].to_numpy(), rtol=1e-3)  # float32 solves


def test_contain_widen_and_nest(fitted):
    pred = fitted.predict(horizon=4 * H, level=[50, 80, 95, 99])  # past the calibrated horizon too
    for c in ("a", "b"):
        lows = [pred[f"{c}-lo-{lv}"].to_numpy() for lv in (50, 80, 95, 99)]
        highs = [pred[f"{c}-hi-{lv}"].to_numpy() for lv in (50, 80, 95, 99)]
        point = pred[c].to_numpy()
        assert (lows[0] <= point).all() and (point <= highs[0]).all()
        for inner, outer in zip(range(3), range(1, 4), strict=True):
            assert (lows[outer] <= lows[inner]).all() and (highs[inner] <= highs[outer]).all()
        for lo, hi in zip(lows, highs, strict=True):
            # Widening: in the column's units for an additive column, in log units for a log column.
            width = np.log(hi) - np.log(lo) if c == "b" else hi - lo
            assert (np.diff(width) >= -1e-9 * np.abs(width[1:])).all()
            assert width[-1] > width[0]


def test_departure_envelope_by_hand():
    # d = zhat - ztilde at grid steps 1..4 for two columns; rows at steps 0, 1, 2.5 and 4.
    grid = np.array([[0.3, -0.1], [0.1, -0.4], [0.5, 0.2], [-0.2, 0.0]])
    here = np.array([[0.0, 0.0], [0.3, -0.1], [0.6, 0.1], [-0.2, 0.0]])
    lo, hi = departure_envelope(np.array([0.0, 1.0, 2.5, 4.0]), grid, here)
    # Lower reach: the largest d > 0 up to ceil(step) (2.5 -> 3), or the row's own if larger.
    np.testing.assert_allclose(lo, [[0.0, 0.0], [0.3, 0.0], [0.6, 0.2], [0.5, 0.2]])
    # Upper reach: the largest -d > 0 so far.
    np.testing.assert_allclose(hi, [[0.0, 0.0], [0.0, 0.1], [0.0, 0.4], [0.2, 0.4]])


def test_intervals_hold_the_calibrated_closed_form_models(fitted):
    """Each interval contains the calibrated closed-form model's conformal interval (structure plus AR(1)
    decay of the last residual, or its level carried on for a persistent column, computed here from the
    fitted structure) as well as the point forecast's."""
    pred = fitted.predict(horizon=3 * H, level=[80, 95])
    s = fitted.structure
    z = s.to_standard(fitted.train.to_numpy(dtype=np.float64))
    last = len(z) - 1  # daily data without gaps: position = row
    steps = np.arange(1, 3 * H + 1.0)
    mu = s.mu(last + steps)
    resid = z - s.mu(np.arange(len(z), dtype=np.float64))
    closed = mu + resid[-1][None, :] * np.array([c.phi for c in s.columns])[None, :] ** steps[:, None]
    for j, c in enumerate(s.columns):
        if c.persistent:
            closed[:, j] = mu[:, j] + residual_level(resid[None, :, j], np.isfinite(resid[:, j]))[0]
    point = s.to_standard(pred[["a", "b"]].to_numpy())
    assert np.abs(point - closed).max() > 0.01  # the learned model departs: the check below means something
    sig = np.stack([c.scale(steps) for c in fitted.calibration.columns], axis=1)
    for lv in (80, 95):
        q = np.array([c.band(lv) for c in fitted.calibration.columns])  # (n, 2)
        lo = s.to_standard(pred[[f"a-lo-{lv}", f"b-lo-{lv}"]].to_numpy())
        hi = s.to_standard(pred[[f"a-hi-{lv}", f"b-hi-{lv}"]].to_numpy())
        for centre in (closed, point):
            assert (lo <= centre + q[:, 0] * sig + 1e-4).all()
            assert (hi >= centre + q[:, 1] * sig - 1e-4).all()


def test_save_load_identical_and_seed_reproducible(fitted, data, tmp_path):
    pred = fitted.predict(horizon=30, level=[80, 95], quantiles=[0.05, 0.5, 0.95])
    fitted.save(tmp_path / "m.pyanode")
    back = F.load(tmp_path / "m.pyanode")
    assert back.calibration == fitted.calibration
    pd.testing.assert_frame_equal(back.predict(horizon=30, level=[80, 95], quantiles=[0.05, 0.5, 0.95]), pred)
    # A second fit with the same seed gives the same intervals (and reuses the first fit's programs).
    again = F.fit(data.iloc[:2000], horizon=H, **FAST)
    pd.testing.assert_frame_equal(
        again.predict(horizon=30, level=[80, 95], quantiles=[0.05, 0.5, 0.95]), pred)


def test_calibration_json_roundtrip_and_no_calibration(fitted):
    cal = fitted.calibration
    assert cal.horizon == H and len(cal.columns) == 2
    assert Calibration.from_json(json.loads(json.dumps(cal.to_json()))) == cal
    sig = np.asarray(cal.columns[0].sigma)
    assert (np.diff(sig) >= 0).all() and sig[0] > 0
    assert cal.columns[0].origins == 40 and len(cal.columns[0].scores) > 400
    bare = F.Forecaster(fitted.model, fitted.structure, fitted.train, fitted.report, fitted.history,
                        fitted.info, fitted._center, fitted._spread, fitted.outlier_threshold)
    with pytest.raises(PyanodeError, match="no interval calibration"):
        bare.predict(horizon=3, level=[80])
    assert list(bare.predict(horizon=3).columns) == ["a", "b"]


def test_coverage_with_known_gaussian_noise():
    """Closed-form forecasts (the structure's mu plus the AR(1) decay of the last residual) from 300 origins
    after the training data, each 14 steps ahead: the calibrated intervals cover close to nominal."""
    n_train, windows = 2000, 300
    rng = np.random.default_rng(1)
    n = n_train + windows * H
    t = np.arange(n)
    y = (10 + 3 * np.sin(2 * np.pi * t / YEAR) + rng.normal(0, 1, n))[:, None]
    s = choose_structure(y[:n_train], 1.0, 16436.0, horizon=H)
    cal = calibrate(s, y[:n_train], H).columns[0]
    z, mu, phi = s.to_standard(y)[:, 0], s.mu(t)[:, 0], s.columns[0].phi
    steps = np.arange(1, H + 1)
    hits = {80: [], 95: []}
    for o in range(n_train - 1, n - H, H):  # origin o: the last observed step
        zf = mu[o + steps] + (z[o] - mu[o]) * phi**steps
        for lv in hits:
            lo, hi = cal.band(lv)
            truth = z[o + steps]
            hits[lv].append((truth >= zf + lo * cal.scale(steps)) & (truth <= zf + hi * cal.scale(steps)))
    cover = {lv: float(np.mean(v)) for lv, v in hits.items()}
    assert abs(cover[80] - 0.80) < 0.04, cover
    assert abs(cover[95] - 0.95) < 0.025, cover


def test_coverage_through_fit_and_evaluate(fitted, data):
    test = data.iloc[2000:]
    table = fitted.evaluate(test, level=[80, 95])
    assert list(table.columns.get_level_values("metric").unique()) == [
        "mae", "rmse", "mase", "coverage-80", "coverage-95", "msis-80", "msis-95", "crps"]
    model = table.loc["model"]
    assert 0.6 <= model[("a", "coverage-80")] <= 1.0 and model[("a", "coverage-95")] >= 0.8
    assert model[("a", "coverage-95")] >= model[("a", "coverage-80")]
    assert table.loc["persistence", ("a", "crps")] != table.loc["persistence", ("a", "crps")]  # NaN
    # The same numbers as the scores of the forecast's own interval and quantile columns.
    pred = fitted.predict(dates=test.index, level=[80, 95], quantiles=CRPS_QUANTILES)
    by_hand = interval_metrics(pred, test, mase_scales(fitted.train, 1.0), [80, 95])
    for c in ("a", "b"):
        for m, v in by_hand[c].items():
            assert model[(c, m)] == pytest.approx(v)
    plain = fitted.evaluate(test)
    assert list(plain.columns.get_level_values("metric").unique()) == ["mae", "rmse", "mase"]


def test_interval_metrics_by_hand():
    idx = pd.date_range("2020-01-01", periods=4)
    truth = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}, index=idx)
    pred = pd.DataFrame({"x-lo-80": [0.0, 2.5, 2.0, 3.0], "x-hi-80": [2.0, 3.0, 4.0, 3.5],
                         "x-q0.1": [0.0, 2.5, 2.0, 3.0], "x-q0.9": [2.0, 3.0, 4.0, 3.5]}, index=idx)
    got = interval_metrics(pred, truth, {"x": 2.0}, [80], quantiles=(0.1, 0.9))["x"]
    assert got["coverage-80"] == pytest.approx(2 / 4)  # 2 is below 2.5, 4 above 3.5
    # widths 2, 0.5, 2, 0.5; penalties 2/0.2 * 0.5 for each miss: (2 + 5.5 + 2 + 5.5) / 4 / scale 2.
    assert got["msis-80"] == pytest.approx(15 / 4 / 2)
    # Pinball: tau 0.1: u = y - q = 1, -0.5, 1, 1 -> 0.1, 0.45, 0.1, 0.1; tau 0.9: u = -1, -1, -1, 0.5
    # -> 0.1, 0.1, 0.1, 0.45. Mean over both and the dates 1.5 / 8; CRPS twice that, / scale 2.
    assert got["crps"] == pytest.approx(2 * 1.5 / 8 / 2)


def test_gaussian_fallback_and_conformal_quantile():
    col = ColumnCalibration((1.0, 1.0), ())
    assert col.band(95) == pytest.approx((-1.959964, 1.959964), abs=1e-5)
    scores = tuple(float(v) for v in range(-9, 10))  # n = 19 sorted scores
    col = ColumnCalibration((0.5, 1.0), scores)
    # 90%: ceil(20 * 0.95) = 19th smallest (9), floor(20 * 0.05) = 1st (-9).
    assert col.band(90) == (-9.0, 9.0)
    assert col.band(50) == (-5.0, 5.0)  # ceil(20 * 0.75) = 15th -> 5; floor(20 * 0.25) = 5th -> -5
    np.testing.assert_allclose(col.scale(np.array([0.0, 0.5, 1, 2, 8])), [0, 0.25, 0.5, 1.0, 2.0])
    # calibrate: origins evenly over the last third (30 rows: rows 20 .. 29, 10 origins); a column with
    # at least MIN_SCORES = 8 observed errors is calibrated, one with fewer gets sigma 1 and Gaussian
    # multipliers.
    rng = np.random.default_rng(0)
    y = (5 + 0.1 * np.arange(30) + rng.normal(0, 1, 30))[:, None]
    s = choose_structure(y, 1.0, 18262.0, horizon=4)
    full = calibrate(s, y, 4).columns[0]
    assert full.origins == 10 and len(full.scores) == 10 * 4 - (1 + 2 + 3)  # the last origins see less
    y[22] = np.nan  # origins 20, 24 and 29 (origins=3) see 3 + 4 + 1 = 8 errors
    eight = calibrate(s, y, 4, origins=3).columns[0]
    assert eight.origins == 3 and len(eight.scores) == 8 and not np.array_equal(eight.sigma, np.ones(4))
    y[23] = np.nan  # 7 errors
    assert calibrate(s, y, 4, origins=3).columns[0] == ColumnCalibration((1.0,) * 4, (), 3)


def test_scores_kept_as_float32_and_saved_exactly():
    """The sorted scores are kept as float32 (half a panel's per-series memory otherwise): still sorted,
    each multiplier the float64 quantile to float32 rounding, the JSON round trip exact, and a file written
    with float64 scores reads back to the same calibration as the scores made now."""
    rng = np.random.default_rng(3)
    scores = np.sort(rng.standard_t(4, 500))
    col = ColumnCalibration(np.linspace(0.5, 1.0, 5), scores, 40)
    assert col.scores.dtype == np.float32 and col.sigma.dtype == np.float64
    assert (np.diff(col.scores) >= 0).all() and not col.scores.flags.writeable
    exact = ColumnCalibration.__new__(ColumnCalibration)  # the float64 multipliers, for comparison
    object.__setattr__(exact, "scores", scores)
    for level in (50, 80, 95, 99):
        np.testing.assert_allclose(col.band(level), exact.band(level), rtol=2**-24, atol=0)
    cal = Calibration((col,), 5)
    assert Calibration.from_json(json.loads(json.dumps(cal.to_json()))) == cal
    old_file = {"horizon": 5,
                "columns": [{"sigma": col.sigma.tolist(), "scores": scores.tolist(), "origins": 40}]}
    assert Calibration.from_json(json.loads(json.dumps(old_file))) == cal


def test_sigma_by_hand():
    """sigma_h: mean square error per step, isotonic (weighted by the counts), three-point average, root."""
    # Per step: (1 + 1 + 1) / 3 = 1, (4 + 4) / 2 = 4, 4 / 1 = 4; already non-decreasing; averaged with the
    # edges repeated: (1 + 1 + 4) / 3 = 2, (1 + 4 + 4) / 3 = 3, 4.
    errors = np.array([[1.0, 2.0, 2.0], [1.0, 2.0, np.nan], [-1.0, np.nan, np.nan]])
    np.testing.assert_allclose(_smooth_sigma(errors), np.sqrt([2.0, 3.0, 4.0]), rtol=1e-12)
    # Pool adjacent violators: 3 > 1 pools (3 + 3 * 1) / 4 = 1.5, then 2 > 1.5 pools (2 + 4 * 1.5) / 5 = 1.6.
    np.testing.assert_allclose(_isotonic(np.array([2.0, 3.0, 1.0, 5.0]), np.array([1.0, 1.0, 3.0, 1.0])),
                               [1.6, 1.6, 1.6, 5.0], rtol=1e-12)
    # A step with no error borrows its neighbours' mean (2.5) at zero weight: 9, 1, 2.5, 4 with counts
    # 3, 2, 0, 3 pool to (27 + 2 + 0 + 12) / 8 everywhere.
    gap = np.array([[3.0, 1.0, np.nan, 2.0]] * 2 + [[3.0, np.nan, np.nan, 2.0]])
    np.testing.assert_allclose(_smooth_sigma(gap), [np.sqrt(41 / 8)] * 4, rtol=1e-12)


@pytest.mark.parametrize("kwargs, needle", [
    ({"level": [0]}, "between 0 and 100"), ({"level": [80, 100]}, "between 0 and 100"),
    ({"level": [150]}, "between 0 and 100"), ({"level": []}, "empty"), ({"level": "x"}, "number"),
    ({"quantiles": [1.5]}, "between 0 and 1"), ({"quantiles": [0.0]}, "between 0 and 1"),
    ({"quantiles": []}, "empty"),
])
def test_bad_input_api(fitted, kwargs, needle):
    with pytest.raises(PyanodeError, match=needle) as err:
        fitted.predict(horizon=3, **kwargs)
    assert "\n" not in str(err.value)
    if "level" in kwargs:
        with pytest.raises(PyanodeError, match=needle):
            fitted.evaluate(fitted.train.iloc[-3:].set_axis(fitted.future_dates(3)), **kwargs)


def test_spread_values():
    args = ["forecast", "f.csv", "--level", "80", "95", "--quantiles", "0.1", "0.9", "--x"]
    assert spread_values(args) == ["forecast", "f.csv", "--level", "80", "--level", "95",
                                   "--quantiles", "0.1", "--quantiles", "0.9", "--x"]
    assert spread_values(["--level", "80", "train.csv"]) == ["--level", "80", "train.csv"]
    assert spread_values(["--", "--level", "1", "2"]) == ["--", "--level", "1", "2"]


def _cli(args, cwd):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "pyanode", "forecast", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300)


def _csv(path, frame):
    frame.rename_axis("date").to_csv(path)
    return path


@pytest.mark.parametrize("args, needle", [
    (["--level", "80", "150"], "level (--level) must be between 0 and 100"),
    (["--level", "0"], "level (--level) must be between 0 and 100"),
    (["--quantiles", "0.5", "1.5"], "quantiles must be between 0 and 1"),
])
def test_bad_input_cli(tmp_path, data, args, needle):
    _csv(tmp_path / "train.csv", data.iloc[:120])
    res = _cli(["train.csv", *args, "--iterations", "2"], tmp_path)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], res.stderr
    assert not (tmp_path / "forecast.csv").exists()


def test_cli_writes_intervals_scores_and_bands(tmp_path, data):
    _csv(tmp_path / "train.csv", data.iloc[:200])
    _csv(tmp_path / "test.csv", data.iloc[200:214])
    res, figures = run_recording_figures(["forecast", "train.csv", "--test", "test.csv", "--iterations", "6",
                                          "--level", "80", "95", "--quantiles", "0.1", "0.9"], tmp_path,
                                         dict(os.environ, JAX_PLATFORMS="cpu"))
    assert res.returncode == 0, res.stderr
    out = pd.read_csv(tmp_path / "forecast.csv", index_col=0, parse_dates=True)
    assert list(out.columns[:7]) == ["a", "a-lo-80", "a-hi-80", "a-lo-95", "a-hi-95", "a-q0.1", "a-q0.9"]
    assert len(out) == 14 and (out["a-lo-95"] <= out["a"]).all() and (out["a"] <= out["a-hi-95"]).all()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["a"]["model"]) == {"mae", "rmse", "mase", "coverage-80", "coverage-95", "msis-80",
                                          "msis-95", "crps"}
    assert set(metrics["a"]["persistence"]) == {"mae", "rmse", "mase"}
    assert 0 <= metrics["b"]["model"]["coverage-95"] <= 1
    # The figure draws the written forecast and the test values, with one shaded band per level.
    truth = pd.read_csv(tmp_path / "test.csv", index_col=0, parse_dates=True)
    assert_forecast_drawn(figures[0], out[["a", "b"]], truth[["a", "b"]], bands=2)


def test_plot_bands(fitted):
    fig = fitted.plot(horizon=30, level=[80, 95])
    labels = fig.legends[0].get_texts()
    assert "80% / 95% interval" in [t.get_text() for t in labels]
    ax = fig.axes[0]
    assert len(ax.collections) == 2  # one band per level
    alphas = sorted(c.get_alpha() for c in ax.collections)
    assert alphas[0] < alphas[1]  # the wider band is lighter
    import matplotlib.pyplot as plt

    plt.close(fig)
    # Without a horizon the figure forecasts as far as the fit was told (H steps), not some fixed length.
    fig = fitted.plot(level=[80])
    line = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}["forecast"]
    assert len(line.get_xdata()) == H + 1  # (joined to the last observation)
    plt.close(fig)


def test_replace_keeps_dataclass_frozen(fitted):
    with pytest.raises(dataclasses.FrozenInstanceError):
        fitted.calibration.horizon = 3  # type: ignore[misc]
