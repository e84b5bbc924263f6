"""Data sets: the paper's toys (:mod:`pyanode.datasets.toy`)."""

from pyanode.datasets.toy import ToyData, g1d, identity, sines, spheres

__all__ = ["ToyData", "g1d", "identity", "sines", "spheres"]
from pyanode.datasets.images import ImageData, ImageDataError  # noqa: E402,F401  (image loaders, issue 5)
