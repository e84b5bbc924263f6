"""Toy data sets: geometry, labels, uniform sampling, seeds and errors."""

from __future__ import annotations

import numpy as np
import pytest

from pyanode.datasets import g1d, identity, sines, spheres
from pyanode.errors import PyanodeError


def test_g1d_points_and_targets():
    d = g1d(num_points=6)
    assert d.x.shape == (6, 1) and d.y.shape == (6, 1) and d.x.dtype == np.float32
    assert sorted(d.x[:, 0].tolist()) == [-1, -1, -1, 1, 1, 1]
    np.testing.assert_array_equal(d.y, -d.x)
    noisy = g1d(num_points=400, noise=0.1, seed=3)
    np.testing.assert_array_equal(noisy.y, -noisy.x)
    dev = np.abs(noisy.x[:, 0]) - 1
    assert 0.08 < np.std(dev) < 0.12 and abs(np.mean(dev)) < 0.03


@pytest.mark.parametrize("dim", [2, 3])
def test_spheres_radii_labels_and_uniform_volume(dim):
    r1, r2, r3 = 0.5, 1.0, 1.5
    d = spheres(dim=dim, num_inner=2000, num_outer=3000, seed=1)
    assert d.x.shape == (5000, dim) and d.task == "sign"
    r = np.linalg.norm(d.x, axis=1)
    inner, outer = d.y[:, 0] == -1, d.y[:, 0] == 1
    assert inner.sum() == 2000 and outer.sum() == 3000
    assert r[inner].max() <= r1 + 1e-6
    assert r[outer].min() >= r2 - 1e-6 and r[outer].max() <= r3 + 1e-6
    # Uniform in volume: P(|x| < r1/2) = (1/2)^d in the ball; in the annulus the same rule with r^d.
    assert np.mean(r[inner] < r1 / 2) == pytest.approx(0.5**dim, abs=0.03)
    mid = 1.25
    expected = (mid**dim - r2**dim) / (r3**dim - r2**dim)
    assert np.mean(r[outer] < mid) == pytest.approx(expected, abs=0.03)
    # Directions are isotropic: the mean of the unit vectors is near 0.
    assert np.abs((d.x / r[:, None]).mean(axis=0)).max() < 0.05


def test_spheres_defaults_are_the_papers():
    d = spheres()
    assert (d.y == -1).sum() == 500 and (d.y == 1).sum() == 1500 and d.dim == 2


def test_sines_curves_shift_and_noise():
    d = sines(seed=2)
    assert d.x.shape == (3000, 2)
    u, v = d.x[:, 0], d.x[:, 1]
    assert u.min() >= -1 and u.max() <= 1
    offset = v - np.sin(np.pi * u)
    up = d.y[:, 0] == 1
    assert up.sum() == 1500
    assert offset[up].mean() == pytest.approx(0.7, abs=0.01)
    assert offset[~up].mean() == pytest.approx(-0.7, abs=0.01)
    assert offset[up].std() == pytest.approx(0.1, abs=0.01)
    assert sines(num_points=10, dim=4).x.shape == (20, 4)


def test_identity_map():
    d = identity(dim=3, num_points=100, bound=2.0)
    np.testing.assert_array_equal(d.x, d.y)
    assert np.abs(d.x).max() <= 2.0 and d.task == "regression"


def test_seeds_reproduce():
    np.testing.assert_array_equal(spheres(seed=5).x, spheres(seed=5).x)
    assert not np.array_equal(spheres(seed=5).x, spheres(seed=6).x)
    np.testing.assert_array_equal(sines(seed=1).x, sines(seed=1).x)


def test_bad_arguments():
    with pytest.raises(PyanodeError, match="radii"):
        spheres(radii=(1.0, 0.5, 1.5))
    with pytest.raises(PyanodeError, match="num_points"):
        g1d(num_points=1)
    with pytest.raises(PyanodeError, match="noise"):
        sines(noise=-0.1)
    with pytest.raises(PyanodeError, match="dim"):
        spheres(dim=0)
