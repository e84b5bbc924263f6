"""The backtest's choice pinned to the values of the straightforward implementation it replaced.

:func:`pyanode.forecast.structure.choose_structure` scores every candidate at every origin in batches
(one solve per column, one product per origin); before, it fitted them one at a time with
``_Normal.fit``. The values below were recorded from that earlier one-at-a-time code (before the batched
backtest replaced it): the batched one must choose the same structures with the same coefficients, AR(1)
coefficient and scores, up to rounding (1e-9 relative).
"""

import math

import numpy as np
import pandas as pd
import pytest

from pyanode.forecast import structure as structure_module
from pyanode.forecast.grid import days_since_epoch, grid_positions
from pyanode.forecast.structure import choose_structure
from tests.shared_data import DATA, require_shared

RTOL = 1e-9


def _monthly() -> tuple[np.ndarray, float, float]:
    """150 months: a growing level with a multiplicative yearly cycle, 3% noise and three gaps."""
    rng = np.random.default_rng(11)
    t = np.arange(150.0)
    y = 100 * np.exp(0.005 * t) * (1 + 0.15 * np.sin(2 * np.pi * t / 12)) * (1 + 0.03 * rng.normal(size=150))
    y[[40, 41, 97]] = np.nan
    return y[:, None], 365.25 / 12, 10957.0


def _daily() -> tuple[np.ndarray, float, float]:
    """500 days of two columns: shop sales (trend, weekly profile, a three-day gap) and plain noise (it
    may go negative: no log candidates)."""
    rng = np.random.default_rng(12)
    t = np.arange(500.0)
    week = np.array([0.0, 0.2, 0.1, 0.0, 0.5, 2.0, 1.5])[np.arange(500) % 7]
    y = np.stack([20 + 0.01 * t + week + 0.4 * rng.normal(size=500), rng.normal(size=500)], axis=1)
    y[200:203, 0] = np.nan
    return y, 1.0, 18262.0


def _shared(name: str, date_column: str, columns: list[str]) -> tuple[np.ndarray, float, float]:
    require_shared()
    df = pd.read_csv(DATA / name, parse_dates=[date_column], index_col=date_column)[columns]
    step, pos, _ = grid_positions(df.index)
    y = np.full((pos[-1] + 1, df.shape[1]), np.nan)
    y[pos] = df.to_numpy(dtype=np.float64)
    return y, step, float(days_since_epoch(df.index[:1])[0])


INPUTS = {
    "monthly": _monthly,
    "daily": _daily,
    "airpassengers": lambda: _shared("forecast-suite/airpassengers_monthly.csv", "month", ["passengers"]),
    "delhi": lambda: _shared("DailyDelhiClimateTrain.csv", "date", ["meantemp", "humidity"]),
}

