"""Training loop with NFE tracking: optax, minibatches, seeds, history, progress, Ctrl-C, save/load.

:func:`train` fits any pyanode model (one with ``forward(x, nfe_probe) -> (prediction, nfe)``, see
:mod:`pyanode.models`) by minibatch gradient descent. Each iteration is one jitted step that computes the
loss, its gradient, the forward NFE of the batch's solve and the backward NFE (the gradient with respect
to the engine's ``nfe_probe``), updates the parameters and keeps the best parameters so far, all on the
device. The history (one row per iteration: loss, accuracy where it applies, ``nfe_forward``,
``nfe_backward``, ``seconds``) is returned as a pandas DataFrame, as in the paper's loss and NFE figures.

Ctrl-C (``KeyboardInterrupt``) stops training cleanly and returns what was learned so far. The returned
``model`` is the best one: lowest validation loss when ``validation`` is given, else lowest training
(minibatch) loss.

Data-parallel training: pass ``sharding=`` a :class:`jax.sharding.Mesh` (its first axis splits the
batch) or a :class:`jax.sharding.NamedSharding` for the batch. Each minibatch is then placed with
``jax.device_put(batch, sharding)`` and the parameters and optimiser state are replicated over the mesh,
so the same jitted step runs data-parallel (XLA inserts the gradient all-reduce). The batch size must be
a multiple of the number of devices along the batch axis.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pyanode._io import atomic_path
from pyanode.errors import PyanodeError
from pyanode.loop import TrainResult, run_loop

__all__ = [
    "ACCURACIES",
    "LOSSES",
    "TrainResult",
    "evaluate",
    "load_model",
    "save_model",
    "train",
]

# ----------------------------------------------------------------------------------------------
# Losses and accuracies


def _same_shape(pred: jax.Array, y: jax.Array) -> None:
    # (checked while tracing: broadcasting (n, 2) against (n, 1) would train on a meaningless loss)
    if pred.shape != y.shape:
        raise PyanodeError(f"the model gives {pred.shape[1:] or 'one value'} per row but y has "
                           f"{y.shape[1:] or 'one value'} per row; make the model's output_dim match y")


def _smooth_l1(pred: jax.Array, y: jax.Array) -> jax.Array:
    # PyTorch's SmoothL1Loss (beta = 1), the reference's regression loss: r^2/2 if |r| < 1 else |r| - 1/2.
    _same_shape(pred, y)
    return jnp.mean(optax.huber_loss(pred, y, delta=1.0))


def _mse(pred: jax.Array, y: jax.Array) -> jax.Array:
    _same_shape(pred, y)
    return jnp.mean((pred - y) ** 2)


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    if labels.shape != logits.shape[:-1]:
        raise PyanodeError(f"cross_entropy needs one integer class label per row (y of shape (n,)), got "
                           f"{labels.shape[1:]} per row")
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32)))


LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "smooth_l1": _smooth_l1,
    "mse": _mse,
    "cross_entropy": _cross_entropy,
}


def _sign_accuracy(pred: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((jnp.sign(pred) == jnp.sign(y)).astype(jnp.float32))


def _argmax_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels.astype(jnp.int32)).astype(jnp.float32))


ACCURACIES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "sign": _sign_accuracy,
    "argmax": _argmax_accuracy,
}


def _resolve_metrics(loss: str, accuracy: str | None) -> tuple[Callable, Callable | None]:
    if loss not in LOSSES:
        raise PyanodeError(f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES)}")
    if accuracy == "auto":
        accuracy = "argmax" if loss == "cross_entropy" else None
    if accuracy is not None and accuracy not in ACCURACIES:
        raise PyanodeError(f"unknown accuracy {accuracy!r}; choose one of: {', '.join(ACCURACIES)} or None")
    return LOSSES[loss], (ACCURACIES[accuracy] if accuracy is not None else None)


# ----------------------------------------------------------------------------------------------
# Sharding


def _shardings(sharding: Any) -> tuple[Any, Any, int]:
    """(batch sharding, replicated sharding, number of devices along the batch axis)."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    if sharding is None:
        return None, None, 1
    if isinstance(sharding, Mesh):
        axis = sharding.axis_names[0]
        batch = NamedSharding(sharding, PartitionSpec(axis))
    elif isinstance(sharding, NamedSharding):
        batch = sharding
    else:
        raise PyanodeError(
            f"sharding must be a jax.sharding.Mesh or NamedSharding, got {type(sharding).__name__}"
        )
    mesh = batch.mesh
    spec = batch.spec
    axes = spec[0] if len(spec) else None
    axes = (axes,) if isinstance(axes, str) else (axes or ())
    ndev = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    return batch, NamedSharding(mesh, PartitionSpec()), ndev


