# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Forecasting Delhi's daily climate with an augmented neural ODE
#
# Four years of daily weather in Delhi (2013-2016: mean temperature, humidity, wind speed, pressure)
# are the training data; the first 114 days of 2017 are the test. `pyanode.fit` finds the dates,
# masks the gross pressure outliers, scales each column, and fits an augmented neural ODE driven by a
# yearly calendar. The forecast starts from the last training observations and runs 113 days ahead.
#
# The data ship with pyanode (`pyanode.datasets.delhi_climate()`). The same thing on the command line:
# `pyanode forecast --example delhi`, or with your own files
# `pyanode forecast DailyDelhiClimateTrain.csv --test DailyDelhiClimateTest.csv`

# %%
import matplotlib.pyplot as plt

from pyanode import fit, load
from pyanode.datasets import delhi_climate

train, test = delhi_climate()
train.describe().round(1)

# %% [markdown]
# ## The data, as they come
# Pressure has gross errors (7679 hPa, -3 hPa): the robust z-score masks them.

# %%
fig, axes = plt.subplots(4, 1, figsize=(10, 7), sharex=True)
for ax, c in zip(axes, train.columns, strict=True):
    ax.plot(train.index, train[c], lw=0.7)
    ax.set_ylabel(c)
axes[-1].set_ylim(None, None)
fig.suptitle("Raw training data (note the pressure spikes)")
fig.tight_layout()

# %% [markdown]
# ## Fit with the default settings
#
# `horizon` tells the structure's backtest how far ahead the forecast must hold (here the 113 test days):
# each column's trend, cycles and transform are chosen by forecasting that far from the end of the
# training data. The report names the winners; `structure_report()` lists the runners-up and their scores.

# %%
fc = fit(train, augment=2, seed=0, progress=False, horizon=113)
print(fc.report)
print(fc.info)
print(fc)
print(fc.structure_report().query("chosen"))

# %% [markdown]
# ## Training curves: loss and the number of function evaluations (NFE)

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3))
fc.history["loss"].plot(ax=a1, title="training loss (scaled MSE)")
fc.history[["nfe_forward", "nfe_backward"]].plot(ax=a2, title="NFE per iteration")
fig.tight_layout()

# %% [markdown]
# ## Score on the test period, beside the naive baselines

# %%
table = fc.evaluate(test, level=[80, 95])
print(table.xs("mae", axis=1, level="metric").round(3))
print(table.loc["model"].unstack("metric").round(3))  # MASE, interval coverage, MSIS, CRPS per column

# %%
fig = fc.plot(test, level=[80, 95])
fig.savefig("delhi_forecast.png", dpi=100)

# %% [markdown]
# ## Save, load, forecast again

# %%
fc.save("delhi.pyanode")
again = load("delhi.pyanode")
print((again.predict(horizon=30) - fc.predict(horizon=30)).abs().max())
