"""Data-parallel training: the same run on 1 and 4 (fake CPU) devices gives the same losses and accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from pyanode.errors import PyanodeError
from pyanode.parallel import DataParallel

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    from pyanode.datasets.images import load_image_dataset
    from pyanode.experiments.images import build_image_model, score_images
    from pyanode.parallel import DataParallel
    from pyanode.train import train

    assert jax.device_count() == 4, jax.devices()
    train_set, test_set = load_image_dataset("digits")
    settings = dict(hidden=16, augment=2, solver="dopri5", rtol=1e-3, atol=1e-3, sensealg="checkpoint")
    out = {}
    for n in (1, 4):
        parallel = DataParallel.create(n)
        model = build_image_model("anode", train_set.img_size, settings, seed=0)
        result = train(
            model, train_set.images, train_set.labels, iterations=int(sys.argv[1]), batch_size=64,
            lr=1e-2, loss="cross_entropy", seed=0, progress=False, sharding=parallel.mesh if n > 1 else None,
        )
        weight = result.final_model.linear.weight
        out[n] = dict(
            losses=result.history["loss"].tolist(),
            nfe=result.history["nfe_forward"].tolist(),
            accuracy=score_images(result.final_model, test_set, 64)["accuracy"],
            param_devices=len(weight.sharding.device_set),
        )
    print("RESULT" + json.dumps(out))
    """
)


@pytest.mark.slow  # 60 s; CI's slow step runs it when pyanode/parallel.py changes
def test_one_and_four_devices_agree():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, "40"], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    out = json.loads(line[len("RESULT") :])
    one, four = out["1"], out["4"]
    assert one["param_devices"] == 1 and four["param_devices"] == 4  # really replicated over 4 devices
    np.testing.assert_allclose(four["losses"][:10], one["losses"][:10], rtol=1e-4)
    assert four["nfe"][:10] == one["nfe"][:10]
    assert one["losses"][-1] < 0.7 * one["losses"][0]  # it learned something in 40 iterations
    assert one["accuracy"] > 0.5  # chance is 0.1
    assert abs(four["accuracy"] - one["accuracy"]) <= 0.02


def test_mesh_and_errors():
    dp = DataParallel.create()  # all devices (one CPU here)
    assert dp.num_devices == jax.device_count() and dp.mesh.axis_names == ("data",)
    x = np.arange(12.0).reshape(6, 2)
    sharded = dp.shard({"x": x})["x"]
    np.testing.assert_array_equal(np.asarray(sharded), x)
    assert dp.data_sharding.spec == jax.sharding.PartitionSpec("data")
    with pytest.raises(PyanodeError, match=r"asked for 999 devices but JAX sees \d+"):
        DataParallel.create(999)
    with pytest.raises(PyanodeError, match="devices must be a positive integer"):
        DataParallel.create(0)
    assert "device(s) on 1 process(es)" in dp.describe()


@pytest.mark.skipif(jax.device_count() > 1, reason="needs a single device to build the uneven case below")
def test_uneven_batch_is_refused_in_a_subprocess():
    code = (
        "import numpy as np\nfrom pyanode.parallel import DataParallel\n"
        "from pyanode.errors import PyanodeError\n"
        "dp = DataParallel.create(4)\n"
        "try:\n    dp.shard(np.zeros((6, 2)))\nexcept PyanodeError as e:\n    print('ERR', e)\n"
        "a = dp.shard(np.zeros((8, 2)))\n"
        "print('SHARDS', len(a.sharding.device_set), [s.data.shape for s in a.addressable_shards])\n"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ERR the batch size 6 does not split evenly over 4 devices; use a multiple of 4" in proc.stdout
    assert "SHARDS 4 [(2, 2), (2, 2), (2, 2), (2, 2)]" in proc.stdout