# ----------------------------------------------------------------------------------------------
# Evaluation


@functools.lru_cache(maxsize=64)
def _compiled_eval(static: Any, loss: str, accuracy: str | None) -> Callable:
    """One jitted scoring function per model structure and metric (reused across calls)."""
    loss_fn, acc_fn = _resolve_metrics(loss, accuracy)

    @jax.jit
    def chunk(params, xb, yb):
        m = eqx.combine(params, static)
        pred, nfe = m.forward(xb)
        acc = acc_fn(pred, yb) if acc_fn is not None else jnp.zeros(())
        return loss_fn(pred, yb), acc, nfe

    return chunk


def evaluate(
    model: Any,
    x: Any,
    y: Any,
    *,
    loss: str = "smooth_l1",
    accuracy: str | None = "auto",
    batch_size: int = 1024,
) -> dict[str, float]:
    """Mean loss (and accuracy) of ``model`` on ``(x, y)``, solved in chunks of ``batch_size``.

    Returns ``{"loss": ..., "accuracy": ...}`` (no accuracy key when none applies) and the mean forward
    NFE per chunk as ``"nfe_forward"``.
    """
    loss_fn, acc_fn = _resolve_metrics(loss, accuracy)
    x = np.asarray(x)
    y = np.asarray(y)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    chunk = _compiled_eval(static, loss, accuracy)

    totals = np.zeros(2)
    nfes = []
    n = x.shape[0]
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        value, acc, nfe = jax.device_get(chunk(params, xb, yb))
        totals += (xb.shape[0] / n) * np.array([value, acc], dtype=np.float64)
        nfes.append(float(nfe))
    out = {"loss": float(totals[0])}
    if acc_fn is not None:
        out["accuracy"] = float(totals[1])
    out["nfe_forward"] = float(np.mean(nfes))
    return out


# ----------------------------------------------------------------------------------------------
# Training


@functools.lru_cache(maxsize=1)
def _adam() -> optax.GradientTransformation:
    # Adam with the learning rate in its state rather than baked into the update, so one compiled step
    # serves every learning rate and every train() call on the same model structure.
    return optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)


@functools.lru_cache(maxsize=16)
def _supervised_loss(loss: str, accuracy: str | None) -> Callable:
    """``loss(model, probe, (xb, yb), it) -> (value, {accuracy, nfe_forward})`` for the training loop.

    Cached, so that every train() call with the same loss hands the loop the same function (and so
    reuses its compiled step).
    """
    loss_fn, acc_fn = _resolve_metrics(loss, accuracy)

    def supervised(model, probe, batch, it):
        xb, yb = batch
        pred, nfe = model.forward(xb, probe)
        aux = {"accuracy": acc_fn(pred, yb)} if acc_fn is not None else {}
        return loss_fn(pred, yb), {**aux, "nfe_forward": nfe}

    return supervised


