"""The paper's toy data sets, generated from a seed (Dupont, Doucet & Teh 2019, sections 3-5).

Each function returns a :class:`ToyData` with float32 arrays ``x`` of shape ``(n, d)`` and ``y`` of
shape ``(n, 1)`` (``(n, d)`` for the identity map), and the ``task`` that says how to score it:
``"regression"`` (smooth-L1 or MSE, no accuracy) or ``"sign"`` (targets are +-1; accuracy is the share of
predictions with the right sign).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pyanode.errors import PyanodeError

__all__ = ["ToyData", "g1d", "identity", "sines", "spheres"]


@dataclasses.dataclass(frozen=True)
class ToyData:
    """Inputs ``x``, targets ``y``, the task (``"regression"`` or ``"sign"``) and a name."""

    x: np.ndarray
    y: np.ndarray
    task: str
    name: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])


def _count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise PyanodeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _nonnegative(name: str, value: float) -> float:
    if not (np.isfinite(value) and value >= 0):
        raise PyanodeError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def g1d(num_points: int = 2, noise: float = 0.0, seed: int = 0) -> ToyData:
    """``g(x) = -x`` on points at ``x = -1`` and ``x = +1`` (half each; the paper's g_1d).

    With ``noise > 0`` each point gets Gaussian noise of that standard deviation and the target stays
    ``-x``. A NODE flow is a homeomorphism of the line, so it preserves the order of the two points and
    cannot send ``-1 -> 1`` and ``1 -> -1``; trained with MSE it maps both to about 0 (loss about 1).
    """
    n = _count("num_points", num_points, 2)
    noise = _nonnegative("noise", noise)
    rng = np.random.default_rng(seed)
    anchors = np.where(np.arange(n) % 2 == 0, -1.0, 1.0)
    x = anchors + noise * rng.standard_normal(n) if noise > 0 else anchors
    x = x.astype(np.float32)[:, None]
    return ToyData(x=x, y=-x, task="regression", name="g1d")


def _uniform_in_shell(rng: np.random.Generator, n: int, dim: int, r_lo: float, r_hi: float) -> np.ndarray:
    """``n`` points uniform (in volume) in ``{r_lo <= |x| <= r_hi}`` of R^dim.

    Direction: a normalised Gaussian. Radius: the volume of the ball of radius r grows as r^dim, so
    ``r = (r_lo^d + u (r_hi^d - r_lo^d))^(1/d)`` with ``u ~ U(0, 1)`` is uniform in volume.
    """
    direction = rng.standard_normal((n, dim))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    u = rng.uniform(size=(n, 1))
    radius = (r_lo**dim + u * (r_hi**dim - r_lo**dim)) ** (1.0 / dim)
    return direction * radius


def spheres(
    dim: int = 2,
    num_inner: int = 500,
    num_outer: int = 1500,
    radii: tuple[float, float, float] = (0.5, 1.0, 1.5),
    seed: int = 0,
) -> ToyData:
    """Concentric spheres: ``-1`` for ``|x| <= r1`` and ``+1`` for ``r2 <= |x| <= r3`` (the paper's g_d).

    Points are uniform in the ball and in the annulus. No NODE can map the ball and the annulus that
    surrounds it to linearly separable features without trajectories crossing; an ANODE can lift them
    apart in the extra dimensions. Inner points come first, then outer ones.
    """
    dim = _count("dim", dim)
    num_inner = _count("num_inner", num_inner)
    num_outer = _count("num_outer", num_outer)
    r1, r2, r3 = (float(r) for r in radii)
    if not 0 < r1 < r2 < r3:
        raise PyanodeError(f"radii must satisfy 0 < r1 < r2 < r3, got {tuple(radii)}")
    rng = np.random.default_rng(seed)
    inner = _uniform_in_shell(rng, num_inner, dim, 0.0, r1)
    outer = _uniform_in_shell(rng, num_outer, dim, r2, r3)
    x = np.concatenate([inner, outer]).astype(np.float32)
    y = np.concatenate([-np.ones(num_inner), np.ones(num_outer)]).astype(np.float32)[:, None]
    return ToyData(x=x, y=y, task="sign", name="spheres")


def sines(
    num_points: int = 1500,
    shift: float = 1.4,
    noise: float = 0.1,
    dim: int = 2,
    seed: int = 0,
) -> ToyData:
    """Two shifted sine curves, as in the reference code: ``num_points`` on each curve.

    ``u ~ U(-1, 1)``, ``v = sin(pi u) +- shift/2 + noise * N(0, 1)``; the upper curve is labelled ``+1``
    and the lower ``-1``. ``dim=1`` keeps only ``v``; ``dim > 2`` appends ``U(-1, 1)`` coordinates.
    """
    n = _count("num_points", num_points)
    dim = _count("dim", dim)
    noise = _nonnegative("noise", noise)
    rng = np.random.default_rng(seed)
    label = np.concatenate([np.ones(n), -np.ones(n)])
    u = rng.uniform(-1.0, 1.0, size=2 * n)
    v = np.sin(np.pi * u) + label * shift / 2 + noise * rng.standard_normal(2 * n)
    cols = [v] if dim == 1 else [u, v] + [rng.uniform(-1.0, 1.0, size=2 * n) for _ in range(dim - 2)]
    x = np.stack(cols, axis=1).astype(np.float32)
    return ToyData(x=x, y=label.astype(np.float32)[:, None], task="sign", name="sines")


def identity(dim: int = 1, num_points: int = 500, bound: float = 1.0, seed: int = 0) -> ToyData:
    """The identity map on ``U(-bound, bound)^dim``: the easiest flow (a zero vector field)."""
    dim = _count("dim", dim)
    n = _count("num_points", num_points)
    if not (np.isfinite(bound) and bound > 0):
        raise PyanodeError(f"bound must be a positive number, got {bound!r}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-bound, bound, size=(n, dim)).astype(np.float32)
    return ToyData(x=x, y=x.copy(), task="regression", name="identity")
