"""The paper's models: MLP NODE/ANODE (:class:`ODENet`), its pieces, and the ResNet baseline.

Every model maps a batch ``x`` to predictions, exposes ``forward(x, nfe_probe=None) -> (pred, nfe)`` for
training with NFE tracking and ``hyperparams()`` for saving (see :mod:`pyanode.models.mlp`).
"""

from pyanode.models.conv import ConvODEFunc, ConvODENet
from pyanode.models.mlp import NONLINEARITIES, ODEBlock, ODEFunc, ODENet, ResNet

__all__ = ["NONLINEARITIES", "ConvODEFunc", "ConvODENet", "ODEBlock", "ODEFunc", "ODENet", "ResNet"]