def train(
    model: Any,
    x: Any,
    y: Any,
    *,
    iterations: int = 1000,
    batch_size: int | None = 64,
    lr: float = 1e-3,
    optimizer: optax.GradientTransformation | None = None,
    loss: str = "smooth_l1",
    accuracy: str | None = "auto",
    seed: int = 0,
    validation: tuple[Any, Any] | None = None,
    eval_fn: Callable[[Any], Mapping[str, float]] | None = None,
    eval_every: int = 100,
    callback: Callable[[int, Any, dict[str, float]], None] | None = None,
    progress: bool = True,
    description: str = "training",
    sharding: Any = None,
    transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
) -> TrainResult:
    """Fit ``model`` to ``(x, y)`` with minibatch optax updates, tracking forward and backward NFE.

    Runs on :func:`pyanode.loop.run_loop` (the one training loop, shared with the forecaster).

    Args:
        model: a pyanode model (``forward(x, nfe_probe) -> (prediction, nfe)``).
        x, y: training inputs ``(n, ...)`` and targets (``(n, k)`` floats, or ``(n,)`` integer labels for
            ``loss="cross_entropy"``); numpy or JAX arrays.
        iterations: number of parameter updates.
        batch_size: minibatch size (``None``: the whole set). Each epoch is a fresh permutation drawn from
            ``seed``; a last partial batch is dropped so every step has the same shape (one compile).
        lr: Adam's learning rate (the paper's 1e-3), used when ``optimizer`` is None.
        optimizer: any optax transformation, replacing Adam.
        loss: ``"smooth_l1"`` (the reference's regression loss), ``"mse"`` or ``"cross_entropy"``.
        accuracy: ``"sign"`` (targets +-1), ``"argmax"`` (class labels), None, or ``"auto"`` (argmax
            with cross-entropy, else none).
        seed: seeds the minibatch order; the same model, data and seed give identical histories.
        validation: optional ``(x_val, y_val)``, scored every ``eval_every`` iterations (columns
            ``val_loss``, ``val_accuracy``); the best model is then chosen by validation loss.
        eval_fn: optional ``eval_fn(model) -> {name: value}`` run every ``eval_every`` iterations (e.g.
            test accuracy); its values become history columns (NaN between evaluations).
        eval_every: iterations between evaluations (the last iteration is always evaluated).
        callback: ``callback(iteration, model, row)`` after each iteration (``row``: that history row).
            Raising ``KeyboardInterrupt`` in it stops training like Ctrl-C.
        progress: show a rich progress bar with loss, NFE and ETA.
        description: label of the progress bar.
        sharding: ``None``, a :class:`jax.sharding.Mesh` or a :class:`jax.sharding.NamedSharding` for
            data-parallel training (see the module docstring).
        transform: optional ``transform(x_batch, rng) -> x_batch`` applied on the host to each training
            batch (data augmentation, e.g. :func:`pyanode.datasets.images.random_shift`); ``rng`` is a
            generator of its own seeded from ``seed``, so the batch order is the same with or without it.

    Returns:
        :class:`TrainResult` with the best model (lowest validation loss when ``validation`` is given,
        else lowest minibatch loss), the final model and the history DataFrame, whose columns are
        ``iteration, loss, [accuracy], nfe_forward, nfe_backward, seconds`` and any evaluation columns;
        ``seconds`` is the cumulative training time (evaluations excluded; the first iteration includes
        compiling the step, which is reused by later calls on the same model structure). A non-finite
        loss stops training (``stopped`` says so).
    """
    _resolve_metrics(loss, accuracy)
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise PyanodeError(f"iterations must be a positive integer, got {iterations!r}")
    if isinstance(eval_every, bool) or not isinstance(eval_every, (int, np.integer)) or eval_every < 1:
        raise PyanodeError(f"eval_every must be a positive integer, got {eval_every!r}")
    x = np.asarray(x)
    y = np.asarray(y)
    n = x.shape[0]
    data_dim = getattr(model, "data_dim", None)
    if isinstance(data_dim, int) and x.ndim == 2 and x.shape[1] != data_dim:
        raise PyanodeError(f"x has {x.shape[1]} features per row but the model takes data_dim={data_dim}; "
                           "build the model with the data's width")
    if y.shape[0] != n:
        raise PyanodeError(f"x has {n} rows but y has {y.shape[0]}; give one target per input")
    if n == 0:
        raise PyanodeError("no training data: x is empty")
    batch = n if batch_size is None else int(batch_size)
    if batch < 1:
        raise PyanodeError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    batch = min(batch, n)
    batch_sharding, replicated, ndev = _shardings(sharding)
    if batch % ndev:
        raise PyanodeError(
            f"batch_size {batch} is not a multiple of the {ndev} devices of the sharding; "
            f"use a multiple of {ndev}"
        )
    hook = None
    if optimizer is None:
        if not lr > 0:
            raise PyanodeError(f"the learning rate must be positive, got {lr}")
        optimizer = _adam()

        def hook(opt_state):
            opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
            return opt_state

    rng = np.random.default_rng(seed)
    transform_rng = np.random.default_rng([seed, 1])
    order = np.empty(0, dtype=np.int64)

    def batches(it: int) -> tuple[Any, Any]:
        nonlocal order
        if order.shape[0] < batch:
            order = rng.permutation(n)
        idx, order = order[:batch], order[batch:]
        xb, yb = x[idx], y[idx]
        if transform is not None:
            xb = transform(xb, transform_rng)
        if batch_sharding is not None:
            xb, yb = jax.device_put((xb, yb), batch_sharding)
        return xb, yb

    validate = None
    if validation is not None or eval_fn is not None:

        def validate(current: Any, it: int) -> dict[str, float]:
            out: dict[str, float] = {}
            if validation is not None:
                scores = evaluate(current, validation[0], validation[1], loss=loss, accuracy=accuracy,
                                  batch_size=max(batch, 256))
                out["val_loss"] = scores["loss"]
                if "accuracy" in scores:
                    out["val_accuracy"] = scores["accuracy"]
            if eval_fn is not None and it > 0:
                out.update({k: float(v) for k, v in dict(eval_fn(current)).items()})
            return out

    return run_loop(
        model, _supervised_loss(loss, accuracy), batches, optimizer, iterations,
        validate=validate, validate_every=eval_every, validate_at_start=validation is not None,
        select_from=0, keep_lowest_train_loss=validation is None, callback=callback, progress=progress,
        description=description, replicated=replicated, opt_state_hook=hook,
    )


