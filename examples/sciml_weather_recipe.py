# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # The SciML weather tutorial's recipe, in pyanode
#
# The Julia SciML tutorial "Weather forecasting with neural ODEs" fits a neural ODE to Delhi's monthly
# climate. Its recipe, reproduced here with pyanode's engine:
#
# * the training and test files concatenated, aggregated to monthly means (the outlier pressures
#   masked first), the first 20 months for training and the remaining months as the test;
# * time and values normalised with the training months' statistics;
# * vector field: MLP 4 -> 64 -> 32 -> 4 with swish; an autonomous ODE on the 4 features;
# * Tsit5 with reltol = abstol = 1e-9 (so float64), interpolating adjoint;
# * loss: sum of squared errors; AdamW, learning rate 5e-3, 150 iterations per round on growing prefixes
#   of 4, 8, 12, 16 and 20 months.
#
# Then it compares the recipe's test error with `pyanode.fit`'s defaults on the same monthly split
# (`pyanode forecast TRAIN --resample MS` does the monthly aggregation on the command line).
#
# Run: `python examples/sciml_weather_recipe.py` (writes `sciml_weather_recipe.png` in the current folder).

# %%
import pyanode

pyanode.enable_x64()  # tolerances of 1e-9 need float64; this script only

import time  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pandas as pd  # noqa: E402

from pyanode.datasets import delhi_climate  # noqa: E402
from pyanode.forecast import fit  # noqa: E402
from pyanode.forecast.baselines import baseline_forecasts  # noqa: E402
from pyanode.forecast.data import clean, load_frame  # noqa: E402

# %% [markdown]
# ## Monthly data and the split

# %%
daily = pd.concat(delhi_climate())
daily, report = load_frame(daily, dedupe="first")  # 2017-01-01 is in both files
daily, report, _, _ = clean(daily, report)
print("\n".join(report.lines()[1:]))
monthly = daily.resample("MS").mean()
train, test = monthly.iloc[:20], monthly.iloc[20:]
print(f"{len(train)} training months ({train.index[0]:%Y-%m} .. {train.index[-1]:%Y-%m}), "
      f"{len(test)} test months")

t_all = (monthly.index.year + (monthly.index.month - 1) / 12).to_numpy(np.float64)
t_mean, t_std = t_all[:20].mean(), t_all[:20].std()
x_mean, x_std = train.mean().to_numpy(), train.std(ddof=0).to_numpy()
ts = jnp.asarray((t_all - t_mean) / t_std)
xs = jnp.asarray((monthly.to_numpy() - x_mean) / x_std)

# %% [markdown]
# ## The tutorial's model and training

# %%
key = jax.random.PRNGKey(0)
k1, k2, k3 = jax.random.split(key, 3)
mlp = eqx.nn.Sequential([
    eqx.nn.Linear(4, 64, key=k1), eqx.nn.Lambda(jax.nn.swish),
    eqx.nn.Linear(64, 32, key=k2), eqx.nn.Lambda(jax.nn.swish),
    eqx.nn.Linear(32, 4, key=k3),
])
params, static = eqx.partition(mlp, eqx.is_array)


def field(t, y, p):
    return eqx.combine(p, static)(y)


def trajectory(p, upto):
    return pyanode.solve(field, xs[0], ts[:upto], args=p, solver="tsit5", rtol=1e-9, atol=1e-9,
                         sensealg="interpolating", max_steps=100_000).ys


opt = optax.adamw(5e-3)
start = time.perf_counter()
for upto in (4, 8, 12, 16, 20):
    opt_state = opt.init(params)

    @eqx.filter_jit
    def step(p, s, upto=upto):
        loss, g = jax.value_and_grad(lambda q: jnp.sum((trajectory(q, upto) - xs[:upto]) ** 2))(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    for _ in range(150):
        params, opt_state, loss = step(params, opt_state)
    print(f"prefix {upto:2d} months: loss {float(loss):.4f}")
recipe_seconds = time.perf_counter() - start

curve = np.asarray(trajectory(params, len(ts))) * x_std + x_mean
recipe = pd.DataFrame(curve, index=monthly.index, columns=monthly.columns)

# %% [markdown]
# ## pyanode's defaults on the same monthly split

# %%
start = time.perf_counter()
fc = fit(train, progress=False)
default_seconds = time.perf_counter() - start
default_pred = fc.predict(dates=test.index)


def mae(pred, truth):
    return (pred - truth).abs().mean()


table = pd.DataFrame({
    "tutorial recipe": mae(recipe.loc[test.index], test),
    "pyanode defaults": mae(default_pred, test),
    # 20 months are less than the two years the seasonal-naive baseline needs, so no seasonal row.
    "persistence": mae(baseline_forecasts(train, test.index)["persistence"], test),
    "training mean": mae(baseline_forecasts(train, test.index)["mean"], test),
}).T
print(f"test MAE over {len(test)} months (recipe fit {recipe_seconds:.0f} s, pyanode defaults "
      f"{default_seconds:.0f} s):")
print(table.round(3).to_string())

# %% [markdown]
# ## The extrapolation figure

# %%
fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
for ax, c in zip(axes, monthly.columns, strict=True):
    ax.plot(train.index, train[c], "o", color="0.2", ms=4, label="training months")
    ax.plot(test.index, test[c], "o", color="tab:blue", ms=4, mfc="none", label="test months")
    ax.plot(recipe.index, recipe[c], color="tab:red", lw=1.5, label="recipe's neural ODE")
    ax.plot(default_pred.index, default_pred[c], color="tab:green", lw=1.2, ls="--", label="pyanode defaults")
    ax.axvline(test.index[0], color="0.6", ls=":")
    ax.set_ylabel(c)
    ax.grid(alpha=0.3)
axes[0].legend(ncol=4, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
fig.suptitle("Delhi monthly climate: the SciML tutorial's recipe, extrapolated", y=1.01)
fig.tight_layout()
fig.savefig("sciml_weather_recipe.png", dpi=100, bbox_inches="tight")
