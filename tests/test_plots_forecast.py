"""The forecast figure's layout: one panel per column, in a grid when there are many. No model is fitted."""

import matplotlib
import matplotlib.dates

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from pyanode.plots.forecast import plot_forecast  # noqa: E402


def _frames(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(n)
    cols = [f"c{k}" for k in range(n)]
    train = pd.DataFrame(rng.normal(size=(60, n)), columns=cols,
                         index=pd.date_range("2020-01-01", periods=60, freq="D"))
    forecast = pd.DataFrame(rng.normal(size=(10, n)), columns=cols,
                            index=pd.date_range("2020-03-01", periods=10, freq="D"))
    return train, forecast


@pytest.mark.parametrize(("n", "across"), [(4, 1), (6, 1), (7, 2), (10, 2), (16, 2), (17, 3), (23, 3)])
def test_many_columns_are_drawn_in_a_grid_read_row_by_row(n, across):
    train, forecast = _frames(n)
    fig = plot_forecast(train, forecast)
    assert len(fig.axes) == n  # no empty cells left in the figure
    fig.canvas.draw()  # tick labels are made when drawn
    lefts = sorted({round(ax.get_position().x0, 3) for ax in fig.axes})
    assert len(lefts) == across
    for k, (ax, col) in enumerate(zip(fig.axes, forecast.columns, strict=True)):
        # Panel k is in row k // across, grid column k % across; it draws column k's forecast.
        assert round(ax.get_position().x0, 3) == lefts[k % across]
        assert ax.get_ylabel() == col
        line = {ln.get_label(): ln for ln in ax.get_lines()}["forecast"]
        np.testing.assert_array_equal(line.get_ydata()[1:], forecast[col].to_numpy())
        # The dates show under the lowest panel of each grid column only.
        shown = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
        assert bool(shown) == (k >= n - across), k
    assert fig.get_figwidth() == (10 if across == 1 else 8 * across)


def test_a_long_gap_in_the_history_is_drawn_as_a_gap():
    # Daily data: column "a" has no observations for 30 days and one missing day elsewhere; "b" has every
    # other day missing. Only a's 30-day hole breaks its line (one NaN, between the dates around it).
    idx = pd.date_range("2020-01-01", periods=120, freq="D")
    a = np.sin(np.arange(120) / 5.0)
    a[40:70] = np.nan
    a[90] = np.nan
    b = np.where(np.arange(120) % 2 == 0, np.cos(np.arange(120) / 7.0), np.nan)
    train = pd.DataFrame({"a": a, "b": b}, index=idx)
    forecast = pd.DataFrame({"a": [0.5, 0.4], "b": [0.1, 0.2]}, index=pd.date_range("2020-04-30", periods=2))
    fig = plot_forecast(train, forecast)
    for ax, col, breaks in zip(fig.axes, ["a", "b"], [1, 0], strict=True):
        line = {ln.get_label(): ln for ln in ax.get_lines()}["history"]
        y = np.asarray(line.get_ydata(), float)
        x = pd.DatetimeIndex(line.get_xdata())
        assert np.isnan(y).sum() == breaks, col
        np.testing.assert_array_equal(y[~np.isnan(y)], train[col].dropna().to_numpy())
        if breaks:
            at = int(np.flatnonzero(np.isnan(y))[0])
            assert x[at - 1] == idx[39] and x[at + 1] == idx[70] and idx[39] < x[at] < idx[70]
    # Business days: weekends are not gaps.
    bdays = pd.bdate_range("2021-01-01", periods=80)
    train = pd.DataFrame({"a": np.arange(80.0)}, index=bdays)
    fig = plot_forecast(train, pd.DataFrame({"a": [80.0]}, index=pd.bdate_range(bdays[-1], periods=2)[1:]))
    line = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}["history"]
    assert not np.isnan(np.asarray(line.get_ydata(), float)).any()


def test_a_panels_series_each_show_their_own_dates():
    # Series of a panel end on different dates: every row has its own date axis, labelled.
    from pyanode.plots.forecast import plot_panel

    rows = []
    for k, (start, n) in enumerate([("2021-01-01", 200), ("2021-03-01", 300)]):
        idx = pd.date_range(start, periods=n, freq="D")
        train = pd.DataFrame({"y": np.sin(np.arange(n) / 5.0)}, index=idx)
        fc = pd.DataFrame({"y": [0.0, 0.1]}, index=pd.date_range(idx[-1], periods=3, freq="D")[1:])
        rows.append((f"s{k}", "", train, fc, None))
    fig = plot_panel(rows, "y")
    fig.canvas.draw()
    for ax, (_, _, train, fc, _) in zip(fig.axes, rows, strict=True):
        shown = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
        assert shown, "every panel labels its dates"
        lo, hi = matplotlib.dates.num2date(ax.get_xlim()[0]), matplotlib.dates.num2date(ax.get_xlim()[1])
        assert lo.date() <= train.index[0].date() and hi.date() >= fc.index[-1].date()
        assert hi.date() - fc.index[-1].date() < pd.Timedelta(days=30)  # not stretched to the other's end