# Recorded from the one-at-a-time backtest (the code before the batched one), default settings.
PINNED = {
    "monthly": [
        {"chosen": ("log", "linear", (365.25,), 0.0),
         "mean_std_phi": (4.975015028698496, 0.2461639660647162, 0.020420527979619872),
         "coef": (-1.526518733923402, 3.044830675927489, 0.6316168892906644, -0.006733112470320727,
                  -0.006930478571317377, 0.036884618116809625, 0.010295305165638651, -0.01552466878890009,
                  -0.023511913887287194, 0.015976489557640937, -0.005696149191933333,
                  -0.006401302609919854, -0.0005253270872801655, 0.010170284552592638),
         "scores": (("linear+yearly+log", 4.57285815021826), ("local+yearly+log", 4.594975821512911),
                    ("linear+yearly+log+recent(half-life 48)", 4.6637749895214675),
                    ("local+yearly+log+recent(half-life 48)", 4.760852526579605),
                    ("linear+yearly+log+recent(half-life 12)", 5.310611376019875),
                    ("local+yearly+log+recent(half-life 12)", 5.413365836985773),
                    ("local+yearly+recent(half-life 12)", 5.991623356795427),
                    ("linear+yearly+recent(half-life 12)", 6.028869794139648))},
    ],
    "daily": [
        {"chosen": ("none", "linear", (7.0,), 0.0),
         "mean_std_phi": (23.11140376022866, 1.656812496137864, 0.040522606180746434),
         "coef": (-1.4954105450763644, 3.0019906134452103, -0.3205685025716426, -0.39253178044507153,
                  0.32700018946306186, 0.05822690370306105, -0.04195337160062401, 0.07251919606332506),
         "scores": (("linear+weekly", 0.31033399826386177),
                    ("local+weekly+log+recent(half-life 112)", 0.30601594227057344),
                    ("linear+weekly+recent(half-life 112)", 0.3065982076396732),
                    ("local+weekly+log", 0.30860304293568497),
                    ("local+weekly+recent(half-life 112)", 0.3086085016530885),
                    ("linear+weekly+log+recent(half-life 112)", 0.3090870937268875),
                    ("linear+weekly+recent(half-life 28)", 0.311442548014026),
                    ("linear+weekly+log+recent(half-life 28)", 0.31229334937289877))},
        {"chosen": ("none", "flat", (), 0.0),
         "mean_std_phi": (0.012910793465723313, 1.0068672109101027, 0.07288665559689937),
         "coef": (4.218847493567157e-18,),
         "scores": (("flat", 0.8525953891580815), ("flat+recent(half-life 224)", 0.8535638447798997),
                    ("linear", 0.8551583014544575), ("flat+weekly", 0.8589785622694506),
                    ("linear+recent(half-life 224)", 0.8598507959442836),
                    ("flat+recent(half-life 56)", 0.8603600475246505),
                    ("linear+weekly", 0.8611719412526395),
                    ("linear+recent(half-life 56)", 0.875155150988172))},
    ],
    "airpassengers": [
        {"chosen": ("log", "linear", (365.25,), 12.0),
         "mean_std_phi": (5.542175958531871, 0.4399209189612094, 0.8870222136071044),
         "coef": (-1.2654176606124425, 2.7816683735941536, 0.02387860241684721, -0.4038683670488585,
                  0.10446832118741518, 0.15411184559720248, -0.070521947373927, -0.005804412452914782,
                  -0.04360431381686673, 0.05427878483145257, -0.0492104305093477, 0.020998969282811863,
                  -0.00021650926619617677, -0.008388787280759223),
         "scores": (("linear+yearly+log+recent(half-life 12)", 16.48217502173933),
                    ("linear+yearly+recent(half-life 12)", 17.421355165311393),
                    ("local+yearly+recent(half-life 12)", 19.177357243056104),
                    ("local+yearly+log+recent(half-life 48)", 19.500505745145272),
                    ("local+yearly+log+recent(half-life 12)", 19.8728256655308),
                    ("local+yearly+log", 20.848249563433075),
                    ("linear+yearly+log+recent(half-life 48)", 24.42652824921556),
                    ("linear+yearly+recent(half-life 48)", 25.97794208160742))},
    ],
    "delhi": [
        {"chosen": ("none", "linear", (365.25,), 365.0),
         "mean_std_phi": (25.495520655761762, 7.345589264532731, 0.703483774872855),
         "coef": (-0.2775809058225428, 0.5285338135082747, -0.026204065936481415, -1.2250712716810912,
                  -0.22832494214886837, -0.38813940867923796, 0.08756556992024948, -0.004276315964402168,
                  -0.050212471249426786, -0.01301498942808652, -0.02441795117575621, -0.02351885444687752,
                  -0.032239776302809046, -0.026025440782631172, 0.02349367917615196, 0.005426361299571488,
                  0.03277003398185887, 0.011094070028866075, 0.03140316130846193, 0.0009227024386024426,
                  0.020795780537499472, -0.007368341910423396),
         "scores": (("linear+yearly+recent(half-life 365)", 1.858949997263403),
                    ("linear+weekly+yearly+recent(half-life 365)", 1.8591129768730827),
                    ("local+weekly+yearly+recent(half-life 365)", 1.8615666270077962),
                    ("local+yearly+recent(half-life 365)", 1.8709835341305012),
                    ("local+weekly+yearly+recent(half-life 1460)", 1.8823160933815486),
                    ("local+weekly+yearly", 1.883469821918916),
                    ("local+yearly+recent(half-life 1460)", 1.8898310369971056),
                    ("local+yearly", 1.8904821597813004))},
        {"chosen": ("none", "linear", (365.25,), 0.0),
         "mean_std_phi": (60.77170158004638, 16.763916112248232, 0.6908197315323663),
         "coef": (0.13339152930053758, -0.2683577051921061, -0.4860255655264955, 0.4893967328374353,
                  0.6443126011925272, 0.4833367276987758, -0.13241877980087322, -0.13975554232726536,
                  0.04936362929859077, 0.1454472151394971, -0.030991989421062103, 0.13415939344769906,
                  0.022641190970691914, 0.036984728163851996, 0.013108013167613444, -0.03232897871982947,
                  -0.04514119997417988, -0.004773792783662314, 0.028220822745516884, -0.04406094303080926,
                  0.03819353264055507, -0.05563000561642726),
         "scores": (("linear+yearly", 8.103295727013528), ("linear+weekly+yearly", 8.082019558597215),
                    ("linear+weekly+yearly+log", 8.167410250879488),
                    ("linear+yearly+log", 8.189093512391205),
                    ("flat+weekly+yearly+log", 8.212179870417469), ("flat+yearly+log", 8.215021848217393),
                    ("linear+weekly+yearly+recent(half-life 1460)", 8.23651318332394),
                    ("linear+yearly+recent(half-life 1460)", 8.250207715496014))},
    ],
}


@pytest.mark.parametrize("name", list(INPUTS))
def test_the_choice_coefficients_and_scores_are_those_of_the_one_at_a_time_backtest(name, monkeypatch):
    # The pinned code had no unit-root decision (every residual decayed) and offered every cycle the grid
    # resolves: persistence is forced off and every cycle let through here, to compare like with like
    # (tests/test_forecast_structure.py checks both decisions).
    monkeypatch.setattr(structure_module, "CYCLE_P", math.inf)
    # Nor had it free cycles (every cycle let through would include one).
    structure = choose_structure(*INPUTS[name](), persistence=False, free_cycles=False)
    assert len(structure.columns) == len(PINNED[name])
    for col, want in zip(structure.columns, PINNED[name], strict=True):
        part = col.parts[0]
        assert (col.transform, part.trend, part.periods, part.half_life) == want["chosen"]
        assert [n for n, _ in col.scores] == [n for n, _ in want["scores"]]
        np.testing.assert_allclose([s for _, s in col.scores], [s for _, s in want["scores"]], rtol=RTOL)
        np.testing.assert_allclose((col.mean, col.std, col.phi), want["mean_std_phi"], rtol=RTOL)
        # atol: a coefficient that is zero but for rounding (the noise column's constant) has no digits
        np.testing.assert_allclose(part.coef, want["coef"], rtol=RTOL, atol=1e-12)