# ----------------------------------------------------------------------------------------------
# Save and load

_FORMAT = "pyanode-model"


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def save_model(
    path: str | os.PathLike,
    model: Any,
    *,
    metadata: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Save ``model`` to one file: a JSON header line (class, hyperparameters, metadata) + its weights.

    The weights are written with ``equinox.tree_serialise_leaves``; :func:`load_model` rebuilds the
    model from the header and loads them back exactly. The file is written atomically and an existing
    file is only replaced with ``force=True``.
    """
    path = Path(path)
    if path.exists() and not force:
        raise PyanodeError(f"{path} already exists; pass force=True (--force) to overwrite it")
    if not hasattr(model, "hyperparams"):
        raise PyanodeError(f"cannot save a {type(model).__name__}: it has no hyperparams() method")
    from pyanode import models as _models

    name = type(model).__name__
    if getattr(_models, name, None) is not type(model):
        raise PyanodeError(f"cannot save a {name}: only models exported by pyanode.models can be rebuilt")
    header = {
        "format": _FORMAT,
        "version": 1,
        "class": name,
        "hyperparams": model.hyperparams(),
        "metadata": dict(metadata or {}),
    }
    line = (json.dumps(header) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f):
        f.write(line)
        eqx.tree_serialise_leaves(f, model)

    _atomic_write(path, write)
    return path


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a saved model (class, hyperparameters, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise PyanodeError(f"no saved model at {path}")
    with open(path, "rb") as f:
        try:
            header = json.loads(f.readline())
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = None
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise PyanodeError(f"{path} is not a pyanode model file (written by pyanode.train.save_model)")
    return header


def load_model(path: str | os.PathLike) -> Any:
    """Rebuild a model saved by :func:`save_model` and load its weights."""
    from pyanode import models as _models

    header = read_header(path)
    cls = getattr(_models, header["class"], None)
    if cls is None:
        raise PyanodeError(f"{path} holds a {header['class']}, which this pyanode does not know")
    skeleton = cls(**header["hyperparams"], key=jax.random.PRNGKey(0))
    with open(path, "rb") as f:
        f.readline()
        return eqx.tree_deserialise_leaves(f, skeleton)
