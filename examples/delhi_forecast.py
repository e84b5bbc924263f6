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

# %%
fc = fit(train, augment=2, seed=0, progress=False)
print(fc.report)
print(fc.info)
print(fc)

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
table = fc.evaluate(test)
print(table.xs("mae", axis=1, level="metric").round(3))

# %%
fig = fc.plot(test)
fig.savefig("delhi_forecast.png", dpi=100)

# %% [markdown]
# ## Save, load, forecast again

# %%
fc.save("delhi.pyanode")
again = load("delhi.pyanode")
print((again.predict(horizon=30) - fc.predict(horizon=30)).abs().max())
