"""Data sets: the paper's toys (:mod:`~pyanode.datasets.toy`), image loaders (:mod:`~pyanode.datasets.images`)
and the packaged Delhi climate data (:mod:`~pyanode.datasets.delhi`)."""

from pyanode.datasets.delhi import delhi_climate, delhi_climate_files
from pyanode.datasets.images import (
    ImageData,
    ImageDataError,
    load_cifar10,
    load_digits,
    load_image_dataset,
    load_mnist,
    load_mnist_sample,
    load_svhn,
    random_shift,
)
from pyanode.datasets.toy import ToyData, g1d, identity, sines, spheres

__all__ = [
    "ImageData",
    "ImageDataError",
    "ToyData",
    "delhi_climate",
    "delhi_climate_files",
    "g1d",
    "identity",
    "load_cifar10",
    "load_digits",
    "load_image_dataset",
    "load_mnist",
    "load_mnist_sample",
    "load_svhn",
    "random_shift",
    "sines",
    "spheres",
]
