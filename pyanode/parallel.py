"""Data-parallel training with JAX's own sharding: one ``Mesh`` with a ``"data"`` axis.

The model and optimiser state are replicated on every device; each batch is split along its first axis
across the devices (``NamedSharding(mesh, P("data"))``). The training step is the same ``jax.jit``-ed
function as on one device: XLA's SPMD partitioner runs every device on its slice of the batch and inserts
the all-reduces the maths needs (the mean loss, the gradient, and the adaptive solver's error norm, which
is taken over the whole batch state). The batch is therefore still solved as *one* ODE with one step
size, exactly as on one device, and losses agree with a single-device run up to floating-point
reduction order.

Several GPUs on one host: ``DataParallel.create()`` uses all of them (``--devices N`` takes the first N).
Several hosts: call :func:`initialize_distributed` (``jax.distributed.initialize``) at the start of the
same script on every host; the mesh then spans every host's devices, each process loads the same data
and seed, and :meth:`DataParallel.shard` assembles the global batch from the rows each process owns.
On a CPU the same code can be tried on fake devices: set
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` before JAX is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pyanode.errors import PyanodeError

__all__ = ["DATA_AXIS", "DataParallel", "initialize_distributed"]

DATA_AXIS = "data"


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """A 1-D device mesh over the ``"data"`` axis and the two shardings training needs.

    Attributes:
        mesh: the device mesh (axis name ``"data"``).
    """

    mesh: Mesh

    @classmethod
    def create(cls, devices: int | None = None) -> DataParallel:
        """A mesh over the first ``devices`` devices (all of them, on every host, when None)."""
        available = jax.devices()
        if devices is None:
            devices = len(available)
        if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
            raise PyanodeError(f"devices must be a positive integer, got {devices!r}")
        if devices > len(available):
            raise PyanodeError(
                f"asked for {devices} devices but JAX sees {len(available)} "
                f"({available[0].platform}); use --devices {len(available)} or fewer"
            )
        return cls(Mesh(np.array(available[:devices]), (DATA_AXIS,)))

    @property
    def num_devices(self) -> int:
        return int(self.mesh.devices.size)

    @property
    def data_sharding(self) -> NamedSharding:
        """First axis split over the devices."""
        return NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

    @property
    def replicated(self) -> NamedSharding:
        """A full copy on every device."""
        return NamedSharding(self.mesh, PartitionSpec())

    def check_batch_size(self, batch_size: int) -> None:
        """Refuse a global batch that does not split evenly over the devices."""
        if batch_size % self.num_devices:
            raise PyanodeError(
                f"the batch size {batch_size} does not split evenly over {self.num_devices} devices; "
                f"use a multiple of {self.num_devices}"
            )

    def shard(self, batch: Any) -> Any:
        """Put a batch (a pytree of arrays with a common first axis) on the devices, split by rows.

        On one host the arrays are the global batch. With several processes
        (:func:`initialize_distributed`) each process passes the same global batch and keeps the rows of
        its own devices, so the sharded array is the same global batch on every host.
        """
        leaves = jax.tree_util.tree_leaves(batch)
        for leaf in leaves:
            self.check_batch_size(int(np.shape(leaf)[0]))
        if jax.process_count() == 1:
            return jax.device_put(batch, self.data_sharding)

        def put(x):
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, self.data_sharding, lambda idx: x[idx])

        return jax.tree_util.tree_map(put, batch)

    def replicate(self, tree: Any) -> Any:
        """A copy of every array leaf of ``tree`` (a model, an optimiser state) on every device."""
        arrays, rest = eqx.partition(tree, eqx.is_array)
        if jax.process_count() == 1:
            arrays = jax.device_put(arrays, self.replicated)
        else:
            arrays = jax.tree_util.tree_map(
                lambda x: jax.make_array_from_callback(
                    x.shape, self.replicated, lambda idx: np.asarray(x)[idx]
                ),
                arrays,
            )
        return eqx.combine(arrays, rest)

    def describe(self) -> str:
        d = self.mesh.devices.flat[0]
        return f"{self.num_devices} x {d.platform} device(s) on {jax.process_count()} process(es)"


def initialize_distributed(
    coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Join a multi-host run: a thin wrapper of :func:`jax.distributed.initialize`.

    Call once per process before any other JAX call. On managed clusters (SLURM, Cloud TPU, ...) the
    arguments can be left out and JAX reads them from the environment; otherwise give the address
    ``host:port`` of process 0, the number of processes and this process's id.
    """
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
